"""The download mesh (gtk-gnutella doc/gnutella/x-alt): the server lists other
sources of a urn in X-Alt and learns the ones downloaders send; the downloader
adds the sources it is told about (bounded, deduplicated, banned and own
addresses ignored) and names its good sources in its requests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pushkit import (
    WORLDS,
    RawPeer,
    make_data,
    make_downloader,
    make_sharer,
    make_world,
    split_response,
)

from peerlab.overlays.transfer.download import DownloadConfig, Source
from peerlab.overlays.transfer.server import MAX_ALT_PER_URN, MAX_MESH_URNS, UploadConfig
from peerlab.runtime.base import BaseStreamHandler, Stream, StreamHandler
from peerlab.wire.urn import sha1_urn

SIZE = 1_500_000


@pytest.mark.parametrize("world_name", WORLDS)
def test_x_alt_leads_the_downloader_to_a_source_it_was_never_told_about(
    tmp_path: Path, world_name: str
) -> None:
    world = make_world(world_name)
    try:
        data = make_data(SIZE, seed=21)
        # Both rate-limited, so neither can finish alone before the other joins.
        cfg = UploadConfig(rate_limit=500_000)
        a = make_sharer(world, "a", tmp_path / "a", data, listen=True, config=cfg)
        b = make_sharer(world, "b", tmp_path / "b", data, listen=True,
                        config=UploadConfig(rate_limit=500_000))  # fmt: skip
        f = a.file
        assert b.file.urn == f.urn
        # The node feeds its server the sources it knows: A knows B.
        assert a.service.add_alt_locations(f.urn, [b.address]) == 1
        dl = make_downloader(world, tmp_path / "dl")
        d = dl.manager.add(f.urn, name=f.name, size=f.size, sources=[Source(a.address)])
        assert world.run_until(lambda: d.status in ("complete", "failed"), timeout=60)
        info = d.info()
        assert info.status == "complete", info.error
        assert info.path is not None and info.path.read_bytes() == data
        got = {r.address: r.bytes for r in info.sources}
        assert set(got) == {a.address, b.address}
        assert got[a.address] > 0 and got[b.address] > 0
        assert got[a.address] + got[b.address] >= SIZE
        assert a.observer.counters["upload.bytes"] > 0 and b.observer.counters["upload.bytes"] > 0
        assert dl.observer.counters["transfer.alt_sources_learned"] == 1
        # The downloader named A (a good source) in its requests to B: B learned it.
        assert a.address in b.service.alt_locations(f.urn)
        assert b.observer.counters["upload.alt_learned"] >= 1
        dl.close()
        a.close()
        b.close()
    finally:
        world.close()


def test_server_x_alt_header_and_learning(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(30_000, seed=2)
    cfg = UploadConfig(alt_per_response=3, slots=1)
    srv = make_sharer(world, "srv", tmp_path / "srv", data, listen=True, config=cfg)
    svc, f = srv.service, srv.file
    svc.self_addresses.add(srv.address)
    fed = [(f"10.5.0.{i}", 6346 + i) for i in range(1, 6)]
    assert svc.add_alt_locations(f.urn, [*fed, srv.address, ("0.0.0.0", 1)]) == 5
    assert svc.add_alt_locations(f.sha1, [fed[0]]) == 0  # known: refreshed, now newest
    assert svc.alt_locations(f.urn)[:2] == [fed[0], fed[4]]
    client = world.new_runtime("client")

    def ask(request: bytes) -> tuple[str, dict[str, str], bytes]:
        peer = RawPeer()
        client.connect(srv.address, peer)
        assert world.run_until(lambda: peer.made, 10)
        peer.write(request)
        assert world.run_until(lambda: b"\r\n\r\n" in peer.data, 10)
        return split_response(bytes(peer.data))

    line, headers, _ = ask(
        f"HEAD /uri-res/N2R?{f.urn} HTTP/1.1\r\nHost: x\r\n"
        "X-Alt: 1.2.3.4:5555, bogus, 0.0.0.0:1, 5.6.7.8\r\n"
        f"X-Gnutella-Alternate-Location: http://9.8.7.6:6000/uri-res/N2R?{f.urn}, "
        f"http://4.4.4.4:1/uri-res/N2R?{sha1_urn(bytes(20))}\r\n\r\n".encode()
    )
    assert line == "HTTP/1.1 200 OK"
    # Newest first, at most alt_per_response, never our own address, nor what
    # the requester just told us itself.
    assert headers["x-alt"] == "10.5.0.1:6347,10.5.0.5:6351,10.5.0.4:6350"
    learned = {("1.2.3.4", 5555), ("5.6.7.8", 6346), ("9.8.7.6", 6000)}
    assert learned <= set(svc.alt_locations(f.urn))
    assert ("4.4.4.4", 1) not in svc.alt_locations(f.urn)
    assert srv.observer.counters["upload.alt_learned"] == 3
    # Chunk lists and 503s carry the mesh too.
    _, headers, _ = ask(f"GET /uri-res/N2CH?{f.urn} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert headers["x-alt"].count(",") == 2
    holder = RawPeer()
    client.connect(srv.address, holder)
    assert world.run_until(lambda: holder.made, 10)
    holder.write(
        f"GET /uri-res/N2R?{f.urn} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n".encode()
    )
    assert world.run_until(lambda: svc.active == 1, 10)
    line, headers, _ = ask(f"GET /uri-res/N2R?{f.urn} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert line.startswith("HTTP/1.1 503") and headers["x-alt"].count(",") == 2
    # Bounded per urn (newest kept) and in urns.
    many = [(f"10.6.{i // 200}.{i % 200 + 1}", 6346) for i in range(MAX_ALT_PER_URN + 10)]
    svc.add_alt_locations(f.urn, many)
    kept = svc.alt_locations(f.urn)
    assert len(kept) == MAX_ALT_PER_URN and kept[0] == many[-1] and many[0] not in kept
    for n in range(MAX_MESH_URNS):
        svc.add_alt_locations(n.to_bytes(20, "big"), [("10.7.0.1", 1)])
    assert svc.alt_locations(f.urn) == []  # the least recently fed urn went first
    assert svc.alt_locations((MAX_MESH_URNS - 1).to_bytes(20, "big")) == [("10.7.0.1", 1)]
    assert svc.add_alt_locations("not a urn", [("10.7.0.1", 1)]) == 0
    srv.close()


class _MeshOnly(BaseStreamHandler):
    """A source that names many others and never sends data: 404 for the chunk
    list (with the mesh headers), 503 'come back much later' for data."""

    def __init__(self, alt: str, legacy: str) -> None:
        self.alt, self.legacy, self.buf = alt, legacy, b""
        self.requests: list[bytes] = []

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.requests.append(head)
            assert self.stream is not None
            mesh = f"X-Alt: {self.alt}\r\nX-Gnutella-Alternate-Location: {self.legacy}\r\n"
            if b"N2CH" in head.split(b"\r\n")[0]:
                self.stream.write(
                    f"HTTP/1.1 404 Not Found\r\n{mesh}Content-Length: 0\r\n\r\n".encode()
                )
            else:
                later = "Retry-After: 500\r\nContent-Length: 0\r\n\r\n"
                self.stream.write(f"HTTP/1.1 503 Busy\r\n{mesh}{later}".encode())


def test_downloader_takes_a_bounded_deduplicated_mesh(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(40_000, seed=3)
    urn = sha1_urn(hashlib.sha1(data).digest())
    dl = make_downloader(world, tmp_path / "dl", DownloadConfig(max_alt_sources=5))
    me = dl.address
    banned = ("10.8.0.1", 6346)
    entries = [f"{me[0]}:{me[1]}", f"{banned[0]}:{banned[1]}", "10.8.0.2:6346", "10.8.0.2:6346"]
    entries += [f"10.8.1.{i}:7000" for i in range(1, 30)]
    legacy = "http://10.8.9.9:6346/uri-res/N2R?" + urn
    srv_rt = world.new_runtime("mesh")
    handlers: list[_MeshOnly] = []

    def make() -> StreamHandler:
        h = _MeshOnly(",".join(entries), legacy)
        handlers.append(h)
        return h

    listener = srv_rt.listen((world.host(srv_rt), 0), make)
    d = dl.manager.add(urn, name="x.bin", size=len(data), sources=[Source(listener.address)])
    d.state.ban(f"{banned[0]}:{banned[1]}", "sent garbage earlier")
    assert world.run_until(lambda: len(d.sessions) >= 6, 10)
    world.run_for(2.0)
    keys = set(d.sessions)
    assert len(keys) == 6  # the source itself and max_alt_sources learned ones
    assert f"{me[0]}:{me[1]}" not in keys and f"{banned[0]}:{banned[1]}" not in keys
    assert "10.8.0.2:6346" in keys
    assert dl.observer.counters["transfer.alt_sources_learned"] == 5
    # Nothing good came from anyone: no X-Alt in our requests.
    assert handlers and all(b"X-Alt" not in r for h in handlers for r in h.requests)
    dl.close()
