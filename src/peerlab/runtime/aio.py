"""The real runtime: :class:`~peerlab.runtime.base.Runtime` on asyncio sockets.

A thin adapter.  Stream handlers already use :class:`asyncio.Protocol`'s
callback names, so a connection is a small :class:`asyncio.Protocol` that
forwards to the handler, and a :class:`~peerlab.runtime.base.Stream` is a small
wrapper around the asyncio transport.  What the adapter adds:

* ``listen()`` and ``bind_udp()`` bind synchronously with the :mod:`socket`
  module, so "address in use" is raised at once as
  :class:`~peerlab.errors.AddressInUse` instead of surfacing later in a task;
* its own timer queue, because asyncio's heap does not keep ties in order of
  creation (rule 6 of :mod:`peerlab.runtime.base`): one asyncio timer is armed
  for the earliest deadline and fires every due timer in (deadline, creation)
  order;
* ``abort()`` sets ``SO_LINGER`` to zero so that the peer really sees a reset,
  as it does in the simulator;
* ``offload()`` runs blocking work on a :class:`ThreadPoolExecutor` and hands
  the result back on the loop.

:func:`new_event_loop` returns a uvloop loop when uvloop is installed.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

from peerlab.errors import AddressInUse, ConnectionRefused, LocalProtocolError, NetworkError
from peerlab.runtime.base import (
    DEFAULT_HIGH_WATER,
    DEFAULT_LOW_WATER,
    Address,
    DatagramHandler,
    NullObserver,
    Observer,
    QueuedTimer,
    StreamHandler,
)

T = TypeVar("T")

#: Largest datagram we read: the IPv4 UDP payload limit (RFC 768 length field
#: minus the IP and UDP headers).
MAX_DATAGRAM = 65507

#: Datagrams read per wake-up of a UDP socket before yielding to the loop, so a
#: flood on one socket cannot starve everything else.
UDP_READS_PER_WAKEUP = 64

#: Bytes of datagrams queued while the socket's send buffer is full; beyond
#: this new datagrams are dropped, as a kernel drops them when its queue is full.
UDP_SEND_QUEUE_LIMIT = 1 << 20

#: Cancelled timers tolerated in the queue before it is compacted (and only
#: when they are at least half of it), so re-armed timers cannot grow it.
TIMER_COMPACT_THRESHOLD = 512


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it imports, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind_error(kind: str, address: Address, exc: OSError) -> NetworkError:
    where = f"{address[0]}:{address[1]}"
    if exc.errno == errno.EADDRINUSE:
        err: NetworkError = AddressInUse(f"{kind} address {where} is already in use")
    else:
        err = NetworkError(f"cannot bind {kind} address {where}: {exc.strerror or exc}")
    err.__cause__ = exc
    return err


def _reset_error(exc: BaseException | None) -> NetworkError | None:
    if exc is None:
        return None
    if isinstance(exc, NetworkError):
        return exc
    err = NetworkError(f"connection reset: {exc}")
    err.__cause__ = exc
    return err


# ------------------------------------------------------------------ streams


class _AioStream:
    """A :class:`~peerlab.runtime.base.Stream` over an asyncio transport."""

    __slots__ = ("_transport", "_local", "_remote", "_closing", "_eof_sent", "_protocol")

    def __init__(self, transport: asyncio.Transport, protocol: _AioProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        sockname = transport.get_extra_info("sockname")
        peername = transport.get_extra_info("peername")
        self._local: Address = (sockname[0], sockname[1]) if sockname else ("", 0)
        self._remote: Address = (peername[0], peername[1]) if peername else ("", 0)
        self._closing = False
        self._eof_sent = False

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote_address(self) -> Address:
        return self._remote

    @property
    def closing(self) -> bool:
        return self._closing or self._protocol.lost or self._transport.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            return
        if self._eof_sent:
            raise LocalProtocolError("write() after write_eof()")
        self._transport.write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        if self.closing:
            return
        if self._eof_sent:
            raise LocalProtocolError("writelines() after write_eof()")
        self._transport.writelines(chunks)

    def write_eof(self) -> None:
        if self.closing or self._eof_sent:
            return
        self._eof_sent = True
        self._transport.write_eof()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._transport.close()

    def abort(self) -> None:
        if self._protocol.lost:
            return
        self._closing = True
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN, so the peer sees a
            # reset (as in the simulator) rather than an orderly end.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self._transport.abort()

    def pause_reading(self) -> None:
        if not self.closing:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closing:
            self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def __repr__(self) -> str:
        return f"<AioStream {self._local} -> {self._remote}>"


class _AioProtocol(asyncio.Protocol):
    """Forwards asyncio's protocol callbacks to a peerlab handler."""

    def __init__(self, handler: StreamHandler, runtime: AsyncioRuntime) -> None:
        self.handler = handler
        self.runtime = runtime
        self.made = False
        self.lost = False
        self.stream: _AioStream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: duck-typed.
        transport = cast(asyncio.Transport, transport)
        self.made = True
        transport.set_write_buffer_limits(high=DEFAULT_HIGH_WATER, low=DEFAULT_LOW_WATER)
        self.stream = _AioStream(transport, self)
        self.runtime._streams.add(self.stream)
        self.handler.connection_made(self.stream)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool:
        self.handler.eof_received()
        # Keep the transport open: a half-closed stream may still be written to.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.stream is not None:
            self.runtime._streams.discard(self.stream)
        self.handler.connection_lost(_reset_error(exc))

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class _AioConnecting:
    """A pending outgoing connection: a task running ``create_connection``."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()


class _AioListener:
    """A listening socket served by an :class:`asyncio.Server`."""

    def __init__(
        self,
        runtime: AsyncioRuntime,
        sock: socket.socket,
        factory: Callable[[], StreamHandler],
    ) -> None:
        loop = runtime.loop
        self._runtime = runtime
        self._sock = sock
        name = sock.getsockname()
        self._address: Address = (name[0], name[1])
        self._server: asyncio.Server | None = None
        self._closed = False

        def protocol() -> asyncio.Protocol:
            return _AioProtocol(factory(), runtime)

        async def serve() -> None:
            server = await loop.create_server(protocol, sock=sock)
            if self._closed:
                server.close()
            else:
                self._server = server

        self._task = loop.create_task(serve())

    @property
    def address(self) -> Address:
        return self._address

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._runtime._listeners.discard(self)
        if self._server is not None:
            self._server.close()
        elif not self._task.done():
            self._task.cancel()
            self._sock.close()

    def __repr__(self) -> str:
        return f"<AioListener {self._address}>"


class _AioDatagramEndpoint:
    """A UDP socket driven by the loop's reader and writer callbacks."""

    def __init__(
        self, runtime: AsyncioRuntime, sock: socket.socket, handler: DatagramHandler
    ) -> None:
        loop = runtime.loop
        self._runtime = runtime
        self._loop = loop
        self._sock = sock
        self._handler = handler
        name = sock.getsockname()
        self._address: Address = (name[0], name[1])
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._queued_bytes = 0
        self._closed = False
        loop.add_reader(sock.fileno(), self._read_ready)

    @property
    def address(self) -> Address:
        return self._address

    def send_to(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        if self._queue:
            self._enqueue(bytes(data), addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._enqueue(bytes(data), addr)
            self._loop.add_writer(self._sock.fileno(), self._write_ready)
        except OSError as exc:
            self._report(exc)

    def _enqueue(self, data: bytes, addr: Address) -> None:
        if self._queued_bytes + len(data) > UDP_SEND_QUEUE_LIMIT:
            return
        self._queue.append((data, addr))
        self._queued_bytes += len(data)

    def _write_ready(self) -> None:
        while self._queue:
            data, addr = self._queue[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._report(exc)
            self._queue.popleft()
            self._queued_bytes -= len(data)
        self._loop.remove_writer(self._sock.fileno())

    def _read_ready(self) -> None:
        for _ in range(UDP_READS_PER_WAKEUP):
            if self._closed:
                return
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._report(exc)
                return
            self._handler.datagram_received(data, (addr[0], addr[1]))

    def _report(self, exc: OSError) -> None:
        err = NetworkError(f"UDP error on {self._address[0]}:{self._address[1]}: {exc}")
        err.__cause__ = exc
        self._loop.call_soon(self._handler.error_received, err)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._runtime._endpoints.discard(self)
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        if self._queue:
            self._loop.remove_writer(fd)
        self._queue.clear()
        self._sock.close()

    def __repr__(self) -> str:
        return f"<AioDatagramEndpoint {self._address}>"


# ------------------------------------------------------------------ runtime


class AsyncioRuntime:
    """:class:`~peerlab.runtime.base.Runtime` on an asyncio event loop.

    ``loop``: the loop to run on; by default the running loop, or (when none
    runs) a new one from :func:`new_event_loop`, which this runtime then owns
    and closes in :meth:`close`.  ``rng`` defaults to an OS-seeded
    :class:`random.Random`; ``observer`` to a :class:`NullObserver`;
    ``workers`` is the size of the :meth:`offload` thread pool.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        rng: random.Random | None = None,
        observer: Observer | None = None,
        workers: int = 2,
    ) -> None:
        self._owns_loop = False
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = new_event_loop()
                self._owns_loop = True
        self.loop: asyncio.AbstractEventLoop = loop
        self.rng: random.Random = rng if rng is not None else random.Random()
        self.observer: Observer = observer if observer is not None else NullObserver()
        self._workers = max(1, workers)
        self._executor: ThreadPoolExecutor | None = None
        # Timers in our own queue: asyncio does not keep ties in creation
        # order, so the runtime orders them itself.
        self._timers: list[tuple[float, int, QueuedTimer]] = []
        self._timer_seq = 0
        self._timers_cancelled = 0
        self._armed: asyncio.TimerHandle | None = None
        self._armed_when = 0.0
        #: The deadline of the last timers fired: asyncio may run a timer up
        #: to its clock resolution early (uvloop: a millisecond), and a timer's
        #: callback, or anything after it, must never see a time before its
        #: deadline (as in the simulator).
        self._now_floor = 0.0
        self._closed = False
        self._listeners: set[_AioListener] = set()
        self._endpoints: set[_AioDatagramEndpoint] = set()
        self._streams: set[_AioStream] = set()
        self._connecting: set[_AioConnecting] = set()

    # -- clock and timers

    def now(self) -> float:
        t = self.loop.time()
        return t if t >= self._now_floor else self._now_floor

    def wall_time(self) -> float:
        return time.time()

    def call_at(self, when: float, fn: Callable[[], None]) -> QueuedTimer:
        timer = QueuedTimer(self, when, fn)
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, timer))
        if self._armed is None or when < self._armed_when:
            self._arm(when)
        return timer

    def call_later(self, delay: float, fn: Callable[[], None]) -> QueuedTimer:
        return self.call_at(self.now() + delay, fn)

    def call_soon(self, fn: Callable[[], None]) -> QueuedTimer:
        return self.call_at(self.now(), fn)

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_when = when
        self._armed = self.loop.call_at(when, self._fire)

    def _timer_cancelled(self) -> None:
        self._timers_cancelled += 1
        n = self._timers_cancelled
        if n > TIMER_COMPACT_THRESHOLD and 2 * n > len(self._timers):
            self._timers = [e for e in self._timers if not e[2]._cancelled]
            heapq.heapify(self._timers)
            self._timers_cancelled = 0

    def _fire(self) -> None:
        self._armed = None
        # asyncio decided ``_armed_when`` is due (it allows for its clock
        # resolution), so everything up to it is due as well.
        cutoff = max(self.loop.time(), self._armed_when)
        self._now_floor = cutoff
        timers = self._timers
        while timers and timers[0][0] <= cutoff:
            timer = heapq.heappop(timers)[2]
            fn = timer.fn
            if fn is None:
                self._timers_cancelled = max(0, self._timers_cancelled - 1)
                continue
            timer.fn = None
            try:
                fn()
            except Exception as exc:
                self.loop.call_exception_handler(
                    {"message": "peerlab timer callback failed", "exception": exc}
                )
        if timers and self._armed is None:
            self._arm(timers[0][0])

    # -- streams

    def connect(
        self,
        address: Address,
        handler: StreamHandler,
        *,
        timeout: float | None = None,
        local_host: str | None = None,
    ) -> _AioConnecting:
        host, port = address
        protocol = _AioProtocol(handler, self)
        local = (local_host, 0) if local_host else None
        loop = self.loop

        async def attempt() -> None:
            try:
                coro = loop.create_connection(lambda: protocol, host, port, local_addr=local)
                if timeout is not None:
                    await asyncio.wait_for(coro, timeout)
                else:
                    await coro
            except asyncio.CancelledError:
                if not protocol.made:
                    handler.connection_failed(NetworkError(f"connect to {host}:{port} cancelled"))
            except ConnectionRefusedError as exc:
                err: NetworkError = ConnectionRefused(f"connection to {host}:{port} refused")
                err.__cause__ = exc
                handler.connection_failed(err)
            except TimeoutError as exc:
                err = NetworkError(f"connect to {host}:{port} timed out after {timeout} s")
                err.__cause__ = exc
                handler.connection_failed(err)
            except OSError as exc:
                err = NetworkError(f"connect to {host}:{port} failed: {exc.strerror or exc}")
                err.__cause__ = exc
                handler.connection_failed(err)

        task = loop.create_task(attempt())
        connecting = _AioConnecting(task)
        self._connecting.add(connecting)
        task.add_done_callback(lambda t: self._task_done(t, connecting))
        return connecting

    def _task_done(self, task: asyncio.Task[None], connecting: _AioConnecting) -> None:
        self._connecting.discard(connecting)
        if not task.cancelled() and task.exception() is not None:
            self.loop.call_exception_handler(
                {"message": "peerlab connect callback failed", "exception": task.exception()}
            )

    def listen(
        self,
        address: Address,
        factory: Callable[[], StreamHandler],
        *,
        backlog: int = 128,
    ) -> _AioListener:
        sock = socket.socket(_family(address[0]), socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR only skips TIME_WAIT leftovers; two listeners on one
            # port still fail with EADDRINUSE on POSIX.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _bind_error("TCP", address, exc) from exc
        listener = _AioListener(self, sock, factory)
        self._listeners.add(listener)
        return listener

    def bind_udp(self, address: Address, handler: DatagramHandler) -> _AioDatagramEndpoint:
        sock = socket.socket(_family(address[0]), socket.SOCK_DGRAM)
        try:
            sock.bind(address)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _bind_error("UDP", address, exc) from exc
        endpoint = _AioDatagramEndpoint(self, sock, handler)
        self._endpoints.add(endpoint)
        return endpoint

    # -- blocking work

    def offload(
        self,
        fn: Callable[[], T],
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._workers, thread_name_prefix="peerlab-offload"
            )
        loop = self.loop

        def deliver(fut: Future[T]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                done(None, exc)
            else:
                done(fut.result(), None)

        def finished(fut: Future[T]) -> None:
            try:
                loop.call_soon_threadsafe(deliver, fut)
            except RuntimeError:
                pass  # the loop is closed: nobody is left to tell

        self._executor.submit(fn).add_done_callback(finished)

    # -- shutdown

    def close(self) -> None:
        """Shut down: close every listener, UDP endpoint and stream this
        runtime opened (streams close in order: the peer sees EOF), cancel
        pending connects and timers, stop the worker threads, and close the
        loop if this runtime made it.  Callbacks for what was closed still
        arrive while the loop runs on."""
        if self._closed:
            return
        self._closed = True
        for listener in list(self._listeners):
            listener.close()
        for endpoint in list(self._endpoints):
            endpoint.close()
        for attempt in list(self._connecting):
            attempt.cancel()
        for stream in list(self._streams):
            stream.close()
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        self._timers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_loop and not self.loop.is_running():
            self.loop.close()

    def __repr__(self) -> str:
        return f"<AsyncioRuntime loop={type(self.loop).__name__}>"
