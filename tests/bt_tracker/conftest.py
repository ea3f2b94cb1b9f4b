"""Fixtures of the tracker tests; helpers live in trackerkit.py beside this
file and in tests/bt_swarm/swarmkit.py (libtorrent on loopback, waiting for
its files), which pytest's importlib mode does not put on sys.path by itself."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _dir in (_HERE, _HERE.parent / "bt_swarm"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

from peerlab.runtime.worlds import RealWorld, SimWorld, World  # noqa: E402


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test body on 127.0.0.1 and in the simulator."""
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=6)
    yield w
    w.close()


@pytest.fixture
def sim() -> Iterator[SimWorld]:
    w = SimWorld(seed=15)
    yield w
    w.close()
