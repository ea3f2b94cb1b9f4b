"""The architectures as networks of peerlab's own nodes in one :class:`Simulator`.

:class:`GnutellaNet` runs a :class:`~peerlab.overlays.gnutella.servent.Servent`
per peer (the class the node daemon runs) on
:class:`~peerlab.sim.topology.GnutellaNetwork`, the builder the ``sim``
benchmark uses too, wired as the population's overlay
(static: ``target_degree`` 0) or left to keep its degree itself (``heal``:
the servent's own maintenance dials hosts it learnt); with ``tiers`` it is
two-tier: ultrapeers (``role = "ultrapeer"``) linked among themselves and
leaves (``role = "leaf"``) each linked to three of them, queries routed to
leaves by their QRP tables.  :class:`NapsterNet`
runs one or two :class:`~peerlab.overlays.napster.server.NapsterServer` (the
``peerlab napster-server`` class) over one SQLite index in memory -- a farm
of two shares it, as a PostgreSQL farm shares its database -- and a
:class:`~peerlab.overlays.napster.client.NapsterClient` per peer.

Both offer the same measuring surface: :meth:`query` returns a
:class:`Probe` (first result time, results), :meth:`kill` stops a node
(a servent says Bye and closes its connections, a client logs out, a
server closes every connection, so neighbours see them end at once;
nothing listens there any more), :meth:`edges`
gives the live overlay as it stands, :meth:`load` the per-node message and
byte totals so far (for busiest-node rates).  Peers and servers are
addressed as everywhere in the simulator (:mod:`peerlab.sim.addresses`),
on the link classes of :data:`peerlab.sim.topology.LINK_CLASSES`.

What counts as a message: a Gnutella descriptor a servent sent
(``tx.*`` counters); a Napster frame of the search (the request 200, each
result 201, the end 202).  Bytes are what the hosts' access links carried
(TCP overhead included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peerlab.overlays.gnutella.search import HitSource, SearchResult
from peerlab.overlays.gnutella.servent import Servent, neighbours_of
from peerlab.overlays.napster.client import ClientConfig, NapsterClient, NapsterHit
from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.base import NullObserver
from peerlab.sim import SimHost, Simulator
from peerlab.sim.topology import (
    LINK_CLASSES,
    GnutellaNetwork,
    LinkClass,
    MemoryShares,
    node_ip,
    server_ip,
)
from peerlab.simulate.population import Peer, Population, Query, Tiers, build_tiers
from peerlab.storage.napster_index import ScryptCost, SqliteIndexStore
from peerlab.wire.napster import LinkType, SearchQuery, ShareFile

#: OpenNap's port.
NAPSTER_PORT = 8888
#: Napster peers' data port (they are reachable; transfers are not simulated).
NAPSTER_DATA_PORT = 6699
#: scrypt cost of the simulated users' passwords: the smallest the store
#: takes; the default 2^14 would spend real CPU seconds per login for nothing
#: the simulation measures.
SIM_PASSWORD_COST = ScryptCost(log2_n=4)
#: Virtual seconds the network may take to come up (every link open, every
#: Napster user logged in and shared).
SETUP_LIMIT = 600.0

#: Virtual seconds between two peers joining a wired overlay.
JOIN_GAP = 0.01

#: Virtual seconds between two checks of a set-up condition: checking after
#: every event would cost more than the events (the conditions sum over
#: every node).
CHECK_STEP = 0.25

#: Our link classes as Napster's declared link types (message 2).
NAPSTER_LINK = {
    "modem14k": LinkType.K14_4,
    "modem56k": LinkType.K56,
    "dsl": LinkType.DSL,
    "cable": LinkType.CABLE,
    "t1": LinkType.T1,
    "server": LinkType.T3,
}


def run_until(sim: Simulator, pred: Callable[[], object], timeout: float) -> bool:
    """Run ``sim`` until ``pred()`` (checked every :data:`CHECK_STEP`
    virtual seconds) or ``timeout``; returns ``pred()``."""
    deadline = sim.now + timeout
    while not pred():
        if sim.now >= deadline:
            return False
        sim.run(min(deadline, sim.now + CHECK_STEP))
    return True


def add_host(sim: Simulator, ip: str, link: LinkClass) -> SimHost:
    """A host at ``ip`` with a ``link`` access link (a Napster peer's or server's)."""
    return sim.add_host(ip, up=link.up, down=link.down, latency=link.latency, loss=link.loss,
                        observer=NullObserver())  # fmt: skip


@dataclass(slots=True)
class Probe:
    """One query: when it left, when its first result came, how many results."""

    query: Query
    started: float
    first: float | None = None
    results: int = 0
    done: bool = False

    @property
    def answered(self) -> bool:
        return self.results > 0

    def hit(self, now: float, n: int = 1) -> None:
        if self.first is None:
            self.first = now
        self.results += n


@dataclass(slots=True)
class Load:
    """Totals of one node so far: messages handled (in + out) and bytes."""

    messages: int = 0
    bytes: int = 0


@dataclass
class NetBase:
    sim: Simulator
    population: Population
    alive: set[int] = field(default_factory=set)
    hosts: list[SimHost] = field(default_factory=list)

    def online(self) -> list[int]:
        return sorted(self.alive)


class GnutellaNet(NetBase):
    """A Gnutella network, flat or two-tier (see the module docstring): the
    population on a :class:`~peerlab.sim.topology.GnutellaNetwork`, the
    builder the ``sim`` benchmark runs its servents on too."""

    def __init__(
        self,
        sim: Simulator,
        population: Population,
        *,
        heal: int = 0,
        config: dict[str, Any] | None = None,
        tiers: Tiers | None = None,
    ) -> None:
        super().__init__(sim, population)
        self.heal = heal
        self.extra = dict(config or {})
        #: Two-tier: who is an ultrapeer (the rest are leaves); None: flat.
        self.tiers = tiers
        edges = population.edges if tiers is None else tiers.edges
        peers = population.peers
        common: dict[str, Any] = {
            "target_degree": heal,
            # Connections stay up for the whole run; a keep-alive Ping every
            # 30 s is noise in the message counts.
            "keepalive_interval": 600.0,
            "max_connections": 64,
        }
        self.network = GnutellaNetwork(
            sim, population.n, link_class=lambda i: peers[i].link,
            config={**common, **self.extra}, config_of=self._own_config,
            shares_of=lambda i: MemoryShares(peers[i].files),
        )  # fmt: skip
        self.hosts.extend(node.host for node in self.network.nodes)
        self.alive.update(range(population.n))
        # Peers join one after the other (JOIN_GAP apart), each dialling
        # its overlay links, so no servent sees more handshakes at once than
        # it admits.
        self.wired = len(edges)
        self.network.dial(edges, JOIN_GAP)

    def _own_config(self, i: int) -> dict[str, Any]:
        """Peer ``i``'s own servent settings: its role in a two-tier network
        (where the common ``config`` does not set them)."""
        if self.tiers is None:
            return {}
        own: dict[str, Any] = {
            "role": "ultrapeer" if i in self.tiers.ultrapeers else "leaf",
            # Leaves send their QRP tables soon after connecting.
            "qrp_interval": 1.0,
        }
        return {k: v for k, v in own.items() if k not in self.extra}

    @property
    def servents(self) -> list[Servent | None]:
        """Every peer's servent, None for a peer offline."""
        return [self.network.servent(i) for i in range(self.population.n)]

    def join(self, i: int, bootstrap: Sequence[tuple[str, int]]) -> None:
        """(Re)start peer ``i``'s servent, told of the ``bootstrap`` hosts."""
        self.network.join(i, bootstrap)
        self.alive.add(i)

    def wait_connected(self) -> bool:
        want = 2 * self.wired
        return run_until(self.sim, lambda: self.network.open_links() >= want, SETUP_LIMIT)

    def query(self, q: Query, ttl: int) -> Probe:
        probe = Probe(q, self.sim.now)
        s = self.network.servent(q.origin)
        if s is None or q.origin not in self.alive:
            probe.done = True
            return probe
        sim = self.sim

        def on_hit(result: SearchResult, source: HitSource) -> None:
            probe.hit(sim.now)

        s.search(q.text, on_hit, ttl=ttl)
        return probe

    def kill(self, i: int) -> None:
        """Peer ``i``'s servent stops (it says Bye; its links close)."""
        if i not in self.alive:
            return
        self.alive.discard(i)
        self.network.leave(i)

    def edges(self) -> list[tuple[int, int]]:
        out = []
        by_address = self.network.by_address
        for i in self.alive:
            s = self.network.servent(i)
            if s is None:
                continue
            for addr in neighbours_of(s):
                j = by_address.get(addr)
                if j is not None and j in self.alive:
                    out.append((i, j))
        return out

    def search_messages(self) -> int:
        """Query and Query Hit descriptors sent so far, every servent."""
        return sum(s.counters["tx.query"] + s.counters["tx.query_hit"]
                   for s in self.servents if s is not None)  # fmt: skip

    def load(self) -> list[Load]:
        out = []
        for s, h in zip(self.servents, self.hosts, strict=True):
            msgs = s.counters.total("tx.") + s.counters.total("rx.") if s is not None else 0
            out.append(Load(msgs, h.bytes_up + h.bytes_down))
        return out


