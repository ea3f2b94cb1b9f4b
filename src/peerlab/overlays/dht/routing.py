"""The routing table of a DHT node: k-buckets over the 160-bit id space (BEP 5
"Routing Table").

Time is passed in (``now``), never read, so the table is tested on its own
and runs unchanged in the simulator.

The table covers ids 0 .. 2**160.  It starts as one bucket; a full bucket is
split in two only when it holds our own id, so the table grows detailed near
our id and stays coarse far away.  Buckets are kept the way libtorrent keeps
them, by shared prefix with our id: bucket ``i`` (all but the last) holds ids
that share exactly ``i`` leading bits with ours; the last bucket holds
everything closer, our own id included.  That is the same partition as
BEP 5's ``min <= N < max`` ranges (:meth:`RoutingTable.bucket_range` gives
them), reached by the same splits.

Node states (BEP 5 "Routing Table"):

* **good**: it answered one of our queries within the last 15 minutes, or it
  answered once and queried us within the last 15 minutes;
* **questionable**: after 15 minutes of silence, or after one unanswered query;
* **bad**: :data:`MAX_FAILURES` of our queries in a row went unanswered.

Inserting a node that just answered us (:meth:`RoutingTable.heard_response`):
room in its bucket -> added; the bucket is full and holds our id -> split and
try again; a bad node in the bucket -> replaced; otherwise the newcomer waits
in the bucket's replacement cache, and :meth:`RoutingTable.ping_candidates`
names the least recently seen questionable node of that bucket for the owner
to ping.  If it answers it is good again (and the next questionable one is
named); if it fails twice (BEP 5: "try once more before discarding") it is
bad and the most recently seen node of the replacement cache takes its place.
Only nodes that answered a query of ours enter the table (BEP 5: "each node's
routing table must contain only known good nodes"); a node that merely
queried us is verified with a ping first (:meth:`RoutingTable.wants`).

Public API::

    RoutingTable(own_id, k=K, replacement_size=REPLACEMENT_CACHE_SIZE)
      .heard_response(id, address, now) -> Outcome      # it answered us
      .heard_query(id, address, now) -> bool            # known (and refreshed)?
      .wants(id) -> bool                                # worth verifying with a ping?
      .failed(id, address, now) -> Outcome              # a query to it timed out
      .ping_candidates(now, near=None) -> list[NodeEntry]  # questionable nodes to ping
      .closest(target, count, now) -> list[NodeEntry]   # not bad, by XOR distance
      .buckets_to_refresh(now) -> list[int]; .random_id_in(i, rng) -> bytes
      .bucket_range(i) -> (lo, hi); .bucket_of(id) -> int; .bucket_sizes() -> list[int]
      .find(id) -> NodeEntry | None; .nodes() / .good_nodes(now) / .replacements()
      .stats(now) -> RoutingStats
    NodeEntry, NodeState (GOOD / QUESTIONABLE / BAD), Outcome, RoutingStats
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from peerlab.runtime.base import Address
from peerlab.wire.krpc import NODE_ID_BYTES

#: Nodes per bucket: "Each bucket can only hold K nodes, currently eight" (BEP 5).
K = 8
#: A node is good for this long after it last answered us (BEP 5: "within the
#: last 15 minutes"); a bucket unchanged this long is refreshed.
GOOD_WINDOW_S = 15 * 60.0
#: Unanswered queries in a row that make a node bad.  BEP 5: "Nodes become bad
#: when they fail to respond to multiple queries in a row", and a node that
#: fails a ping should be tried "once more before discarding".
MAX_FAILURES = 2
#: Nodes waiting per bucket to take the place of one that goes bad (libtorrent
#: keeps one bucket's worth too).  Bounded: strangers choose what we hear about.
REPLACEMENT_CACHE_SIZE = K
#: One bucket per bit of the id space, at most.
MAX_BUCKETS = NODE_ID_BYTES * 8
_ID_BITS = NODE_ID_BYTES * 8


class NodeState(Enum):
    """BEP 5's three states of a node."""

    GOOD = "good"
    QUESTIONABLE = "questionable"
    BAD = "bad"


class Outcome(Enum):
    """What an update did to the table."""

    ADDED = "added"
    UPDATED = "updated"
    REPLACED = "replaced"  # took the place of a bad node / a bad node was replaced
    CACHED = "cached"  # waits in the replacement cache
    FAILED = "failed"  # one more failure counted, still in the table
    BAD = "bad"  # bad, but nothing waits to replace it yet
    REMOVED = "removed"  # dropped from the replacement cache
    IGNORED = "ignored"  # our own id, an id claimed from another address, unknown


