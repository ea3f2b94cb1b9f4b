"""The sharing side of a Push (RFC-Gnutella 0.6 draft 2.2.8): UploadService.push
connects out, sends GIV, then serves HTTP on that connection exactly as an
incoming upload (same routes, slots, queue and safety); pushes are bounded,
deduplicated, timed out and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pushkit import WORLDS, RawPeer, make_data, make_sharer, make_world, split_response

from peerlab.overlays.transfer.push import Giv, encode_giv
from peerlab.overlays.transfer.server import UploadConfig
from peerlab.runtime.base import StreamHandler
from peerlab.runtime.worlds import World


class Requester:
    """The downloader's end: a listener whose connections are RawPeers."""

    def __init__(self, world: World, name: str = "requester") -> None:
        self.runtime = world.new_runtime(name)
        self.peers: list[RawPeer] = []

        def make() -> StreamHandler:
            peer = RawPeer()
            self.peers.append(peer)
            return peer

        self.listener = self.runtime.listen((world.host(self.runtime), 0), make)

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.address


def response_done(peer: RawPeer, start: int = 0) -> bool:
    raw = bytes(peer.data[start:])
    if b"\r\n\r\n" not in raw:
        return False
    _, headers, body = split_response(raw)
    return len(body) >= int(headers.get("content-length", "0"))


