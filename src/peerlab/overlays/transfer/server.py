"""Serving shared files over HTTP/1.1 the way Gnutella servents do.

Routes (Gnutella 0.6 section 3.3 "file transfer", HUGE section 4 for the
``/uri-res/`` names, and peerlab's own two)::

    GET|HEAD /uri-res/N2R?urn:sha1:BASE32        the file named by its SHA-1
    GET|HEAD /get/<index>/<url-encoded name>     the file by catalog index; the
                                                 decoded name must equal the
                                                 catalog's name
    GET|HEAD /uri-res/N2CH?urn:sha1:BASE32       its chunk list (wire/chunks.py)
    GET|HEAD /browse?q=<words>&limit=<n>         JSON listing (direct browse)

File responses honour one byte range (RFC 9110 section 14: ``a-b``, ``a-``,
``-n``; 416 with ``Content-Range: bytes */size`` when unsatisfiable) and carry
``X-Gnutella-Content-URN``, ``X-Peerlab-Chunks``, ``X-Chunk-Root``,
``Accept-Ranges`` and ``Server``.

Upload slots and the active queue (BearShare's ``X-Queue``, as gtk-gnutella
documents it in ``doc/gnutella/active-queuing``): beyond ``slots`` concurrent
uploads a peer gets ``503`` with ``X-Queue: position=P,length=L,limit=N,
pollMin=A,pollMax=B`` and ``Retry-After``, and keeps its place as long as it
asks again within ``pollMax`` seconds, on the same connection or (once that one
is gone) a new one from the same host for the same file.  When the queue is
full the answer is ``503`` without a position.  A slot stays with a connection
while it keeps asking (a segmented downloader sends one range after another)
and is given up ``slot_linger`` seconds after its last response.

Safety (DESIGN.md "Data safety"): only paths the catalog returned are ever
opened, and only after their resolved real path is checked to lie inside one of
the catalog's shared folders, the last component opened with ``O_NOFOLLOW``
and the open file checked to be the regular file the catalog hashed (size and
mtime).  Traversal attempts (``..``, encoded slashes and dots, backslashes,
NUL, absolute or overlong targets) get 400/404, are reported to the runtime's
observer as ``upload.traversal`` and cost only that connection.  No exception
escapes a runtime callback: each is caught at the handler boundary, reported
as ``upload.handler_error`` and closes that one connection.

Push (RFC-Gnutella 0.6 draft, section 2.2.8 and its firewalled-servent
transfer rules): :meth:`UploadService.push` connects *out* to the servent a
Push descriptor names, sends ``GIV <index>:<servent GUID>/<name>`` and a blank
line (:mod:`~peerlab.overlays.transfer.push`), then serves HTTP requests on
that connection exactly as on an incoming one: the same slots, queue, limits
and safety.  Pushes are bounded: at most ``max_pending_pushes`` connection
attempts at once, a repeated Push for the same address, file and GUID within
``push_dedup_window`` seconds (or still connecting) is ignored, connects time
out after ``push_connect_timeout``; every outcome is counted
(``upload.push_requests``, ``upload.push_started``, ``upload.push_duplicate``,
``upload.push_refused``, ``upload.push_connected``, ``upload.push_failed``).

The download mesh (gtk-gnutella ``doc/gnutella/x-alt``): file responses,
chunk lists and 503s carry ``X-Alt:`` with up to ``alt_per_response`` other
sources of the same urn, newest first.  The node feeds them with
:meth:`UploadService.add_alt_locations`; the ``X-Alt`` (and legacy
``X-Gnutella-Alternate-Location``) a downloader sends in its requests are
learned too (``learn_alt_locations``), bounded per urn by
:data:`MAX_ALT_PER_URN` and overall by :data:`MAX_MESH_URNS`.

Written only against :mod:`peerlab.runtime.base`, so the service runs on real
sockets and in the simulator alike.
"""

from __future__ import annotations

import json
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_to_bytes

from peerlab.errors import (
    ConfigError,
    LocalProtocolError,
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
)
from peerlab.overlays.transfer.push import (
    Giv,
    encode_giv,
    format_x_alt,
    parse_alternate_location,
    parse_x_alt,
    usable_address,
)
from peerlab.overlays.transfer.ratelimit import TokenBucket
from peerlab.proto.http import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    Request,
    Response,
    ServerConnection,
)
from peerlab.runtime.base import (
    DEFAULT_HIGH_WATER,
    Address,
    BaseStreamHandler,
    Connecting,
    Runtime,
    Stream,
    StreamHandler,
    Timer,
)
from peerlab.wire.chunks import ChunkList
from peerlab.wire.urn import b32, parse_sha1_urn, sha1_urn

#: MIME type of a served chunk list (wire/chunks.py).
CHUNKS_MIME = "application/x-peerlab-chunks"
#: Smallest block sent at once under a rate limit: below this, per-write
#: overhead would dominate; above ``rate / LIMITED_WRITES_PER_S`` the limit
#: would let bursts through.
MIN_LIMITED_BLOCK = 16 * 1024
#: Writes per second a rate-limited upload aims for (smooth, yet cheap).
LIMITED_WRITES_PER_S = 8
#: Shortest wait for rate-limit credit (a clock tick, well below any
#: interval a limit is measured over).
MIN_RATE_WAIT_S = 0.001
#: Blocks one connection writes per turn of the event loop before yielding,
#: so one fast reader cannot starve the other connections.
BLOCKS_PER_TURN = 8
#: How often a sender re-checks a send buffer that stays above the high-water
#: mark without a ``pause_writing`` having arrived (a runtime may deliver that
#: callback later than the write that crossed the mark).
DRAIN_POLL_S = 0.05
#: Samples and window of the per-upload rate estimate shown in ``uploads()``.
RATE_WINDOW_S = 3.0
RATE_SAMPLE_S = 0.25
#: Digits accepted in a ``/get/<index>/`` index or a Range bound: beyond any
#: real catalog or file, and keeps parsed integers small.
MAX_INDEX_DIGITS = 12
MAX_RANGE_DIGITS = 18
#: Bytes of one field in a traversal report: enough to see the attack.
REPORT_TARGET_CHARS = 200
#: Alternate locations kept per urn (``doc/gnutella/x-alt``): the newest win;
#: a downloader needs a few good ones, not every peer that ever asked.
MAX_ALT_PER_URN = 32
#: Urns with a mesh entry; the least recently fed is forgotten beyond this
#: (downloaders' request headers can name any urn we share).
MAX_MESH_URNS = 4096
#: Pushes remembered for de-duplication (address, file, GUID -> last attempt).
MAX_PUSH_MEMORY = 512

