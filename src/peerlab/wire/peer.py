"""The BitTorrent peer wire protocol: handshake, messages and the payloads of
its extensions.

Codecs only (no I/O, no clock).  Specs, by section of the BEP text:

* BEP 3 ("The BitTorrent Protocol Specification", "peer protocol"): the
  handshake, keep-alive, choke, unchoke, interested, not interested, have,
  bitfield, request, piece, cancel;
* BEP 5 ("BitTorrent extension for DHT"): the port message and the DHT bit of
  the reserved bytes;
* BEP 6 ("Fast Extension"): suggest piece, have all, have none, reject
  request, allowed fast, and the allowed-fast set generation algorithm;
* BEP 10 ("Extension Protocol"): the extended message and its handshake
  dictionary;
* BEP 9 ("Extension for Peers to Send Metadata Files"): ut_metadata request,
  data and reject;
* BEP 11 ("Peer Exchange (PEX)"): ut_pex added / added.f / dropped, IPv4 and
  IPv6.

The sans-I/O connection machine built on this module is
:mod:`peerlab.proto.peer`.

Public API (stable)
===================

Handshake (BEP 3 "handshake"; reserved bits BEP 5, 6, 10)::

    Handshake(info_hash: bytes, peer_id: bytes, reserved: bytes = bytes(8))
        .extension_protocol / .fast / .dht -> bool   # the reserved bits
    reserved_bytes(*, extension_protocol=False, fast=False, dht=False) -> bytes
    encode_handshake(h: Handshake) -> bytes              # 68 bytes
    decode_handshake(data) -> Handshake                  # exactly 68 bytes
    decode_handshake_prefix(data) -> tuple[bytes, bytes] # first 48: (reserved, info_hash)

Messages: one frozen, slotted dataclass each, its message id in ``MESSAGE_ID``::

    KeepAlive()                                   (no id: a zero length prefix)
    0 Choke()   1 Unchoke()   2 Interested()   3 NotInterested()
    4 Have(index)             5 Bitfield(bitfield: bytes)
    6 Request(index, begin, length)
    7 Piece(index, begin, block: bytes | memoryview)
    8 Cancel(index, begin, length)                9 Port(listen_port)     BEP 5
    13 SuggestPiece(index)    14 HaveAll()        15 HaveNone()           BEP 6
    16 RejectRequest(index, begin, length)        17 AllowedFast(index)   BEP 6
    20 Extended(extended_id, payload: bytes)                              BEP 10
    Unknown(message_id, payload: bytes)           any other id, kept raw

    encode(msg) -> bytes                          # length prefix included
    encode_piece_header(index, begin, length) -> bytes  # the 13 bytes before a block
    decode_message(data) -> Message               # one message without its length prefix
    MessageDecoder()                              # incremental, whole or byte by byte
        .feed(data: bytes) -> list[Message]
        .buffered -> int   .partial_id -> int | None (the message partly held)
        .check_eof() -> None                      # raises if a message is cut short

``MessageDecoder`` keeps one buffer per received chunk: a ``Piece`` that
arrives whole inside one ``feed()`` carries a memoryview of the caller's bytes
(no copy); only a message split across chunks is assembled, once.  Lengths are
checked against the bounds of the message id as soon as the id byte arrives,
before anything is buffered.

Bitfields (BEP 3 "bitfield")::

    bitfield_from_pieces(pieces: Iterable[int], piece_count) -> bytes
    pieces_in_bitfield(bitfield, piece_count) -> list[int]   # validates
    check_bitfield(bitfield, piece_count) -> None            # size and spare bits

Fast extension (BEP 6 "Allowed Fast")::

    allowed_fast_set(info_hash, ip: str, piece_count, k=ALLOWED_FAST_SET_SIZE) -> list[int]

Extension payloads (BEP 10, 9, 11), bencoded with :mod:`peerlab.wire.bencode`::

    ExtendedHandshake(m={}, p=None, v=None, reqq=None, metadata_size=None, yourip=None)
    encode_extended_handshake(h) -> bytes;   decode_extended_handshake(payload) -> ExtendedHandshake
    MetadataRequest(piece)  MetadataData(piece, total_size, data)  MetadataReject(piece)
    encode_metadata_message(msg) -> bytes;   decode_metadata_message(payload) -> msg | None
    metadata_piece_count(total_size) -> int; metadata_piece_length(piece, total_size) -> int
    PexFlags (IntFlag)   PexPeer(address, flags)   PeerExchange(added=(), dropped=())
    encode_pex(msg) -> bytes;                decode_pex(payload) -> PeerExchange

Garbage from the network raises :class:`~peerlab.errors.RemoteProtocolError`
and nothing else; values we are asked to encode that the wire cannot carry
raise :class:`~peerlab.errors.LocalProtocolError`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, Final, TypeAlias

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire import bencode

__all__ = [
    "ALLOWED_FAST_SET_SIZE",
    "BLOCK_SIZE",
    "EXTENDED_HANDSHAKE_ID",
    "HANDSHAKE_LENGTH",
    "HANDSHAKE_PREFIX_LENGTH",
    "MAX_BITFIELD_LENGTH",
    "MAX_BLOCK_LENGTH",
    "MAX_EXTENDED_PAYLOAD",
    "MAX_EXTENSION_NAMES",
    "MAX_MESSAGE_LENGTH",
    "MAX_METADATA_SIZE",
    "MAX_PEX_PEERS",
    "MAX_PIECE_COUNT",
    "MAX_UNKNOWN_PAYLOAD",
    "METADATA_PIECE_SIZE",
    "PROTOCOL_NAME",
    "UT_METADATA",
    "UT_PEX",
    "AllowedFast",
    "Bitfield",
    "Cancel",
    "Choke",
    "Extended",
    "ExtendedHandshake",
    "Handshake",
    "Have",
    "HaveAll",
    "HaveNone",
    "Interested",
    "KeepAlive",
    "Message",
    "MessageDecoder",
    "MessageId",
    "MetadataData",
    "MetadataMessage",
    "MetadataReject",
    "MetadataRequest",
    "NotInterested",
    "PeerExchange",
    "PexFlags",
    "PexPeer",
    "Piece",
    "Port",
    "RejectRequest",
    "Request",
    "SuggestPiece",
    "Unchoke",
    "Unknown",
    "allowed_fast_set",
    "bitfield_from_pieces",
    "check_bitfield",
    "decode_extended_handshake",
    "decode_handshake",
    "decode_handshake_prefix",
    "decode_message",
    "decode_metadata_message",
    "decode_pex",
    "encode",
    "encode_extended_handshake",
    "encode_handshake",
    "encode_metadata_message",
    "encode_pex",
    "encode_piece_header",
    "metadata_piece_count",
    "metadata_piece_length",
    "pieces_in_bitfield",
    "reserved_bytes",
]

# ------------------------------------------------------------------ bounds

#: BEP 3 "handshake": pstrlen (19) then this string.
PROTOCOL_NAME: Final = b"BitTorrent protocol"
#: pstrlen, pstr, 8 reserved bytes, info-hash, peer id.
HANDSHAKE_LENGTH: Final = 1 + 19 + 8 + 20 + 20
#: The handshake through the info-hash: enough for the receiving side to know
#: which torrent is meant before the peer id arrives (BEP 3 lets the
#: recipient answer at this point).
HANDSHAKE_PREFIX_LENGTH: Final = 1 + 19 + 8 + 20

#: BEP 3 "request": "All current implementations use 2^14 (16 kiB)".
BLOCK_SIZE: Final = 1 << 14
#: Longest block a request may ask for and a piece message may carry.  BEP 3:
#: implementations "close connections which request an amount greater than
#: that" (16 KiB); we never ask for more either, so a longer piece message is
#: garbage.
MAX_BLOCK_LENGTH: Final = 1 << 14
#: Pieces in a torrent we accept: 2 Mi pieces is 32 GiB at 16 KiB pieces and
#: 32 TiB at 16 MiB, beyond any real torrent; libtorrent's default limit is
#: of the same order.  Bounds the bitfield below.
MAX_PIECE_COUNT: Final = 1 << 21
#: Longest bitfield payload (BEP 3 "bitfield": one bit per piece).
MAX_BITFIELD_LENGTH: Final = MAX_PIECE_COUNT // 8
#: Longest payload of an extended message (BEP 10), extended id included.
#: The largest one we know is a ut_metadata data message (BEP 9): a 16 KiB
#: piece behind a header of some 50 bytes; 64 KiB leaves room for others.
MAX_EXTENDED_PAYLOAD: Final = 1 << 16
#: Longest payload of a message id we do not model (BEP 52's hash messages,
#: vendor messages): read and handed on raw, so bounded like an extended one.
MAX_UNKNOWN_PAYLOAD: Final = 1 << 16
#: Largest length prefix any message may carry: a full bitfield.
MAX_MESSAGE_LENGTH: Final = 1 + MAX_BITFIELD_LENGTH

#: BEP 9 "metadata": the info dictionary travels in 16 KiB pieces.
METADATA_PIECE_SIZE: Final = 1 << 14
#: Largest metadata (bencoded info dictionary) we accept: the 20-byte hashes
#: of MAX_PIECE_COUNT pieces are 40 MiB, plus room for a long file list.
MAX_METADATA_SIZE: Final = 48 << 20
#: Extension names in one extended handshake "m" dictionary (BEP 10).  A
#: client announces a handful (ut_metadata, ut_pex, lt_donthave, upload_only,
#: ut_holepunch...); each maps to one message id byte, so 255 at most anyway.
MAX_EXTENSION_NAMES: Final = 128
#: Peers in one added or dropped list of a ut_pex message (BEP 11).  PEX
#: messages carry the changes of about a minute; libtorrent sends at most a
#: few dozen.  A longer list is refused, so a peer cannot flood our peer table.
MAX_PEX_PEERS: Final = 200

#: Size of the allowed-fast set we grant (BEP 6 "Allowed Fast" leaves k to the
#: implementation; its examples use 7 and 9).
ALLOWED_FAST_SET_SIZE: Final = 10

#: BEP 10: extended message id 0 is the extension handshake.
EXTENDED_HANDSHAKE_ID: Final = 0
#: BEP 9 and BEP 11 extension names, as they appear in the "m" dictionary.
UT_METADATA: Final = "ut_metadata"
UT_PEX: Final = "ut_pex"

_U32: Final = 0xFFFFFFFF


class MessageId(IntEnum):
    """Message ids (BEP 3 "peer messages", BEP 5, BEP 6, BEP 10)."""

    CHOKE = 0
    UNCHOKE = 1
    INTERESTED = 2
    NOT_INTERESTED = 3
    HAVE = 4
    BITFIELD = 5
    REQUEST = 6
    PIECE = 7
    CANCEL = 8
    PORT = 9
    SUGGEST_PIECE = 13
    HAVE_ALL = 14
    HAVE_NONE = 15
    REJECT_REQUEST = 16
    ALLOWED_FAST = 17
    EXTENDED = 20


def _remote(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message)


# ------------------------------------------------------------------ handshake

#: (byte index, mask) of the reserved bits we know.
_RESERVED_EXTENSION_PROTOCOL: Final = (5, 0x10)  # BEP 10 "reserved_byte[5] & 0x10"
_RESERVED_FAST: Final = (7, 0x04)  # BEP 6 "reserved[7] |= 0x04"
_RESERVED_DHT: Final = (7, 0x01)  # BEP 5 "the last bit of the 8 reserved bytes"


def reserved_bytes(
    *, extension_protocol: bool = False, fast: bool = False, dht: bool = False
) -> bytes:
    """The 8 reserved handshake bytes with the named extension bits set."""
    out = bytearray(8)
    for on, (i, mask) in (
        (extension_protocol, _RESERVED_EXTENSION_PROTOCOL),
        (fast, _RESERVED_FAST),
        (dht, _RESERVED_DHT),
    ):
        if on:
            out[i] |= mask
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Handshake:
    """BEP 3 "handshake": reserved bytes, info-hash, peer id."""

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = bytes(8)

    @property
    def extension_protocol(self) -> bool:
        """BEP 10: the peer speaks the extension protocol."""
        i, mask = _RESERVED_EXTENSION_PROTOCOL
        return bool(self.reserved[i] & mask)

    @property
    def fast(self) -> bool:
        """BEP 6: the peer speaks the fast extension."""
        i, mask = _RESERVED_FAST
        return bool(self.reserved[i] & mask)

    @property
    def dht(self) -> bool:
        """BEP 5: the peer runs a DHT node (and may send a port message)."""
        i, mask = _RESERVED_DHT
        return bool(self.reserved[i] & mask)


def encode_handshake(h: Handshake) -> bytes:
    """The 68 handshake bytes (BEP 3 "handshake")."""
    if len(h.info_hash) != 20 or len(h.peer_id) != 20 or len(h.reserved) != 8:
        raise LocalProtocolError("a handshake needs a 20-byte info-hash and peer id, 8 reserved")
    return b"\x13" + PROTOCOL_NAME + bytes(h.reserved) + bytes(h.info_hash) + bytes(h.peer_id)


def decode_handshake_prefix(data: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
    """``(reserved, info_hash)`` from the first 48 handshake bytes.

    Raises :class:`RemoteProtocolError` unless they open with pstrlen 19 and
    "BitTorrent protocol" (BEP 3: "the only value" of pstr in this version).
    """
    if len(data) < HANDSHAKE_PREFIX_LENGTH:
        raise _remote(f"handshake cut short at {len(data)} bytes")
    if data[0] != 19 or bytes(data[1:20]) != PROTOCOL_NAME:
        raise _remote(f"not a BitTorrent handshake: {bytes(data[:20])!r}")
    return bytes(data[20:28]), bytes(data[28:48])


def decode_handshake(data: bytes | bytearray | memoryview) -> Handshake:
    """A whole 68-byte handshake."""
    if len(data) != HANDSHAKE_LENGTH:
        raise _remote(f"a handshake is {HANDSHAKE_LENGTH} bytes, got {len(data)}")
    reserved, info_hash = decode_handshake_prefix(data)
    return Handshake(info_hash, bytes(data[48:68]), reserved)


# ------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """BEP 3: a zero length prefix, no id."""


@dataclass(frozen=True, slots=True)
class Choke:
    """BEP 3 "choke": no payload."""

    MESSAGE_ID: ClassVar[int] = MessageId.CHOKE


@dataclass(frozen=True, slots=True)
class Unchoke:
    """BEP 3 "unchoke": no payload."""

    MESSAGE_ID: ClassVar[int] = MessageId.UNCHOKE


@dataclass(frozen=True, slots=True)
class Interested:
    """BEP 3 "interested": no payload."""

    MESSAGE_ID: ClassVar[int] = MessageId.INTERESTED


@dataclass(frozen=True, slots=True)
class NotInterested:
    """BEP 3 "not interested": no payload."""

    MESSAGE_ID: ClassVar[int] = MessageId.NOT_INTERESTED


@dataclass(frozen=True, slots=True)
class Have:
    """BEP 3 "have": "a single number, the index which that downloader just
    completed and checked the hash of"."""

    index: int
    MESSAGE_ID: ClassVar[int] = MessageId.HAVE


