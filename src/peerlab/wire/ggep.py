"""GGEP, the Gnutella Generic Extension Protocol (gtk-gnutella ``doc/gnutella/GGEP``,
document revision 0.51, protocol version 0.5).

A GGEP block is the magic byte ``0xC3`` followed by one or more extensions.
Each extension is a flags byte, an ID of 1 to 15 bytes, a length in the
compact 1-3 byte encoding of the spec's "Length Encoding" section, and the
data.  Flag bits ("GGEP Extension Header Flags"): bit 7 last extension,
bit 6 COBS encoding, bit 5 deflate compression, bit 4 reserved (must be 0),
bits 3-0 the ID length.  Compression is applied first and COBS second when
encoding; decoding undoes COBS first ("Implementation Notes").

Deflated data is a zlib stream, as gtk-gnutella (``src/core/ggep.c``, zlib
deflater) and LimeWire (``java.util.zip.Deflater``) write it; a raw RFC 1951
stream is accepted too.  Inflation is bounded (:data:`MAX_INFLATED_BYTES`):
a small extension that inflates beyond the bound is refused, so a zip bomb
costs the sender its message, never our memory.

Public API:

- :class:`Extension`, :class:`GGEP` -- one extension; an ordered block.
- :func:`decode_block` / :func:`encode_block` -- one GGEP block.
- :func:`decode_length` / :func:`encode_length` -- the compact length field.
- :func:`cobs_encode` / :func:`cobs_decode` -- Consistent Overhead Byte
  Stuffing (Cheshire & Baker, SIGCOMM 1997), as the spec references it.
- :func:`encode_int` / :func:`decode_int` -- the little-endian, minimal-length
  integers that extensions such as ``DU``, ``LF`` and ``CT`` carry.
- :func:`pack_ipv4` / :func:`unpack_ipv4`, :func:`pack_ip_ports` /
  :func:`unpack_ip_ports` -- the 6-byte IPv4:port records of ``ALT``,
  ``PUSH`` and ``IPP`` (IP in network order, port little-endian).
- Well-known extension IDs as ``ID_*`` constants.

Garbage raises :class:`~peerlab.errors.RemoteProtocolError`; values we are
asked to encode that GGEP cannot carry raise
:class:`~peerlab.errors.LocalProtocolError`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from peerlab.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "GGEP",
    "MAGIC",
    "MAX_DATA_LENGTH",
    "MAX_EXTENSIONS",
    "MAX_ID_LENGTH",
    "MAX_INFLATED_BYTES",
    "Extension",
    "cobs_decode",
    "cobs_encode",
    "decode_block",
    "decode_int",
    "decode_length",
    "encode_block",
    "encode_int",
    "encode_length",
    "pack_ip_ports",
    "pack_ipv4",
    "unpack_ip_ports",
    "unpack_ipv4",
]

#: "GGEP Extension Prefix": the magic byte that opens every block.
MAGIC = 0xC3
#: "GGEP Extension Header": an ID is 1 to 15 bytes (4 bits of length).
MAX_ID_LENGTH = 15
#: "Length Encoding": three 6-bit chunks at most, so 2**18 - 1 bytes.
MAX_DATA_LENGTH = (1 << 18) - 1
#: Extensions we accept in one block.  Real blocks carry a handful (a hit's
#: QHD has H, ALT, PUSH, BH, GTKGV...); gtk-gnutella parses at most a few
#: dozen (``MAX_EXTVEC``).  Bounds the work a hostile block can cause.
MAX_EXTENSIONS = 64
#: Bound on one extension's inflated data.  Its compressed form sits inside
#: one Gnutella message (at most 64 KiB, see ``peerlab.wire.gnutella``), and
#: no known extension needs more than that once inflated.
MAX_INFLATED_BYTES = 64 * 1024

FLAG_LAST = 0x80
FLAG_COBS = 0x40
FLAG_DEFLATE = 0x20
FLAG_RESERVED = 0x10
FLAG_ID_LENGTH = 0x0F

# Length chunks ("Length Encoding"): M = another chunk follows, L = last one.
_LEN_MORE = 0x80
_LEN_LAST = 0x40
_LEN_VALUE = 0x3F

# Well-known extension IDs (GDF "GGEP Extensions" table, as gtk-gnutella's
# src/core/ggep_type.h and LimeWire's GGEPKeys name them).
ID_HASH = "H"  #: binary hash in hits/queries: 0x01 + SHA-1, 0x02 + SHA-1 + Tiger
ID_ALT = "ALT"  #: alternate locations in a hit result (6-byte IP:port records)
ID_PUSH = "PUSH"  #: push proxies in a QueryHit's QHD (6-byte IP:port records)
ID_LARGE_FILE = "LF"  #: 64-bit file size when it does not fit the 32-bit field
ID_CREATE_TIME = "CT"  #: file creation time, seconds since the epoch
ID_BROWSE_HOST = "BH"  #: the servent answers browse-host requests
ID_ULTRAPEER = "UP"  #: Pong: version, free leaf slots, free ultrapeer slots
ID_DAILY_UPTIME = "DU"  #: Pong: average daily uptime in seconds
ID_VENDOR_CODE = "VC"  #: Pong: 4-byte vendor code and a version byte
ID_GUESS = "GUE"  #: Pong: GUESS support
ID_PACKED_IPS = "IPP"  #: Pong: packed IP:port records of other hosts
ID_SUPPORT_CACHED_PONGS = "SCP"  #: Ping: asks for IPP in the Pong
ID_LOCALE = "LOC"  #: Pong: preferred locale
ID_MEDIA_TYPE = "M"  #: Query: media type mask
ID_EXTENDED_QUERY = "XQ"  #: Query: the part of a long query that did not fit
ID_TLS = "TLS"  #: the servent accepts TLS connections


@dataclass(frozen=True, slots=True)
class Extension:
    """One GGEP extension: its ID and its (decoded, inflated) data.

    ``cobs`` and ``deflate`` say how the data is (or was) carried on the wire.
    They are hints for the encoder and take no part in equality: two
    extensions are the same when their ID and data are.
    """

    id: str
    data: bytes = b""
    cobs: bool = field(default=False, compare=False)
    deflate: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        try:
            raw = self.id.encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"GGEP extension id {self.id!r} is not bytes") from None
        if not 1 <= len(raw) <= MAX_ID_LENGTH or 0 in raw:
            raise LocalProtocolError(f"bad GGEP extension id {self.id!r}")


@dataclass(frozen=True, slots=True)
class GGEP:
    """An ordered GGEP block (a tuple of :class:`Extension`).

    Extensions are kept in wire order ("Extensions within a block should be
    processed in the order in which they appear"); an ID may repeat, and
    :meth:`get` returns the first.
    """

    extensions: tuple[Extension, ...] = ()

    @classmethod
    def of(cls, *items: Extension | tuple[str, bytes]) -> GGEP:
        """A block from extensions or ``(id, data)`` pairs."""
        exts = tuple(i if isinstance(i, Extension) else Extension(i[0], i[1]) for i in items)
        return cls(exts)

    def get(self, ext_id: str) -> bytes | None:
        """The data of the first extension named ``ext_id``, or ``None``."""
        for ext in self.extensions:
            if ext.id == ext_id:
                return ext.data
        return None

    def with_extension(self, ext: Extension) -> GGEP:
        """A copy where ``ext`` replaces any extension of the same ID (or is appended)."""
        out = [e for e in self.extensions if e.id != ext.id]
        out.append(ext)
        return GGEP(tuple(out))

    def without(self, ext_id: str) -> GGEP:
        """A copy without any extension named ``ext_id``."""
        return GGEP(tuple(e for e in self.extensions if e.id != ext_id))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.extensions)

    def __contains__(self, ext_id: object) -> bool:
        for ext in self.extensions:  # a plain loop: asked of every Pong
            if ext.id == ext_id:
                return True
        return False

    def __iter__(self) -> Iterator[Extension]:
        return iter(self.extensions)

    def __len__(self) -> int:
        return len(self.extensions)


# ------------------------------------------------------------ length field


def encode_length(n: int) -> bytes:
    """The compact length encoding of ``n`` ("Length Encoding").

    >>> encode_length(64).hex()
    '8140'
    """
    if n < 0 or n > MAX_DATA_LENGTH:
        raise LocalProtocolError(f"GGEP data length {n} out of range")
    if n <= 0x3F:
        return bytes((_LEN_LAST | n,))
    if n <= 0xFFF:
        return bytes((_LEN_MORE | (n >> 6), _LEN_LAST | (n & _LEN_VALUE)))
    return bytes(
        (_LEN_MORE | (n >> 12), _LEN_MORE | ((n >> 6) & _LEN_VALUE), _LEN_LAST | (n & _LEN_VALUE))
    )


def decode_length(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """``(length, end)`` of the length field starting at ``buf[pos]``.

    At most three chunks; each but the last has M set, the last has L set;
    a chunk with both or neither bit is garbage.
    """
    value = 0
    n = len(buf)
    for _ in range(3):
        if pos >= n:
            raise RemoteProtocolError("GGEP length field truncated")
        b = buf[pos]
        pos += 1
        value = (value << 6) | (b & _LEN_VALUE)
        flag = b & 0xC0
        if flag == _LEN_LAST:
            return value, pos
        if flag != _LEN_MORE:
            raise RemoteProtocolError(f"bad GGEP length chunk 0x{b:02x}")
    raise RemoteProtocolError("GGEP length field longer than three chunks")


# -------------------------------------------------------------------- COBS


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: the result never contains a zero byte.

    The classic algorithm (Cheshire & Baker): a code byte ``c`` is followed
    by ``c - 1`` data bytes and stands for an implied zero after them unless
    ``c`` is 0xFF or the block is the last.  As in the reference encoder, a
    final block of exactly 254 bytes is not followed by an empty ``01`` block.
    """
    out = bytearray()
    groups = data.split(b"\x00")
    last = len(groups) - 1
    for i, group in enumerate(groups):
        full = 0
        while len(group) - full >= 254:
            out.append(0xFF)
            out += group[full : full + 254]
            full += 254
        rest = group[full:]
        if i == last and not rest and full:
            break
        out.append(len(rest) + 1)
        out += rest
    return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Undo :func:`cobs_encode`; a zero byte or a block overrunning the data is garbage."""
    out = bytearray()
    pos = 0
    n = len(data)
    while pos < n:
        code = data[pos]
        if code == 0:
            raise RemoteProtocolError("zero byte in COBS data")
        end = pos + code
        if end > n:
            raise RemoteProtocolError("COBS block overruns the data")
        block = data[pos + 1 : end]
        if 0 in block:
            raise RemoteProtocolError("zero byte in COBS data")
        out += block
        pos = end
        if code < 0xFF and pos < n:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- deflate


def _inflate(data: bytes, limit: int) -> bytes:
    """Inflate a zlib (or raw deflate) stream of at most ``limit`` bytes."""
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise RemoteProtocolError(f"GGEP data inflates beyond {limit} bytes")
        if not d.eof or d.unused_data:
            raise RemoteProtocolError("GGEP deflated data is truncated or has trailing bytes")
        return out
    raise RemoteProtocolError("GGEP deflated data is not a deflate stream")


# ------------------------------------------------------------------ blocks


def decode_block(
    buf: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    max_inflated: int = MAX_INFLATED_BYTES,
) -> tuple[GGEP, int]:
    """Decode the GGEP block starting at ``buf[offset]`` (the magic byte).

    Returns the block and the offset just past it.  Structural parsing, so
    data holding NUL bytes (allowed where NUL does not terminate the field)
    is read correctly.
    """
    n = len(buf)
    if offset >= n or buf[offset] != MAGIC:
        raise RemoteProtocolError("GGEP block does not start with the magic byte")
    pos = offset + 1
    exts: list[Extension] = []
    while True:
        if len(exts) >= MAX_EXTENSIONS:
            raise RemoteProtocolError(f"more than {MAX_EXTENSIONS} GGEP extensions in a block")
        if pos >= n:
            raise RemoteProtocolError("GGEP block truncated before an extension header")
        flags = buf[pos]
        pos += 1
        if flags & FLAG_RESERVED:
            raise RemoteProtocolError("GGEP reserved flag bit set")
        id_len = flags & FLAG_ID_LENGTH
        if id_len == 0:
            raise RemoteProtocolError("GGEP extension with an empty id")
        raw_id = bytes(buf[pos : pos + id_len])
        if len(raw_id) != id_len:
            raise RemoteProtocolError("GGEP extension id truncated")
        if 0 in raw_id:
            raise RemoteProtocolError("NUL byte in a GGEP extension id")
        pos += id_len
        length, pos = decode_length(buf, pos)
        end = pos + length
        if end > n:
            raise RemoteProtocolError("GGEP extension data truncated")
        data = bytes(buf[pos:end])
        pos = end
        cobs = bool(flags & FLAG_COBS)
        deflate = bool(flags & FLAG_DEFLATE)
        if cobs:
            data = cobs_decode(data)
        if deflate:
            data = _inflate(data, max_inflated)
        exts.append(Extension(raw_id.decode("latin-1"), data, cobs, deflate))
        if flags & FLAG_LAST:
            return GGEP(tuple(exts)), pos


def encode_block(ggep: GGEP | Iterable[Extension], *, avoid_nul: bool = False) -> bytes:
    """Encode a GGEP block; an empty one encodes to ``b""`` (no block at all).

    Each extension is deflated when its ``deflate`` hint is set and COBS-encoded
    when its ``cobs`` hint is set -- or, with ``avoid_nul``, whenever its wire
    data would contain a NUL byte (QueryHit results end at a NUL, so GGEP
    there must not carry one: "Query Hit Result" in the spec).
    """
    exts = tuple(ggep.extensions if isinstance(ggep, GGEP) else ggep)
    if not exts:
        return b""
    out = bytearray((MAGIC,))
    last = len(exts) - 1
    for i, ext in enumerate(exts):
        raw_id = ext.id.encode("latin-1")
        flags = len(raw_id)
        data = ext.data
        if ext.deflate:
            data = zlib.compress(data)
            flags |= FLAG_DEFLATE
        if ext.cobs or (avoid_nul and 0 in data):
            data = cobs_encode(data)
            flags |= FLAG_COBS
        if i == last:
            flags |= FLAG_LAST
        out.append(flags)
        out += raw_id
        out += encode_length(len(data))
        out += data
    return bytes(out)


# ------------------------------------------------------- extension values


def encode_int(value: int) -> bytes:
    """A GGEP integer: little-endian, as few bytes as needed (one for zero)."""
    if value < 0 or value >= 1 << 64:
        raise LocalProtocolError(f"GGEP integer {value} out of range")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "little")


def decode_int(data: bytes) -> int:
    """Inverse of :func:`encode_int` (1 to 8 bytes; trailing zeros tolerated)."""
    if not 1 <= len(data) <= 8:
        raise RemoteProtocolError(f"GGEP integer of {len(data)} bytes")
    return int.from_bytes(data, "little")


def pack_ipv4(ip: str) -> bytes:
    """Dotted quad to 4 bytes in network order."""
    parts = ip.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise LocalProtocolError(f"not an IPv4 address: {ip!r}")
    return bytes(int(p) for p in parts)


def unpack_ipv4(data: bytes | bytearray | memoryview) -> str:
    """4 bytes in network order to a dotted quad."""
    return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}"


def pack_ip_ports(hosts: Iterable[tuple[str, int]]) -> bytes:
    """6-byte records: IPv4 in network order, port little-endian (ALT, PUSH, IPP)."""
    out = bytearray()
    for ip, port in hosts:
        if not 0 <= port <= 0xFFFF:
            raise LocalProtocolError(f"port {port} out of range")
        out += pack_ipv4(ip)
        out += port.to_bytes(2, "little")
    return bytes(out)


def unpack_ip_ports(data: bytes) -> list[tuple[str, int]]:
    """Inverse of :func:`pack_ip_ports`; a length that is not a multiple of 6 is garbage."""
    if len(data) % 6:
        raise RemoteProtocolError(f"IP:port list of {len(data)} bytes is not a multiple of 6")
    return [
        (unpack_ipv4(data[i : i + 4]), int.from_bytes(data[i + 4 : i + 6], "little"))
        for i in range(0, len(data), 6)
    ]
