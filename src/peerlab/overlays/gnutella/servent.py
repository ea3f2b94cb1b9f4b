"""The Gnutella 0.6 servent (issue 4, sections 2 and 3): connections, routing, search.

Written against the runtime interface only, so the same object runs on real
sockets and in the simulator::

    servent = Servent(runtime, ServentConfig(listen_port=6346,
                                             bootstrap=(("192.0.2.7", 6346),)),
                      shares=catalog)
    servent.start()
    handle = servent.search("little toot", on_hit=lambda result, source: ...)
    ...
    servent.close()

What it does, with the spec each rule comes from:

* **Connections** (``handshaking_0.6`` section 3): the three-step handshake
  both ways through :class:`~peerlab.proto.gnutella.GnutellaConnection`
  driven by :class:`~peerlab.runtime.driver.StreamDriver`; we announce
  ourselves as an ultrapeer-class peer of a flat network
  (``X-Ultrapeer: True``) or, tiered, with our role (:mod:`.tier`:
  ultrapeer or leaf, QRP, promotion), accept ``deflate``
  (``compression``), refuse with ``503`` and ``X-Try-Ultrapeers`` when full
  and ``409`` when already connected.  The servent keeps ``target_degree``
  connections by dialling hosts from its :class:`HostCache`, which it fills
  from handshakes (``X-Try``, ``X-Try-Ultrapeers``, ``Listen-IP``), Pongs
  (and their ``IPP``), a bootstrap address and GWebCaches (``gwcache``).
  At most ``max_handshakes`` handshakes run at once and each must finish
  within ``handshake_timeout`` (slowloris); a silent connection gets a TTL-1
  Ping after ``keepalive_interval``, and a Bye 405 when that goes unanswered as long.
* **Routing** (draft 2.3; :mod:`.router`): Queries (and Pings when pong
  caching is off) flood with TTL/hops and the hops+TTL cap, duplicates are
  dropped by GUID, Pongs and Query Hits go back along the reverse path of
  their request, Pushes toward the servent GUID a Query Hit came from.
  Replies nobody asked through us are dropped.
* **Pong caching** (``ping-pong``; :mod:`.pongcache`): Pings answered from a
  cache refreshed at most every 3 s, throttled per connection.
* **Flow control** (:mod:`.flow`): every neighbour has a bounded priority
  queue; what does not fit is dropped and counted, never buffered without
  end.
* **Bye** (``bye``): sent with a code when we close (200 shutting down, 401
  too many duplicates, 402 improper messages, 405 idle, 502 send queue
  full), honoured when received.
* **Search** (:mod:`.search`): :meth:`Servent.search` floods a Query with our
  query flags; hits arrive live grouped by ``urn:sha1`` with every source.
  Queries from the network are answered from ``shares`` with Query Hits
  carrying HUGE URNs and our QHD (vendor ``PLAB``).
* **Bad input**: a malformed descriptor costs itself (counted; too many cost
  the connection, Bye 402); an oversized one, handshake garbage or a
  timed-out handshake cost the connection; a neighbour sending queries
  faster than ``max_query_rate`` has the excess dropped (and is cut with
  Bye 402 when it keeps flooding).  Tables a peer can grow are bounded.

Counters (:mod:`.counters`) go to :attr:`Servent.counters` and to
``runtime.observer`` as ``gnutella.*``.

Public API for the node: :class:`Servent` (``start``, ``close``,
``search``, ``connect``, ``ping``, ``send_push``, ``connections``,
``incoming_handler``, ``counters``, ``host_cache``, ``address``, ``guid``,
``busy``/``stable`` flags, ``on_push``; issue 5: ``role``,
``on_role_change``, ``set_capacity``, ``note_reachable``, ``leaf_links``,
``ultrapeer_links``, ``qrp_matches``, ``abort``), :class:`ServentConfig`,
:class:`ConnectionInfo`; :class:`~.search.Search` and its results.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerlab import __version__
from peerlab.errors import ConfigError, NetworkError, PeerlabError, RemoteProtocolError
from peerlab.overlays.gnutella.counters import TYPE_NAMES, Counters, type_name
from peerlab.overlays.gnutella.dynquery import DQ_VERSION, DqSettings, DynamicQuerier
from peerlab.overlays.gnutella.flow import MAX_QUEUE_BYTES, OutgoingQueue, Queued
from peerlab.overlays.gnutella.gwebcache import GWebCacheClient, GWebCacheReply
from peerlab.overlays.gnutella.hostcache import RETRY_BACKOFF, HostCache, usable_address
from peerlab.overlays.gnutella.pongcache import (
    PONG_CACHE_EXPIRY,
    PONGS_PER_PING,
    CachedPong,
    PingDemand,
    PongCache,
    refresh_ttl,
)
from peerlab.overlays.gnutella.pushproxy import PushProxies
from peerlab.overlays.gnutella.qrt import MAX_FILL, MAX_LEAF_TABLE_LENGTH
from peerlab.overlays.gnutella.roles import AUTO, ROLES, RolePolicy
from peerlab.overlays.gnutella.router import (
    LOCAL,
    MAX_ROUTES,
    MAX_TTL,
    ROUTE_LIFETIME,
    RouteTable,
    admit_ttl,
    forward_fields,
    reply_fields,
)
from peerlab.overlays.gnutella.search import (
    MAX_RESULTS_PER_QUERY,
    VENDOR_CODE,
    HitIdentity,
    HitSource,
    Search,
    SearchResult,
    Shares,
    build_query_hits,
    matching_files,
)
from peerlab.overlays.gnutella.tier import Tier
from peerlab.proto.gnutella import (
    BadDescriptor,
    ConnectionClosed,
    ConnectionConfig,
    ConnectRequest,
    DescriptorReceived,
    GnutellaConnection,
    HandshakeComplete,
    HandshakeRejected,
    HandshakeResponse,
    Negotiation,
    State,
)
from peerlab.runtime.base import (
    Address,
    BaseStreamHandler,
    Connecting,
    Listener,
    Runtime,
    Stream,
    StreamHandler,
    Timer,
)
from peerlab.runtime.driver import StreamDriver
from peerlab.wire.ggep import GGEP, ID_ULTRAPEER, ID_VENDOR_CODE
from peerlab.wire.gnutella import (
    DEFAULT_QUERY_FLAGS,
    GUID_LENGTH,
    PING,
    PONG,
    PUSH,
    QUERY,
    QUERY_HIT,
    Bye,
    Header,
    HopsFlow,
    PatchTable,
    Ping,
    Pong,
    Push,
    PushProxyAck,
    PushProxyCancel,
    PushProxyRequest,
    Query,
    QueryFlags,
    QueryHit,
    QueryStatusRequest,
    QueryStatusResponse,
    ResetTable,
    Unknown,
    VendorMessage,
    decode_payload,
    decode_vendor,
    encode_payload,
    make_guid,
)
from peerlab.wire.handshake import (
    DEFLATE,
    Headers,
    accept_encodings,
    capability_headers,
    classify_first_bytes,
    format_hosts,
    is_ultrapeer,
    listen_address,
    remote_ip,
    try_hosts,
    try_ultrapeers,
)
from peerlab.wire.urn import parse_sha1_urn, sha1_urn

# ------------------------------------------------------------------ limits

#: Hosts sent in one X-Try-Ultrapeers header (gtk-gnutella sends about 10).
TRY_HOSTS_SENT = 10
#: Below this many hosts in the cache, new connections ask for more (a Ping
#: with the full TTL instead of the TTL-1 "alive" ping).
HOSTS_WANTED = 20
#: Seconds between two Pings we send for more hosts.
HOST_PING_INTERVAL = 10.0
#: The longest wait between Pings for hosts.  A round that taught us no new
#: host doubles the wait up to this (10, 20, 40 ... 320 s), one that did
#: brings it back to HOST_PING_INTERVAL: where every host our Pings reach
#: is known already (a small network, or one whose pong caches answer us
#: the same hosts each time) we stop setting off refills all over it every
#: 10 s for nothing.
HOST_PING_MAX_INTERVAL = 320.0
#: Query rate measurement window: a neighbour whose queries over the rate
#: are dropped more than ``flood_bye_drops`` times in this window is cut.
FLOOD_WINDOW = 10.0
#: Seconds a neighbour may keep its stream paused with our queue full before
#: we give up on it (``bye`` section 5: "send queue full", 502).
STALL_TIMEOUT = 60.0
#: How often the shares' file count and size are asked again for our Pong.
SHARES_STAT_TTL = 10.0
#: GWebCache URLs remembered (learned from caches' ``U|`` lines).
MAX_GWEBCACHE_URLS = 50
#: Dialling picks among this many times as many fresh hosts as it needs.
DIAL_CHOICE = 4
#: Distances tracked in a search's hop histogram (hits from farther count as this).
MAX_TRACKED_DISTANCE = 16

# Bye codes (``bye`` section 2).
BYE_SHUTDOWN = 200
BYE_USER_CLOSED = 201
BYE_TOO_BIG = 400
BYE_DUPLICATES = 401
BYE_IMPROPER = 402
BYE_LONG_LIVED = 403
BYE_IDLE = 405
BYE_INTERNAL = 500
BYE_QUEUE_FULL = 502


#: ``rx.<type>`` counter names by payload type, made once (one per message otherwise).
_RX_NAMES: dict[int, str] = {ptype: "rx." + name for ptype, name in TYPE_NAMES.items()}
#: The same for ``tx.<type>`` and ``routed.<type>`` (counted per batch sent).
_TX_NAMES: dict[int, str] = {ptype: "tx." + name for ptype, name in TYPE_NAMES.items()}
_ROUTED_NAMES: dict[int, str] = {ptype: "routed." + name for ptype, name in TYPE_NAMES.items()}


# ------------------------------------------------------------------ config


@dataclass(frozen=True, slots=True)
class ServentConfig:
    """Settings of one servent, with their reasons."""

    #: Where we listen for Gnutella connections (and whether: the node may
    #: listen itself and hand us the connections it recognises, see
    #: :meth:`Servent.incoming_handler`).
    listen_host: str = "127.0.0.1"
    listen_port: int = 6346
    listen: bool = True
    #: The address we tell others (Listen-IP, Pongs, Query Hits); default:
    #: the listening address (or, listening on 0.0.0.0, what peers tell us).
    advertise: Address | None = None
    #: Connections we keep by dialling out; 0: only those :meth:`Servent.connect`
    #: asks for (how tests and benchmarks build an exact topology).
    target_degree: int = 6
    #: Connections at most (both ways); more are refused with 503 + X-Try.
    max_connections: int = 32
    #: Handshakes in progress at once; more incoming TCP connections are
    #: dropped unanswered (a slowloris holds handshakes open).
    max_handshakes: int = 16
    #: Outgoing connection attempts at once.
    max_connecting: int = 4
    connect_timeout: float = 10.0
    #: Seconds for the whole three-step handshake (gtk-gnutella: ~30).
    handshake_timeout: float = 15.0
    #: Idle seconds before a TTL-1 Ping; no answer for as long again: Bye 405.
    keepalive_interval: float = 30.0
    #: Seconds between housekeeping rounds (dialling, expiry, saving).
    maintain_interval: float = 1.0
    #: Servents to join through (``peerlab node --gnutella HOST:PORT``).
    bootstrap: tuple[Address, ...] = ()
    #: GWebCache URLs (``http://host:port/path``) to ask for hosts.
    gwebcaches: tuple[str, ...] = ()
    #: Seconds between two GWebCache host requests.
    gwebcache_retry: float = 60.0
    #: Seconds after start before we first announce ourselves to a GWebCache
    #: (gtk-gnutella waits 10 minutes for a stable address), then every hour.
    gwebcache_first_update: float = 600.0
    gwebcache_update_interval: float = 3600.0
    #: Where the host cache is kept across runs (``None``: in memory only).
    host_cache_path: Path | None = None
    host_cache_save_interval: float = 60.0
    #: The hops + TTL cap we enforce and announce (X-Max-TTL).
    max_ttl: int = MAX_TTL
    #: TTL of our queries unless a search says otherwise.
    search_ttl: int = 4
    #: Query flags of our queries (``min_speed``).
    query_flags: int = DEFAULT_QUERY_FLAGS
    #: We cannot accept connections: hits say "push", no Pong of our own.
    firewalled: bool = False
    #: Upload speed (kbit/s) we state in Query Hits.
    speed: int = 1000
    #: Pong caching (``ping-pong``); off: the 0.4 scheme, Pings flooded and
    #: Pongs routed back (what the lecture's message counts compare against).
    pong_caching: bool = True
    #: "T" of the ping-pong scheme: cache expiry and per-connection ping throttle.
    pong_cache_expiry: float = PONG_CACHE_EXPIRY
    #: Offer and use ``deflate`` links.
    compression: bool = True
    #: Queries per second one neighbour may send us (burst: ``query_burst``).
    max_query_rate: float = 100.0
    query_burst: float = 200.0
    #: Over-rate queries dropped within FLOOD_WINDOW after which the
    #: neighbour is cut (Bye 402); ``None``: never cut, only drop.
    flood_bye_drops: int | None = 10_000
    #: Malformed descriptors one neighbour may send before it is cut (Bye 402).
    max_bad_descriptors: int = 100
    #: Results we return for one query at most.
    max_results_per_query: int = MAX_RESULTS_PER_QUERY
    #: Our own searches at once (the oldest is dropped beyond this).
    max_searches: int = 64
    #: Seconds a search keeps collecting hits.
    search_lifetime: float = 600.0
    #: Routing tables (:mod:`.router`).
    route_lifetime: float = ROUTE_LIFETIME
    max_routes: int = MAX_ROUTES
    #: Bytes one neighbour's outgoing queue may hold.
    max_queue_bytes: int = MAX_QUEUE_BYTES
    user_agent: str = f"peerlab/{__version__}"
    #: Dynamic querying as an ultrapeer of a two-tier network (:mod:`.dynquery`).
    dynamic_query: DqSettings = DqSettings()
    #: ``auto`` (the promotion policy decides, :mod:`.roles`), ``ultrapeer``
    #: or ``leaf`` (issue 5; :mod:`.tier`).
    role: str = AUTO
    #: Leaves one ultrapeer serves at most (LimeWire's 30).
    max_leaves: int = 30
    #: Ultrapeer links an ultrapeer keeps at most (gtk-gnutella's 32).
    max_ultrapeer_links: int = 32
    #: Ultrapeers a leaf keeps (LimeWire's 3: losing one leaves two).
    ultrapeers_per_leaf: int = 3
    #: Measured upload capacity in bits/s (``None``: not measured; see
    #: :meth:`Servent.set_capacity`).
    upload_bps: float | None = None
    #: Thresholds of the promotion policy.
    role_policy: RolePolicy = RolePolicy()
    #: Seconds between two checks for a changed QRP table to send.
    qrp_interval: float = 5.0
    #: Largest QRP table a peer may make us keep, and the share of present
    #: entries above which a table is refused (:mod:`.qrt`).
    max_qrp_table_length: int = MAX_LEAF_TABLE_LENGTH
    max_qrp_fill: float = MAX_FILL
    #: Seconds before a host that answered 503 (full, or a leaf) is tried again.
    busy_retry: float = RETRY_BACKOFF

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.max_leaves < 0 or self.max_ultrapeer_links < 1 or self.ultrapeers_per_leaf < 1:
            raise ConfigError("max_leaves >= 0, max_ultrapeer_links and ultrapeers_per_leaf >= 1")
        if self.upload_bps is not None and self.upload_bps < 0:
            raise ConfigError("upload_bps must not be negative")
        if self.qrp_interval <= 0 or not 0 < self.max_qrp_fill <= 1:
            raise ConfigError("qrp_interval must be positive, max_qrp_fill in (0, 1]")
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"listen port {self.listen_port} is not 0-65535")
        if self.target_degree < 0 or self.max_connections < 1:
            raise ConfigError("target_degree must be >= 0 and max_connections >= 1")
        if self.target_degree > self.max_connections:
            raise ConfigError("target_degree cannot exceed max_connections")
        if not 1 <= self.max_ttl <= 255 or not 1 <= self.search_ttl <= self.max_ttl:
            raise ConfigError(f"search_ttl must be 1..max_ttl ({self.max_ttl})")
        for name in ("handshake_timeout", "keepalive_interval", "maintain_interval",
                     "connect_timeout", "max_query_rate", "query_burst",
                     "pong_cache_expiry"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.keepalive_interval <= self.pong_cache_expiry:
            # Our alive pings would meet our own throttle at a peer like us.
            raise ConfigError("keepalive_interval must exceed pong_cache_expiry")
        if self.max_handshakes < 1 or self.max_connecting < 1:
            raise ConfigError("max_handshakes and max_connecting must be >= 1")
        for addr in self.bootstrap:
            if not usable_address(addr):
                raise ConfigError(f"bootstrap address {addr[0]}:{addr[1]} is not IPv4:port")


# ------------------------------------------------------------- connections


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One connection as :meth:`Servent.connections` lists it."""

    id: int
    #: The other end of the TCP connection.
    address: Address
    #: Where the peer accepts connections (its Listen-IP), when it said.
    listen_address: Address | None
    outgoing: bool
    state: str
    #: ``ultrapeer``, ``leaf`` or ``unknown`` (the peer's X-Ultrapeer).
    role: str
    user_agent: str | None
    #: Wall time the connection opened (0 while handshaking).
    since: float
    messages_in: int
    messages_out: int
    dropped: int
    queued_bytes: int
    deflate_in: bool
    deflate_out: bool


