"""Napster connections as sans-I/O state machines (napster.txt sections 2 and 5).

No I/O, no clock: a machine is fed the bytes that arrived and the time, and
returns events; it queues bytes to send, collected with ``data_to_send()``
(aioquic's shape, driven by :class:`peerlab.runtime.driver.StreamDriver`).
The codec is :mod:`peerlab.wire.napster`.

Public API (stable)
===================

Client to server (section 2)::

    SessionConfig(login_timeout=30.0)
    SessionState: AWAITING_LOGIN, LOGGING_IN, LOGGED_IN, CLOSED

    ClientSession(config=None)
        .login(msg: Login | NewUserLogin, now) -> None   # then wait for LoginAck / LoginError
        .send(msg: Message) -> None;  .send_many(msgs) -> None
        .receive_data(data, now) -> list[Event];  .receive_eof(now) -> list[Event]
        .data_to_send() -> bytes;  .next_deadline() -> float | None
        .handle_timeout(now) -> list[Event]
        .state, .nick, .pending_searches

    ServerSession(config=None, now=0.0)
        .receive_data / .receive_eof / .data_to_send / .next_deadline / .handle_timeout
        .accept_login(email: str) -> None    # answers the pending Login/NewUserLogin with 3
        .refuse_login(message: str) -> None  # answers with 0; the session is CLOSED
        .send(msg) / .send_many(msgs)        # send_many: one buffer for a result list
        .state, .login (the Login/NewUserLogin being or having been answered), .nick

    Events: every decoded wire message (a :class:`peerlab.wire.napster.Message`)
    is an event as it is; besides them:
        InvalidMessage(type, payload, reason)   # a frame whose payload did not parse
        LoginRequired(message)                  # server: a command before login
        LoginTimedOut()                         # no login / no answer in time
        ConnectionClosed()                      # the peer closed between frames

    A frame cut short at EOF or a frame header over the size bound raises
    RemoteProtocolError (the framing is lost); a payload that does not parse
    costs only that message (InvalidMessage), so the server can answer with a
    404 and count the offence.

Peer to peer (section 5)::

    TransferConfig(handshake_timeout=30.0, line_settle=0.0)
    IncomingTransfer(config=None, now=0.0)   # we accepted: sends "1", reads GET or SEND
        -> GetRequested(nick, filename, offset)  then .accept_get(size) / .refuse(text)
                                                 then .send_data(bytes) (or write directly)
        -> SendOffered(nick, filename, size)     then .accept_send(offset) -> list[Event]
                                                 ([TransferComplete()] if nothing is left)
                                                 or .refuse(text);
                                                 then Data(...) ... TransferComplete()
        .mode (b"GET" / b"SEND"), .request (the TransferLine)
    OutgoingGet(nick, filename, offset, config=None, now=0.0, expected_size=None)
        # we dialled the sharer: waits for "1", sends GET and the request line
        -> FileSize(size) Data(...) ... TransferComplete()  |  TransferRefused(text)
        .size (the sharer's answer)
    OutgoingSend(nick, filename, size, config=None, now=0.0)
        # firewalled sharer dialled the downloader: waits for "1", sends SEND and the offer
        -> OffsetRequested(offset) then .send_data(bytes)   |  TransferRefused(text)
    Every transfer machine: .receive_data(data, now), .receive_eof(now) (ends with
    ConnectionClosed()), .data_to_send(), .next_deadline(), .handle_timeout(now).
    A stalled handshake raises RemoteProtocolError from handle_timeout; file
    data beyond the announced size raises RemoteProtocolError.

A machine that dials out sends its keyword (GET or SEND) at once and its
line from ``handle_timeout`` at the same ``now`` (its ``next_deadline``), so
the driver writes them as two packets, as section 5 asks.

The request line and the offset reply are not terminated on the wire: a
Napster client sends each in one packet and reads it with one ``recv``.  A
machine therefore takes a line that is syntactically complete at the end of a
``receive_data`` call; with ``line_settle`` > 0 it waits that long for more
bytes first (useful when bytes may arrive split, and for byte-by-byte tests).
The size reply of a GET needs no such rule: the data's first byte ends it,
and ``expected_size`` (from the search result) settles a file that starts
with a digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.napster import (
    MAX_FILE_SIZE,
    MAX_INT_DIGITS,
    TRANSFER_GET,
    TRANSFER_READY,
    TRANSFER_SEND,
    FrameDecoder,
    Login,
    LoginAck,
    LoginError,
    Message,
    NewUserLogin,
    NickCheck,
    SearchEnd,
    SearchRequest,
    TransferLine,
    Unknown,
    decode,
    encode,
    parse_transfer_line,
)

__all__ = [
    "MAX_REFUSAL_BYTES",
    "MAX_PENDING_SEARCHES",
    "PRE_LOGIN_TYPES",
    "ClientSession",
    "ConnectionClosed",
    "Data",
    "Event",
    "FileSize",
    "GetRequested",
    "IncomingTransfer",
    "InvalidMessage",
    "LoginRequired",
    "LoginTimedOut",
    "OffsetRequested",
    "OutgoingGet",
    "OutgoingSend",
    "SendOffered",
    "ServerSession",
    "SessionConfig",
    "SessionState",
    "TransferComplete",
    "TransferConfig",
    "TransferRefused",
]

#: Longest error text a peer may send instead of a size or offset (section 5
#: names short ones like "FILE NOT SHARED"); more is garbage.
MAX_REFUSAL_BYTES = 256
#: Searches a client keeps count of before their 202s arrive.  A server answers
#: them in order, one 202 each; a client has no reason to have more in flight.
MAX_PENDING_SEARCHES = 64
#: Message types a client may send before its login is accepted (napster.txt:
#: 2 login, 6 new user login, 7 nick check; 4 version check and 920 are sent by
#: Windows clients before logging in).
PRE_LOGIN_TYPES = frozenset({2, 4, 6, 7, 920})


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """A frame arrived whose payload does not parse; the stream is intact."""

    type: int
    payload: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class LoginRequired:
    """Server side: the client sent ``message`` before its login was accepted."""

    message: Message


@dataclass(frozen=True, slots=True)
class LoginTimedOut:
    """No login (server side) or no answer to ours (client side) in time."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side cleanly (between frames / after the data)."""


