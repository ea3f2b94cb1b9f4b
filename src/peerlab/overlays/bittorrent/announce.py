"""Announcing a torrent to its trackers (BEP 3 "Trackers", BEP 12, BEP 15).

One :class:`Announcer` per torrent.  Trackers come in tiers (BEP 12
``announce-list``): each tier is shuffled once; the first tracker of the
first tier is asked; a tracker that fails is skipped for the next one (in
its tier, then in the next tier), and one that answers moves to the front
of its tier.  Events (BEP 3): ``started`` first, ``completed`` when the
download finishes, ``stopped`` when the torrent stops; regular announces
follow the tracker's ``interval`` (never sooner than ``min interval``); a
failure is retried after a delay that doubles from
:data:`~peerlab.overlays.bittorrent.config.ANNOUNCE_RETRY_MIN` to
:data:`~peerlab.overlays.bittorrent.config.ANNOUNCE_RETRY_MAX`.  HTTP and UDP
trackers alike, through :mod:`peerlab.overlays.tracker.client`.

Public API::

    Announcer(runtime, tiers, make_request, on_peers, *, timeout, observe)
        .start()                  # event=started
        .completed()              # event=completed
        .stop(done)               # event=stopped; done() once answered or timed out
        .trackers -> list[TrackerStatus]
        .close() .closed
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from peerlab.errors import ConfigError, LocalProtocolError, PeerlabError
from peerlab.overlays.bittorrent.config import ANNOUNCE_RETRY_MAX, ANNOUNCE_RETRY_MIN
from peerlab.overlays.tracker.client import Pending, announce
from peerlab.runtime.base import Address, Runtime, Timer
from peerlab.wire.tracker import AnnounceEvent, AnnounceRequest, AnnounceResponse

__all__ = ["Announcer", "TrackerStatus"]

#: Seconds a ``stopped`` announce may take before the torrent stops anyway.
STOP_TIMEOUT = 5.0
#: Retransmissions of a UDP announce (BEP 15 allows 8, an hour in all; after
#: 15 + 30 + 60 s the next tracker of the tier is a better bet).
UDP_RETRANSMISSIONS = 2


@dataclass(frozen=True, slots=True)
class TrackerStatus:
    """One tracker as the torrent sees it."""

    url: str
    tier: int
    announces: int
    failures: int
    last_error: str | None
    peers_received: int
    seeders: int | None
    leechers: int | None


class _Tracker:
    __slots__ = ("url", "tier", "announces", "failures", "last_error", "peers", "seeders",
                 "leechers")

    def __init__(self, url: str, tier: int) -> None:
        self.url = url
        self.tier = tier
        self.announces = 0
        self.failures = 0
        self.last_error: str | None = None
        self.peers = 0
        self.seeders: int | None = None
        self.leechers: int | None = None


class Announcer:
    """Keeps a torrent announced to its trackers (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        tiers: Sequence[Sequence[str]],
        make_request: Callable[[AnnounceEvent], AnnounceRequest],
        on_peers: Callable[[list[Address]], object],
        *,
        timeout: float,
        observe: Callable[[str], None],
    ) -> None:
        self.runtime = runtime
        self.make_request = make_request
        self.on_peers = on_peers
        self.timeout = timeout
        self.observe = observe
        self._tiers: list[list[_Tracker]] = []
        for t, tier in enumerate(tiers):
            trackers = [_Tracker(url, t) for url in dict.fromkeys(tier)]
            runtime.rng.shuffle(trackers)  # BEP 12: "shuffled randomly"
            if trackers:
                self._tiers.append(trackers)
        self._pending: Pending | None = None
        self._timer: Timer | None = None
        self._retry = ANNOUNCE_RETRY_MIN
        self._cursor = (0, 0)  # (tier, index) of the tracker to ask next
        self._started = False
        self._closed = False
        self._stop_done: Callable[[], None] | None = None
        self._queued: AnnounceEvent | None = None

    @property
    def closed(self) -> bool:
        """Stopped for good (a torrent started again makes a new announcer)."""
        return self._closed

    @property
    def trackers(self) -> list[TrackerStatus]:
        return [
            TrackerStatus(t.url, t.tier, t.announces, t.failures, t.last_error, t.peers,
                          t.seeders, t.leechers)
            for tier in self._tiers
            for t in tier
        ]

    def start(self) -> None:
        """Announce ``started`` (once; later calls do nothing)."""
        if not self._tiers or self._closed or self._started:
            return
        self._started = True
        self._announce(AnnounceEvent.STARTED)

    def completed(self) -> None:
        if self._started and not self._closed:
            self._announce(AnnounceEvent.COMPLETED)

    def stop(self, done: Callable[[], None]) -> None:
        """Announce ``stopped`` (if ``started`` was), then ``done()``."""
        if not self._started or self._closed or not self._tiers:
            self.close()
            done()
            return
        self._stop_done = done
        self._announce(AnnounceEvent.STOPPED, timeout=STOP_TIMEOUT)
        if self._stop_done is not None:
            self._timer = self.runtime.call_later(STOP_TIMEOUT, self._stop_timed_out)

    def _stop_timed_out(self) -> None:
        self._timer = None
        self.observe("announce_stop_timeouts")
        self.close()
        done, self._stop_done = self._stop_done, None
        if done is not None:
            done()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    # -- internals

    def _current(self) -> _Tracker:
        t, i = self._cursor
        return self._tiers[t][i]

    def _advance(self) -> bool:
        """Move to the next tracker; False when every one was tried."""
        t, i = self._cursor
        if i + 1 < len(self._tiers[t]):
            self._cursor = (t, i + 1)
            return True
        if t + 1 < len(self._tiers):
            self._cursor = (t + 1, 0)
            return True
        self._cursor = (0, 0)
        return False

    def _announce(self, event: AnnounceEvent, *, timeout: float | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is not None:
            if event is AnnounceEvent.STOPPED:
                pending, self._pending = self._pending, None
                pending.cancel()
            else:
                # let the one in flight finish; this event goes next
                self._queued = event
                return
        tracker = self._current()
        req = self.make_request(event)
        tracker.announces += 1
        self.observe("announces")

        def done(resp: AnnounceResponse | None, exc: Exception | None) -> None:
            if self._pending is not handle_box[0]:
                return
            self._pending = None
            self._answered(tracker, event, resp, exc)

        handle_box: list[Pending | None] = [None]
        try:
            handle = announce(
                self.runtime,
                tracker.url,
                req,
                done,
                timeout=timeout or self.timeout,
                max_retransmissions=UDP_RETRANSMISSIONS,
            )
        except (ConfigError, LocalProtocolError) as exc:
            # a URL we cannot use, or a request it cannot carry: that tracker fails
            self._answered(tracker, event, None, exc)
            return
        handle_box[0] = handle
        self._pending = handle

    def _answered(
        self,
        tracker: _Tracker,
        event: AnnounceEvent,
        resp: AnnounceResponse | None,
        exc: Exception | None,
    ) -> None:
        if event is AnnounceEvent.STOPPED:
            self.close()
            done, self._stop_done = self._stop_done, None
            if done is not None:
                done()
            return
        if self._closed:
            return
        if resp is None:
            tracker.failures += 1
            tracker.last_error = str(exc) if isinstance(exc, PeerlabError) else repr(exc)
            self.observe("announce_failures")
            if self._advance():
                # another tracker may answer at once (BEP 12)
                self._schedule(0.0, event)
            else:
                self._schedule(self._retry, event)
                self._retry = min(self._retry * 2, ANNOUNCE_RETRY_MAX)
            return
        tracker.last_error = None
        tracker.seeders = resp.complete
        tracker.leechers = resp.incomplete
        tracker.peers += len(resp.peers)
        self._retry = ANNOUNCE_RETRY_MIN
        # BEP 12: a tracker that answers moves to the front of its tier
        t, i = self._cursor
        tier = self._tiers[t]
        tier.insert(0, tier.pop(i))
        self._cursor = (0, 0)
        self.on_peers([(p.ip, p.port) for p in resp.peers])
        queued, self._queued = self._queued, None
        if queued is not None:
            self._announce(queued)
            return
        interval = float(resp.interval)
        if resp.min_interval is not None:
            interval = max(interval, float(resp.min_interval))
        self._schedule(max(interval, 1.0), AnnounceEvent.NONE)

    def _schedule(self, delay: float, event: AnnounceEvent) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        # a failed started/completed is sent again as it was
        self._timer = self.runtime.call_later(delay, lambda: self._fire(event))

    def _fire(self, event: AnnounceEvent) -> None:
        self._timer = None
        if not self._closed:
            self._announce(event)
