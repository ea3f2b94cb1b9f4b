"""Gnutella 0.6 descriptors ("messages") as the surviving servents exchange them.

Sources (gtk-gnutella ``doc/gnutella/`` unless noted): the RFC-Gnutella 0.6
draft (Klingberg & Manfredi, section 2.2: header, Ping, Pong, Query, Query
Hit, Push, Bye), ``GGEP`` (extension blocks in every message), ``huge``
(``urn:sha1`` strings "between the nulls"), ``min_speed`` and gtk-gnutella's
``src/core/search.h`` (query flags in the old minimum-speed field),
LimeWire's ``QueryReplyImpl`` and gtk-gnutella's ``search.c`` (the QHD trailer
of a Query Hit: vendor code, open data flags, private area with GGEP and the
XML metadata), ``push_proxy`` (GGEP ``PUSH``), ``bye``, ``vendor_msg`` and
gtk-gnutella's ``vmsg.c`` (vendor messages), ``compression`` (deflated links).

Every descriptor is a 23-byte header -- 16-byte GUID, payload type, TTL,
hops, payload length (little-endian) -- and a payload.  Multi-byte numbers
are little-endian except IPv4 addresses (network order) and the query flags
(big-endian, as ``min_speed`` prescribes).

Public API:

- Constants: ``HEADER_LENGTH``, ``GUID_LENGTH``, the payload types (``PING``
  ... ``QUERY_HIT``), :data:`DEFAULT_MAX_PAYLOAD`, :data:`MAX_HITS`.
- :class:`Header`, :func:`decode_header`, :func:`encode_header`.
- Messages (frozen dataclasses; ``TYPE`` is the payload type): :class:`Ping`,
  :class:`Pong`, :class:`Bye`, :class:`Push`, :class:`Query`,
  :class:`QueryHit` with :class:`QueryHitResult`, :class:`VendorMessage`,
  QRP's ``ResetTable``/``PatchTable`` (from :mod:`peerlab.wire.qrp`),
  :class:`Unknown` for payload types we do not model.
- :func:`decode_payload`, :func:`encode_payload`, :func:`message_type`,
  :func:`encode_descriptor`, :func:`frame` (a raw descriptor).
- :class:`DescriptorDecoder` -- incremental framing of a byte stream.
- :class:`QueryFlags` -- the query flags (:data:`DEFAULT_QUERY_FLAGS` what we
  send); :func:`make_guid` -- a marked GUID.
- Vendor messages: the typed bodies (:class:`MessagesSupported` ...),
  :data:`VENDOR_MESSAGES` (what a servent does with each known one),
  :func:`decode_vendor`, :func:`encode_vendor`.
- :class:`XmlRecord`, :func:`parse_xml_records`, :func:`build_xml_records` --
  the LimeWire XML metadata collections carried in Query Hits
  (:data:`AUDIO_SCHEMA`, :data:`MAX_XML_RECORDS`), re-exported from
  :mod:`peerlab.wire.gxml`, which parses them.
- :class:`LinkDeflater`, :class:`LinkInflater` -- sans-I/O ``deflate``
  stream compression for a connection, inflation bounded
  (:data:`DEFAULT_MAX_INFLATE_RATIO`, :data:`DEFAULT_INFLATE_SLACK`).

Decoding garbage raises :class:`~peerlab.errors.RemoteProtocolError` (the
message, or for framing errors the connection, pays); encoding something the
wire cannot carry raises :class:`~peerlab.errors.LocalProtocolError`.
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.ggep import (
    GGEP,
    ID_ALT,
    ID_BROWSE_HOST,
    ID_CREATE_TIME,
    ID_DAILY_UPTIME,
    ID_HASH,
    ID_LARGE_FILE,
    ID_PACKED_IPS,
    ID_PUSH,
    ID_ULTRAPEER,
    ID_VENDOR_CODE,
    MAGIC,
    MAX_EXTENSIONS,
    Extension,
    decode_block,
    decode_int,
    encode_block,
    encode_int,
    pack_ipv4,
    unpack_ip_ports,
    unpack_ipv4,
)
from peerlab.wire.gxml import (
    AUDIO_SCHEMA,
    MAX_XML_RECORDS,
    XmlRecord,
    build_xml_records,
    hit_xml_text,
    parse_xml_records,
)
from peerlab.wire.qrp import (
    ROUTE_TABLE_UPDATE,
    PatchTable,
    ResetTable,
    decode_route_table_update,
    encode_route_table_update,
)
from peerlab.wire.urn import parse_sha1_urn

__all__ = [
    "AUDIO_SCHEMA",
    "BYE",
    "DEFAULT_INFLATE_SLACK",
    "DEFAULT_MAX_INFLATE_RATIO",
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_QUERY_FLAGS",
    "GUID_LENGTH",
    "HEADER_LENGTH",
    "MAX_HITS",
    "MAX_XML_RECORDS",
    "PING",
    "PONG",
    "PUSH",
    "QUERY",
    "QUERY_HIT",
    "ROUTE_TABLE_UPDATE",
    "STANDARD_VENDOR",
    "VENDOR",
    "VENDOR_MESSAGES",
    "Bye",
    "DescriptorDecoder",
    "FeaturesSupported",
    "Header",
    "HopsFlow",
    "LinkDeflater",
    "LinkInflater",
    "Message",
    "MessagesSupported",
    "OobReplyAck",
    "OobReplyIndication",
    "PatchTable",
    "Ping",
    "Pong",
    "Push",
    "PushProxyAck",
    "PushProxyCancel",
    "PushProxyRequest",
    "Query",
    "QueryFlags",
    "QueryHit",
    "QueryHitResult",
    "QueryStatusRequest",
    "QueryStatusResponse",
    "ResetTable",
    "TcpConnectBack",
    "UdpConnectBack",
    "Unknown",
    "VendorBody",
    "VendorMessage",
    "VendorMessageInfo",
    "XmlRecord",
    "build_xml_records",
    "decode_header",
    "decode_payload",
    "decode_vendor",
    "encode_descriptor",
    "encode_header",
    "encode_payload",
    "encode_vendor",
    "frame",
    "make_guid",
    "message_type",
    "parse_xml_records",
]

# ------------------------------------------------------------------ header

#: RFC-Gnutella 0.6 section 2.2.1: the message header is 23 bytes.
HEADER_LENGTH = 23
GUID_LENGTH = 16
#: Payload types (section 2.2.1; 0x02 ``bye``; 0x30 ``QRP``; 0x31/0x32 ``vendor_msg``).
PING = 0x00
PONG = 0x01
BYE = 0x02
VENDOR = 0x31
STANDARD_VENDOR = 0x32
PUSH = 0x40
QUERY = 0x80
QUERY_HIT = 0x81
#: Bound on a payload we accept (section 2.2.1 leaves it to servents: "most
#: gnutella clients will drop messages, and possibly connections if the
#: message size is larger than a certain threshold", GGEP "Implementation
#: Notes").  64 KiB is what LimeWire and gtk-gnutella accept; larger means a
#: desynchronised or hostile peer, and costs the connection (Bye 400).
DEFAULT_MAX_PAYLOAD = 64 * 1024
#: A Query Hit counts its results in one byte (section 2.2.6).
MAX_HITS = 255

_HEADER = struct.Struct("<16sBBBI")


@dataclass(frozen=True, slots=True)
class Header:
    """The descriptor header (section 2.2.1): "Message ID/GUID", "Payload
    Type", "TTL", "Hops", "Payload Length"."""

    guid: bytes
    payload_type: int
    ttl: int
    hops: int
    payload_length: int


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    """The header at ``data[offset:offset + 23]``."""
    if len(data) - offset < HEADER_LENGTH:
        raise RemoteProtocolError("descriptor header truncated")
    guid, ptype, ttl, hops, length = _HEADER.unpack_from(data, offset)
    return Header(guid, ptype, ttl, hops, length)


