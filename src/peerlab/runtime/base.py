"""The runtime interface: everything protocol and overlay code may ask of the world.

Protocol and node code never touch sockets, the wall clock or global
randomness.  They receive a :class:`Runtime` and ask it for the time, for
timers, for connections and datagram endpoints, for random numbers, for a
worker to run blocking work on, and for an observer to report to.  Two
implementations exist:

* :mod:`peerlab.runtime.aio`: asyncio sockets on the machine (uvloop when
  installed);
* :mod:`peerlab.sim`: a virtual clock driven by one event heap and an
  in-memory network with per-link latency, bandwidth and loss.

The callback names follow :class:`asyncio.Protocol` so that the real adapter is
thin.  Rules every implementation keeps (the conformance suite in
``tests/runtime/`` checks them against both):

1. Callbacks are never invoked re-entrantly from inside a call into the
   runtime.  ``connect()``, ``listen()``, ``write()``, ``close()`` and friends
   only *schedule* callbacks; they run later from the event loop (in the
   simulator: from the event heap, at the same or a later virtual time).
2. A stream handler sees exactly one of ``connection_made`` or
   ``connection_failed`` per connect attempt.  After ``connection_made`` it
   sees any number of ``data_received`` calls, at most one ``eof_received``,
   and exactly one ``connection_lost`` last of all (``None`` for an orderly
   close, else the :class:`~peerlab.errors.NetworkError` that ended it).
3. Bytes written on one end arrive in order, unduplicated, at the other end
   (TCP semantics; the simulator retransmits what its links lose).
4. ``write_eof()`` half-closes: the peer gets ``eof_received()`` after all
   data, and may keep writing back.  ``close()`` flushes what was written and
   then closes; ``abort()`` discards it and closes at once.
5. When more than ``high_water`` bytes are buffered unsent, the handler gets
   ``pause_writing()``; when the buffer drains below ``low_water`` it gets
   ``resume_writing()``.  Writes while paused are still accepted (the buffer
   just grows), so a handler that ignores flow control stays correct, only
   greedy.
6. Timers fire in order of their deadline, ties in order of creation.  A
   cancelled timer never fires.
7. Datagrams may be lost, duplicated or reordered in the simulator when the
   link says so, never on the real runtime's loopback.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from peerlab.errors import NetworkError

# Re-exported: the timer both runtimes keep lives in a module of its own,
# which the compiled build (``make fast``) compiles with the simulator.
from peerlab.runtime.timers import QueuedTimer as QueuedTimer
from peerlab.runtime.timers import TimerOwner as TimerOwner

T = TypeVar("T")

#: ``(host, port)``.  Hosts are strings: dotted IPv4 on the real runtime
#: (``"127.0.0.1"``), and the same form for simulated hosts.
Address = tuple[str, int]

#: Default flow-control thresholds of a stream's send buffer, in bytes.
DEFAULT_HIGH_WATER = 1 << 20
DEFAULT_LOW_WATER = 256 << 10


@runtime_checkable
class Timer(Protocol):
    """A scheduled callback."""

    @property
    def when(self) -> float:
        """The deadline, in the runtime's clock."""

    def cancel(self) -> None:
        """Prevent the callback from running.  Idempotent."""

    @property
    def cancelled(self) -> bool: ...


@runtime_checkable
class SansIOMachine(Protocol):
    """The part of the machine shape every machine a
    :class:`~peerlab.runtime.driver.StreamDriver` drives must have."""

    def receive_data(self, data: bytes, now: float) -> list[Any]: ...

    def data_to_send(self) -> bytes: ...


