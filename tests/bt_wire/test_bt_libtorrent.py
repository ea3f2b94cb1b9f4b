"""Interop with libtorrent (the engine of qBittorrent and Deluge) on 127.0.0.1.

Our :class:`~peerlab.proto.peer.PeerConnection`, driven by the
:class:`~peerlab.runtime.driver.StreamDriver` over the asyncio runtime, talks
to a real libtorrent session both ways:

* as a downloader: it dials a libtorrent seed, handshakes with BEP 6 and
  BEP 10, fetches the metadata with BEP 9, says interested, is unchoked,
  requests every block, and each piece's SHA-1 matches the torrent;
* as a seed: a libtorrent session that knows only the magnet link dials us,
  fetches the metadata from us (BEP 9) and every block, and its file matches
  ours byte for byte.

uTP, DHT, LSD, UPnP and NAT-PMP are off; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peerlab.proto.peer import (
    PEER_ID_PREFIX,
    ConnectionClosed,
    Event,
    PeerConfig,
    PeerConnection,
)
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.driver import StreamDriver
from peerlab.wire import peer as pw

lt: Any = pytest.importorskip("libtorrent", reason="libtorrent (PyPI) is a test dependency")

PIECE_LENGTH = 32768  # two 16 KiB blocks per piece
FILE_SIZE = 5 * PIECE_LENGTH + 12345  # a short last piece, and a short last block
TIMEOUT = 30.0

LT_SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_tcp": True,
    "enable_incoming_tcp": True,
    "alert_mask": 0,
}


def _content(size: int) -> bytes:
    """Deterministic, incompressible file content."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class Torrent:
    info_hash: bytes
    info: bytes  # the bencoded info dictionary (the metadata of BEP 9)
    piece_hashes: list[bytes]
    data: bytes
    ti: Any

    @property
    def piece_count(self) -> int:
        return len(self.piece_hashes)

    def piece_size(self, index: int) -> int:
        return min(PIECE_LENGTH, len(self.data) - index * PIECE_LENGTH)

    def blocks(self) -> list[tuple[int, int, int]]:
        out = []
        for index in range(self.piece_count):
            size = self.piece_size(index)
            for begin in range(0, size, pw.BLOCK_SIZE):
                out.append((index, begin, min(pw.BLOCK_SIZE, size - begin)))
        return out


def _make_torrent(folder: Path) -> Torrent:
    data = _content(FILE_SIZE)
    (folder / "payload.bin").write_bytes(data)
    ct = lt.create_torrent(lt.list_files(str(folder / "payload.bin")), PIECE_LENGTH,
                           lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, str(folder))
    ti = lt.torrent_info(lt.bencode(ct.generate()))
    return Torrent(
        info_hash=ti.info_hashes().v1.to_bytes(),
        info=bytes(ti.info_section()),
        piece_hashes=[ti.hash_for_piece(i) for i in range(ti.num_pieces())],
        data=data,
        ti=ti,
    )


def _session() -> Any:
    return lt.session(LT_SETTINGS)


def _add(session: Any, params: Any, save_path: Path) -> Any:
    params.save_path = str(save_path)
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    return session.add_torrent(params)