class NodeEntry:
    """One node the table knows.  Mutable; owned by the table."""

    __slots__ = (
        "id",
        "id_int",
        "address",
        "last_response",
        "last_query",
        "failures",
        "pinging",
        "live",
    )

    def __init__(self, node_id: bytes, address: Address) -> None:
        self.id = node_id
        self.id_int = int.from_bytes(node_id, "big")
        self.address = address
        self.last_response: float | None = None
        self.last_query: float | None = None
        self.failures = 0
        #: The owner has a ping in flight to it (set and cleared by the owner).
        self.pinging = False
        #: In the bucket proper (True) or in its replacement cache (False).
        self.live = False

    @property
    def last_seen(self) -> float:
        return max(self.last_response or 0.0, self.last_query or 0.0)

    def state(self, now: float) -> NodeState:
        """BEP 5 "Routing Table": good, questionable or bad at ``now``."""
        if self.failures >= MAX_FAILURES:
            return NodeState.BAD
        if self.failures == 0 and self.last_response is not None:
            if now - self.last_response < GOOD_WINDOW_S:
                return NodeState.GOOD
            if self.last_query is not None and now - self.last_query < GOOD_WINDOW_S:
                return NodeState.GOOD
        return NodeState.QUESTIONABLE

    def __repr__(self) -> str:
        return (f"<NodeEntry {self.id.hex()[:12]} {self.address[0]}:{self.address[1]} "
                f"failures={self.failures}{'' if self.live else ' replacement'}>")  # fmt: skip


class _Bucket:
    __slots__ = ("nodes", "replacements", "last_changed")

    def __init__(self, now: float) -> None:
        self.nodes: list[NodeEntry] = []
        self.replacements: list[NodeEntry] = []
        self.last_changed = now


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """A summary of the table for people, counters and tests."""

    buckets: int
    good: int
    questionable: int
    bad: int
    replacements: int

    @property
    def nodes(self) -> int:
        return self.good + self.questionable + self.bad


