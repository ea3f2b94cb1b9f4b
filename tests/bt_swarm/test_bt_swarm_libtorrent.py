"""Interop of the swarm with libtorrent (the engine of qBittorrent and Deluge)
on 127.0.0.1 (issue 6, "Done when"): peerlab downloads from a libtorrent seed
(peers given directly, and through our tracker), libtorrent downloads from a
peerlab seed found through our UDP tracker, and a magnet link is resolved by
metadata exchange (BEP 9) from libtorrent.  Files compared byte for byte.

uTP, DHT, LSD, UPnP and NAT-PMP are off; everything listens on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmkit import (
    LT_SETTINGS,
    content,
    metainfo,
    multi_file,
    single_file,
    write_files,
    written,
)

from peerlab.overlays.bittorrent import Session, SessionConfig, TorrentState
from peerlab.overlays.tracker.server import Tracker, TrackerConfig
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import RealWorld
from peerlab.wire.metainfo import Info

lt: Any = pytest.importorskip("libtorrent", reason="libtorrent (PyPI) is a test dependency")

#: Seconds any one step may take; loopback needs well under one.
STEP_S = 30.0



#: libtorrent keeps BEP 15 connection ids process-wide per tracker address, and
#: every test's tracker answers at 127.0.0.1: they share one key, as trackers
#: behind one address must (tests/bt_tracker uses the same value).
SHARED_SECRET = b"peerlab tests: trackers at 127.0.0.1 share this key"[:32]

@pytest.fixture
def world() -> Iterator[RealWorld]:
    w = RealWorld()
    yield w
    w.close()


class LtPeer:
    """A libtorrent session with one torrent."""

    def __init__(self) -> None:
        self.session = lt.session(LT_SETTINGS)
        self.handle: Any = None

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def add(self, torrent_bytes: bytes, save_path: Path, *, seed: bool = False) -> Any:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(torrent_bytes)
        atp.save_path = str(save_path)
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        if seed:
            atp.flags |= lt.torrent_flags.seed_mode
        self.handle = self.session.add_torrent(atp)
        return self.handle

    def seeding(self) -> bool:
        return bool(self.handle.status().is_seeding)

    def close(self) -> None:
        if self.handle is not None:
            self.session.remove_torrent(self.handle)
        self.session.pause()


@pytest.fixture
def lt_peer() -> Iterator[LtPeer]:
    peer = LtPeer()
    yield peer
    peer.close()


def files_match(root: Path, info: Info, data: bytes) -> bool:
    for f in info.data_files:
        path = root.joinpath(*f.path)
        if not path.exists() or path.read_bytes() != data[f.offset : f.offset + f.length]:
            return False
    return True


def seeders(tracker: Tracker, info_hash: bytes) -> int:
    swarm = tracker.swarm(info_hash)
    return swarm.seeders if swarm is not None else 0


def completed(tracker: Tracker, info_hash: bytes) -> int:
    swarm = tracker.swarm(info_hash)
    return swarm.downloaded if swarm is not None else 0


def peerlab(world: RealWorld, tmp_path: Path, name: str, **cfg: Any) -> tuple[Session, Any]:
    obs = RecordingObserver()
    rt = world.new_runtime(name, observer=obs)
    s = Session(rt, SessionConfig(state_dir=tmp_path / f"{name}-state", **cfg))
    s.start()
    return s, obs


def test_peerlab_downloads_a_multi_file_torrent_from_a_libtorrent_seed(
    world: RealWorld, tmp_path: Path, lt_peer: LtPeer
) -> None:
    info, data = multi_file(
        [(("cd1", "01.bin"), content(300_000, b"1")), (("cd1", "02.bin"), content(77_777, b"2")),
         (("notes.txt",), content(5_000, b"3"))],
        65536,
    )
    seed_dir = tmp_path / "seed"
    write_files(seed_dir, info, data)
    lt_peer.add(metainfo(info).to_bytes(), seed_dir, seed=True)
    assert world.run_until(lt_peer.seeding, STEP_S)

    s, _ = peerlab(world, tmp_path, "leech")
    t = s.add_torrent(info, save_path=tmp_path / "leech", peers=[("127.0.0.1", lt_peer.port)])
    assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
    assert files_match(tmp_path / "leech", info, data)
    st = t.status()
    assert st.pieces_have == info.piece_count and st.left == 0
    assert t.counters["pieces_verified"] == info.piece_count
    assert t.counters["hash_failures"] == 0
    # everything came from libtorrent, and only once
    assert t.downloaded == info.total_size and t.wasted == 0


def test_peerlab_finds_a_libtorrent_seed_through_our_tracker(
    world: RealWorld, tmp_path: Path, lt_peer: LtPeer
) -> None:
    rt = world.new_runtime("tracker")
    tracker = Tracker(
        rt, TrackerConfig(host="127.0.0.1", interval=60, connection_secret=SHARED_SECRET)
    )
    tracker.start()
    assert tracker.announce_url is not None
    data = content(700_000)
    info = single_file(data, 32768)
    torrent = metainfo(info, [tracker.announce_url]).to_bytes()
    seed_dir = tmp_path / "seed"
    write_files(seed_dir, info, data)
    lt_peer.add(torrent, seed_dir, seed=True)
    assert world.run_until(lt_peer.seeding, STEP_S)
    # libtorrent announced itself as a seed
    assert world.run_until(lambda: seeders(tracker, info.info_hash) == 1, STEP_S)

    s, _ = peerlab(world, tmp_path, "leech")
    t = s.add_torrent(torrent, save_path=tmp_path / "leech")  # no peers given
    assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
    assert (tmp_path / "leech" / "payload.bin").read_bytes() == data
    assert t.counters["peers_from_tracker"] >= 1
    (tr,) = t.status().trackers
    assert tr.announces >= 2 and tr.failures == 0  # started, then completed
    # the tracker saw our completed event
    assert world.run_until(lambda: completed(tracker, info.info_hash) == 1, STEP_S)


def test_libtorrent_downloads_from_a_peerlab_seed_found_through_our_udp_tracker(
    world: RealWorld, tmp_path: Path, lt_peer: LtPeer
) -> None:
    rt = world.new_runtime("tracker")
    tracker = Tracker(
        rt, TrackerConfig(host="127.0.0.1", interval=60, connection_secret=SHARED_SECRET)
    )
    tracker.start()
    assert tracker.udp_url is not None
    data = content(900_000, b"udp")
    info = single_file(data, 65536)
    torrent = metainfo(info, [tracker.udp_url]).to_bytes()
    seed_dir = tmp_path / "seed"
    write_files(seed_dir, info, data)
    s, _ = peerlab(world, tmp_path, "seed")
    t = s.add_torrent(torrent, save_path=seed_dir)
    assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
    assert t.store is not None and t.store.counters["recheck_found"] == info.piece_count
    # we announced to the UDP tracker as a seed
    assert world.run_until(lambda: seeders(tracker, info.info_hash) == 1, STEP_S)

    leech_dir = tmp_path / "lt-leech"
    lt_peer.add(torrent, leech_dir)
    assert world.run_until(lt_peer.seeding, STEP_S)
    assert world.run_until(written(leech_dir / "payload.bin", data), STEP_S)
    # every block once, each through a seeding unchoke
    assert t.uploaded == info.total_size == t.counters["uploaded_seeding"]
    assert t.counters["blocks_sent"] == -(-info.total_size // 16384)


def test_a_magnet_link_is_resolved_from_libtorrent_by_metadata_exchange(
    world: RealWorld, tmp_path: Path, lt_peer: LtPeer
) -> None:
    data = content(600_000, b"magnet")
    info = single_file(data, 32768, name="from-a-magnet.bin")
    seed_dir = tmp_path / "seed"
    write_files(seed_dir, info, data)
    lt_peer.add(metainfo(info).to_bytes(), seed_dir, seed=True)
    assert world.run_until(lt_peer.seeding, STEP_S)
    magnet = f"magnet:?xt=urn:btih:{info.info_hash.hex()}&dn=x&x.pe=127.0.0.1:{lt_peer.port}"

    s, _ = peerlab(world, tmp_path, "leech")
    t = s.add_magnet(magnet, save_path=tmp_path / "leech")
    assert t.info is None and t.state is TorrentState.METADATA
    assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
    assert t.info is not None and t.info.raw == info.raw  # the info dictionary itself
    assert t.name == "from-a-magnet.bin"  # from the verified metadata, not dn=
    assert (tmp_path / "leech" / "from-a-magnet.bin").read_bytes() == data
    assert t.counters["metadata_received"] == 1
    assert t.counters["peers_from_magnet"] == 1
    # the metadata was kept: the same magnet added again needs no fetch
    assert (tmp_path / "leech-state" / f"{info.info_hash.hex()}.info").read_bytes() == info.raw


def test_libtorrent_resolves_a_magnet_from_a_peerlab_seed(
    world: RealWorld, tmp_path: Path, lt_peer: LtPeer
) -> None:
    data = content(400_000, b"ours")
    info = single_file(data, 16384)
    seed_dir = tmp_path / "seed"
    write_files(seed_dir, info, data)
    s, _ = peerlab(world, tmp_path, "seed")
    t = s.add_torrent(info, save_path=seed_dir, seed_mode=True)
    assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
    atp = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{info.info_hash.hex()}")
    atp.save_path = str(tmp_path / "lt")
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    lt_peer.handle = lt_peer.session.add_torrent(atp)
    lt_peer.handle.connect_peer(("127.0.0.1", s.listen_port))
    assert world.run_until(lt_peer.seeding, STEP_S)
    assert world.run_until(written(tmp_path / "lt" / "payload.bin", data), STEP_S)
    assert t.counters["metadata_pieces_sent"] >= 1
