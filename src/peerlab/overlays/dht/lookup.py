"""The iterative lookup of Kademlia as BEP 5 uses it ("Overview": the node
"iteratively queries nodes that are closer to the target infohash until it
cannot find any closer nodes").

:class:`Traversal` is the bookkeeping only: which nodes are known, in order
of XOR distance to the target, which were queried, which answered, which
failed.  It sends nothing itself; the node asks it what to query next
(:meth:`Traversal.next_queries`) and reports each answer, timeout and stall.
The rules (the shape libtorrent's traversal_algorithm has too):

* closest first: the nodes to query are taken from the head of the
  distance-ordered list;
* at most ``alpha`` queries in flight (3, Kademlia's parallelism); a query
  that has not been answered after a short time *stalls*: its slot is given to
  the next node, while a late answer is still welcome until the full timeout;
* done when the ``k`` closest nodes that did not fail have all answered (no
  query in flight and none unsent among them), or when nothing is left to ask;
* bounded: at most ``max_candidates`` nodes are kept (the farthest unqueried
  ones give way) and at most ``max_queries`` queries are sent.

Hops: the nodes a lookup starts from are hop 1; a node learned from the
answer of a hop-``h`` node is hop ``h + 1``.  A lookup's hop count is the hop
of the first node that returned peers (get_peers), else the largest hop among
the ``k`` closest nodes that answered.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from peerlab.runtime.base import Address

#: Kademlia's parallelism: queries in flight per lookup.
ALPHA = 3
#: Nodes a lookup keeps in its list (libtorrent keeps 100).
MAX_CANDIDATES = 100
#: Queries one lookup may send, so a lookup in a hostile or broken network
#: still ends.  A lookup in a healthy million-node DHT needs about 20-40.
MAX_QUERIES = 200

_NEW, _QUERIED, _RESPONDED, _FAILED = 0, 1, 2, 3


class Candidate:
    """A node in a lookup's list."""

    __slots__ = ("id", "key", "address", "hop", "status", "stalled", "token")

    def __init__(self, node_id: bytes | None, key: int, address: Address, hop: int) -> None:
        self.id = node_id
        #: XOR distance to the target; -1 for a contact whose id we do not
        #: know yet (a bootstrap address), which is asked first.
        self.key = key
        self.address = address
        self.hop = hop
        self.status = _NEW
        self.stalled = False
        #: The write token it handed us (get_peers), for announce_peer.
        self.token: bytes | None = None

    @property
    def responded(self) -> bool:
        return self.status == _RESPONDED

    def __lt__(self, other: Candidate) -> bool:
        return self.key < other.key

    def __repr__(self) -> str:
        state = ("new", "queried", "responded", "failed")[self.status]
        return f"<Candidate {self.address[0]}:{self.address[1]} hop={self.hop} {state}>"


@dataclass(frozen=True, slots=True)
class TraversalStats:
    queries: int
    responses: int
    timeouts: int
    hops: int


class Traversal:
    """One lookup's list of nodes, closest first."""

    def __init__(
        self,
        target: bytes,
        *,
        k: int = 8,
        alpha: int = ALPHA,
        max_candidates: int = MAX_CANDIDATES,
        max_queries: int = MAX_QUERIES,
    ) -> None:
        self.target = target
        self._t = int.from_bytes(target, "big")
        self.k = k
        self.alpha = alpha
        self.max_candidates = max_candidates
        self.max_queries = max_queries
        self._list: list[Candidate] = []
        self._by_addr: dict[Address, Candidate] = {}
        self._ids: set[bytes] = set()
        self.queries = 0
        self.responses = 0
        self.timeouts = 0
        self._active = 0  # in flight and not stalled
        self._in_flight = 0
        #: Hop of the first answer that carried peers (get_peers).
        self.first_values_hop: int | None = None

    def __len__(self) -> int:
        return len(self._list)

    def add(self, node_id: bytes | None, address: Address, hop: int) -> bool:
        """Learn a node (None: id unknown).  False if it was known already
        (by address or id) or the list is full of closer nodes."""
        if address in self._by_addr or (node_id is not None and node_id in self._ids):
            return False
        key = -1 if node_id is None else int.from_bytes(node_id, "big") ^ self._t
        c = Candidate(node_id, key, address, hop)
        if len(self._list) >= self.max_candidates:
            worst = self._list[-1]
            if worst.status != _NEW or not key < worst.key:
                return False
            self._drop(worst)
        bisect.insort(self._list, c)
        self._by_addr[address] = c
        if node_id is not None:
            self._ids.add(node_id)
        return True

    def _drop(self, c: Candidate) -> None:
        self._list.remove(c)
        del self._by_addr[c.address]
        if c.id is not None:
            self._ids.discard(c.id)

    def next_queries(self) -> list[Candidate]:
        """The nodes to query now, closest first, marked as queried."""
        out: list[Candidate] = []
        answered = 0
        for c in self._list:
            if answered >= self.k or self._active >= self.alpha:
                break
            if self.queries >= self.max_queries:
                break
            if c.status == _RESPONDED:
                answered += 1
            elif c.status == _NEW:
                c.status = _QUERIED
                self.queries += 1
                self._active += 1
                self._in_flight += 1
                out.append(c)
        return out

    def responded(self, c: Candidate, node_id: bytes, *, values: bool = False) -> None:
        """``c`` answered as ``node_id`` (its id becomes known or is corrected)."""
        if c.status != _QUERIED:
            return
        self._settle(c)
        c.status = _RESPONDED
        self.responses += 1
        if values and (self.first_values_hop is None or c.hop < self.first_values_hop):
            self.first_values_hop = c.hop
        if c.id != node_id:
            if c.id is not None:
                self._ids.discard(c.id)
            self._list.remove(c)
            c.id = node_id
            c.key = int.from_bytes(node_id, "big") ^ self._t
            self._ids.add(node_id)
            bisect.insort(self._list, c)

    def failed(self, c: Candidate) -> None:
        """``c``'s query timed out (or was answered with an error)."""
        if c.status != _QUERIED:
            return
        self._settle(c)
        c.status = _FAILED
        self.timeouts += 1

    def stall(self, c: Candidate) -> None:
        """``c`` is slow: free its slot, keep waiting for its answer."""
        if c.status == _QUERIED and not c.stalled:
            c.stalled = True
            self._active -= 1

    def _settle(self, c: Candidate) -> None:
        self._in_flight -= 1
        if not c.stalled:
            self._active -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def done(self) -> bool:
        """The k closest live nodes answered, or nothing is left to do."""
        answered = 0
        can_query = self.queries < self.max_queries
        for c in self._list:
            if c.status == _RESPONDED:
                answered += 1
                if answered >= self.k:
                    return True
            elif c.status == _QUERIED or (c.status == _NEW and can_query):
                return False
        return self._in_flight == 0

    def closest_responded(self, count: int) -> list[Candidate]:
        """The ``count`` closest nodes that answered."""
        return [c for c in self._list if c.status == _RESPONDED][:count]

    def stats(self) -> TraversalStats:
        if self.first_values_hop is not None:
            hops = self.first_values_hop
        else:
            hops = max((c.hop for c in self.closest_responded(self.k)), default=0)
        return TraversalStats(self.queries, self.responses, self.timeouts, hops)


__all__ = ["ALPHA", "MAX_CANDIDATES", "MAX_QUERIES", "Candidate", "Traversal", "TraversalStats"]