@dataclass(frozen=True, slots=True)
class Bitfield:
    """BEP 3 "bitfield": one bit per piece, high bit of the first byte is
    piece 0; spare bits at the end are zero."""

    bitfield: bytes
    MESSAGE_ID: ClassVar[int] = MessageId.BITFIELD


@dataclass(frozen=True, slots=True)
class Request:
    """BEP 3 "request": index, begin, length."""

    index: int
    begin: int
    length: int
    MESSAGE_ID: ClassVar[int] = MessageId.REQUEST


@dataclass(frozen=True, slots=True)
class Piece:
    """BEP 3 "piece": index, begin, and the block itself.

    A decoded block is a read-only memoryview into the received bytes (no
    copy); ``bytes(piece.block)`` when a copy that outlives them is wanted.
    """

    index: int
    begin: int
    block: bytes | memoryview
    MESSAGE_ID: ClassVar[int] = MessageId.PIECE


@dataclass(frozen=True, slots=True)
class Cancel:
    """BEP 3 "cancel": the same payload as the request it withdraws."""

    index: int
    begin: int
    length: int
    MESSAGE_ID: ClassVar[int] = MessageId.CANCEL


@dataclass(frozen=True, slots=True)
class Port:
    """BEP 5 "port": the sender's DHT node listens on this UDP port."""

    listen_port: int
    MESSAGE_ID: ClassVar[int] = MessageId.PORT


