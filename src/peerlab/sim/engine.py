"""The simulator's core: one event heap, a virtual clock, and the trace.

Every event of a simulation (a timer firing, a packet leaving an uplink,
arriving at a downlink, reaching a host's stack) is one entry
``(when, seq, fn, arg)`` in a single binary heap.  ``seq`` increases with
every scheduled event, so events at the same virtual time run in the order
they were scheduled, and a run is a pure function of the seed and the
program: no wall clock, no global randomness, no iteration over unordered
containers.

What was *delivered* (a callback into a handler, a timer firing, a packet
lost) is folded into a running BLAKE2b digest, :meth:`Simulator.trace_digest`:
two runs with the same seed and the same program give the same digest, which
is how determinism is tested.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

from peerlab.errors import ConfigError
from peerlab.runtime.base import Observer, QueuedTimer
from peerlab.sim.net import PacketSink, SimHost

#: The virtual wall clock at virtual time 0 (2024-01-01T00:00:00Z), so that
#: ``wall_time()`` looks like a real date and is the same in every run.
DEFAULT_EPOCH = 1_704_067_200.0

#: Cancelled timers tolerated in the heap before it is compacted (and only
#: when they are at least half of it): re-armed timers must not grow it.
COMPACT_THRESHOLD = 10_000

#: Trace lines hashed at once: one digest update per batch instead of per
#: line (a few hundred KiB of text at most).
TRACE_BATCH = 4096


class SimTimer(QueuedTimer):
    """A scheduled callback on the virtual clock.  Cancelled timers are
    skipped without moving the clock."""

    __slots__ = ("_sim", "_ip")

    def __init__(self, sim: Simulator, when: float, fn: Callable[[], None], ip: str | None) -> None:
        super().__init__(sim, when, fn)
        self._sim = sim
        self._ip = ip


def fire_timer(timer: SimTimer) -> None:
    """The heap callback of every :class:`SimTimer`."""
    fn = timer.fn
    if fn is None:
        return
    timer.fn = None
    if timer._ip is not None:
        timer._sim.trace(timer._ip, "timer")
    fn()


def derive_seed(seed: int, *parts: str) -> int:
    """A 64-bit seed derived from the scenario seed and names (a host's IP,
    a purpose).  hashlib, not ``hash()``: the latter is salted per process."""
    text = "\x1f".join([str(seed), *parts]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


class Simulator:
    """A simulated network of hosts on one virtual clock.

    ``seed`` fixes every random choice (each host's ``runtime.rng`` and its
    links' losses).  ``trace=True`` also keeps the trace lines in
    :attr:`trace_lines` (for debugging a divergence; the digest is always
    kept).  ``epoch`` is the virtual wall clock at time 0.

    Exceptions raised by handlers propagate out of :meth:`run`: a simulated
    protocol bug stops the simulation where it happened.
    """

    def __init__(self, seed: int, *, trace: bool = False, epoch: float = DEFAULT_EPOCH) -> None:
        self.seed = seed
        self.epoch = epoch
        self.now = 0.0
        self.hosts: dict[str, SimHost] = {}
        #: Where a packet addressed to an IP goes: hosts register here, and a
        #: NAT box or relay can take an address over later.
        self.routes: dict[str, PacketSink] = {}
        self.events_run = 0
        self.trace_lines: list[str] | None = [] if trace else None
        self._heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        #: The next sequence number of an event (ties at one virtual time
        #: run in scheduling order).
        self._next_seq: Callable[[], int] = itertools.count(1).__next__
        self._cancelled = 0
        self._digest = hashlib.blake2b(digest_size=16)
        #: Trace lines not yet hashed: hashed in batches of TRACE_BATCH (the
        #: digest of the joined lines is the digest of the lines one by one).
        self._unhashed: list[str] = []
        #: ``repr(now)`` of the last trace line and the float it was made of.
        self._now_at: float | None = None
        self._now_text = ""

    # -- hosts

    def add_host(
        self,
        ip: str,
        *,
        up: float,
        down: float,
        latency: float,
        loss: float = 0.0,
        observer: Observer | None = None,
    ) -> SimHost:
        """Add a host with an access link: ``up``/``down`` in bytes/s
        (``math.inf`` for unlimited), one-way ``latency`` in seconds, and the
        probability ``loss`` that a packet is lost on each of its two link
        directions."""
        if ip in self.routes:
            raise ConfigError(f"simulated host {ip} already exists")
        if not (up > 0 and down > 0):
            raise ConfigError(f"host {ip}: bandwidth must be positive (up={up}, down={down})")
        if not (latency >= 0 and math.isfinite(latency)):
            raise ConfigError(f"host {ip}: latency must be a finite number >= 0")
        if not 0.0 <= loss < 1.0:
            raise ConfigError(f"host {ip}: loss must be in [0, 1)")
        host = SimHost(self, ip, up=up, down=down, latency=latency, loss=loss, observer=observer)
        self.hosts[ip] = host
        self.routes[ip] = host
        return host

    # -- the heap

    def schedule(self, when: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``fn(arg)`` at virtual time ``when`` (never earlier than now)."""
        heapq.heappush(
            self._heap, (when if when > self.now else self.now, self._next_seq(), fn, arg)
        )

    def call_at(self, when: float, fn: Callable[[], None], ip: str | None = None) -> SimTimer:
        """A cancellable timer; ``ip`` names the host in the trace (internal
        timers of the network stack pass None and are not traced)."""
        timer = SimTimer(self, when if when > self.now else self.now, fn, ip)
        heapq.heappush(self._heap, (timer._when, self._next_seq(), fire_timer, timer))
        return timer

    def _timer_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled > COMPACT_THRESHOLD and 2 * self._cancelled > len(self._heap):
            # In place: run() and run_until() hold this very list, so a new
            # list would strand every event scheduled after the compaction.
            heap = self._heap
            heap[:] = [e for e in heap if not (e[2] is fire_timer and e[3].fn is None)]
            heapq.heapify(heap)
            self._cancelled = 0

    def _pop_cancelled(self) -> None:
        """Drop cancelled timers from the top of the heap, clock untouched."""
        heap = self._heap
        while heap and heap[0][2] is fire_timer and heap[0][3].fn is None:
            heapq.heappop(heap)
            if self._cancelled:
                self._cancelled -= 1

    def pending(self) -> int:
        """Events waiting in the heap (cancelled timers included)."""
        return len(self._heap)

    def next_event_time(self) -> float | None:
        """When the next live event is due, or None when nothing is left."""
        self._pop_cancelled()
        return self._heap[0][0] if self._heap else None

    def run(self, until: float | None = None, *, max_events: int | None = None) -> int:
        """Run events in order until the heap is empty or the next event lies
        after ``until`` (then the clock is set to ``until``).  Returns the
        number of events run."""
        heap = self._heap
        pop = heapq.heappop
        fire = fire_timer
        end = math.inf if until is None else until
        limit = math.inf if max_events is None else max_events
        n = 0
        # The hot loop of every simulation: cancelled timers are skipped here
        # (as _pop_cancelled does) without a method call per event.
        while heap and n < limit:
            top = heap[0]
            if top[2] is fire and top[3].fn is None:
                pop(heap)
                if self._cancelled:
                    self._cancelled -= 1
                continue
            if top[0] > end:
                break
            pop(heap)
            self.now = top[0]
            top[2](top[3])
            n += 1
        self.events_run += n
        if until is not None and until > self.now and (max_events is None or n < max_events):
            self.now = until
        return n

    def run_until(self, pred: Callable[[], object], timeout: float) -> bool:
        """Run events until ``pred()`` holds (is truthy: True is returned) or
        ``timeout`` virtual seconds pass (False; the clock then stands at the
        deadline)."""
        deadline = self.now + timeout
        heap = self._heap
        pop = heapq.heappop
        n = 0
        try:
            while not pred():
                self._pop_cancelled()
                if not heap or heap[0][0] > deadline:
                    self.now = max(self.now, deadline)
                    return bool(pred())
                when, _, fn, arg = pop(heap)
                self.now = when
                fn(arg)
                n += 1
            return True
        finally:
            self.events_run += n

    # -- the trace

    def trace(self, ip: str, kind: str, detail: str = "") -> None:
        """Record a delivered event in the trace digest."""
        line = f"{self.now_text()} {ip} {kind} {detail}\n"
        unhashed = self._unhashed
        unhashed.append(line)
        if len(unhashed) >= TRACE_BATCH:
            self._hash_lines()
        if self.trace_lines is not None:
            self.trace_lines.append(line)

    def now_text(self) -> str:
        """``repr(self.now)``, as trace lines begin.  Remembered for the
        float object it was made of (shortest-repr formatting is the dearest
        part of a trace line, and a delivery and the flush timer it arms for
        the same instant share that object)."""
        now = self.now
        if now is not self._now_at:
            self._now_at = now
            self._now_text = repr(now)
        return self._now_text

    def _hash_lines(self) -> None:
        self._digest.update("".join(self._unhashed).encode())
        self._unhashed.clear()

    def trace_digest(self) -> str:
        """Hex digest over every delivered event so far."""
        if self._unhashed:
            self._hash_lines()
        return self._digest.hexdigest()

    def __repr__(self) -> str:
        return f"<Simulator seed={self.seed} now={self.now:.6f} hosts={len(self.hosts)}>"
