"""The Query Routing Protocol (gtk-gnutella ``doc/gnutella/QRP``, Rohrs, v1.0;
its use between leaves and ultrapeers: ``doc/gnutella/ultrapeer_qrp``).

A leaf hashes every keyword of its shared files into a table of
``table_length`` entries (a power of two); an entry holds the distance to a
matching file, ``infinity`` meaning none.  It sends the table to its
ultrapeer as one ROUTE_TABLE_UPDATE RESET (function 0x30, variant 0) and a
sequence of PATCH messages (variant 1) carrying the entry-wise difference to
the previous table, 4 or 8 signed bits per entry, optionally zlib-compressed
and cut into chunks ("Gnutella Protocol Changes").  The ultrapeer forwards a
query to the leaf only when every keyword of the query hits the table.

Public API:

- :func:`qrp_hash` -- the spec's hash (Appendix A), test vectors included.
- :func:`split_keywords` -- how query and file names are cut into keywords.
- :class:`ResetTable`, :class:`PatchTable` -- the two variants;
  :func:`decode_route_table_update` / :func:`encode_route_table_update` their payloads.
- :class:`QueryRouteTable` -- a table: add, lookup, match, merge, scale.
- :func:`make_update` -- the RESET/PATCH messages that move a receiver from
  one table to the next.
- :class:`QrpReceiver` -- the receiving side: RESET, PATCH reassembly with
  sequence checks, bounded decompression, the finished table.

Everything a peer controls is bounded: the table length
(:data:`MAX_TABLE_LENGTH`), the sequence (255 messages, one byte), the
inflated patch (exactly ``table_length * entry_bits / 8`` bytes, so a zip
bomb is refused at the first byte too many).
"""

from __future__ import annotations

import functools
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self

from peerlab.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "COMPRESSOR_NONE",
    "COMPRESSOR_ZLIB",
    "DEFAULT_INFINITY",
    "DEFAULT_TABLE_LENGTH",
    "MAX_INFINITY",
    "MAX_TABLE_LENGTH",
    "MIN_TABLE_LENGTH",
    "ROUTE_TABLE_UPDATE",
    "PatchTable",
    "PresenceTable",
    "QrpReceiver",
    "QueryRouteTable",
    "ResetTable",
    "QrpTable",
    "decode_route_table_update",
    "encode_route_table_update",
    "make_update",
    "qrp_hash",
    "split_keywords",
]

#: "Gnutella Protocol Changes": the function code of ROUTE_TABLE_UPDATE.
ROUTE_TABLE_UPDATE = 0x30
VARIANT_RESET = 0x00
VARIANT_PATCH = 0x01
#: PATCH COMPRESSOR values: "0x0 no compression, 0x1 ZLIB compression".
COMPRESSOR_NONE = 0x00
COMPRESSOR_ZLIB = 0x01
#: PATCH ENTRY_BITS: "Must be 4 or 8".
ENTRY_BITS = (4, 8)
#: LimeWire's table length (2**16 entries, 16-bit hashes).
DEFAULT_TABLE_LENGTH = 1 << 16
#: "Typically INFINITY is chosen to be one greater than the maximum TTL";
#: the spec's appendix and LimeWire use 7.
DEFAULT_INFINITY = 7
#: Smallest table we accept: the spec's appendix uses 8 entries; anything
#: smaller routes nothing useful.
MIN_TABLE_LENGTH = 8
#: Largest table a peer may make us hold, one byte per entry.  LimeWire sends
#: 2**16 entries and gtk-gnutella at most 2**21 (its largest generated table);
#: 2**21 bytes per leaf is the memory we grant.
MAX_TABLE_LENGTH = 1 << 21
#: Largest INFINITY: an 8-bit signed patch entry must span 1 - INFINITY.
MAX_INFINITY = 127
#: "sequences are limited to 255 messages, since only one unsigned byte is
#: used per SEQ_SIZE field".
MAX_SEQUENCE = 255
#: The spec's suggested PATCH chunk ("A maximum message size of 1KB might be
#: a good choice").
DEFAULT_CHUNK = 1024

# Appendix A: "A 32-bit integer version of the golden ratio".
_A_INT = 0x4F1BBCDC
_MASK32 = 0xFFFFFFFF


def qrp_hash(keyword: str | bytes, bits: int) -> int:
    """The QRP hash of ``keyword`` in ``bits`` bits (Appendix A).

    The keyword is lower-cased (``str.lower`` for text, ASCII for bytes) and,
    as text, encoded in UTF-8: "the hash function operates on bytes ... all
    characters must be encoded in a unique, canonical manner".  Its bytes are
    XORed together as little-endian 32-bit words (zero-padded), the result is
    multiplied by 0x4F1BBCDC and bits 31..32-bits of the product kept.
    """
    data = keyword.lower().encode("utf-8") if isinstance(keyword, str) else keyword.lower()
    if not 0 < bits <= 32:
        raise LocalProtocolError(f"QRP hash width {bits} out of range")
    n = len(data)
    if n % 4:
        data = data + bytes(4 - n % 4)
    value = int.from_bytes(data, "little")
    xor = 0
    while value:
        xor ^= value & _MASK32
        value >>= 32
    return ((xor * _A_INT) & _MASK32) >> (32 - bits)