@dataclass(frozen=True, slots=True)
class SuggestPiece:
    """BEP 6 "Suggest Piece": the sender advises downloading this piece."""

    index: int
    MESSAGE_ID: ClassVar[int] = MessageId.SUGGEST_PIECE


@dataclass(frozen=True, slots=True)
class HaveAll:
    """BEP 6 "Have All": in place of a bitfield with every bit set."""

    MESSAGE_ID: ClassVar[int] = MessageId.HAVE_ALL


@dataclass(frozen=True, slots=True)
class HaveNone:
    """BEP 6 "Have None": in place of a bitfield with no bit set."""

    MESSAGE_ID: ClassVar[int] = MessageId.HAVE_NONE


@dataclass(frozen=True, slots=True)
class RejectRequest:
    """BEP 6 "Reject Request": the request with this payload will not be served."""

    index: int
    begin: int
    length: int
    MESSAGE_ID: ClassVar[int] = MessageId.REJECT_REQUEST


@dataclass(frozen=True, slots=True)
class AllowedFast:
    """BEP 6 "Allowed Fast": the receiver may request this piece while choked."""

    index: int
    MESSAGE_ID: ClassVar[int] = MessageId.ALLOWED_FAST


@dataclass(frozen=True, slots=True)
class Extended:
    """BEP 10 extended message: an extended id, then its payload.

    Id 0 is the extension handshake; the others are the ids the *receiver*
    assigned in its handshake's "m" dictionary.
    """

    extended_id: int
    payload: bytes
    MESSAGE_ID: ClassVar[int] = MessageId.EXTENDED


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message id this module does not model; the payload is kept raw."""

    message_id: int
    payload: bytes


Message: TypeAlias = (
    KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | Port
    | SuggestPiece
    | HaveAll
    | HaveNone
    | RejectRequest
    | AllowedFast
    | Extended
    | Unknown
)

_KEEP_ALIVE: Final = KeepAlive()
_CHOKE: Final = Choke()
_UNCHOKE: Final = Unchoke()
_INTERESTED: Final = Interested()
_NOT_INTERESTED: Final = NotInterested()
_HAVE_ALL: Final = HaveAll()
_HAVE_NONE: Final = HaveNone()

_LEN: Final = struct.Struct(">I")
_LEN_ID: Final = struct.Struct(">IB")
_LEN_ID_I: Final = struct.Struct(">IBI")
_LEN_ID_III: Final = struct.Struct(">IBIII")
_LEN_ID_II: Final = struct.Struct(">IBII")
_LEN_ID_H: Final = struct.Struct(">IBH")
_I: Final = struct.Struct(">I")
_II: Final = struct.Struct(">II")
_III: Final = struct.Struct(">III")
_H: Final = struct.Struct(">H")


def _u32(value: int, what: str) -> int:
    if not 0 <= value <= _U32:
        raise LocalProtocolError(f"{what} {value} does not fit 32 bits")
    return value


def encode_piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes that precede a block of ``length`` bytes in a piece message,
    so a sender can write header and block without joining them."""
    if not 0 <= length <= MAX_BLOCK_LENGTH:
        raise LocalProtocolError(f"block of {length} bytes exceeds {MAX_BLOCK_LENGTH}")
    return _LEN_ID_II.pack(9 + length, MessageId.PIECE, _u32(index, "index"), _u32(begin, "begin"))


