"""HTTP/1.1 message syntax (RFC 9112): start lines, header fields, body framing.

Codecs only: bytes in, values out, and back.  The connection state machines
that use them live in :mod:`peerlab.proto.http`.

Everything a peer sends is bounded (header block, line, field count, chunk-size
line, Content-Length digits) and checked against the RFC's grammar; anything
else raises :class:`~peerlab.errors.RemoteProtocolError` whose ``code`` is the
HTTP status a server answers with (400, 431, 501, 505).  Names and values we
are asked to serialise are checked too, and raise
:class:`~peerlab.errors.LocalProtocolError`: header injection is our bug.

Header values are decoded as ISO-8859-1 (RFC 9110 section 5.5: a field value
is octets, and latin-1 maps every octet to one code point and back), names as
ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from sys import intern

from peerlab.errors import LocalProtocolError, RemoteProtocolError

#: Default bound on a whole header block (start line, fields, blank line).
#: 16 KiB is what nginx/h11 allow by default; Gnutella headers are far smaller.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
#: Bound on the number of header fields in one message (and in trailers):
#: Apache's LimitRequestFields default.  Keeps per-message work linear & small.
MAX_HEADERS = 100
#: Bound on one line of a header block (RFC 9112 section 2.3 leaves it to us;
#: 8 KiB is the common server default).
MAX_LINE_BYTES = 8 * 1024
#: Bound on a chunk-size line with its extensions (RFC 9112 section 7.1.1):
#: extensions are never needed by us, so a short line is plenty.
MAX_CHUNK_LINE_BYTES = 1024
#: Hex digits in a chunk size: 16 hex digits already name 2**64 bytes.
MAX_CHUNK_SIZE_DIGITS = 16
#: Decimal digits in a Content-Length: 18 digits exceed any real file (an
#: exabyte) and keep the value inside a signed 64-bit integer.
MAX_CONTENT_LENGTH_DIGITS = 18

#: HTTP versions we speak (RFC 9112 section 2.3); others get 505.
SUPPORTED_VERSIONS = ("1.0", "1.1")

# RFC 9110 section 5.6.2: tchar.
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN_RE = re.compile(rb"[" + _TCHAR + rb"]+")
_TOKEN_STR_RE = re.compile(r"[" + _TCHAR.decode() + r"]+")
# RFC 9112 section 3: method SP request-target SP HTTP-version.  The target is
# visible ASCII only (no spaces, no controls, no raw 8-bit bytes).
_REQUEST_LINE_RE = re.compile(
    rb"(?P<method>[" + _TCHAR + rb"]+) (?P<target>[\x21-\x7e]+) "
    rb"HTTP/(?P<version>[0-9]\.[0-9])"
)
# RFC 9112 section 4: HTTP-version SP status-code SP [reason-phrase].  The SP
# before an empty reason is often left out in the wild; accept that.
_STATUS_LINE_RE = re.compile(
    rb"HTTP/(?P<version>[0-9]\.[0-9]) (?P<status>[0-9]{3})(?: (?P<reason>[\t\x20-\x7e\x80-\xff]*))?"
)
_HEADER_NAME_RE = re.compile(rb"[" + _TCHAR + rb"]+")
# Octets never allowed in a field value (RFC 9110 section 5.5): controls other
# than HTAB, and DEL.  CR/LF/NUL among them: no header smuggling.
_BAD_VALUE_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_VALUE_STR_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_TARGET_STR_RE = re.compile(r"[\x21-\x7e]+")
_REASON_STR_RE = re.compile(r"[\t\x20-\x7e]*")
_HEX_RE = re.compile(rb"[0-9A-Fa-f]+")
_DIGITS_RE = re.compile(r"[0-9]+")
#: End of a header block: an empty line (bare LF tolerated, RFC 9112 section 2.2).
HEAD_END_RE = re.compile(rb"\n\r?\n")


class Headers:
    """An ordered, case-insensitive multiset of header fields.

    Iteration yields ``(name, value)`` pairs in wire order with the names as
    they were written; lookups ignore case.  Immutable and hashable, so it can
    sit inside frozen event dataclasses.

    Names and values are interned (gtk-gnutella keeps header strings as
    "atoms" for the same reason): a Gnutella link keeps both ends'
    handshake headers for its lifetime, mostly the same twenty names and
    the same few values on every link, and a simulated network of 10,000
    servents holds some 60,000 of them.
    """

    __slots__ = ("_pairs", "_index")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: tuple[tuple[str, str], ...] = tuple(
            (intern(str(n)), intern(str(v))) for n, v in pairs
        )
        index: dict[str, tuple[str, ...]] = {}
        for name, value in self._pairs:
            key = intern(name.lower())
            got = index.get(key)
            index[key] = (value,) if got is None else (*got, value)
        self._index = index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in wire order (empty list when absent)."""
        return list(self._index.get(name.lower(), ()))

    def tokens(self, name: str) -> list[str]:
        """The comma-separated list elements of every ``name`` field, lower-cased
        (RFC 9110 section 5.6.1: ``Connection: keep-alive, Upgrade``)."""
        out: list[str] = []
        for value in self._index.get(name.lower(), ()):
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
        return out

    def with_field(self, name: str, value: str) -> Headers:
        """A copy with one more field appended."""
        return Headers((*self._pairs, (name, value)))

    def without(self, name: str) -> Headers:
        """A copy with every ``name`` field removed."""
        low = name.lower()
        return Headers(p for p in self._pairs if p[0].lower() != low)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self._pairs

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def _key(self) -> tuple[tuple[str, str], ...]:
        return tuple((n.lower(), v) for n, v in self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


# ------------------------------------------------------------------ parsing


def split_head(block: bytes | bytearray) -> tuple[bytes, list[bytes]]:
    """Split a header block (without its final empty line) into the start
    line and the field lines, enforcing :data:`MAX_LINE_BYTES`."""
    lines = bytes(block).split(b"\n")
    out: list[bytes] = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > MAX_LINE_BYTES:
            raise RemoteProtocolError("header line too long", 431)
        out.append(line)
    if not out or not out[0]:
        raise RemoteProtocolError("missing start line", 400)
    return out[0], out[1:]


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """``(method, target, version)`` of a request line (RFC 9112 section 3)."""
    m = _REQUEST_LINE_RE.fullmatch(line)
    if m is None:
        raise RemoteProtocolError(f"malformed request line {line[:80]!r}", 400)
    version = m["version"].decode("ascii")
    if version not in SUPPORTED_VERSIONS:
        raise RemoteProtocolError(f"HTTP/{version} not supported", 505)
    return m["method"].decode("ascii"), m["target"].decode("ascii"), version


def parse_status_line(line: bytes) -> tuple[str, int, str]:
    """``(version, status, reason)`` of a status line (RFC 9112 section 4)."""
    m = _STATUS_LINE_RE.fullmatch(line)
    if m is None:
        raise RemoteProtocolError(f"malformed status line {line[:80]!r}")
    version = m["version"].decode("ascii")
    if version not in SUPPORTED_VERSIONS:
        raise RemoteProtocolError(f"HTTP/{version} not supported", 505)
    reason = m["reason"] or b""
    return version, int(m["status"]), reason.decode("latin-1")


def parse_field_lines(lines: list[bytes]) -> list[tuple[str, str]]:
    """Header fields from their lines (RFC 9112 section 5).

    Strict: no whitespace between name and colon (section 5.1 says reject),
    no obsolete line folding (section 5.2 allows rejecting), no control
    octets in values, at most :data:`MAX_HEADERS` fields.
    """
    if len(lines) > MAX_HEADERS:
        raise RemoteProtocolError(f"more than {MAX_HEADERS} header fields", 431)
    fields: list[tuple[str, str]] = []
    for line in lines:
        colon = line.find(b":")
        if colon <= 0:
            raise RemoteProtocolError(f"malformed header line {line[:80]!r}", 400)
        name = line[:colon]
        if _HEADER_NAME_RE.fullmatch(name) is None:
            raise RemoteProtocolError(f"malformed header name {name[:80]!r}", 400)
        value = line[colon + 1 :].strip(b" \t")
        if _BAD_VALUE_RE.search(value) is not None:
            raise RemoteProtocolError(f"control octet in header {name[:80]!r}", 400)
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return fields


def parse_content_length(headers: Headers) -> int | None:
    """The message's Content-Length, or ``None`` when absent.

    RFC 9112 section 6.3 step 5: several values (in one field or repeated
    fields) are accepted only when all are the same; anything but digits is
    rejected (no sign, no hex, no spaces inside).
    """
    values = headers.get_all("content-length")
    if not values:
        return None
    found: int | None = None
    for value in values:
        for part in value.split(","):
            part = part.strip(" \t")
            if not part.isascii() or _DIGITS_RE.fullmatch(part) is None:
                raise RemoteProtocolError(f"bad Content-Length {value[:40]!r}", 400)
            if len(part) > MAX_CONTENT_LENGTH_DIGITS:
                raise RemoteProtocolError("Content-Length too large", 400)
            n = int(part)
            if found is not None and n != found:
                raise RemoteProtocolError("conflicting Content-Length values", 400)
            found = n
    return found


def parse_transfer_chunked(headers: Headers) -> bool:
    """Is the body chunked?  Transfer-Encoding other than exactly ``chunked``
    is refused with 501 (RFC 9112 section 6.1: we implement only chunked)."""
    if "transfer-encoding" not in headers:
        return False
    codings = headers.tokens("transfer-encoding")
    if codings != ["chunked"]:
        raise RemoteProtocolError(f"unsupported Transfer-Encoding {codings!r}", 501)
    return True


# -------------------------------------------------------------- serialising


def check_headers(headers: Headers) -> None:
    """Refuse header names/values that would break the message framing."""
    for name, value in headers:
        if _TOKEN_STR_RE.fullmatch(name) is None:
            raise LocalProtocolError(f"illegal header name {name!r}")
        if _BAD_VALUE_STR_RE.search(value) is not None or value != value.strip(" \t"):
            raise LocalProtocolError(f"illegal value for header {name!r}")


def _encode_fields(headers: Headers) -> bytes:
    return b"".join(
        name.encode("ascii") + b": " + value.encode("latin-1") + b"\r\n" for name, value in headers
    )


def encode_request_head(method: str, target: str, headers: Headers, version: str = "1.1") -> bytes:
    """Serialise a request line and its fields, ending with the empty line."""
    if _TOKEN_STR_RE.fullmatch(method) is None:
        raise LocalProtocolError(f"illegal method {method!r}")
    if _TARGET_STR_RE.fullmatch(target) is None:
        raise LocalProtocolError(f"illegal request target {target[:80]!r}")
    if version not in SUPPORTED_VERSIONS:
        raise LocalProtocolError(f"cannot speak HTTP/{version}")
    check_headers(headers)
    return (
        f"{method} {target} HTTP/{version}\r\n".encode("ascii") + _encode_fields(headers) + b"\r\n"
    )


def encode_response_head(status: int, reason: str, headers: Headers, version: str = "1.1") -> bytes:
    """Serialise a status line and its fields, ending with the empty line."""
    if not 100 <= status <= 999:
        raise LocalProtocolError(f"illegal status {status}")
    if _REASON_STR_RE.fullmatch(reason) is None:
        raise LocalProtocolError(f"illegal reason phrase {reason[:80]!r}")
    if version not in SUPPORTED_VERSIONS:
        raise LocalProtocolError(f"cannot speak HTTP/{version}")
    check_headers(headers)
    return (
        f"HTTP/{version} {status} {reason}\r\n".encode("ascii") + _encode_fields(headers) + b"\r\n"
    )


def encode_chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body as buffers (RFC 9112 section 7.1)."""
    if not data:
        return []
    return [b"%x\r\n" % len(data), data, b"\r\n"]


#: The last chunk with no trailers.
LAST_CHUNK = b"0\r\n\r\n"


# ------------------------------------------------------------- body readers
#
# A reader is fed the bytes that follow a message head.  ``feed(data)``
# returns ``(pieces, rest)``: the body bytes found, and ``None`` while the body
# goes on, or the bytes after its end (possibly empty) once it is complete.
# Pieces are the caller's own buffers whenever the body covers them whole.


class ContentLengthReader:
    """A body of exactly ``length`` bytes (RFC 9112 section 6.2)."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def feed(self, data: bytes) -> tuple[list[bytes], bytes | None]:
        n = len(data)
        remaining = self.remaining
        if n < remaining:
            self.remaining = remaining - n
            return [data], None
        self.remaining = 0
        if n == remaining:
            return [data], b""
        return [data[:remaining]], data[remaining:]

    def eof_ends_body(self) -> bool:
        return False


class CloseDelimitedReader:
    """A response body that ends when the connection does (RFC 9112 6.3 step 8)."""

    __slots__ = ()

    def feed(self, data: bytes) -> tuple[list[bytes], bytes | None]:
        return [data], None

    def eof_ends_body(self) -> bool:
        return True


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedReader:
    """A chunked body (RFC 9112 section 7.1), chunk extensions ignored and
    trailer fields checked and dropped.  Every line is bounded."""

    __slots__ = ("_state", "_remaining", "_line", "_trailer_bytes", "_trailers", "_max_trailer")

    def __init__(self, max_trailer_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._line = bytearray()
        self._trailer_bytes = 0
        self._trailers = 0
        self._max_trailer = max_trailer_bytes

    def eof_ends_body(self) -> bool:
        return False

    def _take_line(self, data: bytes, pos: int, limit: int) -> tuple[bytes | None, int]:
        """Collect one line starting at ``pos``; ``(line, new_pos)`` or
        ``(None, len(data))`` when the line goes on past the data."""
        nl = data.find(b"\n", pos)
        if nl < 0:
            self._line += data[pos:]
            if len(self._line) > limit:
                raise RemoteProtocolError("chunked body line too long", 400)
            return None, len(data)
        self._line += data[pos:nl]
        if len(self._line) > limit:
            raise RemoteProtocolError("chunked body line too long", 400)
        line = bytes(self._line)
        self._line.clear()
        if line.endswith(b"\r"):
            line = line[:-1]
        return line, nl + 1

    def feed(self, data: bytes) -> tuple[list[bytes], bytes | None]:
        pieces: list[bytes] = []
        pos = 0
        n = len(data)
        while pos < n or self._state == _DONE:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                if pos == 0 and take == n:
                    pieces.append(data)
                else:
                    pieces.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_END
            elif state == _SIZE:
                line, pos = self._take_line(data, pos, MAX_CHUNK_LINE_BYTES)
                if line is None:
                    break
                size_text = line.split(b";", 1)[0].strip(b" \t")
                if _HEX_RE.fullmatch(size_text) is None or len(size_text) > MAX_CHUNK_SIZE_DIGITS:
                    raise RemoteProtocolError(f"bad chunk size line {line[:40]!r}", 400)
                self._remaining = int(size_text, 16)
                self._state = _DATA if self._remaining else _TRAILER
            elif state == _DATA_END:
                line, pos = self._take_line(data, pos, 2)
                if line is None:
                    break
                if line:
                    raise RemoteProtocolError("chunk data longer than its size", 400)
                self._state = _SIZE
            elif state == _TRAILER:
                line, new_pos = self._take_line(data, pos, MAX_LINE_BYTES)
                self._trailer_bytes += new_pos - pos
                pos = new_pos
                if self._trailer_bytes > self._max_trailer:
                    raise RemoteProtocolError("trailer section too large", 431)
                if line is None:
                    break
                if not line:
                    self._state = _DONE
                    continue
                self._trailers += 1
                parse_field_lines([line])
                if self._trailers > MAX_HEADERS:
                    raise RemoteProtocolError("too many trailer fields", 431)
            else:
                return pieces, data[pos:]
        return pieces, None


BodyReader = ContentLengthReader | ChunkedReader | CloseDelimitedReader
