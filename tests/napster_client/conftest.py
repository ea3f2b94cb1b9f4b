"""Helpers for the Napster client tests (the in-process CLI runner ``cli`` is
tests/conftest.py's)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerlab.runtime.worlds import RealWorld, SimWorld, World

# pytest runs with --import-mode=importlib, which puts no test folder on
# sys.path: make the helper module beside this file importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test body on 127.0.0.1 and in the simulator."""
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=7)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def real_world() -> Iterator[World]:
    w = RealWorld()
    try:
        yield w
    finally:
        w.close()
