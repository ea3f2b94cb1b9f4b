"""Helpers of the DHT tests: ids, nodes, a raw KRPC client, small networks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from peerlab.errors import RemoteProtocolError
from peerlab.overlays.dht import AnnounceResult, DhtConfig, DhtNode, LookupResult
from peerlab.runtime.base import Address, DatagramEndpoint, RecordingObserver, Runtime
from peerlab.runtime.worlds import DatagramRecorder, World
from peerlab.wire.krpc import Query, decode

#: Upper bound on any single wait, in the world's seconds.
WAIT_S = 30.0


def nid(n: int) -> bytes:
    """A 20-byte id with integer value ``n``."""
    return n.to_bytes(20, "big")


def top(byte: int, low: int = 0) -> bytes:
    """An id whose first byte is ``byte`` (the rest zero, plus ``low``)."""
    return nid((byte << 152) | low)


def start_node(
    world: World, name: str, **cfg: Any
) -> tuple[DhtNode, Runtime, RecordingObserver]:
    obs = RecordingObserver()
    rt = world.new_runtime(name, observer=obs)
    node = DhtNode(rt, DhtConfig(host=world.host(rt), **cfg))
    node.start()
    return node, rt, obs


class RawClient:
    """A bare UDP endpoint that sends hand-made datagrams and keeps replies."""

    def __init__(self, world: World, name: str = "raw") -> None:
        self.world = world
        self.runtime = world.new_runtime(name)
        self.recorder = DatagramRecorder()
        self.endpoint: DatagramEndpoint = self.runtime.bind_udp(
            (world.host(self.runtime), 0), self.recorder
        )

    @property
    def address(self) -> Address:
        return self.endpoint.address

    def send(self, data: bytes, to: Address) -> None:
        self.endpoint.send_to(data, to)

    def ask(self, data: bytes, to: Address, timeout: float = WAIT_S) -> bytes:
        """Send ``data`` and wait for the next answer (not a query of the
        node's own, such as its verification ping) from ``to``."""
        seen = len(self.recorder.datagrams)
        self.send(data, to)

        def answers() -> list[bytes]:
            return [d for d, a in self.recorder.datagrams[seen:] if a == to and not _is_query(d)]

        assert self.world.run_until(lambda: bool(answers()), timeout), "no reply"
        return answers()[0]

    def replies(self) -> list[bytes]:
        return [d for d, _ in self.recorder.datagrams]


def _is_query(data: bytes) -> bool:
    try:
        return isinstance(decode(data), Query)
    except RemoteProtocolError:
        return False


def wait_for(world: World, start: Callable[[Callable[[Any], None]], Any],
             timeout: float = WAIT_S) -> Any:  # fmt: skip
    """Start something with a ``done`` callback and run until it fires once."""
    out: list[Any] = []
    start(out.append)
    assert world.run_until(lambda: bool(out), timeout), "no callback in time"
    return out[0]


def build_network(
    world: World,
    count: int,
    *,
    stagger: float = 0.2,
    observer: Any = None,
    **cfg: Any,
) -> list[DhtNode]:
    """``count`` nodes; node 0 starts first, every other one joins through it
    ``stagger`` seconds after the one before.  Returns once all joined."""
    nodes = []
    for i in range(count):
        rt = world.new_runtime(f"dht{i}", observer=observer)
        nodes.append(DhtNode(rt, DhtConfig(host=world.host(rt), **cfg)))
    nodes[0].start()
    boot = nodes[0].address
    assert boot is not None
    joined: list[LookupResult] = []
    for i, node in enumerate(nodes[1:], 1):

        def join(node: DhtNode = node) -> None:
            node.start()
            node.bootstrap([boot], joined.append)

        nodes[i].runtime.call_later(i * stagger, join)
    assert world.run_until(lambda: len(joined) == count - 1, count * stagger + WAIT_S)
    return nodes


@dataclass
class Scenario:
    """What :func:`announce_and_find` saw."""

    announced: list[int]  # nodes that stored each announce
    lookups: list[tuple[bytes, LookupResult]]  # (info-hash, get_peers result)

    @property
    def found(self) -> int:
        return sum(1 for _, r in self.lookups if r.peers)

    @property
    def success_rate(self) -> float:
        return self.found / len(self.lookups)

    @property
    def mean_hops(self) -> float:
        return sum(r.hops for _, r in self.lookups) / len(self.lookups)


def announce_and_find(
    world: World,
    nodes: list[DhtNode],
    *,
    torrents: int,
    getters: int,
    seed: int,
    timeout: float = 120.0,
) -> Scenario:
    """``torrents`` random info-hashes, each announced by one random node on
    port 7000 + i, then looked up by ``getters`` other random nodes."""
    rng = random.Random(seed)
    hashes = [rng.randbytes(20) for _ in range(torrents)]
    announced: list[AnnounceResult] = []
    expected: dict[bytes, Address] = {}
    for i, ih in enumerate(hashes):
        node = rng.choice(nodes)
        assert node.address is not None
        expected[ih] = (node.address[0], 7000 + i)
        node.announce(ih, 7000 + i, announced.append)
    assert world.run_until(lambda: len(announced) == torrents, timeout), "announces hang"
    lookups: list[tuple[bytes, LookupResult]] = []
    for ih in hashes:
        for node in rng.sample(nodes, getters):
            node.get_peers(ih, None, partial(lambda ih, r: lookups.append((ih, r)), ih))
    total = torrents * getters
    assert world.run_until(lambda: len(lookups) == total, timeout), "lookups hang"
    for ih, r in lookups:
        # Whatever was found is the one peer announced for that hash.
        assert r.peers in ((), (expected[ih],))
    return Scenario([a.stored for a in announced], lookups)