def encode(msg: Message) -> bytes:
    """One message with its length prefix (BEP 3 "peer messages")."""
    match msg:
        case Piece(index, begin, block):
            return encode_piece_header(index, begin, len(block)) + bytes(block)
        case Request(index, begin, length) | Cancel(index, begin, length) | RejectRequest(
            index, begin, length
        ):
            return _LEN_ID_III.pack(
                13,
                msg.MESSAGE_ID,
                _u32(index, "index"),
                _u32(begin, "begin"),
                _u32(length, "length"),
            )
        case Have(index) | SuggestPiece(index) | AllowedFast(index):
            return _LEN_ID_I.pack(5, msg.MESSAGE_ID, _u32(index, "index"))
        case Choke() | Unchoke() | Interested() | NotInterested() | HaveAll() | HaveNone():
            return _LEN_ID.pack(1, msg.MESSAGE_ID)
        case KeepAlive():
            return b"\x00\x00\x00\x00"
        case Bitfield(bitfield):
            if not 0 < len(bitfield) <= MAX_BITFIELD_LENGTH:
                raise LocalProtocolError(f"bitfield of {len(bitfield)} bytes")
            return _LEN_ID.pack(1 + len(bitfield), MessageId.BITFIELD) + bytes(bitfield)
        case Port(listen_port):
            if not 0 <= listen_port <= 0xFFFF:
                raise LocalProtocolError(f"port {listen_port} out of range")
            return _LEN_ID_H.pack(3, MessageId.PORT, listen_port)
        case Extended(extended_id, payload):
            if not 0 <= extended_id <= 0xFF:
                raise LocalProtocolError(f"extended id {extended_id} is not a byte")
            if 1 + len(payload) > MAX_EXTENDED_PAYLOAD:
                raise LocalProtocolError(f"extended payload of {len(payload)} bytes")
            return (
                _LEN_ID.pack(2 + len(payload), MessageId.EXTENDED)
                + bytes((extended_id,))
                + bytes(payload)
            )
        case Unknown(message_id, payload):
            if not 0 <= message_id <= 0xFF:
                raise LocalProtocolError(f"message id {message_id} is not a byte")
            if len(payload) > MAX_UNKNOWN_PAYLOAD:
                raise LocalProtocolError(f"payload of {len(payload)} bytes")
            return _LEN_ID.pack(1 + len(payload), message_id) + bytes(payload)
    raise LocalProtocolError(f"not a peer wire message: {msg!r}")