@pytest.mark.parametrize("world_name", WORLDS)
def test_push_sends_giv_then_serves_http_on_that_connection(
    tmp_path: Path, world_name: str
) -> None:
    world = make_world(world_name)
    try:
        data = make_data(300_000, seed=4)
        sharer = make_sharer(world, "fw", tmp_path / "fw", data, file_name="Little Toot.mp3")
        req = Requester(world)
        f = sharer.file
        assert sharer.service.push(req.address, f.index, sharer.guid)
        assert world.run_until(lambda: len(req.peers) == 1 and b"\n\n" in req.peers[0].data, 10)
        peer = req.peers[0]
        giv = f"GIV {f.index}:{sharer.guid.hex().upper()}/Little%20Toot.mp3\n\n".encode()
        assert bytes(peer.data) == giv == encode_giv(Giv(f.index, sharer.guid, f.name))
        # Now we are the client on the connection the sharer opened.
        del peer.data[:]
        peer.write(
            f"GET /uri-res/N2R?{f.urn} HTTP/1.1\r\nHost: x\r\nRange: bytes=10-1009\r\n\r\n".encode()
        )
        assert world.run_until(lambda: response_done(peer), 10)
        line, headers, body = split_response(bytes(peer.data))
        assert line == "HTTP/1.1 206 Partial Content"
        assert headers["content-range"] == f"bytes 10-1009/{len(data)}"
        assert headers["x-gnutella-content-urn"] == f.urn
        assert body == data[10:1010]
        del peer.data[:]
        peer.write(f"GET /get/{f.index}/Little%20Toot.mp3 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert world.run_until(lambda: response_done(peer), 10)
        line, headers, body = split_response(bytes(peer.data))
        assert line == "HTTP/1.1 200 OK" and body == data
        c = sharer.observer.counters
        assert (c["upload.push_requests"], c["upload.push_started"]) == (1, 1)
        assert (c["upload.push_connected"], c["upload.connections"]) == (1, 1)
        assert c["http.requests"] == 2 and c["upload.bytes"] == 1000 + len(data)
        assert sharer.service.pushes_pending == 0
        sharer.close()
    finally:
        world.close()


def test_pushed_connection_gets_the_same_queue_and_safety(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(50_000, seed=6)
    sharer = make_sharer(world, "fw", tmp_path / "fw", data, config=UploadConfig(slots=0))
    req = Requester(world)
    f = sharer.file
    assert sharer.service.push(req.address, f.index, sharer.guid)
    assert world.run_until(lambda: len(req.peers) == 1 and b"\n\n" in req.peers[0].data, 10)
    peer = req.peers[0]
    del peer.data[:]
    peer.write(f"GET /uri-res/N2R?{f.urn} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert world.run_until(lambda: response_done(peer), 10)
    line, headers, _ = split_response(bytes(peer.data))
    assert line == "HTTP/1.1 503 Service Unavailable"
    assert headers["x-queue"].startswith("position=1,length=1,limit=0,")
    assert sharer.service.queued == 1
    del peer.data[:]
    peer.write(b"GET /get/1/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n")
    assert world.run_until(lambda: peer.ended, 10)
    assert bytes(peer.data).startswith(b"HTTP/1.1 400 ")
    assert [e["status"] for e in sharer.observer.named("upload.traversal")] == [400]
    sharer.close()


def test_push_bounds_dedup_and_failures(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(20_000, seed=8)
    cfg = UploadConfig(max_pending_pushes=2, push_dedup_window=5.0, push_connect_timeout=3.0)
    sharer = make_sharer(world, "fw", tmp_path / "fw", data, config=cfg)
    svc, obs, f, guid = sharer.service, sharer.observer, sharer.file, sharer.guid
    req = Requester(world)
    host, port = req.address
    c = obs.counters
    # Refused before any connection: unknown file, bad GUID, unusable address.
    assert sharer.catalog.by_index(0) is None and sharer.catalog.by_index(999) is None
    assert not svc.push(req.address, 999, guid)
    assert not svc.push(req.address, f.index, b"\x01" * 15)
    assert not svc.push((host, 0), f.index, guid)
    assert not svc.push(("0.0.0.0", port), f.index, guid)
    assert not svc.push(("224.0.0.1", port), f.index, guid)
    assert c["upload.push_refused"] == 5 and c["upload.push_started"] == 0
    # Two pending at most; the same push again is a duplicate.
    assert svc.push(req.address, f.index, guid)
    assert not svc.push(req.address, f.index, guid)
    assert c["upload.push_duplicate"] == 1
    assert svc.push((host, port + 1), f.index, guid)  # nobody listens there
    assert not svc.push((host, port + 2), f.index, guid)
    assert svc.pushes_pending == 2 and c["upload.push_refused"] == 6
    assert world.run_until(lambda: svc.pushes_pending == 0, 10)
    assert c["upload.push_connected"] == 1 and c["upload.push_failed"] == 1
    # Within the window the finished push is still a duplicate; after it, not.
    assert not svc.push(req.address, f.index, guid)
    assert c["upload.push_duplicate"] == 2
    world.run_for(5.5)
    # Index 0 (push proxies) with no file 0 gets an empty name.
    assert svc.push(req.address, 0, guid)
    assert world.run_until(lambda: len(req.peers) == 2 and b"\n\n" in req.peers[1].data, 10)
    assert bytes(req.peers[1].data) == f"GIV 0:{guid.hex().upper()}/\n\n".encode()
    assert svc.push(req.address, f.index, guid)
    assert svc.pushes_pending == 1
    svc.close()  # cancels the pending attempt; no more pushes
    assert svc.pushes_pending == 0
    assert not svc.push((host, port + 3), f.index, guid)
    world.run_for(1.0)
    assert len(req.peers) == 2
    sharer.catalog.close()


def test_pushed_connections_count_toward_max_connections(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(20_000, seed=10)
    cfg = UploadConfig(max_connections=1)
    sharer = make_sharer(world, "fw", tmp_path / "fw", data, config=cfg)
    req = Requester(world)
    svc, f, guid = sharer.service, sharer.file, sharer.guid
    assert svc.push(req.address, f.index, guid)
    host, port = req.address
    assert not svc.push((host, port + 1), f.index, guid)  # the pending one fills the table
    assert world.run_until(lambda: len(req.peers) == 1 and svc.pushes_pending == 0, 10)
    assert not svc.push((host, port + 1), f.index, guid)  # now the open connection does
    assert [e["reason"] for e in sharer.observer.named("upload.push_refused")] == [
        "too many connections",
        "too many connections",
    ]
    sharer.close()
