"""Bencoding, strictly: the serialisation of BitTorrent metainfo and messages.

Spec: BEP 3, section "bencoding".  Four kinds of value:

- byte strings ``<length>:<bytes>`` (``4:spam``),
- integers ``i<decimal>e`` (``i3e``, ``i-3e``),
- lists ``l<values>e`` (``l4:spam4:eggse``),
- dictionaries ``d<key><value>...e`` whose keys are byte strings "in sorted
  order (sorted as raw strings, not alphanumerics)" (``d3:cow3:moo4:spam4:eggse``).

BEP 3 also says "``i-0e`` is invalid.  All encodings with a leading zero,
such as ``i03e``, are invalid, other than ``i0e``, which of course
corresponds to 0."  This decoder is strict in every such rule, because the
info-hash is the SHA-1 of the bytes: two encodings of one value would be two
torrents.  So every input that decodes has exactly one encoding, and
``encode(decode(data)) == data`` always holds (a property test checks it).
Refused, with :class:`~peerlab.errors.RemoteProtocolError`:

- integers with a leading zero, ``-0``, a ``+``, spaces, or outside the
  signed 64-bit range that BitTorrent implementations use (libtorrent too);
- string lengths with a leading zero or longer than the data;
- dictionary keys that are not byte strings, out of order, or repeated;
- nesting deeper than :data:`MAX_DEPTH`, strings longer than
  :data:`MAX_STRING_LENGTH`, lists or dictionaries longer than
  :data:`MAX_LIST_LENGTH`, more than :data:`MAX_TOKENS` values in all;
- anything after the value (:func:`decode`), or a value cut short.

Nothing else escapes the decoder: garbage raises RemoteProtocolError only.

Public API
==========

::

    Value = int | bytes | list[Value] | dict[bytes, Value]    # what decode returns
    encode(value) -> bytes            # also takes str (as UTF-8), tuples, str keys
    decode(data, limits=DEFAULT_LIMITS) -> Value              # the whole input
    decode_prefix(data, start=0, limits=DEFAULT_LIMITS) -> (Value, end)
                                      # one value, then more bytes may follow
                                      # (BEP 9 ut_metadata pieces)
    decode_with_spans(data, limits=DEFAULT_LIMITS) -> Decoded
                                      # a dictionary and, for each of its keys,
                                      # the (start, end) byte span of the value
    Decoded(value: dict[bytes, Value], spans: dict[bytes, tuple[int, int]])
        .raw(key) -> bytes            # the original bytes of one value
    BencodeLimits(max_depth, max_string_length, max_list_length, max_tokens)
    Raw(data: bytes)                  # bytes that are already bencoded, which
                                      # encode() inserts as they are (an info
                                      # dictionary kept byte for byte)

The spans let :mod:`peerlab.wire.metainfo` compute the info-hash over the
original bytes of the ``info`` dictionary (BEP 3: "the 20 byte sha1 hash of
the bencoded form of the info value from the metainfo file").

Encoding our own values that break a rule (a ``bool``, a float, an integer
out of range, two keys that are equal as bytes, nesting too deep) raises
:class:`~peerlab.errors.LocalProtocolError`: that is our bug, not a peer's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from peerlab.errors import LocalProtocolError, RemoteProtocolError

#: A decoded value.  Byte strings stay bytes: BEP 3 strings are raw bytes
#: (piece hashes, compact peers); callers decode text where the spec says so.
Value: TypeAlias = int | bytes | list["Value"] | dict[bytes, "Value"]

#: Deepest nesting of lists and dictionaries.  A torrent needs about 5 levels
#: for BEP 3 and one per path component in a BEP 52 ``file tree``; 100 is
#: libtorrent's default (``bdecode`` depth_limit), so whatever libtorrent
#: loads by default, we load.  It also keeps the recursive decoder far from
#: Python's recursion limit.
MAX_DEPTH = 100
#: Longest byte string.  The largest string a torrent holds is ``pieces``, 20
#: bytes per piece: 40 MiB at :data:`peerlab.wire.metainfo.MAX_PIECES`.
MAX_STRING_LENGTH = 64 * 1024 * 1024
#: Most items in one list, or entries in one dictionary.
MAX_LIST_LENGTH = 1_000_000
#: Most values (strings, integers, lists, dictionaries) in one input, so a
#: small input cannot cost unbounded memory (``lelelele...`` builds one
#: Python list per two bytes).  Two million is libtorrent's default
#: ``token_limit`` for torrent files.
MAX_TOKENS = 2_000_000
#: BitTorrent integers are signed 64-bit (sizes, offsets, dates); libtorrent
#: refuses anything outside this range, and so do we (it also bounds the
#: decimal digits we convert).
INTEGER_MIN = -(2**63)
INTEGER_MAX = 2**63 - 1

# i<int>e with canonical digits: 0, or an optional minus and a non-zero
# first digit, at most 19 digits (2**63 has 19).
_INTEGER = re.compile(rb"i(0|-?[1-9][0-9]{0,18})e")
# Most digits in a string length: lengths above MAX_STRING_LENGTH are
# refused after parsing, this bound keeps the search for ':' short.
_MAX_LENGTH_DIGITS = 12

_ZERO = ord("0")
_INT = ord("i")
_LIST = ord("l")
_DICT = ord("d")
_END = ord("e")
_DIGITS = frozenset(b"0123456789")
# Marks a list's frame on the decoder's stack (a dictionary's frame holds its
# last key in the same slot).
_LIST_FRAME = b"<list>"


@dataclass(frozen=True, slots=True)
class BencodeLimits:
    """Bounds a decoder applies; tighter ones suit small messages (BEP 10)."""

    max_depth: int = MAX_DEPTH
    max_string_length: int = MAX_STRING_LENGTH
    max_list_length: int = MAX_LIST_LENGTH
    max_tokens: int = MAX_TOKENS
    #: Refuse dictionary keys out of sorted order.  Right for metainfo, where
    #: the bytes are the identity; messages from other clients (BEP 10
    #: handshakes, tracker replies, DHT) are read leniently, as libtorrent
    #: does, since some clients do not sort.  Repeated keys are refused either way.
    sorted_keys: bool = True


DEFAULT_LIMITS = BencodeLimits()


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded dictionary and where each of its values sits in the input."""

    value: dict[bytes, Value]
    spans: dict[bytes, tuple[int, int]]
    data: bytes

    def raw(self, key: bytes) -> bytes:
        """The original bytes of the value under ``key`` (KeyError if absent)."""
        start, end = self.spans[key]
        return self.data[start:end]