def encode_header(header: Header) -> bytes:
    _check_header_fields(header.guid, header.payload_type, header.ttl, header.hops)
    if not 0 <= header.payload_length <= 0xFFFFFFFF:
        raise LocalProtocolError(f"payload length {header.payload_length} out of range")
    return _HEADER.pack(
        header.guid, header.payload_type, header.ttl, header.hops, header.payload_length
    )


def _check_header_fields(guid: bytes, ptype: int, ttl: int, hops: int) -> None:
    if len(guid) != GUID_LENGTH:
        raise LocalProtocolError(f"a GUID is 16 bytes, not {len(guid)}")
    if not (0 <= ptype <= 255 and 0 <= ttl <= 255 and 0 <= hops <= 255):
        raise LocalProtocolError(f"header field out of range: type={ptype} ttl={ttl} hops={hops}")


def make_guid(random16: bytes) -> bytes:
    """A "modern" marked GUID from 16 random bytes (QRP footnote 10, the 0.6
    draft section 2.2.1): byte 8 is all ones and the last byte, the version,
    is 0.  Randomness comes from the caller (``runtime.rng``)."""
    if len(random16) != GUID_LENGTH:
        raise LocalProtocolError("make_guid needs 16 random bytes")
    return random16[:8] + b"\xff" + random16[9:15] + b"\x00"


# ---------------------------------------------------------------- helpers


def _text(raw: bytes | bytearray | memoryview) -> str:
    """Text fields are UTF-8 today; older servents wrote Latin-1."""
    b = bytes(raw)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _u16(data: bytes | bytearray, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "little")


def _u32(data: bytes | bytearray, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "little")


def _check_u(value: int, bits: int, what: str) -> None:
    if not 0 <= value < 1 << bits:
        raise LocalProtocolError(f"{what} {value} out of range")


def _decode_ggep_area(payload: bytes, pos: int) -> GGEP | None:
    """One or more GGEP blocks filling ``payload[pos:]`` ("Extension Block":
    "an arbitrary number of GGEP blocks packed one against another"), merged."""
    n = len(payload)
    if pos >= n:
        return None
    exts: list[Extension] = []
    while pos < n:
        if payload[pos] != MAGIC:
            raise RemoteProtocolError(f"bytes after the fixed payload are not GGEP ({n - pos})")
        block, pos = decode_block(payload, pos)
        exts.extend(block.extensions)
        if len(exts) > MAX_EXTENSIONS:
            raise RemoteProtocolError(f"more than {MAX_EXTENSIONS} GGEP extensions")
    return GGEP(tuple(exts))


def _encode_ggep(ggep: GGEP | None, *, avoid_nul: bool = False) -> bytes:
    return encode_block(ggep, avoid_nul=avoid_nul) if ggep else b""


_FIELD_END = re.compile(rb"[\x00\x1c]")
_GEM_SEPARATOR = 0x1C


@dataclass(frozen=True, slots=True)
class _Extensions:
    urns: tuple[str, ...]
    xml: str | None
    ggep: GGEP | None
    extra: tuple[bytes, ...]


def _parse_extensions(
    buf: bytes, pos: int, end: int, *, nul_terminated: bool
) -> tuple[_Extensions, int]:
    """The extension area of a Query or of one Query Hit result.

    GGEP "Appendix B - Peaceful Co-Existence" with HUGE's GEM: fields are
    separated by 0x1C; a field starting with the GGEP magic is a GGEP block
    (parsed structurally, so raw NULs inside it are fine), one starting with
    ``urn:`` is a HUGE URN, one starting with ``<`` XML metadata, anything
    else is kept as an opaque legacy field.  A result's area ends at a NUL
    (``nul_terminated``); a query's runs to the end of the payload.
    """
    urns: list[str] = []
    extra: list[bytes] = []
    exts: list[Extension] = []
    xml: str | None = None
    while pos < end:
        b = buf[pos]
        if b == 0:
            if nul_terminated:
                return _Extensions(
                    tuple(urns), xml, GGEP(tuple(exts)) if exts else None, tuple(extra)
                ), pos + 1
            pos += 1
            continue
        if b == _GEM_SEPARATOR:
            pos += 1
            continue
        if b == MAGIC:
            block, pos = decode_block(buf, pos)
            if pos > end:
                raise RemoteProtocolError("GGEP block runs past its field")
            exts.extend(block.extensions)
            if len(exts) > MAX_EXTENSIONS:
                raise RemoteProtocolError(f"more than {MAX_EXTENSIONS} GGEP extensions")
            continue
        m = _FIELD_END.search(buf, pos, end)
        stop = m.start() if m else end
        field = buf[pos:stop]
        if field[:4].lower() == b"urn:":
            urns.append(field.decode("latin-1"))
        elif field[:1] == b"<" and xml is None:
            xml = _text(field)
        else:
            extra.append(field)
        pos = stop
    if nul_terminated:
        raise RemoteProtocolError("query hit result not NUL-terminated")
    return _Extensions(tuple(urns), xml, GGEP(tuple(exts)) if exts else None, tuple(extra)), pos


def _gem_fields(urns: Iterable[str], xml: str | None, extra: Iterable[bytes]) -> list[bytes]:
    fields: list[bytes] = []
    for urn in urns:
        if not urn[:4].lower() == "urn:" or not urn.isascii():
            raise LocalProtocolError(f"not a URN: {urn!r}")
        fields.append(urn.encode("ascii"))
    if xml is not None:
        if not xml.startswith("<"):
            raise LocalProtocolError("XML metadata must start with '<'")
        fields.append(xml.encode("utf-8"))
    for item in extra:
        if not item or item[0] in (MAGIC, ord("<")) or item[:4].lower() == b"urn:":
            raise LocalProtocolError(f"extension field {item[:20]!r} would be misread")
        fields.append(bytes(item))
    for f in fields:
        if 0 in f or _GEM_SEPARATOR in f:
            raise LocalProtocolError("NUL or 0x1C inside an extension field")
    return fields


def _sha1_from(urns: Iterable[str], ggep: GGEP | None) -> bytes | None:
    """The SHA-1 named by a ``urn:sha1`` (or ``urn:bitprint``, "down-convert"
    per HUGE 2.3) or by GGEP ``H`` (0x01 SHA-1, 0x02 SHA-1 + Tiger tree)."""
    for urn in urns:
        low = urn.lower()
        try:
            if low.startswith("urn:sha1:"):
                return parse_sha1_urn(urn)
            if low.startswith("urn:bitprint:") and len(urn) >= 13 + 32:
                return parse_sha1_urn(urn[13 : 13 + 32])
        except RemoteProtocolError:
            continue
    h = ggep.get(ID_HASH) if ggep else None
    if h and h[0] in (0x01, 0x02) and len(h) >= 21:
        return h[1:21]
    return None


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Ping:
    """Ping (section 2.2.2): no payload, or a GGEP block (e.g. ``SCP``)."""

    TYPE: ClassVar[int] = PING

    ggep: GGEP | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    """Pong (section 2.2.3): port, IP, shared files and kilobytes, then GGEP
    (``UP``, ``DU``, ``VC``, ``IPP``, ``GUE``...)."""

    TYPE: ClassVar[int] = PONG

    port: int
    ip: str
    files: int = 0
    kbytes: int = 0
    ggep: GGEP | None = None

    @property
    def is_ultrapeer(self) -> bool:
        """GGEP ``UP``: the host is an ultrapeer."""
        return self.ggep is not None and ID_ULTRAPEER in self.ggep

    @property
    def free_slots(self) -> tuple[int, int] | None:
        """GGEP ``UP``: (free leaf slots, free ultrapeer slots)."""
        up = self.ggep.get(ID_ULTRAPEER) if self.ggep else None
        return (up[1], up[2]) if up is not None and len(up) >= 3 else None

    @property
    def daily_uptime(self) -> int | None:
        """GGEP ``DU``: average daily uptime in seconds."""
        du = self.ggep.get(ID_DAILY_UPTIME) if self.ggep else None
        try:
            return decode_int(du) if du is not None else None
        except RemoteProtocolError:
            return None

    @property
    def vendor_code(self) -> str | None:
        """GGEP ``VC``: the 4-letter vendor code."""
        vc = self.ggep.get(ID_VENDOR_CODE) if self.ggep else None
        return vc[:4].decode("latin-1") if vc is not None and len(vc) >= 4 else None

    @property
    def packed_hosts(self) -> list[tuple[str, int]]:
        """GGEP ``IPP``: other hosts, as IP:port pairs."""
        ipp = self.ggep.get(ID_PACKED_IPS) if self.ggep else None
        try:
            return unpack_ip_ports(ipp) if ipp else []
        except RemoteProtocolError:
            return []


