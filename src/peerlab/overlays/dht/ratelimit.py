"""Rate limiting of incoming queries per source address.

A DHT node answers strangers, and every answer costs us upload and CPU, so
each source address (IP and port) gets a token bucket of ``burst`` queries
refilled at ``rate`` queries per second; a query beyond it is dropped
unanswered (libtorrent's dos_blocker does the same per IP).  The per-address
keying lets many nodes share one IP, as they do on 127.0.0.1 in tests.  The
table of sources is bounded: the least recently heard source is forgotten
first.  Time is passed in.
"""

from __future__ import annotations

from collections import OrderedDict

from peerlab.runtime.base import Address

#: Queries per second one source may send us on average.
QUERY_RATE = 20.0
#: Queries one source may send back to back.
QUERY_BURST = 40.0
#: Source addresses remembered; beyond it the least recently heard goes.
MAX_SOURCES = 4096


class SourceRateLimiter:
    """Token buckets by source address."""

    def __init__(
        self, rate: float = QUERY_RATE, burst: float = QUERY_BURST, max_sources: int = MAX_SOURCES
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        #: address -> [tokens, time of the last refill]
        self._buckets: OrderedDict[Address, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Address, now: float) -> bool:
        """Take one token of ``source``'s bucket; False when it is empty."""
        if self.rate <= 0:
            return True
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            b = self._buckets[source] = [self.burst, now]
        else:
            self._buckets.move_to_end(source)
            if now > b[1]:
                b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
                b[1] = now
        if b[0] < 1.0:
            return False
        b[0] -= 1.0
        return True

    def forget_idle(self, now: float) -> int:
        """Drop sources whose bucket has refilled completely: they carry no
        state worth keeping.  Returns how many went."""
        full_after = self.burst / self.rate if self.rate > 0 else 0.0
        gone = 0
        while self._buckets:
            source, b = next(iter(self._buckets.items()))
            if now - b[1] < full_after:
                break
            del self._buckets[source]
            gone += 1
        return gone


__all__ = ["MAX_SOURCES", "QUERY_BURST", "QUERY_RATE", "SourceRateLimiter"]
