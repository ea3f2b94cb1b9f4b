"""A Gnutella 0.6 connection as a sans-I/O state machine.

No I/O, no clock: the machine is fed the bytes that arrived and the current
time, returns events, and queues the bytes to send (``data_to_send()``).
Timers are asked for with ``next_deadline()`` and fired with
``handle_timeout(now)`` (aioquic's shape), so
:class:`~peerlab.runtime.driver.StreamDriver` runs it unchanged on real
sockets and in the simulator.

The handshake (``handshaking_0.6`` section 3) and then the descriptor stream,
one table for both roles::

    state           input                       next state    event / output
    -------------   -------------------------   -----------   ------------------------------
    (outgoing)      constructed                 AWAIT_REPLY   CONNECT block queued
    AWAIT_REPLY     peer status 200             DECIDE        HandshakeResponse
    AWAIT_REPLY     peer status != 200          CLOSED        HandshakeRejected
    DECIDE(out)     accept(headers)             OPEN          final 200 queued
    (incoming)      constructed                 AWAIT_CONNECT
    AWAIT_CONNECT   peer CONNECT block          DECIDE        ConnectRequest
    DECIDE(in)      accept(headers)             AWAIT_FINAL   our 200 queued
    AWAIT_FINAL     peer status 200             OPEN          HandshakeComplete
    AWAIT_FINAL     peer status != 200          CLOSED        HandshakeRejected
    DECIDE          reject(code, reason, hdrs)  CLOSED        refusal queued
    OPEN            a descriptor                OPEN          DescriptorReceived / BadDescriptor
    OPEN            a Bye (TTL 1, hops 0)       CLOSED        DescriptorReceived(Bye)
    OPEN            send_bye(code, reason)      CLOSED        Bye queued
    any             EOF                         CLOSED        ConnectionClosed
    before OPEN     handshake deadline passes   ERROR         RemoteProtocolError (code 408)
    OPEN            idle for idle_timeout       OPEN          IdleTimeout

Rules it enforces:

- The whole handshake must finish within ``handshake_timeout`` of the
  machine's creation (slow handshakes are how slowloris holds a slot).
  Handshake blocks are bounded (:mod:`peerlab.wire.handshake`).
- Compression (``compression`` section 3): we may announce
  ``Content-Encoding: deflate`` only when the peer sent ``Accept-Encoding:
  deflate``; the peer's ``Content-Encoding: deflate`` is honoured only when
  we accepted it.  Our stream is compressed from the byte after our last
  handshake block, the peer's from the byte after its last one; a link's
  inflation is bounded (:class:`~peerlab.wire.gnutella.LinkInflater`).
- A descriptor longer than ``max_payload`` costs the connection
  (RemoteProtocolError, code 400); a descriptor whose payload does not
  decode costs only itself (a :class:`BadDescriptor` event).
- After a Bye (received or sent) nothing more is read or sent ("stop
  processing of any other received packet", ``bye`` section 4).

Garbage from the peer raises :class:`~peerlab.errors.RemoteProtocolError`
and leaves the machine in ERROR, where every further ``receive_data``
raises again; misuse by the caller raises
:class:`~peerlab.errors.LocalProtocolError`.

Public API: :class:`GnutellaConnection` (``outgoing_connection()``,
``incoming_connection()``,
``receive_data``, ``receive_eof``, ``accept``, ``reject``, ``send``,
``send_descriptor``, ``send_bye``, ``data_to_send``, ``next_deadline``,
``handle_timeout``), :class:`ConnectionConfig`, :class:`Negotiation`,
:class:`State`, and the events :class:`ConnectRequest`,
:class:`HandshakeResponse`, :class:`HandshakeRejected`,
:class:`HandshakeComplete`, :class:`DescriptorReceived`,
:class:`BadDescriptor`, :class:`IdleTimeout`, :class:`ConnectionClosed`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.gnutella import (
    BYE,
    DEFAULT_INFLATE_SLACK,
    DEFAULT_MAX_INFLATE_RATIO,
    DEFAULT_MAX_PAYLOAD,
    Bye,
    DescriptorDecoder,
    Header,
    LinkDeflater,
    LinkInflater,
    Message,
    decode_payload,
    encode_payload,
    frame,
    message_type,
)
from peerlab.wire.handshake import (
    DEFLATE,
    MAX_HANDSHAKE_BYTES,
    HandshakeBlock,
    HandshakeReader,
    Headers,
    accept_encodings,
    content_encoding,
    encode_connect,
    encode_status,
    is_ultrapeer,
    user_agent,
)

__all__ = [
    "BadDescriptor",
    "ConnectRequest",
    "ConnectionClosed",
    "ConnectionConfig",
    "DescriptorReceived",
    "Event",
    "GnutellaConnection",
    "HandshakeComplete",
    "HandshakeRejected",
    "HandshakeResponse",
    "Headers",
    "IdleTimeout",
    "Negotiation",
    "State",
]


# ------------------------------------------------------------------ config


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Settings of one Gnutella connection, with their reasons."""

    #: Seconds from creation by which the three-step handshake must be done.
    #: gtk-gnutella allows connecting nodes about half a minute; a peer that
    #: is slower is either broken or holding our slot on purpose.
    handshake_timeout: float = 30.0
    #: Seconds without any received byte after which an :class:`IdleTimeout`
    #: event fires (again every period while the silence lasts).  ``None``:
    #: the servent keeps its own liveness policy (pings, Bye 405).
    idle_timeout: float | None = None
    #: Largest descriptor payload accepted (see ``DEFAULT_MAX_PAYLOAD``).
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Largest handshake block accepted.
    max_handshake_bytes: int = MAX_HANDSHAKE_BYTES
    #: Bounds of inflation on a compressed link (see ``LinkInflater``).
    max_inflate_ratio: int = DEFAULT_MAX_INFLATE_RATIO
    inflate_slack: int = DEFAULT_INFLATE_SLACK
    #: zlib level for our compressed stream ("level (6) was optimal").
    deflate_level: int = 6
    #: Decode payloads into messages; ``False`` hands over raw payloads only
    #: (a pure router that never looks inside).
    decode_payloads: bool = True


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Negotiation:
    """What the handshake settled.  ``local_headers`` and ``remote_headers``
    merge each side's blocks (a later block's value of a header replaces the
    earlier one: a client's final ``X-Ultrapeer: False`` answering leaf
    guidance wins over its CONNECT's ``True``)."""

    outgoing: bool
    version: str
    local_headers: Headers
    remote_headers: Headers
    deflate_in: bool
    deflate_out: bool

    @property
    def remote_ultrapeer(self) -> bool | None:
        return is_ultrapeer(self.remote_headers)

    @property
    def local_ultrapeer(self) -> bool | None:
        return is_ultrapeer(self.local_headers)

    @property
    def remote_user_agent(self) -> str | None:
        return user_agent(self.remote_headers)


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """Incoming: the peer's ``GNUTELLA CONNECT``; answer with ``accept`` or ``reject``."""

    version: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """Outgoing: the peer accepted (status 200); finish with ``accept`` or ``reject``."""

    version: str
    reason: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class HandshakeRejected:
    """The peer refused the connection (any status but 200), e.g. 503 with
    ``X-Try-Ultrapeers`` to go elsewhere."""

    code: int
    reason: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """Incoming: the peer's final 200 arrived; descriptors flow from now on."""

    negotiation: Negotiation