class _TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Link:
    """One neighbour connection (internal: the servent drives it)."""

    def __init__(self, servent: Servent, link_id: int, outgoing: bool, address: Address) -> None:
        self.servent = servent
        self.id = link_id
        self.outgoing = outgoing
        self.address = address
        self.listen_address: Address | None = None
        self.state = LinkState.CONNECTING if outgoing else LinkState.HANDSHAKING
        self.negotiation: Negotiation | None = None
        self.role = "unknown"
        self.user_agent: str | None = None
        self.since = 0.0
        rt = servent.runtime
        cfg = servent.config
        # Liveness is checked by the servent's housekeeping (last_rx), not by
        # the machine's idle timer: that one re-arms on every read, a timer
        # cancelled and made anew per message.
        conn_cfg = ConnectionConfig(handshake_timeout=cfg.handshake_timeout, idle_timeout=None)
        if outgoing:
            self.machine = GnutellaConnection.outgoing_connection(
                servent._handshake_headers(address), now=rt.now(), config=conn_cfg
            )
        else:
            self.machine = GnutellaConnection.incoming_connection(now=rt.now(), config=conn_cfg)
        self.driver: StreamDriver = (StreamDriver if outgoing else _IncomingDriver)(
            rt,
            self.machine,
            # The servent's handler itself, bound to this link: a Python
            # frame less for every descriptor than a method forwarding it.
            functools.partial(servent._on_link_event, self),
            on_connected=self._on_connected,
            on_closed=self._on_closed,
            on_writable=self._on_writable,
        )
        self.connecting: Connecting | None = None
        self.queue = OutgoingQueue(max_bytes=cfg.max_queue_bytes)
        self.messages_in = 0
        self.messages_out = 0
        self.dropped = 0
        self.bad = 0
        #: When a descriptor last arrived, and whether our alive ping is out.
        self.last_rx = rt.now()
        self.alive_ping_out = False
        self.alive_ping_at = 0.0
        self.hops_flow = 255
        self.ping = PingDemand()
        self.queries = _TokenBucket(cfg.max_query_rate, cfg.query_burst, rt.now())
        self.flood_drops = 0
        self.flood_window_at = rt.now()
        self.paused_since: float | None = None
        self.dirty = False
        self.closing = False

    # -- driver callbacks

    def _on_connected(self, driver: StreamDriver) -> None:
        self.connecting = None
        if self.outgoing:
            self.state = LinkState.HANDSHAKING
            self.servent._connecting_done(self)
        stream = driver.stream
        if stream is not None and not self.outgoing:
            self.address = stream.remote_address
            self.servent.tier.reached()

    def _on_closed(self, exc: Exception | None) -> None:
        self.servent._on_link_closed(self, exc)

    def _on_writable(self, writable: bool) -> None:
        if writable:
            self.paused_since = None
            self.servent._mark_dirty(self)
        elif self.paused_since is None:
            self.paused_since = self.servent.runtime.now()

    # -- sending

    @property
    def is_open(self) -> bool:
        # machine.state, not machine.is_open: asked per neighbour per message.
        return (
            self.state is LinkState.OPEN and self.machine.state is State.OPEN and not self.closing
        )

    def enqueue(self, item: Queued) -> None:
        """Queue a descriptor; what flow control drops is counted."""
        if not self.is_open:
            return
        for lost in self.queue.push(item):
            self.dropped += 1
            self.servent.counters.count("flow_dropped." + type_name(lost.payload_type))
        self.servent._mark_dirty(self)

    def pump(self) -> None:
        """Hand queued descriptors to the connection while the stream takes them."""
        queue = self.queue
        if queue and self.driver.writable and self.is_open:
            # Queuing a descriptor in the machine neither closes the link nor
            # pauses the stream (that happens on write, in flush), so the
            # checks hold for the whole batch; counts are added once per type.
            send = self.machine.send_descriptor
            sent: dict[int, int] = {}
            routed: dict[int, int] = {}
            pop = queue.pop
            try:
                item = pop()
                while item is not None:
                    ptype = item.payload_type
                    send(item.guid, ptype, item.ttl, item.hops, item.payload)
                    sent[ptype] = sent.get(ptype, 0) + 1
                    if item.routed:
                        routed[ptype] = routed.get(ptype, 0) + 1
                    item = pop()
            finally:
                counters = self.servent.counters
                for ptype, n in sent.items():
                    self.messages_out += n
                    counters.count(_TX_NAMES.get(ptype) or "tx." + type_name(ptype), n)
                for ptype, n in routed.items():
                    counters.count(_ROUTED_NAMES.get(ptype) or "routed." + type_name(ptype), n)
        self.driver.flush()

    def close(self, code: int | None = None, reason: str = "") -> None:
        """Close: with a Bye ``code`` when open, else just drop the stream."""
        if self.closing or self.state is LinkState.CLOSED:
            return
        self.closing = True
        servent = self.servent
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if code is not None and self.state is LinkState.OPEN and self.machine.is_open:
            self.queue.clear()
            headers = [("Server", servent.config.user_agent)]
            self.machine.send_bye(code, reason, headers, guid=servent._new_guid())
            servent.counters.count("tx.bye")
            servent.counters.count(f"bye_sent.{code}")
        self.driver.close()

    def info(self) -> ConnectionInfo:
        neg = self.negotiation
        return ConnectionInfo(
            id=self.id,
            address=self.address,
            listen_address=self.listen_address,
            outgoing=self.outgoing,
            state=self.state.value,
            role=self.role,
            user_agent=self.user_agent,
            since=self.since,
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            dropped=self.dropped,
            queued_bytes=self.queue.bytes,
            deflate_in=bool(neg and neg.deflate_in),
            deflate_out=bool(neg and neg.deflate_out),
        )


