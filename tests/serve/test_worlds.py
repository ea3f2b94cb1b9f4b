"""The same transfers in both worlds (peerlab.runtime.worlds): real sockets on
127.0.0.1 and the simulator.  In the simulator the global rate limit is
measured in virtual seconds."""

from __future__ import annotations

import pytest
from servekit import BIG_SIZE, GetHandler, Shares

from peerlab.overlays.transfer.server import UploadConfig, UploadService
from peerlab.runtime.worlds import RealWorld, SimWorld, World


def make_world(name: str) -> World:
    # 100 MB/s links: the rate limit, not the link, decides in the simulator.
    return RealWorld() if name == "real" else SimWorld(seed=1, up=1e8, down=1e8, latency=0.002)


@pytest.mark.parametrize("world_name", ["real", "sim"])
def test_full_and_ranged_get_in_both_worlds(shares: Shares, world_name: str) -> None:
    world = make_world(world_name)
    try:
        server_rt = world.new_runtime("server")
        client_rt = world.new_runtime("client")
        service = UploadService(server_rt, shares.catalog, UploadConfig())
        listener = server_rt.listen((world.host(server_rt), 0), service.handler_factory())
        f = shares.file("big.bin")
        full = GetHandler(client_rt, f"/uri-res/N2R?{f.urn}")
        part = GetHandler(client_rt, f"/get/{f.index}/big.bin", [("Range", "bytes=100-100099")])
        for h in (full, part):
            client_rt.connect(listener.address, h)
        assert world.run_until(lambda: full.done_at is not None and part.done_at is not None, 30)
        assert bytes(full.body) == shares.contents["big.bin"]
        assert part.response is not None and part.response.status == 206
        assert bytes(part.body) == shares.contents["big.bin"][100:100100]
        listener.close()
        service.close()
    finally:
        world.close()


def test_rate_limit_in_virtual_time(shares: Shares) -> None:
    world = SimWorld(seed=2, up=1e8, down=1e8, latency=0.002)
    server_rt = world.new_runtime("server")
    client_rt = world.new_runtime("client")
    rate = 500_000.0
    service = UploadService(server_rt, shares.catalog, UploadConfig(rate_limit=rate))
    listener = server_rt.listen((world.host(server_rt), 0), service.handler_factory())
    f = shares.file("big.bin")
    getters = [GetHandler(client_rt, f"/uri-res/N2R?{f.urn}") for _ in range(2)]
    for g in getters:
        client_rt.connect(listener.address, g)
    assert world.run_until(lambda: all(g.done_at is not None for g in getters), 120)
    start = min(g.started_at for g in getters if g.started_at is not None)
    elapsed = max(g.done_at for g in getters if g.done_at is not None) - start
    # Two downloads share one global limit.
    assert (2 * BIG_SIZE - service.bucket.burst) / rate - 0.5 <= elapsed
    assert elapsed <= 2 * BIG_SIZE / rate + 1.0
    for g in getters:
        assert bytes(g.body) == shares.contents["big.bin"]
