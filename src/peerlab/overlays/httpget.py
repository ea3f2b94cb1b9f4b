"""One HTTP GET on a fresh connection, its whole (bounded) body collected.

The shape every one-shot client of peerlab shares (the direct browse, the
BitTorrent tracker client): send one request with ``Connection: close``,
refuse an oversized answer, give up after a timeout, and report exactly once,
from the runtime's loop.  Subclasses say what the request is for (the words
of its errors), may look at the response head (:meth:`HttpGet.on_response`),
turn the body into a result (:meth:`HttpGet.on_body`) and deliver it
(:meth:`HttpGet.deliver`).  Written only against the runtime interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peerlab.errors import NetworkError, PeerlabError, RemoteProtocolError
from peerlab.proto.http import ClientConnection, Data, EndOfMessage, Request, Response
from peerlab.runtime.base import Address, BaseStreamHandler, Connecting, Runtime, Stream, Timer


class HttpGet(BaseStreamHandler):
    """One request in flight; :meth:`cancel` abandons it with a NetworkError."""

    #: Words of the errors, set by each subclass.
    timeout_message = "the HTTP request timed out"
    closed_message = "connection closed before the answer"
    failed_prefix = "HTTP request failed"
    too_large_message = "answer too large"
    cancelled_message = "HTTP request cancelled"

    def __init__(
        self,
        runtime: Runtime,
        address: Address,
        request: Request,
        *,
        timeout: float,
        max_body: int,
    ) -> None:
        self.runtime = runtime
        self.address = address
        self.max_body = max_body
        self._open = True
        self.conn = ClientConnection()
        self.body = bytearray()
        self.status: int | None = None
        self.stream: Stream | None = None
        self.conn.send_request(request)
        self._timer: Timer | None = runtime.call_later(timeout, self._timed_out)
        self._connecting: Connecting | None = runtime.connect(address, self, timeout=timeout)

    # ------------------------------------------------------ subclass hooks

    def on_response(self, response: Response) -> None:
        """The response head arrived; raise to refuse it."""

    def on_body(self, body: bytes) -> Any:
        """The whole body arrived: the result to deliver (raise to fail)."""
        return body

    def deliver(self, result: Any, exc: Exception | None) -> None:
        """Report the outcome; called exactly once."""

    # ----------------------------------------------------------- finishing

    def cancel(self) -> None:
        self._finish(None, NetworkError(self.cancelled_message))

    def _finish(self, result: Any, exc: Exception | None) -> None:
        if not self._open:
            return
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.stream is not None:
            if exc is None:
                self.stream.close()
            else:
                self.stream.abort()
        elif self._connecting is not None:
            self._connecting.cancel()
        self.deliver(result, exc)

    def _timed_out(self) -> None:
        self._timer = None
        self._finish(None, NetworkError(self.timeout_message))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except PeerlabError as exc:
            self._finish(None, exc)
        except Exception as exc:  # the handler boundary: report, never raise
            self._finish(None, RemoteProtocolError(f"{self.failed_prefix}: {exc!r}"))

    # ---------------------------------------------------- runtime callbacks

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self._connecting = None
        if not self._open:
            stream.abort()
            return
        self._guard(lambda: stream.write(self.conn.data_to_send()))

    def connection_failed(self, exc: NetworkError) -> None:
        self._connecting = None
        self._finish(None, exc)

    def data_received(self, data: bytes) -> None:
        self._guard(lambda: self._events(self.conn.receive_data(data)))

    def eof_received(self) -> None:
        self._guard(lambda: self._events(self.conn.receive_eof()))

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.stream = None
        self._finish(None, exc or NetworkError(self.closed_message))

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if not self._open:
                return
            if isinstance(ev, Response):
                self.status = ev.status
                self.on_response(ev)
                length = ev.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > self.max_body:
                    raise RemoteProtocolError(self.too_large_message)
            elif isinstance(ev, Data):
                self.body += ev.data
                if len(self.body) > self.max_body:
                    raise RemoteProtocolError(self.too_large_message)
            elif isinstance(ev, EndOfMessage):
                self._finish(self.on_body(bytes(self.body)), None)