_NON_WORD = re.compile(r"[\W_]+")


def split_keywords(text: str, *, min_length: int = 1) -> list[str]:
    """The lower-cased keywords of ``text``, in order, without repeats.

    Keywords are runs of letters and digits: "These keywords should be
    separated by ... a space"; servents (LimeWire, gtk-gnutella) also cut at
    punctuation, so file names like ``Lebowski_-_Intro.mp3`` yield keywords.
    """
    seen: dict[str, None] = {}
    for word in _NON_WORD.split(text.lower()):
        if len(word) >= min_length:
            seen.setdefault(word, None)
    return list(seen)


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class ResetTable:
    """ROUTE_TABLE_UPDATE RESET: "resets the receiver's route table to a
    completely empty table of TABLE_LENGTH elements"."""

    TYPE: ClassVar[int] = ROUTE_TABLE_UPDATE
    VARIANT: ClassVar[int] = VARIANT_RESET

    table_length: int
    infinity: int = DEFAULT_INFINITY


@dataclass(frozen=True, slots=True)
class PatchTable:
    """ROUTE_TABLE_UPDATE PATCH: one chunk of a (compressed) table patch."""

    TYPE: ClassVar[int] = ROUTE_TABLE_UPDATE
    VARIANT: ClassVar[int] = VARIANT_PATCH

    seq_no: int
    seq_size: int
    compressor: int
    entry_bits: int
    data: bytes


RouteTableUpdate = ResetTable | PatchTable


def encode_route_table_update(msg: RouteTableUpdate) -> bytes:
    """The payload of a RESET or PATCH (field order of the spec's tables)."""
    if isinstance(msg, ResetTable):
        if not 0 <= msg.table_length <= _MASK32 or not 0 <= msg.infinity <= 255:
            raise LocalProtocolError(f"unencodable {msg!r}")
        return (
            bytes((VARIANT_RESET,))
            + msg.table_length.to_bytes(4, "little")
            + bytes((msg.infinity,))
        )
    fields = (msg.seq_no, msg.seq_size, msg.compressor, msg.entry_bits)
    if not all(0 <= f <= 255 for f in fields):
        raise LocalProtocolError(f"unencodable PATCH fields {fields}")
    return bytes((VARIANT_PATCH, *fields)) + msg.data


def decode_route_table_update(payload: bytes) -> RouteTableUpdate:
    """Parse a ROUTE_TABLE_UPDATE payload (structure only; :class:`QrpReceiver`
    checks the values against the state of the exchange)."""
    if not payload:
        raise RemoteProtocolError("empty ROUTE_TABLE_UPDATE")
    variant = payload[0]
    if variant == VARIANT_RESET:
        if len(payload) != 6:
            raise RemoteProtocolError(f"RESET of {len(payload)} bytes, not 6")
        return ResetTable(int.from_bytes(payload[1:5], "little"), payload[5])
    if variant == VARIANT_PATCH:
        if len(payload) < 5:
            raise RemoteProtocolError(f"PATCH of {len(payload)} bytes, less than 5")
        return PatchTable(payload[1], payload[2], payload[3], payload[4], bytes(payload[5:]))
    raise RemoteProtocolError(f"unknown ROUTE_TABLE_UPDATE variant {variant}")


# ------------------------------------------------------------------- table


def _bits_of(length: int) -> int:
    return length.bit_length() - 1


def _check_shape(length: int, infinity: int, exc: type[Exception]) -> None:
    if length < MIN_TABLE_LENGTH or length > MAX_TABLE_LENGTH or length & (length - 1):
        raise exc(f"QRP table length {length} is not a power of two in range")
    if not 1 <= infinity <= MAX_INFINITY:
        raise exc(f"QRP infinity {infinity} out of range")


