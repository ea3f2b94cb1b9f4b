"""A BitTorrent peer connection as a sans-I/O state machine.

Specs: BEP 3 "peer protocol" (handshake, choking and interest, requests and
pieces, keep-alives), BEP 6 (the fast extension's changed request
semantics), BEP 10 (extension negotiation), BEP 9 and BEP 11 (the
extension messages this machine parses), BEP 5 (the port message).  The codec
is :mod:`peerlab.wire.peer`.

No I/O, no clock: the machine is fed the bytes that arrived and the time, and
returns events; it queues bytes to send, collected with ``data_to_send()``
(aioquic's shape, driven by :class:`peerlab.runtime.driver.StreamDriver`).
It holds the state of one connection only; which pieces to ask for and whom
to unchoke is the swarm's business.

Public API (stable)
===================

::

    PeerConfig(peer_id, extension_protocol=True, fast=True, dht=False,
               extensions={"ut_metadata": 1, "ut_pex": 2}, client_version=...,
               listen_port=None, dht_port=None, reqq=DEFAULT_REQQ,
               max_requests=DEFAULT_MAX_REQUESTS, keepalive_interval=60.0,
               idle_timeout=180.0, handshake_timeout=30.0)
    ConnectionState: HANDSHAKE, ESTABLISHED, CLOSED

    PeerConnection.outgoing(config, info_hash, now, *, piece_count=0,
                            metadata_size=None, expected_peer_id=None)
    PeerConnection.incoming(config, accept, now)
        # accept: a set of info-hashes, or a callable info_hash -> piece count
        # (0 while unknown) or None to refuse

    Driving:   .receive_data(data, now) -> list[Event]   .receive_eof(now) -> list[Event]
               .data_to_send() -> bytes   .next_deadline() -> float | None
               .handle_timeout(now) -> list[Event]
    Our side:  .send_bitfield(bitfield)  .send_have_all()  .send_have_none()   # first only
               .have(index)  .choke()  .unchoke()  .interested()  .not_interested()
               .request(index, begin, length) -> Request   .cancel(index, begin, length)
               .send_piece(index, begin, block) -> bool    .reject_request(index, begin, length)
               .suggest_piece(index)  .allow_fast(index)   .send_port(port)
               .send_extended_handshake(**fields)   .send_metadata(msg)   .send_pex(msg)
               .send_extended(name, payload)        .set_piece_count(n)
    State:     .state  .info_hash  .remote (the peer's Handshake)  .piece_count
               .fast  .extension_protocol  .dht                    # negotiated (both ends)
               .am_choking  .am_interested  .peer_choking  .peer_interested
               .remote_extensions (name -> id, at most MAX_EXTENSION_NAMES)
               .remote_handshake (the peer's last ExtendedHandshake)
               .requests_outstanding / .peer_requests (list[Request], oldest first)
               .request_slots (requests we may still send)  .peer_allowed_fast (set)
               .payload_received  .payload_sent  .counters (Counter of odd events)
               .block_data_at (when the last bytes of a block came, part or whole)

    Events: the peer's messages as :mod:`peerlab.wire.peer` dataclasses --
        Handshake (the peer's, once complete), Choke, Unchoke, Interested,
        NotInterested, Have, Bitfield, HaveAll, HaveNone, Request (queued for
        us to serve), Piece (answering one of our requests), Cancel,
        RejectRequest, AllowedFast, SuggestPiece, Port, Unknown,
        ExtendedHandshake, MetadataRequest, MetadataData, MetadataReject,
        PeerExchange -- and besides them:
        RequestsDropped(requests)   # choked without the fast extension: these are void
        ExtensionMessage(name, extended_id, payload)  # an extension we do not parse
        ConnectionClosed()          # the peer closed its side: close ours (driver.close())

Rules the machine enforces (garbage and broken rules raise
RemoteProtocolError, which costs the connection; our own misuse raises
LocalProtocolError):

* handshake: pstr "BitTorrent protocol"; an outgoing connection's info-hash
  must come back, an incoming one must be accepted; no handshake within
  ``handshake_timeout`` ends the connection.  The incoming side answers as
  soon as the info-hash is in (BEP 3), before the peer id arrives.
* the bitfield, have all and have none: at most one of them, never after a
  have; checked against the piece count when it is known (size, spare bits).
* requests from the peer: at most 16 KiB (BEP 3: "close connections which
  request an amount greater than that"), inside the torrent; at most
  ``reqq`` queued (our extended handshake says so).  Beyond the queue, or
  while we choke the peer, a request is rejected under the fast extension and
  dropped without it (counted either way).  Choking the peer voids its queue
  (BEP 3), except, under the fast extension, requests for pieces we allowed
  fast; the others are rejected (BEP 6: every request gets exactly one answer).
* our requests: only while unchoked (or for an allowed-fast piece), at most
  ``request_slots`` at once (our ``max_requests`` and the peer's ``reqq``).
  A piece that answers no request of ours ends the connection (BEP 6: "MUST
  close"), unless it answers one we cancelled or that a choke voided (the
  race BEP 3 leaves open).  Fast-extension messages without the fast bit
  on both ends, or an extended message without BEP 10 on both ends, end it.
* keep-alives: sent after ``keepalive_interval`` seconds without sending;
  ``idle_timeout`` seconds without receiving anything ends the connection
  (BEP 3: keep-alives every two minutes, so three minutes of silence is dead).

Ordering after the handshake: send the availability (``send_bitfield`` /
``send_have_all`` / ``send_have_none``) while handling the ``Handshake``
event.  The extended handshake and the port message then follow it; if no
availability was sent by the next ``data_to_send()``, they go out alone and,
under the fast extension, a have-none goes first (BEP 6 requires one of the
three).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Final, TypeAlias

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.peer import (
    EXTENDED_HANDSHAKE_ID,
    HANDSHAKE_LENGTH,
    HANDSHAKE_PREFIX_LENGTH,
    MAX_BLOCK_LENGTH,
    MAX_EXTENSION_NAMES,
    MAX_PIECE_COUNT,
    PROTOCOL_NAME,
    UT_METADATA,
    UT_PEX,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    Message,
    MessageDecoder,
    MessageId,
    MetadataData,
    MetadataMessage,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    PeerExchange,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    Unknown,
    check_bitfield,
    decode_extended_handshake,
    decode_handshake,
    decode_handshake_prefix,
    decode_metadata_message,
    decode_pex,
    encode,
    encode_extended_handshake,
    encode_handshake,
    encode_metadata_message,
    encode_pex,
    encode_piece_header,
    reserved_bytes,
)

__all__ = [
    "DEFAULT_MAX_REQUESTS",
    "DEFAULT_PEER_REQQ",
    "DEFAULT_REQQ",
    "MAX_ALLOWED_FAST",
    "MAX_REQQ",
    "MAX_VOIDED_REMEMBERED",
    "PEER_ID_PREFIX",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "ExtensionMessage",
    "PeerConfig",
    "PeerConnection",
    "RequestsDropped",
]

#: Azureus-style client prefix of peerlab's peer ids ("-PL0100-" + 12 random
#: bytes, the convention BEP 20 describes); the swarm appends the random part.
PEER_ID_PREFIX: Final = b"-PL0100-"
#: Requests we queue from one peer, and advertise as ``reqq`` (BEP 10).
#: libtorrent advertises 250 too: enough to keep a fast link busy with 16 KiB
#: blocks (250 x 16 KiB = 4 MiB in flight).
DEFAULT_REQQ: Final = 250
#: Upper bound of a configured ``reqq``: a peer may make us hold this many
#: requests, so it bounds that table's memory.
MAX_REQQ: Final = 2000
#: Our own pipeline: requests we keep outstanding to one peer at most (further
#: capped by the peer's ``reqq``).
DEFAULT_MAX_REQUESTS: Final = 250
#: The ``reqq`` we assume for a peer that states none (no BEP 10, or no key):
#: BitTorrent 4.x and its contemporaries queued a handful; 16 is safe for them.
DEFAULT_PEER_REQQ: Final = 16
#: Allowed-fast pieces we remember per peer (BEP 6: the set is small, 10 or
#: so); beyond this, further AllowedFast messages are ignored.
MAX_ALLOWED_FAST: Final = 64
#: Requests of ours that were cancelled or voided by a choke and whose piece
#: may still arrive (BEP 3's cancel race): we remember this many, oldest
#: forgotten first.
MAX_VOIDED_REMEMBERED: Final = 512

_Key: TypeAlias = tuple[int, int, int]


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class RequestsDropped:
    """The peer choked us without the fast extension: these requests of ours
    will not be served (BEP 3) and are no longer outstanding."""

    requests: tuple[Request, ...]


@dataclass(frozen=True, slots=True)
class ExtensionMessage:
    """An extended message (BEP 10) for an extension this machine does not
    parse; ``name`` is ours for the id, ``None`` if we never assigned it."""

    name: str | None
    extended_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection."""