def _bounds_table() -> tuple[tuple[int, int], ...]:
    """(min, max) of the length prefix per message id (the id byte included)."""
    table = [(1, 1 + MAX_UNKNOWN_PAYLOAD)] * 256
    for mid in (
        MessageId.CHOKE,
        MessageId.UNCHOKE,
        MessageId.INTERESTED,
        MessageId.NOT_INTERESTED,
        MessageId.HAVE_ALL,
        MessageId.HAVE_NONE,
    ):
        table[mid] = (1, 1)
    for mid in (MessageId.HAVE, MessageId.SUGGEST_PIECE, MessageId.ALLOWED_FAST):
        table[mid] = (5, 5)
    for mid in (MessageId.REQUEST, MessageId.CANCEL, MessageId.REJECT_REQUEST):
        table[mid] = (13, 13)
    table[MessageId.PORT] = (3, 3)
    table[MessageId.BITFIELD] = (2, 1 + MAX_BITFIELD_LENGTH)
    table[MessageId.PIECE] = (9, 9 + MAX_BLOCK_LENGTH)
    table[MessageId.EXTENDED] = (2, 1 + MAX_EXTENDED_PAYLOAD)
    return tuple(table)


_BOUNDS: Final = _bounds_table()


def _bound_error(length: int, mid: int) -> RemoteProtocolError:
    lo, hi = _BOUNDS[mid]
    try:
        name = MessageId(mid).name.lower()
    except ValueError:
        name = f"id {mid}"
    if lo == hi:
        return _remote(f"{name} message of length {length}, must be {lo}")
    return _remote(f"{name} message of length {length} outside {lo}..{hi}")


def _decode_body(mid: int, data: bytes, start: int, end: int) -> Message:
    """The message whose id byte is at ``start - 1`` and whose body is
    ``data[start:end]``; the length was checked against ``_BOUNDS``."""
    if mid == MessageId.PIECE:
        index, begin = _II.unpack_from(data, start)
        return Piece(index, begin, memoryview(data)[start + 8 : end])
    if mid == MessageId.REQUEST:
        return Request(*_III.unpack_from(data, start))
    if mid == MessageId.HAVE:
        return Have(_I.unpack_from(data, start)[0])
    if mid == MessageId.CHOKE:
        return _CHOKE
    if mid == MessageId.UNCHOKE:
        return _UNCHOKE
    if mid == MessageId.INTERESTED:
        return _INTERESTED
    if mid == MessageId.NOT_INTERESTED:
        return _NOT_INTERESTED
    if mid == MessageId.BITFIELD:
        return Bitfield(data[start:end])
    if mid == MessageId.CANCEL:
        return Cancel(*_III.unpack_from(data, start))
    if mid == MessageId.PORT:
        return Port(_H.unpack_from(data, start)[0])
    if mid == MessageId.SUGGEST_PIECE:
        return SuggestPiece(_I.unpack_from(data, start)[0])
    if mid == MessageId.HAVE_ALL:
        return _HAVE_ALL
    if mid == MessageId.HAVE_NONE:
        return _HAVE_NONE
    if mid == MessageId.REJECT_REQUEST:
        return RejectRequest(*_III.unpack_from(data, start))
    if mid == MessageId.ALLOWED_FAST:
        return AllowedFast(_I.unpack_from(data, start)[0])
    if mid == MessageId.EXTENDED:
        return Extended(data[start], data[start + 1 : end])
    return Unknown(mid, data[start:end])


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """One message given without its length prefix (id byte first); an empty
    buffer is a keep-alive."""
    raw = bytes(data)
    if not raw:
        return _KEEP_ALIVE
    mid = raw[0]
    lo, hi = _BOUNDS[mid]
    if not lo <= len(raw) <= hi:
        raise _bound_error(len(raw), mid)
    return _decode_body(mid, raw, 1, len(raw))


class MessageDecoder:
    """Splits the message stream after the handshake into messages (BEP 3
    "peer messages"); feed it whole or one byte at a time.

    A message that arrives whole inside one :meth:`feed` is decoded in place:
    a :class:`Piece`'s block is a memoryview of the fed bytes.  A message
    split across feeds is collected in a buffer of its own, so at most one
    partial message (bounded by the limits of its id) is ever held.  A length
    outside the bounds of its id raises :class:`RemoteProtocolError` as soon
    as the id byte is seen, and poisons the decoder: the stream has lost its
    framing, so every later :meth:`feed` raises too.
    """

    __slots__ = ("_acc", "_error")

    def __init__(self) -> None:
        #: The partial message (length prefix included) not yet complete.
        self._acc = bytearray()
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a message not yet complete."""
        return len(self._acc)

    @property
    def partial_id(self) -> int | None:
        """The id of the message partly held (None: none held, or its id
        byte has not arrived yet)."""
        acc = self._acc
        return acc[4] if len(acc) > 4 else None

    def _fail(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        self._error = str(exc)
        self._acc = bytearray()
        return exc

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add ``data``; return every message it completes, in order."""
        if self._error is not None:
            raise _remote(self._error)
        if type(data) is not bytes:
            # Messages hold views of what they were cut from: freeze a copy.
            data = bytes(data)
        out: list[Message] = []
        n = len(data)
        pos = 0
        acc = self._acc
        if acc:
            pos = self._complete(data, out)
            if self._acc:
                return out
        unpack = _LEN.unpack_from
        bounds = _BOUNDS
        decode = _decode_body
        while n - pos >= 4:
            length = unpack(data, pos)[0]
            if length == 0:
                out.append(_KEEP_ALIVE)
                pos += 4
                continue
            if n - pos < 5:
                break
            mid = data[pos + 4]
            lo, hi = bounds[mid]
            if length < lo or length > hi:
                raise self._fail(_bound_error(length, mid))
            end = pos + 4 + length
            if end > n:
                break
            out.append(decode(mid, data, pos + 5, end))
            pos = end
        if pos < n:
            self._acc += memoryview(data)[pos:]
        return out

    def _complete(self, data: bytes, out: list[Message]) -> int:
        """Grow the partial message with the start of ``data``; append it to
        ``out`` when complete.  Returns the bytes of ``data`` consumed."""
        acc = self._acc
        n = len(data)
        pos = 0
        if len(acc) < 4:
            take = min(4 - len(acc), n)
            acc += data[:take]
            pos = take
            if len(acc) < 4:
                return pos
        length = _LEN.unpack_from(acc)[0]
        if length == 0:
            out.append(_KEEP_ALIVE)
            self._acc = bytearray()
            return pos
        if len(acc) == 4:
            if pos >= n:
                return pos
            mid = data[pos]
            lo, hi = _BOUNDS[mid]
            if length < lo or length > hi:
                raise self._fail(_bound_error(length, mid))
            acc.append(mid)
            pos += 1
        total = 4 + length
        take = min(total - len(acc), n - pos)
        if take:
            acc += memoryview(data)[pos : pos + take]
            pos += take
        if len(acc) == total:
            whole = bytes(acc)
            self._acc = bytearray()
            out.append(_decode_body(whole[4], whole, 5, total))
        return pos

    def check_eof(self) -> None:
        """The peer closed: raise if it left a message cut short."""
        if self._acc:
            raise _remote(f"peer stream ended inside a message ({len(self._acc)} bytes)")


