"""The Gnutella 0.6 handshake (gtk-gnutella ``doc/gnutella/handshaking_0.6``,
section 3; RFC-Gnutella 0.6 draft section 2.1) and its header negotiation.

Three HTTP-like blocks open every connection::

    client: GNUTELLA CONNECT/0.6<cr><lf>  headers  <cr><lf>
    server: GNUTELLA/0.6 200 OK<cr><lf>   headers  <cr><lf>
    client: GNUTELLA/0.6 200 OK<cr><lf>   headers  <cr><lf>

after which both sides send descriptors.  Any other status than 200 ends the
connection.  Headers follow HTTP syntax, including continuation lines (the
``ultra-peers`` examples fold ``X-Try-Ultrapeers`` over two lines).  Bare LF
line ends are tolerated, as gtk-gnutella does.

Public API:

- :class:`HandshakeBlock` -- one parsed block (its start line and headers);
  :class:`HandshakeReader` -- incremental, bounded reader of one block.
- :func:`parse_connect_line`, :func:`parse_status_line`,
  :func:`parse_header_lines` -- the pieces.
- :func:`encode_connect`, :func:`encode_status` -- our blocks.
- :func:`capability_headers` -- the headers a peerlab servent announces.
- Negotiation helpers reading a peer's :class:`~peerlab.wire.http.Headers`:
  :func:`is_ultrapeer` (``X-Ultrapeer``), :func:`ultrapeer_needed`
  (``X-Ultrapeer-Needed``), :func:`query_routing` (``X-Query-Routing``),
  :func:`ultrapeer_query_routing`, :func:`degree` (``X-Degree``),
  :func:`max_ttl` (``X-Max-TTL``), :func:`dynamic_querying`,
  :func:`try_hosts` (``X-Try``), :func:`try_ultrapeers`
  (``X-Try-Ultrapeers``), :func:`accept_encodings` (``Accept-Encoding``),
  :func:`content_encoding` (``Content-Encoding``), :func:`listen_address`
  (``Listen-IP``, ``X-My-Address``, ``X-Node``), :func:`remote_ip`
  (``Remote-IP``), :func:`user_agent`; :func:`format_hosts` writes host lists.
- :func:`classify_first_bytes` -- tell a Gnutella handshake from HTTP or a
  ``GIV`` on a shared listening port.

Peer input raises :class:`~peerlab.errors.RemoteProtocolError` whose ``code``
is the status to refuse with (400 malformed, 431 too large, 505 version);
our own bad headers raise :class:`~peerlab.errors.LocalProtocolError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.http import Headers

__all__ = [
    "DEFLATE",
    "MAX_HANDSHAKE_BYTES",
    "MAX_HANDSHAKE_HEADERS",
    "MAX_HANDSHAKE_LINE",
    "MAX_TRY_HOSTS",
    "PROTOCOL_VERSION",
    "HandshakeBlock",
    "HandshakeReader",
    "Headers",
    "accept_encodings",
    "capability_headers",
    "classify_first_bytes",
    "content_encoding",
    "degree",
    "dynamic_querying",
    "encode_connect",
    "encode_status",
    "format_hosts",
    "is_ultrapeer",
    "listen_address",
    "max_ttl",
    "parse_bool",
    "parse_connect_line",
    "parse_header_lines",
    "parse_host_port",
    "parse_status_line",
    "query_routing",
    "remote_ip",
    "try_hosts",
    "try_ultrapeers",
    "ultrapeer_needed",
    "ultrapeer_query_routing",
    "user_agent",
]

#: The protocol version we speak (handshaking_0.6 section 3).
PROTOCOL_VERSION = "0.6"
#: The one stream compression servents use (``compression`` section 3).
DEFLATE = "deflate"
#: Bound on one handshake block.  Real blocks are 0.5-2 KiB (a dozen
#: headers, an X-Try list of ten hosts); 16 KiB leaves room and keeps a
#: peer from making us buffer without end.
MAX_HANDSHAKE_BYTES = 16 * 1024
#: Bound on header fields in a block: gtk-gnutella sends about twenty.
MAX_HANDSHAKE_HEADERS = 64
#: Bound on one line (after folding): an X-Try list of 100 hosts fits.
MAX_HANDSHAKE_LINE = 4 * 1024
#: Hosts we take from one X-Try / X-Try-Ultrapeers header.
MAX_TRY_HOSTS = 100

_CONNECT_RE = re.compile(r"GNUTELLA CONNECT/([0-9]+)\.([0-9]+)")
_STATUS_RE = re.compile(r"GNUTELLA/([0-9]+)\.([0-9]+) ([0-9]{3})(?: (.*))?")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BLOCK_END_RE = re.compile(rb"\r?\n\r?\n")
_IPV4_RE = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class HandshakeBlock:
    """One handshake block.  A CONNECT block has ``code`` ``None``; a status
    block carries ``code`` and ``reason``.  ``version`` is ``"major.minor"``."""

    version: str
    headers: Headers
    code: int | None = None
    reason: str = ""

    @property
    def is_connect(self) -> bool:
        return self.code is None


# ----------------------------------------------------------------- parsing


def _version(major: str, minor: str) -> str:
    version = f"{int(major)}.{int(minor)}"
    if (int(major), int(minor)) < (0, 6):
        # Gnutella 0.4 (and the never-deployed 0.5) carry no headers; today's
        # servents refuse them, and so do we.
        raise RemoteProtocolError(f"Gnutella {version} handshake not supported", 505)
    return version


def parse_connect_line(line: str) -> str:
    """The version of ``GNUTELLA CONNECT/0.6`` (higher ones accepted: "servents
    should ignore higher version numbers")."""
    m = _CONNECT_RE.fullmatch(line)
    if m is None:
        raise RemoteProtocolError(f"not a Gnutella CONNECT line: {line[:80]!r}", 400)
    return _version(m[1], m[2])


def parse_status_line(line: str) -> tuple[str, int, str]:
    """``(version, code, reason)`` of ``GNUTELLA/0.6 200 OK``."""
    m = _STATUS_RE.fullmatch(line)
    if m is None:
        raise RemoteProtocolError(f"not a Gnutella status line: {line[:80]!r}", 400)
    return _version(m[1], m[2]), int(m[3]), (m[4] or "").strip()


def parse_header_lines(lines: list[str]) -> Headers:
    """Header fields, with continuation lines joined by one space (HTTP's
    obsolete line folding, which handshakes still use)."""
    fields: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise RemoteProtocolError("continuation line before any header", 400)
            fields[-1][1] = f"{fields[-1][1]} {line.strip()}".strip()
            if len(fields[-1][1]) > MAX_HANDSHAKE_LINE:
                raise RemoteProtocolError("folded header line too long", 431)
            continue
        name, colon, value = line.partition(":")
        if not colon or _TOKEN_RE.fullmatch(name) is None:
            raise RemoteProtocolError(f"malformed handshake header {line[:80]!r}", 400)
        if _BAD_VALUE_RE.search(value) is not None:
            raise RemoteProtocolError(f"control character in header {name[:80]!r}", 400)
        fields.append([name, value.strip(" \t")])
        if len(fields) > MAX_HANDSHAKE_HEADERS:
            raise RemoteProtocolError(f"more than {MAX_HANDSHAKE_HEADERS} headers", 431)
    return Headers((n, v) for n, v in fields)


def _parse_block(raw: bytes) -> HandshakeBlock:
    text = raw.decode("latin-1")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if any(len(line) > MAX_HANDSHAKE_LINE for line in lines):
        raise RemoteProtocolError("handshake line too long", 431)
    start, rest = lines[0], lines[1:]
    headers = parse_header_lines(rest)
    if start.startswith("GNUTELLA CONNECT/"):
        return HandshakeBlock(parse_connect_line(start), headers)
    version, code, reason = parse_status_line(start)
    return HandshakeBlock(version, headers, code, reason)


class HandshakeReader:
    """Reads one handshake block from a byte stream, fed whole or a byte at a
    time.  :meth:`feed` returns ``(block, rest)`` once the empty line ending
    the block arrived (``rest`` being the bytes after it, which belong to the
    next block or to the descriptor stream), else ``(None, b"")``.  A block
    longer than ``max_bytes`` raises before more is buffered."""

    __slots__ = ("max_bytes", "_buf", "_scan")

    def __init__(self, max_bytes: int = MAX_HANDSHAKE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._scan = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> tuple[HandshakeBlock | None, bytes]:
        buf = self._buf
        buf += data
        # Skip empty lines before the start line (HTTP's leniency).
        while buf[:2] == b"\r\n" or buf[:1] == b"\n":
            del buf[: 2 if buf[:1] == b"\r" else 1]
            self._scan = 0
        m = _BLOCK_END_RE.search(buf, max(self._scan - 3, 0))
        if m is None:
            if len(buf) > self.max_bytes:
                raise RemoteProtocolError("handshake block too large", 431)
            self._scan = len(buf)
            return None, b""
        if m.start() > self.max_bytes:
            raise RemoteProtocolError("handshake block too large", 431)
        raw = bytes(buf[: m.start()])
        rest = bytes(buf[m.end() :])
        buf.clear()
        self._scan = 0
        return _parse_block(raw), rest


# ---------------------------------------------------------------- encoding


def _encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    out = []
    for name, value in headers:
        if _TOKEN_RE.fullmatch(name) is None:
            raise LocalProtocolError(f"bad header name {name!r}")
        if _BAD_VALUE_RE.search(value) is not None or not value.isascii():
            raise LocalProtocolError(f"bad value for header {name!r}")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("ascii")


def encode_connect(
    headers: Iterable[tuple[str, str]] = (), version: str = PROTOCOL_VERSION
) -> bytes:
    """Step 2-3 of the handshake: ``GNUTELLA CONNECT/0.6`` and our headers."""
    return f"GNUTELLA CONNECT/{version}\r\n".encode("ascii") + _encode_headers(headers) + b"\r\n"


def encode_status(
    code: int,
    reason: str,
    headers: Iterable[tuple[str, str]] = (),
    version: str = PROTOCOL_VERSION,
) -> bytes:
    """Steps 4-5 or 6-7: ``GNUTELLA/0.6 200 OK`` (or a refusal) and headers."""
    if not 100 <= code <= 999 or any(c in reason for c in "\r\n\x00") or not reason.isascii():
        raise LocalProtocolError(f"bad status {code} {reason!r}")
    start = f"GNUTELLA/{version} {code} {reason}".rstrip(" ")
    return f"{start}\r\n".encode("ascii") + _encode_headers(headers) + b"\r\n"


# -------------------------------------------------------------- negotiation


def parse_bool(value: str | None) -> bool | None:
    """``True``/``False`` in any case ("case is ignored in True and False")."""
    if value is None:
        return None
    low = value.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return None


def _int(value: str | None, low: int, high: int) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if not v.isdigit() or len(v) > 6:
        return None
    n = int(v)
    return n if low <= n <= high else None


def is_ultrapeer(headers: Headers) -> bool | None:
    """``X-Ultrapeer``: does the host act as an ultrapeer (``ultra-peers`` 3)?"""
    return parse_bool(headers.get("X-Ultrapeer"))


def ultrapeer_needed(headers: Headers) -> bool | None:
    """``X-Ultrapeer-Needed``: leaf guidance; ``False`` asks us to become a leaf."""
    return parse_bool(headers.get("X-Ultrapeer-Needed"))


def query_routing(headers: Headers) -> str | None:
    """``X-Query-Routing``: QRP version for leaf-to-ultrapeer tables."""
    v = headers.get("X-Query-Routing")
    return v.strip() if v else None


def ultrapeer_query_routing(headers: Headers) -> str | None:
    """``X-Ultrapeer-Query-Routing`` (``ultrapeer_qrp``): last-hop QRP between ultrapeers."""
    v = headers.get("X-Ultrapeer-Query-Routing")
    return v.strip() if v else None


def degree(headers: Headers) -> int | None:
    """``X-Degree``: how many ultrapeer connections the host keeps (``dynamic_query``)."""
    return _int(headers.get("X-Degree"), 0, 10_000)


def max_ttl(headers: Headers) -> int | None:
    """``X-Max-TTL``: the highest TTL the host accepts in queries."""
    return _int(headers.get("X-Max-TTL"), 0, 255)


def dynamic_querying(headers: Headers) -> str | None:
    """``X-Dynamic-Querying``: the host runs dynamic queries for its leaves."""
    v = headers.get("X-Dynamic-Querying")
    return v.strip() if v else None


def user_agent(headers: Headers) -> str | None:
    return headers.get("User-Agent")


def parse_host_port(text: str) -> tuple[str, int] | None:
    """``host:port`` (IPv4, ``[IPv6]`` or a host name) or ``None`` if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host or not all(c in "0123456789abcdefABCDEF:." for c in host):
            return None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            return None
        if all(c in "0123456789." for c in host):
            # Numeric: a valid IPv4 address or nothing (the ultra-peers draft's
            # own example holds a three-octet "24.37.144").
            if not _IPV4_RE.fullmatch(host) or any(int(p) > 255 for p in host.split(".")):
                return None
        elif _HOSTNAME_RE.fullmatch(host) is None:
            return None
    p = _int(port, 1, 0xFFFF)
    return (host, p) if p is not None else None


def _host_list(headers: Headers, name: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for value in headers.get_all(name):
        for item in value.split(","):
            # Old servents appended a timestamp after a space: keep the address.
            hp = parse_host_port(item.strip().split(" ")[0]) if item.strip() else None
            if hp is not None and hp not in out:
                out.append(hp)
                if len(out) >= MAX_TRY_HOSTS:
                    return out
    return out


def try_hosts(headers: Headers) -> list[tuple[str, int]]:
    """``X-Try``: hosts to try if this connection fails (malformed entries skipped)."""
    return _host_list(headers, "X-Try")


def try_ultrapeers(headers: Headers) -> list[tuple[str, int]]:
    """``X-Try-Ultrapeers``: ultrapeers to try."""
    return _host_list(headers, "X-Try-Ultrapeers")


def format_hosts(hosts: Iterable[tuple[str, int]]) -> str:
    """``1.2.3.4:6346,5.6.7.8:6347`` for X-Try / X-Try-Ultrapeers."""
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def accept_encodings(headers: Headers) -> list[str]:
    """``Accept-Encoding``: what the peer can inflate (lower-cased)."""
    return headers.tokens("Accept-Encoding")


def content_encoding(headers: Headers) -> str | None:
    """``Content-Encoding``: what the peer will compress its stream with ("MUST
    contain only one value"); ``None`` when absent or ``identity``."""
    values = headers.tokens("Content-Encoding")
    if not values:
        return None
    if len(values) > 1:
        raise RemoteProtocolError(f"Content-Encoding with several values: {values}", 400)
    return None if values[0] == "identity" else values[0]


def listen_address(headers: Headers) -> tuple[str, int] | None:
    """Where the peer listens: gtk-gnutella's ``Listen-IP``, LimeWire's
    ``X-My-Address`` (``ultra-peers`` 3.1), or the old ``X-Node``."""
    for name in ("Listen-IP", "X-My-Address", "X-Node"):
        value = headers.get(name)
        if value:
            hp = parse_host_port(value.split(",")[0])
            if hp is not None:
                return hp
    return None


def remote_ip(headers: Headers) -> str | None:
    """``Remote-IP``: the address the peer sees us at (how we learn ours)."""
    value = headers.get("Remote-IP")
    if not value:
        return None
    value = value.strip()
    if _IPV4_RE.fullmatch(value) and all(int(p) <= 255 for p in value.split(".")):
        return value
    if ":" in value and all(c in "0123456789abcdefABCDEF:." for c in value):
        return value
    return None


def capability_headers(
    *,
    user_agent: str,
    ultrapeer: bool,
    listen: tuple[str, int] | None = None,
    remote: str | None = None,
    accept_deflate: bool = True,
    query_routing: str | None = "0.2",
    ultrapeer_query_routing: str | None = "0.1",
    degree: int | None = 32,
    max_ttl: int | None = 4,
    dynamic_querying: str | None = "0.1",
    ultrapeer_needed: bool | None = None,
    try_hosts: Iterable[tuple[str, int]] = (),
    try_ultrapeers: Iterable[tuple[str, int]] = (),
) -> list[tuple[str, str]]:
    """The headers a peerlab servent announces, as gtk-gnutella 1.2 does:
    capabilities (``Pong-Caching``, ``Bye-Packet``, ``GGEP``,
    ``Vendor-Message``), role (``X-Ultrapeer`` and, for an ultrapeer, its
    routing and dynamic-query headers), addresses and compression."""
    h: list[tuple[str, str]] = [
        ("User-Agent", user_agent),
        ("Pong-Caching", "0.1"),
        ("Bye-Packet", "0.1"),
        ("GGEP", "0.5"),
        ("Vendor-Message", "0.2"),
    ]
    if remote:
        h.append(("Remote-IP", remote))
    if listen:
        h.append(("Listen-IP", format_hosts([listen])))
    if accept_deflate:
        h.append(("Accept-Encoding", DEFLATE))
    h.append(("X-Ultrapeer", "True" if ultrapeer else "False"))
    if ultrapeer_needed is not None:
        h.append(("X-Ultrapeer-Needed", "True" if ultrapeer_needed else "False"))
    if query_routing:
        h.append(("X-Query-Routing", query_routing))
    if ultrapeer:
        if ultrapeer_query_routing:
            h.append(("X-Ultrapeer-Query-Routing", ultrapeer_query_routing))
        if degree is not None:
            h.append(("X-Degree", str(degree)))
        if max_ttl is not None:
            h.append(("X-Max-TTL", str(max_ttl)))
        if dynamic_querying:
            h.append(("X-Dynamic-Querying", dynamic_querying))
    hosts = format_hosts(try_hosts)
    if hosts:
        h.append(("X-Try", hosts))
    ups = format_hosts(try_ultrapeers)
    if ups:
        h.append(("X-Try-Ultrapeers", ups))
    return h


def classify_first_bytes(data: bytes) -> str | None:
    """What a connection to a shared listening port is, from its first bytes:
    ``"gnutella"`` (``GNUTELLA CONNECT/``), ``"http"`` (``GET``/``HEAD``
    request), ``"giv"`` (a pushed upload: ``GIV index:GUID/name``), ``"unknown"``
    for anything else, or ``None`` while too few bytes arrived to tell."""
    for prefix, kind in (
        (b"GNUTELLA CONNECT/", "gnutella"),
        (b"GET ", "http"),
        (b"HEAD ", "http"),
        (b"GIV ", "giv"),
    ):
        n = min(len(data), len(prefix))
        if data[:n] == prefix[:n]:
            return kind if len(data) >= len(prefix) else None
    return "unknown"