async def _until(predicate: Any, what: str) -> None:
    """Poll ``predicate`` every 20 ms, for at most TIMEOUT seconds."""
    for _ in range(int(TIMEOUT / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def torrent(tmp_path: Path) -> Torrent:
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    return _make_torrent(seed_dir)


@pytest.fixture
def lt_seed(tmp_path: Path, torrent: Torrent) -> Iterator[tuple[Any, int]]:
    session = _session()
    params = lt.add_torrent_params()
    params.ti = torrent.ti
    handle = _add(session, params, tmp_path / "seed")
    try:
        yield handle, session.listen_port()
    finally:
        session.remove_torrent(handle)
        session.pause()
        del session


def _config(tag: bytes, **kw: Any) -> PeerConfig:
    return PeerConfig(peer_id=PEER_ID_PREFIX + tag.ljust(12, b"0")[:12], **kw)


async def test_download_every_block_from_a_libtorrent_seed(
    torrent: Torrent, lt_seed: tuple[Any, int]
) -> None:
    handle, port = lt_seed
    await _until(lambda: handle.status().is_seeding, "libtorrent to seed")
    rt = AsyncioRuntime()
    done: asyncio.Future[None] = rt.loop.create_future()
    closed: list[Exception | None] = []
    events: list[Event] = []
    blocks: dict[tuple[int, int], bytes] = {}
    metadata: dict[int, bytes] = {}
    wanted = deque(torrent.blocks())
    machine = PeerConnection.outgoing(
        _config(b"leech"), torrent.info_hash, rt.now(), piece_count=torrent.piece_count
    )

    def request_more() -> None:
        while wanted and not machine.peer_choking and machine.request_slots > 0:
            machine.request(*wanted.popleft())

    def finished() -> bool:
        return len(blocks) == len(torrent.blocks()) and bool(metadata)

    def on_event(ev: Event) -> None:
        events.append(ev)
        if isinstance(ev, pw.Handshake):
            machine.send_have_none()
            machine.interested()
        elif isinstance(ev, pw.ExtendedHandshake):
            if pw.UT_METADATA in ev.m:
                machine.send_metadata(pw.MetadataRequest(0))
        elif isinstance(ev, pw.MetadataData):
            metadata[ev.piece] = bytes(ev.data)
        elif isinstance(ev, pw.Unchoke):
            request_more()
        elif isinstance(ev, pw.Piece):
            blocks[(ev.index, ev.begin)] = bytes(ev.block)
            request_more()
        if finished() and not done.done():
            done.set_result(None)

    driver = StreamDriver(rt, machine, on_event, on_closed=closed.append)
    rt.connect(("127.0.0.1", port), driver, timeout=10.0)
    try:
        await asyncio.wait_for(done, TIMEOUT)
    finally:
        driver.close()
        await _until(lambda: bool(closed), "our side to close")
        rt.close()

    remote = events[0]
    assert isinstance(remote, pw.Handshake) and remote.info_hash == torrent.info_hash
    assert remote.extension_protocol and remote.fast  # libtorrent sets both bits
    assert machine.fast and machine.extension_protocol and not machine.dht
    ext = next(e for e in events if isinstance(e, pw.ExtendedHandshake))
    assert ext.v is not None and ext.v.startswith("libtorrent")
    assert ext.metadata_size == len(torrent.info)
    assert {"ut_metadata", "ut_pex"} <= set(ext.m) and ext.reqq is not None
    # the seed's availability: have all (BEP 6) or a full bitfield (BEP 3)
    avail = next(e for e in events if isinstance(e, pw.HaveAll | pw.Bitfield))
    if isinstance(avail, pw.Bitfield):
        full = pw.bitfield_from_pieces(range(torrent.piece_count), torrent.piece_count)
        assert avail.bitfield == full
    # unchoked after we said interested, then the blocks
    kinds = [type(e) for e in events]
    assert kinds.index(pw.Unchoke) < kinds.index(pw.Piece)
    for index, want in enumerate(torrent.piece_hashes):
        piece = b"".join(
            blocks[(i, begin)] for i, begin, _ in torrent.blocks() if i == index
        )
        assert len(piece) == torrent.piece_size(index)
        assert hashlib.sha1(piece).digest() == want
    assert machine.payload_received == FILE_SIZE
    # BEP 9: the metadata we fetched is the info dictionary of the info-hash
    assert hashlib.sha1(metadata[0]).digest() == torrent.info_hash
    assert machine.requests_outstanding == []
    assert not any(isinstance(e, ConnectionClosed) for e in events)
    assert closed == [None]


async def test_libtorrent_downloads_from_us_knowing_only_the_magnet(
    tmp_path: Path, torrent: Torrent
) -> None:
    rt = AsyncioRuntime()
    served: list[tuple[int, int, int]] = []
    metadata_served: list[int] = []
    drivers: list[StreamDriver] = []
    closed: list[Exception | None] = []

    def accept(info_hash: bytes) -> int | None:
        return torrent.piece_count if info_hash == torrent.info_hash else None

    def factory() -> StreamDriver:
        machine = PeerConnection.incoming(_config(b"seed"), accept, rt.now())

        def on_event(ev: Event) -> None:
            if isinstance(ev, pw.Handshake):
                if machine.fast:
                    machine.send_have_all()
                else:
                    machine.send_bitfield(pw.bitfield_from_pieces(
                        range(torrent.piece_count), torrent.piece_count))
                machine.send_extended_handshake(metadata_size=len(torrent.info))
            elif isinstance(ev, pw.Interested):
                machine.unchoke()
            elif isinstance(ev, pw.Request):
                start = ev.index * PIECE_LENGTH + ev.begin
                assert machine.send_piece(ev.index, ev.begin, torrent.data[start:start + ev.length])
                served.append((ev.index, ev.begin, ev.length))
            elif isinstance(ev, pw.MetadataRequest):
                size = len(torrent.info)
                if ev.piece < pw.metadata_piece_count(size):
                    lo = ev.piece * pw.METADATA_PIECE_SIZE
                    chunk = torrent.info[lo:lo + pw.metadata_piece_length(ev.piece, size)]
                    machine.send_metadata(pw.MetadataData(ev.piece, size, chunk))
                    metadata_served.append(ev.piece)
                else:
                    machine.send_metadata(pw.MetadataReject(ev.piece))
            driver.flush()

        driver = StreamDriver(rt, machine, on_event, on_closed=closed.append)
        drivers.append(driver)
        return driver

    listener = rt.listen(("127.0.0.1", 0), factory)
    session = _session()
    leech_dir = tmp_path / "leech"
    leech_dir.mkdir()
    params = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{torrent.info_hash.hex()}")
    handle = _add(session, params, leech_dir)
    try:
        handle.connect_peer(listener.address)
        await _until(lambda: handle.status().is_seeding, "libtorrent to complete")
        assert (leech_dir / "payload.bin").read_bytes() == torrent.data
    finally:
        session.remove_torrent(handle)
        session.pause()
        del session
        for d in drivers:
            d.close()
        listener.close()
        await _until(lambda: len(closed) == len(drivers), "our side to close")
        rt.close()
    assert metadata_served == [0]  # BEP 9: the magnet's metadata came from us
    assert sorted(set(served)) == torrent.blocks()  # every block, each asked for
    assert sum(d.machine.payload_sent for d in drivers  # type: ignore[attr-defined]
               ) == sum(length for _, _, length in served)
