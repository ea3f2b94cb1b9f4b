"""Push/GIV for firewalled servents, the download mesh's headers, and a shared port.

Three small parts the transfer layer shares between its serving side
(:mod:`~peerlab.overlays.transfer.server`) and its downloading side
(:mod:`~peerlab.overlays.transfer.download`):

1. **GIV** (RFC-Gnutella 0.6 draft, section 2.2.8 "Push" and the file
   transfer section on firewalled servents).  A servent that cannot accept
   connections answers a Push by connecting *out* to the address the Push
   names and sending one line and a blank line::

       GIV <file index>:<servent GUID, 32 hex digits>/<URL-encoded file name>\\n\\n

   after which the downloader speaks HTTP on that connection exactly as if it
   had opened it.  :class:`Giv` is the line, :func:`encode_giv` writes it and
   :class:`GivReader` reads it incrementally, bounded by :data:`MAX_GIV_BYTES`.

2. **Alternate locations** (the download mesh).  ``X-Alt`` (gtk-gnutella
   ``doc/gnutella/x-alt``) lists other sources of the same urn as compact
   ``IP[:PORT]`` entries (6346 when the port is left out) and push entries
   ``GUID;IP:PORT;...`` (push proxies, which peerlab reads past);
   :func:`parse_x_alt` and :func:`format_x_alt`.  The legacy
   ``X-Gnutella-Alternate-Location`` lists URLs
   (``http://IP:PORT/uri-res/N2R?urn:sha1:... <timestamp>``);
   :func:`parse_alternate_location`.  Every parser reads at most
   :data:`MAX_ALT_PARSE` entries of one header.

3. **A shared listening port.**  A Gnutella servent takes Gnutella
   connections, HTTP requests and pushed ``GIV`` connections on one port.
   :class:`SharedPortHandler` waits for the first bytes, asks
   :func:`~peerlab.wire.handshake.classify_first_bytes` what they are, hands
   the stream (and every byte so far) to the handler its route makes, and
   forwards every later callback there.  :func:`shared_port_factory` is its
   factory for ``runtime.listen``.

Written only against :mod:`peerlab.runtime.base`, like the rest of the
transfer layer: it runs on real sockets and in the simulator alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from peerlab.errors import LocalProtocolError, NetworkError, RemoteProtocolError
from peerlab.runtime.base import Address, Runtime, Stream, StreamHandler, Timer
from peerlab.wire.handshake import classify_first_bytes
from peerlab.wire.urn import parse_sha1_urn

__all__ = [
    "DEFAULT_GNUTELLA_PORT",
    "FIRST_BYTES_TIMEOUT",
    "MAX_ALT_PARSE",
    "MAX_GIV_BYTES",
    "Giv",
    "GivReader",
    "SharedPortHandler",
    "encode_giv",
    "format_x_alt",
    "parse_alternate_location",
    "parse_giv",
    "parse_x_alt",
    "shared_port_factory",
    "usable_address",
]

#: Bytes a GIV line and its blank line may take: the draft bounds nothing,
#: but a file name is at most a few hundred characters, three times that
#: URL-encoded; beyond this the peer is not sending a GIV.
MAX_GIV_BYTES = 4096
#: ``Push`` carries the file index as a 32-bit field (draft section 2.2.8).
MAX_FILE_INDEX = 0xFFFFFFFF
#: Entries read from one ``X-Alt`` or ``X-Gnutella-Alternate-Location``
#: header: gtk-gnutella sends a handful, a hostile peer could send thousands.
MAX_ALT_PARSE = 64
#: The port an ``X-Alt`` entry without one means (``doc/gnutella/x-alt``).
DEFAULT_GNUTELLA_PORT = 6346
#: Seconds a connection to a shared port may take to send the bytes that tell
#: what it is (``classify_first_bytes`` needs at most 17): a slowloris bound.
FIRST_BYTES_TIMEOUT = 20.0
_GUID_HEX = re.compile(r"[0-9A-Fa-f]{32}")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_ALT_ENTRY = re.compile(r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?::(\d{1,5}))?")
_ALT_URL = re.compile(
    r"http://(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?::(\d{1,5}))?(/[^\s]*)?(?:\s.*)?",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------- GIV


@dataclass(frozen=True, slots=True)
class Giv:
    """``GIV <index>:<servent GUID>/<name>`` (draft 2.2.8): the pushing
    servent's file index and GUID as the Push named them, and the file name."""

    index: int
    servent_guid: bytes
    name: str = ""


def encode_giv(giv: Giv) -> bytes:
    """The GIV line and its blank line: the GUID as 32 upper-case hex digits,
    the name URL-encoded (so it stays one ASCII line)."""
    if len(giv.servent_guid) != 16:
        raise LocalProtocolError("a servent GUID is 16 bytes")
    if not 0 <= giv.index <= MAX_FILE_INDEX:
        raise LocalProtocolError(f"file index {giv.index} does not fit a Push's 32 bits")
    # A file name the file system gave as undecodable bytes (surrogateescape)
    # goes out as those bytes, percent-encoded; any other lone surrogate as "?".
    try:
        raw = giv.name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = giv.name.encode("utf-8", "replace")
    name = quote(raw, safe="")
    line = f"GIV {giv.index}:{giv.servent_guid.hex().upper()}/{name}\n\n"
    data = line.encode("ascii")
    if len(data) > MAX_GIV_BYTES:
        raise LocalProtocolError("file name too long for a GIV line")
    return data