# ------------------------------------------------------------------ decoding


def _fail(what: str, pos: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"bencode: {what} at offset {pos}")


def _decode(
    data: bytes, pos: int, limits: BencodeLimits, spans: dict[bytes, tuple[int, int]] | None
) -> tuple[Value, int]:
    """Decode the value at ``pos``; return it and the offset after it.

    One loop with an explicit stack instead of recursion: a value is one
    iteration, which keeps a torrent with a hundred thousand files fast.
    Each stack frame is ``[container, last_key, pending_key, value_start]``;
    for a list, the three key slots stay unused.  ``spans``, when given,
    receives the span of each value of the outermost dictionary.
    """
    n = len(data)
    max_depth = limits.max_depth
    max_string = limits.max_string_length
    max_items = limits.max_list_length
    tokens_left = limits.max_tokens
    lenient = not limits.sorted_keys
    find = data.find
    match_integer = _INTEGER.match
    stack: list[list[Any]] = []
    value: Value
    while True:
        if pos >= n:
            what = "data ends where a value should start" if not stack else (
                "dictionary not terminated" if isinstance(stack[-1][0], dict)
                else "list not terminated")
            raise _fail(what, pos)
        c = data[pos]
        frame = stack[-1] if stack else None
        if c == _END and frame is not None:
            container = frame[0]
            if frame[2] is not None:
                raise _fail(f"dictionary key {frame[2][:40]!r} has no value", pos)
            stack.pop()
            pos += 1
            value = container
        else:
            tokens_left -= 1
            if tokens_left < 0:
                raise _fail(f"more than {limits.max_tokens} values", pos)
            expecting_key = frame is not None and frame[1] is not _LIST_FRAME and frame[2] is None
            if c in _DIGITS:
                # find + isdigit beats a regular expression by a third here,
                # and strings are most of a torrent's values.
                colon = find(b":", pos, pos + _MAX_LENGTH_DIGITS + 1)
                digits = data[pos:colon]
                if colon < 0 or not digits.isdigit() or (c == _ZERO and colon != pos + 1):
                    raise _fail("bad string length (leading zero, or no ':')", pos)
                length = int(digits)
                if length > max_string:
                    raise _fail(f"string of {length} bytes (limit {max_string})", pos)
                start = colon + 1
                end = start + length
                if end > n:
                    raise _fail(f"string of {length} bytes runs past the end", pos)
                value = data[start:end]
                if expecting_key:
                    assert frame is not None
                    previous = frame[1]
                    if lenient:
                        if value in frame[0]:
                            raise _fail(f"dictionary key {value[:40]!r} repeated", pos)
                    elif previous is not None and value <= previous:
                        what = "repeated" if value == previous else "out of sorted order"
                        raise _fail(f"dictionary key {value[:40]!r} {what}", pos)
                    if len(frame[0]) >= max_items:
                        raise _fail(f"dictionary of more than {max_items} entries", pos)
                    frame[1] = frame[2] = value
                    frame[3] = end
                    pos = end
                    continue
                pos = end
            elif expecting_key:
                raise _fail("dictionary key is not a byte string", pos)
            elif c == _INT:
                m = match_integer(data, pos)
                if m is None:
                    raise _fail("bad integer (leading zero, -0, or not digits)", pos)
                value = int(m.group(1))
                if not INTEGER_MIN <= value <= INTEGER_MAX:
                    raise _fail("integer outside the signed 64-bit range", pos)
                pos = m.end()
            elif c == _LIST or c == _DICT:
                if len(stack) >= max_depth:
                    raise _fail(f"nesting deeper than {max_depth}", pos)
                if c == _LIST:
                    stack.append([[], _LIST_FRAME, None, 0])
                else:
                    stack.append([{}, None, None, 0])
                pos += 1
                continue
            else:
                raise _fail(f"unexpected byte {data[pos : pos + 1]!r}", pos)
        # A value is complete: hand it to the container it belongs to.
        if not stack:
            return value, pos
        frame = stack[-1]
        container = frame[0]
        if frame[1] is _LIST_FRAME:
            if len(container) >= max_items:
                raise _fail(f"list of more than {max_items} items", pos)
            container.append(value)
        else:
            key = frame[2]
            container[key] = value
            frame[2] = None
            if spans is not None and len(stack) == 1:
                spans[key] = (frame[3], pos)


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"bencode input must be bytes, not {type(data).__name__}")


