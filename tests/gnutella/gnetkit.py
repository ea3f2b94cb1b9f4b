"""Helpers for the servent tests: shares in memory, worlds, small networks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.runtime.base import Address, RecordingObserver, Runtime
from peerlab.runtime.worlds import RealWorld, SimWorld, World
from peerlab.wire.urn import sha1_urn

#: Virtual or real seconds a test waits for a network to settle, at most.
WAIT = 20.0


@dataclass(frozen=True)
class File:
    """A shared file as the servent sees one (duck-typed like the catalog's)."""

    index: int
    name: str
    size: int
    sha1: bytes
    title: str | None = None
    artist: str | None = None
    bitrate: int | None = None
    duration: float | None = None

    @property
    def urn(self) -> str:
        return sha1_urn(self.sha1)


def make_file(index: int, name: str, size: int = 1000, **tags: Any) -> File:
    return File(index, name, size, hashlib.sha1(name.encode()).digest(), **tags)


class Shares:
    """Shares in memory: every word of the query must be in the name."""

    def __init__(self, files: Sequence[File] = ()) -> None:
        self.files = list(files)
        self.searches = 0

    def search(self, text: str, *, limit: int = 100) -> list[File]:
        self.searches += 1
        words = text.lower().split()
        return [f for f in self.files if all(w in f.name.lower() for w in words)][:limit]

    def by_urn(self, urn: str) -> File | None:
        return next((f for f in self.files if f.urn == urn), None)

    def count(self) -> int:
        return len(self.files)

    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def make_world(kind: str, seed: int = 7) -> World:
    return RealWorld() if kind == "real" else SimWorld(seed=seed)


@dataclass
class Node:
    name: str
    runtime: Runtime
    servent: Servent
    shares: Shares
    observer: RecordingObserver

    @property
    def address(self) -> Address:
        return self.servent.address


def new_node(world: World, name: str, files: Sequence[File] = (), **cfg: Any) -> Node:
    """A started servent on its own runtime, listening on a free port."""
    obs = RecordingObserver(limit=20_000)
    rt = world.new_runtime(name, observer=obs)
    defaults: dict[str, Any] = {"listen_host": world.host(rt), "listen_port": 0,
                                "target_degree": 0}  # fmt: skip
    defaults.update(cfg)
    shares = Shares(files)
    servent = Servent(rt, ServentConfig(**defaults), shares)
    servent.start()
    return Node(name, rt, servent, shares, obs)


def link(world: World, a: Node, b: Node) -> None:
    """Connect ``a`` to ``b`` and wait until both see the connection open."""
    before_a, before_b = a.servent.open_count, b.servent.open_count
    assert a.servent.connect(b.address)
    assert world.run_until(
        lambda: a.servent.open_count > before_a and b.servent.open_count > before_b, WAIT
    ), f"{a.name} -> {b.name} did not open"


def line(world: World, n: int, files_of: Any = None, **cfg: Any) -> list[Node]:
    """``n`` servents in a line, node i connected to node i-1 only."""
    nodes = [new_node(world, f"n{i}", files_of(i) if files_of else (), **cfg) for i in range(n)]
    for i in range(1, n):
        link(world, nodes[i], nodes[i - 1])
    return nodes


def settle(world: World, nodes: Sequence[Node], seconds: float = 1.0) -> None:
    world.run_for(seconds)


def close_all(world: World, nodes: Sequence[Node]) -> None:
    for node in nodes:
        node.servent.close()
    world.run_for(0.2)


def internal_errors(nodes: Sequence[Node]) -> int:
    return sum(node.servent.counters["internal_errors"] for node in nodes)


class RawPeer:
    """A hand-driven Gnutella connection to a servent: it completes the
    handshake (no compression) and then sends whatever a test tells it,
    well-formed or not, and keeps everything it receives."""

    def __init__(
        self,
        world: World,
        name: str,
        target: Address,
        headers: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        from peerlab.proto.gnutella import ConnectionConfig, GnutellaConnection
        from peerlab.runtime.driver import StreamDriver

        self.world = world
        self.runtime = world.new_runtime(name)
        self.events: list[Any] = []
        self.closed: list[Exception | None] = []
        hdrs = list(headers) if headers is not None else [
            ("User-Agent", "rawpeer/1"), ("X-Ultrapeer", "True")]  # fmt: skip
        self.machine = GnutellaConnection.outgoing_connection(
            hdrs, now=self.runtime.now(), config=ConnectionConfig(handshake_timeout=600)
        )
        self.driver = StreamDriver(
            self.runtime, self.machine, self._on_event, on_closed=self.closed.append
        )
        self.runtime.connect(target, self.driver)

    def _on_event(self, ev: Any) -> None:
        from peerlab.proto.gnutella import ConnectionClosed, HandshakeResponse

        self.events.append(ev)
        if isinstance(ev, HandshakeResponse):
            self.machine.accept([])
        elif isinstance(ev, ConnectionClosed):
            self.driver.close()

    def wait_open(self) -> None:
        assert self.world.run_until(lambda: self.machine.is_open or bool(self.closed), WAIT)
        assert self.machine.is_open, f"handshake failed: {self.events}"

    def send(self, msg: Any, guid: bytes, ttl: int = 3, hops: int = 0) -> None:
        self.machine.send(msg, guid=guid, ttl=ttl, hops=hops)
        self.driver.flush()

    def send_raw(self, data: bytes) -> None:
        assert self.driver.stream is not None
        self.driver.stream.write(data)

    def received(self, kind: type) -> list[Any]:
        from peerlab.proto.gnutella import DescriptorReceived

        return [
            ev for ev in self.events
            if isinstance(ev, DescriptorReceived) and isinstance(ev.message, kind)
        ]  # fmt: skip

    def close(self) -> None:
        self.driver.close()


def hits_at_least(search: Any, n: int) -> Any:
    """A condition for ``run_until``: ``search`` got ``n`` hits or more."""
    return lambda: search.hits >= n