class _Lookup(ABC):
    """What a query asks of any table: is each keyword present?"""

    __slots__ = ()

    length: int
    infinity: int

    @abstractmethod
    def __init__(self, length: int, infinity: int) -> None:
        """An empty table of ``length`` entries: nothing present."""

    @classmethod
    def from_keywords(
        cls,
        keywords: Iterable[str],
        length: int = DEFAULT_TABLE_LENGTH,
        infinity: int = DEFAULT_INFINITY,
    ) -> Self:
        """A leaf's table: every keyword present (at distance 1)."""
        table = cls(length, infinity)
        for word in keywords:
            table.add(word)
        return table

    @abstractmethod
    def add(self, keyword: str | bytes) -> None:
        """Make ``keyword`` present (at distance 1)."""

    @abstractmethod
    def contains(self, keyword: str | bytes) -> bool:
        """Does the table claim ``keyword``?"""

    def matches(self, keywords: Iterable[str | bytes]) -> bool:
        """Do all ``keywords`` hit the table ("Queries are interpreted as
        logical AND's of keywords")?  No keywords match nothing."""
        seen = False
        for word in keywords:
            seen = True
            if not self.contains(word):
                return False
        return seen

    @property
    @abstractmethod
    def present(self) -> int:
        """How many entries are present."""

    def fill_ratio(self) -> float:
        """Fraction of entries present: a table claiming every keyword has 1.0."""
        return self.present / self.length

    @abstractmethod
    def _content(self) -> bytearray:
        """What two equal tables of the same kind and shape hold alike."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Lookup) or type(other) is not type(self):
            return NotImplemented
        return (self.length, self.infinity, self._content()) == (
            other.length,
            other.infinity,
            other._content(),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(length={self.length}, infinity={self.infinity}, "
            f"present={self.present})"
        )


class QueryRouteTable(_Lookup):
    """One query route table: ``length`` one-byte entries, each the distance
    to a matching file or ``infinity`` (no file).  An entry below infinity is
    present.  Mutable; :meth:`copy` before sharing."""

    __slots__ = ("length", "infinity", "bits", "entries")

    def __init__(
        self,
        length: int = DEFAULT_TABLE_LENGTH,
        infinity: int = DEFAULT_INFINITY,
        entries: bytes | bytearray | None = None,
    ) -> None:
        _check_shape(length, infinity, LocalProtocolError)
        self.length = length
        self.infinity = infinity
        self.bits = _bits_of(length)
        if entries is None:
            self.entries = bytearray((infinity,)) * length
        else:
            if len(entries) != length:
                raise LocalProtocolError("entries do not match the table length")
            self.entries = bytearray(entries)

    def copy(self) -> QueryRouteTable:
        return QueryRouteTable(self.length, self.infinity, self.entries)

    def add(self, keyword: str | bytes, distance: int = 1) -> None:
        """Record ``keyword`` at ``distance`` (keeping any shorter one)."""
        if not 0 <= distance < self.infinity:
            raise LocalProtocolError(f"distance {distance} not below infinity {self.infinity}")
        slot = qrp_hash(keyword, self.bits)
        if self.entries[slot] > distance:
            self.entries[slot] = distance

    def contains(self, keyword: str | bytes) -> bool:
        return self.entries[qrp_hash(keyword, self.bits)] < self.infinity

    @property
    def present(self) -> int:
        # Delete the present values; what is left is absent (one C pass).
        return self.length - len(self.entries.translate(None, _PRESENT_VALUES[self.infinity]))

    def presence(self) -> bytes:
        """One byte per entry: 1 present, 0 absent."""
        return bytes(self.entries).translate(_PRESENT_FLAGS[self.infinity])

    def apply_patch(self, start: int, delta: bytes, entry_bits: int) -> None:
        """Add the signed patch entries in ``delta`` (``entry_bits`` each) to
        the entries from ``start`` on, each clamped to ``[0, infinity]``."""
        _apply(self.entries, start, delta, entry_bits, self.infinity)

    def scaled(self, length: int) -> QueryRouteTable:
        """This table interpolated to ``length`` entries ("Hashing Details": an
        entry of the new table is the minimum of the entries it overlaps)."""
        out = QueryRouteTable(length, self.infinity)
        if length == self.length:
            out.entries[:] = self.entries
        elif length > self.length:
            k = length // self.length
            out.entries[:] = b"".join(bytes((v,)) * k for v in self.entries)
        else:
            k = self.length // length
            src = self.entries
            out.entries[:] = bytes(min(src[i : i + k]) for i in range(0, self.length, k))
        return out

    def merge(self, other: QueryRouteTable) -> None:
        """Fold ``other`` into this table (entry-wise minimum), scaling it to our
        length and mapping its infinity to ours: an ultrapeer's merged table of
        its leaves (``ultrapeer_qrp``)."""
        src = other if other.length == self.length else other.scaled(self.length)
        inf = self.infinity
        oinf = other.infinity
        mine = self.entries
        for i, v in enumerate(src.entries):
            if v < oinf and v < mine[i]:
                mine[i] = v if v < inf else inf

    def _content(self) -> bytearray:
        return self.entries


class PresenceTable(_Lookup):
    """A peer's table as LimeWire and gtk-gnutella keep one: a bit per entry,
    present or not, 8 KiB for LimeWire's 65,536 entries where the distances
    take 64 KiB.  An ultrapeer holds one per leaf and needs no more: last-hop
    routing asks only whether a keyword is present.

    A patch entry sets presence, it does not add distance: below zero makes
    the entry present, above zero absent, zero leaves it (LimeWire's
    ``QueryRouteTable.patch``, gtk-gnutella's compacted tables).  For a table
    of distances 1 and infinity, which is what leaves send, that is exactly
    the spec's arithmetic (``QueryRouteTable.apply_patch``).  Entry ``k`` is
    bit ``7 - k % 8`` of byte ``k // 8``."""

    __slots__ = ("length", "infinity", "bits", "_bitmap")

    def __init__(
        self, length: int = DEFAULT_TABLE_LENGTH, infinity: int = DEFAULT_INFINITY,
        bitmap: bytes | bytearray | None = None,
    ) -> None:  # fmt: skip
        _check_shape(length, infinity, LocalProtocolError)
        self.length = length
        self.infinity = infinity
        self.bits = _bits_of(length)
        if bitmap is None:
            self._bitmap = bytearray(length // 8)
        elif len(bitmap) * 8 != length:
            raise LocalProtocolError("bitmap does not match the table length")
        else:
            self._bitmap = bytearray(bitmap)

    @classmethod
    def union(
        cls,
        tables: Iterable[QrpTable],
        length: int = DEFAULT_TABLE_LENGTH,
        infinity: int = DEFAULT_INFINITY,
    ) -> PresenceTable:
        """Every entry present in any of ``tables``, each scaled to
        ``length`` first: one big-integer OR of the bitmaps."""
        acc = 0
        for table in tables:
            if isinstance(table, PresenceTable) and table.length == length:
                acc |= int.from_bytes(table._bitmap, "big")
            else:
                src = table if table.length == length else table.scaled(length)
                acc |= int.from_bytes(_pack_flags(src.presence()), "big")
        return cls(length, infinity, acc.to_bytes(length // 8, "big"))

    def copy(self) -> PresenceTable:
        return PresenceTable(self.length, self.infinity, self._bitmap)

    def add(self, keyword: str | bytes) -> None:
        """Make ``keyword``'s entry present."""
        slot = qrp_hash(keyword, self.bits)
        self._bitmap[slot >> 3] |= 0x80 >> (slot & 7)

    def contains(self, keyword: str | bytes) -> bool:
        slot = qrp_hash(keyword, self.bits)
        return bool(self._bitmap[slot >> 3] & (0x80 >> (slot & 7)))

    @property
    def present(self) -> int:
        return int.from_bytes(self._bitmap, "big").bit_count()

    def presence(self) -> bytes:
        """One byte per entry: 1 present, 0 absent."""
        out = bytearray(self.length)
        for i, bit in enumerate(_BIT_FLAGS):
            out[i::8] = self._bitmap.translate(bit)
        return bytes(out)

    def to_table(self) -> QueryRouteTable:
        """The same presence as a table of distances (1 or infinity)."""
        to_entry = bytes((1,)) + bytes((self.infinity,)) * 255
        absent = self.presence().translate(_FLIP)
        return QueryRouteTable(self.length, self.infinity, absent.translate(to_entry))

    def scaled(self, length: int) -> QueryRouteTable:
        """:meth:`QueryRouteTable.scaled` of :meth:`to_table`."""
        return self.to_table().scaled(length)

    def apply_patch(self, start: int, delta: bytes, entry_bits: int) -> None:
        """Set the entries from ``start`` present or absent by the signs of
        the patch entries in ``delta`` (``entry_bits`` each)."""
        if entry_bits == 4 and not start & 1:
            end = start + 2 * len(delta)
            if end > self.length:
                raise LocalProtocolError("patch runs past the end of the table")
            # The run of whole bitmap bytes goes straight from patch bytes to
            # bits (:meth:`_apply_aligned`); the odd bytes around it, which
            # share a bitmap byte with entries outside the patch, the long way.
            head = min(len(delta), (-start & 7) >> 1)
            body = (len(delta) - head) & ~3
            if body:
                if head:
                    self._apply_flags(start, delta[:head], 4)
                self._apply_aligned(start + 2 * head, delta[head : head + body])
                if head + body < len(delta):
                    self._apply_flags(start + 2 * (head + body), delta[head + body :], 4)
                return
        self._apply_flags(start, delta, entry_bits)

    def _apply_aligned(self, start: int, delta: bytes) -> None:
        """:meth:`apply_patch` for 4-bit entries from ``start`` (a multiple
        of 8), ``delta`` a multiple of 4 bytes: bitmap byte ``m`` takes its
        eight entries from patch bytes ``4m .. 4m+3``, so each of those four
        strides translates to its two bits of every bitmap byte at once."""
        on = off = 0
        for k in range(4):
            column = delta[k::4]
            on |= int.from_bytes(column.translate(_NEG_PAIR[k]), "big")
            off |= int.from_bytes(column.translate(_POS_PAIR[k]), "big")
        a = start >> 3
        b = a + len(delta) // 4
        old = int.from_bytes(self._bitmap[a:b], "big")
        self._bitmap[a:b] = ((old | on) & ~off).to_bytes(b - a, "big")

    def _apply_flags(self, start: int, delta: bytes, entry_bits: int) -> None:
        """:meth:`apply_patch` for any start and entry size: the patch as one
        flag byte per entry, packed into the bitmap bytes it covers."""
        if entry_bits == 4:
            n = 2 * len(delta)
            sets, clears = bytearray(n), bytearray(n)
            sets[0::2], sets[1::2] = delta.translate(_NEG_HIGH), delta.translate(_NEG_LOW)
            clears[0::2], clears[1::2] = delta.translate(_POS_HIGH), delta.translate(_POS_LOW)
        else:
            n = len(delta)
            sets, clears = bytearray(delta.translate(_NEG8)), bytearray(delta.translate(_POS8))
        if not n:
            return
        end = start + n
        if end > self.length:
            raise LocalProtocolError("patch runs past the end of the table")
        # Pad both flag runs out to whole bytes of the bitmap, then one
        # big-integer OR and AND-NOT over the bytes they cover.
        a, b = start >> 3, (end + 7) >> 3
        front, back = bytes(start - 8 * a), bytes(8 * b - end)
        on = int.from_bytes(_pack_flags(front + sets + back), "big")
        off = int.from_bytes(_pack_flags(front + clears + back), "big")
        old = int.from_bytes(self._bitmap[a:b], "big")
        self._bitmap[a:b] = ((old | on) & ~off).to_bytes(b - a, "big")

    def _content(self) -> bytearray:
        return self._bitmap


#: A table as a receiver keeps it: with distances, or presence only.
QrpTable = QueryRouteTable | PresenceTable

# Translate tables of :class:`PresenceTable`: a bitmap byte -> its bit ``i``
# (most significant first) as 0/1; a flag flipped; a patch byte -> 1 where
# its entry is negative (sets) or positive (clears), 4-bit entries high
# nibble first.
_BIT_FLAGS = [bytes((b >> (7 - i)) & 1 for b in range(256)) for i in range(8)]
_FLIP = bytes((1,)) + bytes(255)
_NEG_HIGH = bytes(int(b >> 4 > 7) for b in range(256))
_NEG_LOW = bytes(int(b & 0xF > 7) for b in range(256))
_POS_HIGH = bytes(int(0 < b >> 4 <= 7) for b in range(256))
_POS_LOW = bytes(int(0 < b & 0xF <= 7) for b in range(256))
_NEG8 = bytes(int(b > 127) for b in range(256))
_POS8 = bytes(int(0 < b <= 127) for b in range(256))


def _pair_table(k: int, high: bytes, low: bytes) -> bytes:
    """Patch byte ``4m + k`` (two 4-bit entries) -> its two bits of bitmap
    byte ``m``: bits ``7 - 2k`` and ``6 - 2k``, each set where ``high`` /
    ``low`` flags its nibble."""
    return bytes((high[p] << (7 - 2 * k)) | (low[p] << (6 - 2 * k)) for p in range(256))


# A patch byte -> the bits of its entries that it sets (_NEG_PAIR) or clears.
_NEG_PAIR = [_pair_table(k, _NEG_HIGH, _NEG_LOW) for k in range(4)]
_POS_PAIR = [_pair_table(k, _POS_HIGH, _POS_LOW) for k in range(4)]


def _pack_flags(flags: bytes | bytearray) -> bytes:
    """Bytes of 0/1 (a multiple of 8 of them) packed 8 to a byte, first
    flag in the most significant bit: eight strided slices, no loop per flag."""
    acc = 0
    for i in range(8):
        acc |= int.from_bytes(flags[i::8], "big") << (7 - i)
    return acc.to_bytes(len(flags) // 8, "big")


# ------------------------------------------------------------------ patches


#: ``_PRESENT_VALUES[inf]``: the entry values below ``inf`` (present).
_PRESENT_VALUES = [bytes(range(inf)) for inf in range(MAX_INFINITY + 1)]
#: ``_PRESENT_FLAGS[inf]``: a translate table, entry value -> 1 if below ``inf``.
_PRESENT_FLAGS = [bytes(int(v < inf) for v in range(256)) for inf in range(MAX_INFINITY + 1)]


#: Key ``old << 4 | new`` (both at most 15) -> the 4-bit ``new - old``.
_DELTA_NIBBLE = bytes((((k & 0xF) - (k >> 4)) & 0xF) for k in range(256))


def _nibble_patch(new: bytes, old: bytes) -> bytes:
    """The packed 4-bit patch from ``old`` to ``new`` (entries at most 7, so
    every difference fits a signed nibble),
    without a Python loop per entry: keys ``old << 4 | new`` are made with
    one big-integer OR and mapped to nibbles with ``bytes.translate``, then
    even entries go to the high nibble ("00 a0 .." in the spec's appendix)."""
    n = len(new)
    keys = int.from_bytes(old.translate(_SHIFT4), "big") | int.from_bytes(new, "big")
    nibbles = keys.to_bytes(n, "big").translate(_DELTA_NIBBLE)
    high, low = nibbles[0::2], nibbles[1::2]
    packed = int.from_bytes(high.translate(_SHIFT4), "big") | int.from_bytes(low, "big")
    return packed.to_bytes(len(high), "big")


@functools.lru_cache(maxsize=16)
def _bit_pair_tables(infinity: int) -> tuple[list[bytes], list[bytes]]:
    """For :func:`_presence_patch`: bitmap byte ``m`` -> patch byte
    ``4m + k`` (entries ``8m + 2k`` high, ``8m + 2k + 1`` low), for the bits
    that appear (delta ``1 - infinity``) and those that go (``infinity - 1``)."""

    def table(k: int, value: int) -> bytes:
        hi, lo = 7 - 2 * k, 6 - 2 * k
        return bytes(((b >> hi & 1) * value) << 4 | (b >> lo & 1) * value for b in range(256))

    appear, go = (1 - infinity) & 0xF, (infinity - 1) & 0xF
    return [table(k, appear) for k in range(4)], [table(k, go) for k in range(4)]


def _presence_patch(new: PresenceTable, old: PresenceTable | None) -> bytes:
    """:func:`_nibble_patch` between two presence tables (``old`` ``None``:
    the empty table), made from their bitmaps: 8 KiB of bits for LimeWire's
    65,536 entries instead of 64 KiB of distances.  An entry that appears
    patches by ``1 - infinity``, one that goes by ``infinity - 1``; the two
    never share a nibble, so each patch byte is an OR of two lookups."""
    size = len(new._bitmap)
    now = int.from_bytes(new._bitmap, "big")
    before = int.from_bytes(old._bitmap, "big") if old is not None else 0
    appear = (now & ~before).to_bytes(size, "big")
    go = (before & ~now).to_bytes(size, "big")
    appear_tables, go_tables = _bit_pair_tables(new.infinity)
    out = bytearray(4 * size)
    for k in range(4):
        column = int.from_bytes(appear.translate(appear_tables[k]), "big")
        if before:
            column |= int.from_bytes(go.translate(go_tables[k]), "big")
        out[k::4] = column.to_bytes(size, "big")
    return bytes(out)


def _pack_patch(deltas: list[int], entry_bits: int) -> bytes:
    if entry_bits == 8:
        if any(not -128 <= d <= 127 for d in deltas):
            raise LocalProtocolError("patch entry does not fit 8 bits")
        return bytes(d & 0xFF for d in deltas)
    if any(not -8 <= d <= 7 for d in deltas):
        raise LocalProtocolError("patch entry does not fit 4 bits; use 8-bit entries")
    # High nibble first: the spec's appendix writes [0, 0, -6, 0, ...] as "00 a0 ..".
    return bytes(((deltas[i] & 0xF) << 4) | (deltas[i + 1] & 0xF) for i in range(0, len(deltas), 2))


def make_update(
    table: QrpTable,
    previous: QrpTable | None = None,
    *,
    entry_bits: int = 4,
    compressor: int = COMPRESSOR_ZLIB,
    chunk_size: int = DEFAULT_CHUNK,
) -> list[RouteTableUpdate]:
    """The messages that bring a receiver holding ``previous`` to ``table``.

    Without ``previous`` (or when its shape differs) the update starts with a
    RESET and patches against the empty table ("subtracts the last route
    table sent (or INFINITY if no table has been sent)").  An unchanged table
    needs no message.  The (compressed) patch is cut into ``chunk_size``
    pieces, each one PATCH of the sequence.
    """
    if entry_bits not in ENTRY_BITS:
        raise LocalProtocolError(f"entry bits {entry_bits} not 4 or 8")
    if compressor not in (COMPRESSOR_NONE, COMPRESSOR_ZLIB):
        raise LocalProtocolError(f"unknown compressor {compressor}")
    if chunk_size < 1:
        raise LocalProtocolError("chunk size must be positive")
    out: list[RouteTableUpdate] = []
    if previous is not None and previous == table:
        return []
    fresh = (
        previous is None or previous.length != table.length or previous.infinity != table.infinity
    )
    if fresh:
        out.append(ResetTable(table.length, table.infinity))
    before = None if fresh else previous
    if (
        entry_bits == 4
        and 2 <= table.infinity <= 7
        and isinstance(table, PresenceTable)
        and (before is None or isinstance(before, PresenceTable))
    ):
        # Two unequal presence tables of one shape differ in some bit, and
        # with an infinity above 1 every changed bit is a nonzero entry.
        data = _presence_patch(table, before)
    else:
        entries = _distances(table)
        if before is None:
            base = bytes((table.infinity,)) * table.length
        else:
            base = _distances(before)
            if base == entries:
                return []
        if entry_bits == 4 and table.infinity <= 7 and table.length % 2 == 0:
            data = _nibble_patch(entries, base)
        else:
            deltas = [new - old for new, old in zip(entries, base, strict=True)]
            data = _pack_patch(deltas, entry_bits)
    if compressor == COMPRESSOR_ZLIB:
        data = zlib.compress(data)
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    if len(chunks) > MAX_SEQUENCE:
        raise LocalProtocolError(f"patch needs {len(chunks)} messages; raise the chunk size")
    size = len(chunks)
    out.extend(
        PatchTable(n, size, compressor, entry_bits, chunk) for n, chunk in enumerate(chunks, 1)
    )
    return out


def _distances(table: QrpTable) -> bytes:
    """``table``'s entries as distances (a presence table's are 1 or infinity)."""
    if isinstance(table, PresenceTable):
        return bytes(table.to_table().entries)
    return bytes(table.entries)


_NONZERO_RUNS = re.compile(rb"[^\x00]+")
# bytes.translate tables for the vectorised patch (see _apply).
_HIGH_NIBBLE = bytes(b >> 4 for b in range(256))
_LOW_NIBBLE = bytes(b & 0xF for b in range(256))
_SHIFT4 = bytes((b << 4) & 0xFF for b in range(256))
# A signed byte saturated to a signed nibble [-8, 7], as a raw nibble.
_SATURATE4 = bytes((max(-8, min(7, b - 256 if b > 127 else b))) & 0xF for b in range(256))


def _clamp(v: int, infinity: int) -> int:
    return 0 if v < 0 else infinity if v > infinity else v


@functools.lru_cache(maxsize=256)
def _sum_table(infinity: int) -> bytes:
    """Key ``old << 4 | nibble`` -> ``clamp(old + signed(nibble))``."""
    return bytes(
        _clamp((k >> 4) + ((k & 0xF) - 16 if k & 0xF > 7 else k & 0xF), infinity)
        for k in range(256)
    )


def _add_nibbles(old: bytes, nibbles: bytes, infinity: int) -> bytes:
    """Entry-wise ``clamp(old + signed(nibble))`` for entries below 16, in C:
    the two byte strings are joined into keys with one big-integer OR."""
    n = len(old)
    keys = int.from_bytes(old.translate(_SHIFT4), "big") | int.from_bytes(nibbles, "big")
    return keys.to_bytes(n, "big").translate(_sum_table(infinity))


def _apply(entries: bytearray, start: int, delta: bytes, entry_bits: int, infinity: int) -> None:
    """Add the signed patch entries in ``delta`` to ``entries`` from entry ``start``,
    clamping to ``[0, infinity]``.

    Tables whose infinity fits a nibble (LimeWire's 7, gtk-gnutella's 2) are
    patched without a Python loop per entry: an 8-bit entry changes such an
    entry exactly as its value saturated to [-8, 7] does, so every case is a
    nibble added to a nibble, done with ``bytes.translate``.  Larger
    infinities take the loop, skipping runs of zero (unchanged) entries."""
    if entry_bits == 4 and infinity <= 15:
        i = start
        j = i + 2 * len(delta)
        entries[i:j:2] = _add_nibbles(
            bytes(entries[i:j:2]), delta.translate(_HIGH_NIBBLE), infinity
        )
        entries[i + 1 : j : 2] = _add_nibbles(
            bytes(entries[i + 1 : j : 2]), delta.translate(_LOW_NIBBLE), infinity
        )
        return
    if entry_bits == 8 and infinity <= 7:
        j = start + len(delta)
        entries[start:j] = _add_nibbles(
            bytes(entries[start:j]), delta.translate(_SATURATE4), infinity
        )
        return
    per_byte = 8 // entry_bits
    for m in _NONZERO_RUNS.finditer(delta):
        i = start + per_byte * m.start()
        for b in m.group():
            if entry_bits == 8:
                entries[i] = _clamp(entries[i] + (b - 256 if b > 127 else b), infinity)
                i += 1
            else:
                for nib in (b >> 4, b & 0xF):
                    if nib:
                        entries[i] = _clamp(entries[i] + (nib - 16 if nib > 7 else nib), infinity)
                    i += 1


class QrpReceiver:
    """The receiving end of one connection's QRP exchange.

    Feed it every ROUTE_TABLE_UPDATE in order; :meth:`receive` returns the
    new table when a PATCH sequence completes, else ``None``.  The published
    :attr:`table` changes only then (patches are applied to a working copy),
    and is ``None`` between a RESET and the end of its first sequence ("a
    host is encouraged to disregard the route table ... until the table has
    been fully updated").  Any rule broken raises
    :class:`~peerlab.errors.RemoteProtocolError`: "there is no way to recover
    from a missing message", so the connection is closed.
    """

    __slots__ = ("max_table_length", "presence_only", "table", "updates", "_work", "_seq",
                 "_inflater", "_fed")  # fmt: skip

    def __init__(
        self, *, max_table_length: int = MAX_TABLE_LENGTH, presence_only: bool = False
    ) -> None:
        self.max_table_length = max_table_length
        #: Keep a :class:`PresenceTable` (a bit per entry) instead of distances.
        self.presence_only = presence_only
        self.table: QrpTable | None = None
        #: Completed sequences so far.
        self.updates = 0
        self._work: QrpTable | None = None
        # (seq_size, compressor, entry_bits, next seq_no) of the sequence in progress.
        self._seq: tuple[int, int, int, int] | None = None
        self._inflater: zlib._Decompress | None = None
        self._fed = 0  # patch bytes (uncompressed) received in this sequence

    def receive(self, msg: RouteTableUpdate) -> QrpTable | None:
        if isinstance(msg, ResetTable):
            self._reset(msg)
            return None
        return self._patch(msg)

    def _reset(self, msg: ResetTable) -> None:
        _check_shape(msg.table_length, msg.infinity, RemoteProtocolError)
        if msg.table_length > self.max_table_length:
            raise RemoteProtocolError(
                f"QRP table of {msg.table_length} entries exceeds {self.max_table_length}"
            )
        kind = PresenceTable if self.presence_only else QueryRouteTable
        self._work = kind(msg.table_length, msg.infinity)
        self.table = None
        self._seq = None
        self._inflater = None
        self._fed = 0

    def _patch(self, msg: PatchTable) -> QrpTable | None:
        work = self._work
        if work is None:
            raise RemoteProtocolError("QRP PATCH before any RESET")
        if self._seq is None:
            if work is self.table:
                # A new sequence patches a copy; the published table stays
                # as it was until the sequence completes.
                work = self._work = work.copy()
            if msg.seq_no != 1 or msg.seq_size < 1:
                raise RemoteProtocolError(f"QRP sequence starts at {msg.seq_no}/{msg.seq_size}")
            if msg.entry_bits not in ENTRY_BITS:
                raise RemoteProtocolError(f"QRP entry bits {msg.entry_bits} not 4 or 8")
            if msg.compressor == COMPRESSOR_ZLIB:
                self._inflater = zlib.decompressobj()
            elif msg.compressor != COMPRESSOR_NONE:
                raise RemoteProtocolError(f"unknown QRP compressor {msg.compressor}")
            self._seq = (msg.seq_size, msg.compressor, msg.entry_bits, 1)
            self._fed = 0
        size, compressor, bits, expected = self._seq
        if (msg.seq_no, msg.seq_size, msg.compressor, msg.entry_bits) != (
            expected,
            size,
            compressor,
            bits,
        ):
            raise RemoteProtocolError(
                f"QRP PATCH {msg.seq_no}/{msg.seq_size} out of sequence "
                f"(expected {expected}/{size})"
            )
        total = work.length * bits // 8
        remaining = total - self._fed
        if self._inflater is not None:
            try:
                delta = self._inflater.decompress(msg.data, remaining + 1)
            except zlib.error as exc:
                raise RemoteProtocolError(f"bad zlib data in QRP PATCH: {exc}") from None
        else:
            delta = msg.data
        if len(delta) > remaining:
            raise RemoteProtocolError("QRP patch larger than the table")
        work.apply_patch(self._fed * 8 // bits, delta, bits)
        self._fed += len(delta)
        if expected < size:
            self._seq = (size, compressor, bits, expected + 1)
            return None
        # Last message of the sequence.
        inflater = self._inflater
        if self._fed != total or (
            inflater is not None and (not inflater.eof or inflater.unused_data)
        ):
            raise RemoteProtocolError(f"QRP patch holds {self._fed} bytes, the table needs {total}")
        self._seq = None
        self._inflater = None
        self.updates += 1
        # Published as it is, not copied: the next sequence copies it first
        # (above), so between sequences a link holds one table, not two (an
        # ultrapeer keeps one per leaf link: 64 KiB each, gigabytes in a
        # simulated network of 10,000 peers).
        self.table = work
        return work
