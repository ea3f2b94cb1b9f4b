"""One listening port for HTTP, GIV (and Gnutella connects): SharedPortHandler
hands each connection to its route by its first bytes, whole or in pieces."""

from __future__ import annotations

from pathlib import Path

import pytest
from pushkit import WORLDS, RawPeer, make_data, make_sharer, make_world, split_response

from peerlab.overlays.transfer.download import DownloadManager
from peerlab.overlays.transfer.push import shared_port_factory
from peerlab.runtime.base import RecordingObserver


@pytest.mark.parametrize("world_name", WORLDS)
def test_shared_port_routes_by_first_bytes(tmp_path: Path, world_name: str) -> None:
    world = make_world(world_name)
    try:
        data = make_data(10_000, seed=1)
        sharer = make_sharer(world, "node", tmp_path / "node", data)
        rt, obs, f = sharer.runtime, sharer.observer, sharer.file
        mgr = DownloadManager(rt, incomplete_dir=tmp_path / "inc", download_dir=tmp_path / "dl")
        routes = {"http": sharer.service.handler_factory(), "giv": mgr.giv_handler}
        listener = rt.listen((world.host(rt), 0), shared_port_factory(rt, routes, timeout=2.0))
        client = world.new_runtime("client")

        def connect() -> RawPeer:
            peer = RawPeer()
            client.connect(listener.address, peer)
            assert world.run_until(lambda: peer.made, 10)
            return peer

        # HTTP, its request line split before the classifier could tell.
        http = connect()
        request = f"GET /uri-res/N2R?{f.urn} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for piece in (request[:1], request[1:3], request[3:]):
            http.write(piece)
            world.run_for(0.05)
        assert world.run_until(lambda: len(http.data) >= len(data), 10)
        line, _, body = split_response(bytes(http.data))
        assert line == "HTTP/1.1 200 OK" and body == data
        # A GIV goes to the download manager (which waits for nobody: refused).
        giv = connect()
        giv.write(b"GIV 1:" + b"AB" * 16 + b"/x\n\n")
        assert world.run_until(lambda: giv.lost, 10)
        assert obs.counters["transfer.giv_refused"] == 1
        # No route for Gnutella here; garbage; silence.
        for opening in (b"GNUTELLA CONNECT/0.6\r\n", b"HELLO?\r\n", b"GE"):
            peer = connect()
            peer.write(opening)
            assert world.run_until(lambda: peer.lost, 10)  # noqa: B023
            assert peer.data == b""
        assert obs.counters["port.http"] == 1 and obs.counters["port.giv"] == 1
        assert obs.counters["port.refused"] == 2 and obs.counters["port.timeout"] == 1
        assert sorted(e["reason"] for e in obs.named("port.refused")) == ["gnutella", "unknown"]
        mgr.close()
        listener.close()
        sharer.close()
    finally:
        world.close()


def test_shared_port_eof_before_a_decision(tmp_path: Path) -> None:
    world = make_world("sim")
    obs = RecordingObserver()
    rt = world.new_runtime("node", observer=obs)
    listener = rt.listen((world.host(rt), 0), shared_port_factory(rt, {}))
    client = world.new_runtime("client")
    peer = RawPeer()
    client.connect(listener.address, peer)
    assert world.run_until(lambda: peer.made, 10)
    assert peer.stream is not None
    peer.stream.write(b"GIV")
    peer.stream.write_eof()
    assert world.run_until(lambda: peer.lost, 10)
    assert [e["reason"] for e in obs.named("port.refused")] == ["closed before saying what it is"]
