"""The ``world`` fixture: every conformance test body runs on real sockets
(127.0.0.1) and in the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peerlab.runtime.worlds import RealWorld, SimWorld, World


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=7)
    try:
        yield w
    finally:
        w.close()