# ------------------------------------------------------------------ bitfields


def _bitfield_length(piece_count: int) -> int:
    return (piece_count + 7) // 8


def bitfield_from_pieces(pieces: Iterable[int], piece_count: int) -> bytes:
    """The BEP 3 bitfield of ``piece_count`` pieces with ``pieces`` set."""
    if not 0 < piece_count <= MAX_PIECE_COUNT:
        raise LocalProtocolError(f"piece count {piece_count} out of range")
    out = bytearray(_bitfield_length(piece_count))
    for i in pieces:
        if not 0 <= i < piece_count:
            raise LocalProtocolError(f"piece {i} outside 0..{piece_count - 1}")
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def check_bitfield(bitfield: bytes | memoryview, piece_count: int) -> None:
    """Raise :class:`RemoteProtocolError` unless ``bitfield`` fits
    ``piece_count`` pieces.  BEP 3: "Clients should drop the connection if
    they receive bitfields that are not of the correct size, or if the
    bitfield has any of the spare bits set"."""
    want = _bitfield_length(piece_count)
    if len(bitfield) != want:
        raise _remote(f"bitfield of {len(bitfield)} bytes for {piece_count} pieces (want {want})")
    spare = want * 8 - piece_count
    if spare and bitfield[-1] & ((1 << spare) - 1):
        raise _remote("bitfield has spare bits set")


def pieces_in_bitfield(bitfield: bytes | memoryview, piece_count: int) -> list[int]:
    """The piece indices set in a bitfield, after :func:`check_bitfield`."""
    check_bitfield(bitfield, piece_count)
    out: list[int] = []
    for byte_index, byte in enumerate(bytes(bitfield)):
        if byte:
            base = byte_index << 3
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.append(base + bit)
    return out


# ------------------------------------------------------------------ BEP 6


def allowed_fast_set(
    info_hash: bytes, ip: str, piece_count: int, k: int = ALLOWED_FAST_SET_SIZE
) -> list[int]:
    """The allowed-fast set for a peer at IPv4 address ``ip`` (BEP 6 "Allowed
    Fast", its canonical algorithm), in generation order.

    The peer's address is masked to its /24 so one network gets one set; the
    info-hash is appended and SHA-1 iterated, each digest giving five 32-bit
    big-endian numbers taken modulo the piece count.  ``k`` is capped at the
    piece count (a set cannot hold more distinct pieces).
    """
    if len(info_hash) != 20:
        raise LocalProtocolError("an info-hash is 20 bytes")
    if piece_count <= 0:
        raise LocalProtocolError(f"piece count {piece_count} out of range")
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError as exc:
        raise LocalProtocolError(f"BEP 6 defines the set for IPv4 only: {ip!r}") from exc
    k = min(k, piece_count)
    x = (int(address) & 0xFFFFFF00).to_bytes(4, "big") + info_hash
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < k:
        x = hashlib.sha1(x).digest()
        for i in range(5):
            if len(chosen) >= k:
                break
            index = _I.unpack_from(x, i * 4)[0] % piece_count
            if index not in seen:
                seen.add(index)
                chosen.append(index)
    return chosen


# ------------------------------------------------------------------ BEP 10

#: Bencode bounds for extension payloads: small flat dictionaries (BEP 10, 9,
#: 11), so a peer cannot make us build deep or wide structures.
_EXTENSION_LIMITS: Final = bencode.BencodeLimits(
    max_depth=4,
    max_string_length=MAX_EXTENDED_PAYLOAD,
    max_list_length=MAX_EXTENSION_NAMES + 64,
    max_tokens=2048,
    sorted_keys=False,  # some clients do not sort their handshake's keys
)


def _decode_dict(payload: bytes | memoryview, what: str) -> dict[bytes, bencode.Value]:
    value = bencode.decode(payload, _EXTENSION_LIMITS)
    if not isinstance(value, dict):
        raise _remote(f"{what} is not a bencoded dictionary")
    return value


def _compact_ip(raw: bencode.Value | None) -> str | None:
    """A compact IPv4 (4 bytes) or IPv6 (16 bytes) address, else None."""
    if isinstance(raw, bytes):
        if len(raw) == 4:
            return str(ipaddress.IPv4Address(raw))
        if len(raw) == 16:
            return str(ipaddress.IPv6Address(raw))
    return None


def _pack_ip(host: str) -> bytes:
    try:
        return ipaddress.ip_address(host).packed
    except ValueError as exc:
        raise LocalProtocolError(f"not an IP address: {host!r}") from exc


