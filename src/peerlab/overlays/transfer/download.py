"""Segmented, swarmed, verified downloads over Gnutella-style HTTP (issue 2, section 4).

A :class:`DownloadManager` fetches files named by ``urn:sha1`` (HUGE) from
every known source at once.  It is written only against the
:class:`~peerlab.runtime.base.Runtime` interface, so the same code runs on real
sockets and inside the simulator.

How one download proceeds:

1. Each source gets one HTTP/1.1 connection (keep-alive, one request at a
   time).  Its first request asks for the chunk list,
   ``GET /uri-res/N2CH?urn:sha1:...`` (:class:`~peerlab.wire.chunks.ChunkList`),
   checked against the chunk root when one is known.  A source that serves
   no list (a foreign servent) is used anyway; its chunks are then checked
   only by the whole-file SHA-1 at the end.
2. Data comes from ``GET /uri-res/N2R?urn:sha1:...`` (or ``/get/<index>/<name>``
   when N2R is refused and the source gave an index and name) with
   ``Range: bytes=a-b``.  Each source asks for a *run* of missing chunks sized
   to its measured rate (``request_seconds`` worth, capped by
   ``max_run_bytes``), so a fast link stays full and a slow one holds little.
3. Endgame: when no chunk is left unassigned, an idle source duplicates the
   in-flight chunk expected to arrive last; the first good copy wins and a
   source left with nothing useful in flight is cancelled.
4. Every chunk is verified against its digest (on ``runtime.offload``, so the
   real runtime hashes on the second core) before it is written with a
   positioned write or counted as done.  A source that sends a bad chunk,
   lies (Content-Range, Content-Length or the content URN not matching what
   was asked) or sends garbage is banned, and the ban is kept in the state
   file; a source that stalls is dropped.  ``503`` with ``Retry-After`` /
   ``X-Queue`` keeps the source, queued, and asks again after the delay.
5. When every chunk is in, the whole-file SHA-1 (computed incrementally, in
   order, off the event loop) must match the urn; then the file is fsynced
   and moved into the download folder under a free name.  On a mismatch
   the chunk list's provider is blamed and banned, and the data refetched.

The partial's state is persisted in batches (``state_save_interval``); after a
crash :meth:`DownloadManager.load` trusts the chunks the state marks and
re-hashes the others from the partial file, so nothing verified is fetched
again.

Firewalled sources (RFC-Gnutella 0.6 draft, section 2.2.8 "Push"): a
:class:`Source` with ``push=True`` names a servent GUID and file index instead
of an address we can reach.  To "connect" to it the manager asks its
``push_sender`` callback (the servent, which routes a Push descriptor) and
waits ``push_timeout`` seconds for the firewalled servent to connect to us and
send ``GIV index:GUID/name``.  The node's listener hands such connections to
:meth:`DownloadManager.giv_handler` (or :meth:`DownloadManager.accept_giv`);
a GIV matching a waiting source by GUID and index becomes that source's
connection and the download speaks HTTP on it exactly as on any other (N2R
or ``/get/``, ranges, verification).  A GIV nobody waits for is refused
(``transfer.giv_refused``).  A push that is not answered in time counts as a
failure: the source is pushed again after the backoff and dropped after
``max_push_failures``.  Push sources are not written to the state file: the
reverse path a Push travels does not outlive the session.

Alternate locations (the download mesh, gtk-gnutella ``doc/gnutella/x-alt``):
``X-Alt`` and the legacy ``X-Gnutella-Alternate-Location`` of every response
about our urn add their sources to the download (at most ``max_alt_sources``
per download, deduplicated, banned ones and the node's own
``self_addresses`` ignored; ``transfer.alt_sources_learned``), and every
request carries an ``X-Alt`` of up to ``alt_per_request`` sources that have
sent us good data.

Push proxies (gtk-gnutella ``doc/gnutella/push_proxy`` section 4.2): a
firewalled servent names its current proxies in the ``X-Push-Proxies`` header
(``IP:port`` entries, comma separated) of every response, and the downloader
must replace what it knew for that servent with the list.  Each session
reads the header of every response from a source whose servent GUID it knows
(at most :data:`MAX_PUSH_PROXIES_READ` entries, unusable addresses dropped)
and, when the list differs from the last one heard there, hands it to
:attr:`DownloadManager.push_proxies_heard` (the node's proxy book, which
the next Push to that servent goes through; ``transfer.push_proxies_heard``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from peerlab.errors import (
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
    StorageError,
)
from peerlab.overlays.transfer.push import (
    Giv,
    GivReader,
    format_x_alt,
    parse_alternate_location,
    parse_x_alt,
    usable_address,
)
from peerlab.overlays.transfer.ratelimit import TokenBucket
from peerlab.proto.http import (
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    Request,
    Response,
)
from peerlab.runtime.base import Address, Runtime, Stream, StreamHandler, Timer
from peerlab.storage.partial import (
    Bitfield,
    PartialFile,
    PartialState,
    SourceRecord,
    sanitize_name,
)
from peerlab.wire.chunks import (
    DIGEST_SIZE,
    WIRE_MAX_CHUNKS,
    WIRE_MIN_CHUNK_SIZE,
    ChunkList,
    chunk_count,
)
from peerlab.wire.urn import b32, parse_sha1_urn, sha1_urn

__all__ = [
    "Download",
    "DownloadConfig",
    "DownloadInfo",
    "DownloadManager",
    "PushRequest",
    "Source",
    "SourceInfo",
]

# ------------------------------------------------------------------ limits

#: Bytes of an error response body we read (and drop) before giving up on
#: keeping the connection: a 404 page is small, a peer streaming junk is not.
MAX_ERROR_BODY = 64 * 1024
#: Chunk list bytes we accept when the size is not yet known: the wire
#: format's own ceiling (header plus WIRE_MAX_CHUNKS digests).
MAX_LIST_BYTES = 24 + DIGEST_SIZE * WIRE_MAX_CHUNKS
#: Verified-but-not-yet-written bytes a download may hold in memory; past it
#: every source of the download pauses reading until the hashing catches up.
MAX_VERIFY_BACKLOG = 64 * 1024 * 1024
#: Chunks fed to the whole-file SHA-1 per offloaded job (bounds its latency).
SHA1_BATCH_BYTES = 64 * 1024 * 1024
#: Verified chunks kept in memory for the whole-file SHA-1 (which must take
#: them in file order); past it they are read back from the partial instead.
SHA1_MEMORY_BYTES = 64 * 1024 * 1024
#: Width of one rate-meter bucket, seconds.
RATE_BUCKET = 0.25
#: Least interval between two progress callbacks of one download (status
#: changes are reported at once).
PROGRESS_INTERVAL = 0.25
#: A Retry-After shorter than this is raised to it: a peer cannot make us spin.
MIN_RETRY_DELAY = 0.25
#: A rate-limit wait shorter than this is not worth pausing for (and floating
#: point rounding must never schedule a wait that does not advance the clock).
MIN_RATE_WAIT = 0.001
#: Longest name of a source key kept in error strings.
MAX_ERROR_CHARS = 200
#: HTTP statuses that mean "this source does not have the file at this path".
NOT_FOUND = frozenset({404, 410})
#: Pushes one manager waits on at once (one per firewalled source being
#: connected; ``max_connections_per_download`` times the active downloads in
#: practice): a bound on the GIV matching table.
MAX_GIV_WAITERS = 256
#: Incoming connections that said ``GIV`` and have not finished their line:
#: a remote peer opens these, so beyond this many they are refused at once.
MAX_PENDING_GIVS = 32
#: Entries read from one ``X-Push-Proxies`` header: a firewalled servent lists
#: at most 4 (gtk-gnutella and LimeWire, ``push_proxy`` section 4.1), and a
#: downloader keeps 8 per servent; more is a peer trying to aim us elsewhere.
MAX_PUSH_PROXIES_READ = 8

_CONTENT_RANGE_RE = re.compile(r"\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*", re.I)

# Download statuses (the transfers table).
QUEUED = "queued"
DOWNLOADING = "downloading"
VERIFYING = "verifying"
COMPLETE = "complete"
PAUSED = "paused"
FAILED = "failed"

# Source statuses.
S_IDLE = "idle"
S_CONNECTING = "connecting"
S_ACTIVE = "downloading"
S_QUEUED = "queued"
S_WAITING = "waiting"
S_BANNED = "banned"
S_DROPPED = "dropped"


@dataclass
class DownloadConfig:
    """Settings of the download side; the defaults suit a home connection.

    ``rate_limit`` is the global download limit in bytes/s (0: unlimited).
    A source is retried after ``retry_backoff`` seconds, doubling up to
    ``retry_backoff_max``, and dropped after ``max_source_failures``
    consecutive network failures.
    """

    max_connections_per_download: int = 8
    max_active_downloads: int = 8
    stall_timeout: float = 30.0
    connect_timeout: float = 15.0
    retry_backoff: float = 2.0
    retry_backoff_max: float = 120.0
    max_source_failures: int = 5
    rate_limit: float = 0.0
    #: A run asks for about this many seconds of data at the source's rate:
    #: long enough that the request round trip is noise, short enough that
    #: the plan adapts when rates change.
    request_seconds: float = 3.0
    #: Cap of one run, bytes (keeps a fast source from hoarding the tail).
    max_run_bytes: int = 64 * 1024 * 1024
    #: Seconds between batched state writes (what is not yet written is
    #: recovered by re-hashing on load).
    state_save_interval: float = 2.0
    #: Sliding window of the rate shown and used for planning, seconds.
    rate_window: float = 5.0
    #: At most this many sources fetch the same chunk in the endgame.
    endgame_duplicates: int = 2
    #: A longer Retry-After is cut to this, seconds.
    max_retry_after: float = 600.0
    #: Whole-file SHA-1 failures tolerated before the download fails.
    max_whole_file_attempts: int = 3
    user_agent: str = "peerlab/0.1"
    #: Seconds to wait for the GIV after asking for a Push (draft 2.2.8): the
    #: Push crosses the overlay and the firewalled servent connects back.
    push_timeout: float = 30.0
    #: Unanswered (or unroutable) pushes before a firewalled source is dropped.
    max_push_failures: int = 3
    #: Seconds an incoming connection may take to send its whole GIV line.
    giv_timeout: float = 20.0
    #: Sources one download may learn from ``X-Alt`` headers.
    max_alt_sources: int = 16
    #: Most good sources named in the ``X-Alt`` of one request.
    alt_per_request: int = 10


@dataclass(frozen=True)
class Source:
    """Where a file can be fetched.  With ``index`` and ``name`` the
    ``/get/<index>/<name>`` path is tried when N2R is refused.

    ``push=True`` marks a firewalled servent (its Query Hit's push flag):
    it is reached by a Push to ``servent_guid`` for file ``index``, never by
    connecting to ``address`` (kept for display).
    """

    address: Address
    index: int | None = None
    name: str | None = None
    servent_guid: bytes | None = None
    push: bool = False

    def __post_init__(self) -> None:
        if self.push and (
            self.servent_guid is None or len(self.servent_guid) != 16 or self.index is None
        ):
            raise ValueError("a push source needs a 16-byte servent GUID and a file index")

    @property
    def key(self) -> str:
        """``host:port``, or ``push:<GUID hex>/<index>`` for a firewalled source."""
        if self.push and self.servent_guid is not None:
            return f"push:{self.servent_guid.hex()}/{self.index}"
        return _key(self.address)


@dataclass(frozen=True)
class PushRequest:
    """What :attr:`DownloadManager.push_sender` is asked to send: a Push
    (draft 2.2.8) to ``servent_guid`` for file ``index``, which should make
    that servent connect to the node's listening port and send GIV."""

    servent_guid: bytes
    index: int
    name: str | None
    urn: str
    #: The address the Query Hit gave (often one nobody can reach).
    address: Address


@dataclass(frozen=True)
class SourceInfo:
    """One source's row in a download's detail view."""

    address: Address
    status: str
    bytes: int
    rate: float
    error: str | None = None
    queue_position: int | None = None
    #: A firewalled source, reached by Push/GIV.
    push: bool = False


@dataclass(frozen=True)
class DownloadInfo:
    """One download's row in the transfers table."""

    id: str
    urn: str
    name: str
    size: int | None
    done: int
    status: str
    rate: float
    eta: float | None
    error: str | None
    path: Path | None
    sources: list[SourceInfo]


def _key(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


class RateMeter:
    """Bytes per second over a sliding window of ``window`` seconds."""

    __slots__ = ("window", "_buckets", "_start", "_total")

    def __init__(self, window: float) -> None:
        self.window = window
        self._buckets: dict[int, int] = {}
        self._start: float | None = None
        self._total = 0

    def add(self, n: int, now: float) -> None:
        if self._start is None:
            self._start = now
        slot = int(now / RATE_BUCKET)
        self._buckets[slot] = self._buckets.get(slot, 0) + n
        self._total += n
        if len(self._buckets) > self.window / RATE_BUCKET + 4:
            self._trim(now)

    def _trim(self, now: float) -> None:
        oldest = int((now - self.window) / RATE_BUCKET)
        for slot in [s for s in self._buckets if s < oldest]:
            del self._buckets[slot]

    def rate(self, now: float) -> float:
        if self._start is None:
            return 0.0
        self._trim(now)
        span = min(self.window, now - self._start)
        if span <= RATE_BUCKET:
            span = max(now - self._start, 1e-3)
            return self._total / span if self._total and span > 0.05 else 0.0
        return sum(self._buckets.values()) / span

    @property
    def total(self) -> int:
        return self._total


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` (RFC 9110 section 14.4) -> ``(a, b, total or None)``."""
    m = _CONTENT_RANGE_RE.fullmatch(value)
    if m is None:
        raise RemoteProtocolError(f"bad Content-Range {value[:80]!r}")
    a, b = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if b < a or (total is not None and b >= total):
        raise RemoteProtocolError(f"impossible Content-Range {value[:80]!r}")
    return a, b, total


def parse_retry_after(value: str | None) -> float | None:
    """Delay-seconds form of Retry-After (RFC 9110 section 10.2.3); dates -> None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and len(text) <= 9:
        return float(text)
    return None


def parse_x_queue(value: str | None) -> dict[str, int]:
    """``X-Queue: position=P,length=L,limit=N,pollMin=A,pollMax=B`` (Gnutella queueing)."""
    out: dict[str, int] = {}
    if not value:
        return out
    for part in value.split(",")[:16]:
        name, eq, num = part.partition("=")
        name, num = name.strip().lower(), num.strip()
        if name and eq and num.isdigit() and len(num) <= 9:
            out[name] = int(num)
    return out


class _SourceBanned(Exception):
    """Raised inside a session to ban its source (bad data, lies, garbage)."""


@dataclass
class _Req:
    """The request in flight on one session."""

    kind: str  # "list", "head", "data"
    start: int = 0  # data: first chunk of the run
    stop: int = 0  # data: one past the last chunk
    first: int = 0  # data: first byte asked for
    length: int = 0  # data: bytes asked for
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    received: int = 0
    chunk: int = 0
    chunk_left: int = 0
    keep: bool = True
    pieces: list[Any] = field(default_factory=list)
    sent_at: float = 0.0
    retry_get: bool = False
    queue_delay: float | None = None


class _Link:
    """The :class:`~peerlab.runtime.base.StreamHandler` of one connection of a session.

    A session reconnects as needed; each connection gets its own link, and a
    link whose generation is no longer the session's is stale: its late
    callbacks (the ``connection_lost`` of a stream we aborted) are ignored.
    """

    __slots__ = ("sess", "gen")

    def __init__(self, sess: _Session, gen: int) -> None:
        self.sess = sess
        self.gen = gen

    def _live(self) -> bool:
        return self.sess.gen == self.gen

    def connection_made(self, stream: Stream) -> None:
        if not self._live() or self.sess.status != S_CONNECTING:
            stream.abort()
            return
        self.sess.made(stream)

    def connection_failed(self, exc: NetworkError) -> None:
        if self._live() and self.sess.status == S_CONNECTING:
            self.sess.failed(exc)

    def data_received(self, data: bytes) -> None:
        if self._live():
            self.sess.received(data)

    def eof_received(self) -> None:
        if self._live():
            self.sess.eof()

    def connection_lost(self, exc: NetworkError | None) -> None:
        if self._live() and self.sess.stream is not None:
            self.sess.lost(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class _Session:
    """One source of one download: its connections and its request cycle.

    The download decides what it asks for next; connections are reopened as
    needed, each with its own :class:`_Link`.
    """

    def __init__(self, download: Download, source: Source) -> None:
        self.download = download
        self.runtime = download.runtime
        self.source = source
        self.address = source.address
        self.key = source.key
        self.status = S_IDLE
        self.error: str | None = None
        self.bytes = 0
        self.meter = RateMeter(download.config.rate_window)
        self.failures = 0
        self.idle_version = -1
        self.request_rate = 0.0
        self.queue_position: int | None = None
        self.list_tried = False
        self.head_tried = False
        self.use_get = False
        self.conn: ClientConnection | None = None
        self.stream: Stream | None = None
        self.connecting: Any = None
        self.req: _Req | None = None
        self.last_rx = 0.0
        self.stall_timer: Timer | None = None
        self.wait_timer: Timer | None = None
        self.push_timer: Timer | None = None
        self.paused_for: set[str] = set()
        self.reading_paused = False
        self.gen = 0  # bumps on every new connection; stale callbacks compare it
        #: The proxies this source's last ``X-Push-Proxies`` named (``None``:
        #: none heard yet), so that only a change is passed on.
        self.push_proxies: list[Address] | None = None

    # --- state

    @property
    def holds_connection(self) -> bool:
        return self.status in (S_CONNECTING, S_ACTIVE) or (
            self.status == S_QUEUED and self.stream is not None
        )

    @property
    def usable(self) -> bool:
        return self.status == S_IDLE

    def rate(self) -> float:
        return self.meter.rate(self.runtime.now())

    def plan_rate(self, now: float) -> float:
        """The rate runs are sized by: the sliding window, or the last request's
        own rate while the window has too little history (a fast link would
        otherwise be fed one chunk at a time for its first fraction of a second)."""
        return max(self.meter.rate(now), self.request_rate)

    def info(self) -> SourceInfo:
        return SourceInfo(
            address=self.address,
            status=self.status,
            bytes=self.bytes,
            rate=self.rate(),
            error=self.error,
            queue_position=self.queue_position if self.status == S_QUEUED else None,
            push=self.source.push,
        )

    # --- connection life cycle

    def connect(self) -> None:
        self.gen += 1
        self.status = S_CONNECTING
        self.conn = ClientConnection()
        if self.source.push:
            # Asked from the next loop turn: the servent's callback must not
            # run inside the planning loop that chose this source.
            gen = self.gen
            self.push_timer = self.runtime.call_soon(lambda: self._send_push(gen))
            return
        self.connecting = self.runtime.connect(
            self.address, _Link(self, self.gen), timeout=self.download.config.connect_timeout
        )

    # --- firewalled sources: Push out, GIV in (draft 2.2.8)

    def _send_push(self, gen: int) -> None:
        self.push_timer = None
        if gen != self.gen or self.status != S_CONNECTING:
            return
        d = self.download
        manager = d.manager
        obs = self.runtime.observer
        sender = manager.push_sender
        if sender is None:
            d._drop(self, "firewalled, and this node cannot send a Push")
            return
        if not manager._await_giv(self):
            self._network_failure("too many pushes waiting for a GIV")
            return
        source = self.source
        assert source.servent_guid is not None and source.index is not None
        request = PushRequest(source.servent_guid, source.index, source.name, d.urn, self.address)
        try:
            routed = bool(sender(request))
        except Exception as exc:  # the owner's callback: its failure costs this attempt
            obs.event("transfer.push_error", urn=d.urn, source=self.key, error=repr(exc))
            routed = False
        if gen != self.gen or self.status != S_CONNECTING:
            return
        if not routed:
            obs.count("transfer.push_unroutable")
            self._network_failure("no route for the Push")
            return
        obs.count("transfer.pushes_sent")
        obs.event("transfer.push_sent", urn=d.urn, source=self.key)
        timeout = d.config.push_timeout
        self.push_timer = self.runtime.call_later(timeout, lambda: self._push_timed_out(gen))

    def _push_timed_out(self, gen: int) -> None:
        self.push_timer = None
        if gen != self.gen or self.status != S_CONNECTING:
            return
        d = self.download
        timeout = d.config.push_timeout
        d.runtime.observer.event("transfer.push_timeout", urn=d.urn, source=self.key)
        d.runtime.observer.count("transfer.push_timeouts")
        self._network_failure(f"push unanswered: no GIV within {timeout:g} s")

    def pushed(self, stream: Stream) -> None:
        """The firewalled servent connected and sent its GIV: use the stream."""
        if self.push_timer is not None:
            self.push_timer.cancel()
            self.push_timer = None
        self.runtime.observer.count("transfer.push_connected")
        self.made(stream)

    def made(self, stream: Stream) -> None:
        self.connecting = None
        self.stream = stream
        self.status = S_ACTIVE
        self.last_rx = self.runtime.now()
        if self.paused_for:
            self.reading_paused = True
            stream.pause_reading()
        self.download._next_request(self)

    def failed(self, exc: NetworkError) -> None:
        self.connecting = None
        self._network_failure(f"connect failed: {exc}")

    def received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        now = self.runtime.now()
        self.last_rx = now
        self.download.manager._got_bytes(self, len(data), now)
        try:
            self._handle(conn.receive_data(data))
        except _SourceBanned as exc:
            self.download._ban(self, str(exc))
        except RemoteProtocolError as exc:
            self.download._ban(self, f"garbage: {exc}")

    def eof(self) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            self._handle(conn.receive_eof())
        except _SourceBanned as exc:
            self.download._ban(self, str(exc))
        except RemoteProtocolError as exc:
            self._lost(f"closed early: {exc}")

    def lost(self, exc: NetworkError | None) -> None:
        self.stream = None
        if self.req is not None:
            self._lost(f"connection lost: {exc}" if exc else "connection closed mid-request")
        else:
            self._closed_between()

    # --- reading flow control (rate limit, verify backlog)

    def hold(self, reason: str) -> None:
        self.paused_for.add(reason)
        if self.stream is not None and not self.reading_paused:
            self.reading_paused = True
            self.stream.pause_reading()

    def release(self, reason: str) -> None:
        self.paused_for.discard(reason)
        if not self.paused_for and self.reading_paused:
            self.reading_paused = False
            self.last_rx = self.runtime.now()
            if self.stream is not None:
                self.stream.resume_reading()

    # --- requests

    def send(self, req: _Req, method: str, target: str, extra: list[tuple[str, str]]) -> None:
        assert self.conn is not None and self.stream is not None
        host, port = self.address
        pairs = [
            ("Host", f"{host}:{port}"),
            ("User-Agent", self.download.config.user_agent),
            ("X-Gnutella-Content-URN", self.download.urn),
            *extra,
        ]
        if self.source.push:
            rhost, rport = self.stream.remote_address
            pairs[0] = ("Host", f"{rhost}:{rport}")
        alts = self.download._alts_for(self)
        if alts:
            pairs.append(("X-Alt", format_x_alt(alts)))
        self.req = req
        req.sent_at = self.runtime.now()
        self.conn.send_request(Request(method, target, Headers(pairs)))
        self.stream.write(self.conn.data_to_send())
        self.last_rx = req.sent_at
        self._arm_stall()

    def _arm_stall(self) -> None:
        if self.stall_timer is None or self.stall_timer.cancelled:
            gen = self.gen
            # Never at or before now: rounding must not make the check spin.
            when = max(
                self.last_rx + self.download.config.stall_timeout,
                self.runtime.now() + MIN_RATE_WAIT,
            )
            self.stall_timer = self.runtime.call_at(when, lambda: self._stall_check(gen))

    def _stall_check(self, gen: int) -> None:
        self.stall_timer = None
        if gen != self.gen or self.req is None or self.stream is None:
            return
        now = self.runtime.now()
        if self.reading_paused:
            self.last_rx = now
        timeout = self.download.config.stall_timeout
        if now - self.last_rx >= timeout:
            # The connection is dropped; the source is tried again after the
            # backoff and dropped for good after max_source_failures.
            d = self.download
            d.runtime.observer.event("transfer.source_stalled", urn=d.urn, source=self.key)
            d.runtime.observer.count("transfer.stalls")
            self._lost(f"stalled: no data for {timeout:g} s")
            return
        self._arm_stall()

    def data_target(self) -> str:
        if self.use_get and self.source.index is not None and self.source.name is not None:
            return f"/get/{self.source.index}/{quote(self.source.name)}"
        return f"/uri-res/N2R?{self.download.urn}"

    # --- response handling

    def _handle(self, events: list[Any]) -> None:
        gen = self.gen
        for ev in events:
            if self.gen != gen:
                return
            req = self.req
            if type(ev) is Data:
                if req is None:
                    raise RemoteProtocolError("data outside a response")
                self._on_data(req, ev.data)
            elif type(ev) is Response:
                if req is None:
                    raise RemoteProtocolError("response without a request")
                self._on_response(req, ev)
            elif type(ev) is EndOfMessage:
                if req is None:
                    raise RemoteProtocolError("end of a message never started")
                self._on_end(req)
            elif type(ev) is ConnectionClosed:
                self._closed_between()
                return

    def _on_response(self, req: _Req, resp: Response) -> None:
        d = self.download
        req.status = resp.status
        h = resp.headers
        urn = h.get("X-Gnutella-Content-URN")
        ours = True
        if urn is not None:
            try:
                ours = parse_sha1_urn(urn.split(",")[0]) == d.digest
            except RemoteProtocolError:
                if 200 <= resp.status < 300:
                    raise _SourceBanned(f"bad content URN {urn[:80]!r}") from None
                ours = False
            if not ours and 200 <= resp.status < 300:
                raise _SourceBanned(f"serves another file ({urn[:60]})")
        if ours and ("X-Alt" in h or "X-Gnutella-Alternate-Location" in h):
            d._learn_alts(h)
        if "X-Push-Proxies" in h and self.source.servent_guid is not None:
            self._heard_push_proxies(self.source.servent_guid, h)
        if resp.status == 503:
            retry = parse_retry_after(h.get("Retry-After"))
            queue = parse_x_queue(h.get("X-Queue"))
            delay = retry if retry is not None else queue.get("pollmin")
            if delay is None:
                delay = d.config.retry_backoff
            if "pollmax" in queue and queue["pollmax"] > 0:
                delay = min(delay, queue["pollmax"] * 0.8)
            req.queue_delay = min(max(delay, MIN_RETRY_DELAY), d.config.max_retry_after)
            self.queue_position = queue.get("position")
            return
        if req.kind == "list":
            return
        if req.kind == "head":
            if resp.status in (200, 206):
                size = self._announced_size(resp)
                if size is None:
                    raise _SourceBanned("no size in the response to HEAD")
                d._learn_size(size, self)
            return
        # data
        if resp.status == 206:
            cr = h.get("Content-Range")
            if cr is None:
                raise _SourceBanned("206 without Content-Range")
            try:
                a, b, total = parse_content_range(cr)
            except RemoteProtocolError as exc:
                raise _SourceBanned(str(exc)) from None
            if a != req.first or b != req.first + req.length - 1:
                raise _SourceBanned(
                    f"lied about the range: asked {req.first}-{req.first + req.length - 1}, "
                    f"got {a}-{b}"
                )
            if total is not None and total != d.state.size:
                raise _SourceBanned(f"lied about the size: {total}, expected {d.state.size}")
            self._check_length(resp, req.length)
        elif resp.status == 200:
            if req.first != 0 or req.length != d.state.size:
                raise _SourceBanned("ignored the Range header (200 for a partial request)")
            self._check_length(resp, req.length)
        elif 200 <= resp.status < 300:
            raise _SourceBanned(f"unexpected status {resp.status} for a range request")

    def _heard_push_proxies(self, servent_guid: bytes, headers: Headers) -> None:
        """``X-Push-Proxies`` (``push_proxy`` section 4.2): the servent's
        current proxies replace what we knew; passed on when they changed."""
        value = ",".join(headers.get_all("X-Push-Proxies"))
        proxies = parse_x_alt(value, limit=MAX_PUSH_PROXIES_READ)
        if proxies == self.push_proxies:
            return  # every response repeats the header: only a change is news
        self.push_proxies = proxies
        d = self.download
        obs = self.runtime.observer
        obs.count("transfer.push_proxies_heard")
        obs.event(
            "transfer.push_proxies", urn=d.urn, source=self.key, proxies=[_key(p) for p in proxies]
        )
        hook = d.manager.push_proxies_heard
        if hook is None:
            return
        try:
            hook(servent_guid, list(proxies))
        except Exception as exc:  # the owner's callback: its failure costs only the news
            obs.event("transfer.push_proxies_error", urn=d.urn, source=self.key, error=repr(exc))

    def _announced_size(self, resp: Response) -> int | None:
        cr = resp.headers.get("Content-Range")
        if cr is not None:
            try:
                total = parse_content_range(cr)[2]
            except RemoteProtocolError:
                return None
            return total
        cl = resp.headers.get("Content-Length")
        if cl is not None and cl.strip().isdigit() and resp.status == 200:
            return int(cl)
        return None

    def _check_length(self, resp: Response, expect: int) -> None:
        cl = resp.headers.get("Content-Length")
        if cl is not None and cl.strip() != str(expect):
            raise _SourceBanned(f"lied about the length: {cl.strip()[:20]}, asked {expect}")

    def _on_data(self, req: _Req, data: bytes) -> None:
        if req.kind == "data" and 200 <= req.status < 300:
            n = len(data)
            req.received += n
            if req.received > req.length:
                raise _SourceBanned("sent more bytes than asked for")
            self.bytes += n
            self.meter.add(n, self.last_rx)
            self.download._fetched(n)
            self._feed_chunks(req, data)
            return
        if req.kind == "list" and req.status == 200:
            if len(req.body) + len(data) > self.download._list_limit():
                raise _SourceBanned("chunk list larger than the file can have")
            req.body += data
            return
        if len(req.body) + len(data) > MAX_ERROR_BODY:
            self.download._drop(self, f"HTTP {req.status} with an endless body")
            return
        req.body += data

    def _feed_chunks(self, req: _Req, data: bytes) -> None:
        d = self.download
        n = len(data)
        pos = 0
        view: memoryview | None = None
        while pos < n:
            take = min(req.chunk_left, n - pos)
            if req.keep:
                if pos == 0 and take == n:
                    req.pieces.append(data)
                else:
                    if view is None:
                        view = memoryview(data)
                    req.pieces.append(view[pos : pos + take])
            pos += take
            req.chunk_left -= take
            if req.chunk_left == 0:
                index, pieces, keep = req.chunk, req.pieces, req.keep
                req.pieces = []
                d._unassign(self, index)
                if keep:
                    d._chunk_received(self, index, pieces)
                req.chunk += 1
                if req.chunk < req.stop:
                    req.chunk_left = d.state.span(req.chunk)[1]
                    req.keep = d._wanted(req.chunk)
                if self.req is not req:
                    return

    def _on_end(self, req: _Req) -> None:
        d = self.download
        conn = self.conn
        assert conn is not None
        status = req.status
        self.req = None
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        keep_alive = conn.keep_alive
        if keep_alive:
            conn.start_next_cycle()
        if status == 503:
            if req.kind == "data":
                d._release_run(self, req)
            self._queued(req.queue_delay or d.config.retry_backoff, keep_alive)
            return
        self.queue_position = None
        if req.kind == "data" and 200 <= status < 300:
            if req.received != req.length:
                d._release_run(self, req)
                d._ban(self, f"short body: {req.received} of {req.length} bytes")
                return
            self.failures = 0
            elapsed = self.runtime.now() - req.sent_at
            if elapsed > 0:
                self.request_rate = req.length / elapsed
        elif req.kind == "data" and status in NOT_FOUND and self._can_fall_back():
            d._release_run(self, req)
            self.use_get = True
        elif req.kind == "data":
            d._release_run(self, req)
            d._drop(self, f"HTTP {status}" + (" (not found)" if status in NOT_FOUND else ""))
            return
        elif req.kind == "list":
            if status == 200:
                d._got_list(self, bytes(req.body))
                if self.status in (S_BANNED, S_DROPPED):
                    return
            elif status in NOT_FOUND or status in (400, 501):
                pass
            else:
                d._drop(self, f"HTTP {status} for the chunk list")
                return
        elif req.kind == "head" and status in NOT_FOUND and self._can_fall_back():
            self.use_get = True
            self.head_tried = False
        elif req.kind == "head" and status not in (200, 206):
            d._drop(self, f"HTTP {status} for HEAD")
            return
        if keep_alive:
            d._next_request(self)
        else:
            self._close_quietly()
            d._pump()

    def _can_fall_back(self) -> bool:
        """N2R refused: may we try ``/get/<index>/<name>`` instead?"""
        return not self.use_get and self.source.index is not None and self.source.name is not None

    def _queued(self, delay: float, keep_alive: bool) -> None:
        d = self.download
        self.status = S_QUEUED
        d.manager.runtime.observer.event(
            "transfer.source_queued",
            urn=d.urn,
            source=self.key,
            position=self.queue_position,
            retry_after=delay,
        )
        d.manager.runtime.observer.count("transfer.source_queued")
        if not keep_alive:
            self._close_quietly(S_QUEUED)
        gen = self.gen
        self.wait_timer = self.runtime.call_later(delay, lambda: self._requeue(gen))
        d._changed(force=True)

    def _requeue(self, gen: int) -> None:
        self.wait_timer = None
        if self.status != S_QUEUED or gen != self.gen:
            return
        if self.stream is not None and self.conn is not None:
            self.status = S_ACTIVE
            self.download._next_request(self)
        else:
            self.status = S_IDLE
            self.download._pump()

    def _closed_between(self) -> None:
        """The server closed a kept-alive connection between requests."""
        if self.req is not None:
            self._lost("connection closed mid-request")
            return
        if self.status == S_QUEUED:
            # Stay queued: the wait timer reconnects when the delay is over.
            stream, self.stream, self.conn = self.stream, None, None
            if stream is not None:
                stream.close()
            return
        self._close_quietly()
        self.download._pump()

    def _lost(self, reason: str) -> None:
        req = self.req
        if req is not None and req.kind == "data":
            self.download._release_run(self, req)
        self._network_failure(reason)

    def _network_failure(self, reason: str) -> None:
        d = self.download
        self.failures += 1
        self._teardown()
        limit = d.config.max_push_failures if self.source.push else d.config.max_source_failures
        if self.failures >= limit:
            d._drop(self, f"{reason} ({self.failures} failures)")
            return
        self.status = S_WAITING
        self.error = reason[:MAX_ERROR_CHARS]
        backoff = min(
            d.config.retry_backoff * 2 ** (self.failures - 1), d.config.retry_backoff_max
        )
        gen = self.gen
        self.wait_timer = self.runtime.call_later(backoff, lambda: self._wake(gen))
        d._pump()

    def _wake(self, gen: int) -> None:
        self.wait_timer = None
        if self.status == S_WAITING and gen == self.gen:
            self.status = S_IDLE
            self.download._pump()

    def _close_quietly(self, status: str = S_IDLE) -> None:
        """Close the connection without blame; the session may reconnect."""
        self._teardown(graceful=True)
        self.status = status

    def _teardown(self, graceful: bool = False) -> None:
        self.gen += 1
        if self.connecting is not None:
            connecting, self.connecting = self.connecting, None
            connecting.cancel()
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        if self.wait_timer is not None:
            self.wait_timer.cancel()
            self.wait_timer = None
        if self.push_timer is not None:
            self.push_timer.cancel()
            self.push_timer = None
        if self.source.push:
            self.download.manager._forget_waiter(self)
        self.req = None
        self.conn = None
        self.reading_paused = False
        stream, self.stream = self.stream, None
        if stream is not None:
            if graceful:
                stream.close()
            else:
                stream.abort()

    def stop(self, status: str, error: str | None = None) -> None:
        """End this session for good (banned, dropped, download over)."""
        req = self.req
        if req is not None and req.kind == "data":
            self.download._release_run(self, req)
        self._teardown()
        self.status = status
        if error is not None:
            self.error = error[:MAX_ERROR_CHARS]

    def cancel_request(self) -> None:
        """The endgame loser: abort what is in flight, stay available."""
        req = self.req
        if req is not None and req.kind == "data":
            self.download._release_run(self, req)
        self._teardown()
        self.status = S_IDLE


class Download:
    """One file being fetched: its partial, its sources and its plan."""

    def __init__(self, manager: DownloadManager, partial: PartialFile) -> None:
        self.manager = manager
        self.runtime = manager.runtime
        self.config = manager.config
        self.partial = partial
        self.state = partial.state
        self.urn = self.state.urn
        self.digest = self.state.digest
        self.id = self.state.id
        self.status = PAUSED if self.state.paused else QUEUED
        self.error: str | None = None
        self.path: Path | None = None
        self.sessions: dict[str, _Session] = {}
        self.meter = RateMeter(self.config.rate_window)
        self.assigned: dict[int, list[_Session]] = {}
        self.verifying: set[int] = set()
        #: Bumped whenever the plan changes (chunks freed, done or re-laid):
        #: a source that found nothing to do is reconnected only after that.
        self.work_version = 0
        self.backlog = 0
        self.held = False
        self.dirty = False
        self.saving = False
        self.save_again = False
        #: Loaded from disk before its chunk list was saved (a kill in the
        #: first seconds): once a list arrives, what the partial already
        #: holds is re-hashed and taken back rather than fetched again.
        self.recover_when_listed = False
        self.sha1: Any = hashlib.sha1()
        self.sha1_at = 0
        self.sha1_busy = False
        self.sha1_gen = 0
        self.sha1_mem: dict[int, list[Any]] = {}
        self.sha1_mem_bytes = 0
        self.recovering = False
        # Without a known chunk root, a chunk list is only as good as its
        # provider: sources whose chunks disagree with it are set aside
        # (doubters) until another source confirms the list (then they are
        # banned) or the whole-file SHA-1 refutes it (then they come back).
        self.list_confirmed: set[str] = set()
        self.doubters: set[str] = set()
        self.finish_after_save = False
        self.whole_failures = 0
        self.started_at: float | None = None
        self.last_change = -1.0
        #: Sources learned from X-Alt headers (bounded by max_alt_sources).
        self.alt_keys: set[str] = set()
        for record in self.state.sources:
            if _key(record.address) not in self.state.banned:
                self._session_for(Source(record.address, record.index, record.name))

    @property
    def name(self) -> str:
        return self.state.name

    # --- public view

    def info(self) -> DownloadInfo:
        now = self.runtime.now()
        rate = self.meter.rate(now) if self.status == DOWNLOADING else 0.0
        done = self.state.done_bytes()
        size = self.state.size
        eta = None
        if self.status == DOWNLOADING and size is not None and rate > 0:
            eta = max(size - done, 0) / rate
        sources = [s.info() for s in self.sessions.values()]
        for key, reason in self.state.banned.items():
            if key not in self.sessions:
                if key.startswith("push:"):
                    sources.append(SourceInfo((key, 0), S_BANNED, 0, 0.0, reason, push=True))
                    continue
                host, _, port = key.rpartition(":")
                sources.append(
                    SourceInfo((host, int(port) if port.isdigit() else 0), S_BANNED, 0, 0.0, reason)
                )
        return DownloadInfo(
            id=self.id,
            urn=self.urn,
            name=self.name,
            size=size,
            done=size if self.status == COMPLETE and size is not None else done,
            status=self.status,
            rate=rate,
            eta=eta,
            error=self.error,
            path=self.path,
            sources=sources,
        )

    @property
    def active(self) -> bool:
        return self.status in (DOWNLOADING, VERIFYING)

    # --- sources

    def _session_for(self, source: Source) -> _Session | None:
        key = source.key
        if key in self.state.banned:
            return None
        sess = self.sessions.get(key)
        if sess is None:
            sess = _Session(self, source)
            self.sessions[key] = sess
        elif source.index is not None and sess.source.index is None:
            sess.source = source
        if not source.push:
            # A push source is not remembered: its reverse path dies with the session.
            self.state.add_source(
                SourceRecord(source.address[0], source.address[1], source.index, source.name)
            )
        return sess

    def _alts_for(self, sess: _Session) -> list[Address]:
        """The ``X-Alt`` of a request to ``sess``: other sources that sent good data."""
        limit = self.config.alt_per_request
        if limit <= 0:
            return []
        out: list[Address] = []
        for other in self.sessions.values():
            if len(out) >= limit:
                break
            if (
                other is not sess
                and not other.source.push
                and other.bytes > 0
                and other.status not in (S_BANNED, S_DROPPED)
                and other.address != sess.address
                and usable_address(*other.address)
            ):
                out.append(other.address)
        return out

    def _learn_alts(self, headers: Headers) -> None:
        """Add the sources a response's mesh headers name (bounded, deduplicated)."""
        cfg = self.config
        if len(self.alt_keys) >= cfg.max_alt_sources:
            return
        found = parse_x_alt(",".join(headers.get_all("X-Alt")))
        legacy = headers.get_all("X-Gnutella-Alternate-Location")
        if legacy:
            found += parse_alternate_location(",".join(legacy), self.digest)
        mine = self.manager.self_addresses
        new: list[Source] = []
        for addr in found:
            if len(self.alt_keys) >= cfg.max_alt_sources:
                break
            key = _key(addr)
            if key in self.sessions or key in self.state.banned or key in self.alt_keys:
                continue
            if addr in mine:
                continue
            self.alt_keys.add(key)
            new.append(Source(addr))
        if not new:
            return
        obs = self.runtime.observer
        obs.count("transfer.alt_sources_learned", len(new))
        obs.event("transfer.alt_sources", urn=self.urn, sources=[_key(s.address) for s in new])
        # Added from the next loop turn: planning must not run inside the
        # response handler of the session that brought the news.
        self.runtime.call_soon(lambda: self.add_sources(new))

    def add_sources(self, sources: Iterable[Source]) -> None:
        added = False
        for source in sources:
            key = source.key
            if key in self.state.banned:
                continue
            sess = self.sessions.get(key)
            if sess is None:
                added = True
            elif sess.status == S_DROPPED:
                sess.status = S_IDLE
                sess.failures = 0
                sess.error = None
                added = True
            self._session_for(source)
        if added:
            self.dirty = True
            if self.status == FAILED and self.error and "no sources" in self.error:
                self.error = None
                self.status = QUEUED
                self.manager._schedule()
            self._pump()

    def _ban(self, sess: _Session, reason: str) -> None:
        if sess.status == S_BANNED:
            return
        obs = self.runtime.observer
        obs.event("transfer.source_banned", urn=self.urn, source=sess.key, reason=reason)
        obs.count("transfer.sources_banned")
        self.state.ban(sess.key, reason)
        self.dirty = True
        sess.stop(S_BANNED, reason)
        self._pump()
        self._changed(force=True)

    def _drop(self, sess: _Session, reason: str) -> None:
        if sess.status in (S_BANNED, S_DROPPED):
            return
        self.runtime.observer.event(
            "transfer.source_dropped", urn=self.urn, source=sess.key, reason=reason
        )
        self.runtime.observer.count("transfer.sources_dropped")
        sess.stop(S_DROPPED, reason)
        self._pump()
        self._changed(force=True)

    # --- life cycle

    def start(self) -> None:
        if self.status not in (QUEUED,):
            return
        self.status = DOWNLOADING
        self.error = None
        self.work_version += 1
        self.started_at = self.runtime.now()
        try:
            self.partial.open()
        except StorageError as exc:
            self._fail(str(exc))
            return
        self._changed(force=True)
        if self.state.have is not None and self.state.have.complete:
            self._advance_sha1()
        else:
            self._pump()

    def stop_sessions(self) -> None:
        for sess in self.sessions.values():
            if sess.status not in (S_BANNED, S_DROPPED):
                sess.stop(S_IDLE)
            else:
                sess._teardown()
        self.assigned.clear()
        self.work_version += 1

    def _fail(self, error: str) -> None:
        self.stop_sessions()
        self.sha1_mem.clear()  # the cursor's chunks are read back from disk later
        self.sha1_mem_bytes = 0
        self.status = FAILED
        self.error = error
        self.runtime.observer.event("transfer.failed", urn=self.urn, name=self.name, error=error)
        self.runtime.observer.count("transfer.downloads_failed")
        self.manager._save(self)
        self._changed(force=True)
        self.manager._schedule()

    def _changed(self, force: bool = False) -> None:
        cb = self.manager.on_change
        if cb is None:
            return
        now = self.runtime.now()
        if not force and now - self.last_change < PROGRESS_INTERVAL:
            return
        self.last_change = now
        cb(self.info())

    def _fetched(self, n: int) -> None:
        self.meter.add(n, self.runtime.now())
        self.runtime.observer.count("transfer.bytes_fetched", n)

    # --- planning

    def _pump(self) -> None:
        """Open connections for sources that could be given work."""
        if self.status != DOWNLOADING or self.recovering or self.manager._closed:
            return
        if not self._work_left():
            self._check_complete()
            return
        limit = self.config.max_connections_per_download
        holding = sum(1 for s in self.sessions.values() if s.holds_connection)
        if holding < limit and self._work_for_newcomer():
            for sess in list(self.sessions.values()):
                if holding >= limit:
                    break
                if sess.usable and sess.idle_version != self.work_version:
                    sess.connect()
                    holding += 1
        alive = any(s.status not in (S_BANNED, S_DROPPED) for s in self.sessions.values())
        if not alive and not self.verifying:
            reasons = sorted({s.error for s in self.sessions.values() if s.error})
            detail = "; ".join(r for r in reasons[:3] if r)
            self._fail("no sources left" + (f" ({detail})" if detail else ""))

    def _work_for_newcomer(self) -> bool:
        """Could a newly connected source be given anything to do?"""
        st = self.state
        have = st.have
        if have is None or (st.chunks is None and st.size is None):
            return True
        dup = self.config.endgame_duplicates
        for i in range(have.count):
            if have[i] or i in self.verifying:
                continue
            if len(self.assigned.get(i, ())) < dup:
                return True
        return False

    def _work_left(self) -> bool:
        have = self.state.have
        if have is None:
            return True
        return not have.complete

    def _wanted(self, index: int) -> bool:
        have = self.state.have
        return have is not None and not have[index] and index not in self.verifying

    def _list_limit(self) -> int:
        size = self.state.size
        if size is None:
            return MAX_LIST_BYTES
        return 24 + DIGEST_SIZE * min(chunk_count(size, WIRE_MIN_CHUNK_SIZE), WIRE_MAX_CHUNKS)

    def _next_request(self, sess: _Session) -> None:
        """Give a connected, idle session its next request (or let it go)."""
        if self.status != DOWNLOADING or self.recovering:
            sess._close_quietly()
            return
        st = self.state
        if st.chunks is None and not sess.list_tried:
            sess.list_tried = True
            sess.send(_Req("list"), "GET", f"/uri-res/N2CH?{self.urn}", [])
            return
        if st.size is None:
            if sess.head_tried:
                self._drop(sess, "cannot learn the file's size")
                return
            sess.head_tried = True
            sess.send(_Req("head"), "HEAD", sess.data_target(), [])
            return
        if st.have is None:
            st.set_layout(st.size, st.chunks)
            try:
                self.partial.resize()
            except StorageError as exc:
                self._fail(str(exc))
                return
        run = self._plan(sess)
        if run is None:
            # Not reconnected until the plan changes (chunks freed or done).
            sess.idle_version = self.work_version
            sess._close_quietly()
            self._check_complete()
            return
        start, stop = run
        first = start * (st.chunk_size or 0)
        end = min(stop * (st.chunk_size or 0), st.size)
        req = _Req("data", start=start, stop=stop, first=first, length=end - first)
        req.chunk = start
        req.chunk_left = st.span(start)[1]
        req.keep = True
        for i in range(start, stop):
            self.assigned.setdefault(i, []).append(sess)
        self.runtime.observer.count("transfer.requests")
        sess.send(req, "GET", sess.data_target(), [("Range", f"bytes={first}-{end - 1}")])

    def _plan(self, sess: _Session) -> tuple[int, int] | None:
        """A run of chunks for ``sess``: free ones sized to its rate, else an endgame duplicate."""
        st = self.state
        have = st.have
        assert have is not None and st.chunk_size is not None
        count = have.count
        free = [
            i for i in range(count)
            if not have[i] and i not in self.verifying and i not in self.assigned
        ]
        if free:
            now = self.runtime.now()
            rate = sess.plan_rate(now)
            cap = max(1, self.config.max_run_bytes // st.chunk_size)
            n = 1 if rate <= 0 else int(rate * self.config.request_seconds / st.chunk_size)
            n = max(1, min(n, cap))
            # No source takes more than its share of what is left: a source
            # not yet measured counts as an average one.
            rates = [s.plan_rate(now) for s in self.sessions.values() if s.status == S_ACTIVE]
            known = [r for r in rates if r > 0]
            if rate > 0 and len(rates) > 1 and known:
                average = sum(known) / len(known)
                total = sum(known) + average * (len(rates) - len(known))
                n = max(1, min(n, -(-int(len(free) * rate) // int(total or 1))))
            start = free[0]
            stop = start + 1
            k = 1
            while k < len(free) and free[k] == stop and stop - start < n:
                stop += 1
                k += 1
            return start, stop
        return self._endgame(sess)

    def _endgame(self, sess: _Session) -> tuple[int, int] | None:
        """Duplicate the in-flight chunk expected last (issue 2: no slow last hole)."""
        st = self.state
        now = self.runtime.now()
        best: tuple[float, int] | None = None
        for owner in self.sessions.values():
            req = owner.req
            if owner is sess or req is None or req.kind != "data" or not (200 <= req.status < 300
                                                                        or req.status == 0):
                continue
            rate = max(owner.plan_rate(now), 1.0)
            ahead = req.chunk_left if req.keep else 0
            for i in range(req.chunk, req.stop):
                if i != req.chunk:
                    ahead += st.span(i)[1]
                if not self._wanted(i):
                    continue
                holders = self.assigned.get(i, [])
                if sess in holders or len(holders) >= self.config.endgame_duplicates:
                    continue
                eta = ahead / rate
                if best is None or eta > best[0]:
                    best = (eta, i)
        if best is None:
            return None
        mine = sess.plan_rate(now)
        if mine > 0 and st.span(best[1])[1] / mine >= best[0]:
            return None
        self.runtime.observer.count("transfer.endgame_requests")
        return best[1], best[1] + 1

    def _unassign(self, sess: _Session, index: int) -> None:
        holders = self.assigned.get(index)
        if holders is not None:
            if sess in holders:
                holders.remove(sess)
            if not holders:
                del self.assigned[index]

    def _release_run(self, sess: _Session, req: _Req) -> None:
        if req.chunk < req.stop:
            self.work_version += 1
        for i in range(req.chunk, req.stop):
            self._unassign(sess, i)
        req.chunk = req.stop

    # --- chunks

    def _chunk_received(self, sess: _Session, index: int, pieces: list[Any]) -> None:
        if not self._wanted(index):
            return
        self.verifying.add(index)
        length = self.state.span(index)[1]
        self.backlog += length
        if self.backlog > MAX_VERIFY_BACKLOG and not self.held:
            self.held = True
            for s in self.sessions.values():
                s.hold("backlog")
        partial = self.partial
        key = sess.key

        def work() -> bool:
            return partial.verify_and_write(index, pieces)

        def done(ok: bool | None, exc: BaseException | None) -> None:
            self._verified(index, key, length, ok, exc, pieces)

        self.runtime.offload(work, done)

    def _verified(
        self,
        index: int,
        key: str,
        length: int,
        ok: bool | None,
        exc: BaseException | None,
        pieces: list[Any],
    ) -> None:
        self.verifying.discard(index)
        self.backlog -= length
        if self.manager._closed:
            return
        if self.held and self.backlog <= MAX_VERIFY_BACKLOG // 2:
            self.held = False
            for s in self.sessions.values():
                s.release("backlog")
        if self.status not in (DOWNLOADING, VERIFYING) or self.state.have is None:
            return
        obs = self.runtime.observer
        if exc is not None:
            error = str(exc) if isinstance(exc, PeerlabError) else f"disk error: {exc}"
            self._fail(error)
            return
        sess = self.sessions.get(key)
        provider = self.state.list_from
        unrooted = self.state.chunk_root is None and provider is not None
        self.work_version += 1
        if not ok:
            obs.count("transfer.chunks_failed")
            obs.event("transfer.chunk_failed", urn=self.urn, index=index, source=key)
            if sess is not None:
                if unrooted and key != provider and not (self.list_confirmed - {key}):
                    self.doubters.add(key)
                    self._drop(
                        sess, f"chunk {index} disagrees with the unconfirmed list of {provider}"
                    )
                else:
                    self._ban(sess, f"sent a bad chunk ({index})")
            self._pump()
            return
        if unrooted and key != provider and key not in self.list_confirmed:
            self.list_confirmed.add(key)
            for doubter in sorted(self.doubters - {key}):
                other = self.sessions.get(doubter)
                if other is not None:
                    self._ban(other, "its chunks disagree with a confirmed chunk list")
            self.doubters.clear()
        if self.state.have.set(index):
            self.dirty = True
            if index >= self.sha1_at and self.sha1_mem_bytes + length <= SHA1_MEMORY_BYTES:
                self.sha1_mem[index] = pieces
                self.sha1_mem_bytes += length
            obs.count("transfer.chunks_verified" if self.state.verified
                      else "transfer.chunks_received")
        # Endgame losers: whoever still fetches this chunk stops doing so.
        for other in list(self.assigned.get(index, [])):
            req = other.req
            if req is None or req.kind != "data":
                self._unassign(other, index)
                continue
            if req.chunk == index:
                req.keep = False
                req.pieces = []
            self._unassign(other, index)
            if not any(self._wanted(i) for i in range(req.chunk, req.stop)):
                other.cancel_request()
                self._pump()
        self._advance_sha1()
        self._changed()

    def _check_complete(self) -> None:
        have = self.state.have
        if have is not None and have.complete and self.status == DOWNLOADING:
            self._advance_sha1()

    # --- whole-file SHA-1, fed in order as chunks land

    def _advance_sha1(self) -> None:
        have = self.state.have
        if self.sha1_busy or have is None or self.status not in (DOWNLOADING, VERIFYING):
            return
        if self.manager._closed:
            return
        if have.complete and self.status == DOWNLOADING:
            self.status = VERIFYING
            self.stop_sessions()
            self._changed(force=True)
        start = self.sha1_at
        stop = start
        per_job = max(1, SHA1_BATCH_BYTES // (self.state.chunk_size or 1))
        while stop < have.count and have[stop] and stop - start < per_job:
            stop += 1
        if stop == start:
            if start == have.count and self.status == VERIFYING:
                self._whole_file_done()
            return
        self.sha1_busy = True
        hasher, partial, gen = self.sha1, self.partial, self.sha1_gen
        # In file order: chunks still in memory are hashed from there, the
        # rest is read back from the partial in contiguous runs.
        plan: list[tuple[int, int, list[Any] | None]] = []
        for i in range(start, stop):
            pieces = self.sha1_mem.pop(i, None)
            if pieces is not None:
                self.sha1_mem_bytes -= self.state.span(i)[1]
                plan.append((i, i + 1, pieces))
            elif plan and plan[-1][2] is None and plan[-1][1] == i:
                plan[-1] = (plan[-1][0], i + 1, None)
            else:
                plan.append((i, i + 1, None))

        def work() -> None:
            for first, last, pieces in plan:
                if pieces is None:
                    partial.hash_range(hasher, first, last)
                else:
                    for piece in pieces:
                        hasher.update(piece)

        def done(_: None, exc: BaseException | None) -> None:
            self.sha1_busy = False
            if gen != self.sha1_gen:
                self._advance_sha1()
                return
            if exc is not None:
                if self.status in (DOWNLOADING, VERIFYING):
                    self._fail(str(exc) if isinstance(exc, PeerlabError) else f"disk error: {exc}")
                return
            self.sha1_at = stop
            self._advance_sha1()

        self.runtime.offload(work, done)

    def _reset_sha1(self) -> None:
        self.sha1 = hashlib.sha1()
        self.sha1_at = 0
        self.sha1_gen += 1
        self.sha1_mem.clear()
        self.sha1_mem_bytes = 0

    def _whole_file_done(self) -> None:
        obs = self.runtime.observer
        if self.sha1.digest() != self.digest:
            self.whole_failures += 1
            culprit = self.state.list_from
            obs.event("transfer.whole_file_mismatch", urn=self.urn, list_from=culprit)
            obs.count("transfer.whole_file_mismatches")
            if culprit is not None:
                sess = self.sessions.get(culprit)
                reason = "its chunk list does not match the file's SHA-1"
                if sess is not None:
                    self._ban(sess, reason)
                else:
                    self.state.ban(culprit, reason)
            if self.whole_failures >= self.config.max_whole_file_attempts:
                self._fail(f"the data never matched {self.urn}")
                return
            for doubter in self.doubters:
                other = self.sessions.get(doubter)
                if other is not None and other.status == S_DROPPED:
                    other.status, other.failures, other.error = S_IDLE, 0, None
            self.doubters.clear()
            self.list_confirmed.clear()
            size = self.state.size
            assert size is not None
            self.state.chunks = None
            self.state.list_from = None
            self.state.chunk_root = self.state.chunk_root if culprit is None else None
            self.state.set_layout(size, None)
            for s in self.sessions.values():
                s.list_tried = False
            self._reset_sha1()
            self.status = DOWNLOADING
            self.dirty = True
            self.work_version += 1
            self._pump()
            return
        for doubter in sorted(self.doubters):
            # The file is proven: their chunks disagreed with its true list.
            other = self.sessions.get(doubter)
            if other is not None:
                self._ban(other, "its chunks disagree with the file's verified chunk list")
        self.doubters.clear()
        self._finish()

    def _finish(self) -> None:
        if self.manager._closed:
            return  # the state stays; load() finishes the job next time
        if self.saving:
            # A state write is in flight; moving the partial under it could
            # leave a state file naming a partial that is gone.
            self.finish_after_save = True
            return
        partial = self.partial
        download_dir = self.manager.download_dir
        name = self.name

        def work() -> Path:
            return partial.finish(download_dir, name)

        def done(path: Path | None, exc: BaseException | None) -> None:
            if exc is not None or path is None:
                error = str(exc) if isinstance(exc, PeerlabError) else f"disk error: {exc}"
                try:
                    partial.open()
                except StorageError:
                    pass
                self._fail(error)
                return
            self.path = path
            self.status = COMPLETE
            elapsed = self.runtime.now() - (self.started_at or self.runtime.now())
            obs = self.runtime.observer
            obs.event(
                "transfer.complete",
                urn=self.urn,
                name=self.name,
                path=str(path),
                size=self.state.size,
                seconds=elapsed,
            )
            obs.count("transfer.downloads_complete")
            self._changed(force=True)
            self.manager._schedule()

        self.runtime.offload(work, done)

    # --- chunk list and size

    def _got_list(self, sess: _Session, body: bytes) -> None:
        st = self.state
        try:
            chunks = ChunkList.decode(body, expect_size=st.size)
        except RemoteProtocolError as exc:
            self._ban(sess, f"bad chunk list: {exc}")
            return
        if st.chunk_root is not None and chunks.root != st.chunk_root:
            self._ban(sess, "chunk list does not match the chunk root")
            return
        if st.chunks is not None:
            return
        if st.chunk_size is not None and st.chunk_size != chunks.chunk_size and (
            (st.have is not None and st.have.ones) or self.assigned or self.verifying
        ):
            return  # unverified data already laid out another way: the SHA-1 decides
        previous = st.have
        if previous is not None and st.chunk_size == chunks.chunk_size:
            st.chunks = chunks
            st.verified = True
            if previous.ones:
                self._recover(previous_have=previous)
        else:
            st.set_layout(chunks.size, chunks)
        st.list_from = sess.key
        self.list_confirmed.clear()
        self.doubters.clear()
        self.dirty = True
        try:
            self.partial.resize()
        except StorageError as exc:
            self._fail(str(exc))
            return
        if self.recover_when_listed:
            self.recover_when_listed = False
            self._recover()
        # The list is what makes chunks recoverable after a crash: persist it
        # now rather than at the next batched save.
        self.manager._save(self)

    def _learn_size(self, size: int, sess: _Session) -> None:
        st = self.state
        if st.size is None:
            st.size = size
            try:
                self.partial.resize()
            except StorageError as exc:
                self._fail(str(exc))
        elif st.size != size:
            raise _SourceBanned(f"lied about the size: {size}, expected {st.size}")

    # --- crash recovery

    def _recover(self, previous_have: Bitfield | None = None) -> None:
        """Re-hash the chunks the state does not mark (or, with ``previous_have``,
        the unverified ones it does) and take back those that match."""
        st = self.state
        if st.chunks is None or st.have is None:
            return
        if previous_have is not None:
            indexes = [i for i in range(previous_have.count) if previous_have[i]]
            st.have = Bitfield(previous_have.count)
        else:
            indexes = st.have.missing()
        if not indexes:
            return
        self.recovering = True
        partial = self.partial

        def work() -> list[int]:
            return partial.recover(indexes)

        def done(good: list[int] | None, exc: BaseException | None) -> None:
            self.recovering = False
            self.work_version += 1
            if self.manager._closed:
                return
            if exc is not None:
                self._fail(str(exc) if isinstance(exc, PeerlabError) else f"disk error: {exc}")
                return
            have = self.state.have
            if have is not None and good:
                for i in good:
                    have.set(i)
                self.dirty = True
                self.runtime.observer.count("transfer.chunks_recovered", len(good))
            self._reset_sha1()
            if self.status == DOWNLOADING:
                if have is not None and have.complete:
                    self._advance_sha1()
                else:
                    self._pump()
            elif self.status == QUEUED:
                self.manager._schedule()
            self._changed(force=True)

        self.runtime.offload(work, done)


class DownloadManager:
    """Every download of a node: add, watch, pause, resume, cancel, resume after a crash.

    Issue 2, section 4.  ``on_change`` (if set) is called with a
    :class:`DownloadInfo` on every status change and, at most every
    ``PROGRESS_INTERVAL`` seconds, on progress.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        incomplete_dir: Path,
        download_dir: Path,
        config: DownloadConfig | None = None,
    ) -> None:
        self.runtime = runtime
        self.incomplete_dir = Path(incomplete_dir)
        self.download_dir = Path(download_dir)
        self.config = config or DownloadConfig()
        self.on_change: Callable[[DownloadInfo], None] | None = None
        #: Sends a Push for a firewalled source (the servent routes it, draft
        #: 2.2.8); returns ``False`` when it cannot (no route to that GUID).
        self.push_sender: Callable[[PushRequest], bool] | None = None
        #: Told ``(servent GUID, proxies)`` when a source's ``X-Push-Proxies``
        #: names other proxies than before (``push_proxy`` section 4.2: they
        #: replace the servent's known list, e.g. ``ProxyBook.learn``).
        self.push_proxies_heard: Callable[[bytes, list[Address]], None] | None = None
        #: This node's own listening addresses: never taken from X-Alt.
        self.self_addresses: set[Address] = set()
        self.bucket = TokenBucket(self.config.rate_limit)
        self._downloads: dict[str, Download] = {}
        self._giv_waiters: dict[bytes, list[_Session]] = {}
        self._giv_links: set[_GivLink] = set()
        self._rate_timer: Timer | None = None
        self._held: set[_Session] = set()
        self._save_timer: Timer | None = None
        self._closed = False

    # --- public API

    def add(
        self,
        urn: str,
        *,
        name: str,
        size: int | None,
        sources: list[Source],
        chunk_root: bytes | None = None,
    ) -> Download:
        """Start (or queue) fetching ``urn``; for a known urn, only adds sources."""
        digest = parse_sha1_urn(urn)
        urn = sha1_urn(digest)
        existing = self._downloads.get(b32(digest))
        if existing is not None:
            existing.add_sources(sources)
            return existing
        if size is not None and size < 0:
            raise ValueError("a file size is never negative")
        if chunk_root is not None and len(chunk_root) != DIGEST_SIZE:
            chunk_root = None  # not a SHA-256 root: no use checking lists against it
        state = PartialState(urn=urn, name=sanitize_name(name), size=size, chunk_root=chunk_root)
        state.created = self.runtime.wall_time()
        if size is not None:
            state.set_layout(size, None)
        partial = PartialFile(self.incomplete_dir, state)
        dl = Download(self, partial)
        for source in sources:
            dl._session_for(source)
        self._downloads[dl.id] = dl
        dl.dirty = True
        self._save(dl)
        self._arm_save_timer()
        self._schedule()
        return dl

    def giv_handler(self) -> StreamHandler:
        """The handler for a connection that opened with ``GIV`` (the node's
        listener tells by ``classify_first_bytes``): the node gives it
        ``connection_made(stream)``, every byte received so far and every later
        callback.  It reads the GIV line, matches it to a source waiting for
        that servent GUID and file index, and hands the stream to that source;
        anything else is refused and closed (``transfer.giv_refused``)."""
        return _GivLink(self)

    def accept_giv(self, stream: Stream, data: bytes = b"") -> StreamHandler:
        """:meth:`giv_handler`, already given ``stream`` and the bytes read so
        far (the GIV line or its start): forward later callbacks to the result."""
        handler = _GivLink(self)
        handler.connection_made(stream)
        if data:
            handler.data_received(data)
        return handler

    @property
    def pushes_waiting(self) -> int:
        """Firewalled sources waiting for their GIV now."""
        return sum(len(v) for v in self._giv_waiters.values())

    def add_sources(self, urn: str, sources: list[Source]) -> None:
        dl = self.get(urn)
        if dl is None:
            raise KeyError(urn)
        dl.add_sources(sources)

    def get(self, id_or_urn: str) -> Download | None:
        """A download by id, urn, or an unambiguous id prefix (at least 4 characters)."""
        text = id_or_urn.strip()
        try:
            key = b32(parse_sha1_urn(text))
        except RemoteProtocolError:
            key = text.upper()
        dl = self._downloads.get(key)
        if dl is not None or len(key) < 4:
            return dl
        matches = [d for k, d in self._downloads.items() if k.startswith(key)]
        return matches[0] if len(matches) == 1 else None

    def downloads(self) -> list[DownloadInfo]:
        return [dl.info() for dl in self._downloads.values()]

    def pause(self, id: str) -> None:
        dl = self._need(id)
        if dl.status in (COMPLETE, PAUSED):
            return
        if dl.status == VERIFYING:
            return
        dl.stop_sessions()
        dl.status = PAUSED
        dl.state.paused = True
        dl.dirty = True
        self._save(dl)
        dl._changed(force=True)
        self._schedule()

    def resume(self, id: str) -> None:
        dl = self._need(id)
        if dl.status not in (PAUSED, FAILED):
            return
        dl.state.paused = False
        dl.status = QUEUED
        dl.error = None
        for sess in dl.sessions.values():
            if sess.status == S_DROPPED:
                sess.status = S_IDLE
                sess.failures = 0
        dl.dirty = True
        dl._changed(force=True)
        self._schedule()

    def cancel(self, id: str) -> None:
        dl = self._need(id)
        dl.stop_sessions()
        if dl.status != COMPLETE:
            dl.partial.discard()
        dl.status = FAILED if dl.status != COMPLETE else COMPLETE
        del self._downloads[dl.id]
        self.runtime.observer.event("transfer.cancelled", urn=dl.urn)
        self._schedule()

    def clear_finished(self) -> None:
        for key in [k for k, d in self._downloads.items() if d.status == COMPLETE]:
            del self._downloads[key]

    def set_rate_limit(self, bytes_per_s: float) -> None:
        self.bucket.set_rate(bytes_per_s, self.runtime.now())
        self.config.rate_limit = bytes_per_s
        if bytes_per_s <= 0:
            self._release_rate()

    def load(self) -> list[Download]:
        """Pick up the partial downloads left in the incomplete folder (after a crash too).

        Chunks the state marks are trusted; the others are re-hashed from
        the partial file and taken back when they match.
        """
        found = []
        for path in PartialFile.scan(self.incomplete_dir):
            try:
                partial = PartialFile.load(path)
            except StorageError as exc:
                self.runtime.observer.event("transfer.state_unreadable", path=str(path),
                                            error=str(exc))
                continue
            if partial.state.id in self._downloads:
                continue
            if partial.state.have is not None and partial.state.have.ones and not (
                partial.part_path.exists()
            ):
                # The partial is gone (the move into the download folder was
                # done and the state not yet removed, or someone deleted it):
                # the state's chunks describe nothing, so it is dropped.
                self.runtime.observer.event("transfer.state_orphaned", path=str(path))
                try:
                    path.unlink()
                except OSError:
                    pass
                continue
            dl = Download(self, partial)
            self._downloads[dl.id] = dl
            found.append(dl)
            if partial.state.chunks is None and partial.part_path.exists():
                dl.recover_when_listed = True
            if partial.state.chunks is not None and partial.state.have is not None:
                try:
                    partial.open()
                except StorageError as exc:
                    dl.status = FAILED
                    dl.error = str(exc)
                    continue
                dl._recover()
        if found:
            self._arm_save_timer()
            self._schedule()
        return found

    def close(self) -> None:
        """Stop every transfer and persist every state (blocking; for shutdown)."""
        self._closed = True
        for timer in (self._save_timer, self._rate_timer):
            if timer is not None:
                timer.cancel()
        for link in list(self._giv_links):
            link.refuse("download manager closed", count=False)
        for dl in self._downloads.values():
            dl.stop_sessions()
            if dl.status != COMPLETE:
                try:
                    dl.partial.save_state()
                    dl.dirty = False
                except StorageError as exc:
                    self.runtime.observer.event("transfer.state_unsaved", urn=dl.urn,
                                                error=str(exc))
            dl.partial.close()

    # --- internals

    def _need(self, id: str) -> Download:
        dl = self.get(id)
        if dl is None:
            raise KeyError(id)
        return dl

    def _schedule(self) -> None:
        """Start queued downloads while fewer than ``max_active_downloads`` run."""
        if self._closed:
            return
        running = sum(1 for d in self._downloads.values() if d.active)
        for dl in self._downloads.values():
            if running >= self.config.max_active_downloads:
                break
            if dl.status == QUEUED and not dl.recovering:
                dl.start()
                running += 1

    def _await_giv(self, sess: _Session) -> bool:
        guid = sess.source.servent_guid
        assert guid is not None
        if self.pushes_waiting >= MAX_GIV_WAITERS:
            return False
        waiting = self._giv_waiters.setdefault(guid, [])
        if sess not in waiting:
            waiting.append(sess)
        return True

    def _forget_waiter(self, sess: _Session) -> None:
        guid = sess.source.servent_guid
        waiting = self._giv_waiters.get(guid) if guid is not None else None
        if waiting is None:
            return
        if sess in waiting:
            waiting.remove(sess)
        if not waiting:
            del self._giv_waiters[guid]  # type: ignore[arg-type]

    def _match_giv(self, giv: Giv) -> _Session | None:
        """The source waiting for this servent GUID and file index, if any.
        Index 0 matches any file of that servent: a push proxy's Push carries
        file index 0 (gtk-gnutella ``push_proxy`` section 5)."""
        for sess in self._giv_waiters.get(giv.servent_guid, ()):
            if giv.index in (sess.source.index, 0) and sess.status == S_CONNECTING:
                self._forget_waiter(sess)
                return sess
        return None

    def _got_bytes(self, sess: _Session, n: int, now: float) -> None:
        bucket = self.bucket
        if bucket.unlimited:
            return
        bucket.consume(n, now)
        delay = bucket.delay(1, now)
        if delay >= MIN_RATE_WAIT:
            sess.hold("rate")
            self._held.add(sess)
            if self._rate_timer is None:
                self._rate_timer = self.runtime.call_later(delay, self._rate_tick)

    def _rate_tick(self) -> None:
        self._rate_timer = None
        now = self.runtime.now()
        delay = self.bucket.delay(1, now)
        if delay >= MIN_RATE_WAIT:
            self._rate_timer = self.runtime.call_later(delay, self._rate_tick)
            return
        self._release_rate()

    def _release_rate(self) -> None:
        held, self._held = self._held, set()
        for sess in held:
            sess.release("rate")

    def _arm_save_timer(self) -> None:
        if self._save_timer is None and not self._closed:
            self._save_timer = self.runtime.call_later(
                self.config.state_save_interval, self._save_tick
            )

    def _save_tick(self) -> None:
        self._save_timer = None
        for dl in self._downloads.values():
            if dl.dirty and dl.status != COMPLETE:
                self._save(dl)
        if any(d.status != COMPLETE for d in self._downloads.values()):
            self._arm_save_timer()

    def _save(self, dl: Download) -> None:
        """Persist ``dl``'s state off the loop: partial fsync, then atomic state write."""
        if self._closed or dl.status in (COMPLETE, VERIFYING):
            return
        if dl.saving:
            dl.save_again = True  # this snapshot may be older than the change
            return
        dl.saving = True
        dl.dirty = False
        snapshot = dl.partial.snapshot()
        partial = dl.partial

        def work() -> None:
            partial.save_state(snapshot)

        def done(_: None, exc: BaseException | None) -> None:
            dl.saving = False
            if exc is not None:
                dl.dirty = True
                self.runtime.observer.event("transfer.state_unsaved", urn=dl.urn, error=str(exc))
            if dl.save_again:
                dl.save_again = False
                self._save(dl)
            if dl.finish_after_save:
                dl.finish_after_save = False
                dl._finish()

        self.runtime.offload(work, done)


class _GivLink:
    """An incoming connection that opened with ``GIV`` (draft 2.2.8).

    Until its line is complete it belongs to nobody (bounded by
    :data:`MAX_PENDING_GIVS` and ``giv_timeout``); once matched to a waiting
    firewalled source it forwards every callback to that source's
    :class:`_Link`, exactly as a connection we had opened ourselves.
    """

    __slots__ = ("manager", "runtime", "reader", "stream", "link", "timer", "done", "peer")

    def __init__(self, manager: DownloadManager) -> None:
        self.manager = manager
        self.runtime = manager.runtime
        self.reader = GivReader()
        self.stream: Stream | None = None
        self.link: _Link | None = None
        self.timer: Timer | None = None
        self.done = False
        self.peer = "?"

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        host, port = stream.remote_address
        self.peer = f"{host}:{port}"
        m = self.manager
        if m._closed:
            self.refuse("download manager closed")
            return
        if len(m._giv_links) >= MAX_PENDING_GIVS:
            self.refuse("too many GIV connections pending")
            return
        m._giv_links.add(self)
        self.timer = self.runtime.call_later(m.config.giv_timeout, self._timed_out)

    def connection_failed(self, exc: NetworkError) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.data_received(data)
            return
        if self.done or self.stream is None:
            return
        try:
            got = self.reader.feed(data)
        except RemoteProtocolError as exc:
            self.refuse(f"bad GIV: {exc}")
            return
        if got is None:
            return
        giv, rest = got
        if rest:
            self.refuse("bytes after the GIV line (the downloader speaks first)")
            return
        sess = self.manager._match_giv(giv)
        if sess is None:
            self.refuse(f"no source waits for GIV {giv.index}:{giv.servent_guid.hex().upper()}")
            return
        self._settle()
        obs = self.runtime.observer
        obs.event("transfer.giv", peer=self.peer, index=giv.index, source=sess.key)
        self.link = _Link(sess, sess.gen)
        sess.pushed(self.stream)

    def eof_received(self) -> None:
        if self.link is not None:
            self.link.eof_received()
        elif not self.done:
            self.refuse("closed before its GIV line ended")

    def connection_lost(self, exc: NetworkError | None) -> None:
        if self.link is not None:
            self.link.connection_lost(exc)
        self._settle()
        self.done = True

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _settle(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.manager._giv_links.discard(self)

    def _timed_out(self) -> None:
        self.timer = None
        if self.link is None and not self.done:
            self.refuse(f"no GIV line within {self.manager.config.giv_timeout:g} s")

    def refuse(self, reason: str, *, count: bool = True) -> None:
        """Close this connection unmatched."""
        self.done = True
        self._settle()
        if count:
            obs = self.runtime.observer
            obs.count("transfer.giv_refused")
            obs.event("transfer.giv_refused", peer=self.peer, reason=reason[:MAX_ERROR_CHARS])
        if self.stream is not None:
            self.stream.abort()
