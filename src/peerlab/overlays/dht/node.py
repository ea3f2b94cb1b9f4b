"""A mainline DHT node (BEP 5) on the runtime interface.

:class:`DhtNode` binds one UDP endpoint with ``runtime.bind_udp``, answers
the four KRPC queries, keeps a routing table (:mod:`.routing`), stores peers
for others (:mod:`.peer_store`) under write tokens (:mod:`.tokens`), and runs
iterative lookups (:mod:`.lookup`) for the BitTorrent engine.  Time comes
from ``runtime.now()`` and randomness from ``runtime.rng`` only, so the same
node runs on real sockets and by the thousand in the simulator.

What it does, by BEP 5 section:

* **KRPC Protocol**: one query per datagram, no retry; transaction ids of 2
  bytes; an answer is accepted only from the address the query went to.  A
  query that gets no answer within ``query_stall`` seconds frees its lookup
  slot; after ``query_timeout`` seconds it has failed.
* **DHT Queries**: ``ping``; ``find_node`` with the K closest nodes;
  ``get_peers`` with a token, the stored peers (``values``, a random sample of
  at most :data:`~.peer_store.MAX_VALUES_PER_REPLY`) and the K closest nodes;
  ``announce_peer`` checked against the token handed to the querying IP,
  storing the UDP source port when ``implied_port`` is set.  Any other method
  is answered with error 204, a malformed query with 203, a full peer store
  with 202.  Every response carries BEP 42's ``ip`` (the address we saw).
* **Routing Table**: nodes that answer us enter the table; a stranger that
  queries us is verified with a ping first (at most
  :data:`MAX_VERIFY_PINGS` at once); questionable nodes are pinged before a
  newcomer may replace them, and pinged once more before they are given up;
  buckets unchanged for 15 minutes are refreshed with a find_node for a
  random id in their range; the table (our id and its good nodes) is saved to
  ``state_path`` every ``save_interval`` and on :meth:`DhtNode.close`.
* **Bootstrap**: "find the closest nodes in the DHT to itself ... by issuing
  find_node messages to closer and closer nodes": :meth:`DhtNode.bootstrap`
  is a find_node lookup for our own id that starts from the given addresses
  (ids unknown) and from the nodes saved last time; then, as Kademlia's join
  does, a find_node for a random id in every farther bucket that is not full,
  so the far parts of the table fill too (without this, lookups in a young
  network stop at local minima: 84% success instead of 100% among 1000
  simulated nodes).
* Incoming queries are rate limited per source address
  (:mod:`.ratelimit`); a query beyond the limit is dropped unanswered.

Callbacks (``on_peers``, ``on_done``) are always called from the event loop
(never from inside the call that started the lookup), and never after
:meth:`Lookup.cancel` or :meth:`DhtNode.close`.

Counters to ``runtime.observer`` (all prefixed ``dht.``): ``datagrams_received``,
``garbage``, ``handler_errors``, ``rate_limited``, ``queries_received`` and
``queries_received.<method>``, ``responses_sent``, ``errors_sent``,
``queries_sent`` and ``queries_sent.<method>``, ``queries_refused`` (too many in
flight), ``responses_received``, ``errors_received``, ``timeouts``,
``unexpected_replies``, ``replies_wrong_address``, ``bad_tokens``,
``peers_stored``, ``store_full``, ``verify_pings``, ``questionable_pings``,
``nodes_added``, ``nodes_replaced``, ``refreshes``, ``lookups``,
``lookups_done``, ``lookup_hops`` (sum over lookups), ``lookup_queries``
(sum), ``get_peers_lookups``, ``get_peers_found`` (lookups that found at
least one peer), ``get_peers_hops`` (sum over get_peers lookups),
``announces``, ``announce_stored`` (announce_peer accepted), ``saves``.
Events: ``dht.started``, ``dht.lookup_done``, ``dht.announce_done``,
``dht.state_loaded``, ``dht.state_error``, ``dht.handler_error``,
``dht.udp_error``, ``dht.closed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from peerlab.errors import ConfigError, NetworkError, StorageError
from peerlab.overlays.dht.lookup import ALPHA, MAX_CANDIDATES, MAX_QUERIES, Candidate, Traversal
from peerlab.overlays.dht.peer_store import (
    MAX_INFO_HASHES,
    MAX_PEERS_PER_INFO_HASH,
    MAX_STORED_PEERS,
    MAX_VALUES_PER_REPLY,
    PEER_TTL_S,
    PeerStore,
)
from peerlab.overlays.dht.ratelimit import QUERY_BURST, QUERY_RATE, SourceRateLimiter
from peerlab.overlays.dht.routing import (
    MAX_FAILURES,
    K,
    NodeEntry,
    Outcome,
    RoutingStats,
    RoutingTable,
)
from peerlab.overlays.dht.state import DhtState, load_state, save_state
from peerlab.overlays.dht.tokens import TOKEN_ROTATION_S, TokenSecrets
from peerlab.runtime.base import Address, DatagramEndpoint, Runtime, Timer
from peerlab.wire.krpc import (
    NODE_ID_BYTES,
    AnnouncePeer,
    Arguments,
    ErrorCode,
    FindNode,
    GetPeers,
    KrpcError,
    MalformedMessage,
    Message,
    NodeInfo,
    Ping,
    Query,
    Response,
    UnknownMethod,
    decode,
    encode,
)

#: Queries of ours awaiting an answer at once; beyond it a new query is
#: refused (counted) rather than queued.  2-byte transaction ids allow 65536.
MAX_IN_FLIGHT = 1024
#: Verification pings to strangers that queried us, in flight at once: a
#: flood of queries from new addresses must not become a flood of our pings.
MAX_VERIFY_PINGS = 32
#: Bootstrap addresses remembered for lookups that find the table empty.
MAX_ROUTERS = 32
#: Peers one lookup collects (reported through ``on_peers``, kept in the result).
MAX_LOOKUP_PEERS = 1000
#: Buckets refreshed per maintenance round, so a node waking from a long
#: sleep does not start a hundred lookups at once.
MAX_REFRESHES_PER_ROUND = 3
#: Seconds before a bootstrap that nobody answered is tried again; doubled
#: after each failure, up to the maintenance interval.
BOOTSTRAP_RETRY_S = 5.0
#: Our version string in every message (BEP 5 "v": two letters, two bytes).
VERSION = b"PL\x00\x01"


@dataclass(frozen=True)
class DhtConfig:
    """Settings of a :class:`DhtNode`; defaults follow BEP 5 and libtorrent."""

    #: Address to bind (``"0.0.0.0"``: every interface; tests use 127.0.0.1).
    host: str = "0.0.0.0"
    #: UDP port (0: any free port; BEP 5's conventional one is 6881).
    port: int = 0
    #: Our node id; None: the saved one, else 20 random bytes from runtime.rng.
    node_id: bytes | None = None
    #: Nodes to bootstrap from when :meth:`DhtNode.start` runs.
    bootstrap: tuple[Address, ...] = ()
    #: File the routing table is saved to (None: not saved).
    state_path: str | None = None
    k: int = K
    alpha: int = ALPHA
    #: Seconds until an unanswered query has failed.
    query_timeout: float = 5.0
    #: Seconds until an unanswered lookup query frees its slot (still
    #: accepted until ``query_timeout``).
    query_stall: float = 1.5
    token_rotation: float = TOKEN_ROTATION_S
    peer_ttl: float = PEER_TTL_S
    max_peers_per_info_hash: int = MAX_PEERS_PER_INFO_HASH
    max_info_hashes: int = MAX_INFO_HASHES
    max_stored_peers: int = MAX_STORED_PEERS
    max_values_per_reply: int = MAX_VALUES_PER_REPLY
    #: Incoming queries per second per source address, and the burst allowed.
    query_rate: float = QUERY_RATE
    query_burst: float = QUERY_BURST
    #: Seconds between maintenance rounds (pings, refreshes, expiry).
    maintenance_interval: float = 60.0
    #: Seconds between saves of the routing table (when ``state_path``).
    save_interval: float = 300.0
    #: BEP 43: say ``ro`` in our queries and stay out of others' tables.
    read_only: bool = False
    version: bytes | None = VERSION

    def __post_init__(self) -> None:
        if self.node_id is not None and len(self.node_id) != NODE_ID_BYTES:
            raise ConfigError(f"DHT node id must be 20 bytes, not {len(self.node_id)}")
        if self.k < 1 or self.alpha < 1:
            raise ConfigError("DHT k and alpha must be at least 1")
        if not 0 < self.query_stall <= self.query_timeout:
            raise ConfigError("DHT query_stall must be positive and at most query_timeout")
        if not 0 <= self.port <= 0xFFFF:
            raise ConfigError(f"DHT port {self.port} out of range")
        if self.maintenance_interval <= 0 or self.save_interval <= 0:
            raise ConfigError("DHT intervals must be positive")


@dataclass(frozen=True, slots=True)
class LookupResult:
    """How a lookup ended (:mod:`.lookup` defines hops)."""

    target: bytes
    peers: tuple[Address, ...]
    #: The k closest nodes that answered, closest first.
    nodes: tuple[NodeInfo, ...]
    hops: int
    queries: int
    responses: int
    timeouts: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    """How an announce ended: how many of the closest nodes stored us."""

    info_hash: bytes
    port: int
    stored: int
    attempted: int
    lookup: LookupResult


@dataclass(frozen=True, slots=True)
class DhtStats:
    """A node at a glance."""

    node_id: bytes
    address: Address | None
    routing: RoutingStats
    stored_info_hashes: int
    stored_peers: int
    lookups: int
    queries_in_flight: int


class Lookup:
    """A running lookup (get_peers, announce, find_node, bootstrap)."""

    def __init__(
        self,
        node: DhtNode,
        traversal: Traversal,
        get_peers: bool,
        on_peers: Callable[[list[Address]], None] | None,
        on_done: Callable[[LookupResult], None] | None,
    ) -> None:
        self._node = node
        self.traversal = traversal
        self.get_peers = get_peers
        self.on_peers = on_peers
        self.on_done = on_done
        self.peers: dict[Address, None] = {}
        self.started = node.runtime.now()
        #: The lookup part is over (the announce part may still run).
        self.finished = False
        self.cancelled = False

    @property
    def target(self) -> bytes:
        return self.traversal.target

    def cancel(self) -> None:
        """Stop: no more queries are sent and no callback is called."""
        self.cancelled = True
        self.finished = True
        self._node._lookups.discard(self)

    def __repr__(self) -> str:
        return f"<Lookup {self.target.hex()[:12]} finished={self.finished}>"


class _Transaction:
    __slots__ = ("tid", "address", "method", "on_response", "on_failure", "on_stall", "timer",
                 "stall_timer")  # fmt: skip

    def __init__(
        self,
        tid: bytes,
        address: Address,
        method: bytes,
        on_response: Callable[[Response], None],
        on_failure: Callable[[KrpcError | None], None],
        on_stall: Callable[[], None] | None,
    ) -> None:
        self.tid = tid
        self.address = address
        self.method = method
        self.on_response = on_response
        self.on_failure = on_failure
        self.on_stall = on_stall
        self.timer: Timer | None = None
        self.stall_timer: Timer | None = None


def _ignore(_: object) -> None:
    pass


class DhtNode:
    """One DHT node.  ``start()`` binds it; see the module docstring."""

    def __init__(self, runtime: Runtime, config: DhtConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config = config or DhtConfig()
        self._obs = runtime.observer
        self.node_id = config.node_id or b""
        self.table: RoutingTable | None = None
        now = runtime.now()
        self.store = PeerStore(
            peer_ttl=config.peer_ttl,
            max_peers_per_info_hash=config.max_peers_per_info_hash,
            max_info_hashes=config.max_info_hashes,
            max_peers=config.max_stored_peers,
        )
        self._tokens = TokenSecrets(runtime.rng, now, config.token_rotation)
        self._limiter = SourceRateLimiter(config.query_rate, config.query_burst)
        self._endpoint: DatagramEndpoint | None = None
        self._transactions: dict[bytes, _Transaction] = {}
        self._next_tid = runtime.rng.getrandbits(16)
        self._lookups: set[Lookup] = set()
        self._routers: list[Address] = []
        self._saved_nodes: tuple[NodeInfo, ...] = ()
        self._verifying: set[Address] = set()
        self._maintenance: Timer | None = None
        self._bootstrap_delay = BOOTSTRAP_RETRY_S
        self._last_save = now
        self._saving = False
        self._closed = False

    # ------------------------------------------------------------ life cycle

    @property
    def address(self) -> Address | None:
        return self._endpoint.address if self._endpoint is not None else None

    @property
    def routing_table(self) -> RoutingTable:
        if self.table is None:
            raise RuntimeError("DhtNode.start() was not called")
        return self.table

    def start(self) -> None:
        """Load the saved state, bind the UDP endpoint (raises
        :class:`~peerlab.errors.AddressInUse` and friends), start the
        maintenance timer and bootstrap from ``config.bootstrap`` and the
        saved nodes."""
        if self._endpoint is not None or self._closed:
            raise RuntimeError("DhtNode.start() may be called once")
        cfg = self.config
        saved: DhtState | None = None
        if cfg.state_path is not None:
            try:
                saved = load_state(cfg.state_path)
            except StorageError as exc:
                self._obs.event("dht.state_error", error=str(exc))
        if not self.node_id:
            if saved is not None:
                self.node_id = saved.node_id
            else:
                self.node_id = self.runtime.rng.getrandbits(160).to_bytes(NODE_ID_BYTES, "big")
        if saved is not None:
            self._saved_nodes = saved.nodes
            self._obs.event("dht.state_loaded", nodes=len(saved.nodes))
        self.table = RoutingTable(self.node_id, k=cfg.k, now=self.runtime.now())
        self._endpoint = self.runtime.bind_udp((cfg.host, cfg.port), self)
        self._maintenance = self.runtime.call_later(cfg.maintenance_interval, self._maintain)
        self._obs.event("dht.started", address=self._endpoint.address, node_id=self.node_id.hex())
        if cfg.bootstrap or self._saved_nodes:
            self.bootstrap(cfg.bootstrap)

    def close(self) -> None:
        """Stop: cancel timers and lookups, close the endpoint, save the table."""
        if self._closed:
            return
        self._closed = True
        for tx in self._transactions.values():
            if tx.timer is not None:
                tx.timer.cancel()
            if tx.stall_timer is not None:
                tx.stall_timer.cancel()
        self._transactions.clear()
        for lk in list(self._lookups):
            lk.cancel()
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self._endpoint is not None:
            self._endpoint.close()
            if self.config.state_path is not None:
                try:
                    save_state(self.config.state_path, self._snapshot())
                    self._obs.count("dht.saves")
                except StorageError as exc:
                    self._obs.event("dht.state_error", error=str(exc))
        self._obs.event("dht.closed")

    def stats(self) -> DhtStats:
        """Routing table and store figures (an empty table before ``start()``)."""
        now = self.runtime.now()
        routing = self.table.stats(now) if self.table is not None else RoutingStats(0, 0, 0, 0, 0)
        return DhtStats(
            self.node_id,
            self.address,
            routing,
            len(self.store),
            self.store.total_peers,
            len(self._lookups),
            len(self._transactions),
        )

    # ------------------------------------------------------------ public API

    def bootstrap(
        self, addresses: Iterable[Address], on_done: Callable[[LookupResult], None] | None = None
    ) -> Lookup:
        """Join the DHT through ``addresses`` (BEP 5: a find_node lookup for
        our own id).  The addresses are remembered as routers for lookups that
        later find the table empty."""
        contacts: list[tuple[bytes | None, Address]] = []
        for a in addresses:
            addr = (a[0], int(a[1]))
            if addr not in self._routers and len(self._routers) < MAX_ROUTERS:
                self._routers.append(addr)
            contacts.append((None, addr))
        contacts.extend((n.id, n.address) for n in self._saved_nodes)
        self._saved_nodes = ()

        def joined(result: LookupResult) -> None:
            if result.responses:
                self._bootstrap_delay = BOOTSTRAP_RETRY_S
                self._refresh_after_join()
            elif len(self.routing_table) == 0 and self._routers:
                # Nobody answered (a lost datagram suffices): try again soon,
                # backing off up to the maintenance interval.
                delay = self._bootstrap_delay
                self._bootstrap_delay = min(2 * delay, self.config.maintenance_interval)
                self.runtime.call_later(delay, self._bootstrap_again)
            if on_done is not None:
                on_done(result)

        return self._start_lookup(self.node_id, False, None, joined, contacts)

    def _bootstrap_again(self) -> None:
        if not self._closed and len(self.routing_table) == 0:
            self.bootstrap(())

    def _refresh_after_join(self) -> None:
        """Kademlia's join: after the lookup for our own id, a lookup for a
        random id in every bucket farther than our neighbours' that is not
        full, so the far parts of the table fill as well as the near one."""
        table, rng = self.routing_table, self.runtime.rng
        now = self.runtime.now()
        sizes = table.bucket_sizes()
        for i in range(len(sizes) - 1):
            if sizes[i] < self.config.k:
                table.touch_bucket(i, now)
                self._obs.count("dht.refreshes")
                self._start_lookup(table.random_id_in(i, rng), False, None, None, ())

    def find_node(self, target: bytes, on_done: Callable[[LookupResult], None]) -> Lookup:
        """An iterative find_node lookup for ``target``."""
        return self._start_lookup(target, False, None, on_done, ())

    def get_peers(
        self,
        info_hash: bytes,
        on_peers: Callable[[list[Address]], None] | None,
        on_done: Callable[[LookupResult], None] | None,
    ) -> Lookup:
        """Find peers of ``info_hash``: ``on_peers(new_peers)`` as they arrive,
        ``on_done(result)`` once the lookup ends."""
        return self._start_lookup(info_hash, True, on_peers, on_done, ())

    def announce(
        self,
        info_hash: bytes,
        port: int,
        on_done: Callable[[AnnounceResult], None] | None,
        *,
        implied_port: bool = False,
        on_peers: Callable[[list[Address]], None] | None = None,
    ) -> Lookup:
        """Announce that our peer has ``info_hash`` on TCP ``port``: a get_peers
        lookup, then announce_peer with each token to the k closest nodes that
        answered it (BEP 5 "Overview").  Peers found on the way go to
        ``on_peers``."""
        if not 0 <= port <= 0xFFFF or (port == 0 and not implied_port):
            raise ValueError(f"announce port {port} out of range")
        holder: list[Lookup] = []

        def lookup_done(result: LookupResult) -> None:
            self._announce_to(holder[0], result, port, implied_port, on_done)

        lk = self._start_lookup(info_hash, True, on_peers, lookup_done, ())
        holder.append(lk)
        self._obs.count("dht.announces")
        return lk

    def add_node(self, address: Address) -> None:
        """Ping ``address`` and add the node to the table if it answers (BEP 5
        "BitTorrent Protocol Extension": a peer's PORT message)."""
        if self._endpoint is None or self._closed:
            return
        self._send_query(address, Ping(self.node_id), _ignore, _ignore)

    def save(self) -> None:
        """Write the routing table to ``state_path`` now (synchronously)."""
        if self.config.state_path is None:
            return
        save_state(self.config.state_path, self._snapshot())
        self._last_save = self.runtime.now()
        self._obs.count("dht.saves")

    # ------------------------------------------------------------ datagrams

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        self._obs.count("dht.datagrams_received")
        try:
            try:
                msg = decode(data)
            except MalformedMessage as exc:
                self._obs.count("dht.garbage")
                if exc.is_query and exc.transaction_id is not None:
                    if self._limiter.allow(addr, self.runtime.now()):
                        text = str(exc)[:200]
                        self._reply(KrpcError(exc.transaction_id, ErrorCode.PROTOCOL, text), addr)
                return
            if isinstance(msg, Query):
                self._on_query(msg, addr)
            else:
                self._on_reply(msg, addr)
        except Exception as exc:  # noqa: BLE001 - one datagram must never stop the node
            self._obs.count("dht.handler_errors")
            self._obs.event("dht.handler_error", error=repr(exc), source=addr)

    def error_received(self, exc: NetworkError) -> None:
        self._obs.event("dht.udp_error", error=str(exc))

    def _reply(self, msg: Message, addr: Address) -> None:
        if self._endpoint is None:
            return
        self._endpoint.send_to(encode(msg), addr)
        self._obs.count("dht.errors_sent" if isinstance(msg, KrpcError) else "dht.responses_sent")

    # ------------------------------------------------------------ answering

    def _closest_info(self, target: bytes) -> tuple[NodeInfo, ...]:
        now = self.runtime.now()
        return tuple(NodeInfo(e.id, e.address) for e in
                     self.routing_table.closest(target, self.config.k, now))  # fmt: skip

    def _on_query(self, q: Query, addr: Address) -> None:
        now = self.runtime.now()
        if not self._limiter.allow(addr, now):
            self._obs.count("dht.rate_limited")
            return
        args = q.arguments
        method = q.method.decode("ascii", "replace")
        self._obs.count("dht.queries_received")
        self._obs.count(f"dht.queries_received.{method}" if not isinstance(args, UnknownMethod)
                        else "dht.queries_received.unknown")  # fmt: skip
        t, me, v = q.transaction_id, self.node_id, self.config.version
        reply: Message
        if isinstance(args, Ping):
            reply = Response(t, me, ip=addr, version=v)
        elif isinstance(args, FindNode):
            reply = Response(t, me, nodes=self._closest_info(args.target), ip=addr, version=v)
        elif isinstance(args, GetPeers):
            values = self.store.peers(args.info_hash, now, self.config.max_values_per_reply,
                                      self.runtime.rng)  # fmt: skip
            reply = Response(
                t,
                me,
                nodes=self._closest_info(args.info_hash),
                values=tuple(values) if values else None,
                token=self._tokens.token(addr[0], now),
                ip=addr,
                version=v,
            )
        elif isinstance(args, AnnouncePeer):
            if not self._tokens.valid(args.token, addr[0], now):
                self._obs.count("dht.bad_tokens")
                reply = KrpcError(t, ErrorCode.PROTOCOL, "bad token", v)
            else:
                port = addr[1] if args.implied_port else args.port
                if self.store.announce(args.info_hash, (addr[0], port), now):
                    self._obs.count("dht.peers_stored")
                    reply = Response(t, me, ip=addr, version=v)
                else:
                    self._obs.count("dht.store_full")
                    reply = KrpcError(t, ErrorCode.SERVER, "peer store full", v)
        else:
            reply = KrpcError(t, ErrorCode.METHOD_UNKNOWN, "Method Unknown", v)
        self._reply(reply, addr)
        if q.read_only or args.id == self.node_id:
            return
        table = self.routing_table
        if not table.heard_query(args.id, addr, now) and table.wants(args.id):
            self._verify(addr)

    def _verify(self, addr: Address) -> None:
        """Ping a stranger that queried us; its answer puts it in the table."""
        if addr in self._verifying or len(self._verifying) >= MAX_VERIFY_PINGS:
            return

        def settle(_: object) -> None:
            self._verifying.discard(addr)

        if self._send_query(addr, Ping(self.node_id), settle, settle):
            self._verifying.add(addr)
            self._obs.count("dht.verify_pings")

    # ------------------------------------------------------------ our queries

    def _new_tid(self) -> bytes:
        for _ in range(MAX_IN_FLIGHT + 1):
            self._next_tid = (self._next_tid + 1) & 0xFFFF
            tid = self._next_tid.to_bytes(2, "big")
            if tid not in self._transactions:
                return tid
        raise RuntimeError("no free transaction id")  # unreachable below MAX_IN_FLIGHT

    def _send_query(
        self,
        address: Address,
        args: Arguments,
        on_response: Callable[[Response], None],
        on_failure: Callable[[KrpcError | None], None],
        on_stall: Callable[[], None] | None = None,
    ) -> bool:
        """Send one query; False (nothing sent) when too many are in flight."""
        if self._endpoint is None or self._closed:
            return False
        if len(self._transactions) >= MAX_IN_FLIGHT:
            self._obs.count("dht.queries_refused")
            return False
        tid = self._new_tid()
        q = Query(tid, args, self.config.version, self.config.read_only)
        tx = _Transaction(tid, address, q.method, on_response, on_failure, on_stall)
        rt = self.runtime
        tx.timer = rt.call_later(self.config.query_timeout, partial(self._timed_out, tid))
        if on_stall is not None:
            tx.stall_timer = rt.call_later(self.config.query_stall, partial(self._stalled, tid))
        self._transactions[tid] = tx
        self._endpoint.send_to(encode(q), address)
        self._obs.count("dht.queries_sent")
        self._obs.count(f"dht.queries_sent.{q.method.decode()}")
        return True

    def _stalled(self, tid: bytes) -> None:
        tx = self._transactions.get(tid)
        if tx is not None and tx.on_stall is not None:
            tx.on_stall()

    def _timed_out(self, tid: bytes) -> None:
        tx = self._transactions.pop(tid, None)
        if tx is None:
            return
        if tx.stall_timer is not None:
            tx.stall_timer.cancel()
        self._obs.count("dht.timeouts")
        table = self.routing_table
        entry = table.find_address(tx.address)
        if entry is not None:
            outcome = table.failed(entry.id, entry.address, self.runtime.now())
            if outcome is Outcome.REPLACED:
                self._obs.count("dht.nodes_replaced")
        tx.on_failure(None)

    def _on_reply(self, msg: Response | KrpcError, addr: Address) -> None:
        tx = self._transactions.get(msg.transaction_id)
        if tx is None:
            self._obs.count("dht.unexpected_replies")
            return
        if tx.address != addr:
            self._obs.count("dht.replies_wrong_address")
            return
        del self._transactions[msg.transaction_id]
        if tx.timer is not None:
            tx.timer.cancel()
        if tx.stall_timer is not None:
            tx.stall_timer.cancel()
        if isinstance(msg, KrpcError):
            self._obs.count("dht.errors_received")
            tx.on_failure(msg)
            return
        self._obs.count("dht.responses_received")
        if msg.id != self.node_id:
            outcome = self.routing_table.heard_response(msg.id, addr, self.runtime.now())
            if outcome is Outcome.ADDED:
                self._obs.count("dht.nodes_added")
            elif outcome is Outcome.REPLACED:
                self._obs.count("dht.nodes_added")
                self._obs.count("dht.nodes_replaced")
            elif outcome is Outcome.CACHED:
                self._ping_questionable(msg.id)
        tx.on_response(msg)

    # ------------------------------------------------------------ table care

    def _ping_questionable(self, near: bytes | None = None) -> None:
        """BEP 5: before a newcomer may replace anyone, ping the least recently
        seen questionable node of its bucket (``near``: the bucket of that id;
        None: every bucket)."""
        for entry in self.routing_table.ping_candidates(self.runtime.now(), near):
            self._ping_entry(entry)

    def _ping_entry(self, entry: NodeEntry) -> None:
        def answered(_: Response) -> None:
            entry.pinging = False
            self._ping_questionable(entry.id)

        def failed(_: KrpcError | None) -> None:
            entry.pinging = False
            table = self.routing_table
            if table.find(entry.id) is entry and 0 < entry.failures < MAX_FAILURES:
                self._ping_entry(entry)  # "try once more before discarding"
            else:
                self._ping_questionable(entry.id)

        if self._send_query(entry.address, Ping(self.node_id), answered, failed):
            entry.pinging = True
            self._obs.count("dht.questionable_pings")

    def _maintain(self) -> None:
        if self._closed:
            return
        rt, cfg = self.runtime, self.config
        now = rt.now()
        self._maintenance = rt.call_later(cfg.maintenance_interval, self._maintain)
        self.store.expire(now)
        self._limiter.forget_idle(now)
        self._ping_questionable()
        table = self.routing_table
        if len(table) == 0 and self._routers:
            self.bootstrap(())
        else:
            for i in table.buckets_to_refresh(now)[:MAX_REFRESHES_PER_ROUND]:
                table.touch_bucket(i, now)
                self._obs.count("dht.refreshes")
                self._start_lookup(table.random_id_in(i, rt.rng), False, None, None, ())
        if cfg.state_path is not None and not self._saving and now - self._last_save >= \
                cfg.save_interval:  # fmt: skip
            self._save_in_background()

    def _snapshot(self) -> DhtState:
        now = self.runtime.now()
        good = self.routing_table.good_nodes(now) if self.table is not None else []
        return DhtState(self.node_id, tuple(NodeInfo(e.id, e.address) for e in good))

    def _save_in_background(self) -> None:
        path, snapshot = self.config.state_path, self._snapshot()
        assert path is not None
        self._saving = True
        self._last_save = self.runtime.now()

        def done(_: None, exc: BaseException | None) -> None:
            self._saving = False
            if exc is not None:
                self._obs.event("dht.state_error", error=str(exc))
            else:
                self._obs.count("dht.saves")

        self.runtime.offload(lambda: save_state(path, snapshot), done)

    # ------------------------------------------------------------ lookups

    def _start_lookup(
        self,
        target: bytes,
        get_peers: bool,
        on_peers: Callable[[list[Address]], None] | None,
        on_done: Callable[[LookupResult], None] | None,
        contacts: Iterable[tuple[bytes | None, Address]],
    ) -> Lookup:
        if len(target) != NODE_ID_BYTES:
            raise ValueError(f"lookup target of {len(target)} bytes (must be 20)")
        cfg = self.config
        trav = Traversal(target, k=cfg.k, alpha=cfg.alpha, max_candidates=MAX_CANDIDATES,
                         max_queries=MAX_QUERIES)  # fmt: skip
        lk = Lookup(self, trav, get_peers, on_peers, on_done)
        self._obs.count("dht.lookups")
        if self._endpoint is None or self._closed:
            lk.finished = lk.cancelled = True
            return lk
        for node_id, addr in contacts:
            if node_id != self.node_id:
                trav.add(node_id, addr, 1)
        now = self.runtime.now()
        for e in self.routing_table.closest(target, cfg.k, now):
            trav.add(e.id, e.address, 1)
        if len(trav) < cfg.alpha:
            for addr in self._routers:
                trav.add(None, addr, 1)
        self._lookups.add(lk)
        self.runtime.call_soon(partial(self._begin, lk))
        return lk

    def _begin(self, lk: Lookup) -> None:
        if lk.finished:
            return
        if lk.get_peers:
            # Peers announced to us count too: we may be one of the closest.
            mine = self.store.peers(lk.target, self.runtime.now(), MAX_LOOKUP_PEERS,
                                    self.runtime.rng)  # fmt: skip
            if mine:
                lk.traversal.first_values_hop = 0
                self._deliver_peers(lk, mine)
        self._pump(lk)

    def _pump(self, lk: Lookup) -> None:
        if lk.finished:
            return
        trav = lk.traversal
        args: Arguments
        if lk.get_peers:
            args = GetPeers(self.node_id, lk.target)
        else:
            args = FindNode(self.node_id, lk.target)
        for _ in range(MAX_QUERIES + 1):
            batch = trav.next_queries()
            if not batch:
                break
            for c in batch:
                sent = self._send_query(
                    c.address,
                    args,
                    partial(self._lookup_response, lk, c),
                    partial(self._lookup_failure, lk, c),
                    partial(self._lookup_stall, lk, c),
                )
                if not sent:
                    trav.failed(c)
        if trav.done:
            self._finish(lk)

    def _lookup_response(self, lk: Lookup, c: Candidate, resp: Response) -> None:
        if lk.finished:
            return
        trav = lk.traversal
        peers = [p for p in resp.values or () if p[1] != 0] if lk.get_peers else []
        trav.responded(c, resp.id, values=bool(peers))
        c.token = resp.token
        for n in resp.nodes or ():
            if n.id != self.node_id and n.address[1] != 0:
                trav.add(n.id, n.address, c.hop + 1)
        if peers:
            self._deliver_peers(lk, peers)
        self._pump(lk)

    def _deliver_peers(self, lk: Lookup, peers: list[Address]) -> None:
        new = []
        for p in peers:
            if p not in lk.peers and len(lk.peers) < MAX_LOOKUP_PEERS:
                lk.peers[p] = None
                new.append(p)
        if new and lk.on_peers is not None:
            lk.on_peers(new)

    def _lookup_failure(self, lk: Lookup, c: Candidate, _: KrpcError | None) -> None:
        if lk.finished:
            return
        lk.traversal.failed(c)
        self._pump(lk)

    def _lookup_stall(self, lk: Lookup, c: Candidate) -> None:
        if lk.finished:
            return
        lk.traversal.stall(c)
        self._pump(lk)

    def _finish(self, lk: Lookup) -> None:
        lk.finished = True
        self._lookups.discard(lk)
        trav = lk.traversal
        st = trav.stats()
        closest = trav.closest_responded(self.config.k)
        result = LookupResult(
            lk.target,
            tuple(lk.peers),
            tuple(NodeInfo(c.id, c.address) for c in closest if c.id is not None),
            st.hops,
            st.queries,
            st.responses,
            st.timeouts,
            self.runtime.now() - lk.started,
        )
        obs = self._obs
        obs.count("dht.lookups_done")
        obs.count("dht.lookup_hops", st.hops)
        obs.count("dht.lookup_queries", st.queries)
        if lk.get_peers:
            obs.count("dht.get_peers_lookups")
            obs.count("dht.get_peers_hops", st.hops)
            if result.peers:
                obs.count("dht.get_peers_found")
        obs.event("dht.lookup_done", target=lk.target.hex(), get_peers=lk.get_peers,
                  peers=len(result.peers), hops=st.hops, queries=st.queries,
                  responses=st.responses, timeouts=st.timeouts)  # fmt: skip
        if lk.on_done is not None and not lk.cancelled:
            lk.on_done(result)

    def _announce_to(
        self,
        lk: Lookup,
        result: LookupResult,
        port: int,
        implied_port: bool,
        on_done: Callable[[AnnounceResult], None] | None,
    ) -> None:
        targets = [c for c in lk.traversal.closest_responded(self.config.k)
                   if c.token is not None and c.id is not None]  # fmt: skip
        pending = [len(targets)]
        stored = [0]

        def settle() -> None:
            pending[0] -= 1
            if pending[0] == 0:
                finish()

        def finish() -> None:
            self._obs.count("dht.announce_stored", stored[0])
            self._obs.event("dht.announce_done", info_hash=lk.target.hex(), stored=stored[0],
                            attempted=len(targets))  # fmt: skip
            if on_done is not None and not lk.cancelled:
                on_done(AnnounceResult(lk.target, port, stored[0], len(targets), result))

        def ok(_: Response) -> None:
            stored[0] += 1
            settle()

        def fail(_: KrpcError | None) -> None:
            settle()

        if not targets:
            finish()
            return
        for c in targets:
            assert c.token is not None
            args = AnnouncePeer(self.node_id, lk.target, port, c.token, implied_port)
            if not self._send_query(c.address, args, ok, fail):
                settle()


__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_LOOKUP_PEERS",
    "MAX_ROUTERS",
    "MAX_VERIFY_PINGS",
    "AnnounceResult",
    "DhtConfig",
    "DhtNode",
    "DhtStats",
    "Lookup",
    "LookupResult",
]
