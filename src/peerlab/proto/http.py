"""HTTP/1.1 connections as sans-I/O state machines, in h11's shape (RFC 9112).

No I/O, no clock: a connection is fed the bytes that arrived and returns
events; it queues the bytes to send, which the caller collects with
``data_to_send()``.  Events are frozen, slotted dataclasses.

One request/response cycle per connection at a time; after it the connection
is reused when both sides allow it (``keep_alive``) and ``start_next_cycle()``
is called.  The rules, per side of one cycle::

    client sends:     IDLE --send_request--> (request sent) ... DONE
    server sends:     (Response) --> body --> EndOfMessage

    persistence:      HTTP/1.1 unless "Connection: close" on either message;
                      HTTP/1.0 only with "Connection: keep-alive" on both;
                      never after a close-delimited body or a protocol error.
    response body:    none for HEAD, 1xx, 204, 304 (RFC 9112 section 6.3);
                      else chunked, or Content-Length, or until close.
    request body:     chunked or Content-Length, else none (never until close).

Garbage from the peer raises :class:`~peerlab.errors.RemoteProtocolError`
(its ``code`` is the status a server answers with) and leaves the connection
in an error state where every further ``receive_data`` raises too.  Misuse by
the caller raises :class:`~peerlab.errors.LocalProtocolError`.

Bytes that arrive while a side waits (before a request is sent, after a
message ended) are buffered and parsed by the next ``receive_data`` call;
``receive_data(b"")`` processes the buffer without adding to it.

Bulk bodies take a fast path: a Content-Length or chunked body whose bytes
arrive on their own is handed back as the very buffers received, without a
copy, so a body streams at memory speed.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.http import (
    DEFAULT_MAX_HEADER_BYTES,
    HEAD_END_RE,
    LAST_CHUNK,
    BodyReader,
    ChunkedReader,
    CloseDelimitedReader,
    ContentLengthReader,
    Headers,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    parse_content_length,
    parse_field_lines,
    parse_request_line,
    parse_status_line,
    parse_transfer_chunked,
    split_head,
)

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "Headers",
    "Request",
    "Response",
    "ServerConnection",
]


# ------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Request:
    """A request head (RFC 9112 section 3)."""

    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"


@dataclass(frozen=True, slots=True)
class Response:
    """A final response head (RFC 9112 section 4); 1xx are consumed silently."""

    status: int
    reason: str
    headers: Headers
    http_version: str = "1.1"


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of a message body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The message's body is complete."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its sending side between messages."""


Event = Request | Response | Data | EndOfMessage | ConnectionClosed

_END = EndOfMessage()
_CLOSED = ConnectionClosed()

# Receive-side states of the peer's current message.
_IDLE = "IDLE"  # no message expected yet (client: no request sent)
_HEAD = "HEAD"  # waiting for / reading a message head
_BODY = "BODY"  # reading its body
_DONE = "DONE"  # message complete; further bytes wait for the next cycle
_EOF = "EOF"  # the peer closed
_ERROR = "ERROR"  # the peer broke the protocol

#: Status codes whose responses never carry a body (RFC 9112 section 6.3).
NO_BODY_STATUSES = frozenset({204, 304})
#: Bytes we hold for a peer that sends ahead of the protocol (pipelining):
#: bounded so a peer cannot grow the buffer while we are busy.
MAX_EARLY_BYTES_FACTOR = 2


def _persistent(version: str, headers: Headers) -> bool:
    """RFC 9112 section 9.3: may the connection persist after this message?"""
    tokens = headers.tokens("connection")
    if "close" in tokens:
        return False
    if version == "1.0":
        return "keep-alive" in tokens
    return True


