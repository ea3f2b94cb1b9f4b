"""Bad peers and faults (issue 6, "Bad input and faults"): a peer sending bad
pieces is banned and never leaves a corrupt byte; request floods and
requests beyond a piece end the connection; metadata that does not hash to
the info-hash is refused (BEP 9); a dead tracker is skipped for the next one
(BEP 12).  Each is counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swarmkit import content, metainfo, session, single_file

from peerlab.overlays.bittorrent import NeverUnchoke, Torrent, TorrentState
from peerlab.overlays.bittorrent.config import MAX_REFUSED_PER_WINDOW
from peerlab.overlays.bittorrent.metadata import MetadataFetcher
from peerlab.overlays.tracker.server import Tracker, TrackerConfig
from peerlab.runtime.base import BaseStreamHandler, Stream
from peerlab.runtime.worlds import SimWorld
from peerlab.wire import peer as pw

KIB = 1024


def corrupted(data: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in data)


def test_a_peer_sending_bad_pieces_is_banned_and_the_file_stays_clean() -> None:
    world = SimWorld(5)
    data = content(256 * KIB, b"good")
    info = single_file(data, 16 * KIB)
    liar, _, _ = session(world, "liar", storage="memory")
    liar.add_torrent(info, data=corrupted(data), seed_mode=True)  # it believes its bytes
    honest, _, _ = session(world, "honest", storage="memory")
    honest.add_torrent(info, data=data, seed_mode=True)
    leecher, _, obs = session(world, "leech", storage="memory")
    t = leecher.add_torrent(info, peers=[liar.listen_address])  # type: ignore[list-item]
    assert world.run_until(lambda: t.counters["banned_peers"] == 1, 60)
    assert t.counters["hash_failures"] >= 2  # one strike pair per piece it alone sent
    assert world.run_until(lambda: not t.links, 5)  # the liar is gone
    assert t.store is not None and t.store.have.count == 0  # nothing bad was kept
    # it cannot come back under the same address
    assert t.add_peers([liar.listen_address]) == 0  # type: ignore[list-item]
    t.add_peers([honest.listen_address])  # type: ignore[list-item]
    assert world.run_until(lambda: t.complete, 60)
    assert t.store.storage.read(0, len(data)) == data
    assert obs.counters["bt.store.hash_failed"] == t.counters["hash_failures"]
    assert any(e["reason"].endswith("failed their hash") for e in obs.named("bt.peer_banned"))


class RawPeer(BaseStreamHandler):
    """A peer that writes whatever it is told (no rules) and records what comes."""

    def __init__(self, info_hash: bytes) -> None:
        self.info_hash = info_hash
        self.received = bytearray()
        self.decoder = pw.MessageDecoder()
        self.messages: list[Any] = []
        self.lost = False

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        hs = pw.Handshake(self.info_hash, b"-XX0000-" + b"r" * 12, pw.reserved_bytes(fast=True))
        stream.write(pw.encode_handshake(hs) + pw.encode(pw.HaveNone()))

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= pw.HANDSHAKE_LENGTH:
            rest = bytes(self.received[pw.HANDSHAKE_LENGTH :])
            self.received = self.received[: pw.HANDSHAKE_LENGTH]
            self.messages += self.decoder.feed(rest)

    def send(self, *msgs: Any) -> None:
        assert self.stream is not None
        self.stream.write(b"".join(pw.encode(m) for m in msgs))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _seed(world: SimWorld, **kw: Any) -> tuple[Any, Torrent, Any, bytes]:
    data = content(128 * KIB)
    info = single_file(data, 32 * KIB)
    s, _, obs = session(world, "seed", storage="memory")
    t = s.add_torrent(info, data=data, seed_mode=True, **kw)
    return s, t, obs, info.info_hash


def test_a_request_flood_ends_the_connection() -> None:
    world = SimWorld(6)
    s, t, _, ih = _seed(world, choker=NeverUnchoke())  # it stays choked
    client = world.new_runtime("flooder")
    raw = RawPeer(ih)
    client.connect(s.listen_address, raw)  # type: ignore[arg-type]
    assert world.run_until(lambda: bool(t.links), 10)
    burst = [pw.Request(i % 4, 0, 16 * KIB) for i in range(MAX_REFUSED_PER_WINDOW + 500)]
    raw.send(*burst)
    assert world.run_until(lambda: raw.lost, 30)
    assert t.counters["flood_disconnects"] == 1
    # every request got exactly one answer before that (BEP 6: rejected)
    rejects = [m for m in raw.messages if isinstance(m, pw.RejectRequest)]
    assert rejects and len(rejects) <= len(burst)


def test_a_request_beyond_the_piece_ends_the_connection() -> None:
    world = SimWorld(8)
    s, t, _, ih = _seed(world)
    client = world.new_runtime("bad")
    raw = RawPeer(ih)
    client.connect(s.listen_address, raw)  # type: ignore[arg-type]
    assert world.run_until(lambda: bool(t.links), 10)
    raw.send(pw.Interested())
    assert world.run_until(lambda: any(isinstance(m, pw.Unchoke) for m in raw.messages), 20)
    raw.send(pw.Request(1, 32 * KIB - 100, 16 * KIB))  # runs past the end of piece 1
    assert world.run_until(lambda: raw.lost, 10)
    assert t.counters["bad_requests"] == 1
    assert not any(isinstance(m, pw.Piece) for m in raw.messages)


def test_metadata_that_does_not_hash_to_the_info_hash_is_refused() -> None:
    world = SimWorld(9)
    data = content(96 * KIB, b"meta")
    info = single_file(data, 16 * KIB, name="real.bin")
    fake_bytes = content(96 * KIB, b"fake")
    fake = single_file(fake_bytes, 16 * KIB, name="fake.bin")
    liar, _, _ = session(world, "liar", storage="memory")
    # a peer that answers for the real info-hash with another info dictionary
    liar._add(Torrent(liar, info_hash=info.info_hash, info=fake, name="fake.bin", tiers=(),
                      save_path=None, seed_mode=True, data=fake_bytes))
    liar.torrent(info.info_hash).start()  # type: ignore[union-attr]
    honest, _, _ = session(world, "honest", storage="memory")
    honest.add_torrent(info, data=data, seed_mode=True)
    leecher, _, _ = session(world, "leech", storage="memory")
    magnet = f"magnet:?xt=urn:btih:{info.info_hash.hex()}"
    t = leecher.add_magnet(magnet, peers=[liar.listen_address])  # type: ignore[list-item]
    assert world.run_until(lambda: t.counters["metadata_hash_failures"] == 1, 30)
    assert t.info is None and t.state is TorrentState.METADATA
    assert t.counters["banned_peers"] == 1  # it alone sent that metadata
    t.add_peers([honest.listen_address])  # type: ignore[list-item]
    assert world.run_until(lambda: t.complete, 30)
    assert t.info is not None and t.info.raw == info.raw and t.name == "real.bin"
    assert t.store is not None and t.store.storage.read(0, len(data)) == data


def test_metadata_fetcher_bookkeeping() -> None:
    import hashlib

    raw = content(40_000, b"info")
    f = MetadataFetcher(hashlib.sha1(raw).digest())
    assert not f.add_source("x", 0)  # nonsense sizes are refused
    assert f.add_source("a", len(raw)) and f.add_source("b", len(raw))
    assert not f.add_source("c", len(raw) + 1)  # disagrees with the first
    assert f.wanted("c", 0.0) == []
    assert f.wanted("a", 0.0) == [0, 1]  # two at a time per peer
    assert f.wanted("b", 0.0) == [2]
    f.rejected("b", 2)
    assert f.wanted("b", 1.0) == []  # b said no
    f.expire(100.0)  # a never answered: asked again
    assert f.wanted("a", 100.0) == [0, 1]
    assert f.received("a", 0, len(raw), raw[:16384]) is None
    assert f.received("a", 1, len(raw), raw[16384:32768]) is None
    assert f.wanted("a", 100.0) == [2]
    bad = bytes(len(raw) - 32768)
    assert f.received("a", 2, len(raw), bad) is None  # the hash fails: start over
    assert f.failed_senders == {"a"} and f.counters["metadata_hash_failed"] == 1
    assert f.wanted("a", 101.0) == [0, 1]
    f.received("a", 0, len(raw), raw[:16384])
    f.received("a", 1, len(raw), raw[16384:32768])
    f.wanted("a", 101.0)
    assert f.received("a", 2, len(raw), raw[32768:]) == raw and f.done


def test_a_dead_tracker_is_skipped_for_the_next_tier(tmp_path: Path) -> None:
    world = SimWorld(10)
    trt = world.new_runtime("tracker")
    tracker = Tracker(trt, TrackerConfig(host=world.host(trt), interval=300, udp_port=None))
    tracker.start()
    dead = f"http://{world.host(trt)}:1/announce"  # nobody listens there
    data = content(64 * KIB)
    info = single_file(data, 16 * KIB)
    meta = metainfo(info)
    meta = type(meta).create(info, trackers=[[dead], [tracker.announce_url or ""]])
    seeder, _, _ = session(world, "seed", storage="memory")
    seeder.add_torrent(meta, data=data, seed_mode=True)
    leecher, _, _ = session(world, "leech", storage="memory")
    t = leecher.add_torrent(meta)
    assert world.run_until(lambda: t.complete, 60)
    by_url = {tr.url: tr for tr in t.status().trackers}
    assert by_url[dead].failures >= 1 and by_url[dead].last_error
    assert by_url[tracker.announce_url].failures == 0  # type: ignore[index]
    assert t.counters["announce_failures"] >= 1 and t.counters["peers_from_tracker"] == 1