class RoutingTable:
    """The k-bucket routing table of BEP 5; see the module docstring."""

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = K,
        replacement_size: int = REPLACEMENT_CACHE_SIZE,
        now: float = 0.0,
    ) -> None:
        if len(own_id) != NODE_ID_BYTES:
            raise ValueError(f"node id of {len(own_id)} bytes (must be 20)")
        self.own_id = own_id
        self.own_int = int.from_bytes(own_id, "big")
        self.k = k
        self.replacement_size = replacement_size
        self._buckets: list[_Bucket] = [_Bucket(now)]
        #: Every entry, live or waiting, by id and by address.
        self._by_id: dict[bytes, NodeEntry] = {}
        self._by_addr: dict[Address, NodeEntry] = {}

    # ---------------------------------------------------------------- geometry

    def __len__(self) -> int:
        """Live nodes (replacement caches not counted)."""
        return sum(len(b.nodes) for b in self._buckets)

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def bucket_of(self, node_id: bytes) -> int:
        """Index of the bucket that covers ``node_id``."""
        return self._index(int.from_bytes(node_id, "big"))

    def _index(self, id_int: int) -> int:
        shared = _ID_BITS - (id_int ^ self.own_int).bit_length()
        last = len(self._buckets) - 1
        return shared if shared < last else last

    def bucket_range(self, i: int) -> tuple[int, int]:
        """BEP 5's ``min <= N < max`` of bucket ``i``, as integers."""
        last = len(self._buckets) - 1
        if not 0 <= i <= last:
            raise IndexError(i)
        if i == last:
            span = 1 << (_ID_BITS - i)
            lo = (self.own_int >> (_ID_BITS - i)) << (_ID_BITS - i) if i else 0
            return lo, lo + span
        span = 1 << (_ID_BITS - i - 1)
        prefix = (self.own_int >> (_ID_BITS - i)) << (_ID_BITS - i) if i else 0
        flipped = ((self.own_int >> (_ID_BITS - i - 1)) & 1) ^ 1
        lo = prefix | (flipped << (_ID_BITS - i - 1))
        return lo, lo + span

    def random_id_in(self, i: int, rng: random.Random) -> bytes:
        """A random id inside bucket ``i`` (BEP 5's bucket refresh target)."""
        lo, hi = self.bucket_range(i)
        return (lo + rng.randrange(hi - lo)).to_bytes(NODE_ID_BYTES, "big")

    # ---------------------------------------------------------------- lookups

    def bucket_sizes(self) -> list[int]:
        """Live nodes per bucket, farthest bucket first."""
        return [len(b.nodes) for b in self._buckets]

    def find(self, node_id: bytes) -> NodeEntry | None:
        return self._by_id.get(node_id)

    def find_address(self, address: Address) -> NodeEntry | None:
        return self._by_addr.get(address)

    def nodes(self) -> Iterator[NodeEntry]:
        """Live entries, bucket by bucket."""
        for b in self._buckets:
            yield from b.nodes

    def replacements(self) -> Iterator[NodeEntry]:
        for b in self._buckets:
            yield from b.replacements

    def good_nodes(self, now: float) -> list[NodeEntry]:
        return [n for n in self.nodes() if n.state(now) is NodeState.GOOD]

    def closest(self, target: bytes, count: int, now: float) -> list[NodeEntry]:
        """The ``count`` live nodes nearest ``target`` by XOR, bad ones left out.

        BEP 5 find_node/get_peers answer with "the K (8) closest good nodes";
        a questionable node is still a better lead than none, so only bad
        nodes are left out (libtorrent does the same with failed ones).
        """
        t = int.from_bytes(target, "big")
        live = [n for b in self._buckets for n in b.nodes if n.failures < MAX_FAILURES]
        live.sort(key=lambda n: n.id_int ^ t)
        return live[:count]

    def stats(self, now: float) -> RoutingStats:
        counts = {s: 0 for s in NodeState}
        for n in self.nodes():
            counts[n.state(now)] += 1
        return RoutingStats(
            len(self._buckets),
            counts[NodeState.GOOD],
            counts[NodeState.QUESTIONABLE],
            counts[NodeState.BAD],
            sum(len(b.replacements) for b in self._buckets),
        )

    # ---------------------------------------------------------------- updates

    def heard_query(self, node_id: bytes, address: Address, now: float) -> bool:
        """A node queried us.  Known (same id, same address): its query time
        is refreshed (BEP 5: a node that answered once and queried us within
        15 minutes is good) and True is returned; else False."""
        entry = self._by_id.get(node_id)
        if entry is None or entry.address != address:
            return False
        entry.last_query = now
        return True

    def wants(self, node_id: bytes) -> bool:
        """Would an answer from ``node_id`` get it into the table or its
        replacement cache?  Decides whether a stranger that queried us is
        worth a verification ping."""
        if node_id == self.own_id or node_id in self._by_id:
            return False
        i = self._index(int.from_bytes(node_id, "big"))
        b = self._buckets[i]
        if len(b.nodes) < self.k or len(b.replacements) < self.replacement_size:
            return True
        if i == len(self._buckets) - 1 and len(self._buckets) < MAX_BUCKETS:
            return True
        return any(n.failures >= MAX_FAILURES for n in b.nodes)

    def heard_response(self, node_id: bytes, address: Address, now: float) -> Outcome:
        """A node answered one of our queries (its transaction id matched):
        it is known good.  BEP 5 "Routing Table" insertion rules."""
        if node_id == self.own_id or len(node_id) != NODE_ID_BYTES:
            return Outcome.IGNORED
        entry = self._by_id.get(node_id)
        if entry is not None:
            if entry.address != address:
                # Someone else claims a known id: keep the one we verified.
                return Outcome.IGNORED
            entry.last_response = now
            entry.failures = 0
            bucket = self._buckets[self._index(entry.id_int)]
            if entry.live:
                bucket.last_changed = now
                return Outcome.UPDATED
            # A waiting node answered again: move it up if there is room now.
            if self._fill(bucket, now):
                return Outcome.ADDED if entry.live else Outcome.UPDATED
            return Outcome.UPDATED
        other = self._by_addr.get(address)
        if other is not None:
            # The node at this address restarted under a new id.
            self._remove(other, now)
        entry = NodeEntry(node_id, address)
        entry.last_response = now
        for _ in range(MAX_BUCKETS + 1):
            i = self._index(entry.id_int)
            b = self._buckets[i]
            if len(b.nodes) < self.k:
                self._add_live(b, entry, now)
                return Outcome.ADDED
            if i == len(self._buckets) - 1 and len(self._buckets) < MAX_BUCKETS:
                self._split(now)
                continue
            bad = [n for n in b.nodes if n.failures >= MAX_FAILURES]
            if bad:
                worst = max(bad, key=lambda n: (n.failures, -n.last_seen))
                self._remove(worst, now)
                self._add_live(b, entry, now)
                return Outcome.REPLACED
            self._cache(b, entry)
            return Outcome.CACHED
        return Outcome.IGNORED  # unreachable: each split adds a bucket, at most 160

    def failed(self, node_id: bytes, address: Address, now: float) -> Outcome:
        """A query to the node went unanswered (timed out)."""
        entry = self._by_id.get(node_id)
        if entry is None or entry.address != address:
            return Outcome.IGNORED
        entry.failures += 1
        if entry.failures < MAX_FAILURES:
            return Outcome.FAILED
        bucket = self._buckets[self._index(entry.id_int)]
        if not entry.live:
            self._remove(entry, now)
            return Outcome.REMOVED
        if bucket.replacements:
            self._remove(entry, now)
            return Outcome.REPLACED
        return Outcome.BAD

    def ping_candidates(self, now: float, near: bytes | None = None) -> list[NodeEntry]:
        """Nodes to ping now (BEP 5): in each bucket where a newcomer waits in
        the replacement cache and no ping is in flight, the least recently
        seen questionable node.  ``near``: only the bucket covering that id."""
        out = []
        buckets = self._buckets if near is None else [self._buckets[self.bucket_of(near)]]
        for b in buckets:
            if not b.replacements or any(n.pinging for n in b.nodes):
                continue
            questionable = [n for n in b.nodes if n.state(now) is NodeState.QUESTIONABLE]
            if questionable:
                out.append(min(questionable, key=lambda n: n.last_seen))
        return out

    def buckets_to_refresh(self, now: float) -> list[int]:
        """Buckets unchanged for 15 minutes (BEP 5: "should be refreshed")."""
        return [i for i, b in enumerate(self._buckets) if now - b.last_changed >= GOOD_WINDOW_S]

    def touch_bucket(self, i: int, now: float) -> None:
        """Mark bucket ``i`` changed (a refresh lookup for it started)."""
        self._buckets[i].last_changed = now

    # ---------------------------------------------------------------- internals

    def _add_live(self, b: _Bucket, entry: NodeEntry, now: float) -> None:
        entry.live = True
        b.nodes.append(entry)
        b.last_changed = now
        self._by_id[entry.id] = entry
        self._by_addr[entry.address] = entry

    def _cache(self, b: _Bucket, entry: NodeEntry) -> None:
        if len(b.replacements) >= self.replacement_size:
            oldest = min(b.replacements, key=lambda n: n.last_seen)
            b.replacements.remove(oldest)
            del self._by_id[oldest.id]
            del self._by_addr[oldest.address]
        entry.live = False
        b.replacements.append(entry)
        self._by_id[entry.id] = entry
        self._by_addr[entry.address] = entry

    def _remove(self, entry: NodeEntry, now: float) -> None:
        b = self._buckets[self._index(entry.id_int)]
        if entry.live:
            b.nodes.remove(entry)
            b.last_changed = now
        else:
            b.replacements.remove(entry)
        del self._by_id[entry.id]
        del self._by_addr[entry.address]
        self._fill(b, now)

    def _fill(self, b: _Bucket, now: float) -> bool:
        """Move the most recently seen waiting nodes up while there is room."""
        moved = False
        while len(b.nodes) < self.k and b.replacements:
            best = max(b.replacements, key=lambda n: n.last_seen)
            b.replacements.remove(best)
            best.live = True
            b.nodes.append(best)
            b.last_changed = now
            moved = True
        return moved

    def _split(self, now: float) -> None:
        """Split the last bucket (the one holding our id) in two (BEP 5)."""
        last = len(self._buckets) - 1
        old = self._buckets[last]
        new = _Bucket(now)
        self._buckets.append(new)
        own = self.own_int
        keep_nodes: list[NodeEntry] = []
        keep_cache: list[NodeEntry] = []
        for n in old.nodes:
            (new.nodes if _ID_BITS - (n.id_int ^ own).bit_length() > last else keep_nodes).append(n)
        for n in old.replacements:
            shared = _ID_BITS - (n.id_int ^ own).bit_length()
            (new.replacements if shared > last else keep_cache).append(n)
        old.nodes, old.replacements = keep_nodes, keep_cache
        old.last_changed = now
        self._fill(old, now)
        self._fill(new, now)


__all__ = [
    "GOOD_WINDOW_S",
    "K",
    "MAX_BUCKETS",
    "MAX_FAILURES",
    "REPLACEMENT_CACHE_SIZE",
    "NodeEntry",
    "NodeState",
    "Outcome",
    "RoutingStats",
    "RoutingTable",
]
