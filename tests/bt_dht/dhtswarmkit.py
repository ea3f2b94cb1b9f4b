"""Helpers of the trackerless-swarm tests: hosts running a DHT node and a
BitTorrent session that uses it, and a few plain DHT nodes to meet in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
