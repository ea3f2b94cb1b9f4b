"""Napster peer-to-peer transfers: GET and SEND on the data port (napster.txt section 5).

File transfers go directly between peers, never through the server:

* **Download, sharer reachable** (5.1): the server's 204 names the sharer's ip
  and data port; we connect, read its ``1``, send ``GET`` and
  ``<mynick> "<filename>" <offset>``, read the file's size and then the file
  from ``offset``.
* **Download, sharer firewalled** (5.2): the 204 says port 0; we send a 500,
  the server relays a 501 to the sharer, which connects to our data port; we
  send ``1``, it sends ``SEND`` and ``<nick> "<filename>" <size>``, we answer
  with the offset to start at and the file follows.
* **Uploads** are the same two exchanges seen from the other side: a ``GET``
  arriving on our data port, or (when we are firewalled) a 501 telling us to
  connect out and ``SEND``.

Both sides send the transfer notices (218/219 downloading, 220/221 uploading)
through the :class:`~peerlab.overlays.napster.client.NapsterClient`.

**What a download can verify.**  Napster names a file by the MD5 of its first
299,008 bytes (napster.txt, "MD5"; :func:`peerlab.storage.catalog.napster_md5`)
and its size, nothing more: no whole-file hash, no chunk hashes.  A Napster
download is therefore single-source per transfer (one sharer at a time) but
resumable by offset: the bytes already on disk in the incomplete folder are
kept across a dropped connection, a pause or a restart of the node, and the
next transfer (from the same or another sharer of the same md5 and size)
asks for the rest.  The file is moved into the download folder only when its
size and its Napster md5 match what the search result announced; a file that
fails is deleted, never shown as complete.  This is the most the protocol
offers: corruption after the first 299,008 bytes cannot be detected (peerlab's
own HTTP transfers verify every chunk and the whole-file SHA-1).

**Uploads serve only catalog files.**  The only names a peer can ask for are
those we shared (the :class:`ShareIndex`, built from the catalog); the name
is never turned into a path.  The catalog's file is opened with the HTTP
service's checks (:func:`peerlab.overlays.transfer.server.open_shared`): its
real path must lie inside a shared folder, the last component is opened with
``O_NOFOLLOW``, and the open file must be the regular file the catalog hashed.

Layout in the incomplete folder (apart from the HTTP downloads' files)::

    napster/<id>.part    the bytes received so far, in order from offset 0
    napster/<id>.json    name, size, md5, sources; replaced atomically

Written only against :mod:`peerlab.runtime.base`; blocking work (the final
check and move) goes through ``runtime.offload``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from peerlab.errors import (
    IntegrityError,
    LocalProtocolError,
    NetworkError,
    PeerlabError,
    StorageError,
)
from peerlab.overlays.napster.client import NapsterClient, PeerAddress
from peerlab.overlays.transfer.download import RateMeter
from peerlab.overlays.transfer.ratelimit import TokenBucket
from peerlab.overlays.transfer.server import open_shared
from peerlab.proto.napster import (
    ConnectionClosed,
    Data,
    FileSize,
    GetRequested,
    IncomingTransfer,
    OffsetRequested,
    OutgoingGet,
    OutgoingSend,
    SendOffered,
    TransferComplete,
    TransferConfig,
    TransferRefused,
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
from peerlab.runtime.driver import StreamDriver
from peerlab.storage.catalog import napster_md5
from peerlab.storage.partial import atomic_write, place_file, sanitize_name
from peerlab.wire.napster import (
    FILE_NOT_SHARED,
    INVALID_REQUEST,
    MAX_FILENAME_BYTES,
    DownloadComplete,
    Downloading,
    LinkType,
    ShareFile,
    UploadComplete,
    Uploading,
    encode,
)

#: Download states (the HTTP downloads' words, so the transfers table reads alike).
QUEUED = "queued"
DOWNLOADING = "downloading"
VERIFYING = "verifying"
COMPLETE = "complete"
PAUSED = "paused"
FAILED = "failed"
UPLOADING = "uploading"

#: Subfolder of the incomplete folder holding Napster partials.
NAPSTER_DIR = "napster"
PART_SUFFIX = ".part"
STATE_SUFFIX = ".json"
STATE_VERSION = 1
#: Bytes read and sent per write while uploading: large enough that per-write
#: costs vanish, small enough that a rate limit stays smooth.
BLOCK_SIZE = 64 * 1024
#: Blocks one upload writes per turn of the event loop before yielding.
BLOCKS_PER_TURN = 8
#: How often an upload re-checks a send buffer above the high-water mark.
DRAIN_POLL_S = 0.05
#: Seconds a transfer may go without a byte moving before it is dropped.
STALL_TIMEOUT = 60.0
#: How often the stall check runs.
STALL_CHECK_S = 5.0
#: Seconds to wait for more digits after a complete-looking transfer line.
LINE_SETTLE_S = 0.05
#: Seconds a download waits for a firewalled sharer to connect after a 500.
PUSH_TIMEOUT = 30.0
#: Seconds between attempts after a source failed.
RETRY_DELAY = 2.0
#: Attempts per source without progress, and per download in all, before
#: giving up (a source that keeps dropping after a few bytes cannot loop
#: forever).
MAX_SOURCE_ATTEMPTS = 3
MAX_TOTAL_ATTEMPTS = 30
#: Sources remembered per download: every sharer a search found, bounded
#: (a search brings at most 100 results per server).
MAX_SOURCES = 100
#: Connections on our data port still in their handshake; more are dropped
#: at once (a remote peer can open them at will).
MAX_HANDSHAKES = 64
#: Finished uploads kept for the transfers table (the oldest go first).
MAX_UPLOAD_RECORDS = 200
#: Link types of downloaders learnt from the server (601), kept for the
#: transfers table; the oldest are forgotten first.
MAX_KNOWN_LINKS = 256
#: Window of the rate shown in the transfers table.
RATE_WINDOW_S = 3.0
#: Error text when every upload slot is busy (napster.txt names only two
#: error strings "such as" these; any text is passed through).
SLOTS_FULL = "UPLOAD LIMIT REACHED"


# ------------------------------------------------------------------ names


def wire_text(text: str) -> str:
    """``text`` as a Napster payload string: its UTF-8 bytes read as latin-1.

    The codec sends payloads as ISO-8859-1 (:mod:`peerlab.wire.napster`,
    "Text and bytes"), so a UTF-8 name travels byte for byte.
    """
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def display_text(wire: str) -> str:
    """A payload string for people: UTF-8 when it is, else Windows-1252 (the
    official client's code page)."""
    raw = wire.encode("latin-1", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def display_name(wire_filename: str) -> str:
    """The last component of a shared path (``C:\\MP3\\x.mp3`` -> ``x.mp3``)."""
    name = display_text(wire_filename).replace("\\", "/").rsplit("/", 1)[-1]
    return name or display_text(wire_filename)


def download_id(md5: str, size: int) -> str:
    """A Napster download's id: ``NAP`` and ten hex digits of its (md5, size).

    Upper case like the HTTP downloads' base32 ids (and never mistaken for
    markup by the terminal tables).
    """
    return "NAP" + hashlib.sha1(f"{md5.lower()}:{size}".encode()).hexdigest()[:10].upper()


def md5_of_announced(md5: str) -> str | None:
    """The 32 hex digits to check a file against, or ``None`` when the
    announcement carries none (OpenNap without RESUME sends 32 zeros; some
    clients append ``-<size>``)."""
    head = md5.lower()[:32]
    if len(head) != 32 or any(c not in "0123456789abcdef" for c in head) or head == "0" * 32:
        return None
    return head


class CatalogLike(Protocol):
    """What the transfers need of :class:`peerlab.storage.catalog.Catalog`."""

    def by_index(self, index: int) -> Any: ...

    def folders(self) -> list[Path]: ...


class ShareIndex:
    """What we share on Napster: the share messages (100) and, for uploads,
    the catalog index behind each shared name.

    A file is shared as ``<folder>\\<path inside it>`` (Windows separators, as
    Napster clients showed paths), its Napster md5, size, bitrate, sample
    rate and duration.  Names a Napster payload cannot carry (a double quote,
    a control character, longer than the codec's bound) are left out and
    counted in :attr:`skipped`.
    """

    def __init__(self) -> None:
        self.messages: list[ShareFile] = []
        self.skipped = 0
        self._by_name: dict[str, int] = {}

    def rebuild(self, files: Iterable[Any]) -> None:
        messages: list[ShareFile] = []
        by_name: dict[str, int] = {}
        skipped = 0
        for f in files:
            md5 = getattr(f, "napster_md5", None)
            if not md5:
                skipped += 1
                continue
            try:
                rel = Path(f.path).relative_to(Path(f.root))
            except ValueError:
                skipped += 1
                continue
            name = wire_text("\\".join((Path(f.root).name or "share", *rel.parts)))
            if name in by_name or len(name.encode("latin-1")) > MAX_FILENAME_BYTES:
                skipped += 1
                continue
            msg = ShareFile(
                name, md5, int(f.size), int(f.bitrate or 0), int(f.sample_rate or 0),
                int(round(f.duration or 0)),
            )  # fmt: skip
            try:
                encode(msg)
            except LocalProtocolError:
                skipped += 1
                continue
            messages.append(msg)
            by_name[name] = int(f.index)
        self.messages, self._by_name, self.skipped = messages, by_name, skipped

    def lookup(self, filename: str) -> int | None:
        """The catalog index of a name we shared, else ``None``."""
        return self._by_name.get(filename)

    def entry(self, filename: str) -> ShareFile | None:
        idx = self._by_name.get(filename)
        if idx is None:
            return None
        for m in self.messages:
            if m.filename == filename:
                return m
        return None

    def __len__(self) -> int:
        return len(self.messages)


# ------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class NapsterSource:
    """A sharer of a file: its nick, the name it shared and its link type."""

    nick: str
    filename: str
    link_type: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.nick, self.filename)


@dataclass(frozen=True)
class TransferInfo:
    """One Napster transfer's row in the transfers table.

    ``done`` counts the file's bytes we have (downloads) or sent in this
    transfer (uploads, which start at ``offset``); ``peer`` is the other
    side's nick and ``link`` its link type's label, as Napster's transfer
    window showed them.
    """

    id: str
    direction: str  # "download" | "upload"
    name: str
    filename: str
    size: int
    done: int
    offset: int
    status: str
    rate: float
    eta: float | None
    peer: str
    link: str
    md5: str
    error: str | None = None
    path: Path | None = None
    firewalled: bool = False


def _label(link_type: int | None) -> str:
    try:
        return LinkType(int(link_type or 0)).label
    except ValueError:
        return LinkType.UNKNOWN.label


@dataclass
class TransfersConfig:
    """Settings of :class:`NapsterTransfers`, with documented defaults."""

    #: Uploads served at once (GET and SEND together).
    slots: int = 4
    #: Handshake timeout and line settling of the transfer machines.  The
    #: request line and the offset reply carry no terminator (napster.txt 5.1,
    #: 5.2: "in a single packet"); waiting LINE_SETTLE_S after a complete-
    #: looking line keeps a packet split inside the digits from giving a
    #: wrong offset, at a cost no one notices.
    transfer: TransferConfig = field(
        default_factory=lambda: TransferConfig(line_settle=LINE_SETTLE_S)
    )
    stall_timeout: float = STALL_TIMEOUT
    push_timeout: float = PUSH_TIMEOUT
    retry_delay: float = RETRY_DELAY
    connect_timeout: float = 15.0


# ------------------------------------------------------------------ links


class _Owner(Protocol):
    """What a link reports to once attached: an upload, a download, a push."""

    def link_event(self, link: _Link, ev: Any) -> None: ...

    def link_closed(self, link: _Link, exc: Exception | None) -> None: ...


class _Link:
    """One data connection: a transfer machine on a :class:`StreamDriver`.

    Events go to ``owner`` (an upload or a download) once one is attached;
    before that (an incoming connection still in its handshake) to the
    service.
    """

    def __init__(self, service: NapsterTransfers, machine: Any, peer: str) -> None:
        self.service = service
        self.machine = machine
        self.peer = peer
        self.owner: _Owner | None = None
        self.closed = False
        self.connecting: Connecting | None = None
        self.driver = StreamDriver(
            service.runtime, machine, self._event,
            on_closed=self._closed, on_writable=self._writable,
        )  # fmt: skip

    def _event(self, ev: Any) -> None:
        try:
            if self.owner is not None:
                self.owner.link_event(self, ev)
            else:
                self.service._handshake_event(self, ev)
        except PeerlabError as exc:
            self.service.runtime.observer.event("napster.transfer_error", error=str(exc))
            self.abort()
        except OSError as exc:
            self.service.runtime.observer.event(
                "napster.transfer_error", error=exc.strerror or str(exc)
            )
            self.abort()

    def _closed(self, exc: Exception | None) -> None:
        self.closed = True
        self.service._handshakes.discard(self)
        if self.owner is not None:
            self.owner.link_closed(self, exc)

    def _writable(self, writable: bool) -> None:
        if writable and isinstance(self.owner, _Upload):
            self.owner.pump()

    def flush(self) -> None:
        self.driver.flush()

    def close(self) -> None:
        if not self.closed:
            self.driver.close()

    def dial(self, address: Address, timeout: float) -> None:
        """Connect out (the driver learns the outcome)."""
        self.connecting = self.service.runtime.connect(address, self.driver, timeout=timeout)

    def abort(self) -> None:
        if self.closed:
            return
        if self.driver.stream is None:
            connecting, self.connecting = self.connecting, None
            if connecting is not None:
                connecting.cancel()  # the driver then reports the failure
            return
        self.driver.abort()

    @property
    def buffered(self) -> int:
        stream = self.driver.stream
        return stream.get_write_buffer_size() if stream is not None else 0


class _Incoming(BaseStreamHandler):
    """Accepts one connection on our data port and hands it to a :class:`_Link`."""

    def __init__(self, service: NapsterTransfers) -> None:
        self.service = service
        self.link: _Link | None = None

    def connection_made(self, stream: Stream) -> None:
        service = self.service
        if service.closed or len(service._handshakes) >= MAX_HANDSHAKES:
            service.runtime.observer.event("napster.incoming_refused",
                                           peer=stream.remote_address)
            stream.abort()
            return
        host, port = stream.remote_address
        machine = IncomingTransfer(service.config.transfer, service.runtime.now())
        self.link = _Link(service, machine, f"{host}:{port}")
        service._handshakes.add(self.link)
        self.link.driver.connection_made(stream)

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.driver.data_received(data)

    def eof_received(self) -> None:
        if self.link is not None:
            self.link.driver.eof_received()

    def connection_lost(self, exc: NetworkError | None) -> None:
        if self.link is not None:
            self.link.driver.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.driver.pause_writing()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.driver.resume_writing()


# ------------------------------------------------------------------ uploads


@dataclass
class _UploadRecord:
    id: str
    nick: str
    name: str
    filename: str
    size: int
    offset: int
    md5: str
    link: int | None
    status: str = UPLOADING
    sent: int = 0
    error: str | None = None
    meter: RateMeter = field(default_factory=lambda: RateMeter(RATE_WINDOW_S))

    def info(self, now: float) -> TransferInfo:
        rate = self.meter.rate(now) if self.status == UPLOADING else 0.0
        left = self.size - self.offset - self.sent
        return TransferInfo(
            id=self.id, direction="upload", name=self.name, filename=self.filename,
            size=self.size, done=self.sent, offset=self.offset, status=self.status,
            rate=rate, eta=left / rate if rate > 0 and self.status == UPLOADING else None,
            peer=self.nick, link=_label(self.link) if self.link is not None else "",
            md5=self.md5, error=self.error,
        )  # fmt: skip


class _Upload:
    """Sends one shared file from an offset over a link (GET or SEND)."""

    def __init__(
        self, service: NapsterTransfers, link: _Link, record: _UploadRecord, fd: int
    ) -> None:
        self.service = service
        self.link = link
        self.record = record
        self.fd: int | None = fd
        self.position = record.offset
        self.remaining = record.size - record.offset
        self.finished = False
        self.noticed = False
        self._timer: Timer | None = None
        self._last_progress = service.runtime.now()
        self._stall: Timer | None = None
        link.owner = self

    def start(self) -> None:
        self.service.client.notice(Uploading())
        self.noticed = True
        self.service.runtime.observer.event(
            "napster.upload_started", nick=self.record.nick, name=self.record.name,
            offset=self.record.offset,
        )  # fmt: skip
        self._arm_stall()
        self.pump()

    def pump(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.finished or self.link.closed or self.fd is None:
            return
        runtime = self.service.runtime
        bucket = self.service.bucket
        turns = 0
        try:
            while self.remaining > 0:
                if not self.link.driver.writable or self.link.buffered > DEFAULT_HIGH_WATER:
                    self._later(DRAIN_POLL_S)
                    return
                if turns >= BLOCKS_PER_TURN:
                    self._later(0.0)
                    return
                n = min(BLOCK_SIZE, self.remaining)
                now = runtime.now()
                if bucket is not None:
                    wait = bucket.delay(n, now)
                    if wait > 0:
                        self._later(wait)
                        return
                data = os.pread(self.fd, n, self.position)
                if len(data) != n:
                    raise StorageError(f"{self.record.name} shrank while being uploaded")
                if bucket is not None:
                    bucket.consume(n, now)
                self.position += n
                self.remaining -= n
                self.record.sent += n
                self.record.meter.add(n, now)
                self._last_progress = now
                self.link.machine.send_data(data)
                self.link.flush()
                runtime.observer.count("napster.upload_bytes", n)
                turns += 1
        except (OSError, PeerlabError) as exc:
            error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._end(FAILED, error)
            self.link.abort()
            return
        self._end(COMPLETE, None)
        self.link.close()

    def _later(self, delay: float) -> None:
        runtime = self.service.runtime
        self._timer = (
            runtime.call_soon(self.pump) if delay <= 0 else runtime.call_later(delay, self.pump)
        )

    def _arm_stall(self) -> None:
        self._stall = self.service.runtime.call_later(STALL_CHECK_S, self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        if self.finished:
            return
        idle = self.service.runtime.now() - self._last_progress
        if idle >= self.service.config.stall_timeout:
            self._end(FAILED, "the downloader stopped reading")
            self.link.abort()
            return
        self._arm_stall()

    def link_event(self, link: _Link, ev: Any) -> None:
        if isinstance(ev, ConnectionClosed):
            link.close()

    def link_closed(self, link: _Link, exc: Exception | None) -> None:
        if not self.finished:
            self._end(FAILED, str(exc) if exc else "the downloader closed the connection")

    def _end(self, status: str, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        for timer in (self._timer, self._stall):
            if timer is not None:
                timer.cancel()
        self._timer = self._stall = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.record.status = status
        self.record.error = error
        if self.noticed:
            self.service.client.notice(UploadComplete())
        self.service._upload_ended(self)
        self.service.runtime.observer.event(
            "napster.upload_complete" if status == COMPLETE else "napster.upload_failed",
            nick=self.record.nick, name=self.record.name, sent=self.record.sent, error=error,
        )  # fmt: skip


# ------------------------------------------------------------------ downloads


class NapsterDownload:
    """One file fetched from Napster sharers, one at a time, resumable by offset."""

    def __init__(
        self,
        service: NapsterTransfers,
        *,
        name: str,
        size: int,
        md5: str,
        sources: list[NapsterSource],
    ) -> None:
        self.service = service
        self.id = download_id(md5, size)
        self.name = name
        self.size = size
        self.md5 = md5
        self.sources: list[NapsterSource] = []
        self.status = QUEUED
        self.error: str | None = None
        self.detail = ""
        self.path: Path | None = None
        self.meter = RateMeter(RATE_WINDOW_S)
        self.source: NapsterSource | None = None
        self.pushed = False
        self.link: _Link | None = None
        self.fd: int | None = None
        self.done = 0
        self.attempts: dict[tuple[str, str], int] = {}
        self.total_attempts = 0
        self._requesting = False
        self._timer: Timer | None = None
        self._stall: Timer | None = None
        self._last_progress = 0.0
        self._noticed = False
        self._progressed = False
        self.add_sources(sources)
        directory = service.napster_dir
        self.part_path = directory / f"{self.id}{PART_SUFFIX}"
        self.state_path = directory / f"{self.id}{STATE_SUFFIX}"

    # -- sources and state

    def add_sources(self, sources: Iterable[NapsterSource]) -> bool:
        known = {s.key for s in self.sources}
        added = False
        for s in sources:
            if s.key not in known and len(self.sources) < MAX_SOURCES:
                self.sources.append(s)
                known.add(s.key)
                self.attempts.pop(s.key, None)
                added = True
        if added and self.status == FAILED and self.path is None:
            self.status, self.error = QUEUED, None
        return added

    def state_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "size": self.size,
            "md5": self.md5,
            "paused": self.status == PAUSED,
            "sources": [[s.nick, s.filename, s.link_type] for s in self.sources],
        }

    def save(self) -> None:
        """Write the state file (atomically); raises StorageError."""
        data = json.dumps(self.state_json()).encode()
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.state_path.parent}: {exc.strerror}") from exc
        atomic_write(self.state_path, data)

    def info(self, now: float) -> TransferInfo:
        downloading = self.status == DOWNLOADING and self.link is not None
        rate = self.meter.rate(now) if downloading else 0.0
        src = self.source or (self.sources[0] if self.sources else None)
        error = self.error
        if self.status == QUEUED and self.detail:
            error = self.detail
        return TransferInfo(
            id=self.id, direction="download", name=self.name,
            filename=src.filename if src else "", size=self.size, done=self.done,
            offset=0, status=self.status, rate=rate,
            eta=(self.size - self.done) / rate if rate > 0 else None,
            peer=src.nick if src else "", link=_label(src.link_type) if src else "",
            md5=self.md5, error=error, path=self.path, firewalled=self.pushed,
        )  # fmt: skip

    # -- scheduling

    def schedule(self, delay: float = 0.0) -> None:
        """Start the next attempt now or after ``delay`` (no-op when one runs)."""
        if self.status not in (QUEUED, DOWNLOADING) or self._timer is not None:
            return
        if self.link is not None or self._requesting:
            return
        runtime = self.service.runtime
        self._timer = (
            runtime.call_soon(self._attempt) if delay <= 0 else
            runtime.call_later(delay, self._attempt)
        )  # fmt: skip

    def _attempt(self) -> None:
        self._timer = None
        if self.status not in (QUEUED, DOWNLOADING) or self.link is not None or self._requesting:
            return
        client = self.service.client
        if not client.online:
            self.status, self.detail = QUEUED, "waiting for a Napster server"
            return
        if self.done >= self.size and self.size > 0:
            self._verify()
            return
        source = self._pick()
        if source is None:
            self._fail(self.error or "no sharer could send the file")
            return
        self.source = source
        self.attempts[source.key] = self.attempts.get(source.key, 0) + 1
        self.total_attempts += 1
        self.status, self.detail = QUEUED, f"asking the server for {source.nick}"
        self._requesting = True
        client.request_download(
            source.nick, source.filename, lambda addr, err: self._answered(source, addr, err)
        )

    def _pick(self) -> NapsterSource | None:
        if self.total_attempts >= MAX_TOTAL_ATTEMPTS:
            return None
        usable = [s for s in self.sources if self.attempts.get(s.key, 0) < MAX_SOURCE_ATTEMPTS]
        if not usable:
            return None
        # Fewest attempts first, then the fastest declared link.
        return min(usable, key=lambda s: (self.attempts.get(s.key, 0), -int(s.link_type)))

    def _answered(self, source: NapsterSource, addr: PeerAddress | None, error: str | None) -> None:
        self._requesting = False
        if self.status not in (QUEUED, DOWNLOADING) or source is not self.source:
            return
        if addr is None:
            self._source_failed(source, error or "no answer", fatal=False)
            return
        service = self.service
        if addr.port == 0:
            if service.client.firewalled:
                self._source_failed(source, f"{source.nick} and we are both firewalled",
                                    fatal=True)
                return
            self.pushed = True
            service._expect_push(self)
            if not service.client.request_push(source.nick, source.filename):
                service._forget_push(self)
                self._source_failed(source, "cannot ask for a push", fatal=False)
                return
            self.detail = f"waiting for {source.nick} to connect (firewalled)"
            self._timer = service.runtime.call_later(service.config.push_timeout,
                                                     self._push_expired)
            return
        self.pushed = False
        self.detail = f"connecting to {source.nick}"
        self._connect(source, addr)

    def _push_expired(self) -> None:
        self._timer = None
        self.service._forget_push(self)
        if self.source is not None and self.link is None:
            self._source_failed(self.source, f"{self.source.nick} did not connect to us",
                                fatal=False)

    def _connect(self, source: NapsterSource, addr: PeerAddress) -> None:
        service = self.service
        if not self._open_part():
            return
        machine = OutgoingGet(
            service.client.nick, source.filename, self.done, service.config.transfer,
            service.runtime.now(), expected_size=self.size,
        )  # fmt: skip
        link = _Link(service, machine, f"{addr.ip}:{addr.port}")
        link.owner = self
        self.link = link
        self._progressed = False
        link.dial((addr.ip, addr.port), service.config.connect_timeout)

    def take_push(self, link: _Link, offer: SendOffered) -> None:
        """A firewalled sharer connected to us and offers the file (5.2)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        machine: IncomingTransfer = link.machine
        if offer.size != self.size:
            machine.refuse(INVALID_REQUEST)
            link.flush()
            link.close()
            if self.source is not None:
                self._source_failed(self.source, f"{offer.nick} offered {offer.size} bytes, "
                                    f"not {self.size}", fatal=True)
            return
        if not self._open_part():
            machine.refuse(INVALID_REQUEST)
            link.flush()
            link.close()
            return
        link.owner = self
        self.link = link
        self._progressed = False
        events = machine.accept_send(self.done)
        link.flush()
        self._started()
        for ev in events:
            self.link_event(link, ev)

    def _open_part(self) -> bool:
        if self.fd is not None:
            return True
        try:
            self.part_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.part_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                         0o644)
            size = os.fstat(fd).st_size
            if size > self.size:
                os.ftruncate(fd, 0)
                size = 0
            self.fd, self.done = fd, size
            return True
        except OSError as exc:
            self._fail(f"cannot write {self.part_path}: {exc.strerror or exc}")
            return False

    def _started(self) -> None:
        self.status, self.detail, self.error = DOWNLOADING, "", None
        self._last_progress = self.service.runtime.now()
        if not self._noticed:
            self.service.client.notice(Downloading())
            self._noticed = True
        self._arm_stall()
        self.service.runtime.observer.event(
            "napster.download_started", name=self.name, nick=self.source.nick if self.source
            else None, offset=self.done, pushed=self.pushed,
        )  # fmt: skip
        self.service._changed(self)

    # -- link events

    def link_event(self, link: _Link, ev: Any) -> None:
        if link is not self.link:
            return
        if isinstance(ev, FileSize):
            if ev.size != self.size:
                link.abort()
                if self.source is not None:
                    self._source_failed(self.source, f"{self.source.nick} has {ev.size} bytes, "
                                        f"not {self.size}", fatal=True)
                return
            self._started()
        elif isinstance(ev, Data):
            try:
                self._write(ev.data)
            except OSError as exc:
                # The disk said no (full, gone): no sharer can help with that.
                self._detach()
                link.abort()
                self._fail(f"cannot write {self.part_path}: {exc.strerror or exc}")
        elif isinstance(ev, TransferComplete):
            self._detach()
            link.close()
            self._verify()
        elif isinstance(ev, TransferRefused):
            self._detach()
            link.close()
            if self.source is not None:
                fatal = ev.reason.strip().upper() in (FILE_NOT_SHARED, INVALID_REQUEST)
                self._source_failed(self.source, f"{self.source.nick}: {ev.reason}", fatal=fatal)
        elif isinstance(ev, ConnectionClosed):
            link.close()

    def _write(self, data: bytes) -> None:
        fd = self.fd
        assert fd is not None
        view = memoryview(data)
        offset = self.done
        while view:
            n = os.pwrite(fd, view, offset)
            offset += n
            view = view[n:]
        now = self.service.runtime.now()
        self.done = offset
        self.meter.add(len(data), now)
        self._last_progress = now
        self._progressed = True
        self.service.runtime.observer.count("napster.download_bytes", len(data))

    def link_closed(self, link: _Link, exc: Exception | None) -> None:
        if link is not self.link:
            return
        self._detach()
        if self.status == DOWNLOADING or self.status == QUEUED:
            if self.done >= self.size:
                self._verify()
                return
            reason = str(exc) if exc else "the connection closed early"
            if self.source is not None:
                if self._progressed:
                    # Progress made: try again from the new offset, same terms.
                    self.attempts[self.source.key] = max(
                        0, self.attempts.get(self.source.key, 1) - 1
                    )
                self._source_failed(self.source, reason, fatal=False)

    def _detach(self) -> None:
        self.link = None
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self._noticed:
            self.service.client.notice(DownloadComplete())
            self._noticed = False

    def _arm_stall(self) -> None:
        if self._stall is None:
            self._stall = self.service.runtime.call_later(STALL_CHECK_S, self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        link = self.link
        if link is None:
            return
        if self.service.runtime.now() - self._last_progress >= self.service.config.stall_timeout:
            self.error = "the sharer stopped sending"
            link.abort()
            return
        self._arm_stall()

    def _source_failed(self, source: NapsterSource, reason: str, *, fatal: bool) -> None:
        self.error = reason
        if fatal:
            self.attempts[source.key] = MAX_SOURCE_ATTEMPTS
        self.service.runtime.observer.event(
            "napster.source_failed", name=self.name, nick=source.nick, reason=reason,
        )  # fmt: skip
        if self.status in (QUEUED, DOWNLOADING):
            self.status, self.detail = QUEUED, f"{reason}; trying again"
            self.service._changed(self)
            self.schedule(self.service.config.retry_delay)

    # -- the end

    def _close_fd(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def _verify(self) -> None:
        """Size and Napster md5, then into the download folder (off the loop)."""
        self.status, self.detail = VERIFYING, ""
        self.service._changed(self)
        fd, self.fd = self.fd, None
        part, state = self.part_path, self.state_path
        size, md5 = self.size, md5_of_announced(self.md5)
        directory, name = self.service.download_dir, sanitize_name(self.name)

        def check_and_place() -> Path:
            try:
                if fd is not None:
                    os.fsync(fd)
            finally:
                if fd is not None:
                    os.close(fd)
            have = part.stat().st_size
            if have != size:
                raise IntegrityError(f"the file has {have} bytes, not {size}")
            if md5 is not None and napster_md5(part) != md5:
                raise IntegrityError("its Napster md5 does not match the search result")
            final = place_file(part, directory, name)
            state.unlink(missing_ok=True)
            return final

        self.service.runtime.offload(check_and_place, self._verified)

    def _verified(self, path: Path | None, exc: BaseException | None) -> None:
        if self.status != VERIFYING:
            return
        if exc is None and path is not None:
            self.status, self.path, self.error = COMPLETE, path, None
            self.service.runtime.observer.event(
                "napster.download_complete", name=self.name, path=str(path), size=self.size,
            )  # fmt: skip
            self.service._changed(self)
            return
        if isinstance(exc, IntegrityError):
            # Bad bytes: nothing of this partial can be trusted.
            try:
                self.part_path.unlink(missing_ok=True)
            except OSError:
                pass
            self.done = 0
            if self.source is not None:
                self.attempts[self.source.key] = MAX_SOURCE_ATTEMPTS
            self.service.runtime.observer.event(
                "napster.download_corrupt", name=self.name, error=str(exc),
                nick=self.source.nick if self.source else None,
            )  # fmt: skip
            if self._pick() is not None:
                self.status, self.error = QUEUED, f"corrupt: {exc}"
                self.schedule(0.0)
                return
            self._fail(f"corrupt: {exc}")
            return
        text = str(exc) if isinstance(exc, PeerlabError) else f"{type(exc).__name__}: {exc}"
        self._fail(text)

    def _fail(self, reason: str) -> None:
        self._close_fd()
        self.status, self.error, self.detail = FAILED, reason, ""
        self.service.runtime.observer.event("napster.download_failed", name=self.name,
                                            error=reason)
        self.service._changed(self)

    # -- user actions

    def stop_activity(self) -> None:
        """Drop the connection and timers (pause, cancel, close)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.service._forget_push(self)
        link = self.link
        self._detach()
        if link is not None:
            link.abort()
        self._requesting = False
        self._close_fd()


# ------------------------------------------------------------------ service


class NapsterTransfers:
    """Every Napster transfer of a node: downloads, uploads, the data port.

    Hook it to the client: ``client.on_online = transfers.online``,
    ``client.on_push_request = transfers.push_requested``,
    ``client.on_upload_request = transfers.upload_requested``,
    ``client.on_link_speed = transfers.link_speed``.  Listen with
    :meth:`handler_factory` on the data port (unless firewalled).
    """

    def __init__(
        self,
        runtime: Runtime,
        client: NapsterClient,
        catalog: CatalogLike,
        shares: ShareIndex,
        *,
        incomplete_dir: Path,
        download_dir: Path,
        config: TransfersConfig | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.catalog = catalog
        self.shares = shares
        self.config = config or TransfersConfig()
        self.bucket = bucket
        self.napster_dir = incomplete_dir / NAPSTER_DIR
        self.download_dir = download_dir
        self.closed = False
        self.on_change: Callable[[TransferInfo], None] | None = None
        self._downloads: dict[str, NapsterDownload] = {}
        self._pushes: dict[tuple[str, str], NapsterDownload] = {}
        self._uploads: list[_Upload] = []
        self._records: deque[_UploadRecord] = deque()
        self._handshakes: set[_Link] = set()
        self._pending_pushes = 0
        self._upload_ids = 0
        self._links: dict[str, int] = {}

    # -- wiring

    def handler_factory(self) -> Callable[[], StreamHandler]:
        """Handlers for connections on our data port."""
        return lambda: _Incoming(self)

    def link_speed(self, nick: str, link_type: LinkType) -> None:
        """A 601: ``nick``'s link type, for its rows in the transfers table."""
        self._links.pop(nick, None)
        self._links[nick] = int(link_type)
        while len(self._links) > MAX_KNOWN_LINKS:
            del self._links[next(iter(self._links))]
        for rec in self._records:
            if rec.nick == nick and rec.link is None:
                rec.link = int(link_type)

    def online(self) -> None:
        """The client logged in (again): downloads waiting for a server go on."""
        for dl in self._downloads.values():
            if dl.status == QUEUED:
                dl.schedule()

    def close(self) -> None:
        self.closed = True
        for dl in self._downloads.values():
            dl.stop_activity()
        for up in list(self._uploads):
            up._end(FAILED, "the node stopped")
            up.link.abort()
        for link in list(self._handshakes):
            link.abort()

    # -- downloads

    def add(
        self, *, name: str, size: int, md5: str, sources: list[NapsterSource]
    ) -> NapsterDownload:
        """Start (or add sources to) the download of the file (md5, size)."""
        key = download_id(md5, size)
        dl = self._downloads.get(key)
        if dl is None:
            dl = NapsterDownload(self, name=name, size=size, md5=md5, sources=sources)
            self._downloads[dl.id] = dl
        elif dl.add_sources(sources) and dl.status == QUEUED:
            dl.schedule()
        if dl.status == COMPLETE:
            return dl
        dl.save()
        dl.schedule()
        return dl

    def load(self) -> list[NapsterDownload]:
        """Pick up the partial downloads a previous run left (they go on once online)."""
        found = []
        try:
            states = sorted(self.napster_dir.glob(f"*{STATE_SUFFIX}"))
        except OSError:
            return []
        for path in states:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") != STATE_VERSION:
                    raise ValueError("unknown version")
                sources = [NapsterSource(str(n), str(f), int(lt)) for n, f, lt in data["sources"]]
                dl = NapsterDownload(self, name=str(data["name"]), size=int(data["size"]),
                                     md5=str(data["md5"]), sources=sources[:MAX_SOURCES])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.runtime.observer.event("napster.state_unreadable", path=str(path),
                                            error=str(exc))
                continue
            if dl.id in self._downloads or dl.state_path != path:
                continue
            try:
                dl.done = min(dl.part_path.stat().st_size, dl.size)
            except OSError:
                dl.done = 0
            if data.get("paused"):
                dl.status = PAUSED
            self._downloads[dl.id] = dl
            found.append(dl)
            dl.schedule()
        return found

    def get(self, ref: str) -> NapsterDownload | None:
        """A download by its id or a unique prefix of it (any case)."""
        ref = ref.strip().upper()
        dl = self._downloads.get(ref)
        if dl is not None:
            return dl
        hits = [d for k, d in self._downloads.items() if ref and k.startswith(ref)]
        return hits[0] if len(hits) == 1 else None

    def downloads(self) -> list[TransferInfo]:
        now = self.runtime.now()
        return [d.info(now) for d in self._downloads.values()]

    def pause(self, ref: str) -> None:
        dl = self._need(ref)
        if dl.status in (QUEUED, DOWNLOADING, FAILED):
            dl.stop_activity()
            dl.status, dl.detail = PAUSED, ""
            dl.save()

    def resume(self, ref: str) -> None:
        dl = self._need(ref)
        if dl.status in (PAUSED, FAILED):
            dl.status, dl.error, dl.detail = QUEUED, None, ""
            dl.attempts.clear()
            dl.total_attempts = 0
            dl.save()
            dl.schedule()

    def cancel(self, ref: str) -> None:
        dl = self._need(ref)
        dl.stop_activity()
        if dl.status != COMPLETE:
            for p in (dl.part_path, dl.state_path):
                try:
                    p.unlink(missing_ok=True)
                except OSError:
                    pass
        dl.status = FAILED if dl.status != COMPLETE else COMPLETE
        del self._downloads[dl.id]

    def clear_finished(self) -> int:
        done = [k for k, d in self._downloads.items() if d.status == COMPLETE]
        for k in done:
            del self._downloads[k]
        while self._records and self._records[0].status != UPLOADING:
            self._records.popleft()
        return len(done)

    def _need(self, ref: str) -> NapsterDownload:
        dl = self.get(ref)
        if dl is None:
            raise KeyError(ref)
        return dl

    def _changed(self, dl: NapsterDownload) -> None:
        if self.on_change is not None:
            self.on_change(dl.info(self.runtime.now()))

    def _expect_push(self, dl: NapsterDownload) -> None:
        assert dl.source is not None
        self._pushes[dl.source.key] = dl

    def _forget_push(self, dl: NapsterDownload) -> None:
        for key in [k for k, d in self._pushes.items() if d is dl]:
            del self._pushes[key]

    # -- uploads

    def uploads(self) -> list[TransferInfo]:
        now = self.runtime.now()
        return [r.info(now) for r in self._records]

    @property
    def active_uploads(self) -> int:
        return len(self._uploads) + self._pending_pushes

    def upload_requested(self, nick: str, filename: str, link_type: LinkType | None) -> bool:
        """A 607: accept when we share the file and a slot is free."""
        return self.shares.lookup(filename) is not None and (
            self.active_uploads < self.config.slots
        )

    def push_requested(
        self, nick: str, address: Address, filename: str, link_type: LinkType
    ) -> None:
        """A 501: we are firewalled; connect to ``nick`` at ``address`` and SEND."""
        if self.closed:
            return
        opened = self._open_shared(nick, filename)
        if opened is None:
            self.runtime.observer.event("napster.push_refused", nick=nick, filename=filename)
            return
        fd, file, entry = opened
        if self.active_uploads >= self.config.slots:
            os.close(fd)
            self.client.queue_limit(nick, filename, self.config.slots)
            return
        machine = OutgoingSend(self.client.nick, filename, int(file.size),
                               self.config.transfer, self.runtime.now())
        link = _Link(self, machine, f"{address[0]}:{address[1]}")
        push = _PendingPush(self, link, fd, nick, filename, int(file.size),
                            entry.md5 if entry else "", int(link_type))
        link.owner = push
        self._pending_pushes += 1
        link.dial(address, self.config.connect_timeout)

    def _open_shared(self, nick: str, filename: str) -> tuple[int, Any, ShareFile | None] | None:
        """The open file behind a name we shared, or ``None`` (not shared, gone,
        outside the shares: the HTTP service's checks, ``open_shared``)."""
        index = self.shares.lookup(filename)
        if index is None:
            return None
        file = self.catalog.by_index(index)
        if file is None:
            return None
        try:
            fd = open_shared(file, self.catalog.folders())
        except Exception as exc:  # open_shared's refusal is private to its module
            if getattr(exc, "traversal", False):
                self.runtime.observer.event("napster.upload_traversal", nick=nick,
                                            filename=filename, reason=str(exc))
            return None
        return fd, file, self.shares.entry(filename)

    def _new_record(
        self, nick: str, filename: str, size: int, offset: int, md5: str, link: int | None
    ) -> _UploadRecord:
        self._upload_ids += 1
        rec = _UploadRecord(f"NAPUP{self._upload_ids}", nick, display_name(filename), filename,
                            size, offset, md5, link)
        self._records.append(rec)
        while len(self._records) > MAX_UPLOAD_RECORDS:
            for old in self._records:
                if old.status != UPLOADING:
                    self._records.remove(old)
                    break
            else:
                break
        return rec

    def _upload_ended(self, up: _Upload) -> None:
        if up in self._uploads:
            self._uploads.remove(up)

    def _start_upload(self, link: _Link, rec: _UploadRecord, fd: int) -> None:
        up = _Upload(self, link, rec, fd)
        self._uploads.append(up)
        up.start()

    # -- incoming connections

    def _handshake_event(self, link: _Link, ev: Any) -> None:
        machine: IncomingTransfer = link.machine
        if isinstance(ev, GetRequested):
            self._handshakes.discard(link)
            self._serve_get(link, machine, ev)
        elif isinstance(ev, SendOffered):
            self._handshakes.discard(link)
            dl = self._pushes.pop((ev.nick, ev.filename), None)
            if dl is None or dl.status not in (QUEUED, DOWNLOADING) or dl.link is not None:
                self.runtime.observer.event("napster.unexpected_send", nick=ev.nick,
                                            filename=ev.filename)
                machine.refuse(INVALID_REQUEST)
                link.flush()
                link.close()
                return
            dl.take_push(link, ev)
        elif isinstance(ev, ConnectionClosed):
            link.close()

    def _serve_get(self, link: _Link, machine: IncomingTransfer, ev: GetRequested) -> None:
        opened = self._open_shared(ev.nick, ev.filename)
        if opened is None:
            self.runtime.observer.event("napster.upload_refused", nick=ev.nick,
                                        filename=ev.filename, reason=FILE_NOT_SHARED)
            machine.refuse(FILE_NOT_SHARED)
            link.flush()
            link.close()
            return
        fd, file, entry = opened
        size = int(file.size)
        if ev.offset > size:
            os.close(fd)
            machine.refuse(INVALID_REQUEST)
            link.flush()
            link.close()
            return
        if self.active_uploads >= self.config.slots:
            os.close(fd)
            self.client.queue_limit(ev.nick, ev.filename, self.config.slots)
            machine.refuse(SLOTS_FULL)
            link.flush()
            link.close()
            return
        machine.accept_get(size)
        link.flush()
        known = self._links.get(ev.nick)
        rec = self._new_record(ev.nick, ev.filename, size, ev.offset,
                               entry.md5 if entry else "", known)
        if known is None:
            # A GET does not say who is asking beyond a nick: ask the server.
            self.client.request_link_speed(ev.nick)
        self._start_upload(link, rec, fd)


class _PendingPush:
    """A SEND we dialled after a 501, until the downloader names its offset."""

    def __init__(
        self, service: NapsterTransfers, link: _Link, fd: int, nick: str, filename: str,
        size: int, md5: str, link_type: int,
    ) -> None:  # fmt: skip
        self.service = service
        self.link = link
        self.fd: int | None = fd
        self.nick = nick
        self.filename = filename
        self.size = size
        self.md5 = md5
        self.link_type = link_type
        self.done = False

    def _settle(self) -> None:
        if not self.done:
            self.done = True
            self.service._pending_pushes -= 1

    def link_event(self, link: _Link, ev: Any) -> None:
        service = self.service
        if isinstance(ev, OffsetRequested) and not self.done and self.fd is not None:
            self._settle()
            rec = service._new_record(self.nick, self.filename, self.size, ev.offset,
                                      self.md5, self.link_type)
            fd, self.fd = self.fd, None
            service._start_upload(link, rec, fd)
        elif isinstance(ev, TransferRefused):
            service.runtime.observer.event("napster.push_refused_by_peer", nick=self.nick,
                                           reason=ev.reason)
            self._release()
            link.close()
        elif isinstance(ev, ConnectionClosed):
            link.close()

    def link_closed(self, link: _Link, exc: Exception | None) -> None:
        if not self.done:
            self.service.runtime.observer.event(
                "napster.push_failed", nick=self.nick, error=str(exc) if exc else "closed"
            )
        self._release()

    def _release(self) -> None:
        self._settle()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


__all__ = [
    "COMPLETE",
    "DOWNLOADING",
    "FAILED",
    "PAUSED",
    "QUEUED",
    "VERIFYING",
    "NapsterDownload",
    "NapsterSource",
    "NapsterTransfers",
    "ShareIndex",
    "TransferInfo",
    "TransfersConfig",
    "display_name",
    "display_text",
    "download_id",
    "wire_text",
]
