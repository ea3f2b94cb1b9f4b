"""The session the node drives: one listener shared by torrents (routed by
info-hash), stop and start again without fetching verified pieces twice,
status with per-peer detail and the piece map, announces from started to
stopped, private torrents kept out of PEX (BEP 27)."""

from __future__ import annotations

from pathlib import Path

from swarmkit import content, metainfo, session, single_file

from peerlab.overlays.bittorrent import TorrentState
from peerlab.overlays.tracker.server import Tracker, TrackerConfig
from peerlab.runtime.worlds import SimWorld
from peerlab.wire.metainfo import Info

KIB = 1024


def test_one_listener_serves_every_torrent_by_info_hash() -> None:
    world = SimWorld(31)
    x_data, y_data = content(100 * KIB, b"x"), content(150 * KIB, b"y")
    x, y = single_file(x_data, 16 * KIB, "x.bin"), single_file(y_data, 16 * KIB, "y.bin")
    z = single_file(content(50 * KIB, b"z"), 16 * KIB, "z.bin")
    seeder, _, _ = session(world, "seed", storage="memory")
    seeder.add_torrent(x, data=x_data, seed_mode=True)
    seeder.add_torrent(y, data=y_data, seed_mode=True)
    where = [seeder.listen_address]
    a, _, _ = session(world, "a", storage="memory")
    b, _, _ = session(world, "b", storage="memory")
    c, _, _ = session(world, "c", storage="memory")
    ta = a.add_torrent(x, peers=where)  # type: ignore[arg-type]
    tb = b.add_torrent(y, peers=where)  # type: ignore[arg-type]
    tc = c.add_torrent(z, peers=where)  # type: ignore[arg-type]  # not served there
    assert world.run_until(lambda: ta.complete and tb.complete, 30)
    assert ta.store is not None and ta.store.storage.read(0, len(x_data)) == x_data
    assert tb.store is not None and tb.store.storage.read(0, len(y_data)) == y_data
    assert world.run_until(lambda: tc.counters["connect_failures"] >= 1, 30)
    assert seeder.counters["unknown_info_hash"] >= 1 and not tc.links
    st = seeder.status()
    assert {t.name for t in st.torrents} == {"x.bin", "y.bin"}
    assert st.listen_address == seeder.listen_address


def test_stop_and_start_again_fetches_only_what_is_missing(tmp_path: Path) -> None:
    world = SimWorld(32, up=100_000.0)
    data = content(400 * KIB, b"stop")
    info = single_file(data, 16 * KIB)
    seeder, _, _ = session(world, "seed", storage="memory")
    seeder.add_torrent(info, data=data, seed_mode=True)
    leecher, _, _ = session(world, "leech", state_dir=tmp_path / "state")
    t = leecher.add_torrent(info, save_path=tmp_path / "dl",
                            peers=[seeder.listen_address])  # type: ignore[list-item]
    assert world.run_until(lambda: t.store is not None and t.store.have.count >= 8, 60)
    stopped: list[bool] = []
    t.stop(lambda: stopped.append(True))
    assert world.run_until(lambda: bool(stopped) and not t.links, 10)
    assert t.state is TorrentState.STOPPED
    had = t.counters["pieces_verified"]
    assert 8 <= had < info.piece_count
    t.add_peers([seeder.listen_address])  # type: ignore[list-item]
    t.start()
    assert world.run_until(lambda: t.complete, 60)
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == data
    assert t.store is not None and t.store.counters["resume_trusted"] == had
    assert t.counters["pieces_verified"] == info.piece_count  # each piece once in all
    assert t.counters["blocks_received"] == info.piece_count


def test_status_shows_peers_the_piece_map_and_the_announces() -> None:
    world = SimWorld(33, up=50_000.0)
    trt = world.new_runtime("tracker")
    tracker = Tracker(trt, TrackerConfig(host=world.host(trt), interval=60, udp_port=None))
    tracker.start()
    data = content(200 * KIB, b"status")
    info = single_file(data, 16 * KIB)
    meta = metainfo(info, [tracker.announce_url or ""])
    seeder, _, _ = session(world, "seed", storage="memory")
    seeder.add_torrent(meta, data=data, seed_mode=True)
    leecher, _, _ = session(world, "leech", storage="memory")
    t = leecher.add_torrent(meta)
    assert world.run_until(lambda: t.store is not None and 3 <= t.store.have.count, 60)
    st = t.status()
    assert st.state == "downloading" and 0 < st.progress < 1 and st.left
    assert len(st.piece_map) == info.piece_count and st.piece_map.count("#") == st.pieces_have
    assert set(st.piece_map) <= {"#", ">", "."}  # the seed has every piece
    (peer,) = st.peers
    assert peer.seed and peer.direction == "out" and peer.source == "tracker"
    assert peer.client == "peerlab 0.1.0" and peer.fast and "ut_metadata" in peer.extensions
    assert peer.am_interested and not peer.peer_choking and peer.requests_out > 0
    assert peer.downloaded > 0 and peer.pieces == info.piece_count
    swarm = tracker.swarm(info.info_hash)
    assert swarm is not None and (swarm.seeders, swarm.leechers) == (1, 1)
    assert world.run_until(lambda: t.complete, 60)
    assert world.run_until(lambda: tracker.swarm(info.info_hash).downloaded == 1, 10)  # type: ignore[union-attr]
    closed: list[bool] = []
    leecher.close(lambda: closed.append(True))
    assert world.run_until(lambda: bool(closed), 10)
    swarm = tracker.swarm(info.info_hash)
    assert swarm is not None and (swarm.seeders, swarm.leechers) == (1, 0)  # stopped
    (tr,) = t.status().trackers
    assert tr.announces == 3 and tr.failures == 0  # started, completed, stopped


def test_private_torrents_stay_out_of_pex() -> None:
    world = SimWorld(34, up=100_000.0)
    data = content(300 * KIB, b"private")
    base = single_file(data, 16 * KIB)
    info = Info.create("payload.bin", 16 * KIB, base.pieces, length=len(data), private=True)
    seeder, _, _ = session(world, "seed", storage="memory", pex_interval=2.0)
    seed = seeder.add_torrent(info, data=data, seed_mode=True)
    a_s, _, _ = session(world, "a", storage="memory", pex_interval=2.0)
    b_s, _, _ = session(world, "b", storage="memory", pex_interval=2.0)
    a = a_s.add_torrent(info, peers=[seeder.listen_address])  # type: ignore[list-item]
    b = b_s.add_torrent(info, peers=[seeder.listen_address])  # type: ignore[list-item]
    assert world.run_until(lambda: a.complete and b.complete, 60)
    assert seed.counters["pex_sent"] == 0
    assert a.counters["peers_from_pex"] == b.counters["peers_from_pex"] == 0


def test_announces_follow_the_tracker_interval() -> None:
    world = SimWorld(35)
    trt = world.new_runtime("tracker")
    tracker = Tracker(trt, TrackerConfig(host=world.host(trt), interval=30, min_interval=20,
                                         udp_port=None))
    tracker.start()
    data = content(32 * KIB, b"interval")
    info = single_file(data, 16 * KIB)
    seeder, _, _ = session(world, "seed", storage="memory")
    seed = seeder.add_torrent(metainfo(info, [tracker.announce_url or ""]), data=data,
                              seed_mode=True)
    world.run_for(100.0)
    (tr,) = seed.status().trackers
    # started at 0, then every 30 s: 30, 60, 90
    assert tr.announces == 4 and tr.failures == 0
    assert tracker.swarm(info.info_hash) is not None
