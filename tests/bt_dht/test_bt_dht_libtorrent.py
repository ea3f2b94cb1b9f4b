"""Trackerless swarms with libtorrent (the engine of qBittorrent and Deluge)
on 127.0.0.1 (issue 6, "Done when": "a trackerless swarm found through the
DHT").  Torrents without any tracker:

1. libtorrent seeds, bootstrapped to our DHT; peerlab finds it with
   get_peers and downloads it, byte for byte;
2. peerlab seeds and announces; libtorrent finds it through the DHT and
   downloads it, byte for byte;
3. a magnet with no tracker and no peer address is resolved through the DHT
   and metadata exchange (BEP 9).

On every connection both ends set the DHT reserved bit and send PORT (BEP 5):
libtorrent's DHT node enters our routing table, and libtorrent logs our PORT.

libtorrent refuses by default what a loopback DHT needs: several nodes on one
IP (``dht_restrict_routing_ips``, ``dht_restrict_search_ips``), node ids not
derived from the IP (``dht_enforce_node_id``, ``dht_prefer_verified_node_ids``,
BEP 42) and addresses it considers dark (``dht_ignore_dark_internet``).  uTP,
LSD, UPnP and NAT-PMP are off; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dhtswarmkit import LtDhtPeer, Peer, joined, routers
from swarmkit import content, metainfo, single_file, write_files, written

from peerlab.overlays.bittorrent import TorrentState
from peerlab.overlays.dht import DhtNode
from peerlab.runtime.base import Address
from peerlab.runtime.worlds import RealWorld
from peerlab.wire.metainfo import Metainfo

lt: Any = pytest.importorskip("libtorrent", reason="libtorrent (PyPI) is a test dependency")

#: Seconds any one step may take; loopback needs a few at most (libtorrent
#: announces to the DHT once its own bootstrap is over).
STEP_S = 45.0
#: Our DHT nodes besides the peers' own: a small DHT to meet in.
ROUTERS = 4
#: Seconds between libtorrent ``force_dht_announce`` calls while we wait for
#: its announce (the first may come before its DHT has joined).
REANNOUNCE_S = 2.0


@pytest.fixture
def dht_world() -> Iterator[tuple[RealWorld, list[DhtNode]]]:
    w = RealWorld()
    rs = routers(w, ROUTERS)
    yield w, rs
    for n in rs:
        n.close()
    w.close()


def until_reannounced(world: RealWorld, lt_peer: LtDhtPeer, pred: Callable[[], bool]) -> bool:
    """Run until ``pred()``, asking libtorrent to announce its torrent to the
    DHT every few seconds (it skips announces while its DHT is joining)."""
    deadline = time.monotonic() + STEP_S
    while time.monotonic() < deadline:
        lt_peer.handle.force_dht_announce()
        if world.run_until(pred, REANNOUNCE_S):
            return True
        lt_peer.poll()
    return pred()


def stored_by(nodes: list[DhtNode], info_hash: bytes, address: Address) -> int:
    def holds(n: DhtNode) -> bool:
        return address in n.store.peers(info_hash, n.runtime.now(), 50, n.runtime.rng)

    return sum(1 for n in nodes if holds(n))


def trackerless(salt: bytes, size: int, piece_length: int) -> tuple[Metainfo, bytes]:
    data = content(size, salt)
    meta = metainfo(single_file(data, piece_length, name=f"{salt.decode()}.bin"))
    assert meta.trackers == ()
    return meta, data


def check_port_exchange(us: Peer, lt_peer: LtDhtPeer) -> None:
    """BEP 5 PORT both ways: libtorrent's DHT node (its UDP port is its
    listen port) entered our table; libtorrent logged our PORT message."""
    lt_node = ("127.0.0.1", lt_peer.port)
    assert us.session.counters["dht_nodes_from_peers"] >= 1
    assert us.session.counters["dht_ports_received"] >= 1
    assert us.dht.routing_table.find_address(lt_node) is not None
    assert us.dht.address is not None
    lt_peer.poll()
    # libtorrent's peer log: "==> DHT_PORT [ n ]" sent, "<== DHT_PORT [ p: n ]" received
    assert any("<== DHT_PORT" in line and f"p: {us.dht.address[1]} " in line
               for line in lt_peer.peer_log), lt_peer.peer_log[:40]  # fmt: skip


def lt_seed_in_dht(world: RealWorld, rs: list[DhtNode], lt_peer: LtDhtPeer,
                   meta: Metainfo, data: bytes, seed_dir: Path) -> None:  # fmt: skip
    """libtorrent seeds ``meta`` from ``seed_dir`` and its announce_peer
    reaches our DHT routers, under its TCP port."""
    write_files(seed_dir, meta.info, data)
    lt_peer.add(meta.to_bytes(), seed_dir, seed=True)
    assert world.run_until(lt_peer.seeding, STEP_S)
    address = ("127.0.0.1", lt_peer.port)
    assert until_reannounced(world, lt_peer,
                             lambda: stored_by(rs, meta.info.info_hash, address) >= 2)  # fmt: skip


def test_peerlab_finds_a_trackerless_libtorrent_seed_through_the_dht(
    dht_world: tuple[RealWorld, list[DhtNode]], tmp_path: Path
) -> None:
    world, rs = dht_world
    boot = rs[0].address
    meta, data = trackerless(b"lt-seed", 600_000, 32768)
    lt_peer = LtDhtPeer(boot)
    us: Peer | None = None
    try:
        lt_seed_in_dht(world, rs, lt_peer, meta, data, tmp_path / "seed")

        us = Peer(world, "us", bootstrap=(boot,), state_dir=tmp_path / "state")
        joined(world, us, ROUTERS)
        t = us.session.add_torrent(meta.to_bytes(), save_path=tmp_path / "us")  # no peers given
        assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
        assert (tmp_path / "us" / "lt-seed.bin").read_bytes() == data
        assert t.counters["peers_from_dht"] >= 1 and t.counters["peers_from_tracker"] == 0
        assert t.counters["pieces_verified"] == meta.info.piece_count
        assert t.counters["hash_failures"] == 0
        assert world.run_until(lambda: us is not None and us.session.counters[
            "dht_nodes_from_peers"] >= 1 and us.dht.routing_table.find_address(
            ("127.0.0.1", lt_peer.port)) is not None, STEP_S)  # fmt: skip
        check_port_exchange(us, lt_peer)
    finally:
        if us is not None:
            us.close()
        lt_peer.close()


def test_libtorrent_finds_a_trackerless_peerlab_seed_through_the_dht(
    dht_world: tuple[RealWorld, list[DhtNode]], tmp_path: Path
) -> None:
    world, rs = dht_world
    boot = rs[0].address
    meta, data = trackerless(b"our-seed", 700_000, 65536)
    ih = meta.info.info_hash
    seed_dir = tmp_path / "seed"
    write_files(seed_dir, meta.info, data)
    us = Peer(world, "us", bootstrap=(boot,), state_dir=tmp_path / "state")
    lt_peer = LtDhtPeer(boot)
    try:
        joined(world, us, ROUTERS)
        t = us.session.add_torrent(meta, save_path=seed_dir)
        assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
        src = us.session.dht_source(ih)
        assert src is not None
        assert world.run_until(lambda: src.last_stored is not None, STEP_S)
        assert stored_by(rs, ih, us.session.listen_address) >= 2  # type: ignore[arg-type]

        leech_dir = tmp_path / "lt-leech"
        lt_peer.add(meta.to_bytes(), leech_dir)
        assert until_reannounced(world, lt_peer, lt_peer.seeding)
        assert world.run_until(written(leech_dir / "our-seed.bin", data), STEP_S)
        assert t.uploaded == meta.info.total_size
        check_port_exchange(us, lt_peer)
    finally:
        us.close()
        lt_peer.close()


def test_a_trackerless_magnet_is_resolved_from_libtorrent_through_the_dht(
    dht_world: tuple[RealWorld, list[DhtNode]], tmp_path: Path
) -> None:
    world, rs = dht_world
    boot = rs[0].address
    meta, data = trackerless(b"lt-magnet", 400_000, 16384)
    ih = meta.info.info_hash
    lt_peer = LtDhtPeer(boot)
    us: Peer | None = None
    try:
        lt_seed_in_dht(world, rs, lt_peer, meta, data, tmp_path / "seed")

        us = Peer(world, "us", bootstrap=(boot,), state_dir=tmp_path / "state")
        joined(world, us, ROUTERS)
        magnet = f"magnet:?xt=urn:btih:{ih.hex()}"  # no tr=, no x.pe=
        t = us.session.add_magnet(magnet, save_path=tmp_path / "us")
        assert t.info is None and t.state is TorrentState.METADATA
        assert world.run_until(lambda: t.state is TorrentState.SEEDING, STEP_S)
        assert t.info is not None and t.info.raw == meta.info.raw
        assert t.name == "lt-magnet.bin"
        assert (tmp_path / "us" / "lt-magnet.bin").read_bytes() == data
        assert t.counters["peers_from_dht"] >= 1 and t.counters["metadata_received"] == 1
        assert t.counters["peers_from_magnet"] == 0
    finally:
        if us is not None:
            us.close()
        lt_peer.close()