Event: TypeAlias = (
    Message
    | Handshake
    | ExtendedHandshake
    | MetadataRequest
    | MetadataData
    | MetadataReject
    | PeerExchange
    | RequestsDropped
    | ExtensionMessage
    | ConnectionClosed
)

_CLOSED: Final = ConnectionClosed()
_PSTR: Final = b"\x13" + PROTOCOL_NAME


class ConnectionState(Enum):
    """Where a connection is."""

    HANDSHAKE = "HANDSHAKE"  # handshakes being exchanged
    ESTABLISHED = "ESTABLISHED"  # the message stream
    CLOSED = "CLOSED"  # the peer closed; nothing more is sent or read


def _default_extensions() -> dict[str, int]:
    return {UT_METADATA: 1, UT_PEX: 2}


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Settings of peer connections (one per node, shared by its connections)."""

    #: Our 20-byte peer id (BEP 3), e.g. :data:`PEER_ID_PREFIX` + 12 random bytes.
    peer_id: bytes
    #: Reserved bits we set: BEP 10, BEP 6, BEP 5.
    extension_protocol: bool = True
    fast: bool = True
    dht: bool = False
    #: Our extended handshake's "m": extension name -> the id we receive it under.
    extensions: Mapping[str, int] = field(default_factory=_default_extensions)
    #: Our extended handshake's "v".
    client_version: str | None = "peerlab 0.1.0"
    #: Our extended handshake's "p": the TCP port we accept peers on.
    listen_port: int | None = None
    #: The UDP port of our DHT node, sent in a port message (BEP 5) to peers
    #: that set the DHT bit, when ours is set too.
    dht_port: int | None = None
    #: Requests we queue from a peer; sent as "reqq" (BEP 10).
    reqq: int = DEFAULT_REQQ
    #: Requests we keep outstanding to a peer at most.
    max_requests: int = DEFAULT_MAX_REQUESTS
    #: Seconds without sending after which we send a keep-alive (BEP 3: "generally
    #: sent once every two minutes"; sooner keeps NAT mappings warm).
    keepalive_interval: float = 60.0
    #: Seconds without receiving anything after which the peer is dead.
    idle_timeout: float = 180.0
    #: Seconds from the start to a complete handshake.
    handshake_timeout: float = 30.0

    def __post_init__(self) -> None:
        if len(self.peer_id) != 20:
            raise ValueError("a peer id is 20 bytes")
        if not 1 <= self.reqq <= MAX_REQQ:
            raise ValueError(f"reqq must be between 1 and {MAX_REQQ}")
        if self.max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        for name, mid in self.extensions.items():
            if not 1 <= mid <= 0xFF:
                raise ValueError(f"extension {name!r}: id {mid} must be 1..255")
        if len(set(self.extensions.values())) != len(self.extensions):
            raise ValueError("two extensions share an id")


#: What an incoming connection checks the peer's info-hash against: a set of
#: info-hashes (piece count unknown), or a callable returning the torrent's
#: piece count (0 while unknown) or None to refuse.
InfoHashCheck: TypeAlias = Container[bytes] | Callable[[bytes], int | None]


class PeerConnection:
    """One BitTorrent peer connection (see the module docstring)."""

    def __init__(
        self,
        config: PeerConfig,
        now: float,
        *,
        info_hash: bytes | None,
        accept: InfoHashCheck | None,
        piece_count: int = 0,
        metadata_size: int | None = None,
        expected_peer_id: bytes | None = None,
    ) -> None:
        """Use :meth:`outgoing` or :meth:`incoming`."""
        self.config = config
        self.state = ConnectionState.HANDSHAKE
        self.info_hash = info_hash
        self.outgoing_side = info_hash is not None
        self.remote: Handshake | None = None
        self.piece_count = 0
        self.set_piece_count(piece_count)
        self.metadata_size = metadata_size
        self._accept = accept
        self._expected_peer_id = expected_peer_id
        self._reserved = reserved_bytes(
            extension_protocol=config.extension_protocol, fast=config.fast, dht=config.dht
        )
        self._ext_names = {mid: name for name, mid in config.extensions.items()}
        # negotiated: both ends set the bit
        self.fast = False
        self.extension_protocol = False
        self.dht = False
        # BEP 3 "peer protocol": "Connections start out choked and not interested."
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.remote_extensions: dict[str, int] = {}
        self.remote_handshake: ExtendedHandshake | None = None
        self.peer_allowed_fast: set[int] = set()
        self.payload_received = 0
        self.payload_sent = 0
        #: When the last bytes of a block arrived, a whole one or part of one
        #: (libtorrent's ``m_last_piece``, set per fragment): a block coming
        #: in slowly is progress, not silence.
        self.block_data_at: float | None = None
        self.counters: Counter[str] = Counter()
        self._granted_fast: set[int] = set()
        self._ours: dict[_Key, float] = {}  # our requests -> time sent
        self._voided: dict[_Key, None] = {}  # cancelled or choked away; piece tolerated
        self._theirs: dict[_Key, None] = {}  # the peer's queued requests
        self._hs_buf = bytearray()
        self._decoder = MessageDecoder()
        self._out: list[bytes] = []
        self._now = now
        self._last_received = now
        self._last_sent = now
        self._handshake_deadline: float | None = now + config.handshake_timeout
        self._sent_handshake = False
        self._sent_any_message = False  # after the handshake
        self._deferred_pending = False  # extended handshake / port still to send
        self._got_availability = False
        self._got_have = False
        if info_hash is not None:
            if len(info_hash) != 20:
                raise LocalProtocolError("an info-hash is 20 bytes")
            self._send_handshake(info_hash)

    @classmethod
    def outgoing(
        cls,
        config: PeerConfig,
        info_hash: bytes,
        now: float,
        *,
        piece_count: int = 0,
        metadata_size: int | None = None,
        expected_peer_id: bytes | None = None,
    ) -> PeerConnection:
        """We dial the peer: our handshake is queued at once (BEP 3)."""
        return cls(
            config,
            now,
            info_hash=info_hash,
            accept=None,
            piece_count=piece_count,
            metadata_size=metadata_size,
            expected_peer_id=expected_peer_id,
        )

    @classmethod
    def incoming(cls, config: PeerConfig, accept: InfoHashCheck, now: float) -> PeerConnection:
        """The peer dialled us: we answer once its info-hash is accepted."""
        return cls(config, now, info_hash=None, accept=accept)

    # ------------------------------------------------------------ properties

    @property
    def requests_outstanding(self) -> list[Request]:
        """Our requests not yet answered, oldest first."""
        return [Request(*k) for k in self._ours]

    @property
    def peer_requests(self) -> list[Request]:
        """The peer's requests queued for us to serve, oldest first."""
        return [Request(*k) for k in self._theirs]

    @property
    def peer_reqq(self) -> int:
        """Requests the peer queues (its extended handshake's reqq, or a default)."""
        h = self.remote_handshake
        return h.reqq if h is not None and h.reqq is not None else DEFAULT_PEER_REQQ

    @property
    def request_slots(self) -> int:
        """Requests we may still send now (0 while choked: allowed-fast
        requests aside)."""
        cap = min(self.config.max_requests, self.peer_reqq)
        return max(0, cap - len(self._ours))

    def set_piece_count(self, piece_count: int) -> None:
        """Tell the machine the torrent's piece count (0: unknown), e.g. once
        the metadata of a magnet link arrived.  Later have, request and
        bitfield messages are checked against it."""
        if not 0 <= piece_count <= MAX_PIECE_COUNT:
            raise LocalProtocolError(f"piece count {piece_count} out of range")
        self.piece_count = piece_count

    # ------------------------------------------------------------ driving

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer (empty when nothing is)."""
        if self._deferred_pending:
            self._send_deferred()
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` wants to run next."""
        if self.state is ConnectionState.CLOSED:
            return None
        deadline = self._last_received + self.config.idle_timeout
        if self._handshake_deadline is not None:
            deadline = min(deadline, self._handshake_deadline)
        if self.state is ConnectionState.ESTABLISHED:
            deadline = min(deadline, self._last_sent + self.config.keepalive_interval)
        return deadline

    def handle_timeout(self, now: float) -> list[Event]:
        """Send a due keep-alive; raise RemoteProtocolError for a dead peer."""
        self._now = now
        if self.state is ConnectionState.CLOSED:
            return []
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            raise RemoteProtocolError(
                f"no handshake within {self.config.handshake_timeout:g} s"
            )
        if now >= self._last_received + self.config.idle_timeout:
            raise RemoteProtocolError(
                f"peer silent for {now - self._last_received:.0f} s"
            )
        if (
            self.state is ConnectionState.ESTABLISHED
            and now >= self._last_sent + self.config.keepalive_interval
        ):
            self._queue(encode(KeepAlive()))
        return []

    def receive_eof(self, now: float) -> list[Event]:
        """The peer closed its side."""
        self._now = now
        if self.state is ConnectionState.CLOSED:
            return []
        self.state = ConnectionState.CLOSED
        return [_CLOSED]

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; return the events they complete."""
        self._now = now
        if self.state is ConnectionState.CLOSED or not data:
            return []
        self._last_received = now
        events: list[Event] = []
        if self.state is ConnectionState.HANDSHAKE:
            rest = self._receive_handshake(data, events)
            if not rest:
                return events
            data = rest
        decoder = self._decoder
        for msg in decoder.feed(data):
            self._received(msg, events)
        if decoder.partial_id == MessageId.PIECE:
            self.block_data_at = now
        return events

    # ------------------------------------------------------------ handshake

    def _send_handshake(self, info_hash: bytes) -> None:
        self._queue(encode_handshake(Handshake(info_hash, self.config.peer_id, self._reserved)))
        self._sent_handshake = True

    def _receive_handshake(self, data: bytes, events: list[Event]) -> bytes:
        """Collect the peer's handshake; return the bytes after it (empty
        while it is incomplete)."""
        buf = self._hs_buf
        take = HANDSHAKE_LENGTH - len(buf)
        buf += data[:take]
        rest = data[take:]
        if not self._sent_handshake and len(buf) >= HANDSHAKE_PREFIX_LENGTH:
            _, info_hash = decode_handshake_prefix(buf)
            self._check_incoming(info_hash)
            self._send_handshake(info_hash)
        elif len(buf) >= HANDSHAKE_PREFIX_LENGTH:
            _, info_hash = decode_handshake_prefix(buf)
            if info_hash != self.info_hash:
                raise RemoteProtocolError(f"peer answered for info-hash {info_hash.hex()}")
        elif buf[:20] != _PSTR[: len(buf)]:
            # Refuse a stranger (an HTTP request, an encrypted stream) early.
            raise RemoteProtocolError(f"not a BitTorrent handshake: {bytes(buf[:20])!r}")
        if len(buf) < HANDSHAKE_LENGTH:
            return b""
        remote = decode_handshake(buf)
        self._hs_buf = bytearray()
        if self._expected_peer_id is not None and remote.peer_id != self._expected_peer_id:
            raise RemoteProtocolError("peer id differs from the one announced (BEP 3)")
        self.remote = remote
        self.state = ConnectionState.ESTABLISHED
        self._handshake_deadline = None
        cfg = self.config
        self.fast = cfg.fast and remote.fast
        self.extension_protocol = cfg.extension_protocol and remote.extension_protocol
        self.dht = cfg.dht and remote.dht
        self._deferred_pending = True
        events.append(remote)
        return rest

    def _check_incoming(self, info_hash: bytes) -> None:
        accept = self._accept
        count: int | None
        if callable(accept):
            count = accept(info_hash)
        elif accept is not None and info_hash in accept:
            count = self.piece_count
        else:
            count = None
        if count is None:
            raise RemoteProtocolError(f"no torrent with info-hash {info_hash.hex()} here")
        self.info_hash = info_hash
        self.set_piece_count(count)

    def _send_deferred(self, extended_handshake: bytes | None = None) -> None:
        """What follows our availability message: have-none if the fast
        extension needs one and none was sent, the extended handshake, the port."""
        self._deferred_pending = False
        if self.fast and not self._sent_any_message:
            self._queue_message(encode(HaveNone()))
        self._sent_any_message = True
        if self.extension_protocol:
            self._queue(extended_handshake or self._extended_handshake_bytes({}))
        if self.dht and self.config.dht_port is not None:
            self._queue(encode(Port(self.config.dht_port)))

    # ------------------------------------------------------------ our side

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._last_sent = self._now

    def _queue_message(self, data: bytes) -> None:
        if self.state is not ConnectionState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        self._sent_any_message = True
        self._queue(data)

    def _send(self, data: bytes) -> None:
        """Queue a message that must not precede the availability message."""
        if self._deferred_pending:
            self._send_deferred()
        self._queue_message(data)

    def _availability(self, data: bytes) -> None:
        if self.state is not ConnectionState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        if self._sent_any_message:
            raise LocalProtocolError("bitfield, have all and have none go first (BEP 3, BEP 6)")
        self._queue_message(data)

    def send_bitfield(self, bitfield: bytes) -> None:
        """Our pieces, as the first message (BEP 3 "bitfield")."""
        if self.piece_count:
            try:
                check_bitfield(bitfield, self.piece_count)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(str(exc)) from None
        self._availability(encode(Bitfield(bitfield)))

    def send_have_all(self) -> None:
        """BEP 6 "Have All" as the first message (fast extension only)."""
        self._require_fast("have all")
        self._availability(encode(HaveAll()))

    def send_have_none(self) -> None:
        """BEP 6 "Have None" as the first message (fast extension only)."""
        self._require_fast("have none")
        self._availability(encode(HaveNone()))

    def have(self, index: int) -> None:
        """Announce a piece we completed and checked (BEP 3 "have")."""
        self._check_index(index, LocalProtocolError)
        self._send(encode(Have(index)))

    def choke(self) -> None:
        """Stop serving the peer.  Its queued requests are void (BEP 3); under
        the fast extension each is rejected, allowed-fast ones excepted (BEP 6)."""
        if self.am_choking:
            return
        self._send(encode(Choke()))
        self.am_choking = True
        if not self.fast:
            self._theirs.clear()
            return
        for key in list(self._theirs):
            if key[0] not in self._granted_fast:
                del self._theirs[key]
                self._queue_message(encode(RejectRequest(*key)))

    def unchoke(self) -> None:
        """Serve the peer's requests (BEP 3 "unchoke")."""
        if not self.am_choking:
            return
        self._send(encode(Unchoke()))
        self.am_choking = False

    def interested(self) -> None:
        """We want pieces the peer has (BEP 3 "interested")."""
        if self.am_interested:
            return
        self._send(encode(Interested()))
        self.am_interested = True

    def not_interested(self) -> None:
        """We want nothing from the peer (BEP 3 "not interested")."""
        if not self.am_interested:
            return
        self._send(encode(NotInterested()))
        self.am_interested = False

    def request(self, index: int, begin: int, length: int) -> Request:
        """Ask for a block (BEP 3 "request").  LocalProtocolError when choked
        (unless the piece is allowed fast), when ``request_slots`` is 0, for a
        duplicate, or for a block over 16 KiB."""
        if not 0 < length <= MAX_BLOCK_LENGTH:
            raise LocalProtocolError(f"a block is 1..{MAX_BLOCK_LENGTH} bytes, not {length}")
        self._check_index(index, LocalProtocolError)
        if self.peer_choking and not (self.fast and index in self.peer_allowed_fast):
            raise LocalProtocolError("the peer chokes us")
        key = (index, begin, length)
        if key in self._ours:
            raise LocalProtocolError(f"block {key} is already requested")
        if self.request_slots <= 0:
            raise LocalProtocolError("the request pipeline is full")
        self._send(encode(Request(index, begin, length)))
        self._ours[key] = self._now
        self._voided.pop(key, None)
        return Request(index, begin, length)

    def cancel(self, index: int, begin: int, length: int) -> None:
        """Withdraw a request (BEP 3 "cancel"); nothing if it is not outstanding.
        Without the fast extension it stops counting at once (its piece may
        still arrive and is then accepted); under it, the peer answers with
        the piece or a reject, and it counts until then (BEP 6)."""
        key = (index, begin, length)
        if key not in self._ours:
            return
        self._send(encode(Cancel(index, begin, length)))
        if not self.fast:
            del self._ours[key]
            self._void(key)

    def send_piece(self, index: int, begin: int, block: bytes | memoryview) -> bool:
        """Answer the peer's queued request for this block.  False (nothing
        sent) when no such request is queued: cancelled, or voided by a choke."""
        key = (index, begin, len(block))
        if key not in self._theirs:
            return False
        del self._theirs[key]
        self._send(encode_piece_header(index, begin, len(block)))
        self._queue(bytes(block))
        self.payload_sent += len(block)
        return True

    def reject_request(self, index: int, begin: int, length: int) -> None:
        """BEP 6 "Reject Request" for a queued request (fast extension only)."""
        self._require_fast("reject request")
        key = (index, begin, length)
        if self._theirs.pop(key, False) is False:
            raise LocalProtocolError(f"no queued request {key} to reject")
        self._send(encode(RejectRequest(index, begin, length)))

    def suggest_piece(self, index: int) -> None:
        """BEP 6 "Suggest Piece" (fast extension only)."""
        self._require_fast("suggest piece")
        self._check_index(index, LocalProtocolError)
        self._send(encode(SuggestPiece(index)))

    def allow_fast(self, index: int) -> None:
        """BEP 6 "Allowed Fast": the peer may request ``index`` while choked."""
        self._require_fast("allowed fast")
        self._check_index(index, LocalProtocolError)
        if index in self._granted_fast:
            return
        self._send(encode(AllowedFast(index)))
        self._granted_fast.add(index)

    def send_port(self, port: int) -> None:
        """BEP 5 "port": our DHT node's UDP port."""
        self._send(encode(Port(port)))

    # -- BEP 10

    def _extended_handshake_bytes(self, overrides: Mapping[str, Any]) -> bytes:
        cfg = self.config
        base = ExtendedHandshake(
            m=dict(cfg.extensions),
            p=cfg.listen_port,
            v=cfg.client_version,
            reqq=cfg.reqq,
            metadata_size=self.metadata_size,
        )
        h = replace(base, **overrides)
        if h.metadata_size is not None:
            self.metadata_size = h.metadata_size
        return encode(Extended(EXTENDED_HANDSHAKE_ID, encode_extended_handshake(h)))

    def send_extended_handshake(self, **fields: Any) -> None:
        """Send (or send again) our extended handshake (BEP 10), with fields of
        :class:`~peerlab.wire.peer.ExtendedHandshake` overriding the config
        (``metadata_size=``, ``yourip=``...).  Called while the first one is
        still pending, it replaces it."""
        self._require_extensions()
        unknown = set(fields) - set(ExtendedHandshake.__dataclass_fields__)
        if unknown:
            raise LocalProtocolError(f"not extended handshake fields: {sorted(unknown)}")
        data = self._extended_handshake_bytes(fields)
        if self._deferred_pending:
            self._send_deferred(data)
        else:
            self._send(data)

    def send_extended(self, name: str, payload: bytes) -> None:
        """An extended message under the id the peer assigned to ``name``."""
        self._require_extensions()
        mid = self.remote_extensions.get(name)
        if not mid:
            raise LocalProtocolError(f"the peer does not support {name!r}")
        self._send(encode(Extended(mid, payload)))

    def send_metadata(self, msg: MetadataMessage) -> None:
        """A ut_metadata message (BEP 9)."""
        self.send_extended(UT_METADATA, encode_metadata_message(msg))

    def send_pex(self, msg: PeerExchange) -> None:
        """A ut_pex message (BEP 11)."""
        self.send_extended(UT_PEX, encode_pex(msg))

    # ------------------------------------------------------------ checks

    def _require_fast(self, what: str) -> None:
        if self.state is not ConnectionState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        if not self.fast:
            raise LocalProtocolError(f"{what} needs the fast extension on both ends (BEP 6)")

    def _require_extensions(self) -> None:
        if self.state is not ConnectionState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        if not self.extension_protocol:
            raise LocalProtocolError("the extension protocol is not on both ends (BEP 10)")

    def _check_index(
        self, index: int, error: type[LocalProtocolError] | type[RemoteProtocolError]
    ) -> None:
        if index < 0 or (self.piece_count and index >= self.piece_count):
            raise error(f"piece {index} outside the torrent's {self.piece_count} pieces")

    def _void(self, key: _Key) -> None:
        voided = self._voided
        voided[key] = None
        if len(voided) > MAX_VOIDED_REMEMBERED:
            del voided[next(iter(voided))]

    # ------------------------------------------------------------ their side

    def _received(self, msg: Message, events: list[Event]) -> None:
        """One message from the peer: update the state, append events."""
        # The hot path first: blocks.
        if type(msg) is Piece:
            key = (msg.index, msg.begin, len(msg.block))
            if self._ours.pop(key, None) is None:
                if key not in self._voided:
                    raise RemoteProtocolError(f"piece {key} was never requested (BEP 6)")
                del self._voided[key]
                self.counters["pieces_after_cancel"] += 1
            self.payload_received += len(msg.block)
            self.block_data_at = self._now
            events.append(msg)
            return
        if type(msg) is Request:
            self._received_request(msg, events)
            return
        if type(msg) is Have:
            self._check_index(msg.index, RemoteProtocolError)
            self._got_have = True
            events.append(msg)
            return
        if type(msg) is KeepAlive:
            self.counters["keepalives_received"] += 1
            return
        if type(msg) is Choke:
            self.peer_choking = True
            events.append(msg)
            if not self.fast and self._ours:
                dropped = tuple(Request(*k) for k in self._ours)
                for key in self._ours:
                    self._void(key)
                self._ours.clear()
                events.append(RequestsDropped(dropped))
            return
        if type(msg) is Unchoke:
            self.peer_choking = False
        elif type(msg) is Interested:
            self.peer_interested = True
        elif type(msg) is NotInterested:
            self.peer_interested = False
        elif type(msg) is Bitfield:
            self._received_availability("bitfield")
            if self.piece_count:
                check_bitfield(msg.bitfield, self.piece_count)
        elif type(msg) is Cancel:
            key = (msg.index, msg.begin, msg.length)
            if key in self._theirs:
                del self._theirs[key]
                if self.fast:
                    # BEP 6: a cancelled request still gets exactly one answer.
                    self._queue_message(encode(RejectRequest(*key)))
        elif type(msg) is Extended:
            self._received_extended(msg, events)
            return
        elif type(msg) is Port:
            pass
        elif type(msg) is Unknown:
            self.counters["unknown_messages"] += 1
        else:
            self._received_fast(msg, events)
            return
        events.append(msg)

    def _received_availability(self, what: str) -> None:
        if self._got_availability:
            raise RemoteProtocolError(f"a second bitfield/have all/have none ({what})")
        if self._got_have:
            raise RemoteProtocolError(f"{what} after a have message (BEP 3: only first)")
        self._got_availability = True

    def _received_request(self, msg: Request, events: list[Event]) -> None:
        if not 0 < msg.length <= MAX_BLOCK_LENGTH:
            raise RemoteProtocolError(
                f"request for {msg.length} bytes (BEP 3: at most {MAX_BLOCK_LENGTH})"
            )
        self._check_index(msg.index, RemoteProtocolError)
        key = (msg.index, msg.begin, msg.length)
        if key in self._theirs:
            self.counters["duplicate_requests"] += 1
            return
        if self.am_choking and not (self.fast and msg.index in self._granted_fast):
            self._refuse(key, "requests_while_choked")
            return
        if len(self._theirs) >= self.config.reqq:
            self._refuse(key, "requests_over_queue")
            return
        self._theirs[key] = None
        events.append(msg)

    def _refuse(self, key: _Key, counter: str) -> None:
        self.counters[counter] += 1
        if self.fast:
            self._queue_message(encode(RejectRequest(*key)))

    def _received_fast(self, msg: Message, events: list[Event]) -> None:
        """The BEP 6 messages, which need the fast bit on both ends."""
        if not self.fast:
            raise RemoteProtocolError(
                f"{type(msg).__name__} without the fast extension (BEP 6: MUST close)"
            )
        if type(msg) is HaveAll:
            self._received_availability("have all")
        elif type(msg) is HaveNone:
            self._received_availability("have none")
        elif type(msg) is RejectRequest:
            key = (msg.index, msg.begin, msg.length)
            if self._ours.pop(key, None) is None:
                raise RemoteProtocolError(f"reject for {key}, never requested (BEP 6)")
        elif type(msg) is AllowedFast:
            self._check_index(msg.index, RemoteProtocolError)
            if len(self.peer_allowed_fast) >= MAX_ALLOWED_FAST:
                self.counters["allowed_fast_ignored"] += 1
                return
            self.peer_allowed_fast.add(msg.index)
        elif type(msg) is SuggestPiece:
            self._check_index(msg.index, RemoteProtocolError)
        events.append(msg)

    def _received_extended(self, msg: Extended, events: list[Event]) -> None:
        if not self.extension_protocol:
            raise RemoteProtocolError("extended message without BEP 10 on both ends")
        if msg.extended_id == EXTENDED_HANDSHAKE_ID:
            h = decode_extended_handshake(msg.payload)
            # BEP 10: a later handshake adds extensions, and id 0 removes one.
            known = self.remote_extensions
            for ext, mid in h.m.items():
                if not mid:
                    known.pop(ext, None)
                elif ext in known or len(known) < MAX_EXTENSION_NAMES:
                    known[ext] = mid
                else:
                    self.counters["extensions_ignored"] += 1
            self.remote_handshake = h
            events.append(h)
            return
        name = self._ext_names.get(msg.extended_id)
        if name == UT_METADATA:
            parsed = decode_metadata_message(msg.payload)
            if parsed is None:
                self.counters["metadata_unknown_type"] += 1
                return
            events.append(parsed)
        elif name == UT_PEX:
            events.append(decode_pex(msg.payload))
        else:
            events.append(ExtensionMessage(name, msg.extended_id, msg.payload))