class _IncomingDriver(StreamDriver):
    """The driver of an incoming connection: its first bytes must be able to
    begin ``GNUTELLA CONNECT/`` (``handshaking_0.6`` section 3), so binary
    junk, HTTP or a ``GIV`` sent to a Gnutella-only port is refused at once
    instead of waiting out the handshake timeout."""

    _sniffed = False
    _head = b""

    def data_received(self, data: bytes) -> None:
        if not self._sniffed and not self.finished:
            self._head += data
            kind = classify_first_bytes(self._head)
            if kind is None:
                return
            self._sniffed = True
            data, self._head = self._head, b""
            if kind != "gnutella":
                self._protocol_failed(
                    RemoteProtocolError(f"not a Gnutella handshake ({kind})", 400)
                )
                return
        super().data_received(data)


class _Refused(BaseStreamHandler):
    """An incoming TCP connection we have no room to handshake with."""

    def connection_made(self, stream: Stream) -> None:
        stream.abort()


# ----------------------------------------------------------------- servent


class Servent:
    """A Gnutella 0.6 servent; see the module docstring.

    Callbacks the owner may set: ``on_push(push)`` -- a Push naming our
    servent GUID arrived (the node connects out and sends ``GIV``);
    ``on_connection(info, opened)`` -- a connection opened or closed.
    ``busy`` and ``stable`` are the QHD flags our hits state (the node keeps
    them current: no free upload slot; an upload completed).
    """

    def __init__(self, runtime: Runtime, config: ServentConfig, shares: Shares) -> None:
        self.runtime = runtime
        self.config = config
        self.shares = shares
        self.counters = Counters(runtime.observer)
        self.guid = self._new_guid()
        self.host_cache = HostCache(config.host_cache_path)
        self.pong_cache = PongCache(config.pong_cache_expiry)
        self.queries = RouteTable(config.route_lifetime, config.max_routes)
        self.pings = RouteTable(config.route_lifetime, config.max_routes)
        self.pushes = RouteTable(config.route_lifetime, config.max_routes)
        self.servents = RouteTable(config.route_lifetime, config.max_routes)
        self.busy = False
        self.stable = False
        self.on_push: Callable[[Push], None] | None = None
        self.on_connection: Callable[[ConnectionInfo, bool], None] | None = None
        #: Called with our new role when promotion or demotion changes it.
        self.on_role_change: Callable[[str], None] | None = None
        self._links: dict[int, Link] = {}
        self._next_link = 1
        self._searches: dict[bytes, Search] = {}
        self._listener: Listener | None = None
        self._timer: Timer | None = None
        self._flush_timer: Timer | None = None
        self._dirty: list[Link] = []
        self._learned_ip: str | None = None
        self._started = False
        self._closed = False
        self._next_save = 0.0
        self._saving = False
        self._last_host_ping = -HOST_PING_INTERVAL
        self._host_ping_wait = HOST_PING_INTERVAL
        self._hosts_at_host_ping = -1  # hosts we knew when we last pinged for more
        self._shares_stat: tuple[float, int, int] | None = None
        self._gwc = GWebCacheClient(runtime, vendor=VENDOR_CODE, version=__version__)
        self._gwc_urls: list[str] = list(dict.fromkeys(config.gwebcaches))
        self._gwc_busy = False
        self._gwc_next = 0.0
        self._gwc_update_at = 0.0
        self._gwc_turn = 0
        #: Dynamic queries (:mod:`.dynquery`) and push proxies (:mod:`.pushproxy`).
        self.dq = DynamicQuerier(self, config.dynamic_query)
        self.push_proxies = PushProxies(self)
        self._started_at = runtime.now()
        #: Roles and query routing (:mod:`.tier`).
        self.tier = Tier(self)
        self.tier.dynamic_querying = DQ_VERSION

    # ------------------------------------------------------------ roles

    @property
    def role(self) -> str:
        """Our role now: ``ultrapeer`` or ``leaf``."""
        return self.tier.role

    def set_capacity(self, upload_bps: float, *, reachable: bool | None = None) -> None:
        """Feed the promotion policy what the owner measured: upload
        throughput in bits/s and, when known, whether peers can reach us.
        An ``auto`` servent becomes tiered with its first measurement."""
        if upload_bps < 0:
            raise ConfigError("upload_bps must not be negative")
        self.tier.tracker.upload_bps = upload_bps
        if reachable is not None:
            self.tier.tracker.reachable = reachable

    def note_reachable(self) -> None:
        """An incoming connection reached us (the owner's listener saw it):
        reachability measured for the promotion policy."""
        self.tier.reached()

    def leaf_links(self) -> list[ConnectionInfo]:
        """Our open leaf connections (we are an ultrapeer)."""
        return [lk.info() for lk in self._open_links() if self.tier.is_leaf_link(lk)]

    def ultrapeer_links(self) -> list[ConnectionInfo]:
        """Our open connections to ultrapeers (and to flat 0.6 servents)."""
        return [lk.info() for lk in self._open_links() if not self.tier.is_leaf_link(lk)]

    def qrp_matches(self, link_id: int, query: Query) -> bool:
        """Does leaf ``link_id``'s QRP table match ``query``?"""
        return self.tier.matches(link_id, query)

    def abort(self) -> None:
        """Stop at once without a Bye: every connection reset, as peers see
        a crashed or killed servent (tests and the simulator's churn)."""
        self.close(abort=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the host cache, listen, and start joining the network.

        Raises :class:`~peerlab.errors.AddressInUse` (or another
        :class:`~peerlab.errors.NetworkError`) when the port is taken and
        :class:`~peerlab.errors.StorageError` for an unreadable host cache."""
        if self._started:
            return
        self._started = True
        cfg, rt = self.config, self.runtime
        self._started_at = rt.now()
        loaded = self.host_cache.load()
        if cfg.listen:
            self._listener = rt.listen((cfg.listen_host, cfg.listen_port), self.incoming_handler)
        elif cfg.advertise is None and not cfg.firewalled:
            raise ConfigError("a servent that does not listen needs an advertised address")
        wall = rt.wall_time()
        for addr in cfg.bootstrap:
            self.host_cache.add(addr, seen=wall, source="bootstrap")
        now = rt.now()
        self._next_save = now + cfg.host_cache_save_interval
        self._gwc_update_at = now + cfg.gwebcache_first_update
        rt.observer.event(
            "gnutella.started", address=self.address, guid=self.guid.hex(), hosts=loaded
        )
        for addr in cfg.bootstrap:
            self.connect(addr)
        self._timer = rt.call_later(0.0, self._maintain)

    def close(self, *, abort: bool = False) -> None:
        """Say Bye (200) to every neighbour, stop listening, save the host
        cache; ``abort``: reset every connection instead, without a Bye."""
        if self._closed:
            return
        self._closed = True
        for t in (self._timer, self._flush_timer):
            if t is not None:
                t.cancel()
        self._timer = self._flush_timer = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for link in list(self._links.values()):
            if abort:
                link.closing = True
                if link.connecting is not None:
                    link.connecting.cancel()
                link.driver.abort()
            else:
                link.close(BYE_SHUTDOWN, "Servent shutdown")
        for search in list(self._searches.values()):
            search.finished = True
        self._searches.clear()
        self.dq.close()
        self._gwc.close()
        if self.host_cache.path is not None and self._started:
            try:
                self.host_cache.write(self.host_cache.snapshot(self.runtime.wall_time()))
            except PeerlabError as exc:
                self.runtime.observer.event("gnutella.host_cache_save_failed", error=str(exc))

    @property
    def listening_address(self) -> Address | None:
        """Where we listen (with the real port when 0 was asked for)."""
        return self._listener.address if self._listener is not None else None

    @property
    def address(self) -> Address:
        """The address we tell others we accept connections at."""
        cfg = self.config
        if cfg.advertise is not None:
            return cfg.advertise
        if self._listener is not None:
            host, port = self._listener.address
        else:
            host, port = cfg.listen_host, cfg.listen_port
        if host in ("0.0.0.0", "", "::") and self._learned_ip is not None:
            host = self._learned_ip
        return (host, port)

    @property
    def accepting(self) -> bool:
        """Do we accept incoming connections right now (not firewalled, room)?"""
        return not self.config.firewalled and self.open_count < self.config.max_connections

    # ------------------------------------------------------------ public API

    def connect(self, address: Address) -> bool:
        """Dial ``address`` now (whatever the target degree); ``False`` when
        already connected or connecting there, or when it is us."""
        if self._closed or not usable_address(address):
            return False
        if address == self.address or any(
            address in (lk.address, lk.listen_address) for lk in self._links.values()
        ):
            return False
        self.host_cache.add(address, seen=self.runtime.wall_time(), source="connect")
        link = Link(self, self._new_link_id(), True, address)
        self._links[link.id] = link
        self.counters.count("connections.attempted")
        link.connecting = self.runtime.connect(
            address, link.driver, timeout=self.config.connect_timeout
        )
        return True

    def search(
        self,
        text: str,
        on_hit: Callable[[SearchResult, HitSource], None] | None = None,
        *,
        ttl: int | None = None,
        urn: str | None = None,
        xml: str | None = None,
    ) -> Search:
        """Flood a Query for ``text`` (and/or ``urn``, a ``urn:sha1``) to every
        neighbour; hits are grouped in the returned :class:`Search` and
        reported to ``on_hit(result, source)`` as they arrive.

        ``ttl`` defaults to ``search_ttl`` and is capped at ``max_ttl``.  The
        search collects for ``search_lifetime`` seconds or until cancelled.
        A malformed ``urn`` raises :class:`~peerlab.errors.ConfigError`.
        ``xml`` is a rich query's collection (:mod:`peerlab.wire.gxml`)."""
        cfg = self.config
        ttl = min(max(1, ttl if ttl is not None else cfg.search_ttl), cfg.max_ttl)
        urns: tuple[str, ...] = ()
        if urn is not None:
            try:
                urns = (sha1_urn(parse_sha1_urn(urn)),)
            except RemoteProtocolError:
                raise ConfigError(f"not a urn:sha1: {urn[:80]!r}") from None
        criteria = text.strip() if text.strip() else ("\\" if urns else "")
        now = self.runtime.now()
        guid = self._new_guid()
        search = Search(guid, text, ttl, now, on_hit, urns[0] if urns else None)
        search._cancel = self._forget_search
        search.on_error = self._hit_callback_failed
        while len(self._searches) >= cfg.max_searches:
            oldest = next(iter(self._searches.values()))
            oldest.cancel()
        self._searches[guid] = search
        self.queries.put(guid, LOCAL, now)
        flags = cfg.query_flags
        if cfg.firewalled and flags & QueryFlags.MARK:
            flags |= QueryFlags.FIREWALLED
        query = Query(criteria, flags, urns, xml)
        payload = encode_payload(query)
        sent = 0
        if self.dq.launch_own(guid, query, payload):
            sent = self.dq.sent_count(guid)
        else:
            for link in self._open_links():
                link.enqueue(Queued(guid, QUERY, ttl, 0, payload))
                sent += 1
        self.counters.count("searches.started")
        self.runtime.observer.event("gnutella.search", text=text, ttl=ttl, neighbours=sent)
        return search

    def ping(self, ttl: int | None = None) -> bytes:
        """Send a Ping of our own to every neighbour (for more hosts); returns its GUID."""
        ttl = min(max(1, ttl if ttl is not None else self.config.max_ttl), self.config.max_ttl)
        guid = self._new_guid()
        now = self.runtime.now()
        self.pings.put(guid, LOCAL, now)
        payload = encode_payload(Ping())
        for link in self._open_links():
            link.enqueue(Queued(guid, PING, ttl, 0, payload))
        return guid

    def send_push(
        self, servent_guid: bytes, file_index: int, address: Address | None = None
    ) -> bool:
        """Route a Push asking ``servent_guid`` to connect to us (or
        ``address``) and upload file ``file_index`` (draft 2.2.8); ``False``
        when no Query Hit of that servent passed through here."""
        route = self.servents.get(servent_guid, self.runtime.now())
        link = self._links.get(route) if route is not None else None
        if link is None or not link.is_open:
            return False
        ip, port = address or self.address
        payload = encode_payload(Push(servent_guid, file_index, ip, port))
        guid = self._new_guid()
        self.pushes.add(guid, LOCAL, self.runtime.now())
        link.enqueue(Queued(guid, PUSH, self.config.max_ttl, 0, payload))
        return True

    def connections(self) -> list[ConnectionInfo]:
        """Every connection, open or being set up, oldest first."""
        return [link.info() for link in self._links.values()]

    @property
    def open_count(self) -> int:
        return sum(1 for link in self._links.values() if link.state is LinkState.OPEN)

    def searches(self) -> list[Search]:
        return list(self._searches.values())

    def incoming_handler(self) -> StreamHandler:
        """A handler for one incoming connection: what our listener uses, and
        what the node's shared port hands a connection that began with
        ``GNUTELLA CONNECT`` (it then feeds the bytes it already read to
        ``data_received``)."""
        if self._closed or self._handshaking_count() >= self.config.max_handshakes:
            self.counters.count("connections.refused")
            return _Refused()
        link = Link(self, self._new_link_id(), False, ("0.0.0.0", 0))
        self._links[link.id] = link
        return link.driver

    # ------------------------------------------------------------- internals

    def _new_guid(self) -> bytes:
        return make_guid(self.runtime.rng.randbytes(GUID_LENGTH))

    def _new_link_id(self) -> int:
        n = self._next_link
        self._next_link += 1
        return n

    def _open_links(self) -> list[Link]:
        return [link for link in self._links.values() if link.is_open]

    def _handshaking_count(self) -> int:
        return sum(
            1
            for link in self._links.values()
            if link.state in (LinkState.HANDSHAKING, LinkState.CONNECTING)
        )

    def _mark_dirty(self, link: Link) -> None:
        """Flush ``link`` soon: writes are batched per loop turn."""
        if not link.dirty:
            link.dirty = True
            self._dirty.append(link)
        if self._flush_timer is None and not self._closed:
            self._flush_timer = self.runtime.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_timer = None
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            link.dirty = False
            if link.state is LinkState.OPEN:
                try:
                    link.pump()
                except PeerlabError as exc:
                    self._internal_error(link, exc)

    def _handshake_headers(
        self, peer: Address | None, *, response: bool = False, peer_headers: Headers | None = None
    ) -> list[tuple[str, str]]:
        cfg = self.config
        listen = None if cfg.firewalled else self.address
        if listen is not None and not usable_address(listen):
            listen = None
        tries: list[Address] = []
        if response:
            exclude = [self.address] + ([peer] if peer is not None else [])
            tries = self.host_cache.freshest(
                TRY_HOSTS_SENT, exclude, ultrapeers_only=self.tier.tiered
            )
        headers = capability_headers(
            user_agent=cfg.user_agent,
            listen=listen,
            remote=peer[0] if peer is not None and peer[0] != "0.0.0.0" else None,
            accept_deflate=cfg.compression,
            max_ttl=cfg.max_ttl,
            try_ultrapeers=tries,
            **self.tier.headers(response),  # type: ignore[arg-type]
        )
        if (
            peer_headers is not None
            and cfg.compression
            and DEFLATE in accept_encodings(peer_headers)
        ):
            headers.append(("Content-Encoding", DEFLATE))
        return headers

    def _connecting_done(self, link: Link) -> None:
        self.counters.count("connections.connected")

    def _callback(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        """Call the owner's code: whatever it raises costs only that call."""
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # the owner's bug must not cost the connection
            self.counters.count("callback_errors")
            self.runtime.observer.event("gnutella.callback_failed", error=repr(exc))

    def _hit_callback_failed(self, exc: Exception) -> None:
        self.counters.count("callback_errors")
        self.runtime.observer.event("gnutella.callback_failed", error=repr(exc))

    def _internal_error(self, link: Link | None, exc: BaseException) -> None:
        self.counters.count("internal_errors")
        self.runtime.observer.event(
            "gnutella.internal_error", link=link.id if link else None, error=repr(exc)
        )
        if link is not None:
            link.close(BYE_INTERNAL, "Internal error")

    # ------------------------------------------------------------ link events

    def _on_link_event(self, link: Link, ev: Any) -> None:
        if link.closing:
            return
        try:
            if isinstance(ev, DescriptorReceived):
                self._on_descriptor(link, ev)
            elif isinstance(ev, BadDescriptor):
                self._bad(link, ev.error, ev.header.payload_type)
            elif isinstance(ev, ConnectRequest):
                self._on_connect_request(link, ev)
            elif isinstance(ev, HandshakeResponse):
                self._on_handshake_response(link, ev)
            elif isinstance(ev, HandshakeComplete):
                self._opened(link, ev.negotiation)
            elif isinstance(ev, HandshakeRejected):
                self._on_rejected(link, ev)
            elif isinstance(ev, ConnectionClosed):
                link.driver.close()
        except (PeerlabError, ValueError) as exc:
            # A rule of ours broke on this input: this connection pays.
            self._internal_error(link, exc)

    def _on_connect_request(self, link: Link, ev: ConnectRequest) -> None:
        peer_listen = listen_address(ev.headers)
        self._learn_hosts(ev.headers, source="handshake")
        stream = link.driver.stream
        peer = stream.remote_address if stream is not None else None
        if self.open_count >= self.config.max_connections:
            self._reject(link, 503, "Too many connections", peer)
            return
        if peer_listen is not None and (
            peer_listen == self.address
            or any(
                other is not link
                and other.listen_address == peer_listen
                and other.state is LinkState.OPEN
                for other in self._links.values()
            )
        ):
            self._reject(link, 409, "Already connected", peer)
            return
        link.listen_address = peer_listen
        refusal = self.tier.admission(link, ev.headers)
        if refusal is not None:
            self._reject(link, refusal[0], refusal[1], peer)
            return
        link.machine.accept(self._handshake_headers(peer, response=True, peer_headers=ev.headers))

    def _reject(self, link: Link, code: int, reason: str, peer: Address | None) -> None:
        exclude = [self.address] + ([peer] if peer is not None else [])
        tries = self.host_cache.freshest(TRY_HOSTS_SENT, exclude, ultrapeers_only=self.tier.tiered)
        headers = [("User-Agent", self.config.user_agent)]
        if tries:
            headers.append(("X-Try-Ultrapeers", format_hosts(tries)))
        headers += self.tier.refusal_headers(exclude + [link.listen_address or self.address])
        link.machine.reject(code, reason, headers)
        self.counters.count("connections.refused")
        link.closing = True
        link.driver.close()

    def _on_handshake_response(self, link: Link, ev: HandshakeResponse) -> None:
        self._learn_hosts(ev.headers, source="handshake")
        final, go_on = self.tier.response_done(link, ev.headers)
        if not go_on:
            link.machine.reject(503, "Role mismatch", [("User-Agent", self.config.user_agent)])
            self.counters.count("connections.refused")
            link.closing = True
            link.driver.close()
            return
        if self.config.compression and DEFLATE in accept_encodings(ev.headers):
            final.append(("Content-Encoding", DEFLATE))
        neg = link.machine.accept(final)
        if neg is not None:
            self._opened(link, neg)

    def _on_rejected(self, link: Link, ev: HandshakeRejected) -> None:
        self._learn_hosts(ev.headers, source="x-try")
        now = self.runtime.now()
        if ev.code == 503:
            self.host_cache.busy(link.address, now, self.config.busy_retry)
        else:
            self.host_cache.failed(link.address, now)
        self.counters.count("connections.rejected_by_peer")
        self.runtime.observer.event(
            "gnutella.rejected", peer=f"{link.address[0]}:{link.address[1]}",
            code=ev.code, reason=ev.reason,
        )  # fmt: skip
        link.closing = True
        link.driver.close()

    def _learn_hosts(self, headers: Headers, *, source: str) -> None:
        wall = self.runtime.wall_time()
        me = self.address
        ups = [a for a in try_ultrapeers(headers) if a != me]
        plain = [a for a in try_hosts(headers) if a != me]
        n = self.host_cache.add_many(ups, seen=wall, ultrapeer=True, source=source)
        n += self.host_cache.add_many(plain, seen=wall, source=source)
        if n:
            self.counters.count("hosts.learned", n)

    def _opened(self, link: Link, neg: Negotiation) -> None:
        rt = self.runtime
        link.state = LinkState.OPEN
        link.last_rx = rt.now()
        link.negotiation = neg
        link.since = rt.wall_time()
        remote = neg.remote_headers
        up = is_ultrapeer(remote)
        link.role = "ultrapeer" if up else ("leaf" if up is False else "unknown")
        link.user_agent = neg.remote_user_agent
        peer_listen = listen_address(remote)
        if peer_listen is not None:
            link.listen_address = peer_listen
        elif link.outgoing:
            link.listen_address = link.address
        mine = remote_ip(remote)
        if mine is not None and ":" not in mine:
            self._learned_ip = mine
        wall = rt.wall_time()
        if link.listen_address is not None and link.listen_address != self.address:
            self.host_cache.add(
                link.listen_address, seen=wall, ultrapeer=bool(up), source="handshake"
            )
        if link.outgoing:
            self.host_cache.succeeded(link.address, seen=wall)
        self.counters.count("connections.opened")
        rt.observer.event(
            "gnutella.connected",
            peer=f"{link.address[0]}:{link.address[1]}",
            outgoing=link.outgoing,
            role=link.role,
            agent=link.user_agent,
            deflate=neg.deflate_out,
        )
        # "When establishing a new connection C: ... send C a new ping" with
        # the full TTL when we want hosts, else a TTL-1 handshake ping.
        want = len(self.host_cache) < HOSTS_WANTED
        ttl = self.config.max_ttl if want and self.config.pong_caching else 1
        guid = self._new_guid()
        self.pings.put(guid, LOCAL, rt.now())
        link.enqueue(Queued(guid, PING, ttl, 0, encode_payload(Ping())))
        self.push_proxies.link_opened(link)
        self.tier.opened(link)
        if self.on_connection is not None and not link.closing:
            self._callback(self.on_connection, link.info(), True)

    def _on_link_closed(self, link: Link, exc: Exception | None) -> None:
        was = link.state
        link.state = LinkState.CLOSED
        link.closing = True
        self._links.pop(link.id, None)
        self.push_proxies.link_closed(link)
        self.tier.closed(link)
        if link.connecting is not None:
            link.connecting = None
        now = self.runtime.now()
        if was is LinkState.OPEN:
            self.counters.count("connections.closed")
        elif link.outgoing and not self._closed:
            if was is LinkState.CONNECTING or isinstance(exc, NetworkError):
                self.host_cache.failed(link.address, now)
                self.counters.count("connections.failed")
        if isinstance(exc, RemoteProtocolError):
            self.counters.count("connections.protocol_error")
        self.runtime.observer.event(
            "gnutella.disconnected",
            peer=f"{link.address[0]}:{link.address[1]}",
            state=was.value,
            error=str(exc) if exc is not None else None,
        )
        if was is LinkState.OPEN and self.on_connection is not None:
            self._callback(self.on_connection, link.info(), False)

    def _check_alive(self, link: Link, now: float) -> None:
        """Keep-alive: after ``keepalive_interval`` of silence a TTL-1 Ping
        (``handshaking_0.6``: "alive" pings); unanswered as long again, Bye 405
        ("the node reached its inactivity timeout")."""
        interval = self.config.keepalive_interval
        if link.alive_ping_out:
            if now - link.alive_ping_at >= interval:
                link.close(BYE_IDLE, "Activity timeout")
            return
        if now - link.last_rx < interval:
            return
        link.alive_ping_out = True
        link.alive_ping_at = now
        guid = self._new_guid()
        self.pings.put(guid, LOCAL, self.runtime.now())
        link.enqueue(Queued(guid, PING, 1, 0, encode_payload(Ping())))

    def _bad(self, link: Link, error: str, payload_type: int) -> None:
        link.bad += 1
        link.dropped += 1
        self.counters.count("dropped.bad_descriptor")
        self.runtime.observer.event(
            "gnutella.bad_descriptor", link=link.id, type=type_name(payload_type), error=error[:200]
        )
        if link.bad > self.config.max_bad_descriptors:
            link.close(BYE_IMPROPER, "Too many malformed messages")

    def _drop(self, link: Link, reason: str) -> None:
        link.dropped += 1
        self.counters.count("dropped." + reason)

    # ------------------------------------------------------------ descriptors

    def _on_descriptor(self, link: Link, ev: DescriptorReceived) -> None:
        h = ev.header
        link.messages_in += 1
        link.last_rx = self.runtime.now()
        link.alive_ping_out = False
        self.counters.count(_RX_NAMES.get(h.payload_type) or "rx." + type_name(h.payload_type))
        msg = ev.message
        ptype = h.payload_type
        if isinstance(msg, Bye):
            self.counters.count(f"bye_received.{msg.code}")
            self.runtime.observer.event(
                "gnutella.bye", peer=f"{link.address[0]}:{link.address[1]}",
                code=msg.code, reason=msg.reason,
            )  # fmt: skip
            link.closing = True
            link.driver.close()
            return
        if msg is None:
            try:
                msg = decode_payload(ptype, ev.payload)
            except RemoteProtocolError as exc:
                self._bad(link, str(exc), ptype)
                return
        # Most common first (the types are unrelated, so the order only
        # changes how many checks a descriptor takes): Pongs, then Queries.
        if isinstance(msg, Pong):
            self._on_pong(link, h, ev.payload, msg)
        elif isinstance(msg, Query):
            self._on_query(link, h, ev.payload, msg)
        elif isinstance(msg, QueryHit):
            self._on_query_hit(link, h, ev.payload, msg)
        elif isinstance(msg, Ping):
            self._on_ping(link, h, ev.payload)
        elif isinstance(msg, Push):
            self._on_push(link, h, ev.payload, msg)
        elif isinstance(msg, VendorMessage):
            self._on_vendor(link, h, msg)
        elif isinstance(msg, ResetTable | PatchTable):
            # QRP tables matter between leaves and ultrapeers (:mod:`.tier`).
            self.tier.on_route_table(link, msg)
        elif isinstance(msg, Unknown):
            # draft 2.2: "Servents SHOULD drop descriptors they do not understand".
            self._drop(link, "unknown_type")

    def _admit(self, link: Link, h: Header) -> int | None:
        """The TTL a flooded descriptor keeps here, or ``None`` (dropped)."""
        admitted = admit_ttl(h.ttl, h.hops, self.config.max_ttl)
        if admitted is None:
            link.dropped += 1
            self.counters.count("dropped_ttl." + type_name(h.payload_type))
            return None
        ttl, trimmed = admitted
        if trimmed:
            self.counters.count("ttl_trimmed." + type_name(h.payload_type))
        return ttl

    def _flood(
        self, source: Link, guid: bytes, ptype: int, ttl: int, hops: int, payload: bytes
    ) -> None:
        fwd = forward_fields(ttl, hops)
        if fwd is None:
            return
        ttl2, hops2 = fwd
        tier = self.tier
        tiered = tier.tiered
        if tiered and tier.role == "leaf":
            return  # a leaf is shielded: it forwards nothing
        for link in self._links.values():
            if link is source or not link.is_open:
                continue
            if tiered and tier.is_leaf_link(link):
                continue  # leaves get queries by QRP (tier.route_query), pings never
            if ptype == QUERY and hops2 >= link.hops_flow:
                self._drop(link, "hops_flow")
                continue
            link.enqueue(Queued(guid, ptype, ttl2, hops2, payload, routed=True))

    def _route_reply(self, route: int, h: Header, payload: bytes) -> bool:
        """Send a reply one step back along its path; ``False`` if it cannot go."""
        link = self._links.get(route)
        if link is None or not link.is_open:
            self.counters.count("dropped.route_lost")
            return False
        fields = reply_fields(h.ttl, h.hops)
        if fields is None:
            self.counters.count("dropped_ttl." + type_name(h.payload_type))
            return False
        ttl, hops = fields
        link.enqueue(Queued(h.guid, h.payload_type, ttl, hops, payload, routed=True))
        return True

    # -- Query

    def _on_query(self, link: Link, h: Header, payload: bytes, query: Query) -> None:
        now = self.runtime.now()
        if not link.queries.take(now):
            self._drop(link, "query_rate")
            self._flooding(link, now)
            return
        ttl = self._admit(link, h)
        if ttl is None:
            return
        if not self.queries.add(h.guid, link.id, now):
            link.dropped += 1
            self.counters.count("dup.query")
            return
        self.runtime.observer.event(
            "gnutella.query_seen", text=query.criteria, urns=list(query.urns),
            hops=h.hops, ttl=h.ttl, peer=f"{link.address[0]}:{link.address[1]}",
        )  # fmt: skip
        self._answer(link, h, query)
        if self.dq.launch_for_leaf(link, h.guid, query, payload, h.hops):
            return
        if self.tier.tiered:
            self.tier.route_query(link, h.guid, ttl, h.hops, payload, query)
        else:
            self._flood(link, h.guid, QUERY, ttl, h.hops, payload)

    def _flooding(self, link: Link, now: float) -> None:
        limit = self.config.flood_bye_drops
        if now - link.flood_window_at >= FLOOD_WINDOW:
            link.flood_window_at = now
            link.flood_drops = 0
        link.flood_drops += 1
        if limit is not None and link.flood_drops > limit:
            self.runtime.observer.event("gnutella.flooder", link=link.id, drops=link.flood_drops)
            link.close(BYE_IMPROPER, "Query flood")

    def _answer(self, link: Link, h: Header, query: Query) -> None:
        try:
            files = matching_files(self.shares, query, self.config.max_results_per_query)
        except Exception as exc:  # the shares are the node's: a failure costs this answer only
            self.counters.count("answer_errors")
            self.runtime.observer.event("gnutella.answer_failed", error=repr(exc))
            return
        if not files:
            return
        ip, port = self.address
        me = HitIdentity(
            ip=ip if usable_address((ip, max(port, 1))) else "0.0.0.0",
            port=port,
            speed=self.config.speed,
            servent_guid=self.guid,
            push=self.config.firewalled,
            busy=self.busy,
            stable=self.stable,
            push_proxies=tuple(self.push_proxies.proxies()),
        )
        hits = build_query_hits(query, files, me)
        if not hits:
            return
        self.counters.count("queries.answered")
        ttl = min(h.hops + 1, 255)
        for hit in hits:
            link.enqueue(Queued(h.guid, QUERY_HIT, ttl, 0, encode_payload(hit)))

    # -- Query Hit

    def _on_query_hit(self, link: Link, h: Header, payload: bytes, hit: QueryHit) -> None:
        now = self.runtime.now()
        route = self.queries.get(h.guid, now)
        if route is None:
            self._drop(link, "unrouted_hit")
            return
        if hit.servent_guid != self.guid:
            # Pushes for that servent go back the way its hit came (draft 2.2.8).
            self.servents.put(hit.servent_guid, link.id, now)
        self.dq.on_hit(h.guid, len(hit.results))
        if route == LOCAL:
            search = self._searches.get(h.guid)
            if search is None or search.finished:
                self._drop(link, "late_hit")
                return
            self.counters.count("hits.delivered")
            search.add_hit(hit, min(h.hops, MAX_TRACKED_DISTANCE))
            return
        self._route_reply(route, h, payload)

    def _forget_search(self, search: Search) -> None:
        self._searches.pop(search.guid, None)

    # -- Push

    def _on_push(self, link: Link, h: Header, payload: bytes, push: Push) -> None:
        now = self.runtime.now()
        if not self.pushes.add(h.guid, link.id, now):
            link.dropped += 1
            self.counters.count("dup.push")
            return
        if push.servent_guid == self.guid:
            self.counters.count("push.received")
            self.runtime.observer.event(
                "gnutella.push", index=push.file_index, to=f"{push.ip}:{push.port}"
            )
            if self.on_push is not None:
                self._callback(self.on_push, push)
            return
        route = self.servents.get(push.servent_guid, now)
        if route is None or route == LOCAL:
            self._drop(link, "unrouted_push")
            return
        self._route_reply(route, h, payload)

    # -- Ping / Pong

    def _share_stat_cached(self) -> tuple[float, int, int]:
        """``(when, files, kbytes)`` of our shares, asked again every SHARES_STAT_TTL."""
        now = self.runtime.now()
        stat = self._shares_stat
        if stat is None or now - stat[0] >= SHARES_STAT_TTL:
            files = kbytes = 0
            try:
                count = getattr(self.shares, "count", None)
                total = getattr(self.shares, "total_size", None)
                files = int(count()) if count is not None else 0
                kbytes = int(total()) // 1024 if total is not None else 0
            except Exception as exc:  # the node's shares: our Pong just says 0
                self.runtime.observer.event("gnutella.shares_stat_failed", error=repr(exc))
            stat = self._shares_stat = (now, min(files, 0xFFFFFFFF), min(kbytes, 0xFFFFFFFF))
        return stat

    def _share_stat(self) -> tuple[int, int]:
        """``(files, kbytes)`` of our shares (cached for SHARES_STAT_TTL)."""
        _, files, kbytes = self._share_stat_cached()
        return files, kbytes

    def _own_pong(self) -> bytes | None:
        if not self.accepting:
            return None
        ip, port = self.address
        if not usable_address((ip, port)):
            return None
        stat = self._share_stat_cached()
        free = max(0, self.config.max_connections - self.open_count)
        if self.tier.tiered and self.role == "leaf":
            # A leaf's Pong claims no ultrapeer slots (GGEP ``UP`` is for ultrapeers).
            ggep = GGEP.of((ID_VENDOR_CODE, VENDOR_CODE.encode("ascii") + bytes([1])))
        else:
            # GGEP ``UP``: version, free leaf slots, free ultrapeer slots.
            free_leaves, free_ups = self.tier.free_slots()
            if not self.tier.tiered:
                free_ups = free
            ggep = GGEP.of(
                (ID_ULTRAPEER, bytes([1, min(free_leaves, 255), min(free_ups, 255)])),
                (ID_VENDOR_CODE, VENDOR_CODE.encode("ascii") + bytes([1])),
            )
        return encode_payload(Pong(port, ip, stat[1], stat[2], ggep))

    def _on_ping(self, link: Link, h: Header, payload: bytes) -> None:
        now = self.runtime.now()
        if not self.config.pong_caching:
            ttl = self._admit(link, h)
            if ttl is None:
                return
            if not self.pings.add(h.guid, link.id, now):
                link.dropped += 1
                self.counters.count("dup.ping")
                return
            own = self._own_pong()
            if own is not None:
                link.enqueue(Queued(h.guid, PONG, min(h.hops + 1, 255), 0, own))
            self._flood(link, h.guid, PING, ttl, h.hops, payload)
            return
        # Pong caching ("When receiving a ping P on connection C").
        if not link.ping.accept(now, self.pong_cache.expiry):
            self._drop(link, "ping_throttled")
            return
        ttl = min(max(h.ttl, 1), self.config.max_ttl)
        if ttl > 1 and self.pong_cache.expired(now):
            # The Ping asks for hosts up to ttl-1 hops from us: our refill
            # asks our neighbours for hosts up to ttl-2 from them, so the
            # demand it passes on shrinks by one hop at each refill and dies
            # out: the earlier, demand-driven rule of Rohrs's ping/pong
            # scheme (gtk-gnutella doc/gnutella/ping-pong; see refresh_ttl).
            self._refresh_pong_cache(now, refresh_ttl(ttl))
        link.ping.set(h.guid, ttl, h.hops, now, expiry=self.pong_cache.expiry)
        back_ttl = min(h.hops + 1, 255)
        own = self._own_pong()
        if own is not None:
            link.enqueue(Queued(h.guid, PONG, back_ttl, 0, own))
        for cached in self.pong_cache.pick(ttl - 1, link.id, PONGS_PER_PING):
            link.ping.took(cached.distance)
            link.enqueue(Queued(h.guid, PONG, back_ttl, cached.distance, cached.payload))

    def _refresh_pong_cache(self, now: float, ttl: int) -> None:
        """Empty the cache and ping every neighbour with ``ttl``."""
        self.pong_cache.refresh(now)
        guid = self._new_guid()
        self.pings.put(guid, LOCAL, now)
        payload = encode_payload(Ping())
        for link in self._open_links():
            link.enqueue(Queued(guid, PING, ttl, 0, payload))
        self.counters.count("pong_cache.refreshes")

    def _on_pong(self, link: Link, h: Header, payload: bytes, pong: Pong) -> None:
        now = self.runtime.now()
        route = self.pings.get(h.guid, now)
        if route is None:
            self._drop(link, "unrouted_pong")
            return
        if route != LOCAL:
            self._route_reply(route, h, payload)
            return
        address = (pong.ip, pong.port)
        me = self.address
        if address == me:
            return
        wall = self.runtime.wall_time()
        if self.host_cache.add(address, seen=wall, ultrapeer=pong.is_ultrapeer, source="pong"):
            self.counters.count("hosts.learned")
        extra = [a for a in pong.packed_hosts[:TRY_HOSTS_SENT] if a != me]
        if extra:
            self.host_cache.add_many(extra, seen=wall, source="pong")
        if not self.config.pong_caching or not usable_address(address):
            return
        distance = min(h.hops + 1, self.config.max_ttl)
        self.pong_cache.add(CachedPong(payload, address, distance, link.id))
        # Demultiplex: "forward the pong along all connections still needing more pongs".
        for other in self._links.values():
            # wants() first: it is False for most links and cheaper than is_open.
            demand = other.ping
            if other is link or not demand.wants(distance, now) or not other.is_open:
                continue
            assert demand.guid is not None
            demand.took(distance)
            other.enqueue(Queued(demand.guid, PONG, min(demand.hops + 1, 255), distance, payload))

    # -- vendor messages

    def _on_vendor(self, link: Link, h: Header, vm: VendorMessage) -> None:
        try:
            body = decode_vendor(vm)
        except RemoteProtocolError as exc:
            self._bad(link, str(exc), 0x31)
            return
        if isinstance(body, HopsFlow):
            link.hops_flow = body.hops
            return
        if isinstance(body, QueryStatusRequest):
            self.dq.on_status_request(link, h.guid)
            return
        if isinstance(body, QueryStatusResponse):
            self.dq.on_status_response(link, h.guid, body.kept)
            return
        if isinstance(body, PushProxyRequest):
            self.push_proxies.on_request(link, h.guid)
            return
        if isinstance(body, PushProxyAck):
            self.push_proxies.on_ack(link, h.guid, body)
            return
        if isinstance(body, PushProxyCancel):
            self.push_proxies.on_cancel(link, h.guid)
            return
        if self.tier.on_vendor(link, body):
            return
        # Everything else is understood-and-unneeded here, or unknown: "MUST
        # drop them" without routing (vendor_msg section 2).
        self._drop(link, "ignored_vendor")

    # ------------------------------------------------------------ maintenance

    def _maintain(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self._maintain_once()
        except PeerlabError as exc:
            self._internal_error(None, exc)
        self._timer = self.runtime.call_later(self.config.maintain_interval, self._maintain)

    def _maintain_once(self) -> None:
        rt, cfg = self.runtime, self.config
        now = rt.now()
        for search in list(self._searches.values()):
            if now - search.started >= cfg.search_lifetime:
                search.cancel()
        for link in list(self._links.values()):
            if link.state is LinkState.OPEN:
                self._check_alive(link, now)
            if (
                link.state is LinkState.OPEN
                and link.paused_since is not None
                and now - link.paused_since >= STALL_TIMEOUT
                and link.queue.bytes >= cfg.max_queue_bytes // 2
            ):
                link.close(BYE_QUEUE_FULL, "Send queue full")
        self.tier.tick(now)
        if cfg.target_degree > 0:
            self._dial(now)
        if (
            cfg.pong_caching
            and len(self.host_cache) < HOSTS_WANTED
            and now - self._last_host_ping >= self._host_ping_wait
            and self._open_links()
        ):
            self._last_host_ping = now
            known = len(self.host_cache)
            if known <= self._hosts_at_host_ping:
                self._host_ping_wait = min(2 * self._host_ping_wait, HOST_PING_MAX_INTERVAL)
                self.counters.count("hosts.ping_backoffs")
            else:
                self._host_ping_wait = HOST_PING_INTERVAL
            self._hosts_at_host_ping = known
            if self.pong_cache.expired(now):
                # Our own want of hosts: the full TTL.
                self._refresh_pong_cache(now, cfg.max_ttl)
        if self._gwc_urls and not cfg.firewalled and now >= self._gwc_update_at:
            self._gwc_update_at = now + cfg.gwebcache_update_interval
            self._gwebcache_update()
        if (
            self.host_cache.path is not None
            and self.host_cache.dirty
            and now >= self._next_save
            and not self._saving
        ):
            self._next_save = now + cfg.host_cache_save_interval
            self._save_host_cache()

    def _dial(self, now: float) -> None:
        cfg = self.config
        links = list(self._links.values())
        tier = self.tier
        target = cfg.target_degree
        if tier.tiered:
            # A leaf keeps its ultrapeers; an ultrapeer dials ultrapeers only.
            target = cfg.ultrapeers_per_leaf if tier.role == "leaf" else tier.up_target()
        dialled = [lk for lk in links if not tier.is_leaf_link(lk)]
        have = sum(1 for lk in dialled if lk.state is not LinkState.CLOSED)
        connecting = sum(1 for lk in dialled if lk.state is LinkState.CONNECTING)
        need = min(target - have, cfg.max_connecting - connecting)
        if need <= 0:
            return
        exclude = [self.address]
        for lk in links:
            exclude.append(lk.address)
            if lk.listen_address is not None:
                exclude.append(lk.listen_address)
        # A random few of the freshest, not the freshest few: every newcomer
        # dialling the same hosts would grow hubs (gtk-gnutella picks at random).
        candidates: list[Address] = []
        if tier.tiered:
            candidates = self.host_cache.candidates(
                now, exclude, need * DIAL_CHOICE, ultrapeers_only=True
            )
        if not candidates:
            candidates = self.host_cache.candidates(now, exclude, need * DIAL_CHOICE)
        if len(candidates) > need:
            candidates = self.runtime.rng.sample(candidates, need)
        for address in candidates:
            self.connect(address)
        if not candidates and self._gwc_urls and not self._gwc_busy and now >= self._gwc_next:
            self._gwc_next = now + cfg.gwebcache_retry
            self._gwebcache_get()

    def _next_gwc(self) -> str:
        url = self._gwc_urls[self._gwc_turn % len(self._gwc_urls)]
        self._gwc_turn += 1
        return url

    def _gwebcache_get(self) -> None:
        url = self._next_gwc()
        self._gwc_busy = True
        self.counters.count("gwebcache.requests")

        def done(reply: GWebCacheReply | None, error: str | None) -> None:
            self._gwc_busy = False
            if self._closed:
                return
            if reply is None:
                self.counters.count("gwebcache.failures")
                self.runtime.observer.event("gnutella.gwebcache_failed", url=url, error=error)
                return
            wall = self.runtime.wall_time()
            hosts = [a for a, _age in reply.hosts if a != self.address]
            n = self.host_cache.add_many(hosts, seen=wall, source="gwebcache")
            self.counters.count("gwebcache.hosts", n)
            for u, _age in reply.urls:
                if u not in self._gwc_urls and len(self._gwc_urls) < MAX_GWEBCACHE_URLS:
                    self._gwc_urls.append(u)
            self.runtime.observer.event("gnutella.gwebcache", url=url, hosts=n)
            if n and self.config.target_degree > 0:
                self._dial(self.runtime.now())

        self._gwc.get(url, done)

    def _gwebcache_update(self) -> None:
        ip, port = self.address
        if not usable_address((ip, port)):
            return
        url = self._next_gwc()
        others = [u for u in self._gwc_urls if u != url]
        other = others[self.runtime.rng.randrange(len(others))] if others else None

        def done(reply: GWebCacheReply | None, error: str | None) -> None:
            ok = reply is not None and reply.update_ok is True
            self.counters.count("gwebcache.updates" if ok else "gwebcache.update_failures")

        self._gwc.update(url, (ip, port), done, cache_url=other)

    def _save_host_cache(self) -> None:
        data = self.host_cache.snapshot(self.runtime.wall_time())
        cache = self.host_cache
        self._saving = True

        def done(_: None, exc: BaseException | None) -> None:
            self._saving = False
            if exc is not None:
                cache.dirty = True
                self.runtime.observer.event("gnutella.host_cache_save_failed", error=str(exc))
            else:
                self.counters.count("host_cache.saves")

        self.runtime.offload(lambda: cache.write(data), done)


def neighbours_of(servent: Servent) -> list[Address]:
    """The listening addresses of a servent's open connections (for tests and status)."""
    out: list[Address] = []
    for info in servent.connections():
        if info.state == "open":
            out.append(info.listen_address or info.address)
    return out


__all__ = [
    "BYE_DUPLICATES",
    "BYE_IDLE",
    "BYE_IMPROPER",
    "BYE_QUEUE_FULL",
    "BYE_SHUTDOWN",
    "ConnectionInfo",
    "LinkState",
    "Servent",
    "ServentConfig",
    "neighbours_of",
]