def parse_giv(line: bytes) -> Giv:
    """Parse one GIV line (without its line end).

    Lenient where servents differ (hex in either case, a raw or URL-encoded
    name, no ``/name`` at all), strict on what matching needs: a decimal
    32-bit index and a 32-digit hex GUID.  Garbage raises
    :class:`~peerlab.errors.RemoteProtocolError`.
    """
    text = line.rstrip(b"\r").decode("latin-1")
    if not text.startswith("GIV "):
        raise RemoteProtocolError(f"not a GIV line: {text[:40]!r}")
    rest = text[4:].lstrip(" ")
    index_text, colon, tail = rest.partition(":")
    if not colon or not index_text.isascii() or not index_text.isdigit() or len(index_text) > 10:
        raise RemoteProtocolError(f"GIV without a file index: {text[:60]!r}")
    index = int(index_text)
    if index > MAX_FILE_INDEX:
        raise RemoteProtocolError("GIV file index beyond 32 bits")
    guid_text, _, raw_name = tail.partition("/")
    guid_text = guid_text.strip()
    if _GUID_HEX.fullmatch(guid_text) is None:
        raise RemoteProtocolError(f"GIV servent GUID is not 32 hex digits: {guid_text[:40]!r}")
    name = unquote_to_bytes(raw_name).decode("utf-8", errors="replace")
    return Giv(index, bytes.fromhex(guid_text), name)