@dataclass(frozen=True, slots=True)
class Bye:
    """Bye (``bye`` section 2, draft 2.2.9): a code in the SMTP-like classes
    (2xx we are leaving, 4xx the peer misbehaved, 5xx our trouble) and a
    NUL-terminated message, optionally followed by HTTP-like headers."""

    TYPE: ClassVar[int] = BYE

    code: int
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Push:
    """Push (section 2.2.8): ask the servent ``servent_guid`` to connect to
    ``ip:port`` and send file ``file_index`` (with ``GIV``)."""

    TYPE: ClassVar[int] = PUSH

    servent_guid: bytes
    file_index: int
    ip: str
    port: int
    ggep: GGEP | None = None


class QueryFlags(enum.IntFlag):
    """The query flags that replaced the minimum speed (``min_speed``; the
    current set from gtk-gnutella ``src/core/search.h``).  Big-endian on the
    wire; meaningful only when :attr:`MARK` is set."""

    MARK = 0x8000  #: the field holds flags, not a speed
    FIREWALLED = 0x4000  #: the querying servent is firewalled
    XML = 0x2000  #: send XML metadata in the hits
    LEAF_GUIDED = 0x1000  #: leaf-guided dynamic query
    GGEP_H = 0x0800  #: the querier understands GGEP "H" in hits
    OOB_REPLY = 0x0400  #: out-of-band (UDP) hit delivery possible
    FW_TO_FW = 0x0200  #: can do firewall-to-firewall transfers
    SR_UDP = 0x0100  #: accepts semi-reliable UDP
    MAX_HITS_MASK = 0x00FF  #: low byte: maximum hits wanted, 0 for no limit


#: What a peerlab servent puts in its queries unless told otherwise.
DEFAULT_QUERY_FLAGS = int(QueryFlags.MARK | QueryFlags.GGEP_H | QueryFlags.XML)


@dataclass(frozen=True, slots=True)
class Query:
    """Query (section 2.2.5): flags, the search criteria, then extensions
    between the NULs: HUGE URNs, rich-query XML, GGEP (``H``, ``M``, ``XQ``...).

    A query by hash carries the URN with empty criteria (``huge`` section 1;
    gtk-gnutella writes ``"\\"`` as criteria for such queries).
    """

    TYPE: ClassVar[int] = QUERY

    criteria: str
    flags: int = DEFAULT_QUERY_FLAGS
    urns: tuple[str, ...] = ()
    xml: str | None = None
    ggep: GGEP | None = None
    extra: tuple[bytes, ...] = ()

    def _flag(self, bit: QueryFlags) -> bool:
        return bool(self.flags & QueryFlags.MARK) and bool(self.flags & bit)

    @property
    def firewalled(self) -> bool:
        return self._flag(QueryFlags.FIREWALLED)

    @property
    def wants_xml(self) -> bool:
        return self._flag(QueryFlags.XML)

    @property
    def leaf_guided(self) -> bool:
        return self._flag(QueryFlags.LEAF_GUIDED)

    @property
    def understands_ggep_h(self) -> bool:
        return self._flag(QueryFlags.GGEP_H)

    @property
    def oob_reply(self) -> bool:
        return self._flag(QueryFlags.OOB_REPLY)

    @property
    def max_hits(self) -> int | None:
        """The hit limit of a flagged query (``None``: no limit or old style)."""
        if not self.flags & QueryFlags.MARK:
            return None
        return (self.flags & QueryFlags.MAX_HITS_MASK) or None

    @property
    def min_speed(self) -> int | None:
        """The legacy minimum speed (kbit/s) of an unflagged query: the field
        little-endian, as the 0.4 protocol wrote it."""
        if self.flags & QueryFlags.MARK:
            return None
        return int.from_bytes(self.flags.to_bytes(2, "big"), "little")

    @property
    def sha1(self) -> bytes | None:
        """The SHA-1 the query asks for (``urn:sha1`` or GGEP ``H``), if any."""
        return _sha1_from(self.urns, self.ggep)


@dataclass(frozen=True, slots=True)
class QueryHitResult:
    """One result of a Query Hit (section 2.2.6 "Result Set"): file index,
    size, name, then its extensions (HUGE URNs, XML, GGEP ``H``/``ALT``/``CT``).
    A size beyond 32 bits travels in GGEP ``LF`` (``filesize64``), handled here:
    ``size`` is always the real size and ``LF`` never appears in ``ggep``."""

    index: int
    size: int
    name: str
    urns: tuple[str, ...] = ()
    xml: str | None = None
    ggep: GGEP | None = None
    extra: tuple[bytes, ...] = ()

    @property
    def sha1(self) -> bytes | None:
        return _sha1_from(self.urns, self.ggep)

    @property
    def alt_locations(self) -> list[tuple[str, int]]:
        """GGEP ``ALT``: other hosts sharing the file."""
        alt = self.ggep.get(ID_ALT) if self.ggep else None
        try:
            return unpack_ip_ports(alt) if alt else []
        except RemoteProtocolError:
            return []

    @property
    def create_time(self) -> int | None:
        ct = self.ggep.get(ID_CREATE_TIME) if self.ggep else None
        try:
            return decode_int(ct) if ct is not None else None
        except RemoteProtocolError:
            return None


@dataclass(frozen=True, slots=True)
class QueryHit:
    """Query Hit (section 2.2.6): the responder's address and speed, the
    results, the optional QHD trailer, and the servent GUID.

    The QHD ("BearShare trailer", LimeWire's layout) is present when
    ``vendor`` is set: a 4-letter vendor code, the open data flags -- each
    ``None`` (not stated), ``True`` or ``False``: ``push`` (firewalled),
    ``busy`` (no free upload slot), ``stable`` (has uploaded at least one
    file), ``speed_measured`` (``speed`` is a measured maximum) -- and the
    private area: opaque vendor bytes (LimeWire's chat byte), a GGEP block
    (``PUSH`` proxies, ``BH``...), more opaque bytes, and the XML metadata of
    the results, NUL-terminated, just before the GUID.
    """

    TYPE: ClassVar[int] = QUERY_HIT

    port: int
    ip: str
    speed: int
    results: tuple[QueryHitResult, ...]
    servent_guid: bytes
    vendor: str | None = None
    push: bool | None = None
    busy: bool | None = None
    stable: bool | None = None
    speed_measured: bool | None = None
    private_prefix: bytes = b""
    ggep: GGEP | None = None
    private_suffix: bytes = b""
    xml: str | None = None

    @property
    def push_proxies(self) -> list[tuple[str, int]]:
        """GGEP ``PUSH`` (``push_proxy``): hosts that relay a Push for it."""
        p = self.ggep.get(ID_PUSH) if self.ggep else None
        try:
            return unpack_ip_ports(p) if p else []
        except RemoteProtocolError:
            return []

    @property
    def browse_host(self) -> bool:
        """GGEP ``BH``: the servent answers browse-host requests."""
        return self.ggep is not None and ID_BROWSE_HOST in self.ggep


