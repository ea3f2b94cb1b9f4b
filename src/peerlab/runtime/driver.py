"""One connection driver for every sans-I/O machine, in both worlds.

A sans-I/O machine (DESIGN.md, "Interfaces worth having"; aioquic's shape)
never touches a socket or a clock.  It is fed bytes and the time and answers
with events and bytes::

    receive_data(data, now) -> list[event]
    data_to_send() -> bytes
    next_deadline() -> float | None      # optional: a machine without timers
    handle_timeout(now) -> list[event] | None
    receive_eof(now) -> list[event]      # optional: how EOF is signalled

:class:`StreamDriver` is the :class:`~peerlab.runtime.base.StreamHandler` that
connects such a machine to a stream of any :class:`~peerlab.runtime.base.Runtime`:
it feeds received bytes in, dispatches the events to a callback, writes out
what the machine queued, and keeps exactly one timer armed at the machine's
next deadline.  Written only against the runtime interface, it runs unchanged
on real sockets and in the simulator.

Machines whose methods take no ``now`` (h11-style HTTP machines) are driven
with ``clocked=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peerlab.errors import NetworkError, ProtocolError

# SansIOMachine is ``@runtime_checkable``, which a compiled module cannot
# define: it lives in base (not compiled) and is named here too.
from peerlab.runtime.base import Runtime, SansIOMachine, Stream, Timer


class StreamDriver:
    """Drives a sans-I/O machine over one stream.

    ``on_event(event)`` gets every event the machine returns, in order.
    ``on_connected(driver)`` is called when the stream is up (for outgoing
    connections: after a successful connect), ``on_closed(exc)`` exactly once
    at the end: ``None`` after an orderly close, else the
    :class:`~peerlab.errors.NetworkError` (connect failure, reset) or
    :class:`~peerlab.errors.ProtocolError` (the machine rejected the peer's
    bytes, after which the driver aborts the connection) that ended it.
    ``on_writable(bool)`` follows the stream's flow control.

    After telling the machine to send something (``machine.send(...)``),
    call :meth:`flush`.  EOF from the peer goes to ``machine.receive_eof``
    when the machine has one; otherwise the driver closes the stream.
    """

    def __init__(
        self,
        runtime: Runtime,
        machine: SansIOMachine,
        on_event: Callable[[Any], None],
        *,
        on_connected: Callable[[StreamDriver], None] | None = None,
        on_closed: Callable[[Exception | None], None] | None = None,
        on_writable: Callable[[bool], None] | None = None,
        clocked: bool = True,
    ) -> None:
        self.runtime = runtime
        self.machine = machine
        self.stream: Stream | None = None
        self.writable = True
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_closed = on_closed
        self._on_writable = on_writable
        self._clocked = clocked
        self._timer: Timer | None = None
        self._finished = False
        self._error: Exception | None = None
        self._next_deadline = getattr(machine, "next_deadline", None)
        self._handle_timeout = getattr(machine, "handle_timeout", None)
        self._receive_eof = getattr(machine, "receive_eof", None)

    @property
    def finished(self) -> bool:
        """True once ``on_closed`` was called."""
        return self._finished

    # -- the app's side

    def flush(self) -> None:
        """Write out what the machine queued and re-arm its timer."""
        stream = self.stream
        if stream is None or self._finished:
            return
        out = self.machine.data_to_send()
        if out and not stream.closing:
            stream.write(out)
        # _rearm() inlined for its common case (no deadline, no timer): a
        # flush follows every read and every batch of writes.
        deadline = self._next_deadline() if self._next_deadline is not None else None
        if deadline is not None or self._timer is not None:
            self._rearm(deadline)

    def close(self) -> None:
        """Flush, then close the stream (``on_closed(None)`` follows)."""
        self.flush()
        if self.stream is not None:
            self.stream.close()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self.stream is not None:
            self.stream.abort()

    # -- StreamHandler

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        if self._on_connected is not None:
            self._on_connected(self)
        self.flush()

    def connection_failed(self, exc: NetworkError) -> None:
        self._finish(exc)

    def data_received(self, data: bytes) -> None:
        if self._finished:
            return
        try:
            if self._clocked:
                events = self.machine.receive_data(data, self.runtime.now())
            else:
                events = self.machine.receive_data(data)  # type: ignore[call-arg]
        except ProtocolError as exc:
            self._protocol_failed(exc)
            return
        self._dispatch(events)
        self.flush()

    def eof_received(self) -> None:
        if self._finished:
            return
        if self._receive_eof is None:
            self.close()
            return
        try:
            events = self._receive_eof(self.runtime.now()) if self._clocked else self._receive_eof()
        except ProtocolError as exc:
            self._protocol_failed(exc)
            return
        self._dispatch(events)
        self.flush()

    def connection_lost(self, exc: NetworkError | None) -> None:
        self._finish(self._error or exc)

    def pause_writing(self) -> None:
        self.writable = False
        if self._on_writable is not None:
            self._on_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        if self._on_writable is not None:
            self._on_writable(True)

    # -- internals

    def _dispatch(self, events: list[Any] | None) -> None:
        if not events:
            return
        for event in events:
            if self._finished:
                return
            self._on_event(event)

    def _protocol_failed(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: this connection pays, nothing else."""
        self.runtime.observer.event(
            "driver.protocol_error", error=str(exc), machine=type(self.machine).__name__
        )
        self._error = exc
        if self.stream is not None:
            self.stream.abort()
        else:
            self._finish(exc)

    def _on_timer(self) -> None:
        self._timer = None
        if self._finished or self._handle_timeout is None:
            return
        try:
            events = self._handle_timeout(self.runtime.now())
        except ProtocolError as exc:
            self._protocol_failed(exc)
            return
        self._dispatch(events)
        self.flush()

    def _rearm(self, deadline: float | None) -> None:
        """Keep one timer armed at ``deadline`` (none when it is None)."""
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None:
            if timer.when == deadline:
                return
            timer.cancel()
        self._timer = self.runtime.call_at(deadline, self._on_timer)

    def _finish(self, exc: Exception | None) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_closed is not None:
            self._on_closed(exc)
