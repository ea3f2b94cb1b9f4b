"""Dynamic querying (gtk-gnutella ``doc/gnutella/dynamic_query``, GDF v0.1).

An ultrapeer of a two-tier network does not flood a query to every
ultrapeer neighbour at a fixed TTL.  It *probes*: the query goes to a few
connections with a low TTL (section 2.5.1); then, one connection at a time,
it computes the TTL that should bring the missing results given how many
results per ultrapeer the query has earned so far (2.5.2.1), waits 2.4 s per
hop for the hits (2.5.2.3), and stops when enough results arrived, no
connection is left, the theoretical horizon passed 300,000 ultrapeers, or
the query grew old (2.5.2.4).  An ultrapeer runs it for its own searches
(150 results wanted) and for its leaves' queries (50: a leaf has about three
ultrapeers searching for it, 2.5.3.1); for a leaf's query it asks the leaf
how many results it kept with Query Status Request ``BEAR/11`` and the leaf
answers with ``BEAR/12`` (65535: "stop, I have enough", gtk-gnutella
``leaf_guided_queries``).

Two parts:

* :class:`DynamicQuery` -- the pure algorithm of one query: given the
  candidate connections and the results so far, which connections get the
  query next, at which TTL, and when to look again.  No I/O, time as an
  argument, so the tests drive it with explicit ``now``.
* :class:`DynamicQuerier` -- the servent's side: keeps the queries under way
  (at most :attr:`DqSettings.max_queries`), sends the descriptors on the
  servent's links, re-arms one runtime timer per query, counts hits routed
  back for each query GUID, and answers Query Status Requests when we are
  the leaf.  The servent calls it from a handful of hooks.

Counters (``gnutella.*`` through the servent's :class:`~.counters.Counters`):
``dq.started``, ``dq.probes``, ``dq.iterations``, ``dq.sent`` (descriptors),
``dq.finished.<reason>``, ``dq.status_requests``, ``dq.status_responses``,
``dq.status_answered``, ``dq.refused`` (too many at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peerlab.overlays.gnutella.flow import Queued
from peerlab.runtime.base import Timer
from peerlab.wire.gnutella import (
    QUERY,
    VENDOR,
    Query,
    QueryStatusRequest,
    QueryStatusResponse,
    encode_payload,
    encode_vendor,
)
from peerlab.wire.handshake import degree as header_degree
from peerlab.wire.handshake import max_ttl as header_max_ttl

if TYPE_CHECKING:
    from peerlab.overlays.gnutella.servent import Link, Servent

# ------------------------------------------------------------------ limits

#: Results an ultrapeer's own query aims at (2.5.2.4 item 1, 2.5.3.1:
#: "Clients MUST target a maximum of 150 total results").
RESULTS_OWN = 150
#: Results an ultrapeer seeks for one of its leaves' queries (2.5.3.1: a
#: leaf has about 3 ultrapeers, "each Ultrapeer MUST attempt to get only 50").
RESULTS_LEAF = 50
#: The probe: "a TTL=2 query down 3 connections" (2.5.1).
PROBE_TTL = 2
PROBE_CONNECTIONS = 3
#: "2400 milliseconds per hop is a reasonable latency to expect" (2.5.2.3).
WAIT_PER_HOP = 2.4
#: Extra wait per probed connection ("MAY ... wait for an extra second per
#: connection probed", 2.5.2.3).
PROBE_EXTRA_PER_CONNECTION = 1.0
#: The TTL a fresh query may carry at most ("X-Max-TTL MUST NOT exceed 4",
#: 2.5.3.2.1); a peer's smaller X-Max-TTL lowers it for that connection.
MAX_DQ_TTL = 4
#: "The theoretical horizon has hit the 300,000 limit" (2.5.2.4 item 3).
MAX_HORIZON = 300_000
#: "a client MAY wish to limit the total lifetime of the query to, say 3
#: minutes" (2.5.2.4).
QUERY_LIFETIME = 180.0
#: Dynamic queries under way at once; a query beyond this is flooded the
#: classic way instead (a leaf flooding queries must not grow our memory).
MAX_QUERIES = 256
#: The degree assumed of a peer that states no ``X-Degree``: a classic
#: servent (the spec's "degree 6 network").
DEFAULT_DEGREE = 6
#: The most a degree may count for in the horizon estimate: "X-Degree" is
#: the peer's word, and 32 is already the spec's recommended high degree.
MAX_COUNTED_DEGREE = 32
#: The version we announce in ``X-Dynamic-Querying`` (2.5.3.2.3).
DQ_VERSION = "0.1"
#: Leaves' kept-results count meaning "I have enough, stop" (``BEAR/12``).
STATUS_STOP = 0xFFFF
#: When the next TTL's horizon would be at least this share of what is
#: needed, the lower TTL is taken ("weight this algorithm towards lower
#: TTLs", 2.5.2.1).
LOWER_TTL_SHARE = 0.5
#: Per-hop wait shortening for rare content (2.5.2.3 second exception):
#: once the query reached this many ultrapeers with fewer than
#: ``RARE_RESULTS`` results, each iteration waits this much less per hop,
#: down to ``MIN_WAIT_PER_HOP``.
RARE_HORIZON = 3000
RARE_RESULTS = 10
RARE_WAIT_STEP = 0.1
MIN_WAIT_PER_HOP = 1.0


@dataclass(frozen=True, slots=True)
class DqSettings:
    """Dynamic querying knobs (``dynamic_query`` sections as noted above).

    Tests on real sockets shorten ``wait_per_hop``; everything else keeps the
    spec's figures by default."""

    results_own: int = RESULTS_OWN
    results_leaf: int = RESULTS_LEAF
    probe_ttl: int = PROBE_TTL
    probe_connections: int = PROBE_CONNECTIONS
    wait_per_hop: float = WAIT_PER_HOP
    probe_extra_per_connection: float = PROBE_EXTRA_PER_CONNECTION
    max_ttl: int = MAX_DQ_TTL
    max_horizon: int = MAX_HORIZON
    lifetime: float = QUERY_LIFETIME
    max_queries: int = MAX_QUERIES


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ultrapeer connection that may receive the query: its ``X-Degree``
    (how many ultrapeers stand behind it) and ``X-Max-TTL``."""

    link_id: int
    degree: int = DEFAULT_DEGREE
    max_ttl: int = MAX_DQ_TTL


def horizon(degree: int, ttl: int) -> int:
    """Ultrapeers one connection reaches with ``ttl`` when every node has
    ``degree`` connections: ``Sum[(degree-1)^i, 0 <= i <= ttl-1]`` (2.5.2.2)."""
    d = max(2, min(degree, MAX_COUNTED_DEGREE)) - 1
    return sum(d**i for i in range(max(0, ttl)))


def next_ttl(
    *,
    wanted: int,
    results: int,
    queried: int,
    remaining: int,
    degree: int,
    max_ttl: int,
) -> int:
    """The TTL for the next connection (2.5.2.1).

    With ``R = wanted - results`` still needed, ``RH = results / queried``
    results per ultrapeer so far, ``HQ = R / RH`` ultrapeers to reach and
    ``HQC = HQ / remaining`` per connection: the smallest TTL whose horizon
    on a ``degree`` connection reaches ``HQC``, one lower when that one
    already reaches half of it, and at most ``max_ttl``.  No result yet
    means rare content: the highest TTL allowed."""
    max_ttl = max(1, max_ttl)
    if results <= 0 or queried <= 0:
        return max_ttl
    needed = max(0, wanted - results)
    per_host = results / queried
    per_connection = needed / per_host / max(1, remaining)
    for ttl in range(1, max_ttl + 1):
        if horizon(degree, ttl) >= per_connection:
            if ttl > 1 and horizon(degree, ttl - 1) >= per_connection * LOWER_TTL_SHARE:
                return ttl - 1
            return ttl
    return max_ttl


@dataclass(slots=True)
class DynamicQuery:
    """One dynamic query (sans-I/O).

    ``start(now, candidates)`` returns the probe: ``(link_id, ttl)`` pairs to
    send at once.  Afterwards the owner calls :meth:`step` at
    :attr:`next_at` (or earlier: it only acts once the wait is over) with
    the candidates of that moment; it returns the next ``(link_id, ttl)``
    or nothing, and sets :attr:`finished` with a reason when the query is
    over.  :meth:`add_results` counts results routed back;
    :meth:`leaf_status` takes the leaf's own count (``BEAR/12``)."""

    wanted: int
    started: float
    settings: DqSettings = field(default_factory=DqSettings)
    results: int = 0
    #: The leaf's count of results it kept (``None``: never told us).
    leaf_kept: int | None = None
    #: Ultrapeers the query has theoretically reached (2.5.2.2).
    queried: int = 0
    sent_to: dict[int, int] = field(default_factory=dict)
    next_at: float = 0.0
    iterations: int = 0
    wait_per_hop: float = 0.0
    finished: str | None = None

    def __post_init__(self) -> None:
        self.wait_per_hop = self.settings.wait_per_hop

    @property
    def counted(self) -> int:
        """Results that count: the leaf's own tally once it sent one."""
        return self.leaf_kept if self.leaf_kept is not None else self.results

    def start(self, now: float, candidates: Sequence[Candidate]) -> list[tuple[int, int]]:
        """The probe (2.5.1): ``probe_ttl`` to the first ``probe_connections``
        candidates at once, then wait ``wait_per_hop`` per hop plus
        ``probe_extra_per_connection`` per probed connection (2.5.2.3)."""
        s = self.settings
        fresh = [c for c in candidates if c.link_id not in self.sent_to]
        probe = fresh[: max(1, s.probe_connections)]
        if not probe:
            self.finished = "no_connections"
            return []
        out: list[tuple[int, int]] = []
        longest = 1
        for c in probe:
            ttl = max(1, min(s.probe_ttl, c.max_ttl, s.max_ttl))
            self._sent(c, ttl)
            out.append((c.link_id, ttl))
            longest = max(longest, ttl)
        self.next_at = (
            now + self.wait_per_hop * longest + s.probe_extra_per_connection * (len(probe) - 1)
        )
        return out

    def _sent(self, c: Candidate, ttl: int) -> None:
        self.sent_to[c.link_id] = ttl
        self.queried += horizon(c.degree, ttl)

    def add_results(self, n: int) -> None:
        self.results += max(0, n)

    def leaf_status(self, kept: int) -> None:
        """The leaf's ``BEAR/12`` answer: its kept results, or stop."""
        if kept == STATUS_STOP:
            self.finished = "leaf_stopped"
        else:
            self.leaf_kept = kept

    def done(self, now: float, candidates: Sequence[Candidate]) -> str | None:
        """Why the query is over now (2.5.2.4), or ``None``."""
        s = self.settings
        if self.finished is not None:
            return self.finished
        if self.counted >= self.wanted:
            return "enough_results"
        if self.queried >= s.max_horizon:
            return "horizon"
        if now - self.started >= s.lifetime:
            return "lifetime"
        if not any(c.link_id not in self.sent_to for c in candidates):
            return "no_connections"
        return None

    def step(self, now: float, candidates: Sequence[Candidate]) -> list[tuple[int, int]]:
        """One iteration (2.5.2): the next connection and its TTL, or ``[]``
        when the wait is not over or the query finished."""
        if self.finished is not None:
            return []
        reason = self.done(now, candidates)
        if reason is not None:
            self.finished = reason
            return []
        if now < self.next_at:
            return []
        fresh = [c for c in candidates if c.link_id not in self.sent_to]
        c = fresh[0]
        ttl = next_ttl(
            wanted=self.wanted,
            results=self.counted,
            queried=self.queried,
            remaining=len(fresh),
            degree=c.degree,
            max_ttl=min(c.max_ttl, self.settings.max_ttl),
        )
        self._sent(c, ttl)
        self.iterations += 1
        if self.queried >= RARE_HORIZON and self.counted < RARE_RESULTS:
            self.wait_per_hop = max(MIN_WAIT_PER_HOP, self.wait_per_hop - RARE_WAIT_STEP)
        self.next_at = now + self.wait_per_hop * ttl
        return [(c.link_id, ttl)]


