"""Flow control: one bounded, prioritised outgoing queue per connection.

A descriptor for a neighbour is queued here and handed to its connection
only while the stream accepts more (the runtime's ``pause_writing`` /
``resume_writing``).  A neighbour that reads slower than we send therefore
fills this queue, not our memory: the queue holds at most
:data:`MAX_QUEUE_BYTES` and :data:`MAX_QUEUE_MESSAGES`, and when a new
descriptor does not fit, the least valuable one goes (possibly the new one).
Dropped descriptors are returned to the caller, which counts them.

Priorities, most valuable first (``ping-pong`` "clients implementing
message prioritization should make pings and pongs a higher priority
message than queries and replies"; gtk-gnutella's message queue keeps
replies before queries and sheds the queries that travelled farthest, whose
flood has reached most of the network already):

====  =======================================================
 0    Bye, vendor messages, QRP (connection control)
 1    Ping, Pong
 2    Push
 3    Query Hit
 4+h  Query with hops h (our own queries, h = 0, go first)
====  =======================================================

Within one priority the oldest goes out first, and the newest is dropped
first: what waited longest has the best chance of still being useful.

Public API: :class:`Queued`, :class:`OutgoingQueue`, :func:`priority`,
:data:`MAX_QUEUE_BYTES`, :data:`MAX_QUEUE_MESSAGES`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from peerlab.wire.gnutella import HEADER_LENGTH, PING, PONG, PUSH, QUERY, QUERY_HIT

#: Bytes one connection's queue may hold (headers included).  The stream
#: under it buffers up to its own high-water mark (1 MiB) before it pauses;
#: this is what waits beyond that, sorted by priority.  gtk-gnutella's
#: per-node queue is of the same order (its "send queue full" Bye, 502,
#: reports ~40 KB on modem links).
MAX_QUEUE_BYTES = 512 * 1024
#: Descriptors one queue may hold (bounds the bookkeeping of tiny pings).
MAX_QUEUE_MESSAGES = 4096

PRIORITY_CONTROL = 0
PRIORITY_PING_PONG = 1
PRIORITY_PUSH = 2
PRIORITY_HIT = 3
PRIORITY_QUERY = 4


def priority(payload_type: int, hops: int) -> int:
    """The queue priority of a descriptor (lower goes first)."""
    if payload_type == QUERY:
        return PRIORITY_QUERY + min(hops, 255)
    if payload_type == QUERY_HIT:
        return PRIORITY_HIT
    if payload_type == PUSH:
        return PRIORITY_PUSH
    if payload_type in (PING, PONG):
        return PRIORITY_PING_PONG
    return PRIORITY_CONTROL


@dataclass(slots=True)
class Queued:
    """A descriptor waiting to be sent: header fields and raw payload."""

    guid: bytes
    payload_type: int
    ttl: int
    hops: int
    payload: bytes
    #: The connection it was forwarded for (a route), or 0 for our own.
    routed: bool = False

    @property
    def size(self) -> int:
        return HEADER_LENGTH + len(self.payload)


class OutgoingQueue:
    """A bounded priority queue of descriptors for one connection."""

    __slots__ = ("max_bytes", "max_messages", "_levels", "_bytes", "_count")

    def __init__(
        self, max_bytes: int = MAX_QUEUE_BYTES, max_messages: int = MAX_QUEUE_MESSAGES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._levels: dict[int, deque[Queued]] = {}
        self._bytes = 0
        self._count = 0

    @property
    def bytes(self) -> int:
        """Bytes queued (headers included)."""
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def push(self, item: Queued) -> list[Queued]:
        """Queue ``item``; returns what was dropped to make room (``[item]``
        itself when everything queued is worth at least as much)."""
        prio = priority(item.payload_type, item.hops)
        size = item.size
        need_bytes = self._bytes + size - self.max_bytes
        need_count = self._count + 1 - self.max_messages
        if need_bytes > 0 or need_count > 0:
            # Plan the evictions first, strictly lower priorities only, newest
            # first: if they cannot make room, nothing queued is touched.
            plan: list[tuple[int, int]] = []
            freed_bytes = freed_count = 0
            for p in sorted(self._levels, reverse=True):
                if p <= prio or (freed_bytes >= need_bytes and freed_count >= need_count):
                    break
                taken = 0
                for victim in reversed(self._levels[p]):
                    taken += 1
                    freed_bytes += victim.size
                    freed_count += 1
                    if freed_bytes >= need_bytes and freed_count >= need_count:
                        break
                plan.append((p, taken))
            if freed_bytes < need_bytes or freed_count < need_count:
                return [item]
            dropped: list[Queued] = []
            for p, taken in plan:
                level = self._levels[p]
                for _ in range(taken):
                    victim = level.pop()
                    self._bytes -= victim.size
                    self._count -= 1
                    dropped.append(victim)
                if not level:
                    del self._levels[p]
        else:
            dropped = []
        queue = self._levels.get(prio)
        if queue is None:
            queue = self._levels[prio] = deque()
        queue.append(item)
        self._bytes += size
        self._count += 1
        return dropped

    def pop(self) -> Queued | None:
        """The most valuable descriptor, oldest first; ``None`` when empty."""
        if not self._levels:
            return None
        best = min(self._levels)
        level = self._levels[best]
        item = level.popleft()
        if not level:
            del self._levels[best]
        self._bytes -= item.size
        self._count -= 1
        return item

    def __iter__(self) -> Iterator[Queued]:
        """What is queued, in the order it would be sent."""
        for prio in sorted(self._levels):
            yield from self._levels[prio]

    def clear(self) -> list[Queued]:
        """Empty the queue; returns what it held."""
        out = [item for prio in sorted(self._levels) for item in self._levels[prio]]
        self._levels.clear()
        self._bytes = 0
        self._count = 0
        return out


__all__ = [
    "MAX_QUEUE_BYTES",
    "MAX_QUEUE_MESSAGES",
    "PRIORITY_CONTROL",
    "PRIORITY_HIT",
    "PRIORITY_PING_PONG",
    "PRIORITY_PUSH",
    "PRIORITY_QUERY",
    "OutgoingQueue",
    "Queued",
    "priority",
]