#: A pushed connection's identity: target host, port, file index, servent GUID.
PushKey = tuple[str, int, int, bytes]

_TRAVERSAL = "upload.traversal"


# ------------------------------------------------------------------- config


@dataclass
class UploadConfig:
    """Settings of :class:`UploadService`, documented defaults."""

    #: Concurrent uploads (the lecture's "upload slots").
    slots: int = 4
    #: Peers waiting in the active queue beyond the slots; more get a plain 503.
    queue_limit: int = 32
    #: ``Retry-After`` (s) for a peer turned away without a queue place.
    retry_after: int = 30
    #: A queued peer should ask again no sooner than ``poll_min`` s (sent as
    #: ``Retry-After`` and ``pollMin``) and loses its place after ``poll_max`` s.
    poll_min: int = 10
    poll_max: int = 60
    #: Global upload limit in bytes/s over every connection; 0: unlimited.
    rate_limit: float = 0.0
    #: Seconds a connection may sit without completing a request.
    idle_timeout: float = 60.0
    #: Seconds an upload may make no progress (peer not reading) before it is
    #: dropped.
    stall_timeout: float = 60.0
    #: Seconds a connection keeps its slot after a response, waiting for its
    #: next range request.
    slot_linger: float = 10.0
    #: File read / write block: large, so loopback throughput is high.
    block_size: int = 1 << 20
    #: Open connections served at once; more are answered 503 and closed.
    max_connections: int = 256
    #: Bound on a request's header block (431 beyond it).
    max_header_bytes: int = 16 * 1024
    #: Longest request target accepted (400 beyond it).
    max_target_length: int = 2048
    #: Most files one ``/browse`` answer lists.
    browse_limit: int = 1000
    #: Finished uploads remembered for :meth:`UploadService.uploads`.
    history_limit: int = 200
    #: Push connections being opened at once (draft 2.2.8); more Pushes are
    #: refused until one connects or fails.
    max_pending_pushes: int = 8
    #: Seconds a push connection may take to connect.
    push_connect_timeout: float = 15.0
    #: A Push for the same address, file and GUID within this many seconds of
    #: the last one is a duplicate (the same request routed twice, or a
    #: downloader re-pushing faster than it could have waited for our GIV).
    push_dedup_window: float = 5.0
    #: Most ``X-Alt`` entries in one response (``doc/gnutella/x-alt``).
    alt_per_response: int = 10
    #: Learn the ``X-Alt`` a downloader sends in its requests into the mesh.
    learn_alt_locations: bool = True

    def __post_init__(self) -> None:
        if self.slots < 0 or self.queue_limit < 0:
            raise ConfigError("upload slots and queue limit must be >= 0")
        if not 0 < self.poll_min <= self.poll_max:
            raise ConfigError("need 0 < poll_min <= poll_max")
        if self.block_size < 4096:
            raise ConfigError("upload block_size must be at least 4096 bytes")
        if self.rate_limit < 0:
            raise ConfigError("upload rate limit must be >= 0 (0: unlimited)")
        if self.max_pending_pushes < 0 or self.alt_per_response < 0:
            raise ConfigError("max_pending_pushes and alt_per_response must be >= 0")
        for name in ("idle_timeout", "stall_timeout", "slot_linger", "push_connect_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"upload {name} must be > 0")


class CatalogLike(Protocol):
    """What the service needs of :class:`peerlab.storage.catalog.Catalog`."""

    def by_urn(self, urn_or_digest: str | bytes) -> Any: ...

    def by_index(self, index: int) -> Any: ...

    def search(self, text: str, *, limit: int = 100) -> list[Any]: ...

    def chunk_list(self, file: Any) -> ChunkList: ...

    def folders(self) -> list[Path]: ...


@dataclass(frozen=True)
class UploadInfo:
    """One row of the transfers table (the lecture's Napster screenshot:
    file, size, peer, status, progress, rate, time left)."""

    id: int
    peer: str
    name: str
    size: int
    urn: str
    start: float
    sent: int
    #: Bytes asked for so far (the sum of the requested ranges).
    length: int
    status: str  # "uploading" | "queued" | "complete" | "failed"
    rate: float
    position: int | None = None
    error: str | None = None

    @property
    def progress(self) -> float:
        """Fraction of the requested bytes sent, 0..1."""
        return self.sent / self.length if self.length else (1.0 if self.status == "complete" else 0)

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or ``None`` when unknown."""
        left = self.length - self.sent
        if self.status != "uploading" or self.rate <= 0:
            return None
        return left / self.rate


# ----------------------------------------------------------------- helpers


class _Refusal(Exception):
    """A request we answer with an error status (raised inside the router)."""

    def __init__(
        self, status: int, reason: str, *, traversal: bool = False, size: int | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.traversal = traversal
        #: For 416: the file size, sent as ``Content-Range: bytes */size``.
        self.size = size


_REASONS = {
    200: "OK",
    202: "Accepted",
    206: "Partial Content",
    400: "Bad Request",
    404: "Not Found",
    410: "Gone",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def check_target(target: str, max_length: int) -> tuple[str, str]:
    """Split an origin-form target into ``(path, query)`` or raise ``_Refusal``.

    Refuses every traversal shape before any routing: overlong targets, other
    than origin-form (absolute URIs, ``*``), backslashes and NUL (raw or
    encoded), encoded slashes, empty, ``.`` or ``..`` segments, raw or
    percent-encoded.
    """
    if len(target) > max_length:
        raise _Refusal(400, "overlong target", traversal=True)
    if not target.startswith("/"):
        raise _Refusal(400, "target is not an absolute path", traversal=True)
    path, _, query = target.partition("?")
    lowered = target.lower()
    if "\\" in target or "%5c" in lowered or "\x00" in target or "%00" in lowered:
        raise _Refusal(400, "backslash or NUL in target", traversal=True)
    if "%2f" in path.lower():
        raise _Refusal(400, "encoded slash in path", traversal=True)
    raw_segments = path.split("/")[1:]
    for seg in raw_segments:
        decoded = unquote_to_bytes(seg)
        if decoded in (b"", b".", b"..") and path != "/":
            raise _Refusal(400, "empty or dot segment in path", traversal=True)
        if b"/" in decoded or b"\\" in decoded or b"\x00" in decoded:
            raise _Refusal(400, "separator hidden in a path segment", traversal=True)
    return path, query


def _decode_component(raw: str) -> str:
    """Percent-decode one URL component as UTF-8 (``+`` stays a plus)."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(400, "component is not UTF-8") from None


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """The ``(first, last)`` byte positions of a single-range ``Range`` value.

    RFC 9110 section 14.2: ``None`` means serve the whole file (no header, an
    unknown unit, several ranges or a malformed one are all ignored); raises
    ``_Refusal(416)`` when the range cannot be satisfied.
    """
    if value is None:
        return None
    unit, eq, spec = value.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None
    first_text, dash, last_text = spec.partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash:
        return None
    for text in (first_text, last_text):
        if text and (not text.isascii() or not text.isdigit() or len(text) > MAX_RANGE_DIGITS):
            return None
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _Refusal(416, "unsatisfiable suffix range")
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _Refusal(416, "range starts beyond the end")
    return first, min(last, size - 1)


def _inside(real: str, roots: list[str]) -> bool:
    for root in roots:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def open_shared(file: Any, folders: list[Path]) -> int:
    """Open a catalog file for reading, refusing anything outside the shares.

    Raises ``_Refusal(404)`` when the real path of ``file.path`` is outside
    every shared folder (a symlink swapped in after the scan), is not a
    regular file, or no longer matches what the catalog hashed.
    """
    real = os.path.realpath(file.path)
    roots = [os.path.realpath(f) for f in folders]
    if not _inside(real, roots):
        raise _Refusal(404, "real path lies outside the shared folders", traversal=True)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise _Refusal(404, "file cannot be opened") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refusal(404, "not a regular file", traversal=True)
        mtime = getattr(file, "mtime_ns", None)
        if st.st_size != file.size or (mtime is not None and st.st_mtime_ns != mtime):
            raise _Refusal(404, "file changed since it was scanned")
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------- upload records


@dataclass
class _Record:
    """What one connection uploaded of one file (one transfers-table row)."""

    id: int
    peer: str
    name: str
    size: int
    urn: str
    start: float
    sent: int = 0
    length: int = 0
    status: str = "uploading"
    error: str | None = None
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=16))

    def note(self, now: float) -> None:
        if not self.samples or now - self.samples[-1][0] >= RATE_SAMPLE_S:
            self.samples.append((now, self.sent))

    def rate(self, now: float) -> float:
        if self.status != "uploading":
            return 0.0
        for t, sent in self.samples:
            if now - t <= RATE_WINDOW_S:
                return (self.sent - sent) / (now - t) if now > t else 0.0
        return 0.0

    def info(self, now: float) -> UploadInfo:
        return UploadInfo(
            self.id,
            self.peer,
            self.name,
            self.size,
            self.urn,
            self.start,
            self.sent,
            self.length,
            self.status,
            self.rate(now),
            None,
            self.error,
        )