@dataclass(frozen=True, slots=True)
class GetRequested:
    """A downloader asked for ``filename`` from ``offset`` (section 5.1)."""

    nick: str
    filename: str
    offset: int


@dataclass(frozen=True, slots=True)
class SendOffered:
    """A firewalled sharer offers ``filename`` of ``size`` bytes (section 5.2)."""

    nick: str
    filename: str
    size: int


@dataclass(frozen=True, slots=True)
class FileSize:
    """The sharer answered a GET with the file's size; data follows."""

    size: int


@dataclass(frozen=True, slots=True)
class OffsetRequested:
    """The downloader answered our SEND: send the file from ``offset``."""

    offset: int


@dataclass(frozen=True, slots=True)
class TransferRefused:
    """The peer answered with an error text such as "FILE NOT SHARED"."""

    reason: str


@dataclass(frozen=True, slots=True)
class Data:
    """File bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """Every byte from the offset to the end of the file has arrived."""


Event = (
    Message
    | InvalidMessage
    | LoginRequired
    | LoginTimedOut
    | ConnectionClosed
    | GetRequested
    | SendOffered
    | FileSize
    | OffsetRequested
    | TransferRefused
    | Data
    | TransferComplete
)

_CLOSED = ConnectionClosed()
_TIMED_OUT = LoginTimedOut()
_COMPLETE = TransferComplete()


# ------------------------------------------------------------------ sessions


class SessionState(Enum):
    """Login state of a client-server connection."""

    AWAITING_LOGIN = "AWAITING_LOGIN"  # nothing sent (client) / no login yet (server)
    LOGGING_IN = "LOGGING_IN"  # a login is on its way to be answered
    LOGGED_IN = "LOGGED_IN"
    CLOSED = "CLOSED"  # refused, timed out or the peer closed


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Settings of a client-server session."""

    #: Seconds a server waits for a client's login, and a client for the
    #: answer to its login, before LoginTimedOut.  OpenNap's default
    #: login_timeout is 60 s; a client that fails over wants less.
    login_timeout: float = 30.0


