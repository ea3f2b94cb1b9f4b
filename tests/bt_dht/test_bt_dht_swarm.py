"""Trackerless swarms (issue 6, item 5 and "Done when"): torrents with no
tracker find each other through the mainline DHT (BEP 5) with get_peers and
announce_peer, the handshake's DHT bit and the PORT message put peers' DHT
nodes into each other's routing tables, and a magnet with no tracker is
resolved through the DHT and metadata exchange (BEP 9).  The same test
bodies run on 127.0.0.1 and in the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from dhtswarmkit import Peer, dht_network, joined, routers
from swarmkit import content, metainfo, single_file

from peerlab.overlays.bittorrent import TorrentState
from peerlab.overlays.bittorrent.dht import DHT_RETRY_MAX, DHT_RETRY_MIN
from peerlab.runtime.worlds import SimWorld, World
from peerlab.wire.metainfo import Info, Metainfo

KIB = 1024
#: Seconds any one step may take (world seconds: real or simulated).
STEP_S = 30.0


def _swarm_torrent(salt: bytes) -> tuple[Metainfo, bytes]:
    data = content(200 * KIB + 17, salt)
    return metainfo(single_file(data, 16 * KIB)), data


def test_a_trackerless_swarm_meets_through_the_dht(world: World) -> None:
    rs = routers(world, 4)
    boot = (rs[0].address,)
    meta, data = _swarm_torrent(b"trackerless")
    assert meta.trackers == () and meta.announce is None
    ih = meta.info.info_hash
    seed = Peer(world, "seed", bootstrap=boot, storage="memory")
    leechers: list[Peer] = []
    try:
        joined(world, seed, len(rs))
        s = seed.session.add_torrent(meta, data=data, seed_mode=True)
        src = seed.session.dht_source(ih)
        assert src is not None
        # the seed announced its listen port to the nodes closest to the info-hash
        assert world.run_until(lambda: src.last_stored is not None, STEP_S)
        assert src.last_stored is not None and src.last_stored >= 2
        listen = seed.session.listen_address
        holders = [n for n in rs if listen in n.store.peers(ih, n.runtime.now(), 50,
                                                            n.runtime.rng)]  # fmt: skip
        assert holders

        leechers = [Peer(world, f"leech{i}", bootstrap=boot, storage="memory")
                    for i in range(3)]  # fmt: skip
        torrents = [p.session.add_torrent(meta) for p in leechers]
        assert world.run_until(lambda: all(t.complete for t in torrents), STEP_S)
        for t in torrents:
            assert t.store is not None and t.store.storage.read(0, len(data)) == data
            assert t.counters["peers_from_dht"] >= 1
            assert t.counters["peers_from_tracker"] == 0
            assert t.counters["dht_lookups"] >= 1 and t.counters["dht_announces"] >= 1
            assert t.status().trackers == ()
        assert s.uploaded >= len(data)
        # every connection had the DHT bit on both ends and sent PORT:
        # the seed heard one PORT per leecher and pinged those DHT nodes
        assert seed.session.counters["dht_nodes_from_peers"] >= 1
        for p in leechers:
            assert p.session.counters["dht_nodes_from_peers"] >= 1
            st = p.session.status()
            assert st.dht_nodes is not None and st.dht_nodes >= 1
    finally:
        for p in [seed, *leechers]:
            p.close()
        for n in rs:
            n.close()


def test_port_messages_put_each_peer_dht_node_in_the_other_table(world: World) -> None:
    # Two DHT nodes that know nobody: only the PORT messages can introduce them.
    data = content(50 * KIB, b"port")
    info = single_file(data, 16 * KIB)
    a = Peer(world, "a", storage="memory")
    b = Peer(world, "b", storage="memory")
    try:
        assert len(a.dht.routing_table) == 0 and len(b.dht.routing_table) == 0
        a.session.add_torrent(info, data=data, seed_mode=True)
        t = b.session.add_torrent(info, peers=[a.session.listen_address])  # type: ignore[list-item]
        assert world.run_until(lambda: t.complete, STEP_S)
        assert a.dht.address is not None and b.dht.address is not None

        def introduced() -> bool:
            return (a.dht.routing_table.find_address(b.dht.address) is not None
                    and b.dht.routing_table.find_address(a.dht.address) is not None)  # type: ignore[arg-type]  # fmt: skip

        assert world.run_until(introduced, STEP_S)
        assert a.session.counters["dht_nodes_from_peers"] == 1
        assert b.session.counters["dht_nodes_from_peers"] == 1
        assert a.obs.counters["dht.queries_sent.ping"] >= 1
    finally:
        a.close()
        b.close()


def test_a_magnet_with_no_tracker_is_resolved_through_the_dht(world: World) -> None:
    rs = routers(world, 3)
    boot = (rs[0].address,)
    meta, data = _swarm_torrent(b"magnet")
    ih = meta.info.info_hash
    seed = Peer(world, "seed", bootstrap=boot, storage="memory")
    leech = Peer(world, "leech", bootstrap=boot, storage="memory")
    try:
        joined(world, seed, len(rs))
        seed.session.add_torrent(meta, data=data, seed_mode=True)
        src = seed.session.dht_source(ih)
        assert src is not None
        assert world.run_until(lambda: src.last_stored is not None, STEP_S)
        t = leech.session.add_magnet(f"magnet:?xt=urn:btih:{ih.hex()}")
        assert t.info is None and t.state is TorrentState.METADATA
        assert world.run_until(lambda: t.complete, STEP_S)
        assert t.info is not None and t.info.raw == meta.info.raw
        assert t.store is not None and t.store.storage.read(0, len(data)) == data
        assert t.counters["peers_from_dht"] >= 1 and t.counters["metadata_received"] == 1
    finally:
        seed.close()
        leech.close()
        for n in rs:
            n.close()


def test_private_torrents_stay_off_the_dht(world: World) -> None:
    data = content(40 * KIB, b"private")
    info = Info.create("p.bin", 16 * KIB, single_file(data, 16 * KIB).pieces, length=len(data),
                       private=True)  # fmt: skip
    a = Peer(world, "a", storage="memory")
    b = Peer(world, "b", storage="memory")
    try:
        a.session.add_torrent(info, data=data, seed_mode=True)
        t = b.session.add_torrent(info, peers=[a.session.listen_address])  # type: ignore[list-item]
        assert a.session.dht_source(info.info_hash) is None
        assert b.session.dht_source(info.info_hash) is None
        assert world.run_until(lambda: t.complete, STEP_S)
        assert t.counters["dht_lookups"] == 0
        # the PORT messages arrived but their nodes were not pinged (BEP 27)
        assert b.session.counters["dht_nodes_from_peers"] == 0
        assert len(a.dht.routing_table) == 0 and len(b.dht.routing_table) == 0
    finally:
        a.close()
        b.close()


def test_lookups_are_retried_with_backoff_and_stop_with_the_torrent() -> None:
    world = SimWorld(3)
    # a DHT node that knows nobody: every lookup ends unanswered
    p = Peer(world, "alone", storage="memory")
    meta, data = _swarm_torrent(b"alone")
    t = p.session.add_torrent(meta)
    src = p.session.dht_source(meta.info.info_hash)
    assert src is not None
    world.run_for(1.0)
    assert src.lookups == 1 and t.counters["dht_lookups_unanswered"] == 1
    # retries 5, 10, 20, 40, ... seconds apart (at 5, 15, 35, 75, ...)
    world.run_for(DHT_RETRY_MIN * (1 + 2 + 4))  # now 36 s
    assert src.lookups == 4
    world.run_for(DHT_RETRY_MIN * 8)  # now 76 s
    assert src.lookups == 5
    world.run_for(3600.0)
    # past the cap, one every DHT_RETRY_MAX seconds
    assert src.lookups <= 5 + 3600.0 / DHT_RETRY_MAX + 1
    # a stopped torrent looks up nothing more
    t.stop()
    assert p.session.dht_source(meta.info.info_hash) is None and src.closed
    before = src.lookups
    world.run_for(3600.0)
    assert src.lookups == before
    # started again: a fresh source
    t.start()
    again = p.session.dht_source(meta.info.info_hash)
    assert again is not None and again is not src
    p.close()
    world.close()


def test_a_restarted_dht_node_rejoins_from_its_saved_table(tmp_path: Path) -> None:
    world = SimWorld(9, latency=0.01)
    rs = routers(world, 4)
    state = tmp_path / "dht.state"
    meta, data = _swarm_torrent(b"restart")
    seed = Peer(world, "seed", bootstrap=(rs[0].address,), storage="memory")
    seed.session.add_torrent(meta, data=data, seed_mode=True)
    src = seed.session.dht_source(meta.info.info_hash)
    assert src is not None
    assert world.run_until(lambda: src.last_stored is not None, STEP_S)
    first = Peer(world, "first", bootstrap=(rs[0].address,), dht_state=state, storage="memory")
    assert world.run_until(lambda: len(first.dht.routing_table) >= 3, STEP_S)
    node_id = first.dht.node_id
    first.close()  # saves the table
    assert state.exists()
    # no bootstrap node given this time: the saved table is enough
    again = Peer(world, "again", dht_state=state, storage="memory")
    assert again.dht.node_id == node_id
    t = again.session.add_torrent(meta)
    assert world.run_until(lambda: t.complete, STEP_S)
    assert t.store is not None and t.store.storage.read(0, len(data)) == data
    assert t.counters["peers_from_dht"] >= 1
    for p in (seed, again):
        p.close()
    world.close()


def _sim_flash_crowd(seed: int) -> tuple[str, list[int], int, int]:
    """A 150-node DHT, one seed and 20 leechers arriving over 10 s, each
    bootstrapped from a different node; the torrent has no tracker."""
    world = SimWorld(seed, up=400_000.0, down=2_000_000.0, latency=0.02)
    rs = dht_network(world, 150, stagger=0.05)
    meta, data = _swarm_torrent(b"crowd")
    seed_peer = Peer(world, "seed", bootstrap=(rs[1].address,), storage="memory")
    joined(world, seed_peer, 8)
    s = seed_peer.session.add_torrent(meta, data=data, seed_mode=True)
    crowd: list[Peer] = []
    torrents = []
    for i in range(20):
        p = Peer(world, f"leech{i}", bootstrap=(rs[7 * i + 2].address,), storage="memory")
        crowd.append(p)
        t = p.session.add_torrent(meta, start=False)
        p.runtime.call_later(0.5 * i, t.start)
        torrents.append(t)
    assert world.run_until(lambda: all(t.complete for t in torrents), 300.0)
    for t in torrents:
        assert t.store is not None and t.store.storage.read(0, len(data)) == data
        assert t.counters["peers_from_tracker"] == 0
    total = sum(t.downloaded for t in torrents)
    return (world.sim.trace_digest(), [t.counters["peers_from_dht"] for t in torrents],
            s.uploaded, total)  # fmt: skip


@pytest.mark.slow  # two runs of a 170-host simulation: ~7 s on an idle machine
def test_a_trackerless_flash_crowd_in_a_simulated_dht() -> None:
    digest, found, seed_up, total = _sim_flash_crowd(21)
    assert total >= 20 * (200 * KIB)
    # the leechers found each other through the DHT (a few of the earliest
    # only by being found: their peers dialled them), not only the seed
    assert sum(1 for f in found if f >= 1) >= 15
    assert sum(found) > 2 * len(found)
    # and served each other: the seed uploaded well under what was downloaded
    assert seed_up < 0.5 * total
    # the same seed gives the same run
    assert _sim_flash_crowd(21)[0] == digest


def test_a_dht_node_started_after_the_session_is_still_announced_by_port() -> None:
    from peerlab.overlays.bittorrent import Session, SessionConfig
    from peerlab.overlays.dht import DhtConfig, DhtNode

    world = SimWorld(4, latency=0.01)
    a = Peer(world, "a", storage="memory")
    rt = world.new_runtime("late")
    late_dht = DhtNode(rt, DhtConfig(host=world.host(rt)))
    late = Session(rt, SessionConfig(listen_host=world.host(rt), storage="memory"), dht=late_dht)
    late.start()
    assert late.peer_config.dht and late.peer_config.dht_port is None
    late_dht.start()  # after the session
    data = content(40 * KIB, b"late")
    info = single_file(data, 16 * KIB)
    a.session.add_torrent(info, data=data, seed_mode=True)
    t = late.add_torrent(info, peers=[a.session.listen_address])  # type: ignore[list-item]
    assert late.peer_config.dht_port == late_dht.address[1]  # type: ignore[index]
    assert world.run_until(lambda: t.complete, STEP_S)
    assert world.run_until(
        lambda: a.dht.routing_table.find_address(late_dht.address) is not None, STEP_S  # type: ignore[arg-type]
    )
    late.close()
    late_dht.close()
    a.close()
    world.close()


def test_the_dht_works_beside_a_tracker_that_is_down(world: World) -> None:
    rs = routers(world, 3)
    boot = (rs[0].address,)
    data = content(100 * KIB, b"beside")
    # a tracker on the routers' host where nothing listens on TCP
    dead = f"http://{rs[1].address[0]}:9/announce"  # type: ignore[index]
    meta = metainfo(single_file(data, 16 * KIB), [dead])
    seed = Peer(world, "seed", bootstrap=boot, storage="memory")
    leech = Peer(world, "leech", bootstrap=boot, storage="memory")
    try:
        joined(world, seed, len(rs))
        seed.session.add_torrent(meta, data=data, seed_mode=True)
        src = seed.session.dht_source(meta.info.info_hash)
        assert src is not None
        assert world.run_until(lambda: src.last_stored is not None, STEP_S)
        t = leech.session.add_torrent(meta)
        assert world.run_until(lambda: t.complete, STEP_S)
        assert t.store is not None and t.store.storage.read(0, len(data)) == data
        assert t.counters["peers_from_dht"] >= 1 and t.counters["peers_from_tracker"] == 0
        (tracker,) = t.status().trackers
        assert tracker.url == dead and tracker.failures >= 1
    finally:
        seed.close()
        leech.close()
        for n in rs:
            n.close()