@dataclass(frozen=True, slots=True)
class ExtendedHandshake:
    """BEP 10 "handshake message" (extended id 0), the keys we use.

    ``m`` maps extension names to the message ids the *sender* wants to
    receive them under (0: the extension is disabled).  ``p`` is the sender's
    TCP listen port, ``v`` its client name and version, ``reqq`` how many
    outstanding requests it queues without dropping, ``yourip`` the address
    it sees us at.  ``metadata_size`` is BEP 9's: the info dictionary's size.
    Keys of the wrong type are ignored, as BEP 10 tells clients to ignore
    what they do not understand; only ``m`` must be a dictionary.
    """

    m: dict[str, int] = field(default_factory=dict)
    p: int | None = None
    v: str | None = None
    reqq: int | None = None
    metadata_size: int | None = None
    yourip: str | None = None


def encode_extended_handshake(h: ExtendedHandshake) -> bytes:
    """The bencoded payload of an extended handshake (without extended id)."""
    d: dict[str, bencode.Encodable] = {}
    for name, mid in h.m.items():
        if not 0 <= mid <= 0xFF:
            raise LocalProtocolError(f"extension {name!r}: id {mid} is not a byte")
    d["m"] = dict(h.m)
    if h.p is not None:
        if not 0 < h.p <= 0xFFFF:
            raise LocalProtocolError(f"listen port {h.p} out of range")
        d["p"] = h.p
    if h.v is not None:
        d["v"] = h.v
    if h.reqq is not None:
        d["reqq"] = h.reqq
    if h.metadata_size is not None:
        d["metadata_size"] = h.metadata_size
    if h.yourip is not None:
        d["yourip"] = _pack_ip(h.yourip)
    return bencode.encode(d)


def decode_extended_handshake(payload: bytes | memoryview) -> ExtendedHandshake:
    """Parse an extended handshake payload (BEP 10)."""
    d = _decode_dict(payload, "extended handshake")
    raw_m = d.get(b"m", {})
    if not isinstance(raw_m, dict):
        raise _remote("extended handshake: 'm' is not a dictionary")
    if len(raw_m) > MAX_EXTENSION_NAMES:
        raise _remote(f"extended handshake names {len(raw_m)} extensions")
    m: dict[str, int] = {}
    for raw_name, mid in raw_m.items():
        if not isinstance(mid, int) or not 0 <= mid <= 0xFF:
            raise _remote(f"extended handshake: id of {raw_name[:40]!r} is not a byte")
        try:
            m[raw_name.decode("utf-8")] = mid
        except UnicodeDecodeError:
            continue  # a name we could not know anyway
    p = d.get(b"p")
    v = d.get(b"v")
    reqq = d.get(b"reqq")
    size = d.get(b"metadata_size")
    return ExtendedHandshake(
        m=m,
        p=p if isinstance(p, int) and 0 < p <= 0xFFFF else None,
        v=v.decode("utf-8", "replace") if isinstance(v, bytes) else None,
        reqq=reqq if isinstance(reqq, int) and reqq > 0 else None,
        metadata_size=size if isinstance(size, int) and 0 < size else None,
        yourip=_compact_ip(d.get(b"yourip")),
    )


# ------------------------------------------------------------------ BEP 9


def metadata_piece_count(total_size: int) -> int:
    """Pieces of :data:`METADATA_PIECE_SIZE` bytes the metadata is cut into."""
    return (total_size + METADATA_PIECE_SIZE - 1) // METADATA_PIECE_SIZE


def metadata_piece_length(piece: int, total_size: int) -> int:
    """Bytes in metadata piece ``piece``: 16 KiB, "except the last block which
    may be smaller" (BEP 9 "metadata")."""
    return min(METADATA_PIECE_SIZE, total_size - piece * METADATA_PIECE_SIZE)


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    """BEP 9 "request" (msg_type 0): send me metadata piece ``piece``."""

    piece: int
    MSG_TYPE: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class MetadataData:
    """BEP 9 "data" (msg_type 1): metadata piece ``piece`` of ``total_size``
    bytes in all; the piece's bytes follow the bencoded dictionary."""

    piece: int
    total_size: int
    data: bytes | memoryview
    MSG_TYPE: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class MetadataReject:
    """BEP 9 "reject" (msg_type 2): the sender will not send piece ``piece``."""

    piece: int
    MSG_TYPE: ClassVar[int] = 2


MetadataMessage: TypeAlias = MetadataRequest | MetadataData | MetadataReject

_MAX_METADATA_PIECE: Final = metadata_piece_count(MAX_METADATA_SIZE) - 1


def encode_metadata_message(msg: MetadataMessage) -> bytes:
    """The ut_metadata payload (without extended id): the bencoded dictionary,
    and for data the piece's bytes after it (BEP 9 "extension message")."""
    if not 0 <= msg.piece <= _MAX_METADATA_PIECE:
        raise LocalProtocolError(f"metadata piece {msg.piece} out of range")
    if isinstance(msg, MetadataData):
        if not 0 < msg.total_size <= MAX_METADATA_SIZE:
            raise LocalProtocolError(f"metadata size {msg.total_size} out of range")
        if msg.piece >= metadata_piece_count(msg.total_size):
            raise LocalProtocolError(f"metadata piece {msg.piece} beyond {msg.total_size} bytes")
        if len(msg.data) != metadata_piece_length(msg.piece, msg.total_size):
            raise LocalProtocolError(f"metadata piece {msg.piece} of {len(msg.data)} bytes")
        header = bencode.encode(
            {"msg_type": msg.MSG_TYPE, "piece": msg.piece, "total_size": msg.total_size}
        )
        return header + bytes(msg.data)
    return bencode.encode({"msg_type": msg.MSG_TYPE, "piece": msg.piece})


