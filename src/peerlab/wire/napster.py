"""The Napster protocol as OpenNap servers and Napster-era clients speak it.

Codecs only (no I/O, no clock).  Spec: ``doc/napster.txt`` of OpenNap /
opennap-ng ("napster messages" by drscholl, revision of 2000-12-28); section
numbers below are that file's.  The sans-I/O session machines built on this
module live in :mod:`peerlab.proto.napster`.

Public API (stable)
===================

Framing (napster.txt section 2)::

    encode_frame(type: int, payload: bytes) -> bytes
    Frame(type: int, payload: bytes)                 # a NamedTuple
    FrameDecoder(max_payload: int = MAX_PAYLOAD_BYTES)
        .feed(data: bytes) -> list[Frame]           # whole or byte by byte
        .buffered -> int                             # bytes of a partial frame
        .check_eof() -> None                         # raises if a frame is cut short

Messages (section 3): one frozen, slotted dataclass per message, its type
number in ``TYPE`` and its fields in the spec's order::

    encode(msg: Message) -> bytes                    # the whole frame
    encode_payload(msg: Message) -> bytes            # the <data> part only
    decode(type: int, payload: bytes) -> Message     # Unknown(type, payload) if unmodelled
    decode_frame(frame: Frame) -> Message
    MESSAGE_TYPES: dict[int, type[Message]]          # the modelled type numbers

    0   LoginError(message)                  404 ErrorMessage(text)
    2   Login(nick, password, port, client_info, link_type, build=None)
    3   LoginAck(email)
    6   NewUserLogin(nick, password, port, client_info, link_type, email)
    7   NickCheck(nick)      8 NickNotRegistered()   9 NickAlreadyRegistered()
    10  InvalidNick()
    100 ShareFile(filename, md5, size, bitrate, frequency, duration)
    102 UnshareFile(filename)                110 UnshareAll()
    200 SearchRequest(query: SearchQuery)
    201 SearchResult(filename, md5, size, bitrate, frequency, duration,
                     nick, ip, link_type, weight=None)
    202 SearchEnd()
    203 DownloadRequest(nick, filename)
    204 DownloadAck(nick, ip, port, filename, md5, link_type)
    205 PrivateMessage(nick, text)
    206 GetError(nick, filename)
    209 UserSignon(nick, link_type)          210 UserSignoff(nick)
    211 BrowseRequest(nick)
    212 BrowseResult(nick, filename, md5, size, bitrate, frequency, duration)
    213 BrowseEnd(nick, ip=None)
    214 ServerStatsRequest() (client, empty) / ServerStats(users, files, gigabytes)
    218 Downloading()  219 DownloadComplete()  220 Uploading()  221 UploadComplete()
    500 AlternateDownloadRequest(nick, filename)
    501 AlternateDownloadAck(nick, ip, port, filename, md5, link_type)
    600 LinkSpeedRequest(nick)               601 LinkSpeed(nick, link_type)
    603 WhoisRequest(nick)
    604 WhoisResponse(nick, level, online_seconds, channels, status, shared,
                      downloads, uploads, link_type, client_info,
                      total_downloads=None, total_uploads=None, ip=None,
                      connecting_port=None, data_port=None, email=None, server=None)
    605 WhowasResponse(nick, level, last_seen)
    607 UploadRequest(nick, filename, link_type=None)
    608 UploadAccept(nick, filename)         609 AcceptFailed(nick, filename)
    619 QueueLimit(nick, filename, limit)
    620 QueueLimitNotice(nick, filename, size, limit)
    621 Motd(text="")        (from a client, empty: "send the MOTD again")
    626 DataPortError(nick)
    700 ChangeLinkSpeed(link_type)           703 ChangeDataPort(port)
    751 Ping(nick)                           752 Pong(nick)
    Unknown(type, payload)                   any other type number, payload kept raw

The search grammar (200, as OpenNap and opennap-ng parse it)::

    SearchQuery(contains=(), max_results=None, constraints=(), excludes=(),
                content_type=None, local_only=False)
        .bounds(field: SearchField) -> tuple[int, int | None]
        .admits(*, linespeed, bitrate, freq, size, duration) -> bool
        .keywords() -> tuple[str, ...]
        .to_payload() -> str;  SearchQuery.parse(text: str) -> SearchQuery
    Constraint(field: SearchField, compare: Compare, value: int).admits(actual) -> bool
    SearchField: LINESPEED BITRATE FREQ SIZE DURATION      (StrEnum, wire keyword)
    Compare: AT_LEAST "AT LEAST", AT_BEST "AT BEST", EQUAL_TO "EQUAL TO"   (StrEnum)
    LinkType: IntEnum 0..10 (UNKNOWN, K14_4, K28_8, K33_6, K56, ISDN_64K,
              ISDN_128K, CABLE, DSL, T1, T3); ``.label`` is what the client showed

Peer-to-peer transfer lines (section 5; machines in :mod:`peerlab.proto.napster`)::

    TRANSFER_READY = b"1";  TRANSFER_GET = b"GET";  TRANSFER_SEND = b"SEND"
    INVALID_REQUEST = "INVALID REQUEST";  FILE_NOT_SHARED = "FILE NOT SHARED"
    TransferLine(nick, filename, number)     # number: GET offset or SEND size
        .to_bytes() -> bytes                 # '<nick> "<filename>" <number>'
    parse_transfer_line(data: bytes) -> TransferLine | None   # None: incomplete so far
    MAX_TRANSFER_LINE_BYTES

Bounds (named constants, each with its reason below): HEADER_BYTES,
MAX_PAYLOAD_BYTES, MAX_FIELDS, MAX_FILENAME_BYTES, MAX_NICK_BYTES,
MAX_MD5_BYTES, MAX_SEARCH_RESULTS, MAX_FILE_SIZE, MAX_UINT32, MAX_PORT,
MAX_INT_DIGITS, MAX_TRANSFER_LINE_BYTES.

Helpers::

    split_fields(text: str) -> list[str]     # the quoted-field tokenizer
    quote(value: str) -> str                 # '"value"', checked
    ip_to_napster(address: str) -> int;  napster_to_ip(value: int) -> str
    is_valid_nick(nick: str) -> bool         # the Napster, Inc. nick alphabet (msg 10)

Text and bytes
==============

napster.txt says "the <data> portion of the message is a plain ASCII
string", but Napster-era clients sent file names in their local 8-bit code page
(Windows-1252 on the official client).  peerlab decodes and encodes payloads as
ISO-8859-1: every byte from 0x20 to 0xFF maps to one code point and back, so a
name a client sent survives byte for byte whatever its code page (a UTF-8 name
arrives as its UTF-8 bytes read as latin-1).  C0 control bytes other than TAB,
and DEL, are never part of a payload: they raise
:class:`~peerlab.errors.RemoteProtocolError`.  A ``str`` that does not fit
ISO-8859-1 cannot be encoded and raises
:class:`~peerlab.errors.LocalProtocolError`.

Fields are separated by one space (section 3); runs of spaces are tolerated,
as OpenNap does.  A quoted field runs to the next double quote: the protocol
has no escaping (section 2), so a double quote can never be part of a file
name, nick or phrase, and encoding one raises LocalProtocolError.

Errors
======

Garbage raises only :class:`~peerlab.errors.RemoteProtocolError`.  An
oversized frame header poisons the :class:`FrameDecoder` (the stream has lost
its framing: drop the connection).  A frame whose payload does not parse
costs only that message: the frame boundaries are intact, so a server may
answer with a 404 and carry on.  The error text of a bad search request is
OpenNap's own ("invalid search request"), ready to be sent back in a 404.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, NamedTuple

from peerlab.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "HEADER_BYTES",
    "MAX_FIELDS",
    "MAX_FILE_SIZE",
    "MAX_FILENAME_BYTES",
    "MAX_INT_DIGITS",
    "MAX_MD5_BYTES",
    "MAX_NICK_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_PORT",
    "MAX_SEARCH_RESULTS",
    "MAX_TRANSFER_LINE_BYTES",
    "MAX_UINT32",
    "FILE_NOT_SHARED",
    "INVALID_REQUEST",
    "TRANSFER_GET",
    "TRANSFER_READY",
    "TRANSFER_SEND",
    "TransferLine",
    "parse_transfer_line",
    "MESSAGE_TYPES",
    "AcceptFailed",
    "AlternateDownloadAck",
    "AlternateDownloadRequest",
    "BrowseEnd",
    "BrowseRequest",
    "BrowseResult",
    "ChangeDataPort",
    "ChangeLinkSpeed",
    "Compare",
    "Constraint",
    "DataPortError",
    "DownloadAck",
    "DownloadComplete",
    "DownloadRequest",
    "Downloading",
    "ErrorMessage",
    "Frame",
    "FrameDecoder",
    "GetError",
    "InvalidNick",
    "LinkSpeed",
    "LinkSpeedRequest",
    "LinkType",
    "Login",
    "LoginAck",
    "LoginError",
    "Message",
    "Motd",
    "NewUserLogin",
    "NickAlreadyRegistered",
    "NickCheck",
    "NickNotRegistered",
    "Ping",
    "Pong",
    "PrivateMessage",
    "QueueLimit",
    "QueueLimitNotice",
    "SearchEnd",
    "SearchField",
    "SearchQuery",
    "SearchRequest",
    "SearchResult",
    "ServerStats",
    "ServerStatsRequest",
    "ShareFile",
    "Unknown",
    "UnshareAll",
    "UnshareFile",
    "UploadAccept",
    "UploadComplete",
    "UploadRequest",
    "Uploading",
    "UserSignoff",
    "UserSignon",
    "WhoisRequest",
    "WhoisResponse",
    "WhowasResponse",
    "decode",
    "decode_frame",
    "encode",
    "encode_frame",
    "encode_payload",
    "ip_to_napster",
    "is_valid_nick",
    "napster_to_ip",
    "quote",
    "split_fields",
]

# ------------------------------------------------------------------ bounds

#: Bytes in a frame header: <length> and <type>, two bytes each, little-endian
#: (napster.txt section 2).
HEADER_BYTES = 4
#: Largest payload we accept or send.  The length field could say 65535, but
#: OpenNap servers refuse commands longer than 2048 bytes (napster.txt, 870);
#: twice that leaves room for a long 604 whois or MOTD line while a peer can
#: never make us buffer more than this per connection.
MAX_PAYLOAD_BYTES = 4096
#: Most fields in one payload.  OpenNap splits a command into at most 32
#: fields; 48 leaves room for a search with every constraint and several
#: FILENAME CONTAINS clauses, and bounds the work per message.
MAX_FIELDS = 48
#: Longest file name in a share, result, request or transfer line.  Windows'
#: MAX_PATH is 260; Unix clients share full paths, which run longer.  512 holds
#: both and keeps a 201 result under about 700 bytes.
MAX_FILENAME_BYTES = 512
#: Longest nick.  The Napster, Inc. servers allowed short nicks only (message
#: 10); OpenNap's default limit is smaller still.  The codec only refuses the
#: absurd; the server applies its own, tighter rule.
MAX_NICK_BYTES = 64
#: Longest <md5> field.  32 hex digits per section "MD5"; some clients append
#: "-<size>", and OpenNap without RESUME sends 32 zeros, so a word up to 64
#: bytes is accepted without checking its alphabet.
MAX_MD5_BYTES = 64
#: Results a server returns for one search at most ("if it is greater than
#: 100, the server will only return 100 results", message 200).
MAX_SEARCH_RESULTS = 100
#: Largest file size we accept: a signed 64-bit value.  Era clients used 32
#: bits; larger files are simply passed through.
MAX_FILE_SIZE = 2**63 - 1
#: Largest value of a 32-bit field (bitrate, frequency, duration, counts, ip).
MAX_UINT32 = 2**32 - 1
#: Largest TCP port.
MAX_PORT = 65535
#: Decimal digits in any integer field: 19 digits hold MAX_FILE_SIZE.
MAX_INT_DIGITS = 19

_HEADER = struct.Struct("<HH")
_EMPTY = b""

# C0 controls other than TAB, and DEL: never part of a payload (see module doc).
_BAD_BYTES_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_CHARS_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
# A payload is fields separated by spaces: a quoted field runs to the next
# double quote, a bare one to the next space.  Quotes never appear inside a
# bare field, and a field is followed by a space or the end.
_LINE_RE = re.compile(r' *(?:(?:"[^"]*"|[^ "]+)(?: +|\Z))*\Z')
_FIELD_RE = re.compile(r'"([^"]*)"|([^ "]+)')
# OpenNap's word characters for keyword matching (search.c: alnum and ').
_WORD_RE = re.compile(r"[0-9A-Za-z']+")
# Message 10: the nick alphabet of the Napster, Inc. servers.
_NICK_RE = re.compile(r"[A-Za-z0-9_\[\]{}\-@^!$]+")


def _remote(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message)


# ------------------------------------------------------------------ framing


class Frame(NamedTuple):
    """One frame: <type> and the raw <data> (napster.txt section 2)."""

    type: int
    payload: bytes


def encode_frame(type: int, payload: bytes) -> bytes:
    """<length><type><data> with both numbers little-endian (section 2)."""
    if not 0 <= type <= 0xFFFF:
        raise LocalProtocolError(f"napster message type {type} does not fit 16 bits")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise LocalProtocolError(
            f"napster payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    return _HEADER.pack(len(payload), type) + payload


class FrameDecoder:
    """Splits a byte stream into frames; feed it whole or one byte at a time.

    At most one partial frame (``HEADER_BYTES + max_payload`` bytes) is ever
    buffered.  A header announcing more than ``max_payload`` bytes raises
    :class:`RemoteProtocolError` and poisons the decoder: the stream has lost
    its framing, so every later :meth:`feed` raises too.
    """

    __slots__ = ("_buf", "_max", "_error")

    def __init__(self, max_payload: int = MAX_PAYLOAD_BYTES) -> None:
        if not 0 <= max_payload <= 0xFFFF:
            raise ValueError("max_payload must be between 0 and 65535")
        self._buf = bytearray()
        self._max = max_payload
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data``; return every frame it completes, in order."""
        if self._error is not None:
            raise _remote(self._error)
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        size = len(buf)
        pos = 0
        unpack = _HEADER.unpack_from
        limit = self._max
        while size - pos >= HEADER_BYTES:
            length, mtype = unpack(buf, pos)
            if length > limit:
                self._error = (
                    f"napster frame of {length} bytes (type {mtype}) exceeds {limit}"
                )
                buf.clear()
                raise _remote(self._error)
            end = pos + HEADER_BYTES + length
            if end > size:
                break
            frames.append(Frame(mtype, bytes(buf[pos + HEADER_BYTES : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    def check_eof(self) -> None:
        """The peer closed: raise if it left a frame cut short."""
        if self._buf:
            raise _remote(f"napster stream ended inside a frame ({len(self._buf)} bytes)")


# ------------------------------------------------------------------ tokens


def split_fields(text: str) -> list[str]:
    """The fields of a payload, quotes removed (napster.txt section 2 and 3).

    ``'foo "nap v0.8" 3'`` gives ``['foo', 'nap v0.8', '3']``.  An unterminated
    quote, a quote inside a bare field or more than :data:`MAX_FIELDS` fields
    raise :class:`RemoteProtocolError`.
    """
    if _LINE_RE.match(text) is None:
        raise _remote(f"malformed napster fields: {text[:80]!r}")
    fields = [q or w for q, w in _FIELD_RE.findall(text)]
    if len(fields) > MAX_FIELDS:
        raise _remote(f"napster message has {len(fields)} fields, more than {MAX_FIELDS}")
    return fields


def quote(value: str) -> str:
    """``value`` in double quotes; it must not contain one (no escaping exists)."""
    if '"' in value:
        raise LocalProtocolError(f"a napster quoted field cannot contain '\"': {value[:80]!r}")
    return f'"{value}"'


def ip_to_napster(address: str) -> int:
    """A dotted IPv4 address as Napster writes it (messages 201, 204, 501).

    The "unsigned long integer" is the address's four bytes in network order
    read as a little-endian number (the ``s_addr`` of an x86 host printed with
    ``%u``): ``127.0.0.1`` is ``16777343``.
    """
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        raise ValueError(f"not an IPv4 address: {address!r}")
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        raise ValueError(f"not an IPv4 address: {address!r}")
    return octets[0] | octets[1] << 8 | octets[2] << 16 | octets[3] << 24


def napster_to_ip(value: int) -> str:
    """The dotted IPv4 address of a Napster ip number (see :func:`ip_to_napster`)."""
    if not 0 <= value <= MAX_UINT32:
        raise ValueError(f"napster ip {value} does not fit 32 bits")
    return f"{value & 255}.{value >> 8 & 255}.{value >> 16 & 255}.{value >> 24 & 255}"


def is_valid_nick(nick: str) -> bool:
    """Is ``nick`` made of the Napster, Inc. alphabet (message 10) and short enough?"""
    return 0 < len(nick) <= MAX_NICK_BYTES and _NICK_RE.fullmatch(nick) is not None


# ------------------------------------------------------------------ link types


class LinkType(IntEnum):
    """<link-type> of message 2: the user's declared bandwidth."""

    UNKNOWN = 0
    K14_4 = 1
    K28_8 = 2
    K33_6 = 3
    K56 = 4
    ISDN_64K = 5
    ISDN_128K = 6
    CABLE = 7
    DSL = 8
    T1 = 9
    T3 = 10

    @property
    def label(self) -> str:
        """The speed as the Napster client's transfer and result lists showed it."""
        return _LINK_LABELS[self]


_LINK_LABELS = {
    LinkType.UNKNOWN: "Unknown",
    LinkType.K14_4: "14.4",
    LinkType.K28_8: "28.8",
    LinkType.K33_6: "33.6",
    LinkType.K56: "56K",
    LinkType.ISDN_64K: "ISDN-64K",
    LinkType.ISDN_128K: "ISDN-128K",
    LinkType.CABLE: "Cable",
    LinkType.DSL: "DSL",
    LinkType.T1: "T1",
    LinkType.T3: "T3+",
}
_LINKS = tuple(LinkType)


# ------------------------------------------------------------------ field codecs
# Decoders take the field text (quotes removed) and raise RemoteProtocolError;
# encoders take the value and raise LocalProtocolError.


def _d_nick(s: str) -> str:
    if not s or len(s) > MAX_NICK_BYTES or " " in s or '"' in s:
        raise _remote(f"bad napster nick {s[:80]!r}")
    return s


def _e_nick(v: str) -> str:
    if not v or len(v) > MAX_NICK_BYTES or " " in v or '"' in v:
        raise LocalProtocolError(f"bad napster nick {v[:80]!r}")
    return v


def _d_word(s: str) -> str:
    if not s or " " in s:
        raise _remote(f"bad napster field {s[:80]!r}")
    return s


def _e_word(v: str) -> str:
    if not v or " " in v or '"' in v:
        raise LocalProtocolError(f"bad napster field {v[:80]!r}")
    return v


def _d_md5(s: str) -> str:
    if not s or len(s) > MAX_MD5_BYTES or " " in s:
        raise _remote(f"bad napster md5 {s[:80]!r}")
    return s


def _e_md5(v: str) -> str:
    if not v or len(v) > MAX_MD5_BYTES or " " in v or '"' in v:
        raise LocalProtocolError(f"bad napster md5 {v[:80]!r}")
    return v


def _d_filename(s: str) -> str:
    if not s or len(s) > MAX_FILENAME_BYTES:
        raise _remote(f"bad napster filename {s[:80]!r}")
    return s


def _e_filename(v: str) -> str:
    if not v or len(v) > MAX_FILENAME_BYTES:
        raise LocalProtocolError(f"bad napster filename {v[:80]!r}")
    return quote(v)


def _d_text(s: str) -> str:
    return s


def _e_quoted(v: str) -> str:
    return quote(v)


def _uint_decoder(maximum: int, what: str) -> Callable[[str], int]:
    def dec(s: str) -> int:
        if not s or len(s) > MAX_INT_DIGITS or not (s.isascii() and s.isdigit()):
            raise _remote(f"bad napster {what} {s[:80]!r}")
        value = int(s)
        if value > maximum:
            raise _remote(f"napster {what} {value} out of range")
        return value

    return dec


def _uint_encoder(maximum: int, what: str) -> Callable[[int], str]:
    def enc(v: int) -> str:
        if not isinstance(v, int):
            raise LocalProtocolError(f"napster {what} must be an int, not {v!r}")
        if not 0 <= v <= maximum:
            raise LocalProtocolError(f"napster {what} {v} out of range")
        return str(int(v))

    return enc


def _d_sint(s: str) -> int:
    body = s[1:] if s[:1] in ("-", "+") else s
    if not body or len(body) > MAX_INT_DIGITS or not (body.isascii() and body.isdigit()):
        raise _remote(f"bad napster number {s[:80]!r}")
    return int(s)


def _e_sint(v: int) -> str:
    if not -(2**63) <= v < 2**63:
        raise LocalProtocolError(f"napster number {v} out of range")
    return str(int(v))


def _d_link(s: str) -> LinkType:
    if len(s) > 2 or not (s.isascii() and s.isdigit()) or int(s) > 10:
        raise _remote(f"bad napster link type {s[:80]!r}")
    return _LINKS[int(s)]


def _e_link(v: int) -> str:
    if not 0 <= v <= 10:
        raise LocalProtocolError(f"napster link type {v} out of range")
    return str(int(v))


_d_size = _uint_decoder(MAX_FILE_SIZE, "size")
_e_size = _uint_encoder(MAX_FILE_SIZE, "size")
_d_u32 = _uint_decoder(MAX_UINT32, "number")
_e_u32 = _uint_encoder(MAX_UINT32, "number")
_d_port = _uint_decoder(MAX_PORT, "port")
_e_port = _uint_encoder(MAX_PORT, "port")


class _F(NamedTuple):
    """One field of a message: attribute name, wire decoder, wire encoder."""

    name: str
    dec: Callable[[str], Any]
    enc: Callable[[Any], str]


_NICK = (_d_nick, _e_nick)
_WORD = (_d_word, _e_word)
_MD5 = (_d_md5, _e_md5)
_FILENAME = (_d_filename, _e_filename)
_QUOTED = (_d_text, _e_quoted)
_SIZE = (_d_size, _e_size)
_U32 = (_d_u32, _e_u32)
_PORT = (_d_port, _e_port)
_LINK = (_d_link, _e_link)
_SINT = (_d_sint, _e_sint)


def _f(name: str, codec: tuple[Callable[[str], Any], Callable[[Any], str]]) -> _F:
    return _F(name, codec[0], codec[1])


# ------------------------------------------------------------------ messages


class Message:
    """Base of every Napster message: ``TYPE`` and the payload codec.

    A subclass lists its fields in ``_SPEC`` (spec order); the first
    ``_REQUIRED`` are mandatory, the rest optional and trailing (``None`` when
    absent).  Messages whose payload is free text override the two methods.
    """

    __slots__ = ()
    TYPE: ClassVar[int]
    _SPEC: ClassVar[tuple[_F, ...]] = ()
    _REQUIRED: ClassVar[int] = 0

    def to_payload(self) -> str:
        """The <data> part as text (encode it as latin-1 to send)."""
        out: list[str] = []
        seen_none = False
        for field in self._SPEC:
            value = getattr(self, field.name)
            if value is None:
                seen_none = True
                continue
            if seen_none:
                raise LocalProtocolError(
                    f"{type(self).__name__}.{field.name} given but an earlier optional "
                    "field is missing"
                )
            out.append(field.enc(value))
        return " ".join(out)

    @classmethod
    def from_payload(cls, text: str) -> Message:
        """Parse the <data> part (already latin-1 decoded and control-free)."""
        return cls(*_parse_spec(cls, text))


def _parse_spec(cls: type[Message], text: str) -> list[Any]:
    """The decoded field values of ``text`` per ``cls._SPEC``."""
    spec = cls._SPEC
    if not spec:
        if text.strip(" "):
            raise _remote(f"napster message {cls.TYPE} carries no data, got {text[:80]!r}")
        return []
    fields = split_fields(text)
    if not cls._REQUIRED <= len(fields) <= len(spec):
        raise _remote(
            f"napster message {cls.TYPE} needs {cls._REQUIRED}..{len(spec)} fields, "
            f"got {len(fields)}"
        )
    return [f.dec(v) for f, v in zip(spec, fields, strict=False)]


def _rest_after_nick(cls: type[Message], text: str) -> tuple[str, str]:
    nick, sep, rest = text.lstrip(" ").partition(" ")
    if not nick:
        raise _remote(f"napster message {cls.TYPE} needs a nick")
    return _d_nick(nick), rest


@dataclass(frozen=True, slots=True)
class LoginError(Message):
    """0, error message (sent only during login)."""

    TYPE: ClassVar[int] = 0
    message: str

    def to_payload(self) -> str:
        return self.message

    @classmethod
    def from_payload(cls, text: str) -> LoginError:
        return cls(text)


@dataclass(frozen=True, slots=True)
class Login(Message):
    """2, login: ``<nick> <password> <port> "<client-info>" <link-type> [<build>]``.

    ``port`` 0 means firewalled: downloads from this user go through 500/501.
    """

    TYPE: ClassVar[int] = 2
    nick: str
    password: str
    port: int
    client_info: str
    link_type: LinkType
    build: str | None = None
    _SPEC = (
        _f("nick", _NICK),
        _f("password", _WORD),
        _f("port", _PORT),
        _f("client_info", _QUOTED),
        _f("link_type", _LINK),
        _f("build", _WORD),
    )
    _REQUIRED = 5


@dataclass(frozen=True, slots=True)
class LoginAck(Message):
    """3, login ack: ``<email>`` (a dummy value for unregistered nicks)."""

    TYPE: ClassVar[int] = 3
    email: str

    def to_payload(self) -> str:
        return self.email

    @classmethod
    def from_payload(cls, text: str) -> LoginAck:
        return cls(text)


@dataclass(frozen=True, slots=True)
class NewUserLogin(Message):
    """6, new user login: message 2's fields plus ``<email-address>``."""

    TYPE: ClassVar[int] = 6
    nick: str
    password: str
    port: int
    client_info: str
    link_type: LinkType
    email: str
    _SPEC = (
        _f("nick", _NICK),
        _f("password", _WORD),
        _f("port", _PORT),
        _f("client_info", _QUOTED),
        _f("link_type", _LINK),
        _f("email", _WORD),
    )
    _REQUIRED = 6


@dataclass(frozen=True, slots=True)
class NickCheck(Message):
    """7, nick check: is ``<nick>`` registered?  Answered by 8, 9 or 10."""

    TYPE: ClassVar[int] = 7
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class NickNotRegistered(Message):
    """8, nickname not registered (free to use)."""

    TYPE: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class NickAlreadyRegistered(Message):
    """9, nickname already registered."""

    TYPE: ClassVar[int] = 9


@dataclass(frozen=True, slots=True)
class InvalidNick(Message):
    """10, invalid nickname."""

    TYPE: ClassVar[int] = 10


# Fast paths for the two messages that come by the million (100 shares, 201
# results) in the form every client and server writes: single spaces, plain
# digits.  Anything else takes the general path, which accepts more.
_SHARE_FAST = (
    rf'"([^"]{{1,{MAX_FILENAME_BYTES}}})" ([^ "]{{1,{MAX_MD5_BYTES}}}) '
    rf"([0-9]{{1,{MAX_INT_DIGITS}}}) ([0-9]{{1,10}}) ([0-9]{{1,10}}) ([0-9]{{1,10}})"
)
_SHARE_FAST_RE = re.compile(_SHARE_FAST)
_RESULT_FAST_RE = re.compile(
    _SHARE_FAST + rf' ([^ "]{{1,{MAX_NICK_BYTES}}}) ([0-9]{{1,10}}) ([0-9]|10)'
)


def _fast_ints(values: tuple[int, ...]) -> bool:
    """Do the fast path's size and 32-bit fields fit their bounds?"""
    size, bitrate, frequency, duration = values
    return (
        size <= MAX_FILE_SIZE
        and bitrate <= MAX_UINT32
        and frequency <= MAX_UINT32
        and duration <= MAX_UINT32
    )


_SHARE_SPEC = (
    _f("filename", _FILENAME),
    _f("md5", _MD5),
    _f("size", _SIZE),
    _f("bitrate", _U32),
    _f("frequency", _U32),
    _f("duration", _U32),
)


@dataclass(frozen=True, slots=True)
class ShareFile(Message):
    """100, share a file: ``"<filename>" <md5> <size> <bitrate> <frequency> <time>``.

    ``size`` in bytes, ``bitrate`` in kbps, ``frequency`` in Hz, ``duration``
    (the spec's <time>) in seconds.
    """

    TYPE: ClassVar[int] = 100
    filename: str
    md5: str
    size: int
    bitrate: int
    frequency: int
    duration: int
    _SPEC = _SHARE_SPEC
    _REQUIRED = 6

    @classmethod
    def from_payload(cls, text: str) -> Message:
        m = _SHARE_FAST_RE.fullmatch(text)
        if m is not None:
            fn, md5, size, bitrate, frequency, duration = m.groups()
            ints = (int(size), int(bitrate), int(frequency), int(duration))
            if _fast_ints(ints):
                return cls(fn, md5, *ints)
        return cls(*_parse_spec(cls, text))


@dataclass(frozen=True, slots=True)
class UnshareFile(Message):
    """102, remove a file from the shared library: ``<filename>``.

    Sent quoted (as OpenNap parses it); an unquoted name is accepted whole.
    """

    TYPE: ClassVar[int] = 102
    filename: str

    def to_payload(self) -> str:
        return _e_filename(self.filename)

    @classmethod
    def from_payload(cls, text: str) -> UnshareFile:
        if text.lstrip(" ").startswith('"'):
            fields = split_fields(text)
            if len(fields) != 1:
                raise _remote("napster message 102 carries one filename")
            return cls(_d_filename(fields[0]))
        if '"' in text:
            raise _remote(f"bad napster filename {text[:80]!r}")
        return cls(_d_filename(text))


@dataclass(frozen=True, slots=True)
class UnshareAll(Message):
    """110, unshare all files."""

    TYPE: ClassVar[int] = 110


# ------------------------------------------------------------------ search grammar


class Compare(StrEnum):
    """<compare> of message 200 (sent quoted)."""

    AT_LEAST = "AT LEAST"
    AT_BEST = "AT BEST"
    EQUAL_TO = "EQUAL TO"


class SearchField(StrEnum):
    """The numeric attributes a search can constrain (message 200; SIZE and
    DURATION as opennap-ng accepts them)."""

    LINESPEED = "LINESPEED"
    BITRATE = "BITRATE"
    FREQ = "FREQ"
    SIZE = "SIZE"
    DURATION = "DURATION"


# OpenNap 0.x spelled AT BEST "AT MOST" for bitrate and frequency; accept both.
_COMPARES = {
    "at least": Compare.AT_LEAST,
    "at best": Compare.AT_BEST,
    "at most": Compare.AT_BEST,
    "equal to": Compare.EQUAL_TO,
}
_SEARCH_FIELDS = {f.value.lower(): f for f in SearchField}
_FIELD_MAX = {
    SearchField.LINESPEED: 10,
    SearchField.BITRATE: MAX_UINT32,
    SearchField.FREQ: MAX_UINT32,
    SearchField.SIZE: MAX_FILE_SIZE,
    SearchField.DURATION: MAX_UINT32,
}
# The spec's examples quote BITRATE and FREQ values, not LINESPEED's.
_QUOTED_VALUE = frozenset({SearchField.BITRATE, SearchField.FREQ})
_INVALID_SEARCH = "invalid search request"


@dataclass(frozen=True, slots=True)
class Constraint:
    """One ``<FIELD> "<compare>" <value>`` clause of a search."""

    field: SearchField
    compare: Compare
    value: int

    def admits(self, actual: int) -> bool:
        """Does a file (or user, for LINESPEED) with ``actual`` satisfy it?"""
        if self.compare is Compare.AT_LEAST:
            return actual >= self.value
        if self.compare is Compare.AT_BEST:
            return actual <= self.value
        return actual == self.value

    def to_payload(self) -> str:
        if not 0 <= self.value <= _FIELD_MAX[self.field]:
            raise LocalProtocolError(f"{self.field} value {self.value} out of range")
        value = str(int(self.value))
        if self.field in _QUOTED_VALUE:
            value = f'"{value}"'
        return f'{self.field.value} "{self.compare.value}" {value}'


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """The search grammar of message 200, as OpenNap and opennap-ng parse it::

        [FILENAME CONTAINS "<words>"]... [MAX_RESULTS <max>]
        [LINESPEED|BITRATE|FREQ|SIZE|DURATION "<compare>" <value>]...
        [FILENAME EXCLUDES "<words>"]... [TYPE <type>] [LOCAL_ONLY]

    Clauses come in any order and keywords in any case; several FILENAME
    CONTAINS clauses are ANDed.  ``contains`` keeps each clause's text as sent;
    :meth:`keywords` gives the words a server matches.  ``max_results`` is what
    the client asked for (servers cap it at :data:`MAX_SEARCH_RESULTS`).
    Encoding writes the clauses in the order above, which every server parses.
    """

    contains: tuple[str, ...] = ()
    max_results: int | None = None
    constraints: tuple[Constraint, ...] = ()
    excludes: tuple[str, ...] = ()
    content_type: str | None = None
    local_only: bool = False

    def bounds(self, field: SearchField) -> tuple[int, int | None]:
        """The (lowest, highest or None) value every constraint on ``field`` allows."""
        low, high = 0, None
        for c in self.constraints:
            if c.field is not field:
                continue
            if c.compare is not Compare.AT_BEST:
                low = max(low, c.value)
            if c.compare is not Compare.AT_LEAST:
                high = c.value if high is None else min(high, c.value)
        return low, high

    def admits(
        self, *, linespeed: int, bitrate: int, freq: int, size: int, duration: int
    ) -> bool:
        """Do the numeric constraints admit a file with these attributes?"""
        actual = {
            SearchField.LINESPEED: linespeed,
            SearchField.BITRATE: bitrate,
            SearchField.FREQ: freq,
            SearchField.SIZE: size,
            SearchField.DURATION: duration,
        }
        return all(c.admits(actual[c.field]) for c in self.constraints)

    def keywords(self) -> tuple[str, ...]:
        """The lower-cased words of every FILENAME CONTAINS clause, each once,
        split as OpenNap's tokenizer does (letters, digits and apostrophes)."""
        return _words(self.contains)

    def excluded_keywords(self) -> tuple[str, ...]:
        """The lower-cased words of every FILENAME EXCLUDES clause, each once."""
        return _words(self.excludes)

    def to_payload(self) -> str:
        parts = [f"FILENAME CONTAINS {quote(p)}" for p in self.contains]
        if self.max_results is not None:
            parts.append(f"MAX_RESULTS {_e_u32(self.max_results)}")
        parts.extend(c.to_payload() for c in self.constraints)
        parts.extend(f"FILENAME EXCLUDES {quote(p)}" for p in self.excludes)
        if self.content_type is not None:
            parts.append(f"TYPE {_e_word(self.content_type)}")
        if self.local_only:
            parts.append("LOCAL_ONLY")
        return " ".join(parts)

    @classmethod
    def parse(cls, text: str) -> SearchQuery:
        """Parse a 200 payload; garbage raises RemoteProtocolError("invalid search request")."""
        try:
            fields = split_fields(text)
        except RemoteProtocolError:
            raise _remote(_INVALID_SEARCH) from None
        contains: list[str] = []
        excludes: list[str] = []
        constraints: list[Constraint] = []
        max_results: int | None = None
        content_type: str | None = None
        local_only = False
        i, n = 0, len(fields)
        while i < n:
            key = fields[i].lower()
            if key == "filename":
                if i + 2 >= n:
                    raise _remote(_INVALID_SEARCH)
                op = fields[i + 1].lower()
                phrase = fields[i + 2]
                if op == "contains":
                    contains.append(phrase)
                elif op == "excludes":
                    excludes.append(phrase)
                else:
                    raise _remote(_INVALID_SEARCH)
                i += 3
            elif key == "max_results":
                if i + 1 >= n:
                    raise _remote(_INVALID_SEARCH)
                max_results = _search_int(fields[i + 1], MAX_UINT32)
                i += 2
            elif key in _SEARCH_FIELDS:
                if i + 2 >= n:
                    raise _remote(_INVALID_SEARCH)
                field = _SEARCH_FIELDS[key]
                compare = _COMPARES.get(fields[i + 1].lower())
                if compare is None:
                    raise _remote(f"{fields[i + 1][:40]}: invalid comparison for search")
                value = _search_int(fields[i + 2], _FIELD_MAX[field])
                constraints.append(Constraint(field, compare, value))
                i += 3
            elif key == "type":
                if i + 1 >= n or not fields[i + 1] or " " in fields[i + 1]:
                    raise _remote(_INVALID_SEARCH)
                content_type = fields[i + 1]
                i += 2
            elif key in ("local_only", "local"):
                local_only = True
                i += 1
            else:
                raise _remote(_INVALID_SEARCH)
        return cls(
            tuple(contains), max_results, tuple(constraints), tuple(excludes),
            content_type, local_only,
        )


def _search_int(s: str, maximum: int) -> int:
    if not s or len(s) > MAX_INT_DIGITS or not (s.isascii() and s.isdigit()):
        raise _remote(_INVALID_SEARCH)
    value = int(s)
    if value > maximum:
        raise _remote(_INVALID_SEARCH)
    return value


def _words(phrases: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for phrase in phrases:
        for word in _WORD_RE.findall(phrase):
            seen.setdefault(word.lower(), None)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class SearchRequest(Message):
    """200, client search request (see :class:`SearchQuery` for the grammar)."""

    TYPE: ClassVar[int] = 200
    query: SearchQuery

    def to_payload(self) -> str:
        return self.query.to_payload()

    @classmethod
    def from_payload(cls, text: str) -> SearchRequest:
        return cls(SearchQuery.parse(text))


@dataclass(frozen=True, slots=True)
class SearchResult(Message):
    """201, search response::

        "<filename>" <md5> <size> <bitrate> <frequency> <length> <nick> <ip> <link-type> [weight]

    ``ip`` is the Napster ip number (:func:`napster_to_ip`); ``duration`` is the
    spec's <length> in seconds; ``weight`` orders results (higher is better).
    """

    TYPE: ClassVar[int] = 201
    filename: str
    md5: str
    size: int
    bitrate: int
    frequency: int
    duration: int
    nick: str
    ip: int
    link_type: LinkType
    weight: int | None = None
    _SPEC = (
        *_SHARE_SPEC,
        _f("nick", _NICK),
        _f("ip", _U32),
        _f("link_type", _LINK),
        _f("weight", _SINT),
    )
    _REQUIRED = 9

    @classmethod
    def from_payload(cls, text: str) -> Message:
        m = _RESULT_FAST_RE.fullmatch(text)
        if m is not None:
            fn, md5, size, bitrate, frequency, duration, nick, ip, link = m.groups()
            ints = (int(size), int(bitrate), int(frequency), int(duration))
            address = int(ip)
            if _fast_ints(ints) and address <= MAX_UINT32:
                return cls(fn, md5, *ints, nick, address, _LINKS[int(link)])
        return cls(*_parse_spec(cls, text))

    def to_payload(self) -> str:
        # The hot path of a search: formatted in one go, fields checked inline.
        fn = self.filename
        if not fn or len(fn) > MAX_FILENAME_BYTES or '"' in fn:
            raise LocalProtocolError(f"bad napster filename {fn[:80]!r}")
        text = (
            f'"{fn}" {_e_md5(self.md5)} {_e_size(self.size)} {_e_u32(self.bitrate)} '
            f"{_e_u32(self.frequency)} {_e_u32(self.duration)} {_e_nick(self.nick)} "
            f"{_e_u32(self.ip)} {_e_link(self.link_type)}"
        )
        if self.weight is not None:
            text += " " + _e_sint(self.weight)
        return text


@dataclass(frozen=True, slots=True)
class SearchEnd(Message):
    """202, end of search results."""

    TYPE: ClassVar[int] = 202


@dataclass(frozen=True, slots=True)
class DownloadRequest(Message):
    """203, download request: ``<nick> "<filename>"``."""

    TYPE: ClassVar[int] = 203
    nick: str
    filename: str
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME))
    _REQUIRED = 2


_ACK_SPEC = (
    _f("nick", _NICK),
    _f("ip", _U32),
    _f("port", _PORT),
    _f("filename", _FILENAME),
    _f("md5", _MD5),
    _f("link_type", _LINK),
)


@dataclass(frozen=True, slots=True)
class DownloadAck(Message):
    """204, download ack: ``<nick> <ip> <port> "<filename>" <md5> <linespeed>``.

    ``port`` 0: the sharer is firewalled; ask for a push with 500.
    """

    TYPE: ClassVar[int] = 204
    nick: str
    ip: int
    port: int
    filename: str
    md5: str
    link_type: LinkType
    _SPEC = _ACK_SPEC
    _REQUIRED = 6


@dataclass(frozen=True, slots=True)
class PrivateMessage(Message):
    """205, private message to/from another user: ``<nick> <message>``."""

    TYPE: ClassVar[int] = 205
    nick: str
    text: str

    def to_payload(self) -> str:
        return f"{_e_nick(self.nick)} {self.text}"

    @classmethod
    def from_payload(cls, text: str) -> PrivateMessage:
        nick, rest = _rest_after_nick(cls, text)
        return cls(nick, rest)


@dataclass(frozen=True, slots=True)
class GetError(Message):
    """206, get error: ``<nick> "<filename>"`` is not available."""

    TYPE: ClassVar[int] = 206
    nick: str
    filename: str
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class UserSignon(Message):
    """209, user signon (hotlist): ``<user> <speed>``."""

    TYPE: ClassVar[int] = 209
    nick: str
    link_type: LinkType
    _SPEC = (_f("nick", _NICK), _f("link_type", _LINK))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class UserSignoff(Message):
    """210, user signoff; also the answer to a browse of an unknown user."""

    TYPE: ClassVar[int] = 210
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class BrowseRequest(Message):
    """211, browse a user's files: ``<nick>``."""

    TYPE: ClassVar[int] = 211
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class BrowseResult(Message):
    """212, browse response: ``<nick> "<filename>" <md5> <size> <bitrate> <frequency> <time>``."""

    TYPE: ClassVar[int] = 212
    nick: str
    filename: str
    md5: str
    size: int
    bitrate: int
    frequency: int
    duration: int
    _SPEC = (_f("nick", _NICK), *_SHARE_SPEC)
    _REQUIRED = 7


@dataclass(frozen=True, slots=True)
class BrowseEnd(Message):
    """213, end of browse list: ``<nick> [ip]`` (``ip`` is the browsed user's)."""

    TYPE: ClassVar[int] = 213
    nick: str
    ip: int | None = None
    _SPEC = (_f("nick", _NICK), _f("ip", _U32))
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class ServerStatsRequest(Message):
    """214 from a client: no data."""

    TYPE: ClassVar[int] = 214


@dataclass(frozen=True, slots=True)
class ServerStats(Message):
    """214 from the server: ``<users> <# files> <size>`` (size in gigabytes)."""

    TYPE: ClassVar[int] = 214
    users: int
    files: int
    gigabytes: int
    _SPEC = (_f("users", _U32), _f("files", _U32), _f("gigabytes", _U32))
    _REQUIRED = 3

    @classmethod
    def from_payload(cls, text: str) -> Message:
        if not text.strip(" "):
            return ServerStatsRequest()
        return cls(*_parse_spec(cls, text))


@dataclass(frozen=True, slots=True)
class Downloading(Message):
    """218, downloading file: one more download in progress (no data)."""

    TYPE: ClassVar[int] = 218


@dataclass(frozen=True, slots=True)
class DownloadComplete(Message):
    """219, download complete (no data)."""

    TYPE: ClassVar[int] = 219


@dataclass(frozen=True, slots=True)
class Uploading(Message):
    """220, uploading file: one more upload in progress (no data)."""

    TYPE: ClassVar[int] = 220


@dataclass(frozen=True, slots=True)
class UploadComplete(Message):
    """221, upload complete (no data)."""

    TYPE: ClassVar[int] = 221


@dataclass(frozen=True, slots=True)
class ErrorMessage(Message):
    """404, error message to a logged-in client: ``<text>``."""

    TYPE: ClassVar[int] = 404
    text: str

    def to_payload(self) -> str:
        return self.text

    @classmethod
    def from_payload(cls, text: str) -> ErrorMessage:
        return cls(text)


@dataclass(frozen=True, slots=True)
class AlternateDownloadRequest(Message):
    """500, alternate (firewalled) download request: ``<nick> "<filename>"``:
    ask ``nick`` to connect out to us and SEND the file."""

    TYPE: ClassVar[int] = 500
    nick: str
    filename: str
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class AlternateDownloadAck(Message):
    """501, alternate download ack, to the firewalled sharer:
    ``<nick> <ip> <port> "<filename>" <md5> <speed>`` of the downloader."""

    TYPE: ClassVar[int] = 501
    nick: str
    ip: int
    port: int
    filename: str
    md5: str
    link_type: LinkType
    _SPEC = _ACK_SPEC
    _REQUIRED = 6


@dataclass(frozen=True, slots=True)
class LinkSpeedRequest(Message):
    """600, request a user's link speed: ``<nick>``."""

    TYPE: ClassVar[int] = 600
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class LinkSpeed(Message):
    """601, link speed response: ``<nick> <linespeed>``."""

    TYPE: ClassVar[int] = 601
    nick: str
    link_type: LinkType
    _SPEC = (_f("nick", _NICK), _f("link_type", _LINK))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class WhoisRequest(Message):
    """603, whois request: ``<nick>``."""

    TYPE: ClassVar[int] = 603
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class WhoisResponse(Message):
    """604, whois response::

        <nick> "<user-level>" <time> "<channels>" "<status>" <shared> <downloads>
        <uploads> <link-type> "<client-info>" [<total downloads> <total uploads>
        <ip> <connecting port> <data port> <email> [<server>]]

    ``online_seconds`` is <time>; ``status`` is "Active" or "Remote" (on another
    server of the farm).  The six bracketed fields go to moderators and above:
    all or none of them.  OpenNap adds a seventeenth, the user's server, for
    admins (``server``).  The total counts come in the spec's order; OpenNap
    versions disagree on it.
    """

    TYPE: ClassVar[int] = 604
    nick: str
    level: str
    online_seconds: int
    channels: str
    status: str
    shared: int
    downloads: int
    uploads: int
    link_type: LinkType
    client_info: str
    total_downloads: int | None = None
    total_uploads: int | None = None
    ip: str | None = None
    connecting_port: int | None = None
    data_port: int | None = None
    email: str | None = None
    server: str | None = None
    _SPEC = (
        _f("nick", _NICK),
        _f("level", _QUOTED),
        _f("online_seconds", _U32),
        _f("channels", _QUOTED),
        _f("status", _QUOTED),
        _f("shared", _U32),
        _f("downloads", _U32),
        _f("uploads", _U32),
        _f("link_type", _LINK),
        _f("client_info", _QUOTED),
        _f("total_downloads", _U32),
        _f("total_uploads", _U32),
        _f("ip", _WORD),
        _f("connecting_port", _PORT),
        _f("data_port", _PORT),
        _f("email", _WORD),
        _f("server", _WORD),
    )
    _REQUIRED = 10

    def to_payload(self) -> str:
        extras = (
            self.total_downloads, self.total_uploads, self.ip,
            self.connecting_port, self.data_port, self.email,
        )
        if any(v is None for v in extras) and any(v is not None for v in extras):
            raise LocalProtocolError("604 whois: give all six moderator fields or none")
        if self.server is not None and self.email is None:
            raise LocalProtocolError("604 whois: the server field comes after the six others")
        return Message.to_payload(self)

    @classmethod
    def from_payload(cls, text: str) -> WhoisResponse:
        values = _parse_spec(cls, text)
        if len(values) not in (10, 16, 17):
            raise _remote("napster 604 whois carries 10, 16 or 17 fields")
        return cls(*values)


@dataclass(frozen=True, slots=True)
class WhowasResponse(Message):
    """605, whowas response: ``<user> <level> <last-seen>`` (a UNIX time)."""

    TYPE: ClassVar[int] = 605
    nick: str
    level: str
    last_seen: int
    _SPEC = (_f("nick", _NICK), _f("level", _WORD), _f("last_seen", _U32))
    _REQUIRED = 3


@dataclass(frozen=True, slots=True)
class UploadRequest(Message):
    """607, upload request, to the sharer: ``<nick> "<filename>" [<speed>]``:
    ``nick`` wants ``filename``; accept with 608.  (The downloader's speed
    was added on 2000-12-28.)"""

    TYPE: ClassVar[int] = 607
    nick: str
    filename: str
    link_type: LinkType | None = None
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME), _f("link_type", _LINK))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class UploadAccept(Message):
    """608, accept upload request: ``<nick> "<filename>"``."""

    TYPE: ClassVar[int] = 608
    nick: str
    filename: str
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class AcceptFailed(Message):
    """609, accept failed: the sharer did not accept ``<nick> "<filename>"``."""

    TYPE: ClassVar[int] = 609
    nick: str
    filename: str
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True)
class QueueLimit(Message):
    """619, queue limit, from the sharer: ``<nick> "<filename>" <n>``."""

    TYPE: ClassVar[int] = 619
    nick: str
    filename: str
    limit: int
    _SPEC = (_f("nick", _NICK), _f("filename", _FILENAME), _f("limit", _U32))
    _REQUIRED = 3