class Stream(Protocol):
    """One end of a reliable, ordered byte stream (a TCP connection)."""

    @property
    def local_address(self) -> Address: ...

    @property
    def remote_address(self) -> Address: ...

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes for sending.  Ignored after ``close()``/``abort()``."""

    def writelines(self, chunks: list[bytes]) -> None:
        """Queue several buffers at once (no join on the caller's side)."""

    def write_eof(self) -> None:
        """Half-close: no more writes from this end; reading goes on."""

    def close(self) -> None:
        """Send what is queued, then close.  ``connection_lost(None)`` follows."""

    def abort(self) -> None:
        """Close at once, discarding what is queued."""

    def pause_reading(self) -> None:
        """Stop delivering ``data_received`` until :meth:`resume_reading`."""

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet handed to the network."""

    @property
    def closing(self) -> bool:
        """True once ``close()``/``abort()`` was called or the peer went away."""


class StreamHandler(Protocol):
    """What a connection reports to.  asyncio.Protocol's names, plus one."""

    def connection_made(self, stream: Stream) -> None: ...

    def connection_failed(self, exc: NetworkError) -> None:
        """An outgoing connect attempt failed (refused, unreachable, timeout)."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None:
        """The peer half-closed.  The stream stays open for writing."""

    def connection_lost(self, exc: NetworkError | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class BaseStreamHandler:
    """A :class:`StreamHandler` that ignores everything: subclass what you need."""

    stream: Stream | None = None

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream

    def connection_failed(self, exc: NetworkError) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: NetworkError | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class Connecting(Protocol):
    """A pending outgoing connection."""

    def cancel(self) -> None:
        """Abandon the attempt; the handler then sees ``connection_failed``
        (if not yet connected) or nothing more (if already connected, use the
        stream's ``abort()`` instead)."""


class Listener(Protocol):
    """A listening TCP socket."""

    @property
    def address(self) -> Address:
        """The bound address, with the real port when 0 was asked for."""

    def close(self) -> None:
        """Stop accepting.  Established connections are not touched."""


class DatagramHandler(Protocol):
    def datagram_received(self, data: bytes, addr: Address) -> None: ...

    def error_received(self, exc: NetworkError) -> None: ...


class DatagramEndpoint(Protocol):
    """A bound UDP socket."""

    @property
    def address(self) -> Address: ...

    def send_to(self, data: bytes, addr: Address) -> None:
        """Send one datagram.  Never raises for an unreachable peer."""

    def close(self) -> None: ...


class Observer(Protocol):
    """Where cores report what happened.  Nothing in a core prints.

    ``event(name, **fields)`` records something that happened (a connection
    refused, a chunk failing its hash); ``count(name, n)`` bumps a counter
    (bytes sent, messages by type).  Names are dotted, area first:
    ``"transfer.chunk_failed"``, ``"http.request"``.
    """

    def event(self, name: str, /, **fields: Any) -> None: ...

    def count(self, name: str, n: int = 1) -> None: ...


class Runtime(Protocol):
    """Everything a protocol or overlay core needs from the world."""

    #: Seeded per host in the simulator; ``random.Random()`` from the OS on the
    #: real runtime.  The only source of randomness a core may use.
    rng: random.Random
    observer: Observer

    def now(self) -> float:
        """Seconds on a monotonic clock (virtual in the simulator)."""

    def wall_time(self) -> float:
        """Seconds since the Unix epoch (virtual in the simulator): for
        timestamps shown to people or written in files, never for timeouts."""

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer: ...

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer: ...

    def call_soon(self, fn: Callable[[], None]) -> Timer: ...

    def connect(
        self,
        address: Address,
        handler: StreamHandler,
        *,
        timeout: float | None = None,
        local_host: str | None = None,
    ) -> Connecting:
        """Open a stream to ``address``; the handler learns the outcome."""

    def listen(
        self,
        address: Address,
        factory: Callable[[], StreamHandler],
        *,
        backlog: int = 128,
    ) -> Listener:
        """Listen on ``address`` (port 0: any free port).

        Raises :class:`~peerlab.errors.AddressInUse` (or another
        :class:`~peerlab.errors.NetworkError`) synchronously.
        """

    def bind_udp(self, address: Address, handler: DatagramHandler) -> DatagramEndpoint:
        """Bind a UDP endpoint; raises like :meth:`listen`."""

    def offload(
        self,
        fn: Callable[[], T],
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        """Run blocking work (hashing a chunk, fsync) off the event loop.

        ``done(result, None)`` or ``done(None, exc)`` is called later from the
        event loop.  The real runtime uses a thread pool (hashlib releases
        the GIL, so this uses the second core); the simulator runs ``fn`` at
        once and delivers ``done`` at the same virtual time.
        """


# ---------------------------------------------------------------- observers


class NullObserver:
    """Discards everything."""

    def event(self, name: str, /, **fields: Any) -> None:
        pass

    def count(self, name: str, n: int = 1) -> None:
        pass


@dataclass
class RecordingObserver:
    """Keeps every event and counter: for tests and the simulator's traces.

    ``limit`` bounds the event list (oldest dropped) so a long run cannot
    grow it without end.
    """

    limit: int = 100_000
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)

    def event(self, name: str, /, **fields: Any) -> None:
        self.events.append((name, fields))
        if len(self.events) > self.limit:
            del self.events[: len(self.events) - self.limit]

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def named(self, name: str) -> list[dict[str, Any]]:
        """The fields of every recorded event called ``name``."""
        return [f for n, f in self.events if n == name]


class LoggingObserver:
    """Sends events to :mod:`logging` (the node's log) and keeps counters."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("peerlab")
        self.counters: Counter[str] = Counter()

    def event(self, name: str, /, **fields: Any) -> None:
        if self.log.isEnabledFor(logging.INFO):
            detail = " ".join(f"{k}={v!r}" for k, v in fields.items())
            self.log.info("%s %s", name, detail)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n


class FanoutObserver:
    """Reports to several observers at once."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = list(observers)

    def event(self, name: str, /, **fields: Any) -> None:
        for o in self.observers:
            o.event(name, **fields)

    def count(self, name: str, n: int = 1) -> None:
        for o in self.observers:
            o.count(name, n)
