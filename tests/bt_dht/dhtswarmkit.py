"""Helpers of the trackerless-swarm tests: hosts running a DHT node and a
BitTorrent session that uses it, and a few plain DHT nodes to meet in."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from swarmkit import LT_SETTINGS

from peerlab.overlays.bittorrent import Session, SessionConfig
from peerlab.overlays.dht import DhtConfig, DhtNode
from peerlab.runtime.base import Address, RecordingObserver, Runtime
from peerlab.runtime.worlds import World


class Peer:
    """A host running a DHT node and a BitTorrent session that uses it."""

    def __init__(
        self,
        world: World,
        name: str,
        *,
        bootstrap: tuple[Address | None, ...] = (),
        dht_state: Path | None = None,
        **cfg: Any,
    ) -> None:
        self.obs = RecordingObserver(limit=20_000)
        self.runtime: Runtime = world.new_runtime(name, observer=self.obs)
        host = world.host(self.runtime)
        self.dht = DhtNode(
            self.runtime,
            DhtConfig(host=host, bootstrap=tuple(a for a in bootstrap if a is not None),
                      state_path=str(dht_state) if dht_state else None),
        )
        self.dht.start()  # before the session: its PORT messages carry the UDP port
        cfg.setdefault("listen_host", host)
        self.session = Session(self.runtime, SessionConfig(**cfg), dht=self.dht)
        self.session.start()

    def close(self) -> None:
        self.session.close()
        self.dht.close()


def routers(world: World, count: int) -> list[DhtNode]:
    """``count`` plain DHT nodes, the later ones bootstrapped from the first:
    the DHT the peers meet in."""
    nodes: list[DhtNode] = []
    for i in range(count):
        rt = world.new_runtime(f"router{i}")
        boot = nodes[0].address if nodes else None
        node = DhtNode(rt, DhtConfig(host=world.host(rt), bootstrap=(boot,) if boot else ()))
        node.start()
        nodes.append(node)
        # one at a time: a joining node queries every earlier one, which
        # verifies it and takes it into its table
        assert world.run_until(lambda i=i: all(len(n.routing_table) >= i for n in nodes), 30.0)
    assert world.run_until(lambda: all(len(n.routing_table) >= count - 1 for n in nodes), 30.0)
    return nodes


def joined(world: World, peer: Peer, nodes: int) -> None:
    """Run until ``peer``'s DHT node knows ``nodes`` others."""
    assert world.run_until(lambda: len(peer.dht.routing_table) >= nodes, 30.0)


def dht_network(world: World, count: int, stagger: float) -> list[DhtNode]:
    """``count`` DHT nodes joining through the first, ``stagger`` seconds
    apart (the larger DHTs of the simulator); returns once all joined."""
    first_rt = world.new_runtime("router0")
    first = DhtNode(first_rt, DhtConfig(host=world.host(first_rt)))
    first.start()
    boot = first.address
    assert boot is not None
    nodes = [first]
    for i in range(1, count):
        rt = world.new_runtime(f"router{i}")
        node = DhtNode(rt, DhtConfig(host=world.host(rt), bootstrap=(boot,)))
        rt.call_later(i * stagger, node.start)
        nodes.append(node)
    assert world.run_until(lambda: all(len(n.routing_table) >= 8 for n in nodes[1:]) if all(
        n.table is not None for n in nodes) else False, count * stagger + 60.0)  # fmt: skip
    return nodes


def lt() -> Any:
    """libtorrent (a test dependency; the tests that use it skip without it)."""
    return importlib.import_module("libtorrent")


def lt_dht_settings(bootstrap: Address) -> dict[str, Any]:
    return {
        **LT_SETTINGS,
        "enable_dht": True,
        "dht_bootstrap_nodes": f"{bootstrap[0]}:{bootstrap[1]}",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "alert_mask": lt().alert.category_t.peer_log_notification
        | lt().alert.category_t.error_notification,
    }


class LtDhtPeer:
    """A libtorrent session with its DHT on, bootstrapped to our node."""

    def __init__(self, bootstrap: Address) -> None:
        self.session = lt().session(lt_dht_settings(bootstrap))
        self.handle: Any = None
        self.peer_log: list[str] = []

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def poll(self) -> None:
        for a in self.session.pop_alerts():
            if isinstance(a, lt().peer_log_alert):
                self.peer_log.append(a.message())

    def add(self, torrent_bytes: bytes, save_path: Path, *, seed: bool = False) -> Any:
        atp = lt().add_torrent_params()
        atp.ti = lt().torrent_info(torrent_bytes)
        atp.save_path = str(save_path)
        atp.flags &= ~lt().torrent_flags.auto_managed
        atp.flags &= ~lt().torrent_flags.paused
        if seed:
            atp.flags |= lt().torrent_flags.seed_mode
        self.handle = self.session.add_torrent(atp)
        return self.handle

    def seeding(self) -> bool:
        self.poll()
        return bool(self.handle.status().is_seeding)

    def close(self) -> None:
        if self.handle is not None:
            self.session.remove_torrent(self.handle)
        self.session.pause()
