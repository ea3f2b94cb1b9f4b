"""Global rate limits: one token bucket shared by every connection of a direction.

A bucket holds up to ``burst`` bytes of credit and refills at ``rate`` bytes
per second.  Senders ask :meth:`TokenBucket.delay` how long to wait before
``n`` bytes may go, then :meth:`TokenBucket.consume` them.  Credit may go
negative (a large write is never split to fit), which simply makes the next
caller wait longer: the long-run rate is exact either way.

Time is passed in, never read: the same bucket runs in the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Seconds of credit a bucket may save up when idle: bounds the burst after a
#: quiet period so a limit of 100 KB/s does not allow a 10 MB spike.
DEFAULT_BURST_SECONDS = 0.25


@dataclass
class TokenBucket:
    """``rate`` in bytes/s; ``rate <= 0`` means unlimited."""

    rate: float
    burst: float = 0.0
    _tokens: float = field(default=0.0, init=False)
    _stamp: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.burst <= 0:
            self.burst = max(self.rate * DEFAULT_BURST_SECONDS, 64 * 1024)
        self._tokens = self.burst

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = rate
        self.burst = max(rate * DEFAULT_BURST_SECONDS, 64 * 1024)
        self._tokens = min(self._tokens, self.burst)

    def _refill(self, now: float) -> None:
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now if self._stamp is None else max(self._stamp, now)

    def delay(self, n: int, now: float) -> float:
        """Seconds to wait before ``n`` bytes may be sent (0.0: send now)."""
        if self.unlimited:
            return 0.0
        self._refill(now)
        # Less than a byte of debt counts as none: waiting for it would be a
        # sub-nanosecond delay that a float clock cannot advance past.
        if self._tokens > -1.0 or not n:
            return 0.0
        return -self._tokens / self.rate

    def consume(self, n: int, now: float) -> None:
        if self.unlimited:
            return
        self._refill(now)
        self._tokens -= n
