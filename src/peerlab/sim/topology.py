"""Build a Gnutella network of real servents inside one :class:`Simulator`.

The scenario engine (:mod:`peerlab.simulate`), the benchmarks and the tests
all need the same thing, and all take it from here:
N :class:`~peerlab.overlays.gnutella.servent.Servent` objects (the very class
the daemon runs), each on its own simulated host with an access link of some
class, wired into a chosen overlay topology, with shares to answer queries::

    sim = Simulator(seed=1)
    net = GnutellaNetwork(sim, 1000, link_class=LINK_CLASSES["cable"],
                          config={"pong_caching": False})
    net.connect(random_edges(1000, degree=4, rng=random.Random(1)))
    guid = net.search(0, "file-17", ttl=4)          # node 0 floods a Query
    sim.run(sim.now + 30)
    net.deliveries()   # descriptors handed to servents so far

*A message delivery* is one Gnutella descriptor handed to a servent: one
``DescriptorReceived`` that reached :meth:`Servent._on_descriptor`, counted by
the servent itself in ``Link.messages_in`` (the ``rx.*`` counters).  This is
what :meth:`GnutellaNetwork.deliveries` sums and what the ``sim`` benchmark
divides by wall time.

Topologies are edge lists ``[(a, b), ...]`` of node indices, ``a`` dialling
``b``; :func:`random_edges`, :func:`ring_edges`, :func:`line_edges` make the
usual ones from an explicit :class:`random.Random` (same seed, same graph).

Here too live the pieces every simulated network shares: the one table of
access link classes (:data:`LINK_CLASSES`), the one address scheme
(:func:`node_ip` for nodes, :func:`server_ip` for servers, from
:mod:`peerlab.sim.addresses`) and the shares a
simulated peer holds (:class:`SimFile`, :class:`MemoryShares`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from peerlab.errors import ConfigError
from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.runtime.base import Address, Observer
from peerlab.sim.addresses import MAX_NODE_INDEX, node_ip, server_ip
from peerlab.sim.collector import frozen
from peerlab.sim.engine import Simulator
from peerlab.sim.net import SimHost
from peerlab.wire.urn import sha1_urn

#: The Gnutella port every simulated servent listens on (hosts have their own IPs).
GNUTELLA_PORT = 6346

#: Virtual seconds :meth:`GnutellaNetwork.connect` waits for every link to open.
CONNECT_TIMEOUT = 120.0

#: Connections one node dials at once while the network is built: a servent
#: handshakes with at most ``max_connecting`` peers at a time.
DIAL_BATCH = 4

#: Virtual seconds a built network runs before its queries start (the
#: handshake pings and their pongs settle).
SETTLE = 5.0
#: Virtual seconds :func:`flood_scenario` runs after its last query: far
#: beyond a reply's round trip over TTL hops of the slowest link class.
DRAIN = 20.0


@dataclass(frozen=True, slots=True)
class LinkClass:
    """An access link: ``up``/``down`` in bytes/s, one-way ``latency`` in
    seconds (the access link's share of a path), per-direction packet
    ``loss`` (a probability)."""

    name: str
    up: float
    down: float
    latency: float
    loss: float = 0.0


def _kbit(k: float) -> float:
    """``k`` kbit/s in bytes/s."""
    return k * 1000 / 8


#: The one table of link classes: the scenario engine's, the BitTorrent
#: experiment's and the ``sim`` benchmark's.  The lecture's screenshots'
#: link speeds (Napster's link speed column, gtk-gnutella's): modems V.32bis
#: (14.4 kbit/s both ways) and V.90 (56 kbit/s down, V.34's 33.6 kbit/s up);
#: ADSL and cable of the early 2000s, 1.5 and 3 Mbit/s down with 128 and 384
#: kbit/s up; a T1, 1.544 Mbit/s both ways.  Latencies (one way, the access
#: link's share): a modem's compression and framing ~100-150 ms, DSL
#: interleaving ~25 ms.  These figures made the committed report: changing
#: one changes its digests.
LINK_CLASSES: dict[str, LinkClass] = {
    lc.name: lc
    for lc in (
        LinkClass("modem14k", up=_kbit(14.4), down=_kbit(14.4), latency=0.150),
        LinkClass("modem56k", up=_kbit(33.6), down=_kbit(56.0), latency=0.100),
        LinkClass("dsl", up=_kbit(128), down=_kbit(1500), latency=0.025),
        LinkClass("cable", up=_kbit(384), down=_kbit(3000), latency=0.020),
        LinkClass("t1", up=_kbit(1544), down=_kbit(1544), latency=0.010),
        # An index server or tracker in a data centre: a T3 (45 Mbit/s).
        LinkClass("server", up=_kbit(45_000), down=_kbit(45_000), latency=0.005),
    )
}


# ------------------------------------------------------------------ topologies


def line_edges(n: int) -> list[tuple[int, int]]:
    """Node i dials node i-1."""
    return [(i, i - 1) for i in range(1, n)]


def ring_edges(n: int) -> list[tuple[int, int]]:
    """A line closed into a ring (n >= 3)."""
    return line_edges(n) + ([(0, n - 1)] if n >= 3 else [])


def random_edges(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """A connected random graph with mean degree about ``degree``: a random
    spanning tree (every node dials one earlier node, so the overlay is
    connected), then random extra edges until ``n * degree / 2`` edges, no
    self-loops, no duplicates."""
    if n < 1 or degree < 1:
        raise ConfigError("a random topology needs n >= 1 and degree >= 1")
    edges: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for i in range(1, n):
        j = rng.randrange(i)
        edges.append((i, j))
        seen.add((j, i))
    want = min(n * degree // 2, n * (n - 1) // 2)
    while len(edges) < want:
        a, b = rng.randrange(n), rng.randrange(n)
        if a == b:
            continue
        key = (a, b) if a < b else (b, a)
        if key in seen:
            continue
        seen.add(key)
        edges.append((a, b))
    return edges


# ------------------------------------------------------------------ shares


@dataclass(frozen=True, slots=True)
class SimFile:
    """A shared file as the servent's shares hand it out (duck-typed like the
    catalog's ``SharedFile``)."""

    index: int
    name: str
    size: int
    sha1: bytes
    #: The file's rank in a scenario's catalog (0: the most popular), or
    #: None for a file of no catalog.
    rank: int | None = None

    @property
    def urn(self) -> str:
        return sha1_urn(self.sha1)


def sim_file(index: int, name: str, size: int = 1 << 20, rank: int | None = None) -> SimFile:
    """A file whose hash is derived from its name (equal names, equal URNs)."""
    return SimFile(index, name, size, hashlib.sha1(name.encode()).digest(), rank)


class MemoryShares:
    """Shares held in memory: a file matches when every query word is a word
    of its name (split on ``-``, ``_``, ``.``, space), the keyword matching of
    classic servents.  An inverted index keeps a lookup cheap at 10,000 nodes."""

    __slots__ = ("files", "_words", "_urns")

    def __init__(self, files: Sequence[SimFile] = ()) -> None:
        self.files = tuple(files)
        self._words: dict[str, list[SimFile]] | None = None
        self._urns: dict[str, SimFile] | None = None

    @staticmethod
    def _split(name: str) -> set[str]:
        for sep in "-_.":
            name = name.replace(sep, " ")
        return set(name.lower().split())

    def search(self, text: str, *, limit: int = 100) -> list[SimFile]:
        if not self.files:
            return []
        words = self._words
        if words is None:
            words = self._words = {}
            for f in self.files:
                for w in self._split(f.name):
                    words.setdefault(w, []).append(f)
        wanted = self._split(text)
        if not wanted:
            return []
        first, *rest = sorted(wanted, key=lambda w: len(words.get(w, ())))
        found = [f for f in words.get(first, ()) if all(f in words.get(w, ()) for w in rest)]
        return found[:limit]

    def by_urn(self, urn: str) -> SimFile | None:
        if self._urns is None:
            self._urns = {f.urn: f for f in self.files}
        return self._urns.get(urn.lower()) or self._urns.get(urn)

    def count(self) -> int:
        return len(self.files)

    def total_size(self) -> int:
        return sum(f.size for f in self.files)


#: Shares that share nothing (a free rider's), one object for all of them.
NO_SHARES = MemoryShares()


# ------------------------------------------------------------------ the network


@dataclass(slots=True)
class SimServent:
    """One node of a :class:`GnutellaNetwork`: its host, and the servent
    running there now (a node that left and joined again runs a new one)."""

    index: int
    host: SimHost
    servent: Servent
    shares: MemoryShares
    link_class: LinkClass

    @property
    def address(self) -> Address:
        return (self.host.ip, GNUTELLA_PORT)


@dataclass
class GnutellaNetwork:
    """``n`` started servents in ``sim``, not yet connected: node ``i`` on
    host :func:`node_ip` ``(i)``, port :data:`GNUTELLA_PORT`.

    ``link_class``: one :class:`LinkClass` for all, or ``f(index)`` giving
    each node's.  ``config``: :class:`ServentConfig` fields common to every
    servent (``target_degree`` defaults to 0 so that the network is exactly
    the topology asked for; each node's config is that one with its address);
    ``config_of(index)``: fields of one node's own (a role, say), over those.
    ``shares_of(index)``: a node's shares (default: nothing shared), asked
    once per node, in index order.  ``observer_of(index)``: a node's
    observer (default: none, the cheapest).

    Every host exists before the first servent starts.  The overlay is built
    with :meth:`connect` (every edge open before it returns) or :meth:`dial`
    (nodes dial their edges one after the other, the network comes up while
    the simulator runs).  A node goes with :meth:`leave` (its servent closes,
    saying Bye; :meth:`join` starts a new one on the same host) or
    :meth:`kill` (unplugged: gone for good).
    """

    sim: Simulator
    n: int
    link_class: LinkClass | Callable[[int], LinkClass] = LINK_CLASSES["cable"]
    config: Mapping[str, Any] = field(default_factory=dict)
    shares_of: Callable[[int], MemoryShares] | None = None
    observer_of: Callable[[int], Observer | None] | None = None
    config_of: Callable[[int], Mapping[str, Any]] | None = None
    nodes: list[SimServent] = field(init=False, default_factory=list)
    #: Nodes taken off the network by :meth:`kill`.
    killed: set[int] = field(init=False, default_factory=set)
    #: Nodes whose servent is closed (left or killed) and not joined again.
    down: set[int] = field(init=False, default_factory=set)
    #: Node index by servent address.
    by_address: dict[Address, int] = field(init=False, default_factory=dict)
    _base: ServentConfig = field(init=False)

    def __post_init__(self) -> None:
        fields: dict[str, Any] = {"listen_port": GNUTELLA_PORT, "target_degree": 0}
        fields.update(self.config)
        fields.pop("listen_host", None)
        self._base = ServentConfig(**fields)
        hosts = []
        for i in range(self.n):
            lc = self.link_class(i) if callable(self.link_class) else self.link_class
            obs = self.observer_of(i) if self.observer_of is not None else None
            host = self.sim.add_host(
                node_ip(i), up=lc.up, down=lc.down, latency=lc.latency, loss=lc.loss,
                observer=obs,
            )  # fmt: skip
            self.by_address[(host.ip, GNUTELLA_PORT)] = i
            hosts.append((host, lc))
        for i, (host, lc) in enumerate(hosts):
            shares = self.shares_of(i) if self.shares_of is not None else NO_SHARES
            node = SimServent(i, host, self._servent(i, host, shares, ()), shares, lc)
            self.nodes.append(node)
            node.servent.start()

    def _servent(self, index: int, host: SimHost, shares: MemoryShares,
                 bootstrap: Sequence[Address]) -> Servent:  # fmt: skip
        """A new servent (not started) for node ``index`` on ``host``."""
        cfg = replace(self._base, listen_host=host.ip)
        own = dict(self.config_of(index)) if self.config_of is not None else {}
        if bootstrap:
            own["bootstrap"] = tuple(bootstrap)
        if own:
            cfg = replace(cfg, **own)
        return Servent(host.runtime, cfg, shares)

    def servent(self, index: int) -> Servent | None:
        """Node ``index``'s servent while it is up, else None."""
        return None if index in self.down else self.nodes[index].servent

    def join(self, index: int, bootstrap: Sequence[Address] = ()) -> Servent:
        """Node ``index`` (which left) starts a new servent on its host, with
        the same shares, told of the ``bootstrap`` hosts."""
        if index in self.killed:
            raise ConfigError(f"node {index} was killed: it cannot join again")
        node = self.nodes[index]
        if index not in self.down:
            node.servent.close()
        node.servent = self._servent(index, node.host, node.shares, bootstrap)
        node.servent.start()
        self.down.discard(index)
        return node.servent

    def leave(self, index: int) -> None:
        """Node ``index``'s servent closes as a user quits it: it says Bye,
        its connections close; :meth:`join` may bring it back."""
        if index in self.down:
            return
        self.down.add(index)
        self.nodes[index].servent.close()

    def dial(self, edges: Iterable[tuple[int, int]], gap: float) -> None:
        """Schedule every edge ``(a, b)``: node ``a`` dials ``b`` at ``a * gap``
        virtual seconds from now (if ``a`` is up then), so the nodes join one
        after the other and none sees more handshakes at once than it admits.
        Returns at once; the links open as the simulator runs."""
        now = self.sim.now
        for a, b in edges:
            if a == b or not (0 <= a < self.n and 0 <= b < self.n):
                raise ConfigError(f"bad edge ({a}, {b}) for {self.n} nodes")
            self.sim.schedule(now + a * gap, self._dial, (a, b))

    def _dial(self, edge: tuple[int, int]) -> None:
        s = self.servent(edge[0])
        if s is not None:
            s.connect(self.nodes[edge[1]].address)

    def open_links(self) -> int:
        """Open connections summed over the nodes that are up (each link
        counts at both of its ends)."""
        return sum(node.servent.open_count for node in self.nodes if node.index not in self.down)

    def connect(self, edges: Iterable[tuple[int, int]], timeout: float = CONNECT_TIMEOUT) -> None:
        """Open every edge ``(a, b)`` (``a`` dials ``b``), a few dials per
        node at a time, and run the simulator until all are open.  Raises
        :class:`~peerlab.errors.ConfigError` when some did not open within
        ``timeout`` virtual seconds."""
        dials: dict[int, list[int]] = {}
        total = 0
        for a, b in edges:
            if a == b or not (0 <= a < self.n and 0 <= b < self.n):
                raise ConfigError(f"bad edge ({a}, {b}) for {self.n} nodes")
            dials.setdefault(a, []).append(b)
            total += 1
        want = [node.servent.open_count for node in self.nodes]
        for a, peers in dials.items():
            want[a] += len(peers)
            for b in peers:
                want[b] += 1
        pending = {a: list(reversed(peers)) for a, peers in dials.items()}
        deadline = self.sim.now + timeout
        short = list(range(self.n))
        while self.sim.now < deadline:
            for a in list(pending):
                peers = pending[a]
                for _ in range(min(DIAL_BATCH, len(peers))):
                    self.nodes[a].servent.connect(self.nodes[peers.pop()].address)
                if not peers:
                    del pending[a]
            # Checked once per virtual second, not per event: a condition over
            # every node tested after each event would cost O(n) per event.
            self.sim.run(min(self.sim.now + 1.0, deadline))
            short = [i for i in short if self.nodes[i].servent.open_count < want[i]]
            if not pending and not short:
                return
        raise ConfigError(f"{len(short)} of {self.n} servents did not open all {total} links")

    def search(self, index: int, text: str, *, ttl: int | None = None) -> bytes:
        """Node ``index`` floods a Query for ``text``; returns its GUID."""
        return self.nodes[index].servent.search(text, ttl=ttl).guid

    def deliveries(self) -> int:
        """Gnutella descriptors handed to servents so far (see the module
        doc; a node that joined again counts from its new servent)."""
        return sum(node.servent.counters.total("rx.") for node in self.nodes)

    def counter(self, name: str) -> int:
        """The sum over all nodes of one servent counter (e.g. ``rx.query``)."""
        return sum(node.servent.counters[name] for node in self.nodes)

    def kill(self, index: int) -> None:
        """Node ``index`` drops off the network at once, as when its machine
        is unplugged: its listener closes, its connections are aborted (the
        neighbours see them reset) and nothing addressed to it arrives any
        more.  Its servent says no Bye; it is left to its own timers."""
        node = self.nodes[index]
        host = node.host
        for listener in list(host.listeners.values()):
            listener.close()
        for conn in list(host.conns.values()):
            conn.abort()
        self.sim.routes.pop(host.ip, None)
        self.killed.add(index)
        self.down.add(index)

    def alive(self) -> list[int]:
        """The indices of the nodes up (neither killed nor left)."""
        return [i for i in range(self.n) if i not in self.down]

    def close(self) -> None:
        """Close every servent that is still up (each says Bye 200)."""
        for node in self.nodes:
            if node.index not in self.down:
                node.servent.close()


@dataclass(frozen=True, slots=True)
class FloodResult:
    """What :func:`flood_scenario` measured: ``deliveries`` and ``events`` of
    the query phase, the ``hits`` our searches got, wall-clock seconds of the
    build (hosts, servents, handshakes) and of the query phase."""

    nodes: int
    queries: int
    deliveries: int
    events: int
    hits: int
    build_wall_s: float
    query_wall_s: float
    query_cpu_s: float
    virtual_s: float
    digest: str


def flood_scenario(
    n: int,
    queries: int,
    *,
    seed: int = 1,
    degree: int = 4,
    ttl: int | None = None,
    rate: float = 100.0,
    words: int = 1000,
    sharing: float = 0.3,
    files_per_node: int = 3,
    link_class: LinkClass = LINK_CLASSES["cable"],
    config: dict[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
    cpu_clock: Callable[[], float] | None = None,
) -> FloodResult:
    """The flooding scenario of the ``sim`` benchmark: ``n`` servents on
    ``link_class`` links in a random graph of mean ``degree``; a ``sharing``
    share of them share ``files_per_node`` files named after words of a
    ``words``-word vocabulary (the rest are free riders); then ``queries``
    searches for one random word each, from random servents, ``rate`` per
    virtual second, with ``ttl`` (default: the servent's ``search_ttl``),
    and the network runs until every reply is in.  ``clock``: a wall clock
    (``time.perf_counter``) to time the phases with (the simulator never
    reads one itself); ``cpu_clock`` (``time.process_time``) likewise for the
    query phase's CPU time."""
    rng = random.Random(seed)
    tick = clock if clock is not None else (lambda: 0.0)
    cpu = cpu_clock if cpu_clock is not None else (lambda: 0.0)
    t0 = tick()
    sim = Simulator(seed)

    def shares_of(i: int) -> MemoryShares:
        if rng.random() >= sharing:
            return NO_SHARES
        return MemoryShares(
            [sim_file(k, f"w{rng.randrange(words)} w{rng.randrange(words)}.mp3")
             for k in range(files_per_node)]
        )  # fmt: skip

    net = GnutellaNetwork(sim, n, link_class=link_class, config=dict(config or {}),
                          shares_of=shares_of)  # fmt: skip
    net.connect(random_edges(n, degree, rng))
    sim.run(sim.now + SETTLE)
    t1, c1 = tick(), cpu()
    d0, e0, v0 = net.deliveries(), sim.events_run, sim.now
    gap = 1.0 / rate
    with frozen():  # the built network, out of the garbage collector's scans
        for _ in range(queries):
            net.search(rng.randrange(n), f"w{rng.randrange(words)}", ttl=ttl)
            sim.run(sim.now + gap)
        sim.run(sim.now + DRAIN)
    t2, c2 = tick(), cpu()
    return FloodResult(
        nodes=n, queries=queries, deliveries=net.deliveries() - d0,
        events=sim.events_run - e0, hits=net.counter("hits.delivered"),
        build_wall_s=t1 - t0, query_wall_s=t2 - t1, query_cpu_s=c2 - c1, virtual_s=sim.now - v0,
        digest=sim.trace_digest(),
    )  # fmt: skip


def zipf_weights(n: int, exponent: float = 1.0) -> list[float]:
    """Popularity weights of ranks 1..n under Zipf's law (rank ** -exponent)."""
    return [1.0 / math.pow(rank, exponent) for rank in range(1, n + 1)]


__all__ = [
    "CONNECT_TIMEOUT",
    "GNUTELLA_PORT",
    "LINK_CLASSES",
    "MAX_NODE_INDEX",
    "NO_SHARES",
    "FloodResult",
    "GnutellaNetwork",
    "LinkClass",
    "MemoryShares",
    "SimFile",
    "SimServent",
    "flood_scenario",
    "line_edges",
    "node_ip",
    "random_edges",
    "ring_edges",
    "server_ip",
    "sim_file",
    "zipf_weights",
]
