"""The ``world`` fixture: every conformance test body runs on real sockets
(127.0.0.1; on uvloop and on asyncio's own loop) and in the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peerlab.runtime.worlds import RealWorld, SimWorld, World


def make_world(kind: str) -> World:
    if kind == "real":
        return RealWorld()  # uvloop, as the node runs
    if kind == "real-asyncio":
        return RealWorld(use_uvloop=False)
    return SimWorld(seed=7)


@pytest.fixture(params=["real", "real-asyncio", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w = make_world(request.param)
    try:
        yield w
    finally:
        w.close()