class SharedMemoryIndex(SqliteIndexStore):
    """One SQLite index in memory that every server of a simulated farm
    uses, as a real farm shares one PostgreSQL database: the servers
    heartbeat in it, see each other's users and pass mail through it."""

    shared = True


class NapsterNet(NetBase):
    """Napster: ``servers`` index servers over one index, a client per peer.

    In a farm, peer *i* logs in to server ``i % servers`` first and lists
    the others for fail-over, as a round-robin DNS name would spread them.
    """

    def __init__(self, sim: Simulator, population: Population, *, servers: int = 1,
                 server_link: LinkClass = LINK_CLASSES["server"]) -> None:  # fmt: skip
        super().__init__(sim, population)
        self.store = SharedMemoryIndex(":memory:") if servers > 1 else SqliteIndexStore(":memory:")
        self.server_hosts: list[SimHost] = []
        self.servers: list[NapsterServer] = []
        self.servers_alive: set[int] = set()
        #: Search frames each server sent or took (request, results, end).
        self.server_messages: list[int] = [0] * servers
        for k in range(servers):
            host = add_host(sim, server_ip(k), server_link)
            srv = NapsterServer(host.runtime, self.store, NapsterServerConfig(
                host=host.ip, port=NAPSTER_PORT, name=f"server{k}",
                password_cost=SIM_PASSWORD_COST))  # fmt: skip
            srv.start()
            self.server_hosts.append(host)
            self.servers.append(srv)
            self.servers_alive.add(k)
        self.clients: list[NapsterClient | None] = []
        for peer in population.peers:
            self.hosts.append(add_host(sim, node_ip(peer.index), peer.link))
            self.clients.append(None)
        for peer in population.peers:
            self.join(peer.index)

    def _shares(self, peer: Peer) -> list[ShareFile]:
        return [ShareFile(f"C:\\mp3\\{f.name}", f.sha1.hex()[:32], f.size, 128, 44100, 240)
                for f in peer.files]  # fmt: skip

    def join(self, i: int) -> None:
        peer = self.population.peers[i]
        n = len(self.servers)
        order = [(server_ip((i + k) % n), NAPSTER_PORT) for k in range(n)]
        shares = self._shares(peer)
        client = NapsterClient(self.hosts[i].runtime, ClientConfig(
            servers=order, nick=f"peer{i}", password="sim", data_port=NAPSTER_DATA_PORT,
            link_type=NAPSTER_LINK.get(peer.link.name, LinkType.UNKNOWN)),
            lambda: shares)  # fmt: skip
        client.start()
        self.clients[i] = client
        self.alive.add(i)

    def wait_connected(self) -> bool:
        return run_until(
            self.sim, lambda: all(c is not None and c.online for c in self.clients), SETUP_LIMIT
        )

    def server_of(self, i: int) -> int | None:
        c = self.clients[i]
        if c is None or not c.online or c.server is None:
            return None
        k = int(c.server[0].rsplit(".", 1)[1]) - 1
        return k if k in self.servers_alive else None

    def query(self, q: Query, ttl: int = 0) -> Probe:
        probe = Probe(q, self.sim.now)
        c = self.clients[q.origin]
        if c is None or q.origin not in self.alive:
            probe.done = True
            return probe
        sim = self.sim
        k = self.server_of(q.origin)

        def on_hit(hit: NapsterHit) -> None:
            probe.hit(sim.now)

        def on_done(error: str | None) -> None:
            probe.done = True
            if k is not None:
                self.server_messages[k] += 2 + probe.results

        c.search(SearchQuery(contains=(q.text,)), on_hit, on_done)
        return probe

    def kill(self, i: int) -> None:
        if i not in self.alive:
            return
        self.alive.discard(i)
        c = self.clients[i]
        if c is not None:
            c.close()
        self.clients[i] = None

    def kill_server(self, k: int) -> None:
        """Server ``k``'s process dies: the kernel closes its connections."""
        if k not in self.servers_alive:
            return
        self.servers_alive.discard(k)
        self.servers[k].close()

    def edges(self) -> list[tuple[int, int]]:
        """The star: each online peer to its server (server k is node -1-k)."""
        out = []
        for i in self.alive:
            k = self.server_of(i)
            if k is not None:
                out.append((i, -1 - k))
        # The servers of a farm are one index: joined through the database.
        alive = sorted(self.servers_alive)
        out.extend((-1 - a, -1 - b) for a, b in zip(alive, alive[1:], strict=False))
        return out

    def search_messages(self) -> int:
        return sum(self.server_messages)

    def load(self) -> list[Load]:
        out = [Load(0, h.bytes_up + h.bytes_down) for h in self.hosts]
        pairs = zip(self.server_messages, self.server_hosts, strict=True)
        out.extend(Load(m, h.bytes_up + h.bytes_down) for m, h in pairs)
        return out


#: The share of peers made ultrapeers in a two-tier network (the fastest
#: uplinks): KaZaA and LimeWire ran one ultrapeer per few dozen leaves;
#: with 30 leaves each and 3 links per leaf that needs at least 10%, and
#: some room above it.
ULTRAPEER_FRACTION = 0.15
#: Links between ultrapeers (average degree of their overlay): LimeWire
#: kept 6 at the time of the ultrapeer proposal's measurements.
ULTRAPEER_DEGREE = 6


def build_net(arch: str, sim: Simulator, population: Population, *, seed: int,
              heal: int = 0) -> GnutellaNet | NapsterNet:  # fmt: skip
    """The network of architecture ``arch`` (``napster``, ``napster-farm``,
    ``gnutella``, ``two-tier``) for ``population``."""
    if arch == "napster":
        return NapsterNet(sim, population, servers=1)
    if arch == "napster-farm":
        return NapsterNet(sim, population, servers=2)
    if arch == "two-tier":
        tiers = build_tiers(population, fraction=ULTRAPEER_FRACTION, degree=ULTRAPEER_DEGREE,
                            seed=seed)  # fmt: skip
        return GnutellaNet(sim, population, heal=heal, tiers=tiers)
    return GnutellaNet(sim, population, heal=heal)
