"""Pong caching (gtk-gnutella ``doc/gnutella/ping-pong``, LimeWire's scheme).

Flooded Pings once cost half of Gnutella's bandwidth.  Instead, a servent
answers a Ping from the Pongs it has cached, and keeps the cache fresh by
pinging its own neighbours at most once every :data:`PONG_CACHE_EXPIRY`
seconds ("T"), only when someone asks ("cache refreshes are triggered when
receiving a ping T seconds after the last cache refill"); Pings are not
forwarded.  The pieces, with the scheme's names:

* ``CACHE``: Pongs by the hops they arrived with (:class:`PongCache`),
  each remembering the connection it came from ("prevents us from sending a
  cached pong down the path it came from"), emptied every T.
* Pong limiting: at most :data:`PONGS_PER_PING` ("N") Pongs answer a Ping,
  spread over the distances the Ping's TTL allows, our own first when we
  accept connections.
* Ping multiplexing: per connection, the GUID of its last accepted Ping
  and how many Pongs of each distance it still ``NEEDED``
  (:class:`PingDemand`); Pongs arriving later are demultiplexed to the
  connections that still need them, with each one's GUID.
* Throttling: a connection's Pings are accepted at most once every T
  ("any pings exceeding that rate are dropped").
* Refill TTL (:func:`refresh_ttl`): a refill that a neighbour's Ping of TTL
  ``t`` set off pings our neighbours with TTL ``t - 1``, the Ping's own
  reach (the scheme's earlier, demand-driven rule, without its "TTL
  upgrade"); only our own want of hosts pings with the full TTL M.  The
  final pseudocode pings with M on every refill; with refills set off by
  Pings, our refill Ping then finds our neighbours' caches expired too, each
  refills and pings its own neighbours with M, and so on: a Ping becomes a
  broadcast of refills over the whole network.  Where a cycle of the
  overlay takes that wave longer than T to go round (slow links, 3,000
  peers in the growth scenario), it comes back to caches that have expired
  again and never dies: every peer refilled every T with nobody wanting
  hosts.  With ``t - 1`` every chain of refills loses a hop of TTL at each
  step and ends within M steps.  The final rule (and gtk-gnutella's
  ``pcache.c``, which pings with its own ``my_ttl`` whenever its cache
  expires, on its one-second timer or on a Ping) has every servent refill
  every T for as long as it runs: the steady cost the scheme accepts (at
  most one Ping and N Pongs per connection per T).  The scheme's authors
  call the earlier rule the cheaper one "if there is little demand for
  pongs", which is the quiet network; we keep it, the final rule only for
  our own want of hosts.

Distances: a Pong that arrives with hops ``h`` names a host ``h + 1`` hops
from us.  We send it on with hops ``h + 1`` (so the neighbour sees the host
one hop farther), our own Pong with hops 0.  A Ping with TTL ``t`` asks for
hosts up to ``t`` hops from its sender, hence up to ``t - 1`` from us.

Public API: :class:`PongCache`, :class:`CachedPong`, :class:`PingDemand`,
:func:`refresh_ttl`, :data:`PONG_CACHE_EXPIRY`, :data:`PONGS_PER_PING`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from peerlab.overlays.gnutella.router import MAX_TTL

#: "T: both the expire time for cached pongs and the throttle time.
#: Suggested value: 3 seconds."
PONG_CACHE_EXPIRY = 3.0
#: "N: the max number of pongs to return in response to a ping.  Suggested
#: value: 10."
PONGS_PER_PING = 10
#: Pongs kept per distance: enough to answer every neighbour with different
#: ones (N each for a few neighbours), bounded whatever a peer sends.
MAX_CACHED_PER_DISTANCE = 4 * PONGS_PER_PING


def refresh_ttl(ping_ttl: int) -> int:
    """TTL of the refill Ping that a Ping of ``ping_ttl`` (> 1) sets off.

    The Ping wants hosts up to ``ping_ttl - 1`` hops from us, those are up to
    ``ping_ttl - 2`` hops from our neighbours: a Ping of ``ping_ttl - 1``
    asks them for exactly that.  Strictly below ``ping_ttl``, so a chain of
    refills (each set off by the refill Ping of the one before) is at most
    ``MAX_TTL`` long; at 1 it is an "alive" Ping that sets off none.
    """
    return max(1, min(ping_ttl, MAX_TTL) - 1)


@dataclass(frozen=True, slots=True)
class CachedPong:
    """A Pong as received: its payload (re-sent unchanged), the host it
    names, its distance from us, and the connection it came from."""

    payload: bytes
    address: tuple[str, int]
    distance: int
    link_id: int


@dataclass(slots=True)
class PingDemand:
    """Per connection: when its next Ping is accepted, the GUID of its last
    one, and how many Pongs it still needs by distance from us."""

    accept_at: float = 0.0
    guid: bytes | None = None
    needed: dict[int, int] = field(default_factory=dict)
    #: The demand lapses with the cache it was made against.
    until: float = 0.0
    #: The Ping's hops: our Pongs get a TTL to travel back that far.
    hops: int = 0

    def accept(self, now: float, expiry: float = PONG_CACHE_EXPIRY) -> bool:
        """Throttle: ``True`` (and the clock restarts) if a Ping may be taken now."""
        if now < self.accept_at:
            return False
        self.accept_at = now + expiry
        return True

    def set(self, guid: bytes, ttl: int, hops: int, now: float, *, expiry: float) -> None:
        """Record a Ping with ``ttl``: N Pongs spread over distances 1 .. ttl-1."""
        self.guid = guid
        self.hops = hops
        self.until = now + 2 * expiry
        self.needed = {}
        span = min(ttl, MAX_TTL) - 1
        if span <= 0:
            return
        share = max(1, PONGS_PER_PING // span)
        for d in range(1, span + 1):
            self.needed[d] = share

    def wants(self, distance: int, now: float) -> bool:
        return self.guid is not None and now < self.until and self.needed.get(distance, 0) > 0

    def took(self, distance: int) -> None:
        left = self.needed.get(distance, 0) - 1
        if left > 0:
            self.needed[distance] = left
        else:
            self.needed.pop(distance, None)


class PongCache:
    """``CACHE``: Pongs by distance from us, emptied every ``expiry`` seconds."""

    def __init__(self, expiry: float = PONG_CACHE_EXPIRY) -> None:
        self.expiry = expiry
        self._by_distance: dict[int, list[CachedPong]] = {}
        #: The addresses in each distance's list: a duplicate check per Pong
        #: that costs one lookup, not a scan of up to MAX_CACHED_PER_DISTANCE.
        self._addresses: dict[int, set[tuple[str, int]]] = {}
        #: ``NEXT_EXPIRE``: the cache is stale from then on.
        self.next_expire = 0.0

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_distance.values())

    def expired(self, now: float) -> bool:
        return now >= self.next_expire

    def refresh(self, now: float) -> None:
        """Empty the cache (a refill starts); stale again ``expiry`` from now."""
        self._by_distance.clear()
        self._addresses.clear()
        self.next_expire = now + self.expiry

    def add(self, pong: CachedPong) -> bool:
        """Cache ``pong`` (one entry per address and distance); ``False`` if
        dropped (duplicate, or that distance is full)."""
        if not 1 <= pong.distance <= MAX_TTL:
            return False
        bucket = self._by_distance.get(pong.distance)
        if bucket is None:
            bucket = self._by_distance[pong.distance] = []
            addresses = self._addresses[pong.distance] = set()
        else:
            addresses = self._addresses[pong.distance]
        if len(bucket) >= MAX_CACHED_PER_DISTANCE or pong.address in addresses:
            return False
        bucket.append(pong)
        addresses.add(pong.address)
        return True

    def pick(self, max_distance: int, exclude_link: int, limit: int) -> list[CachedPong]:
        """Up to ``limit`` Pongs of distances 1 .. ``max_distance``, spread
        over the distances ("distribute hops values equally"), none that came
        from ``exclude_link``, no address twice."""
        # Round robin over the distances, each read lazily: round i takes
        # the i-th eligible Pong of every distance that has one (skipping
        # addresses already taken), so only the few Pongs picked are looked
        # at, not up to MAX_CACHED_PER_DISTANCE per distance.
        rows = [
            _eligible(self._by_distance.get(d, ()), exclude_link)
            for d in range(1, max_distance + 1)
        ]
        out: list[CachedPong] = []
        seen: set[tuple[str, int]] = set()
        while len(out) < limit and rows:
            going = []
            for row in rows:
                c = next(row, None)
                if c is None:
                    continue  # this distance has no more
                going.append(row)
                if c.address not in seen and len(out) < limit:
                    seen.add(c.address)
                    out.append(c)
            rows = going
        return out


def _eligible(pongs: Iterable[CachedPong], exclude_link: int) -> Iterator[CachedPong]:
    """The Pongs of ``pongs`` that did not come from ``exclude_link``, lazily."""
    for c in pongs:
        if c.link_id != exclude_link:
            yield c


__all__ = [
    "MAX_CACHED_PER_DISTANCE",
    "PONGS_PER_PING",
    "PONG_CACHE_EXPIRY",
    "CachedPong",
    "PingDemand",
    "PongCache",
    "refresh_ttl",
]
