"""Routing rules of a Gnutella servent: TTL and hops, and the GUID tables.

RFC-Gnutella 0.6 draft, section 2.3 ("Descriptor routing"):

1. Pongs, Query Hits and Pushes travel back along the path their request
   came: a Pong to the connection the Ping (same GUID) arrived on, a Query
   Hit to the connection of its Query; a Push to the connection that
   delivered a Query Hit of the servent it names (routed by *servent* GUID).
   A reply whose request we never routed is dropped.
2. Pings and Queries are flooded: forwarded to every connection but the one
   they came from, TTL decremented and hops incremented, while TTL stays
   above zero.  "TTL(0) = TTL(i) + Hops(i)": a descriptor whose hops + TTL
   exceeds the network's cap (:data:`MAX_TTL`, 7 as in the draft's
   examples and gtk-gnutella's hard limit) has its TTL trimmed
   (``bye`` section 2 names the offence: 403, "excessively long-lived").
3. A servent drops a flooded descriptor whose GUID it has seen before: it
   remembers the GUID (and the connection it came from, for rule 1) in a
   routing table.

The tables (:class:`RouteTable`) keep entries for at least ``lifetime``
seconds and at most twice that, in two generations: the current one fills,
and is moved to ``previous`` when ``lifetime`` has passed, dropping the old
previous generation at once.  A table never holds more than ``max_entries``
(a full current generation rotates early, and the early drop is counted):
this is what bounds memory under a peer that floods unique GUIDs.

Public API: :data:`MAX_TTL`, :data:`MAX_HOPS`, :data:`ROUTE_LIFETIME`,
:data:`MAX_ROUTES`, :data:`LOCAL`, :class:`RouteTable`, :func:`admit_ttl`,
:func:`forward_fields`, :func:`reply_fields`.
"""

from __future__ import annotations

#: Hard cap on hops + TTL (draft 2.3 and ``bye`` 403; gtk-gnutella's
#: ``max_ttl``; "a TTL of 7 is the default" in the 0.4 protocol).
MAX_TTL = 7
#: Hops beyond which no routed reply is forwarded: a reply cannot have
#: travelled farther than a request can (MAX_TTL), with slack for servents
#: that start their hits with a generous TTL.
MAX_HOPS = 2 * MAX_TTL
#: Seconds a route is kept at least (twice that at most).  A Query Hit comes
#: back within seconds; late ones, from slow links or dynamic queries, within
#: a few minutes (gtk-gnutella keeps its routing table about that long).
ROUTE_LIFETIME = 300.0
#: Entries of one routing table at most (both generations).  At ~150 bytes an
#: entry, 50,000 routes cost under 8 MB; a busy servent sees ~100 queries/s,
#: 30,000 in one lifetime.
MAX_ROUTES = 50_000
#: The route of a descriptor we originated ourselves.
LOCAL = 0


class RouteTable:
    """GUID -> route (a connection id, or :data:`LOCAL`), two generations."""

    __slots__ = ("lifetime", "max_entries", "_current", "_previous", "_rotated_at", "evicted")

    def __init__(self, lifetime: float = ROUTE_LIFETIME, max_entries: int = MAX_ROUTES) -> None:
        if lifetime <= 0 or max_entries < 2:
            raise ValueError("a route table needs a positive lifetime and room for 2 entries")
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._current: dict[bytes, int] = {}
        self._previous: dict[bytes, int] = {}
        self._rotated_at: float | None = None
        #: Entries dropped before their lifetime because the table was full.
        self.evicted = 0

    def _tick(self, now: float) -> None:
        if self._rotated_at is None:
            self._rotated_at = now
            return
        elapsed = now - self._rotated_at
        if elapsed >= 2 * self.lifetime:
            self._previous = {}
            self._current = {}
            self._rotated_at = now
        elif elapsed >= self.lifetime:
            self._previous = self._current
            self._current = {}
            self._rotated_at = now

    def _make_room(self, now: float) -> None:
        if len(self._current) >= self.max_entries // 2:
            self.evicted += len(self._previous)
            self._previous = self._current
            self._current = {}
            self._rotated_at = now

    def get(self, key: bytes, now: float) -> int | None:
        """The route of ``key``, or ``None`` if unknown or expired."""
        self._tick(now)
        route = self._current.get(key)
        if route is None:
            route = self._previous.get(key)
        return route

    def add(self, key: bytes, route: int, now: float) -> bool:
        """Remember ``key`` -> ``route``; ``False`` (and no change) if ``key``
        is already known: the descriptor is a duplicate."""
        self._tick(now)
        if key in self._current or key in self._previous:
            return False
        self._make_room(now)
        self._current[key] = route
        return True

    def put(self, key: bytes, route: int, now: float) -> None:
        """Set ``key`` -> ``route``, replacing an older route (servent GUIDs:
        the newest Query Hit names the best way back)."""
        self._tick(now)
        self._previous.pop(key, None)
        if key not in self._current:
            self._make_room(now)
        self._current[key] = route

    def forget_route(self, route: int) -> int:
        """Drop every entry pointing to ``route`` (a closed connection)."""
        n = 0
        for gen in (self._current, self._previous):
            dead = [k for k, v in gen.items() if v == route]
            for k in dead:
                del gen[k]
            n += len(dead)
        return n

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


def admit_ttl(ttl: int, hops: int, max_ttl: int = MAX_TTL) -> tuple[int, bool] | None:
    """The TTL a received flooded descriptor may keep, and whether it was
    trimmed (hops + TTL above ``max_ttl``); ``None`` when it must be dropped
    (TTL 0 on arrival, or nothing left after trimming)."""
    if ttl <= 0:
        return None
    if hops + ttl > max_ttl:
        ttl = max_ttl - hops
        if ttl <= 0:
            return None
        return ttl, True
    return ttl, False


def forward_fields(ttl: int, hops: int) -> tuple[int, int] | None:
    """TTL and hops of a flooded descriptor's forwarded copy (draft 2.3:
    "decrement the TTL, increment the hops"), or ``None`` when its TTL is
    spent and it goes no farther."""
    if ttl <= 1 or hops >= 255:
        return None
    return ttl - 1, hops + 1


def reply_fields(ttl: int, hops: int) -> tuple[int, int] | None:
    """TTL and hops of a routed reply (Pong, Query Hit, Push) we pass on, or
    ``None`` when it has gone too far (:data:`MAX_HOPS`).

    A routed reply follows one known path and cannot multiply, so a TTL that
    runs out on the way protects nothing: it is kept at 1 rather than losing
    a hit one hop before its querier (servents differ in the TTL they start
    hits with)."""
    if hops + 1 > MAX_HOPS:
        return None
    return max(ttl - 1, 1), hops + 1


__all__ = [
    "LOCAL",
    "MAX_HOPS",
    "MAX_ROUTES",
    "MAX_TTL",
    "ROUTE_LIFETIME",
    "RouteTable",
    "admit_ttl",
    "forward_fields",
    "reply_fields",
]