# ------------------------------------------------------------- the servent


@dataclass(slots=True)
class _Running:
    query: DynamicQuery
    payload: bytes
    #: Hops the query carries when we forward it (0: ours, 1: a leaf's).
    hops: int
    #: The leaf the query came from (``None``: our own search).
    leaf: int | None
    timer: Timer | None = None


def candidate_of(link: Link) -> Candidate:
    """A link as a :class:`Candidate`, from the peer's handshake headers."""
    neg = link.negotiation
    headers = neg.remote_headers if neg is not None else None
    deg = header_degree(headers) if headers is not None else None
    mttl = header_max_ttl(headers) if headers is not None else None
    return Candidate(
        link.id,
        deg if deg is not None and deg > 0 else DEFAULT_DEGREE,
        mttl if mttl is not None and mttl > 0 else MAX_DQ_TTL,
    )


class DynamicQuerier:
    """Runs a servent's dynamic queries (see the module docstring).

    The servent calls: :meth:`launch_own` from ``search``,
    :meth:`launch_for_leaf` for a query arriving from a leaf,
    :meth:`on_hit` for every Query Hit, :meth:`on_status_request` and
    :meth:`on_status_response` for ``BEAR/11``/``BEAR/12``, :meth:`close`."""

    def __init__(self, servent: Servent, settings: DqSettings | None = None) -> None:
        self.servent = servent
        self.settings = settings or DqSettings()
        self._running: dict[bytes, _Running] = {}
        #: Called with (guid, reason, query) when a query finishes (benchmarks).
        self.on_finished: Callable[[bytes, str, DynamicQuery], None] | None = None

    # -- who takes part

    def ultrapeer_links(self, exclude: int | None = None) -> list[Link]:
        """Open links that are not our leaves: ultrapeers (and flat servents)."""
        tier = self.servent.tier
        return [
            lk for lk in self.servent._open_links()
            if not tier.is_leaf_link(lk) and lk.id != exclude
        ]  # fmt: skip

    def leaf_links(self) -> list[Link]:
        """Open links to our leaves (we are a tiered ultrapeer, they said
        ``X-Ultrapeer: False``)."""
        tier = self.servent.tier
        return [lk for lk in self.servent._open_links() if tier.is_leaf_link(lk)]

    def acting_ultrapeer(self) -> bool:
        """Are we an ultrapeer of a two-tier network (:mod:`.tier`)?  A flat
        servent floods as in issue 4; a leaf never runs dynamic queries."""
        tier = self.servent.tier
        return tier.tiered and tier.role == "ultrapeer"

    # -- launching

    def launch_own(self, guid: bytes, query: Query, payload: bytes) -> bool:
        """Run our own search ``guid`` dynamically when we act as an ultrapeer
        (``False``: the caller floods it the classic way)."""
        if not self.acting_ultrapeer():
            return False
        self._to_leaves(guid, query, payload)
        return self._launch(guid, payload, 0, None, self.settings.results_own)

    def launch_for_leaf(
        self, link: Link, guid: bytes, query: Query, payload: bytes, hops: int
    ) -> bool:
        """A query from our leaf ``link``: the ultrapeer "ignores the TTL of
        that query and begins a dynamic query" (2.2).  Our other leaves get
        it as the classic flood would give it them; ``False``: not a leaf's
        query (the caller floods)."""
        if not self.servent.tier.is_leaf_link(link):
            return False
        # Our other leaves: the last hop, by their QRP tables (TTL 1 routes
        # to leaves only, with tier's counters).
        self.servent.tier.route_query(link, guid, 1, hops, payload, query)
        return self._launch(guid, payload, hops + 1, link.id, self.settings.results_leaf)

    def _to_leaves(self, guid: bytes, query: Query, payload: bytes) -> None:
        """Our own query's last hop (``ultrapeer_qrp``), by the rules and
        counters of :meth:`.tier.Tier.route_query`: a leaf whose QRP table
        matches, or one that speaks no QRP (it gets every query)."""
        servent = self.servent
        tier = servent.tier
        counters = servent.counters
        for lk in self.leaf_links():
            if lk.id not in tier.leaf_tables and not tier._routes_by_qrp(lk):
                counters.count("queries.to_unrouted_leaves")
            elif not servent.qrp_matches(lk.id, query):
                counters.count(
                    "queries.leaf_blocked" if lk.id in tier.leaf_tables else "queries.leaf_no_table"
                )
                continue
            else:
                counters.count("queries.to_leaves")
            lk.enqueue(Queued(guid, QUERY, 1, 0, payload))

    def _launch(
        self, guid: bytes, payload: bytes, hops: int, leaf: int | None, wanted: int
    ) -> bool:
        counters = self.servent.counters
        if guid in self._running:
            return True
        if len(self._running) >= self.settings.max_queries:
            counters.count("dq.refused")
            return False
        now = self.servent.runtime.now()
        query = DynamicQuery(wanted, now, self.settings)
        run = _Running(query, payload, hops, leaf)
        self._running[guid] = run
        counters.count("dq.started")
        sends = query.start(now, self._candidates(leaf))
        counters.count("dq.probes")
        self._send(guid, run, sends)
        self._arm(guid, run)
        return True

    def _candidates(self, leaf: int | None) -> list[Candidate]:
        return [candidate_of(lk) for lk in self.ultrapeer_links(exclude=leaf)]

    def _send(self, guid: bytes, run: _Running, sends: list[tuple[int, int]]) -> None:
        links = self.servent._links
        for link_id, ttl in sends:
            lk = links.get(link_id)
            if lk is None or not lk.is_open:
                continue
            lk.enqueue(Queued(guid, QUERY, ttl, run.hops, run.payload, routed=run.leaf is not None))
            self.servent.counters.count("dq.sent")

    def _arm(self, guid: bytes, run: _Running) -> None:
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if run.query.finished is not None:
            self._finish(guid, run)
            return
        rt = self.servent.runtime
        run.timer = rt.call_at(run.query.next_at, lambda: self._tick(guid))

    def _tick(self, guid: bytes) -> None:
        run = self._running.get(guid)
        if run is None:
            return
        run.timer = None
        now = self.servent.runtime.now()
        leaf = self.servent._links.get(run.leaf) if run.leaf is not None else None
        if run.leaf is not None and (leaf is None or not leaf.is_open):
            run.query.finished = "leaf_gone"
        sends = run.query.step(now, self._candidates(run.leaf))
        if sends:
            self.servent.counters.count("dq.iterations")
            self._send(guid, run, sends)
        if leaf is not None and run.query.finished is None:
            # Ask the leaf how many results it kept: its answer guides the
            # next iteration (``leaf_guided_queries``).
            body = encode_vendor(QueryStatusRequest())
            leaf.enqueue(Queued(guid, VENDOR, 1, 0, encode_payload(body)))
            self.servent.counters.count("dq.status_requests")
        self._arm(guid, run)

    def _finish(self, guid: bytes, run: _Running) -> None:
        self._running.pop(guid, None)
        reason = run.query.finished or "finished"
        self.servent.counters.count("dq.finished." + reason)
        self.servent.runtime.observer.event(
            "gnutella.dq_finished",
            guid=guid.hex(),
            reason=reason,
            results=run.query.counted,
            queried=run.query.queried,
            connections=len(run.query.sent_to),
        )
        if self.on_finished is not None:
            self.servent._callback(self.on_finished, guid, reason, run.query)

    # -- what comes back

    def on_hit(self, guid: bytes, results: int) -> None:
        """A Query Hit for ``guid`` passed us (to our leaf or for us)."""
        run = self._running.get(guid)
        if run is None:
            return
        q = run.query
        q.add_results(results)
        if q.counted >= q.wanted and q.finished is None:
            q.finished = "enough_results"
            self._arm(guid, run)

    def on_status_response(self, link: Link, guid: bytes, kept: int) -> None:
        """``BEAR/12`` from our leaf about its query ``guid``."""
        run = self._running.get(guid)
        if run is None or run.leaf != link.id:
            self.servent._drop(link, "unrequested_status")
            return
        self.servent.counters.count("dq.status_responses")
        run.query.leaf_status(kept)
        if run.query.done(self.servent.runtime.now(), self._candidates(run.leaf)) is not None:
            run.query.finished = run.query.finished or "enough_results"
            self._arm(guid, run)

    def on_status_request(self, link: Link, guid: bytes) -> None:
        """``BEAR/11`` from our ultrapeer: as its leaf, answer how many results
        our search ``guid`` kept (65535: it is over, stop searching)."""
        search = self.servent._searches.get(guid)
        kept = STATUS_STOP if search is None or search.finished else min(search.sources, 0xFFFE)
        body = encode_vendor(QueryStatusResponse(kept))
        link.enqueue(Queued(guid, VENDOR, 1, 0, encode_payload(body)))
        self.servent.counters.count("dq.status_answered")

    # -- housekeeping

    def sent_count(self, guid: bytes) -> int:
        """Connections the query ``guid`` went to so far (0: not running)."""
        run = self._running.get(guid)
        return len(run.query.sent_to) if run is not None else 0

    def running(self) -> dict[bytes, DynamicQuery]:
        return {guid: run.query for guid, run in self._running.items()}

    def close(self) -> None:
        for run in self._running.values():
            if run.timer is not None:
                run.timer.cancel()
        self._running.clear()


__all__ = [
    "DQ_VERSION",
    "Candidate",
    "DqSettings",
    "DynamicQuerier",
    "DynamicQuery",
    "horizon",
    "next_ttl",
]