@dataclass(frozen=True, slots=True)
class VendorMessage:
    """A vendor message (``vendor_msg`` section 2): vendor ID (4 letters,
    case-sensitive), sub-selector and version (little-endian), then a body
    defined by the message type.  ``standard`` selects payload type 0x32."""

    TYPE: ClassVar[int] = VENDOR

    vendor: str
    selector: int
    version: int
    data: bytes = b""
    standard: bool = False


@dataclass(frozen=True, slots=True)
class Unknown:
    """A payload type we do not model (HSEP 0xCD, RUDP 0x41...): its bytes."""

    payload_type: int
    payload: bytes


Message = (
    Ping | Pong | Bye | Push | Query | QueryHit | VendorMessage | ResetTable | PatchTable | Unknown
)


def message_type(msg: Message) -> int:
    """The payload type of ``msg``."""
    if isinstance(msg, Unknown):
        return msg.payload_type
    if isinstance(msg, VendorMessage) and msg.standard:
        return STANDARD_VENDOR
    return msg.TYPE


# ------------------------------------------------------------ decode/encode


def _dec_ping(p: bytes) -> Ping:
    return Ping(_decode_ggep_area(p, 0))


def _dec_pong(p: bytes) -> Pong:
    if len(p) < 14:
        raise RemoteProtocolError(f"Pong of {len(p)} bytes, less than 14")
    return Pong(_u16(p, 0), unpack_ipv4(p[2:6]), _u32(p, 6), _u32(p, 10), _decode_ggep_area(p, 14))


def _dec_bye(p: bytes) -> Bye:
    if len(p) < 2:
        raise RemoteProtocolError(f"Bye of {len(p)} bytes, less than 2")
    raw = p[2:]
    nul = raw.find(0)
    if nul >= 0:
        raw = raw[:nul]
    text = _text(raw)
    if "\r\n" not in text:
        return Bye(_u16(p, 0), text)
    reason, _, rest = text.partition("\r\n")
    headers: list[tuple[str, str]] = []
    for line in rest.split("\r\n"):
        if not line:
            break
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers.append((name.strip(), value.strip()))
    return Bye(_u16(p, 0), reason, tuple(headers))


def _dec_push(p: bytes) -> Push:
    if len(p) < 26:
        raise RemoteProtocolError(f"Push of {len(p)} bytes, less than 26")
    return Push(p[:16], _u32(p, 16), unpack_ipv4(p[20:24]), _u16(p, 24), _decode_ggep_area(p, 26))


def _dec_query(p: bytes) -> Query:
    if len(p) < 3:
        raise RemoteProtocolError(f"Query of {len(p)} bytes")
    nul = p.find(0, 2)
    if nul < 0:
        raise RemoteProtocolError("Query criteria not NUL-terminated")
    ext, _ = _parse_extensions(p, nul + 1, len(p), nul_terminated=False)
    return Query(
        _text(p[2:nul]), int.from_bytes(p[:2], "big"), ext.urns, ext.xml, ext.ggep, ext.extra
    )


def _dec_result(p: bytes, pos: int, end: int) -> tuple[QueryHitResult, int]:
    if end - pos < 9:
        raise RemoteProtocolError("query hit result truncated")
    index = _u32(p, pos)
    size = _u32(p, pos + 4)
    nul = p.find(0, pos + 8, end)
    if nul < 0:
        raise RemoteProtocolError("query hit file name not NUL-terminated")
    name = _text(p[pos + 8 : nul])
    ext, pos = _parse_extensions(p, nul + 1, end, nul_terminated=True)
    ggep = ext.ggep
    if ggep is not None and ID_LARGE_FILE in ggep:
        lf = ggep.get(ID_LARGE_FILE)
        assert lf is not None
        size = decode_int(lf)
        ggep = ggep.without(ID_LARGE_FILE) or None
    return QueryHitResult(index, size, name, ext.urns, ext.xml, ggep, ext.extra), pos


def _tri(known: int, value: int, bit: int) -> bool | None:
    return bool(value & bit) if known & bit else None


def _dec_query_hit(p: bytes) -> QueryHit:
    n = len(p)
    if n < 11 + GUID_LENGTH:
        raise RemoteProtocolError(f"Query Hit of {n} bytes is too short")
    count = p[0]
    end = n - GUID_LENGTH
    pos = 11
    results = []
    for _ in range(count):
        result, pos = _dec_result(p, pos, end)
        results.append(result)
    hit = QueryHit(_u16(p, 1), unpack_ipv4(p[3:7]), _u32(p, 7), tuple(results), bytes(p[end:]))
    if pos == end:
        return hit
    # The QHD: vendor code, open data size, open data, private area.
    trailer = p[pos:end]
    if len(trailer) < 5 or 5 + trailer[4] > len(trailer):
        raise RemoteProtocolError("malformed Query Hit trailer")
    vendor = trailer[:4].decode("latin-1")
    open_size = trailer[4]
    private = trailer[5 + open_size :]
    push = busy = stable = measured = None
    has_ggep = False
    xml: str | None = None
    if open_size == 1:
        push = bool(trailer[5] & 0x01)
    elif open_size >= 2:
        # Byte 0: push value, "known" bits of the others; byte 1: push known,
        # values of the others ("REMEMBER THAT THE PUSH BIT IS SET OPPOSITE").
        b0, b1 = trailer[5], trailer[6]
        push = _tri(b1, b0, 0x01)
        busy = _tri(b0, b1, 0x04)
        stable = _tri(b0, b1, 0x08)
        measured = _tri(b0, b1, 0x10)
        has_ggep = bool(b0 & b1 & 0x20)
    if open_size >= 4:
        xml_size = _u16(trailer, 7)
        if xml_size > len(private):
            raise RemoteProtocolError("Query Hit XML size exceeds its private area")
        if xml_size:
            cut = len(private) - xml_size
            raw_xml = private[cut:]
            private = private[:cut]
            if raw_xml.endswith(b"\x00"):
                raw_xml = raw_xml[:-1]
            xml = hit_xml_text(raw_xml)
    prefix, ggep, suffix = private, None, b""
    if has_ggep:
        # "search for the GGEP block by looking for the first occurrence of the
        # GGEP magic byte"; blocks may follow one another.  Vendor data that
        # only looks like GGEP (the spec's BearShare caveat) stays opaque.
        at = private.find(MAGIC)
        exts: list[Extension] = []
        ggep_end = at
        while 0 <= ggep_end < len(private) and private[ggep_end] == MAGIC:
            try:
                block, after = decode_block(private, ggep_end)
            except RemoteProtocolError:
                break
            exts.extend(block.extensions)
            ggep_end = after
            if len(exts) > MAX_EXTENSIONS:
                raise RemoteProtocolError(f"more than {MAX_EXTENSIONS} GGEP extensions")
        if exts:
            prefix, ggep, suffix = private[:at], GGEP(tuple(exts)), private[ggep_end:]
    return QueryHit(
        hit.port,
        hit.ip,
        hit.speed,
        hit.results,
        hit.servent_guid,
        vendor,
        push,
        busy,
        stable,
        measured,
        bytes(prefix),
        ggep,
        bytes(suffix),
        xml,
    )


def _dec_vendor(p: bytes, standard: bool) -> VendorMessage:
    if len(p) < 8:
        raise RemoteProtocolError(f"vendor message of {len(p)} bytes, less than 8")
    return VendorMessage(p[:4].decode("latin-1"), _u16(p, 4), _u16(p, 6), bytes(p[8:]), standard)