class _Receiver:
    """The receive half shared by both ends: buffer, head parsing, body readers."""

    __slots__ = ("_max", "_buf", "_scan", "_state", "_reader", "_error")

    def __init__(self, max_header_bytes: int) -> None:
        if max_header_bytes < 64:
            raise ValueError("max_header_bytes is too small to hold any message head")
        self._max = max_header_bytes
        self._buf = bytearray()
        self._scan = 0
        self._state = _IDLE
        self._reader: BodyReader | None = None
        self._error: RemoteProtocolError | None = None

    def _fail(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        self._state = _ERROR
        self._error = exc
        self._reader = None
        self._buf = bytearray()
        return exc

    def _take_head(self, skip_blank_lines: bool) -> tuple[bytes, list[bytes]] | None:
        """The next complete head in the buffer, or ``None`` (need more)."""
        buf = self._buf
        if skip_blank_lines:
            # RFC 9112 section 2.2: ignore empty lines before a request line.
            start = 0
            while buf.startswith(b"\r\n", start) or buf.startswith(b"\n", start):
                start += 2 if buf[start] == 13 else 1
            if start:
                del buf[:start]
                self._scan = 0
        m = HEAD_END_RE.search(buf, max(self._scan - 2, 0))
        if m is None:
            if len(buf) > self._max:
                raise RemoteProtocolError("header block too large", 431)
            self._scan = len(buf)
            return None
        end = m.end()
        if end > self._max:
            raise RemoteProtocolError("header block too large", 431)
        start_line, lines = split_head(buf[: m.start()])
        del buf[:end]
        self._scan = 0
        return start_line, lines

    def _feed_body(self, data: bytes, events: list[Event]) -> bool:
        """Feed body bytes; True once the body ended (leftovers re-buffered)."""
        reader = self._reader
        assert reader is not None
        pieces, rest = reader.feed(data)
        for piece in pieces:
            if piece:
                events.append(Data(piece))
        if rest is None:
            return False
        events.append(_END)
        self._state = _DONE
        self._reader = None
        if rest:
            self._buf += rest
        return True

    def _buffered_body(self, events: list[Event]) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._feed_body(data, events)

    def _check_early(self) -> None:
        if len(self._buf) > self._max * MAX_EARLY_BYTES_FACTOR:
            raise RemoteProtocolError("peer sent too much ahead of the protocol", 400)

    def _eof_events(self, what: str) -> list[Event]:
        """Shared receive_eof logic: the body's end or a truncation error."""
        state = self._state
        if state == _ERROR:
            assert self._error is not None
            raise self._error
        if state == _EOF:
            return [_CLOSED]
        if state == _BODY:
            reader = self._reader
            assert reader is not None
            if reader.eof_ends_body():
                self._state = _EOF
                self._reader = None
                return [_END, _CLOSED]
            raise self._fail(RemoteProtocolError(f"connection closed inside the {what} body"))
        if state == _HEAD and self._buf.strip(b"\r\n"):
            raise self._fail(RemoteProtocolError(f"connection closed inside the {what} head"))
        if state == _HEAD and what == "response":
            raise self._fail(RemoteProtocolError("connection closed before a response"))
        self._state = _EOF
        return [_CLOSED]


class ClientConnection(_Receiver):
    """The client end of an HTTP/1.1 connection (RFC 9112)."""

    __slots__ = ("_out", "_method", "_req_persist", "_resp_persist", "_sent")

    def __init__(self, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        super().__init__(max_header_bytes)
        self._out: list[bytes] = []
        self._method: str | None = None
        self._req_persist = True
        self._resp_persist = True
        self._sent = False

    # ------------------------------------------------------------- sending

    def send_request(self, req: Request, body: bytes = b"") -> None:
        """Queue ``req`` and its whole body (framed by Content-Length)."""
        if self._sent or self._state not in (_IDLE,):
            raise LocalProtocolError("a request is already in flight on this connection")
        headers = req.headers
        if "transfer-encoding" in headers:
            raise LocalProtocolError("send_request frames the body itself (Content-Length)")
        declared = headers.get("content-length")
        if declared is not None:
            if declared != str(len(body)):
                raise LocalProtocolError("Content-Length does not match the body")
        elif body:
            headers = headers.with_field("Content-Length", str(len(body)))
        head = encode_request_head(req.method, req.target, headers, req.http_version)
        self._out.append(head + body if body and len(body) < 65536 else head)
        if body and len(body) >= 65536:
            self._out.append(body)
        self._method = req.method.upper()
        self._req_persist = _persistent(req.http_version, headers)
        self._sent = True
        self._state = _HEAD

    def data_to_send(self) -> bytes:
        """Everything queued for the peer (empty when nothing is)."""
        out = self._out
        if not out:
            return b""
        if len(out) == 1:
            return out.pop()
        data = b"".join(out)
        out.clear()
        return data

    # ----------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes: ``Response``, then ``Data``..., then ``EndOfMessage``."""
        if self._state == _BODY and not self._buf:
            events: list[Event] = []
            if data:
                try:
                    self._feed_body(data, events)
                except RemoteProtocolError as exc:
                    raise self._fail(exc) from None
                if self._state == _DONE and self._buf:
                    self._check_early_or_fail()
            return events
        if self._state == _ERROR:
            assert self._error is not None
            raise self._error
        if self._state == _EOF:
            if data:
                raise self._fail(RemoteProtocolError("data after end of stream"))
            return []
        if data:
            self._buf += data
        try:
            return self._process()
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None

    def _check_early_or_fail(self) -> None:
        try:
            self._check_early()
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None

    def _process(self) -> list[Event]:
        events: list[Event] = []
        while True:
            state = self._state
            if state == _HEAD:
                head = self._take_head(skip_blank_lines=False)
                if head is None:
                    return events
                start_line, lines = head
                version, status, reason = parse_status_line(start_line)
                headers = Headers(parse_field_lines(lines))
                if 100 <= status < 200:
                    if status == 101:
                        raise RemoteProtocolError("protocol upgrades are not supported")
                    continue  # informational: the final response follows
                events.append(Response(status, reason, headers, version))
                self._start_body(version, status, headers, events)
            elif state == _BODY:
                self._buffered_body(events)
                return events
            else:  # IDLE, DONE: bytes wait for the next request
                self._check_early()
                return events

    def _start_body(self, version: str, status: int, headers: Headers, events: list[Event]) -> None:
        self._resp_persist = _persistent(version, headers)
        chunked = parse_transfer_chunked(headers)
        length = parse_content_length(headers)
        if self._method == "HEAD" or status in NO_BODY_STATUSES or status < 200:
            events.append(_END)
            self._state = _DONE
            return
        if chunked:
            if length is not None:
                # RFC 9112 section 6.3 step 3: a smuggling vector; refuse it.
                raise RemoteProtocolError("both Transfer-Encoding and Content-Length")
            self._reader = ChunkedReader(self._max)
        elif length is not None:
            if length == 0:
                events.append(_END)
                self._state = _DONE
                return
            self._reader = ContentLengthReader(length)
        else:
            self._reader = CloseDelimitedReader()
            self._resp_persist = False
        self._state = _BODY

    def receive_eof(self) -> list[Event]:
        """The peer closed: the end of a close-delimited body, a clean close
        between cycles (``ConnectionClosed``), or a truncation error."""
        if self._state == _IDLE:
            self._state = _EOF
            return [_CLOSED]
        events = self._eof_events("response")
        self._resp_persist = False
        return events

    # ----------------------------------------------------------- lifecycle

    @property
    def keep_alive(self) -> bool:
        """May this connection carry another request after the current cycle?"""
        return self._req_persist and self._resp_persist and self._state not in (_ERROR, _EOF)

    def start_next_cycle(self) -> None:
        """Reset for the next request; only after a complete, persistent cycle."""
        if self._state != _DONE or not self.keep_alive:
            raise LocalProtocolError("the connection cannot carry another request")
        self._state = _IDLE
        self._method = None
        self._req_persist = True
        self._resp_persist = True
        self._sent = False


# --------------------------------------------------------------------- server

# Send-side states of our response.
_S_WAIT = "WAIT"  # no request yet: nothing to answer
_S_RESPOND = "RESPOND"  # a request (or a protocol error) awaits its response
_S_BODY = "BODY"  # response head sent, body going out
_S_DONE = "DONE"  # response complete


class ServerConnection(_Receiver):
    """The server end of an HTTP/1.1 connection (RFC 9112)."""

    __slots__ = (
        "_out",
        "_send",
        "_method",
        "_version",
        "_req_persist",
        "_resp_persist",
        "_framing",
        "_left",
    )

    def __init__(self, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        super().__init__(max_header_bytes)
        self._state = _HEAD
        self._out: list[bytes] = []
        self._send = _S_WAIT
        self._method = "GET"
        self._version = "1.1"
        self._req_persist = True
        self._resp_persist = True
        self._framing = "none"  # none | length | chunked | close
        self._left = 0

    # ----------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes: ``Request``, then ``Data``..., then ``EndOfMessage``."""
        if self._state == _BODY and not self._buf:
            events: list[Event] = []
            if data:
                try:
                    self._feed_body(data, events)
                    if self._state == _DONE and self._buf:
                        self._check_early()
                except RemoteProtocolError as exc:
                    raise self._fail(exc) from None
            return events
        if self._state == _ERROR:
            assert self._error is not None
            raise self._error
        if self._state == _EOF:
            if data:
                raise self._fail(RemoteProtocolError("data after end of stream"))
            return []
        if data:
            self._buf += data
        try:
            return self._process()
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None

    def _process(self) -> list[Event]:
        events: list[Event] = []
        state = self._state
        if state == _HEAD:
            head = self._take_head(skip_blank_lines=True)
            if head is None:
                return events
            start_line, lines = head
            method, target, version = parse_request_line(start_line)
            headers = Headers(parse_field_lines(lines))
            self._method = method
            self._version = version
            self._req_persist = _persistent(version, headers)
            self._send = _S_RESPOND
            events.append(Request(method, target, headers, version))
            chunked = parse_transfer_chunked(headers)
            length = parse_content_length(headers)
            if chunked:
                if length is not None:
                    raise RemoteProtocolError("both Transfer-Encoding and Content-Length", 400)
                self._reader = ChunkedReader(self._max)
                self._state = _BODY
            elif length:
                self._reader = ContentLengthReader(length)
                self._state = _BODY
            else:
                events.append(_END)
                self._state = _DONE
            if self._state == _BODY:
                self._buffered_body(events)
            if self._state == _DONE:
                self._check_early()
        elif state == _BODY:
            self._buffered_body(events)
        elif state == _DONE:
            self._check_early()
        return events

    def _fail(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        super()._fail(exc)
        # An error response may still go out (then the connection closes).
        if self._send == _S_WAIT:
            self._send = _S_RESPOND
        self._req_persist = False
        return exc

    def receive_eof(self) -> list[Event]:
        """The peer closed (or half-closed): ``ConnectionClosed`` between
        requests or after a complete one, else a truncation error."""
        events = self._eof_events("request")
        self._req_persist = False
        return events

    # ------------------------------------------------------------- sending

    def send_response(self, resp: Response) -> None:
        """Queue a final response head; framing and persistence are settled here.

        Without Content-Length or Transfer-Encoding the body is chunked for
        an HTTP/1.1 client, close-delimited for an HTTP/1.0 one.  ``Connection:
        close`` is added whenever the connection will not persist.
        """
        if self._send != _S_RESPOND:
            raise LocalProtocolError("no request is waiting for a response")
        if resp.status < 200:
            raise LocalProtocolError("informational responses are not supported")
        headers = resp.headers
        chunked = "transfer-encoding" in headers
        if chunked and headers.tokens("transfer-encoding") != ["chunked"]:
            raise LocalProtocolError("only chunked Transfer-Encoding can be sent")
        length_text = headers.get("content-length")
        length: int | None = None
        if length_text is not None:
            if chunked:
                raise LocalProtocolError("both Transfer-Encoding and Content-Length")
            if not length_text.isdigit():
                raise LocalProtocolError(f"bad Content-Length {length_text!r}")
            length = int(length_text)
        persist = self._req_persist and self._state != _ERROR and _persistent("1.1", headers)
        if self._method == "HEAD" or resp.status in NO_BODY_STATUSES:
            self._framing = "none"
        elif chunked and self._version == "1.1":
            self._framing = "chunked"
        elif length is not None:
            self._framing = "length"
            self._left = length
        elif self._version == "1.1":
            self._framing = "chunked"
            headers = headers.with_field("Transfer-Encoding", "chunked")
        else:
            # An HTTP/1.0 client cannot read chunks: the body ends at close.
            headers = headers.without("transfer-encoding")
            self._framing = "close"
            persist = False
        if not persist and "close" not in headers.tokens("connection"):
            headers = headers.with_field("Connection", "close")
        elif persist and self._version == "1.0":
            headers = headers.with_field("Connection", "keep-alive")
        self._resp_persist = persist
        self._out.append(encode_response_head(resp.status, resp.reason, headers, "1.1"))
        self._send = _S_BODY

    def send_data(self, data: bytes) -> None:
        """Queue body bytes (as the caller's buffer when no framing is needed)."""
        if self._send != _S_BODY:
            raise LocalProtocolError("no response body is being sent")
        if not data:
            return
        framing = self._framing
        if framing == "length":
            if len(data) > self._left:
                raise LocalProtocolError("body longer than its Content-Length")
            self._left -= len(data)
            self._out.append(data)
        elif framing == "chunked":
            self._out.extend(encode_chunk(data))
        elif framing == "close":
            self._out.append(data)
        else:
            raise LocalProtocolError("this response has no body")

    def send_end(self) -> None:
        """End the response body."""
        if self._send != _S_BODY:
            raise LocalProtocolError("no response body is being sent")
        if self._framing == "length" and self._left:
            raise LocalProtocolError(f"body {self._left} bytes short of its Content-Length")
        if self._framing == "chunked":
            self._out.append(LAST_CHUNK)
        self._send = _S_DONE

    def data_to_send(self) -> bytes:
        """Everything queued for the peer (empty when nothing is)."""
        out = self._out
        if not out:
            return b""
        if len(out) == 1:
            return out.pop()
        data = b"".join(out)
        out.clear()
        return data

    # ----------------------------------------------------------- lifecycle

    @property
    def keep_alive(self) -> bool:
        """May this connection carry another request after the current cycle?"""
        return self._req_persist and self._resp_persist and self._state not in (_ERROR, _EOF)

    @property
    def request_complete(self) -> bool:
        """Has the current request's body been read to its end?"""
        return self._state == _DONE

    @property
    def response_complete(self) -> bool:
        """Has the current response been ended with :meth:`send_end`?"""
        return self._send == _S_DONE

    def start_next_cycle(self) -> None:
        """Reset for the next request; only after a complete, persistent cycle.
        Bytes the client sent ahead are parsed by the next ``receive_data``."""
        if self._send != _S_DONE or self._state != _DONE or not self.keep_alive:
            raise LocalProtocolError("the connection cannot carry another request")
        self._state = _HEAD
        self._send = _S_WAIT
        self._method = "GET"
        self._version = "1.1"
        self._req_persist = True
        self._resp_persist = True
        self._framing = "none"
        self._left = 0
