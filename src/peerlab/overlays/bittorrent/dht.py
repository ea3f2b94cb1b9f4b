"""Peers of a torrent from the mainline DHT (BEP 5), beside its trackers.

BEP 5 "Overview": a peer finds the peers of a torrent with ``get_peers``
lookups and announces itself to the closest nodes with ``announce_peer``
and the token each handed out.  :class:`DhtPeerSource` does that for one
torrent of a :class:`~peerlab.overlays.bittorrent.session.Session`: one
lookup in flight at a time, repeated on a schedule, every peer found handed
to the torrent (``peers_from_dht``).  The session makes one for each running
torrent that is not private (BEP 27: "no DHT") and closes it when the
torrent stops.

Schedule (bounded: never more than one lookup of a torrent at once):

* a lookup that nobody answered (the DHT is not joined yet: an empty table,
  a bootstrap still running) is tried again after
  :data:`DHT_RETRY_MIN` seconds, doubling up to :data:`DHT_RETRY_MAX`;
* a lookup that found no peer while the torrent still wants peers (it is
  downloading, or fetching a magnet's metadata, with room for connections),
  or an announce that fewer than :data:`DHT_MIN_STORED` nodes stored (we
  announced while still joining, and reached only the few nodes we knew),
  is tried again after :data:`DHT_SEARCH_MIN`, doubling up to
  :data:`DHT_ANNOUNCE_INTERVAL`;
* otherwise the next one comes after :data:`DHT_ANNOUNCE_INTERVAL`.

Each lookup is an announce (get_peers, then announce_peer with our TCP
listen port to the k closest nodes that gave a token) when the session
listens, a bare get_peers when it does not (nobody could dial us).

Public API::

    DhtPeerSource(runtime, dht, info_hash, *, port, on_peers, wants_peers, observe)
        .start()  .close()  .status() -> DhtSourceStatus
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from peerlab.overlays.dht import AnnounceResult, DhtNode, Lookup, LookupResult
from peerlab.runtime.base import Address, Runtime, Timer

__all__ = [
    "DHT_ANNOUNCE_INTERVAL",
    "DHT_RETRY_MAX",
    "DHT_RETRY_MIN",
    "DHT_MIN_STORED",
    "DHT_SEARCH_MIN",
    "DhtPeerSource",
    "DhtSourceStatus",
]

#: Seconds between announces of a torrent that has what it needs:
#: libtorrent's ``dht_announce_interval`` (15 minutes), half the 30 minutes
#: a DHT node keeps an announced peer, so we never drop out of the store.
DHT_ANNOUNCE_INTERVAL: Final = 15 * 60.0
#: First delay after a lookup nobody answered (we are not in the DHT yet);
#: doubled after each such lookup up to :data:`DHT_RETRY_MAX`.
DHT_RETRY_MIN: Final = 5.0
DHT_RETRY_MAX: Final = 300.0
#: First delay after a lookup that found no peer while we want peers;
#: doubled up to :data:`DHT_ANNOUNCE_INTERVAL` (a swarm seen empty at first
#: is looked at again soon, then less and less often).
DHT_SEARCH_MIN: Final = 30.0
#: Nodes that should store an announce for it to count as done: BEP 5
#: announces to the k = 8 closest; fewer than 3 means we hardly knew the
#: DHT yet (and one node leaving would lose us).
DHT_MIN_STORED: Final = 3


@dataclass(frozen=True, slots=True)
class DhtSourceStatus:
    """A torrent's DHT lookups so far."""

    lookups: int
    announces: int
    peers_found: int
    #: Nodes that stored our last announce (None: none done yet).
    last_stored: int | None
    #: Seconds until the next lookup (None: one is running, or closed).
    next_in: float | None


class DhtPeerSource:
    """Keeps one torrent looked up and announced in the DHT (module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        dht: DhtNode,
        info_hash: bytes,
        *,
        port: Callable[[], int | None],
        on_peers: Callable[[list[Address]], object],
        wants_peers: Callable[[], bool],
        observe: Callable[[str, int], None],
    ) -> None:
        self.runtime = runtime
        self.dht = dht
        self.info_hash = info_hash
        self._port = port
        self._on_peers = on_peers
        self._wants_peers = wants_peers
        self._observe = observe
        self._lookup: Lookup | None = None
        self._timer: Timer | None = None
        self._next_at: float | None = None
        self._retry = DHT_RETRY_MIN
        self._search = DHT_SEARCH_MIN
        self._started = False
        self._closed = False
        self.lookups = 0
        self.announces = 0
        self.peers_found = 0
        self.last_stored: int | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Look the torrent up now (once; later calls do nothing)."""
        if self._started or self._closed:
            return
        self._started = True
        self._run()

    def close(self) -> None:
        """Stop: the running lookup is cancelled, no more are started."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._next_at = None
        lookup, self._lookup = self._lookup, None
        if lookup is not None:
            lookup.cancel()

    def status(self) -> DhtSourceStatus:
        next_in = None
        if self._next_at is not None:
            next_in = max(0.0, self._next_at - self.runtime.now())
        return DhtSourceStatus(self.lookups, self.announces, self.peers_found, self.last_stored,
                               next_in)  # fmt: skip

    # -- internals

    def _run(self) -> None:
        self._timer = None
        self._next_at = None
        if self._closed or self._lookup is not None:
            return
        self.lookups += 1
        self._observe("dht_lookups", 1)
        port = self._port()
        if port:
            self.announces += 1
            self._observe("dht_announces", 1)
            self._lookup = self.dht.announce(self.info_hash, port, self._announced,
                                             on_peers=self._found)  # fmt: skip
        else:
            self._lookup = self.dht.get_peers(self.info_hash, self._found, self._looked_up)
        if self._lookup.cancelled:
            # the DHT node is not started yet (or closed): no callback will
            # come; try again as after an unanswered lookup
            self._lookup = None
            self._observe("dht_lookups_unanswered", 1)
            self._schedule(self._retry)
            self._retry = min(2 * self._retry, DHT_RETRY_MAX)

    def _found(self, peers: list[Address]) -> None:
        if self._closed:
            return
        self.peers_found += len(peers)
        self._on_peers(peers)

    def _announced(self, result: AnnounceResult) -> None:
        self.last_stored = result.stored
        self._observe("dht_announce_stored", result.stored)
        self._looked_up(result.lookup, weak=result.stored < DHT_MIN_STORED)

    def _looked_up(self, result: LookupResult, *, weak: bool = False) -> None:
        self._lookup = None
        if self._closed:
            return
        if result.responses == 0:
            delay = self._retry
            self._retry = min(2 * self._retry, DHT_RETRY_MAX)
            self._observe("dht_lookups_unanswered", 1)
        elif weak or (not result.peers and self._wants_peers()):
            self._retry = DHT_RETRY_MIN
            delay = self._search
            self._search = min(2 * self._search, DHT_ANNOUNCE_INTERVAL)
        else:
            self._retry = DHT_RETRY_MIN
            self._search = DHT_SEARCH_MIN
            delay = DHT_ANNOUNCE_INTERVAL
        self._schedule(delay)

    def _schedule(self, delay: float) -> None:
        self._next_at = self.runtime.now() + delay
        self._timer = self.runtime.call_later(delay, self._run)