@dataclass(frozen=True, slots=True)
class QueueLimitNotice(Message):
    """620, queue limit, to the downloader: ``<nick> "<filename>" <filesize> <n>``."""

    TYPE: ClassVar[int] = 620
    nick: str
    filename: str
    size: int
    limit: int
    _SPEC = (
        _f("nick", _NICK),
        _f("filename", _FILENAME),
        _f("size", _SIZE),
        _f("limit", _U32),
    )
    _REQUIRED = 4


@dataclass(frozen=True, slots=True)
class Motd(Message):
    """621, message of the day: one line of text per message from the server;
    empty from a client, it asks for the MOTD again."""

    TYPE: ClassVar[int] = 621
    text: str = ""

    def to_payload(self) -> str:
        return self.text

    @classmethod
    def from_payload(cls, text: str) -> Motd:
        return cls(text)


@dataclass(frozen=True, slots=True)
class DataPortError(Message):
    """626, data port error: ``<user>``'s data port was unreachable."""

    TYPE: ClassVar[int] = 626
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class ChangeLinkSpeed(Message):
    """700, change link speed: ``<speed>``."""

    TYPE: ClassVar[int] = 700
    link_type: LinkType
    _SPEC = (_f("link_type", _LINK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class ChangeDataPort(Message):
    """703, change data port: ``<port>``."""

    TYPE: ClassVar[int] = 703
    port: int
    _SPEC = (_f("port", _PORT),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """751, ping user: ``<user>`` (relayed by the server, both directions)."""

    TYPE: ClassVar[int] = 751
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """752, pong response: ``<user>``."""

    TYPE: ClassVar[int] = 752
    nick: str
    _SPEC = (_f("nick", _NICK),)
    _REQUIRED = 1


@dataclass(frozen=True, slots=True)
class Unknown(Message):
    """A message type we do not model: its number and raw payload."""

    type: int
    payload: bytes

    def to_payload(self) -> str:
        return self.payload.decode("latin-1")


#: Type number -> message class (214 decodes to either stats class).
MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        LoginError, Login, LoginAck, NewUserLogin, NickCheck, NickNotRegistered,
        NickAlreadyRegistered, InvalidNick, ShareFile, UnshareFile, UnshareAll,
        SearchRequest, SearchResult, SearchEnd, DownloadRequest, DownloadAck,
        PrivateMessage, GetError, UserSignon, UserSignoff, BrowseRequest,
        BrowseResult, BrowseEnd, ServerStats, Downloading, DownloadComplete,
        Uploading, UploadComplete, ErrorMessage, AlternateDownloadRequest,
        AlternateDownloadAck, LinkSpeedRequest, LinkSpeed, WhoisRequest,
        WhoisResponse, WhowasResponse, UploadRequest, UploadAccept, AcceptFailed,
        QueueLimit, QueueLimitNotice, Motd, DataPortError, ChangeLinkSpeed,
        ChangeDataPort, Ping, Pong,
    )
}


# ------------------------------------------------------------------ top level


def encode_payload(msg: Message) -> bytes:
    """The <data> bytes of ``msg`` (latin-1; see the module doc)."""
    if isinstance(msg, Unknown):
        payload = msg.payload
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LocalProtocolError(f"napster payload exceeds {MAX_PAYLOAD_BYTES} bytes")
        return payload
    text = msg.to_payload()
    if _BAD_CHARS_RE.search(text) is not None:
        raise LocalProtocolError(
            f"napster {msg.TYPE} payload has a control or non-latin-1 character: {text[:80]!r}"
        )
    data = text.encode("latin-1")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise LocalProtocolError(
            f"napster {msg.TYPE} payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    return data


def encode(msg: Message) -> bytes:
    """The whole frame of ``msg``: header and payload (section 2)."""
    payload = encode_payload(msg)
    mtype = msg.type if isinstance(msg, Unknown) else msg.TYPE
    if not 0 <= mtype <= 0xFFFF:
        raise LocalProtocolError(f"napster message type {mtype} does not fit 16 bits")
    return _HEADER.pack(len(payload), mtype) + payload


def decode(type: int, payload: bytes) -> Message:
    """The message of one frame; :class:`Unknown` for types we do not model.

    Raises :class:`RemoteProtocolError` (only) on garbage; the frame's
    boundaries are intact, so the connection may carry on.
    """
    cls = MESSAGE_TYPES.get(type)
    if cls is None:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _remote(f"napster payload exceeds {MAX_PAYLOAD_BYTES} bytes")
        return Unknown(type, bytes(payload))
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _remote(f"napster payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    if _BAD_BYTES_RE.search(payload) is not None:
        raise _remote(f"napster {type} payload has control bytes: {bytes(payload[:80])!r}")
    return cls.from_payload(payload.decode("latin-1"))


def decode_frame(frame: Frame) -> Message:
    """:func:`decode` of one :class:`Frame`."""
    return decode(frame.type, frame.payload)


# ------------------------------------------------------------------ peer transfers

#: The byte a peer sends as soon as it accepts a data connection (section 5.1).
TRANSFER_READY = b"1"
#: Sent by a downloader that connected out, before its request line (5.1).
TRANSFER_GET = b"GET"
#: Sent by a firewalled sharer that connected out, before its offer line (5.2).
TRANSFER_SEND = b"SEND"
#: Error replies named by section 5 (any other text is passed through).
INVALID_REQUEST = "INVALID REQUEST"
FILE_NOT_SHARED = "FILE NOT SHARED"
#: Longest ``<nick> "<filename>" <number>`` line: the field bounds, two
#: quotes, two spaces, the digits and a tolerated CR LF.
MAX_TRANSFER_LINE_BYTES = MAX_NICK_BYTES + MAX_FILENAME_BYTES + MAX_INT_DIGITS + 6

# The line is not terminated on the wire (the digits end the packet); a
# trailing LF or CR LF is tolerated.  Runs of spaces are tolerated as in frames.
_TL_NICK = rb'[^ "\x00-\x1f\x7f]'
_TL_NAME = rb'[^"\x00-\x1f\x7f]'
_TRANSFER_LINE_RE = re.compile(
    rb"(" + _TL_NICK + rb"{1,%d}) +\"(" % MAX_NICK_BYTES
    + _TL_NAME + rb'{1,%d})" +([0-9]{1,%d})(?:\r?\n)?' % (MAX_FILENAME_BYTES, MAX_INT_DIGITS)
)
_TRANSFER_PREFIX_RE = re.compile(
    _TL_NICK + rb"{0,%d}(?: +(?:\"" % MAX_NICK_BYTES
    + _TL_NAME + rb'{0,%d}(?:" *(?:[0-9]{0,%d}\r?)?)?)?)?' % (MAX_FILENAME_BYTES, MAX_INT_DIGITS)
)


@dataclass(frozen=True, slots=True)
class TransferLine:
    """``<nick> "<filename>" <number>`` after GET (number: the offset to start
    at) or SEND (number: the file's size), napster.txt sections 5.1 and 5.2."""

    nick: str
    filename: str
    number: int

    def to_bytes(self) -> bytes:
        """The line as sent, unterminated, in one packet."""
        text = f"{_e_nick(self.nick)} {_e_filename(self.filename)} {_e_size(self.number)}"
        if _BAD_CHARS_RE.search(text) is not None:
            raise LocalProtocolError(f"bad character in transfer line {text[:80]!r}")
        return text.encode("latin-1")


def parse_transfer_line(data: bytes) -> TransferLine | None:
    """The line in ``data`` if complete, ``None`` if ``data`` may still grow into one.

    Completeness is only syntactic: the protocol ends the line with the end of
    its packet, so the caller decides when no more digits will come.  Raises
    :class:`RemoteProtocolError` when ``data`` can never become a line.
    """
    m = _TRANSFER_LINE_RE.fullmatch(data)
    if m is not None:
        number = int(m.group(3))
        if number > MAX_FILE_SIZE:
            raise _remote("napster transfer line number out of range")
        return TransferLine(
            m.group(1).decode("latin-1"), m.group(2).decode("latin-1"), number
        )
    if len(data) > MAX_TRANSFER_LINE_BYTES or _TRANSFER_PREFIX_RE.fullmatch(data) is None:
        raise _remote(f"malformed napster transfer line {bytes(data[:80])!r}")
    return None