def decode_metadata_message(payload: bytes | memoryview) -> MetadataMessage | None:
    """Parse a ut_metadata payload.  ``None`` for a msg_type this version of
    BEP 9 does not define ("unrecognized message types should be ignored")."""
    raw = bytes(payload)
    header, end = bencode.decode_prefix(raw, 0, _EXTENSION_LIMITS)
    if not isinstance(header, dict):
        raise _remote("ut_metadata message is not a bencoded dictionary")
    msg_type = header.get(b"msg_type")
    piece = header.get(b"piece")
    if not isinstance(msg_type, int) or not isinstance(piece, int):
        raise _remote("ut_metadata message without an integer msg_type and piece")
    if not 0 <= piece <= _MAX_METADATA_PIECE:
        raise _remote(f"ut_metadata piece {piece} out of range")
    if msg_type == MetadataData.MSG_TYPE:
        total = header.get(b"total_size")
        if not isinstance(total, int) or not 0 < total <= MAX_METADATA_SIZE:
            raise _remote(f"ut_metadata total_size {total!r} out of range")
        if piece >= metadata_piece_count(total):
            raise _remote(f"ut_metadata piece {piece} beyond {total} bytes")
        want = metadata_piece_length(piece, total)
        if len(raw) - end != want:
            raise _remote(f"ut_metadata piece {piece} of {len(raw) - end} bytes, want {want}")
        return MetadataData(piece, total, memoryview(raw)[end:])
    if end != len(raw):
        raise _remote(f"{len(raw) - end} bytes after a ut_metadata request or reject")
    if msg_type == MetadataRequest.MSG_TYPE:
        return MetadataRequest(piece)
    if msg_type == MetadataReject.MSG_TYPE:
        return MetadataReject(piece)
    return None


# ------------------------------------------------------------------ BEP 11


class PexFlags(IntFlag):
    """BEP 11 "added.f": one byte of flags per added peer."""

    PREFERS_ENCRYPTION = 0x01
    SEED = 0x02  # seed or upload-only
    SUPPORTS_UTP = 0x04
    SUPPORTS_HOLEPUNCH = 0x08  # ut_holepunch
    REACHABLE = 0x10  # the sender connected out to it: it accepts connections


Address: TypeAlias = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PexPeer:
    """One added peer of a PEX message: its address and its flags."""

    address: Address
    flags: PexFlags = PexFlags(0)


@dataclass(frozen=True, slots=True)
class PeerExchange:
    """BEP 11 ut_pex payload: peers added and dropped since the last message.

    IPv4 and IPv6 peers share one list each here; on the wire they travel in
    ``added``/``added.f``/``dropped`` and ``added6``/``added6.f``/``dropped6``.
    """

    added: tuple[PexPeer, ...] = ()
    dropped: tuple[Address, ...] = ()


def _pack_peer(address: Address) -> tuple[bool, bytes]:
    host, port = address
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port {port} out of range")
    packed = _pack_ip(host)
    return len(packed) == 16, packed + _H.pack(port)


def _unpack_peers(raw: bencode.Value | None, size: int, key: str) -> list[Address]:
    if raw is None:
        return []
    if not isinstance(raw, bytes) or len(raw) % size:
        raise _remote(f"ut_pex {key!r} is not a list of {size}-byte compact peers")
    count = len(raw) // size
    if count > MAX_PEX_PEERS:
        raise _remote(f"ut_pex {key!r} lists {count} peers (limit {MAX_PEX_PEERS})")
    make = ipaddress.IPv4Address if size == 6 else ipaddress.IPv6Address
    return [
        (str(make(raw[i : i + size - 2])), _H.unpack_from(raw, i + size - 2)[0])
        for i in range(0, len(raw), size)
    ]


def _unpack_flags(raw: bencode.Value | None, count: int, key: str) -> list[PexFlags]:
    if raw is None:
        return [PexFlags(0)] * count
    if not isinstance(raw, bytes) or len(raw) != count:
        raise _remote(f"ut_pex {key!r} does not hold one flags byte per peer")
    return [PexFlags(b) for b in raw]


def encode_pex(msg: PeerExchange) -> bytes:
    """The bencoded ut_pex payload (without extended id), BEP 11."""
    lists: dict[str, list[bytes]] = {
        "added": [],
        "added.f": [],
        "added6": [],
        "added6.f": [],
        "dropped": [],
        "dropped6": [],
    }
    for peer in msg.added:
        v6, packed = _pack_peer(peer.address)
        lists["added6" if v6 else "added"].append(packed)
        lists["added6.f" if v6 else "added.f"].append(bytes((int(peer.flags) & 0xFF,)))
    for address in msg.dropped:
        v6, packed = _pack_peer(address)
        lists["dropped6" if v6 else "dropped"].append(packed)
    for key in ("added", "added6", "dropped", "dropped6"):
        if len(lists[key]) > MAX_PEX_PEERS:
            raise LocalProtocolError(f"ut_pex {key!r} of {len(lists[key])} peers")
    d: dict[str, bencode.Encodable] = {"added": b"", "added.f": b"", "dropped": b""}
    for key, parts in lists.items():
        if parts:
            d[key] = b"".join(parts)
    return bencode.encode(d)


def decode_pex(payload: bytes | memoryview) -> PeerExchange:
    """Parse a ut_pex payload (BEP 11)."""
    d = _decode_dict(payload, "ut_pex message")
    added4 = _unpack_peers(d.get(b"added"), 6, "added")
    flags4 = _unpack_flags(d.get(b"added.f"), len(added4), "added.f")
    added6 = _unpack_peers(d.get(b"added6"), 18, "added6")
    flags6 = _unpack_flags(d.get(b"added6.f"), len(added6), "added6.f")
    dropped = _unpack_peers(d.get(b"dropped"), 6, "dropped")
    dropped += _unpack_peers(d.get(b"dropped6"), 18, "dropped6")
    added = tuple(
        PexPeer(a, f) for a, f in zip(added4 + added6, flags4 + flags6, strict=True)
    )
    return PeerExchange(added, tuple(dropped))