def decode_prefix(
    data: bytes | bytearray | memoryview, start: int = 0, limits: BencodeLimits = DEFAULT_LIMITS
) -> tuple[Value, int]:
    """Decode the one value that starts at ``start``; return it and where it ends.

    For messages where raw bytes follow a bencoded dictionary (BEP 9's
    ``ut_metadata`` data messages).
    """
    buf = _as_bytes(data)
    return _decode(buf, start, limits, None)


def decode(data: bytes | bytearray | memoryview, limits: BencodeLimits = DEFAULT_LIMITS) -> Value:
    """Decode exactly one value that fills the whole of ``data`` (BEP 3)."""
    buf = _as_bytes(data)
    value, end = _decode(buf, 0, limits, None)
    if end != len(buf):
        raise RemoteProtocolError(f"bencode: {len(buf) - end} bytes after the value at offset "
                                  f"{end}")
    return value


def decode_with_spans(
    data: bytes | bytearray | memoryview, limits: BencodeLimits = DEFAULT_LIMITS
) -> Decoded:
    """Decode a dictionary filling ``data`` and record each value's byte span.

    The spans are those of the top-level dictionary's values (``info`` in a
    torrent file), so a hash can be taken over the bytes as they arrived.
    """
    buf = _as_bytes(data)
    if not buf or buf[0] != _DICT:
        raise RemoteProtocolError("bencode: expected a dictionary at offset 0")
    spans: dict[bytes, tuple[int, int]] = {}
    value, end = _decode(buf, 0, limits, spans)
    if end != len(buf):
        raise RemoteProtocolError(f"bencode: {len(buf) - end} bytes after the value at offset "
                                  f"{end}")
    assert isinstance(value, dict)
    return Decoded(value, spans, buf)


# ------------------------------------------------------------------ encoding


@dataclass(frozen=True, slots=True)
class Raw:
    """A value that is already bencoded: :func:`encode` copies it unchanged.

    For splicing the original ``info`` bytes into a torrent file, so its
    info-hash cannot change on the way.  The bytes are not checked here.
    """

    data: bytes


#: What :func:`encode` accepts: :data:`Value` plus str (UTF-8), tuples and
#: any mapping with str or bytes keys.
Encodable: TypeAlias = (
    int | bytes | bytearray | memoryview | str | Raw
    | Sequence["Encodable"] | Mapping[str, "Encodable"] | Mapping[bytes, "Encodable"]
)


def _key_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise LocalProtocolError(f"bencode: dictionary key must be bytes or str, not "
                             f"{type(key).__name__}")


def _first(item: tuple[bytes, object]) -> bytes:
    return item[0]


def _encode(value: object, out: list[bytes], depth: int) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        b = bytes(value)
        out.append(b"%d:" % len(b))
        out.append(b)
    elif isinstance(value, Raw):
        out.append(value.data)
    elif isinstance(value, str):
        b = value.encode("utf-8")
        out.append(b"%d:" % len(b))
        out.append(b)
    elif isinstance(value, bool):
        raise LocalProtocolError("bencode has no booleans (write 0 or 1)")
    elif isinstance(value, int):
        if not INTEGER_MIN <= value <= INTEGER_MAX:
            raise LocalProtocolError(f"bencode: integer {value} outside the signed 64-bit range")
        out.append(b"i%de" % value)
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise LocalProtocolError(f"bencode: nesting deeper than {MAX_DEPTH}")
        items = sorted(((_key_bytes(k), v) for k, v in value.items()), key=_first)
        out.append(b"d")
        previous: bytes | None = None
        for k, v in items:
            if k == previous:
                raise LocalProtocolError(f"bencode: dictionary key {k[:40]!r} given twice")
            previous = k
            out.append(b"%d:" % len(k))
            out.append(k)
            _encode(v, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise LocalProtocolError(f"bencode: nesting deeper than {MAX_DEPTH}")
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise LocalProtocolError(f"bencode: cannot encode a {type(value).__name__}")


def encode(value: Encodable) -> bytes:
    """The one canonical bencoding of ``value`` (BEP 3): keys sorted as raw bytes."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)