class _Session:
    """What both ends share: framing, output buffer, login deadline."""

    __slots__ = ("config", "state", "nick", "_decoder", "_out", "_deadline")

    def __init__(self, config: SessionConfig | None) -> None:
        self.config = config or SessionConfig()
        self.state = SessionState.AWAITING_LOGIN
        self.nick: str | None = None
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []
        self._deadline: float | None = None

    def send(self, msg: Message) -> None:
        """Queue ``msg`` (LocalProtocolError if it may not be sent now)."""
        data = encode(msg)
        self._check_send(msg)
        self._out.append(data)

    def send_many(self, msgs: Iterable[Message]) -> None:
        """Queue several messages at once (a result list and its end marker)."""
        for msg in msgs:
            data = encode(msg)
            self._check_send(msg)
            self._out.append(data)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def next_deadline(self) -> float | None:
        return self._deadline

    def handle_timeout(self, now: float) -> list[Event]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state in (SessionState.AWAITING_LOGIN, SessionState.LOGGING_IN):
            self.state = SessionState.CLOSED
            return [_TIMED_OUT]
        return []

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; return the events they complete."""
        if self.state is SessionState.CLOSED:
            return []
        events: list[Event] = []
        for mtype, payload in self._decoder.feed(data):
            try:
                msg = decode(mtype, payload)
            except RemoteProtocolError as exc:
                events.append(InvalidMessage(mtype, payload, str(exc)))
                continue
            self._received(msg, payload, events)
            if self._is_closed():
                break
        return events

    def _is_closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def receive_eof(self, now: float) -> list[Event]:
        """The peer closed: ConnectionClosed, or RemoteProtocolError if it cut a frame."""
        state, self.state = self.state, SessionState.CLOSED
        self._deadline = None
        if state is not SessionState.CLOSED:
            self._decoder.check_eof()
        return [_CLOSED]

    def _check_send(self, msg: Message) -> None:
        if self.state is SessionState.CLOSED:
            raise LocalProtocolError("napster session is closed")

    def _received(self, msg: Message, payload: bytes, events: list[Event]) -> None:
        events.append(msg)


class ClientSession(_Session):
    """A client's connection to a Napster server (napster.txt section 2).

    Call :meth:`login` first; the server's 3 (LoginAck) moves the session to
    LOGGED_IN, its 0 (LoginError) to CLOSED.  Before that only the pre-login
    messages (nick check, version check) may be sent.  ``pending_searches``
    counts 200s sent whose 202 has not arrived (bounded by
    :data:`MAX_PENDING_SEARCHES`).
    """

    __slots__ = ("pending_searches",)

    def __init__(self, config: SessionConfig | None = None) -> None:
        super().__init__(config)
        self.pending_searches = 0

    def login(self, msg: Login | NewUserLogin, now: float) -> None:
        """Send a 2 (or 6 for a new nick) and wait for the answer."""
        if self.state is not SessionState.AWAITING_LOGIN:
            raise LocalProtocolError(f"cannot log in from state {self.state.value}")
        self._out.append(encode(msg))
        self.nick = msg.nick
        self.state = SessionState.LOGGING_IN
        self._deadline = now + self.config.login_timeout

    def _check_send(self, msg: Message) -> None:
        super()._check_send(msg)
        if isinstance(msg, Login | NewUserLogin):
            raise LocalProtocolError("use ClientSession.login() to log in")
        if self.state is not SessionState.LOGGED_IN:
            mtype = msg.type if isinstance(msg, Unknown) else msg.TYPE
            if mtype not in PRE_LOGIN_TYPES:
                raise LocalProtocolError(f"napster message {mtype} before login")
        if isinstance(msg, SearchRequest):
            if self.pending_searches >= MAX_PENDING_SEARCHES:
                raise LocalProtocolError("too many napster searches in flight")
            self.pending_searches += 1

    def _received(self, msg: Message, payload: bytes, events: list[Event]) -> None:
        if self.state is SessionState.LOGGING_IN:
            if isinstance(msg, LoginAck):
                self.state = SessionState.LOGGED_IN
                self._deadline = None
            elif isinstance(msg, LoginError):
                self.state = SessionState.CLOSED
                self._deadline = None
        elif isinstance(msg, SearchEnd) and self.pending_searches:
            self.pending_searches -= 1
        events.append(msg)


class ServerSession(_Session):
    """A server's side of one client connection (napster.txt section 2).

    A Login or NewUserLogin arrives as an event and moves the session to
    LOGGING_IN; the server checks it and calls :meth:`accept_login` or
    :meth:`refuse_login`.  Messages before an accepted login other than the
    pre-login ones arrive wrapped in :class:`LoginRequired`; a second login
    arrives as :class:`InvalidMessage`.  ``LoginTimedOut`` follows when no
    login arrives within ``login_timeout`` of ``now`` at construction.
    """

    __slots__ = ("login",)

    def __init__(self, config: SessionConfig | None = None, now: float = 0.0) -> None:
        super().__init__(config)
        self.login: Login | NewUserLogin | None = None
        self._deadline = now + self.config.login_timeout

    def accept_login(self, email: str) -> None:
        """Answer the pending login with 3 (LoginAck); the session is LOGGED_IN."""
        if self.state is not SessionState.LOGGING_IN or self.login is None:
            raise LocalProtocolError("no napster login to accept")
        self._out.append(encode(LoginAck(email)))
        self.state = SessionState.LOGGED_IN
        self.nick = self.login.nick
        self._deadline = None

    def refuse_login(self, message: str) -> None:
        """Answer the login (or a command before it) with 0; the session is CLOSED.

        Close the connection after sending what is queued.
        """
        if self.state in (SessionState.LOGGED_IN, SessionState.CLOSED):
            raise LocalProtocolError(f"cannot refuse a login in state {self.state.value}")
        self._out.append(encode(LoginError(message)))
        self.state = SessionState.CLOSED
        self._deadline = None

    def _received(self, msg: Message, payload: bytes, events: list[Event]) -> None:
        if isinstance(msg, Login | NewUserLogin):
            if self.state is SessionState.AWAITING_LOGIN:
                self.login = msg
                self.state = SessionState.LOGGING_IN
                events.append(msg)
            else:
                events.append(InvalidMessage(msg.TYPE, payload, "napster login already sent"))
            return
        if self.state is not SessionState.LOGGED_IN:
            mtype = msg.type if isinstance(msg, Unknown) else msg.TYPE
            if mtype not in PRE_LOGIN_TYPES or not isinstance(msg, NickCheck | Unknown):
                events.append(LoginRequired(msg))
                return
        events.append(msg)


# ------------------------------------------------------------------ peer transfers


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Settings of a peer-to-peer transfer handshake (napster.txt section 5)."""

    #: Seconds from connect to the end of the handshake (the "1", the request
    #: or offer line and its answer) before the peer counts as stalled.
    handshake_timeout: float = 30.0
    #: Seconds to wait after a syntactically complete request line or offset
    #: reply for more digits; 0 takes it at the end of the receive call, as
    #: Napster clients do (one packet, one recv).
    line_settle: float = 0.0