#: Decoded payloads remembered by :func:`decode_payload`.  A flooded Query or
#: Ping reaches a servent once per neighbour that forwards it, and a Pong or
#: Query Hit is decoded again at every hop of its way back, with the very
#: same payload bytes each time; messages are immutable, so one decoded
#: object can stand for all of them.  Bounded: the oldest entry goes first.
#: Sized for a network of ~10,000 servents (each Pong payload is one
#: servent's); at 4,096 entries a 3,000-node flood already evicted what it
#: was about to reuse.  Flooded payloads are ~30-100 bytes: a few MiB.
DECODE_MEMO_ENTRIES = 16384
#: Payloads longer than this are decoded without the memo (big Query Hits and
#: QRP patches would crowd out the small flooded descriptors it is for).
DECODE_MEMO_MAX_PAYLOAD = 1024
#: The payload types whose decoding is remembered: the flooded and routed ones.
_MEMO_TYPES = frozenset((PING, PONG, PUSH, QUERY, QUERY_HIT))
_decode_memo: dict[tuple[int, bytes], Message] = {}
#: The memo's keys, oldest first.  ``next(iter(dict))`` would find the oldest
#: too, but it walks over the slots of every key deleted since the dict was
#: last resized: ~3 us per eviction at this size, against ~0.1 us here.
_memo_order: deque[tuple[int, bytes]] = deque()


def decode_payload(payload_type: int, payload: bytes) -> Message:
    """The message carried by ``payload`` (payload types we do not model come
    back as :class:`Unknown`)."""
    if payload_type in _MEMO_TYPES and len(payload) <= DECODE_MEMO_MAX_PAYLOAD:
        key = (payload_type, bytes(payload))
        msg = _decode_memo.get(key)
        if msg is None:
            msg = _DECODERS[payload_type](key[1])
            if len(_decode_memo) >= DECODE_MEMO_ENTRIES:
                del _decode_memo[_memo_order.popleft()]
            _decode_memo[key] = msg
            _memo_order.append(key)
        return msg
    if payload_type == VENDOR or payload_type == STANDARD_VENDOR:
        return _dec_vendor(payload, payload_type == STANDARD_VENDOR)
    decoder = _DECODERS.get(payload_type)
    if decoder is None:
        return Unknown(payload_type, bytes(payload))
    return decoder(payload)


_DECODERS: dict[int, Callable[[bytes], Message]] = {
    PING: _dec_ping,
    PONG: _dec_pong,
    BYE: _dec_bye,
    PUSH: _dec_push,
    QUERY: _dec_query,
    QUERY_HIT: _dec_query_hit,
    ROUTE_TABLE_UPDATE: decode_route_table_update,
}


def _enc_ping(m: Ping) -> bytes:
    return _encode_ggep(m.ggep)


def _enc_pong(m: Pong) -> bytes:
    _check_u(m.port, 16, "port")
    _check_u(m.files, 32, "file count")
    _check_u(m.kbytes, 32, "kbytes")
    return (
        m.port.to_bytes(2, "little")
        + pack_ipv4(m.ip)
        + m.files.to_bytes(4, "little")
        + m.kbytes.to_bytes(4, "little")
        + _encode_ggep(m.ggep)
    )


