"""The napster_wire fixtures; also makes napwirekit (beside this file) importable:
pytest runs with --import-mode=importlib, which puts no test folder on sys.path."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from peerlab.runtime.worlds import RealWorld, SimWorld, World

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """One test body on real sockets (127.0.0.1) and in the simulator."""
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=3)
    try:
        yield w
    finally:
        w.close()
