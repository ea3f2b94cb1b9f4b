"""Fixtures of the trackerless-swarm tests; helpers live in dhtswarmkit.py
beside this file.  pytest runs in importlib mode, which puts no test folder
on sys.path: this folder, tests/bt_swarm (swarmkit.py) and tests/bt_node
(nodekit.py) go there.  The node-process fixtures ``home`` and
``start_node`` come from tests/conftest.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _dir in (str(_HERE), str(_HERE.parent / "bt_swarm"), str(_HERE.parent / "bt_node")):
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

from peerlab.runtime.worlds import RealWorld, SimWorld, World  # noqa: E402


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test body on 127.0.0.1 and in the simulator."""
    w: World = RealWorld() if request.param == "real" else SimWorld(11, latency=0.01)
    yield w
    w.close()


@pytest.fixture
def real() -> Iterator[RealWorld]:
    w = RealWorld()
    yield w
    w.close()
