"""Fixtures of the DHT tests; helpers live in dhtkit.py beside this file,
which pytest's importlib mode does not put on sys.path by itself."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from peerlab.runtime.worlds import RealWorld, SimWorld, World  # noqa: E402


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test body on 127.0.0.1 and in the simulator."""
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=5, latency=0.01)
    yield w
    w.close()


@pytest.fixture
def sim() -> Iterator[SimWorld]:
    w = SimWorld(seed=55, latency=0.01)
    yield w
    w.close()