@dataclass(frozen=True, slots=True)
class DescriptorReceived:
    """A descriptor: its header as received, its raw payload (forward it as
    is) and, when payloads are decoded, the message."""

    header: Header
    payload: bytes
    message: Message | None


@dataclass(frozen=True, slots=True)
class BadDescriptor:
    """A well-framed descriptor whose payload is garbage: drop it, count it,
    the connection lives on."""

    header: Header
    payload: bytes
    error: str


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """Nothing arrived for ``idle_for`` seconds."""

    idle_for: float


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its sending side."""


Event = (
    ConnectRequest
    | HandshakeResponse
    | HandshakeRejected
    | HandshakeComplete
    | DescriptorReceived
    | BadDescriptor
    | IdleTimeout
    | ConnectionClosed
)


class State(enum.Enum):
    AWAIT_CONNECT = "AWAIT_CONNECT"
    AWAIT_REPLY = "AWAIT_REPLY"
    DECIDE = "DECIDE"
    AWAIT_FINAL = "AWAIT_FINAL"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


_HANDSHAKING = frozenset({State.AWAIT_CONNECT, State.AWAIT_REPLY, State.DECIDE, State.AWAIT_FINAL})


def _merge(first: Headers, later: Headers) -> Headers:
    names = {n.lower() for n, _ in later}
    return Headers([p for p in first if p[0].lower() not in names] + list(later.pairs))


# ----------------------------------------------------------------- machine


class GnutellaConnection:
    """One Gnutella connection; see the module docstring for the state table."""

    def __init__(
        self,
        *,
        outgoing: bool,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
        config: ConnectionConfig | None = None,
    ) -> None:
        self.config = config or ConnectionConfig()
        self.outgoing = outgoing
        self.state = State.AWAIT_REPLY if outgoing else State.AWAIT_CONNECT
        self.negotiation: Negotiation | None = None
        self._deadline = now + self.config.handshake_timeout
        self._last_rx = now
        self._error: RemoteProtocolError | None = None
        self._reader = HandshakeReader(self.config.max_handshake_bytes)
        self._pending = b""  # raw bytes received while waiting for the app
        self._out = bytearray()
        self._deflater: LinkDeflater | None = None
        self._deflate_dirty = False
        self._inflater: LinkInflater | None = None
        self._decoder = DescriptorDecoder(self.config.max_payload)
        self._local_first = Headers()  # our CONNECT (outgoing) or response (incoming)
        self._remote_first = Headers()  # the peer's CONNECT (incoming) or response (outgoing)
        self._version = "0.6"
        #: Raw bytes in and out (on the wire, compressed or not).
        self.bytes_received = 0
        self.bytes_sent = 0
        if outgoing:
            self._local_first = Headers(headers)
            self._out += encode_connect(self._local_first)

    @classmethod
    def outgoing_connection(
        cls,
        headers: Iterable[tuple[str, str]],
        *,
        now: float,
        config: ConnectionConfig | None = None,
    ) -> GnutellaConnection:
        """We connected: the CONNECT block with ``headers`` is queued at once."""
        return cls(outgoing=True, now=now, headers=headers, config=config)

    @classmethod
    def incoming_connection(
        cls, *, now: float, config: ConnectionConfig | None = None
    ) -> GnutellaConnection:
        """The peer connected: we wait for its CONNECT block."""
        return cls(outgoing=False, now=now, config=config)

    # -- properties

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    @property
    def deflate_in(self) -> bool:
        return self._inflater is not None

    @property
    def deflate_out(self) -> bool:
        return self._deflater is not None

    # -- receiving

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed received bytes; returns the events they complete.

        Bytes that arrive while the machine waits for ``accept``/``reject``
        are kept and processed by the next call (``receive_data(b"", now)``
        processes them without new input)."""
        if self.state is State.ERROR:
            assert self._error is not None
            raise self._error
        if data:
            self._last_rx = now
            self.bytes_received += len(data)
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        buf = self._pending + bytes(data)
        self._pending = b""
        try:
            while True:
                state = self.state
                if state is State.OPEN:
                    self._receive_stream(buf, events)
                    break
                if state is State.DECIDE:
                    self._hold(buf)
                    break
                if state not in _HANDSHAKING:
                    break
                block, buf = self._reader.feed(buf)
                if block is None:
                    break
                self._on_block(block, events)
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise
        return events

    def receive_eof(self, now: float) -> list[Event]:
        """The peer closed its side."""
        if self.state is State.ERROR:
            assert self._error is not None
            raise self._error
        self.state = State.CLOSED
        return [ConnectionClosed()]

    def _fail(self, exc: RemoteProtocolError) -> None:
        self.state = State.ERROR
        self._error = exc
        self._pending = b""

    def _hold(self, buf: bytes) -> None:
        if not buf:
            return
        self._pending += buf
        if len(self._pending) > self.config.max_handshake_bytes:
            raise RemoteProtocolError("peer sent too much before the handshake ended", 400)

    def _on_block(self, block: HandshakeBlock, events: list[Event]) -> None:
        state = self.state
        if state is State.AWAIT_CONNECT:
            if not block.is_connect:
                raise RemoteProtocolError("expected GNUTELLA CONNECT", 400)
            self._remote_first = block.headers
            self._version = block.version
            self.state = State.DECIDE
            events.append(ConnectRequest(block.version, block.headers))
            return
        if block.is_connect:
            raise RemoteProtocolError("unexpected GNUTELLA CONNECT", 400)
        assert block.code is not None
        if block.code != 200:
            self.state = State.CLOSED
            events.append(HandshakeRejected(block.code, block.reason, block.headers))
            return
        if state is State.AWAIT_REPLY:
            self._check_peer_encoding(block.headers, self._local_first)
            self._remote_first = block.headers
            self._version = block.version
            self.state = State.DECIDE
            events.append(HandshakeResponse(block.version, block.reason, block.headers))
            return
        # AWAIT_FINAL (incoming): the peer's final 200; the stream starts.
        self._check_peer_encoding(block.headers, self._local_first)
        if content_encoding(block.headers) == DEFLATE:
            self._inflater = self._make_inflater()
        self.negotiation = Negotiation(
            outgoing=False,
            version=self._version,
            local_headers=self._local_first,
            remote_headers=_merge(self._remote_first, block.headers),
            deflate_in=self._inflater is not None,
            deflate_out=self._deflater is not None,
        )
        self.state = State.OPEN
        events.append(HandshakeComplete(self.negotiation))

    def _check_peer_encoding(self, peer: Headers, ours: Headers) -> None:
        """The peer's Content-Encoding must be one we offered to accept."""
        enc = content_encoding(peer)
        if enc is None:
            return
        if enc != DEFLATE:
            raise RemoteProtocolError(f"unsupported Content-Encoding {enc!r}", 415)
        if DEFLATE not in accept_encodings(ours):
            raise RemoteProtocolError("peer compresses though we did not accept deflate", 415)

    def _make_inflater(self) -> LinkInflater:
        return LinkInflater(
            max_ratio=self.config.max_inflate_ratio, slack=self.config.inflate_slack
        )

    def _receive_stream(self, data: bytes, events: list[Event]) -> None:
        if self._inflater is not None:
            data = self._inflater.decompress(data)
        decode = self.config.decode_payloads
        for header, payload in self._decoder.feed(data):
            if header.payload_type == BYE and (header.ttl != 1 or header.hops != 0):
                # "A Bye packet should have hop=0, TTL=1 upon reception, or it
                # should be immediately discarded as being incorrect."
                events.append(BadDescriptor(header, payload, "Bye with TTL/hops not 1/0"))
                continue
            message: Message | None = None
            if decode or header.payload_type == BYE:
                try:
                    message = decode_payload(header.payload_type, payload)
                except RemoteProtocolError as exc:
                    events.append(BadDescriptor(header, payload, str(exc)))
                    continue
            events.append(DescriptorReceived(header, payload, message if decode else None))
            if isinstance(message, Bye):
                self.state = State.CLOSED
                return

    # -- the application's decisions

    def accept(self, headers: Iterable[tuple[str, str]] = ()) -> Negotiation | None:
        """Accept the connection with ``headers``: incoming, our 200 response
        (the peer's final 200 completes it); outgoing, our final 200, after
        which the connection is open and its :class:`Negotiation` returned.

        Announce ``Content-Encoding: deflate`` to compress our stream; this
        needs the peer's ``Accept-Encoding: deflate``.
        """
        if self.state is not State.DECIDE:
            raise LocalProtocolError(f"accept() in state {self.state.name}")
        ours = Headers(headers)
        codings = [c for c in ours.tokens("content-encoding") if c != "identity"]
        if len(codings) > 1:
            raise LocalProtocolError(f"Content-Encoding must name one coding, not {codings}")
        enc = codings[0] if codings else None
        if enc is not None and (
            enc != DEFLATE or DEFLATE not in accept_encodings(self._remote_first)
        ):
            raise LocalProtocolError(f"cannot send Content-Encoding {enc!r} to this peer")
        self._out += encode_status(200, "OK", ours)
        if enc == DEFLATE:
            self._deflater = LinkDeflater(self.config.deflate_level)
        if not self.outgoing:
            self._local_first = ours
            self.state = State.AWAIT_FINAL
            return None
        if content_encoding(self._remote_first) == DEFLATE:
            self._inflater = self._make_inflater()
        self.negotiation = Negotiation(
            outgoing=True,
            version=self._version,
            local_headers=_merge(self._local_first, ours),
            remote_headers=self._remote_first,
            deflate_in=self._inflater is not None,
            deflate_out=self._deflater is not None,
        )
        self.state = State.OPEN
        return self.negotiation

    def reject(self, code: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Refuse the connection (``503 Busy``, ``409 Vendor rejected``...);
        close the stream once the refusal is sent."""
        if self.state is not State.DECIDE:
            raise LocalProtocolError(f"reject() in state {self.state.name}")
        if code == 200:
            raise LocalProtocolError("reject() needs a refusal code, not 200")
        self._out += encode_status(code, reason, headers)
        self.state = State.CLOSED
        self._pending = b""

    # -- sending

    def _stream_out(self, data: bytes) -> None:
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot send descriptors in state {self.state.name}")
        if len(data) - 23 > self.config.max_payload:
            raise LocalProtocolError("descriptor payload larger than max_payload")
        if self._deflater is not None:
            self._out += self._deflater.compress(data)
            self._deflate_dirty = True
        else:
            self._out += data

    def send(self, msg: Message, *, guid: bytes, ttl: int, hops: int = 0) -> None:
        """Queue ``msg`` as a descriptor."""
        self._stream_out(frame(guid, message_type(msg), ttl, hops, encode_payload(msg)))

    def send_descriptor(
        self, guid: bytes, payload_type: int, ttl: int, hops: int, payload: bytes
    ) -> None:
        """Queue a descriptor from its parts: how a router forwards a payload
        exactly as it arrived, with TTL and hops updated."""
        self._stream_out(frame(guid, payload_type, ttl, hops, payload))

    def send_bye(
        self, code: int, reason: str, headers: Iterable[tuple[str, str]] = (), *, guid: bytes
    ) -> None:
        """Queue a Bye (TTL 1, hops 0: ``bye`` section 3) as the last thing on
        the connection; close the stream once it is sent."""
        self.send(Bye(code, reason, tuple(headers)), guid=guid, ttl=1, hops=0)
        self.state = State.CLOSED

    def data_to_send(self) -> bytes:
        """Bytes to write now.  A compressed stream is sync-flushed, so every
        queued descriptor can be inflated by the peer at once."""
        if self._deflater is not None and self._deflate_dirty:
            self._out += self._deflater.flush()
            self._deflate_dirty = False
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        self.bytes_sent += len(out)
        return out

    # -- timers

    def next_deadline(self) -> float | None:
        state = self.state
        if state is State.OPEN:  # first: asked after every read and write
            idle = self.config.idle_timeout
            return None if idle is None else self._last_rx + idle
        if state in _HANDSHAKING:
            return self._deadline
        return None

    def handle_timeout(self, now: float) -> list[Event]:
        if self.state in _HANDSHAKING:
            if now >= self._deadline:
                exc = RemoteProtocolError("Gnutella handshake timed out", 408)
                self._fail(exc)
                raise exc
            return []
        idle = self.config.idle_timeout
        if self.state is State.OPEN and idle is not None and now >= self._last_rx + idle:
            idle_for = now - self._last_rx
            self._last_rx = now
            return [IdleTimeout(idle_for)]
        return []