def _enc_bye(m: Bye) -> bytes:
    _check_u(m.code, 16, "Bye code")
    if any(c in m.reason for c in "\r\n\x00"):
        raise LocalProtocolError("Bye reason holds CR, LF or NUL")
    text = m.reason
    if m.headers:
        lines = []
        for name, value in m.headers:
            if not name or any(c in name + value for c in "\r\n\x00") or ":" in name:
                raise LocalProtocolError(f"bad Bye header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        text = f"{m.reason}\r\n{''.join(lines)}\r\n"
    return m.code.to_bytes(2, "little") + text.encode("utf-8") + b"\x00"


def _enc_push(m: Push) -> bytes:
    if len(m.servent_guid) != GUID_LENGTH:
        raise LocalProtocolError("a servent GUID is 16 bytes")
    _check_u(m.file_index, 32, "file index")
    _check_u(m.port, 16, "port")
    return (
        m.servent_guid
        + m.file_index.to_bytes(4, "little")
        + pack_ipv4(m.ip)
        + m.port.to_bytes(2, "little")
        + _encode_ggep(m.ggep)
    )


def _enc_query(m: Query) -> bytes:
    _check_u(m.flags, 16, "query flags")
    criteria = m.criteria.encode("utf-8")
    if 0 in criteria:
        raise LocalProtocolError("NUL in query criteria")
    fields = _gem_fields(m.urns, m.xml, m.extra)
    area = bytes((_GEM_SEPARATOR,)).join(fields)
    if m.ggep:
        # COBS where a NUL would appear: servents that read a query's
        # extensions "between the nulls" must not see the area end early.
        area += (b"\x1c" if area else b"") + encode_block(m.ggep, avoid_nul=True)
    elif area:
        area += b"\x00"  # HUGE: extensions sit "between the nulls"
    return m.flags.to_bytes(2, "big") + criteria + b"\x00" + area


def _enc_result(r: QueryHitResult) -> bytes:
    _check_u(r.index, 32, "file index")
    if not 0 <= r.size < 1 << 64:
        raise LocalProtocolError(f"file size {r.size} out of range")
    name = r.name.encode("utf-8")
    if 0 in name:
        raise LocalProtocolError("NUL in a file name")
    ggep = r.ggep
    if ggep is not None and ID_LARGE_FILE in ggep:
        raise LocalProtocolError("give the size in the result, not as GGEP LF")
    size = r.size
    if size > 0xFFFFFFFF:
        # filesize64: the 32-bit field says "see LF", the real size is in GGEP.
        ggep = (ggep or GGEP()).with_extension(Extension(ID_LARGE_FILE, encode_int(size)))
        size = 0xFFFFFFFF
    fields = _gem_fields(r.urns, r.xml, r.extra)
    area = bytes((_GEM_SEPARATOR,)).join(fields)
    if ggep:
        area += (b"\x1c" if area else b"") + encode_block(ggep, avoid_nul=True)
    return (
        r.index.to_bytes(4, "little") + size.to_bytes(4, "little") + name + b"\x00" + area + b"\x00"
    )


def _enc_query_hit(m: QueryHit) -> bytes:
    if len(m.results) > MAX_HITS:
        raise LocalProtocolError(f"a Query Hit holds at most {MAX_HITS} results")
    if len(m.servent_guid) != GUID_LENGTH:
        raise LocalProtocolError("a servent GUID is 16 bytes")
    _check_u(m.port, 16, "port")
    _check_u(m.speed, 32, "speed")
    parts = [
        bytes((len(m.results),)),
        m.port.to_bytes(2, "little"),
        pack_ipv4(m.ip),
        m.speed.to_bytes(4, "little"),
    ]
    parts.extend(_enc_result(r) for r in m.results)
    if m.vendor is None:
        if any(
            v is not None for v in (m.push, m.busy, m.stable, m.speed_measured, m.ggep, m.xml)
        ) or (m.private_prefix or m.private_suffix):
            raise LocalProtocolError("QHD fields without a vendor code")
    else:
        vendor = m.vendor.encode("latin-1", "replace")
        if len(vendor) != 4:
            raise LocalProtocolError(f"vendor code {m.vendor!r} is not 4 letters")
        b0 = b1 = 0
        if m.push is not None:
            b1 |= 0x01
            b0 |= 0x01 if m.push else 0
        for flag, bit in ((m.busy, 0x04), (m.stable, 0x08), (m.speed_measured, 0x10)):
            if flag is not None:
                b0 |= bit
                b1 |= bit if flag else 0
        ggep = encode_block(m.ggep) if m.ggep else b""
        if ggep:
            b0 |= 0x20
            b1 |= 0x20
            if MAGIC in m.private_prefix or m.private_suffix[:1] == bytes((MAGIC,)):
                raise LocalProtocolError("private data around GGEP would be read as GGEP")
        xml = m.xml.encode("utf-8") + b"\x00" if m.xml is not None else b""
        if len(xml) > 0xFFFF:
            raise LocalProtocolError("Query Hit XML larger than 64 KiB")
        open_data = bytes((b0, b1)) + (len(xml).to_bytes(2, "little") if m.xml is not None else b"")
        parts += [vendor, bytes((len(open_data),)), open_data]
        parts += [m.private_prefix, ggep, m.private_suffix, xml]
    parts.append(m.servent_guid)
    return b"".join(parts)


def _enc_vendor(m: VendorMessage) -> bytes:
    vendor = m.vendor.encode("latin-1", "replace")
    if len(vendor) != 4:
        raise LocalProtocolError(f"vendor ID {m.vendor!r} is not 4 bytes")
    _check_u(m.selector, 16, "selector")
    _check_u(m.version, 16, "version")
    return vendor + m.selector.to_bytes(2, "little") + m.version.to_bytes(2, "little") + m.data


def _enc_unknown(m: Unknown) -> bytes:
    return m.payload


_ENCODERS: dict[type, Callable[[object], bytes]] = {
    Ping: _enc_ping,  # type: ignore[dict-item]
    Pong: _enc_pong,  # type: ignore[dict-item]
    Bye: _enc_bye,  # type: ignore[dict-item]
    Push: _enc_push,  # type: ignore[dict-item]
    Query: _enc_query,  # type: ignore[dict-item]
    QueryHit: _enc_query_hit,  # type: ignore[dict-item]
    VendorMessage: _enc_vendor,  # type: ignore[dict-item]
    ResetTable: encode_route_table_update,  # type: ignore[dict-item]
    PatchTable: encode_route_table_update,  # type: ignore[dict-item]
    Unknown: _enc_unknown,  # type: ignore[dict-item]
}


def encode_payload(msg: Message) -> bytes:
    """The payload bytes of ``msg``."""
    encoder = _ENCODERS.get(type(msg))
    if encoder is None:
        raise LocalProtocolError(f"not a Gnutella message: {msg!r}")
    return encoder(msg)


def frame(guid: bytes, payload_type: int, ttl: int, hops: int, payload: bytes) -> bytes:
    """A whole descriptor: header and payload (used to forward a payload as received)."""
    _check_header_fields(guid, payload_type, ttl, hops)
    return _HEADER.pack(guid, payload_type, ttl, hops, len(payload)) + payload


def encode_descriptor(msg: Message, *, guid: bytes, ttl: int, hops: int = 0) -> bytes:
    """``msg`` as a whole descriptor."""
    return frame(guid, message_type(msg), ttl, hops, encode_payload(msg))


# ----------------------------------------------------------------- framing


class DescriptorDecoder:
    """Cuts a byte stream into descriptors: feed bytes (whole or one at a
    time), get ``(Header, payload)`` pairs.

    A payload length above ``max_payload`` raises
    :class:`~peerlab.errors.RemoteProtocolError` with code 400 (the ``bye``
    code for "packets deemed too big"): the stream cannot be resynchronised,
    so the connection pays.  At most one incomplete descriptor is buffered.
    """

    __slots__ = ("max_payload", "_buf")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete descriptor held."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[Header, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[Header, bytes]] = []
        pos = 0
        n = len(buf)
        unpack = _HEADER.unpack_from
        limit = self.max_payload
        while n - pos >= HEADER_LENGTH:
            guid, ptype, ttl, hops, length = unpack(buf, pos)
            if length > limit:
                raise RemoteProtocolError(
                    f"descriptor payload of {length} bytes exceeds {limit}", 400
                )
            end = pos + HEADER_LENGTH + length
            if end > n:
                break
            out.append(
                (Header(guid, ptype, ttl, hops, length), bytes(buf[pos + HEADER_LENGTH : end]))
            )
            pos = end
        if pos:
            del buf[:pos]
        return out


# -------------------------------------------------------- link compression


#: zlib ``memLevel`` of a link's compressor: its hash table and pending
#: buffer, 512 bytes each at 1 where zlib's default (8) takes 64 KiB each.
#: A servent keeps one stream per neighbour (some 60,000 in a simulated
#: network of 10,000 peers); the growth scenario's networks carried the
#: same bytes per query (to 0.01%) at 2 as at 4, and below 1% more at 1
#: with the window below.
DEFLATE_MEM_LEVEL = 1
#: zlib window bits of a link's compressor: a 1 KiB window.  The compressor
#: keeps four times its window (the window twice, and as many chain links),
#: 4 KiB here against 128 KiB at zlib's default 15, and the peer's inflater
#: allocates the window our stream's header announces (1 KiB, not 32).
#: Gnutella's descriptors are small and each is flushed at once, so what
#: they repeat is near: at 1,000 peers the growth scenario's flooding and
#: two-tier networks carried 0.1% more bytes per query at 12 bits than at
#: 15, 1.2% and 1.0% more at 10 (with memLevel 1; 3.6% and 4.3% at 9), and
#: the whole run took 372 MiB against 469 at 12 bits (memLevel 2), which
#: keeps the 10,000-peer networks under the simulator's 4 GiB.  It is still
#: an ordinary zlib stream (RFC 1950, CINFO 2), which every inflater set for
#: 32 KiB windows accepts.
DEFLATE_WBITS = 10


class LinkDeflater:
    """Sending half of a ``deflate`` link (``compression``): one zlib stream for
    the life of the connection, flushed with Z_SYNC_FLUSH whenever the bytes
    queued so far are to be sent, so every message leaves without waiting."""

    __slots__ = ("_z", "bytes_in", "bytes_out")

    def __init__(self, level: int = 6) -> None:
        # "Z_DEFAULT_COMPRESSION compression level (6) was optimal".
        self._z = zlib.compressobj(level, zlib.DEFLATED, DEFLATE_WBITS, DEFLATE_MEM_LEVEL)
        self.bytes_in = 0
        self.bytes_out = 0

    def compress(self, data: bytes) -> bytes:
        """Feed ``data``; returns compressed bytes ready so far (often none)."""
        self.bytes_in += len(data)
        out = self._z.compress(data)
        self.bytes_out += len(out)
        return out

    def flush(self) -> bytes:
        """Everything fed so far, decodable by the peer now (a sync flush)."""
        out = self._z.flush(zlib.Z_SYNC_FLUSH)
        self.bytes_out += len(out)
        return out


#: Ratio bound of a compressed link.  Gnutella traffic compresses 2:1 (the
#: ``compression`` doc measured 40-50% savings); zlib's own ceiling is about
#: 1032:1, which is what a deflate bomb uses.  Past a slack, a link may
#: inflate to at most this many times what it received.
DEFAULT_MAX_INFLATE_RATIO = 32
#: Inflated bytes allowed beyond the ratio: enough for one whole maximal
#: descriptor of zeros (an uncompressed QRP patch, say) arriving in a few bytes.
DEFAULT_INFLATE_SLACK = 1024 * 1024


class LinkInflater:
    """Receiving half of a ``deflate`` link, with bounded inflation.

    :meth:`decompress` returns what the bytes fed inflate to.  Two bounds:
    over the life of the link, the total inflated may not exceed ``slack +
    max_ratio * total received``; and one call may not return more than
    ``slack + max_ratio * len(data)``, so a long well-behaved link cannot
    bank credit for one huge burst.  A stream breaking either is a bomb and
    raises :class:`~peerlab.errors.RemoteProtocolError` before the memory is
    spent (zlib is asked for one byte more than the bound, never more).
    """

    __slots__ = ("max_ratio", "slack", "_z", "bytes_in", "bytes_out")

    def __init__(
        self, *, max_ratio: int = DEFAULT_MAX_INFLATE_RATIO, slack: int = DEFAULT_INFLATE_SLACK
    ) -> None:
        self.max_ratio = max_ratio
        self.slack = slack
        # wbits 0: the window the stream's header announces (at most 32 KiB),
        # allocated at that size: 1 KiB for a peerlab peer's stream.
        self._z = zlib.decompressobj(0)
        self.bytes_in = 0
        self.bytes_out = 0

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        if not data:
            return b""
        z = self._z
        if z.eof:
            raise RemoteProtocolError("data after the end of the deflate stream")
        n = len(data)
        self.bytes_in += n
        slack, ratio = self.slack, self.max_ratio
        allowed = min(slack + ratio * self.bytes_in - self.bytes_out, slack + ratio * n)
        try:
            out = z.decompress(data, allowed + 1)
        except zlib.error as exc:
            raise RemoteProtocolError(f"corrupt deflate stream: {exc}") from None
        got = len(out)
        if got > allowed or z.unconsumed_tail:
            raise RemoteProtocolError("deflate stream inflates beyond its bound")
        if z.eof and z.unused_data:
            raise RemoteProtocolError("data after the end of the deflate stream")
        self.bytes_out += got
        return out


# --------------------------------------------------------- vendor messages


@dataclass(frozen=True, slots=True)
class VendorMessageInfo:
    """One row of :data:`VENDOR_MESSAGES`: what the message is and what a
    peerlab servent does on receipt (``"handle"`` or ``"ignore"``)."""

    name: str
    versions: tuple[int, ...]
    action: Literal["handle", "ignore"]
    note: str


#: Vendor messages met on today's network (gtk-gnutella ``vmsg.c`` map,
#: ``doc/gnutella/msg/``), and what to do with each.  The rule for all the
#: others, and for these when ignored (``vendor_msg`` section 2): "Servents
#: MUST NOT route or broadcast vendor-specific messages they do not
#: understand, but instead MUST drop them" -- without closing the connection.
VENDOR_MESSAGES: dict[tuple[str, int], VendorMessageInfo] = {
    ("\0\0\0\0", 0): VendorMessageInfo(
        "Messages Supported", (0,), "handle", "record which vendor messages the peer reads"
    ),
    ("\0\0\0\0", 10): VendorMessageInfo(
        "Features Supported", (0,), "handle", "record the peer's features (TLS!, QRP1, DHT...)"
    ),
    ("BEAR", 4): VendorMessageInfo(
        "Hops Flow", (1,), "handle", "stop sending queries whose hops exceed the value"
    ),
    ("BEAR", 7): VendorMessageInfo(
        "TCP Connect Back", (1,), "handle", "connect to the peer's port to prove reachability"
    ),
    ("BEAR", 11): VendorMessageInfo(
        "Query Status Request", (1,), "handle", "leaf: answer with hits kept for the query GUID"
    ),
    ("BEAR", 12): VendorMessageInfo(
        "Query Status Response", (1,), "handle", "ultrapeer: feed the leaf's count to the query"
    ),
    ("GTKG", 7): VendorMessageInfo(
        "UDP Connect Back", (1, 2), "ignore", "needs UDP, which the servent does not run"
    ),
    ("GTKG", 9): VendorMessageInfo("Time Sync Request", (1,), "ignore", "clock sync, unneeded"),
    ("GTKG", 10): VendorMessageInfo("Time Sync Reply", (1,), "ignore", "clock sync, unneeded"),
    ("GTKG", 21): VendorMessageInfo(
        "Push-Proxy Cancel", (1,), "handle", "ultrapeer: stop being the leaf's push proxy"
    ),
    ("GTKG", 22): VendorMessageInfo("Node Info Request", (1,), "ignore", "statistics only"),
    ("GTKG", 23): VendorMessageInfo("Node Info Reply", (1,), "ignore", "statistics only"),
    ("LIME", 5): VendorMessageInfo("UDP Crawler Ping", (1,), "ignore", "crawler over UDP"),
    ("LIME", 11): VendorMessageInfo("OOB Reply Ack", (2, 3), "ignore", "out-of-band hits need UDP"),
    ("LIME", 12): VendorMessageInfo(
        "OOB Reply Indication", (1, 2, 3), "ignore", "out-of-band hits need UDP"
    ),
    ("LIME", 13): VendorMessageInfo("OOB Proxy Veto", (1,), "ignore", "out-of-band proxying"),
    ("LIME", 21): VendorMessageInfo(
        "Push-Proxy Request", (1, 2), "handle", "ultrapeer: become the leaf's push proxy, ack"
    ),
    ("LIME", 22): VendorMessageInfo(
        "Push-Proxy ACK", (1, 2), "handle", "leaf: record the ultrapeer as push proxy"
    ),
    ("LIME", 23): VendorMessageInfo("HEAD Ping", (1, 2), "ignore", "file availability over UDP"),
    ("LIME", 24): VendorMessageInfo("HEAD Pong", (1, 2), "ignore", "file availability over UDP"),
}


@dataclass(frozen=True, slots=True)
class MessagesSupported:
    """``0000/0v0``: a count and (vendor, selector, version) entries."""

    VENDOR: ClassVar[str] = "\0\0\0\0"
    SELECTOR: ClassVar[int] = 0
    VERSION: ClassVar[int] = 0

    entries: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class FeaturesSupported:
    """``0000/10v0``: a count and (4-letter feature, version) entries."""

    VENDOR: ClassVar[str] = "\0\0\0\0"
    SELECTOR: ClassVar[int] = 10
    VERSION: ClassVar[int] = 0

    features: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class HopsFlow:
    """``BEAR/4v1`` (``vendor_msg`` section 5): the highest hops value the
    peer wants in queries sent to it (0 stops queries altogether)."""

    VENDOR: ClassVar[str] = "BEAR"
    SELECTOR: ClassVar[int] = 4
    VERSION: ClassVar[int] = 1

    hops: int


@dataclass(frozen=True, slots=True)
class TcpConnectBack:
    """``BEAR/7v1``: connect to the sender at this port."""

    VENDOR: ClassVar[str] = "BEAR"
    SELECTOR: ClassVar[int] = 7
    VERSION: ClassVar[int] = 1

    port: int


@dataclass(frozen=True, slots=True)
class QueryStatusRequest:
    """``BEAR/11v1``: the message GUID is the query's; no body."""

    VENDOR: ClassVar[str] = "BEAR"
    SELECTOR: ClassVar[int] = 11
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class QueryStatusResponse:
    """``BEAR/12v1``: hits the leaf kept for the query (0xFFFF: stop it)."""

    VENDOR: ClassVar[str] = "BEAR"
    SELECTOR: ClassVar[int] = 12
    VERSION: ClassVar[int] = 1

    kept: int


@dataclass(frozen=True, slots=True)
class UdpConnectBack:
    """``GTKG/7``: ping the sender over UDP; v1 carries the GUID to use, v2
    takes it from the message GUID (``guid`` is then ``None``)."""

    VENDOR: ClassVar[str] = "GTKG"
    SELECTOR: ClassVar[int] = 7
    VERSION: ClassVar[int] = 2

    port: int
    guid: bytes | None = None


@dataclass(frozen=True, slots=True)
class PushProxyRequest:
    """``LIME/21``: a leaf asks its ultrapeer to relay pushes; the message
    GUID is the leaf's servent GUID.  LimeWire sends v1 and reads v2 acks."""

    VENDOR: ClassVar[str] = "LIME"
    SELECTOR: ClassVar[int] = 21
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PushProxyAck:
    """``LIME/22``: v2 carries the proxy's IP and port, v1 only the port (the
    IP is the connection's)."""

    VENDOR: ClassVar[str] = "LIME"
    SELECTOR: ClassVar[int] = 22
    VERSION: ClassVar[int] = 2

    port: int
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class PushProxyCancel:
    """``GTKG/21v1``: the leaf no longer needs the push proxy."""

    VENDOR: ClassVar[str] = "GTKG"
    SELECTOR: ClassVar[int] = 21
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class OobReplyIndication:
    """``LIME/12v2``: hits waiting for the query; can the querier take
    unsolicited UDP?"""

    VENDOR: ClassVar[str] = "LIME"
    SELECTOR: ClassVar[int] = 12
    VERSION: ClassVar[int] = 2

    hits: int
    can_receive_unsolicited: bool


@dataclass(frozen=True, slots=True)
class OobReplyAck:
    """``LIME/11``: how many of the indicated hits to deliver (v3 adds GGEP ``SO``)."""

    VENDOR: ClassVar[str] = "LIME"
    SELECTOR: ClassVar[int] = 11
    VERSION: ClassVar[int] = 2

    wanted: int
    ggep: GGEP | None = None


VendorBody = (
    MessagesSupported
    | FeaturesSupported
    | HopsFlow
    | TcpConnectBack
    | QueryStatusRequest
    | QueryStatusResponse
    | UdpConnectBack
    | PushProxyRequest
    | PushProxyAck
    | PushProxyCancel
    | OobReplyIndication
    | OobReplyAck
)


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise RemoteProtocolError(f"{what} body of {len(data)} bytes, needs {n}")


def _dec_messages_supported(data: bytes, version: int) -> MessagesSupported:
    _need(data, 2, "Messages Supported")
    count = _u16(data, 0)
    _need(data, 2 + 8 * count, "Messages Supported")
    return MessagesSupported(
        tuple(
            (data[i : i + 4].decode("latin-1"), _u16(data, i + 4), _u16(data, i + 6))
            for i in range(2, 2 + 8 * count, 8)
        )
    )


def _dec_features_supported(data: bytes, version: int) -> FeaturesSupported:
    _need(data, 2, "Features Supported")
    count = _u16(data, 0)
    _need(data, 2 + 6 * count, "Features Supported")
    return FeaturesSupported(
        tuple(
            (data[i : i + 4].decode("latin-1"), _u16(data, i + 4))
            for i in range(2, 2 + 6 * count, 6)
        )
    )


def _dec_hops_flow(data: bytes, version: int) -> HopsFlow:
    _need(data, 1, "Hops Flow")
    return HopsFlow(data[0])


def _dec_tcp_connect_back(data: bytes, version: int) -> TcpConnectBack:
    _need(data, 2, "TCP Connect Back")
    return TcpConnectBack(_u16(data, 0))


def _dec_qstat_request(data: bytes, version: int) -> QueryStatusRequest:
    return QueryStatusRequest()


def _dec_qstat_response(data: bytes, version: int) -> QueryStatusResponse:
    _need(data, 2, "Query Status Response")
    return QueryStatusResponse(_u16(data, 0))


def _dec_udp_connect_back(data: bytes, version: int) -> UdpConnectBack:
    if version == 1:
        _need(data, 18, "UDP Connect Back v1")
        return UdpConnectBack(_u16(data, 0), bytes(data[2:18]))
    _need(data, 2, "UDP Connect Back")
    return UdpConnectBack(_u16(data, 0))


def _dec_proxy_request(data: bytes, version: int) -> PushProxyRequest:
    return PushProxyRequest()


def _dec_proxy_ack(data: bytes, version: int) -> PushProxyAck:
    if version >= 2:
        _need(data, 6, "Push-Proxy ACK v2")
        return PushProxyAck(_u16(data, 4), unpack_ipv4(data[:4]))
    _need(data, 2, "Push-Proxy ACK")
    return PushProxyAck(_u16(data, 0))


def _dec_proxy_cancel(data: bytes, version: int) -> PushProxyCancel:
    return PushProxyCancel()


def _dec_oob_indication(data: bytes, version: int) -> OobReplyIndication:
    _need(data, 1 if version < 2 else 2, "OOB Reply Indication")
    return OobReplyIndication(data[0], version >= 2 and bool(data[1] & 0x01))


def _dec_oob_ack(data: bytes, version: int) -> OobReplyAck:
    _need(data, 1, "OOB Reply Ack")
    ggep = _decode_ggep_area(data, 1) if version >= 3 else None
    return OobReplyAck(data[0], ggep)


_VENDOR_DECODERS: dict[tuple[str, int], Callable[[bytes, int], VendorBody]] = {
    ("\0\0\0\0", 0): _dec_messages_supported,
    ("\0\0\0\0", 10): _dec_features_supported,
    ("BEAR", 4): _dec_hops_flow,
    ("BEAR", 7): _dec_tcp_connect_back,
    ("BEAR", 11): _dec_qstat_request,
    ("BEAR", 12): _dec_qstat_response,
    ("GTKG", 7): _dec_udp_connect_back,
    ("GTKG", 21): _dec_proxy_cancel,
    ("LIME", 11): _dec_oob_ack,
    ("LIME", 12): _dec_oob_indication,
    ("LIME", 21): _dec_proxy_request,
    ("LIME", 22): _dec_proxy_ack,
}


def decode_vendor(vm: VendorMessage) -> VendorBody | None:
    """The typed body of a known vendor message, or ``None`` for one we do not
    model (drop it, never route it).  A known message with a short body
    raises :class:`~peerlab.errors.RemoteProtocolError` (drop the message)."""
    decoder = _VENDOR_DECODERS.get((vm.vendor, vm.selector))
    if decoder is None:
        return None
    info = VENDOR_MESSAGES.get((vm.vendor, vm.selector))
    if info is not None and vm.version not in info.versions and vm.version < max(info.versions):
        raise RemoteProtocolError(f"{info.name} version {vm.version} unknown")
    return decoder(vm.data, vm.version)


def _enc_body(body: VendorBody, version: int) -> bytes:
    if isinstance(body, MessagesSupported):
        out = bytearray(len(body.entries).to_bytes(2, "little"))
        for vendor, selector, ver in body.entries:
            out += _enc_vendor(VendorMessage(vendor, selector, ver))
        return bytes(out)
    if isinstance(body, FeaturesSupported):
        out = bytearray(len(body.features).to_bytes(2, "little"))
        for name, ver in body.features:
            raw = name.encode("latin-1", "replace")
            if len(raw) != 4:
                raise LocalProtocolError(f"feature name {name!r} is not 4 letters")
            _check_u(ver, 16, "feature version")
            out += raw + ver.to_bytes(2, "little")
        return bytes(out)
    if isinstance(body, HopsFlow):
        _check_u(body.hops, 8, "hops")
        return bytes((body.hops,))
    if isinstance(body, TcpConnectBack):
        _check_u(body.port, 16, "port")
        return body.port.to_bytes(2, "little")
    if isinstance(body, QueryStatusResponse):
        _check_u(body.kept, 16, "kept hits")
        return body.kept.to_bytes(2, "little")
    if isinstance(body, UdpConnectBack):
        _check_u(body.port, 16, "port")
        if version == 1:
            if body.guid is None or len(body.guid) != GUID_LENGTH:
                raise LocalProtocolError("UDP Connect Back v1 carries a 16-byte GUID")
            return body.port.to_bytes(2, "little") + body.guid
        return body.port.to_bytes(2, "little")
    if isinstance(body, PushProxyAck):
        _check_u(body.port, 16, "port")
        if version >= 2:
            if body.ip is None:
                raise LocalProtocolError("Push-Proxy ACK v2 carries the IP")
            return pack_ipv4(body.ip) + body.port.to_bytes(2, "little")
        return body.port.to_bytes(2, "little")
    if isinstance(body, OobReplyIndication):
        _check_u(body.hits, 8, "hits")
        return bytes((body.hits, 1 if body.can_receive_unsolicited else 0))
    if isinstance(body, OobReplyAck):
        _check_u(body.wanted, 8, "wanted hits")
        return bytes((body.wanted,)) + (_encode_ggep(body.ggep) if version >= 3 else b"")
    return b""  # QueryStatusRequest, PushProxyRequest, PushProxyCancel: no body


def encode_vendor(body: VendorBody, version: int | None = None) -> VendorMessage:
    """The vendor message carrying ``body`` (at its class's version unless given)."""
    ver = body.VERSION if version is None else version
    return VendorMessage(body.VENDOR, body.SELECTOR, ver, _enc_body(body, ver))