@dataclass
class _QueueEntry:
    """A peer waiting for a slot (active queueing)."""

    host: str
    peer: str  # host:port of the connection that last polled
    key: int  # file index asked for
    name: str
    size: int
    urn: str
    since: float
    last_poll: float
    owner: _UploadHandler | None


@dataclass
class _Sending:
    """A file response being written."""

    fd: int
    offset: int
    remaining: int
    record: _Record


# ------------------------------------------------------------------ service


class UploadService:
    """Serves a catalog's files to peers (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        catalog: CatalogLike,
        config: UploadConfig | None = None,
        *,
        vendor: str = "peerlab/0.1",
    ) -> None:
        self.runtime = runtime
        self.catalog = catalog
        self.config = config or UploadConfig()
        self.vendor = vendor
        self.bucket = TokenBucket(self.config.rate_limit)
        self._handlers: set[_UploadHandler] = set()
        self._slot_holders: set[_UploadHandler] = set()
        self._queue: list[_QueueEntry] = []
        self._history: deque[_Record] = deque(maxlen=max(1, self.config.history_limit))
        self._next_id = 1
        self._closed = False
        # Connections waiting for a share of the global upload limit, served
        # one block each in turn so no upload starves another.
        self._credit_waiters: deque[_UploadHandler] = deque()
        self._gate: Timer | None = None
        # Push connections being opened, and when each push was last tried.
        self._push_pending: dict[PushKey, Connecting | None] = {}
        self._push_recent: dict[PushKey, float] = {}
        # The download mesh: digest -> {address: last time fed}, oldest urn first.
        self._mesh: dict[bytes, dict[Address, float]] = {}
        #: Addresses of this node itself, never listed in ``X-Alt`` (the node sets them).
        self.self_addresses: set[Address] = set()
        #: ``GET /gnutella/push-proxy`` (gtk-gnutella ``push_proxy`` section 5):
        #: given the query string and headers, relays a Push and returns the
        #: HTTP status (202, 410, 400); ``None``: we are nobody's push proxy (404).
        self.push_proxy: Callable[[str, Headers], int] | None = None
        #: Our own push proxies when firewalled, sent as ``X-Push-Proxies``
        #: with every file ("the most up-to-date proxy information",
        #: ``push_proxy`` section 4.2); ``None``: none.
        self.our_push_proxies: Callable[[], list[Address]] | None = None

    # ------------------------------------------------------------ public

    def handler_factory(self) -> Callable[[], StreamHandler]:
        """A factory for ``runtime.listen``: one handler per connection."""

        def make() -> StreamHandler:
            return _UploadHandler(self)

        return make

    def push(self, address: Address, index: int, servent_guid: bytes) -> bool:
        """Answer a Push (draft 2.2.8): connect to ``address``, send
        ``GIV index:GUID/name``, then serve the requester's HTTP requests on
        that connection like any upload.

        ``index`` is the catalog index the Push names; index 0 with no such
        file is accepted with an empty name (push proxies send 0, gtk-gnutella
        ``doc/gnutella/push_proxy`` section 5).  Returns ``False`` (counted as
        ``upload.push_refused`` or ``upload.push_duplicate``, with an
        ``upload.push_refused`` event) when the push is not attempted.
        """
        obs = self.runtime.observer
        cfg = self.config
        obs.count("upload.push_requests")
        host, port = str(address[0]), int(address[1])
        key: PushKey = (host, port, int(index), bytes(servent_guid))
        now = self.runtime.now()
        last = self._push_recent.get(key)
        if key in self._push_pending or (last is not None and now - last < cfg.push_dedup_window):
            obs.count("upload.push_duplicate")
            return False
        reason: str | None = None
        name = ""
        if self._closed:
            reason = "service closed"
        elif len(servent_guid) != 16:
            reason = "servent GUID is not 16 bytes"
        elif not 0 <= index <= 0xFFFFFFFF:
            reason = "file index beyond 32 bits"
        elif not usable_address(host, port):
            reason = "address nobody can listen on"
        elif len(self._push_pending) >= cfg.max_pending_pushes:
            reason = "too many pushes pending"
        elif len(self._handlers) + len(self._push_pending) >= cfg.max_connections:
            reason = "too many connections"
        else:
            try:
                file = self.catalog.by_index(index)
            except PeerlabError:
                file = None
            if file is not None:
                name = str(file.name)
            elif index != 0:
                reason = "no file with that index"
        if reason is not None:
            obs.count("upload.push_refused")
            obs.event("upload.push_refused", to=f"{host}:{port}", index=index, reason=reason)
            return False
        self._push_recent.pop(key, None)
        self._push_recent[key] = now
        while len(self._push_recent) > MAX_PUSH_MEMORY:
            del self._push_recent[next(iter(self._push_recent))]
        handler = _UploadHandler(
            self, greeting=encode_giv(Giv(index, servent_guid, name)), push_key=key
        )
        self._push_pending[key] = None
        obs.count("upload.push_started")
        obs.event("upload.push", to=f"{host}:{port}", index=index, name=name)
        connecting = self.runtime.connect((host, port), handler, timeout=cfg.push_connect_timeout)
        if key in self._push_pending:
            self._push_pending[key] = connecting
        return True

    @property
    def pushes_pending(self) -> int:
        """Push connections being opened now."""
        return len(self._push_pending)

    def add_alt_locations(self, urn: str | bytes, addresses: Iterable[Address]) -> int:
        """Feed the download mesh: ``addresses`` also serve ``urn`` (a
        ``urn:sha1:`` string or the raw digest).  Newest first in ``X-Alt``;
        unusable addresses are skipped.  Returns how many were new."""
        try:
            digest = urn if isinstance(urn, bytes) else parse_sha1_urn(urn)
        except RemoteProtocolError:
            return 0
        if len(digest) != 20:
            return 0
        now = self.runtime.now()
        known = self._mesh.pop(digest, None)
        if known is None:
            known = {}
        self._mesh[digest] = known  # most recently fed urn last
        new = 0
        for host, port in addresses:
            addr = (str(host), int(port))
            if not usable_address(*addr) or addr in self.self_addresses:
                continue
            if known.pop(addr, None) is None:
                new += 1
            known[addr] = now
        while len(known) > MAX_ALT_PER_URN:
            del known[next(iter(known))]
        if not known:
            del self._mesh[digest]
        while len(self._mesh) > MAX_MESH_URNS:
            del self._mesh[next(iter(self._mesh))]
        return new

    def _x_push_proxies(self) -> list[tuple[str, str]]:
        proxies = self.our_push_proxies() if self.our_push_proxies is not None else []
        if not proxies:
            return []
        return [("X-Push-Proxies", ",".join(f"{h}:{p}" for h, p in proxies))]

    def alt_locations(self, urn: str | bytes) -> list[Address]:
        """The mesh's sources of ``urn``, newest first."""
        try:
            digest = urn if isinstance(urn, bytes) else parse_sha1_urn(urn)
        except RemoteProtocolError:
            return []
        known = self._mesh.get(digest)
        return list(reversed(known)) if known else []

    def _x_alt(self, digest: bytes, told: set[Address]) -> list[tuple[str, str]]:
        """The ``X-Alt`` header of a response about ``digest`` (none when
        empty), leaving out what the requester ``told`` us itself."""
        limit = self.config.alt_per_response
        known = self._mesh.get(digest)
        if not known or limit <= 0:
            return []
        picked = [a for a in reversed(known) if a not in self.self_addresses and a not in told]
        return [("X-Alt", format_x_alt(picked[:limit]))] if picked else []

    def _learn_alts(self, digest: bytes, headers: Headers) -> set[Address]:
        """Take the mesh entries a downloader sent with its request; returns them."""
        found = parse_x_alt(",".join(headers.get_all("X-Alt")))
        legacy = headers.get_all("X-Gnutella-Alternate-Location")
        if legacy:
            found += parse_alternate_location(",".join(legacy), digest)
        if found and self.config.learn_alt_locations:
            new = self.add_alt_locations(digest, found)
            if new:
                self.runtime.observer.count("upload.alt_learned", new)
        return set(found)

    def _push_done(self, key: PushKey | None) -> None:
        if key is not None:
            self._push_pending.pop(key, None)

    def uploads(self) -> list[UploadInfo]:
        """Current, queued and recent uploads, newest first."""
        now = self.runtime.now()
        self._expire_queue(now)
        rows: list[UploadInfo] = []
        for h in self._handlers:
            if h.record is not None:
                rows.append(h.record.info(now))
        for pos, entry in enumerate(self._queue, 1):
            rows.append(
                UploadInfo(
                    0,
                    entry.peer,
                    entry.name,
                    entry.size,
                    entry.urn,
                    entry.since,
                    0,
                    entry.size,
                    "queued",
                    0.0,
                    pos,
                )
            )
        rows.extend(r.info(now) for r in self._history)
        rows.sort(key=lambda r: r.start, reverse=True)
        return rows

    def set_rate_limit(self, bytes_per_s: float) -> None:
        """Change the global upload limit (0: unlimited) for every connection."""
        if bytes_per_s < 0:
            raise ConfigError("upload rate limit must be >= 0 (0: unlimited)")
        self.config.rate_limit = bytes_per_s
        self.bucket.set_rate(bytes_per_s, self.runtime.now())
        if self._gate is not None:
            self._gate.cancel()
            self._gate = None
        self._arm_gate()
        for h in list(self._handlers):
            h.rate_changed()

    @property
    def active(self) -> int:
        """Slots in use."""
        return len(self._slot_holders)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Close every connection; new ones are refused from now on."""
        self._closed = True
        pending, self._push_pending = self._push_pending, {}
        for connecting in pending.values():
            if connecting is not None:
                connecting.cancel()
        for h in list(self._handlers):
            h.shutdown("service closed")
        self._queue.clear()
        self._credit_waiters.clear()
        if self._gate is not None:
            self._gate.cancel()
            self._gate = None

    # ------------------------------------------------- the shared limit

    @property
    def credit_waiting(self) -> bool:
        """Are connections queued for upload credit?"""
        return bool(self._credit_waiters)

    def await_credit(self, handler: _UploadHandler) -> None:
        """Queue ``handler`` for its next block under the global limit.

        Waiters are served round robin, one block each per turn: without
        this, the connection whose timer was armed first would take every
        refill and a second upload would starve until the first ended.
        """
        if handler not in self._credit_waiters:
            self._credit_waiters.append(handler)
        self._arm_gate()

    def _arm_gate(self) -> None:
        if self._gate is not None or not self._credit_waiters:
            return
        wait = self.bucket.delay(1, self.runtime.now())
        if wait > 0:
            self._gate = self.runtime.call_later(max(wait, MIN_RATE_WAIT_S), self._open_gate)
        else:
            self._gate = self.runtime.call_soon(self._open_gate)

    def _open_gate(self) -> None:
        self._gate = None
        for _ in range(len(self._credit_waiters)):
            if self.bucket.delay(1, self.runtime.now()) > 0:
                break
            self._credit_waiters.popleft().credit_granted()
        self._arm_gate()

    # ------------------------------------------------- slots and queue

    def _new_id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def _expire_queue(self, now: float) -> None:
        limit = self.config.poll_max
        if any(now - e.last_poll > limit for e in self._queue):
            kept = []
            for e in self._queue:
                if now - e.last_poll > limit:
                    self.runtime.observer.event("upload.queue_expired", peer=e.host, name=e.name)
                    if e.owner is not None and e.owner.queue_entry is e:
                        e.owner.queue_entry = None
                else:
                    kept.append(e)
            self._queue = kept

    def _admit(self, h: _UploadHandler, file: Any) -> tuple[str, int]:
        """``("serve", 0)``, ``("queued", position)`` or ``("busy", 0)``."""
        if h in self._slot_holders:
            return "serve", 0
        now = self.runtime.now()
        self._expire_queue(now)
        free = self.config.slots - len(self._slot_holders)
        entry = h.queue_entry
        if entry is None:
            for e in self._queue:
                gone = e.owner is None or e.owner.closed
                if gone and e.host == h.host and e.key == file.index:
                    entry = e
                    break
        if entry is not None:
            entry.owner = h
            entry.peer = h.peer
            entry.last_poll = now
            h.queue_entry = entry
            position = self._queue.index(entry) + 1
            if position <= free:
                self._queue.remove(entry)
                h.queue_entry = None
                self._slot_holders.add(h)
                return "serve", 0
            return "queued", position
        if free > len(self._queue):
            self._slot_holders.add(h)
            return "serve", 0
        if len(self._queue) >= self.config.queue_limit:
            return "busy", 0
        entry = _QueueEntry(
            h.host, h.peer, file.index, file.name, file.size, sha1_urn(file.sha1), now, now, h
        )
        self._queue.append(entry)
        h.queue_entry = entry
        return "queued", len(self._queue)

    def _release(self, h: _UploadHandler) -> None:
        self._slot_holders.discard(h)

    def _forget(self, h: _UploadHandler) -> None:
        self._handlers.discard(h)
        self._slot_holders.discard(h)


# ------------------------------------------------------------------ handler


class _UploadHandler(BaseStreamHandler):
    """One HTTP connection of the upload service."""

    def __init__(
        self, service: UploadService, *, greeting: bytes = b"", push_key: PushKey | None = None
    ) -> None:
        self.service = service
        #: Written first on a pushed connection: the GIV line (draft 2.2.8).
        self.greeting = greeting
        self.push_key = push_key
        #: The mesh entries the current request brought (not echoed back).
        self._told: set[Address] = set()
        self.runtime = service.runtime
        cfg = service.config
        self.cfg = cfg
        self.conn = ServerConnection(max_header_bytes=cfg.max_header_bytes)
        self.stream: Stream | None = None
        self.host = "?"
        self.peer = "?"
        self.closed = False
        self.paused = False
        self.sending: _Sending | None = None
        self.record: _Record | None = None
        self.queue_entry: _QueueEntry | None = None
        self._close_after = False
        self._in_dispatch = False
        self._cycle_done = False
        self._pump_timer: Timer | None = None
        self._granted = False
        self._watchdog: Timer | None = None
        self._linger_timer: Timer | None = None
        now = self.runtime.now()
        #: When the connection started waiting for its current request: the
        #: idle deadline counts from here, so trickling bytes cannot extend it.
        self._waiting_since = now
        self._last_progress = now

    # -------------------------------------------------- boundary guard

    def _guarded(self, what: str, fn: Callable[[], None]) -> None:
        """Run ``fn``; any exception is reported and costs this connection only."""
        try:
            fn()
        except Exception as exc:  # the handler boundary: nothing escapes
            self.runtime.observer.event(
                "upload.handler_error", peer=self.peer, where=what, error=repr(exc)
            )
            self._fail_record(f"internal error: {exc}")
            self._abort()

    def _timer(self, delay: float, what: str, fn: Callable[[], None]) -> Timer:
        return self.runtime.call_later(delay, lambda: self._guarded(what, fn))

    # ------------------------------------------------ runtime callbacks

    def connection_made(self, stream: Stream) -> None:
        self._guarded("connection_made", lambda: self._made(stream))

    def connection_failed(self, exc: NetworkError) -> None:
        """Only a push connects out: its attempt failed."""
        self._guarded("connection_failed", lambda: self._push_failed(exc))

    def _push_failed(self, exc: NetworkError) -> None:
        self.closed = True
        self.service._push_done(self.push_key)
        if self.push_key is not None:
            host, port = self.push_key[0], self.push_key[1]
            self.runtime.observer.count("upload.push_failed")
            self.runtime.observer.event("upload.push_failed", to=f"{host}:{port}", error=str(exc))

    def _made(self, stream: Stream) -> None:
        self.stream = stream
        host, port = stream.remote_address
        self.host = str(host)
        self.peer = f"{host}:{port}"
        svc = self.service
        if self.push_key is not None:
            svc._push_done(self.push_key)
            if svc._closed or len(svc._handlers) >= self.cfg.max_connections:
                # We asked for this connection: nothing to answer, just go.
                self.runtime.observer.count("upload.push_failed")
                self.closed = True
                stream.abort()
                return
            self.runtime.observer.count("upload.push_connected")
            self.runtime.observer.event("upload.push_connected", peer=self.peer)
            stream.write(self.greeting)
        if svc._closed or len(svc._handlers) >= self.cfg.max_connections:
            svc.runtime.observer.event("upload.too_many_connections", peer=self.peer)
            stream.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                b"Retry-After: %d\r\nConnection: close\r\n\r\n" % self.cfg.retry_after
            )
            self.closed = True
            stream.close()
            return
        svc._handlers.add(self)
        self.runtime.observer.count("upload.connections")
        self._arm_watchdog(self.cfg.idle_timeout)

    def data_received(self, data: bytes) -> None:
        self._guarded("data_received", lambda: self._dispatch(data))

    def eof_received(self) -> None:
        self._guarded("eof_received", self._eof)

    def connection_lost(self, exc: NetworkError | None) -> None:
        self._guarded("connection_lost", lambda: self._lost(exc))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._guarded("resume_writing", self._pump)

    # -------------------------------------------------------- requests

    def _dispatch(self, data: bytes) -> None:
        """Feed bytes and handle events; then start buffered next requests."""
        if self.closed:
            return
        self._in_dispatch = True
        try:
            while True:
                try:
                    events = self.conn.receive_data(data)
                except RemoteProtocolError as exc:
                    self._protocol_error(exc)
                    return
                data = b""
                for ev in events:
                    self._on_event(ev)
                    if self.closed:
                        return
                if not self._cycle_done or self.closed:
                    return
                self._cycle_done = False
                self.conn.start_next_cycle()
        finally:
            self._in_dispatch = False

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, Request):
            self.runtime.observer.count("http.requests")
            self._on_request(ev)
        elif isinstance(ev, (Data, EndOfMessage)):
            # Request bodies are not used by any route; EndOfMessage may
            # complete a cycle whose response already went out.
            if isinstance(ev, EndOfMessage) and self.conn.response_complete:
                self._response_finished()
        elif isinstance(ev, ConnectionClosed):
            self._peer_closed()

    def _eof(self) -> None:
        if self.closed:
            return
        try:
            events = self.conn.receive_eof()
        except RemoteProtocolError as exc:
            self.runtime.observer.event("upload.bad_request", peer=self.peer, error=str(exc))
            self._close()
            return
        for ev in events:
            self._on_event(ev)

    def _peer_closed(self) -> None:
        # The peer half-closed: finish the response in flight, then close.
        if self.sending is None:
            self._close()
        else:
            self._close_after = True

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        code = exc.code if exc.code in _REASONS else 400
        self.runtime.observer.event(
            "upload.bad_request", peer=self.peer, status=code, error=str(exc)[:200]
        )
        self.runtime.observer.count("upload.refused")
        if self.sending is not None or self.conn.response_complete:
            self._fail_record(f"protocol error: {exc}")
            self._close()
            return
        try:
            self._simple(code or 400, f"{_REASONS.get(code, 'Bad Request')}\n", close=True)
        except LocalProtocolError:
            self._close()

    def _on_request(self, req: Request) -> None:
        method = req.method
        if method not in ("GET", "HEAD"):
            self._simple(405, "only GET and HEAD\n", extra=[("Allow", "GET, HEAD")])
            return
        try:
            path, query = check_target(req.target, self.cfg.max_target_length)
            if path == "/uri-res/N2R":
                self._serve_file(req, self._by_urn(query))
            elif path.startswith("/get/"):
                self._serve_file(req, self._by_index_name(path[len("/get/") :]))
            elif path == "/uri-res/N2CH":
                self._serve_chunks(req, self._by_urn(query))
            elif path == "/browse":
                self._serve_browse(req, query)
            elif path == "/gnutella/push-proxy" and self.service.push_proxy is not None:
                status = self.service.push_proxy(query, req.headers)
                self.service.runtime.observer.count(f"upload.push_proxy.{status}")
                self._simple(status, f"Push Proxy: {_REASONS.get(status, 'Unknown')}\n",
                             head=method == "HEAD")  # fmt: skip
            else:
                raise _Refusal(404, "no such resource")
        except _Refusal as refusal:
            self._refuse(req, refusal)

    def _refuse(self, req: Request, refusal: _Refusal) -> None:
        obs = self.runtime.observer
        obs.count("upload.refused")
        fields = {
            "peer": self.peer,
            "target": req.target[:REPORT_TARGET_CHARS],
            "status": refusal.status,
            "reason": refusal.reason,
        }
        if refusal.traversal:
            obs.event(_TRAVERSAL, **fields)
        else:
            obs.event("upload.refused", **fields)
        extra: list[tuple[str, str]] = []
        if refusal.status == 416 and refusal.size is not None:
            extra.append(("Content-Range", f"bytes */{refusal.size}"))
        self._simple(
            refusal.status,
            f"{refusal.reason}\n",
            extra=extra,
            close=refusal.traversal,
            head=req.method == "HEAD",
        )

    # ---------------------------------------------------------- lookups

    def _by_urn(self, query: str) -> Any:
        text = _decode_component(query)
        try:
            digest = parse_sha1_urn(text)
        except RemoteProtocolError:
            raise _Refusal(400, "query is not a urn:sha1") from None
        found = self.service.catalog.by_urn(digest)
        if found is None:
            raise _Refusal(404, "no file with that urn")
        return found

    def _by_index_name(self, rest: str) -> Any:
        index_text, slash, raw_name = rest.partition("/")
        if not slash or not raw_name or "/" in raw_name:
            raise _Refusal(404, "expected /get/<index>/<name>", traversal="/" in raw_name)
        if (
            not index_text.isascii()
            or not index_text.isdigit()
            or len(index_text) > MAX_INDEX_DIGITS
        ):
            raise _Refusal(404, "bad file index")
        name = _decode_component(raw_name)
        if name in (".", "..") or any(c in name for c in "/\\\x00"):
            raise _Refusal(400, "path separator in file name", traversal=True)
        found = self.service.catalog.by_index(int(index_text))
        if found is None or found.name != name:
            raise _Refusal(404, "no file with that index and name")
        return found

    # ---------------------------------------------------------- routes

    def _file_headers(self, file: Any) -> list[tuple[str, str]]:
        urn = sha1_urn(file.sha1)
        return [
            ("Server", self.service.vendor),
            ("Content-Type", getattr(file, "mime", None) or "application/octet-stream"),
            ("Accept-Ranges", "bytes"),
            ("X-Gnutella-Content-URN", urn),
            ("X-Peerlab-Chunks", f"/uri-res/N2CH?{urn}"),
            ("X-Chunk-Root", b32(file.chunk_root)),
            *self.service._x_alt(file.sha1, self._told),
            *self.service._x_push_proxies(),
        ]

    def _serve_file(self, req: Request, file: Any) -> None:
        self._told = self.service._learn_alts(file.sha1, req.headers)
        size = file.size
        try:
            span = parse_range(req.headers.get("range"), size)
        except _Refusal as refusal:
            refusal.size = size
            raise
        fd = open_shared(file, self.service.catalog.folders())
        first, last = span if span is not None else (0, size - 1)
        length = last - first + 1 if size else 0
        headers = self._file_headers(file)
        status = 200
        if span is not None:
            status = 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        headers.append(("Content-Length", str(length)))
        if req.method == "HEAD":
            os.close(fd)
            self._respond(status, headers)
            self.conn.send_end()
            self._flush()
            self._response_done()
            return
        verdict, position = self.service._admit(self, file)
        if verdict != "serve":
            os.close(fd)
            self._busy(file, verdict, position)
            return
        self._cancel_linger()
        self._start_record(file)
        assert self.record is not None
        self.record.length += length
        self.runtime.observer.event(
            "upload.start", peer=self.peer, name=file.name, offset=first, length=length
        )
        self._respond(status, headers)
        self.sending = _Sending(fd, first, length, self.record)
        self._last_progress = self.runtime.now()
        self._arm_watchdog(self.cfg.stall_timeout)
        self._pump()

    def _busy(self, file: Any, verdict: str, position: int) -> None:
        cfg = self.cfg
        svc = self.service
        headers = [("Server", svc.vendor), *svc._x_alt(file.sha1, self._told)]
        obs = self.runtime.observer
        if verdict == "queued":
            headers.append(("Retry-After", str(cfg.poll_min)))
            headers.append(
                (
                    "X-Queue",
                    f"position={position},length={len(svc._queue)},limit={cfg.slots},"
                    f"pollMin={cfg.poll_min},pollMax={cfg.poll_max}",
                )
            )
            obs.event("upload.queued", peer=self.peer, name=file.name, position=position)
            self._simple(503, f"busy: queued at position {position}\n", extra=headers)
            self._arm_watchdog(cfg.poll_max)
        else:
            headers.append(("Retry-After", str(cfg.retry_after)))
            obs.event("upload.busy", peer=self.peer, name=file.name)
            self._simple(503, "busy: all slots and the queue are full\n", extra=headers, close=True)

    def _serve_chunks(self, req: Request, file: Any) -> None:
        try:
            body = self.service.catalog.chunk_list(file).encode()
        except PeerlabError:
            raise _Refusal(404, "no chunk list for that file") from None
        self._told = self.service._learn_alts(file.sha1, req.headers)
        headers = [
            ("Server", self.service.vendor),
            ("Content-Type", CHUNKS_MIME),
            ("X-Gnutella-Content-URN", sha1_urn(file.sha1)),
            *self.service._x_alt(file.sha1, self._told),
        ]
        self._simple(200, body, extra=headers, head=req.method == "HEAD", content_type=None)

    def _serve_browse(self, req: Request, query: str) -> None:
        cfg = self.cfg
        try:
            params = dict(
                parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=16)
            )
        except (ValueError, UnicodeDecodeError):
            raise _Refusal(400, "malformed browse query") from None
        text = params.get("q", "")
        limit_text = params.get("limit", "")
        limit = cfg.browse_limit
        if limit_text:
            if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 9:
                raise _Refusal(400, "bad browse limit")
            limit = min(int(limit_text), cfg.browse_limit)
        try:
            files = self.service.catalog.search(text, limit=limit)
        except PeerlabError:
            raise _Refusal(400, "bad browse query") from None
        body = json.dumps({"files": [_file_json(f) for f in files[:limit]]}).encode()
        self.runtime.observer.event(
            "upload.browse", peer=self.peer, query=text[:100], results=len(files)
        )
        headers = [("Server", self.service.vendor), ("Content-Type", "application/json")]
        self._simple(200, body, extra=headers, head=req.method == "HEAD", content_type=None)

    # ------------------------------------------------------- responses

    def _respond(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.conn.send_response(Response(status, _REASONS.get(status, "Unknown"), Headers(headers)))
        self._flush()

    def _simple(
        self,
        status: int,
        body: str | bytes,
        *,
        extra: list[tuple[str, str]] | None = None,
        close: bool = False,
        head: bool = False,
        content_type: str | None = "text/plain; charset=utf-8",
    ) -> None:
        """A whole small response (errors, 503s, chunk lists, browse)."""
        data = body.encode() if isinstance(body, str) else body
        headers = list(extra or [])
        if not any(n == "Server" for n, _ in headers):
            headers.insert(0, ("Server", self.service.vendor))
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        headers.append(("Content-Length", str(len(data))))
        if close:
            headers.append(("Connection", "close"))
            self._close_after = True
        self.conn.send_response(Response(status, _REASONS.get(status, "Unknown"), Headers(headers)))
        if not head:
            self.conn.send_data(data)
        self.conn.send_end()
        self._flush()
        self._response_done()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.stream is not None and not self.closed:
            self.stream.write(out)

    def _response_done(self) -> None:
        """A response ended: close, or get ready for the next request."""
        if self._close_after or not self.conn.keep_alive:
            self._close()
            return
        if self.conn.request_complete:
            self._response_finished()

    def _response_finished(self) -> None:
        if self.closed or not self.conn.keep_alive or not self.conn.request_complete:
            return
        if self._cycle_done:
            return
        self._waiting_since = self.runtime.now()
        if self in self.service._slot_holders and self.sending is None:
            self._arm_linger()
        self._arm_watchdog(self.cfg.idle_timeout if self.queue_entry is None else self.cfg.poll_max)
        if self._in_dispatch:
            self._cycle_done = True
        else:
            self.conn.start_next_cycle()
            self._dispatch(b"")

    # ------------------------------------------------------ the sender

    def _block(self) -> int:
        bucket = self.service.bucket
        if bucket.unlimited:
            return self.cfg.block_size
        return min(
            self.cfg.block_size, max(MIN_LIMITED_BLOCK, int(bucket.rate) // LIMITED_WRITES_PER_S)
        )

    def _schedule_pump(self, delay: float | None) -> None:
        """Run :meth:`_pump` later (``None``: on the next loop turn)."""
        if self._pump_timer is not None:
            self._pump_timer.cancel()
        if delay is None:
            self._pump_timer = self.runtime.call_soon(lambda: self._guarded("pump", self._pump))
        else:
            self._pump_timer = self._timer(delay, "pump", self._pump)

    def _pump(self) -> None:
        """Write file blocks while the stream takes them and the limit allows."""
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None
        up = self.sending
        stream = self.stream
        if up is None or stream is None or self.closed:
            return
        bucket = self.service.bucket
        runtime = self.runtime
        turns = 0
        while up.remaining > 0:
            if self.paused or stream.closing:
                return
            if stream.get_write_buffer_size() > DEFAULT_HIGH_WATER:
                self._schedule_pump(DRAIN_POLL_S)
                return
            if turns >= BLOCKS_PER_TURN:
                self._schedule_pump(None)
                return
            n = min(self._block(), up.remaining)
            now = runtime.now()
            if not bucket.unlimited:
                granted, self._granted = self._granted, False
                if not granted and (bucket.delay(n, now) > 0 or self.service.credit_waiting):
                    self.service.await_credit(self)
                    return
            data = os.pread(up.fd, n, up.offset)
            if len(data) != n:
                raise PeerlabError(f"{up.record.name} shrank while being uploaded")
            bucket.consume(n, now)
            up.offset += n
            up.remaining -= n
            rec = up.record
            rec.sent += n
            rec.note(now)
            self.conn.send_data(data)
            stream.write(self.conn.data_to_send())
            runtime.observer.count("upload.bytes", n)
            self._last_progress = now
            turns += 1
        self._end_file()

    def _end_file(self) -> None:
        up = self.sending
        assert up is not None
        self.sending = None
        os.close(up.fd)
        self.conn.send_end()
        self._flush()
        self.runtime.observer.event(
            "upload.sent", peer=self.peer, name=up.record.name, sent=up.record.sent
        )
        self._response_done()

    def credit_granted(self) -> None:
        """The service's turn-taking gives this connection one block's credit."""
        self._granted = True
        self._guarded("pump", self._pump)

    def rate_changed(self) -> None:
        """The global limit changed: re-plan a pending rate wait."""
        if self._pump_timer is not None and self.sending is not None:
            self._schedule_pump(None)

    # -------------------------------------------------- records, timers

    def _start_record(self, file: Any) -> None:
        rec = self.record
        if rec is not None and rec.urn == sha1_urn(file.sha1) and rec.status == "uploading":
            return
        self._finish_record("complete")
        self.record = _Record(
            self.service._new_id(),
            self.peer,
            file.name,
            file.size,
            sha1_urn(file.sha1),
            self.runtime.now(),
        )

    def _finish_record(self, status: str, error: str | None = None) -> None:
        rec = self.record
        if rec is None:
            return
        self.record = None
        rec.status = status
        rec.error = error
        self.service._history.append(rec)
        self.runtime.observer.event(
            f"upload.{status}", peer=self.peer, name=rec.name, sent=rec.sent, error=error
        )

    def _fail_record(self, error: str) -> None:
        if self.sending is not None:
            self._finish_record("failed", error)

    def _arm_watchdog(self, timeout: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._timer(timeout, "watchdog", self._check_timeouts)

    def _check_timeouts(self) -> None:
        self._watchdog = None
        if self.closed:
            return
        now = self.runtime.now()
        if self.sending is not None:
            deadline = self._last_progress + self.cfg.stall_timeout
            reason = "stalled"
        elif self.queue_entry is not None:
            deadline = self.queue_entry.last_poll + self.cfg.poll_max
            reason = "queue poll overdue"
        else:
            deadline = self._waiting_since + self.cfg.idle_timeout
            reason = "idle"
        if now >= deadline:
            self.runtime.observer.event("upload.timeout", peer=self.peer, reason=reason)
            self._fail_record(f"timed out ({reason})")
            if self.sending is not None:
                self._abort()
            else:
                self._close()
            return
        self._watchdog = self._timer(deadline - now, "watchdog", self._check_timeouts)

    def _arm_linger(self) -> None:
        self._cancel_linger()
        self._linger_timer = self._timer(self.cfg.slot_linger, "linger", self._linger_over)

    def _cancel_linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None

    def _linger_over(self) -> None:
        self._linger_timer = None
        if self.sending is None:
            self.service._release(self)
            self._finish_record("complete")

    # ----------------------------------------------------------- closing

    def _teardown(self) -> None:
        if self.sending is not None:
            os.close(self.sending.fd)
            self._finish_record("failed", self.record.error if self.record else None)
            self.sending = None
        else:
            self._finish_record("complete")
        for t in (self._pump_timer, self._watchdog, self._linger_timer):
            if t is not None:
                t.cancel()
        self._pump_timer = self._watchdog = self._linger_timer = None
        self.service._forget(self)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._teardown()
        if self.stream is not None:
            self.stream.close()

    def _abort(self) -> None:
        if self.closed:
            if self.stream is not None:
                self.stream.abort()
            return
        self.closed = True
        try:
            self._teardown()
        finally:
            if self.stream is not None:
                self.stream.abort()

    def shutdown(self, reason: str) -> None:
        """Called by :meth:`UploadService.close`."""
        self._fail_record(reason)
        self._close()

    def _lost(self, exc: NetworkError | None) -> None:
        if not self.closed:
            self.closed = True
            if self.sending is not None and self.record is not None:
                self.record.error = f"connection lost: {exc}" if exc else "connection closed"
            self._teardown()


def _file_json(f: Any) -> dict[str, Any]:
    """One ``/browse`` entry (the contract's field list)."""
    return {
        "index": f.index,
        "name": f.name,
        "size": f.size,
        "urn": sha1_urn(f.sha1),
        "chunk_root": b32(f.chunk_root),
        "kind": getattr(f, "kind", "other"),
        "title": getattr(f, "title", None),
        "artist": getattr(f, "artist", None),
        "album": getattr(f, "album", None),
        "genre": getattr(f, "genre", None),
        "bitrate": getattr(f, "bitrate", None),
        "duration": getattr(f, "duration", None),
    }


__all__ = [
    "CHUNKS_MIME",
    "MAX_ALT_PER_URN",
    "MAX_MESH_URNS",
    "UploadConfig",
    "UploadInfo",
    "UploadService",
    "check_target",
    "open_shared",
    "parse_range",
]