class _Transfer:
    """Shared parts: output queue, handshake deadline, line settling, data counting."""

    __slots__ = (
        "config",
        "_buf",
        "_out",
        "_deadline",
        "_settle_at",
        "_held",
        "_release_at",
        "_remaining",
        "_done",
        "_closed",
    )

    def __init__(self, config: TransferConfig | None, now: float) -> None:
        self.config = config or TransferConfig()
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._deadline: float | None = now + self.config.handshake_timeout
        self._settle_at: float | None = None
        self._held: bytes | None = None  # a line waiting for its own packet
        self._release_at: float | None = None
        self._remaining: int | None = None  # file bytes still expected (receiving side)
        self._done = False
        self._closed = False

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def send_data(self, data: bytes) -> None:
        """Queue file bytes (after the handshake gave the go-ahead)."""
        if not self._may_send_data():
            raise LocalProtocolError("napster transfer: no go-ahead to send file data yet")
        if data:
            self._out.append(bytes(data))

    def next_deadline(self) -> float | None:
        times = [t for t in (self._release_at, self._settle_at, self._deadline) if t is not None]
        return min(times) if times else None

    def handle_timeout(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self._release_at is not None and now >= self._release_at:
            self._release_at = None
            if self._held is not None:
                self._out.append(self._held)
                self._held = None
        if self._settle_at is not None and now >= self._settle_at:
            self._settle_at = None
            self._advance(events, now, settled=True)
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            raise RemoteProtocolError("napster transfer handshake timed out")
        return events

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self._closed:
            return []
        events: list[Event] = []
        if self._remaining is not None and not self._buf:
            self._file_data(data, events)
            return events
        self._buf += data
        self._advance(events, now, settled=False)
        return events

    def receive_eof(self, now: float) -> list[Event]:
        self._closed = True
        self._deadline = None
        self._settle_at = None
        events: list[Event] = []
        self._at_eof(events)
        events.append(_CLOSED)
        return events

    # -- helpers for subclasses

    def _line_ready(self, now: float, settled: bool) -> bool:
        """May a syntactically complete line be taken now?"""
        settle = self.config.line_settle
        if settle <= 0 or settled:
            return True
        self._settle_at = now + settle
        return False

    def _file_data(self, data: bytes, events: list[Event]) -> None:
        remaining = self._remaining
        if remaining is None or not data:
            return
        if len(data) > remaining:
            raise RemoteProtocolError("napster transfer: more file data than the file holds")
        self._remaining = remaining - len(data)
        events.append(Data(bytes(data)))
        if self._remaining == 0:
            self._done = True
            self._deadline = None
            events.append(_COMPLETE)

    def _keyword_then_line(self, keyword: bytes, line: bytes, now: float) -> None:
        """Queue ``keyword`` now and ``line`` at the next timer turn, so they
        leave in two packets as section 5 asks ("GET" / "SEND" "in a single
        packet, then" the line)."""
        self._out.append(keyword)
        self._held = line
        self._release_at = now

    def _start_receiving(self, remaining: int, events: list[Event]) -> None:
        self._remaining = remaining
        self._deadline = None
        if remaining == 0:
            self._done = True
            events.append(_COMPLETE)

    def _refusal(self, events: list[Event], now: float, settled: bool, eof: bool = False) -> bool:
        """Take the error text in the buffer once its packet ended; True when taken."""
        text = bytes(self._buf)
        if len(text) > MAX_REFUSAL_BYTES:
            raise RemoteProtocolError("napster transfer: refusal text too long")
        if not eof and not self._line_ready(now, settled):
            return False
        self._settle_at = None
        stripped = text.strip(b"\r\n ")
        if not stripped or any(b < 0x20 or b == 0x7F for b in stripped):
            raise RemoteProtocolError(f"napster transfer: garbage reply {text[:80]!r}")
        self._buf.clear()
        self._deadline = None
        events.append(TransferRefused(stripped.decode("latin-1")))
        return True

    # -- to override

    def _advance(self, events: list[Event], now: float, settled: bool) -> None:
        raise LocalProtocolError(f"{type(self).__name__} does not parse input")

    def _at_eof(self, events: list[Event]) -> None:
        return

    def _may_send_data(self) -> bool:
        return False


def _digits(buf: bytearray | bytes) -> int:
    """Leading ASCII digits in ``buf``."""
    n = 0
    for b in buf:
        if 0x30 <= b <= 0x39:
            n += 1
        else:
            break
    return n


class IncomingTransfer(_Transfer):
    """We accepted a connection on our data port (sections 5.1 and 5.2).

    Sends "1" at once, then reads the peer's GET (a download from us:
    :class:`GetRequested`, answer with :meth:`accept_get` or :meth:`refuse`)
    or SEND (a firewalled sharer pushing to us: :class:`SendOffered`, answer
    with :meth:`accept_send` or :meth:`refuse`).
    """

    __slots__ = ("mode", "request", "_phase")

    def __init__(self, config: TransferConfig | None = None, now: float = 0.0) -> None:
        super().__init__(config, now)
        self.mode: bytes | None = None  # TRANSFER_GET or TRANSFER_SEND
        self.request: TransferLine | None = None
        self._phase = "keyword"  # keyword -> line -> decide -> data | done
        self._out.append(TRANSFER_READY)

    def accept_get(self, size: int) -> None:
        """Answer a GET with the file's size; then send the file from the offset."""
        if self._phase != "decide" or self.mode != TRANSFER_GET:
            raise LocalProtocolError("no napster GET to accept")
        if not 0 <= size <= MAX_FILE_SIZE:
            raise LocalProtocolError(f"napster file size {size} out of range")
        self._out.append(str(size).encode("ascii"))
        self._phase = "data"
        self._deadline = None

    def accept_send(self, offset: int) -> list[Event]:
        """Answer a SEND with the offset to start at; file data follows.

        Returns ``[TransferComplete()]`` when nothing is left to receive (the
        offset is the file's size), else ``[]``.
        """
        if self._phase != "decide" or self.mode != TRANSFER_SEND or self.request is None:
            raise LocalProtocolError("no napster SEND to accept")
        if not 0 <= offset <= self.request.number:
            raise LocalProtocolError(f"napster offset {offset} outside the file")
        self._out.append(str(offset).encode("ascii"))
        self._phase = "data"
        events: list[Event] = []
        self._start_receiving(self.request.number - offset, events)
        return events

    def refuse(self, reason: str) -> None:
        """Answer with an error text ("FILE NOT SHARED", "INVALID REQUEST"...); then close."""
        if self._phase != "decide":
            raise LocalProtocolError("nothing to refuse")
        data = reason.encode("latin-1", "replace")
        if not data or len(data) > MAX_REFUSAL_BYTES:
            raise LocalProtocolError("bad napster refusal text")
        self._out.append(data)
        self._phase = "done"
        self._deadline = None

    def _may_send_data(self) -> bool:
        return self._phase == "data" and self.mode == TRANSFER_GET

    def _advance(self, events: list[Event], now: float, settled: bool) -> None:
        buf = self._buf
        if self._phase == "keyword":
            for keyword in (TRANSFER_GET, TRANSFER_SEND):
                if buf.startswith(keyword):
                    self.mode = keyword
                    del buf[: len(keyword)]
                    while buf and buf[0] in (0x20, 0x0D, 0x0A):
                        del buf[:1]
                    self._phase = "line"
                    break
            else:
                if not (TRANSFER_GET.startswith(buf) or TRANSFER_SEND.startswith(buf)):
                    raise RemoteProtocolError(
                        f"napster transfer: expected GET or SEND, got {bytes(buf[:16])!r}"
                    )
                return
        if self._phase == "line":
            line = parse_transfer_line(bytes(buf))
            if line is None or not self._line_ready(now, settled):
                return
            self._settle_at = None
            buf.clear()
            self.request = line
            self._phase = "decide"
            if self.mode == TRANSFER_GET:
                events.append(GetRequested(line.nick, line.filename, line.number))
            else:
                events.append(SendOffered(line.nick, line.filename, line.number))
            return
        if buf:
            # Nobody speaks before our answer; a downloader never sends data.
            raise RemoteProtocolError(
                f"napster transfer: unexpected bytes from the peer {bytes(buf[:16])!r}"
            )


class OutgoingGet(_Transfer):
    """We connected to the sharer's data port to download (section 5.1).

    Waits for "1", sends ``GET`` and ``<nick> "<filename>" <offset>``; the
    answer is :class:`FileSize` followed by :class:`Data` and
    :class:`TransferComplete`, or :class:`TransferRefused`.  The sharer sends
    the whole file's size; ``size - offset`` bytes follow.  With
    ``expected_size`` (from the search result), a file whose first byte is a
    digit is told apart from the size without waiting.
    """

    __slots__ = ("nick", "filename", "offset", "expected_size", "size", "_line", "_phase")

    def __init__(
        self,
        nick: str,
        filename: str,
        offset: int,
        config: TransferConfig | None = None,
        now: float = 0.0,
        expected_size: int | None = None,
    ) -> None:
        super().__init__(config, now)
        self.nick = nick
        self.filename = filename
        self.offset = offset
        self.expected_size = expected_size
        self.size: int | None = None
        self._line = TransferLine(nick, filename, offset).to_bytes()
        self._phase = "ready"  # ready -> reply -> data -> done

    def _advance(self, events: list[Event], now: float, settled: bool) -> None:
        buf = self._buf
        if self._phase == "ready":
            if not buf:
                return
            if buf[:1] != TRANSFER_READY:
                raise RemoteProtocolError(
                    f"napster transfer: expected '1', got {bytes(buf[:16])!r}"
                )
            del buf[:1]
            self._keyword_then_line(TRANSFER_GET, self._line, now)
            self._phase = "reply"
        if self._phase == "reply":
            self._reply(events, now, settled, eof=False)
        elif self._phase == "done":
            buf.clear()

    def _reply(self, events: list[Event], now: float, settled: bool, eof: bool) -> None:
        buf = self._buf
        if not buf:
            return
        if not 0x30 <= buf[0] <= 0x39:
            if self._refusal(events, now, settled, eof):
                self._phase = "done"
            return
        n = _digits(buf)
        expected = self.expected_size
        want = str(expected).encode("ascii") if expected is not None else None
        if want is not None and n > len(want) and buf.startswith(want):
            n = len(want)  # the file itself starts with digits
        elif n == len(buf) and not eof:
            # Only digits so far: the size may go on, unless it is the one expected.
            if want is None or bytes(buf) != want:
                if n > MAX_INT_DIGITS:
                    raise RemoteProtocolError("napster transfer: size reply too long")
                return
        if n > MAX_INT_DIGITS:
            raise RemoteProtocolError("napster transfer: size reply too long")
        size = int(buf[:n])
        if size < self.offset:
            raise RemoteProtocolError(
                f"napster transfer: file of {size} bytes, asked from {self.offset}"
            )
        del buf[:n]
        self.size = size
        self._phase = "data"
        events.append(FileSize(size))
        self._start_receiving(size - self.offset, events)
        if buf:
            rest = bytes(buf)
            buf.clear()
            self._file_data(rest, events)

    def _at_eof(self, events: list[Event]) -> None:
        if self._phase == "reply" and self._buf:
            self._reply(events, 0.0, True, eof=True)


class OutgoingSend(_Transfer):
    """We are firewalled and connected to the downloader after a 501 (section 5.2).

    Waits for "1", sends ``SEND`` and ``<nick> "<filename>" <size>``; the
    answer is :class:`OffsetRequested` (then :meth:`send_data` the file from
    that offset) or :class:`TransferRefused`.
    """

    __slots__ = ("nick", "filename", "size", "offset", "_line", "_phase")

    def __init__(
        self,
        nick: str,
        filename: str,
        size: int,
        config: TransferConfig | None = None,
        now: float = 0.0,
    ) -> None:
        super().__init__(config, now)
        self.nick = nick
        self.filename = filename
        self.size = size
        self.offset: int | None = None
        self._line = TransferLine(nick, filename, size).to_bytes()
        self._phase = "ready"  # ready -> reply -> data | done

    def _may_send_data(self) -> bool:
        return self._phase == "data"

    def _advance(self, events: list[Event], now: float, settled: bool) -> None:
        buf = self._buf
        if self._phase == "ready":
            if not buf:
                return
            if buf[:1] != TRANSFER_READY:
                raise RemoteProtocolError(
                    f"napster transfer: expected '1', got {bytes(buf[:16])!r}"
                )
            del buf[:1]
            self._keyword_then_line(TRANSFER_SEND, self._line, now)
            self._phase = "reply"
        if self._phase == "reply" and buf:
            if 0x30 <= buf[0] <= 0x39:
                n = _digits(buf)
                if n > MAX_INT_DIGITS:
                    raise RemoteProtocolError("napster transfer: offset reply too long")
                tail = bytes(buf[n:]).strip(b"\r\n")
                if tail:
                    raise RemoteProtocolError("napster transfer: junk after the offset")
                if not self._line_ready(now, settled):
                    return
                self._settle_at = None
                offset = int(buf[:n])
                if offset > self.size:
                    raise RemoteProtocolError(
                        f"napster transfer: offset {offset} beyond the {self.size}-byte file"
                    )
                buf.clear()
                self.offset = offset
                self._phase = "data"
                self._deadline = None
                events.append(OffsetRequested(offset))
            elif self._refusal(events, now, settled):
                self._phase = "done"
            return
        if self._phase == "done":
            buf.clear()
        elif self._phase == "data" and buf:
            raise RemoteProtocolError("napster transfer: the downloader sent data")

    def _at_eof(self, events: list[Event]) -> None:
        if self._phase == "reply" and self._buf:
            if self._refusal(events, 0.0, True, eof=True):
                self._phase = "done"