class GivReader:
    """Reads the GIV line and its blank line from a pushed connection's first
    bytes, fed in pieces of any size.

    :meth:`feed` returns ``None`` while the blank line has not arrived, then
    ``(giv, rest)`` with any bytes that followed.  More than
    :data:`MAX_GIV_BYTES` without a blank line raises
    :class:`~peerlab.errors.RemoteProtocolError`.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[Giv, bytes] | None:
        self._buf += data
        buf = self._buf
        # The draft ends the line with LF LF; CR LF CR LF is tolerated.
        end = buf.find(b"\n\n")
        cr_end = buf.find(b"\r\n\r\n")
        if cr_end >= 0 and (end < 0 or cr_end < end):
            head, rest = bytes(buf[:cr_end]), bytes(buf[cr_end + 4 :])
        elif end >= 0:
            head, rest = bytes(buf[:end]), bytes(buf[end + 2 :])
        else:
            if len(buf) > MAX_GIV_BYTES:
                raise RemoteProtocolError("no end of the GIV line within the bound")
            n = min(len(buf), 4)
            if bytes(buf[:n]) != b"GIV "[:n]:
                raise RemoteProtocolError("not a GIV line")
            return None
        if len(head) > MAX_GIV_BYTES:
            raise RemoteProtocolError("GIV line too long")
        first, _, extra = head.partition(b"\n")
        if extra.strip(b"\r\n"):
            raise RemoteProtocolError("more than one line before the blank line of a GIV")
        self._buf = bytearray()
        return parse_giv(first), rest


# ---------------------------------------------------------- download mesh


def usable_address(host: str, port: int) -> bool:
    """Could a peer really listen at ``host:port``?  Dotted IPv4 only, a port
    in 1..65535, not 0.0.0.0/8, not multicast or reserved (224/3): such
    entries in a mesh header are mistakes or attempts to aim us elsewhere."""
    m = _IPV4.fullmatch(host)
    if m is None or not 0 < port <= 0xFFFF:
        return False
    octets = [int(g) for g in m.groups()]
    if any(o > 255 for o in octets):
        return False
    return 0 < octets[0] < 224


def _normal_host(host: str) -> str:
    """``010.0.0.1`` -> ``10.0.0.1``: one spelling per address, for dedup."""
    return ".".join(str(int(p)) for p in host.split("."))


def parse_x_alt(value: str | None, *, limit: int = MAX_ALT_PARSE) -> list[Address]:
    """The direct sources of an ``X-Alt`` value (``doc/gnutella/x-alt``).

    ``IP[:PORT]`` entries, the port 6346 when absent; push entries
    (``GUID;IP:PORT``), ``tls=`` hints and anything unparsable are skipped;
    duplicates kept once, at most ``limit`` entries read.
    """
    out: list[Address] = []
    if not value:
        return out
    seen: set[Address] = set()
    for n, entry in enumerate(value.split(",")):
        if n >= limit:
            break
        entry = entry.strip()
        if ";" in entry:
            continue  # a push location: GUID;proxy;proxy
        m = _ALT_ENTRY.fullmatch(entry)
        if m is None:
            continue
        port = int(m.group(2)) if m.group(2) else DEFAULT_GNUTELLA_PORT
        if not usable_address(m.group(1), port):
            continue
        addr = (_normal_host(m.group(1)), port)
        if addr not in seen:
            seen.add(addr)
            out.append(addr)
    return out


def parse_alternate_location(
    value: str | None, digest: bytes | None = None, *, limit: int = MAX_ALT_PARSE
) -> list[Address]:
    """The sources of a legacy ``X-Gnutella-Alternate-Location`` value
    (HUGE section 4's alternate-location URLs, each optionally followed by a
    timestamp).  A URL naming another ``urn:sha1`` than ``digest`` is skipped;
    so is anything that is not ``http://IPv4[:port]/...``; port 80 when absent.
    """
    out: list[Address] = []
    if not value:
        return out
    seen: set[Address] = set()
    for n, entry in enumerate(value.split(",")):
        if n >= limit:
            break
        m = _ALT_URL.fullmatch(entry.strip())
        if m is None:
            continue
        path = m.group(3) or ""
        if digest is not None and "urn:sha1:" in path.lower():
            urn = path[path.lower().index("urn:sha1:") :].split("&")[0]
            try:
                if parse_sha1_urn(urn) != digest:
                    continue
            except RemoteProtocolError:
                continue
        port = int(m.group(2)) if m.group(2) else 80
        if not usable_address(m.group(1), port):
            continue
        addr = (_normal_host(m.group(1)), port)
        if addr not in seen:
            seen.add(addr)
            out.append(addr)
    return out


def format_x_alt(addresses: Iterable[Address]) -> str:
    """An ``X-Alt`` value: ``IP:PORT`` entries, comma-separated (the port is
    always written; readers default it only when absent)."""
    return ",".join(f"{host}:{port}" for host, port in addresses)


# ------------------------------------------------------------ shared port


class SharedPortHandler:
    """One connection to a shared listening port, handed on by its first bytes.

    ``routes`` maps a kind of :func:`~peerlab.wire.handshake.classify_first_bytes`
    (``"gnutella"``, ``"http"``, ``"giv"``) to a factory of the
    :class:`~peerlab.runtime.base.StreamHandler` that takes the connection.
    The chosen handler gets ``connection_made(stream)``, then every byte
    received so far in one ``data_received``, then every later callback.  A
    kind without a route, ``"unknown"`` bytes, or no decision within
    ``timeout`` seconds close the connection (reported as
    ``port.refused``/``port.timeout`` and counted).
    """

    __slots__ = ("runtime", "routes", "timeout", "stream", "inner", "_buf", "_timer", "_done")

    def __init__(
        self,
        runtime: Runtime,
        routes: Mapping[str, Callable[[], StreamHandler]],
        *,
        timeout: float = FIRST_BYTES_TIMEOUT,
    ) -> None:
        self.runtime = runtime
        self.routes = routes
        self.timeout = timeout
        self.stream: Stream | None = None
        self.inner: StreamHandler | None = None
        self._buf = bytearray()
        self._timer: Timer | None = None
        self._done = False

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self._timer = self.runtime.call_later(self.timeout, self._timed_out)

    def connection_failed(self, exc: NetworkError) -> None:
        if self.inner is not None:
            self.inner.connection_failed(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        if self._done or self.stream is None:
            return
        self._buf += data
        kind = classify_first_bytes(bytes(self._buf[:32]))
        if kind is None:
            return  # a prefix of a known opening: wait for more
        self._cancel_timer()
        factory = self.routes.get(kind) if kind is not None else None
        if factory is None:
            self._refuse("port.refused", kind or "unknown")
            return
        inner = factory()
        self.inner = inner
        self.runtime.observer.count(f"port.{kind}")
        buffered, self._buf = bytes(self._buf), bytearray()
        inner.connection_made(self.stream)
        if not self.stream.closing:
            inner.data_received(buffered)

    def eof_received(self) -> None:
        if self.inner is not None:
            self.inner.eof_received()
        elif self.stream is not None and not self._done:
            self._refuse("port.refused", "closed before saying what it is")

    def connection_lost(self, exc: NetworkError | None) -> None:
        self._cancel_timer()
        self._done = True
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.inner is None and not self._done:
            self._refuse("port.timeout", "no recognisable first bytes in time")

    def _refuse(self, name: str, reason: str) -> None:
        self._done = True
        stream = self.stream
        peer = f"{stream.remote_address[0]}:{stream.remote_address[1]}" if stream else "?"
        self.runtime.observer.event(name, peer=peer, reason=reason)
        self.runtime.observer.count(name)
        if stream is not None:
            stream.abort()


def shared_port_factory(
    runtime: Runtime,
    routes: Mapping[str, Callable[[], StreamHandler]],
    *,
    timeout: float = FIRST_BYTES_TIMEOUT,
) -> Callable[[], StreamHandler]:
    """A factory for ``runtime.listen``: one :class:`SharedPortHandler` per
    connection, all sharing ``routes``."""

    def make() -> StreamHandler:
        return SharedPortHandler(runtime, routes, timeout=timeout)

    return make
