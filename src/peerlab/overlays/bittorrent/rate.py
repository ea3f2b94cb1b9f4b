"""Transfer rates measured over a sliding window, with the time passed in.

The choker ranks peers by these rates (issue 6, section 4: "tit-for-tat on
measured rates"), and the request pipeline sizes its queue from them.  The
shape is the original BitTorrent's ``Measure``: one running average whose
start is never more than ``window`` seconds in the past, so old traffic fades
out and a burst is not forgotten at once.  O(1) per update, no timers.

Public API::

    RateMeter(now, window=RATE_WINDOW)
        .add(n, now)        # n bytes moved at time now
        .rate(now) -> float # bytes/s over the window
        .total              # every byte ever added
    SlidingAverage(gain=SLIDING_GAIN)   # request times (libtorrent's shape)
        .add(sample)  .mean  .deviation  .samples
"""

from __future__ import annotations

#: Seconds a rate looks back.  BitTorrent 3.x averaged rates over 20 s for its
#: choker: long enough to smooth TCP's bursts, short enough that the 10 s
#: rechoke sees a peer that stopped sending.
RATE_WINDOW = 20.0
#: The shortest span a rate is computed over, so that the first bytes after a
#: quiet period do not read as an absurd rate.
MIN_SPAN = 1.0


class RateMeter:
    """Bytes per second over the last ``window`` seconds (a running average)."""

    __slots__ = ("window", "_rate", "_since", "_last", "total")

    def __init__(self, now: float, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._rate = 0.0
        self._since = now - MIN_SPAN
        self._last = now
        self.total = 0

    def _advance(self, now: float) -> None:
        if now <= self._last:
            return
        span = self._last - self._since
        # the average over [since, last] stays, stretched to [since', now]
        self._since = max(self._since, now - self.window)
        self._rate = self._rate * span / (now - self._since) if now > self._since else 0.0
        self._last = now

    def add(self, n: int, now: float) -> None:
        self._advance(now)
        self.total += n
        span = max(self._last - self._since, MIN_SPAN)
        self._rate += n / span

    def rate(self, now: float) -> float:
        self._advance(now)
        return self._rate


#: Samples after which a :class:`SlidingAverage` stops weighing them equally
#: and each new one moves the mean by 1/20th of its distance (libtorrent's
#: ``sliding_average<int, 20>`` of a peer's request times).
SLIDING_GAIN = 20


class SlidingAverage:
    """A running mean and mean absolute deviation of samples (libtorrent's
    ``sliding_average``): the first ``gain`` samples weigh equally, later
    ones ``1/gain`` each, so the figures follow a peer whose pace changes.
    The request pipeline keeps one of the seconds between two blocks of a
    peer, and times its requests out from it."""

    __slots__ = ("gain", "mean", "deviation", "samples")

    def __init__(self, gain: int = SLIDING_GAIN) -> None:
        self.gain = gain
        self.mean = 0.0
        self.deviation = 0.0
        self.samples = 0

    def add(self, sample: float) -> None:
        off = abs(sample - self.mean) if self.samples else 0.0
        if self.samples < self.gain:
            self.samples += 1
        self.mean += (sample - self.mean) / self.samples
        if self.samples > 1:
            self.deviation += (off - self.deviation) / (self.samples - 1)
