"""Finding peers and metadata among peerlab peers in the simulator: a magnet
link resolved by BEP 9 metadata exchange, and peers learnt through PEX
(BEP 11) that no tracker told about."""

from __future__ import annotations

from swarmkit import content, session, single_file

from peerlab.overlays.bittorrent import TorrentState
from peerlab.runtime.worlds import SimWorld

KIB = 1024


def test_a_magnet_link_alone_is_enough() -> None:
    world = SimWorld(21)
    data = content(200 * KIB, b"mag")
    info = single_file(data, 16 * KIB, name="song.mp3")
    seeder, _, _ = session(world, "seed", storage="memory")
    seed = seeder.add_torrent(info, data=data, seed_mode=True)
    host, port = seeder.listen_address  # type: ignore[misc]
    magnet = f"magnet:?xt=urn:btih:{info.info_hash.hex()}&dn=a+name&x.pe={host}:{port}"
    leecher, _, obs = session(world, "leech", storage="memory")
    t = leecher.add_magnet(magnet)
    assert t.name == "a name" and t.state is TorrentState.METADATA and t.piece_map() == ""
    assert world.run_until(lambda: t.complete, 30)
    assert t.info is not None and t.info.info_hash == info.info_hash and t.name == "song.mp3"
    assert t.store is not None and t.store.storage.read(0, len(data)) == data
    pieces = -(-len(info.raw) // (16 * KIB))
    assert seed.counters["metadata_pieces_sent"] == pieces
    assert t.counters["metadata_received"] == 1
    states = [e["state"] for e in obs.named("bt.state")]
    assert states == ["metadata", "checking", "downloading", "seeding"]


def test_peers_learn_each_other_through_pex() -> None:
    world = SimWorld(22, up=100_000.0)  # slow enough to last a few PEX rounds
    data = content(512 * KIB, b"pex")
    info = single_file(data, 16 * KIB)
    seeder, _, _ = session(world, "seed", storage="memory", pex_interval=5.0)
    seeder.add_torrent(info, data=data, seed_mode=True)
    # two leechers that only know the seed
    a_s, _, _ = session(world, "a", storage="memory", pex_interval=5.0)
    b_s, _, _ = session(world, "b", storage="memory", pex_interval=5.0)
    a = a_s.add_torrent(info, peers=[seeder.listen_address])  # type: ignore[list-item]
    b = b_s.add_torrent(info, peers=[seeder.listen_address])  # type: ignore[list-item]

    def met() -> bool:
        return any(
            link.listen_address == b_s.listen_address or link.address == b_s.listen_address
            for link in a.links
        ) or any(link.listen_address == a_s.listen_address for link in b.links)

    assert world.run_until(met, 30)
    assert a.counters["pex_received"] + b.counters["pex_received"] >= 1
    assert a.counters["peers_from_pex"] + b.counters["peers_from_pex"] >= 1
    assert world.run_until(lambda: a.complete and b.complete, 60)


def test_a_seed_does_not_dial_a_seed_again() -> None:
    # Two seeds that met close the connection (nothing to trade); told of
    # each other again (PEX in a flash crowd, every minute), they stay apart.
    world = SimWorld(23)
    data = content(64 * KIB, b"seeds")
    info = single_file(data, 16 * KIB)
    a_s, _, _ = session(world, "a", storage="memory")
    b_s, _, _ = session(world, "b", storage="memory")
    a = a_s.add_torrent(info, data=data, seed_mode=True)
    b_s.add_torrent(info, data=data, seed_mode=True)
    assert a.add_peers([b_s.listen_address]) == 1  # type: ignore[list-item]
    assert world.run_until(lambda: a.counters["connections"] == 1 and not a.links, 10)
    assert a.add_peers([b_s.listen_address]) == 0  # type: ignore[list-item]
    world.run_for(5.0)
    assert a.counters["connections"] == 1


def test_a_torrent_dials_up_to_max_initiate_and_leaves_the_rest_to_incoming() -> None:
    world = SimWorld(24)
    data = content(256 * KIB, b"initiate")
    info = single_file(data, 16 * KIB)
    hub_s, _, _ = session(world, "hub", storage="memory", max_initiate=2,
                          max_peers_per_torrent=5, link={"up": 20_000.0})
    hub = hub_s.add_torrent(info, data=data, seed_mode=True)
    far = []
    for i in range(5):  # leechers that only the hub could tell of
        s, _, _ = session(world, f"far{i}", storage="memory")
        far.append(s.add_torrent(info))
    hub.add_peers([t.session.listen_address for t in far])  # type: ignore[misc]
    world.run_for(1.0)
    assert len(hub.links) == 2  # dialled two of five
    # leechers dialling in are taken, up to max_peers_per_torrent
    for i in range(3):
        s, _, _ = session(world, f"near{i}", storage="memory")
        s.add_torrent(info, peers=[hub_s.listen_address])  # type: ignore[list-item]
    world.run_for(1.0)
    assert len(hub.links) == 5 and sum(link.outgoing for link in hub.links) == 2
    assert hub.counters["refused_full"] == 0
