"""The node: catalog, upload service, download manager and control API on one loop.

Issue 2, section 5.  A :class:`Node` composes the cores on the real runtime
(:class:`~peerlab.runtime.aio.AsyncioRuntime`):

* the share catalog (:class:`~peerlab.storage.catalog.Catalog`) in the data
  directory, rescanned at start in a worker thread with progress in the log;
* the upload service (:class:`~peerlab.overlays.transfer.server.UploadService`)
  listening for peers, Gnutella servent style;
* the download manager (:class:`~peerlab.overlays.transfer.download.DownloadManager`),
  which picks up partial downloads left by a crash or ``kill -9`` at start;
* searches over the local catalog and every configured peer (the direct
  ``/browse`` until the networks land), results grouped by ``urn:sha1`` with
  all their sources and numbered for the session, so ``peerlab download 3``
  names the third result;
* the control API (:mod:`peerlab.apps.control`) the CLI talks to.

One node owns a data directory: a lock file (``node.lock``, ``flock``) keeps a
second node, or a CLI command editing the catalog directly, out of it.  The
lock dies with the process, so a ``kill -9`` never leaves it stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import logging.handlers
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peerlab
from peerlab.apps.config import (
    CONTROL_HOST,
    NodeConfig,
    format_address,
    parse_address,
)
from peerlab.apps.control import CONTROL_FILE, ControlServer, NotFound
from peerlab.errors import (
    AddressInUse,
    ConfigError,
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
    StorageError,
)
from peerlab.overlays.transfer.browse import RemoteFile, browse
from peerlab.overlays.transfer.download import (
    DownloadConfig,
    DownloadInfo,
    DownloadManager,
    Source,
)
from peerlab.overlays.transfer.server import UploadConfig, UploadInfo, UploadService
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import Address, Listener
from peerlab.storage.catalog import Catalog, ScanProgress, SharedFile
from peerlab.wire.urn import b32, parse_sha1_urn, sha1_urn, unb32

log = logging.getLogger("peerlab.node")

LOCK_FILE = "node.lock"
LOG_FILE = "node.log"
CATALOG_FILE = "catalog.db"
#: The node's log rotates at this size, keeping this many old files: bounded disk.
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
#: Results remembered for the session (ids stay valid).  Bounds memory when a
#: script searches in a loop; the oldest are forgotten first.
MAX_RESULTS = 20_000
#: Files asked of each peer per search, and when looking a URN up by browsing
#: (the serving node caps its answer on its side too).
PEER_SEARCH_LIMIT = 500
URN_LOOKUP_LIMIT = 10_000
#: How long a search waits for a peer's answer before going on without it.
PEER_TIMEOUT = 10.0
#: Seconds between scan progress lines in the log.
SCAN_LOG_INTERVAL = 2.0
#: How often a node started with ``exit_with_parent`` checks its parent.
PARENT_CHECK_INTERVAL = 1.0
#: Event names (substrings) worth a line in the log at INFO; the rest go at DEBUG.
NOTABLE_EVENTS = ("fail", "error", "refus", "drop", "complete", "bad", "corrupt", "ban")
#: How long a stopping node waits for a scan to notice (a progress report comes
#: at least every 16 MiB hashed, well under a second).
SCAN_STOP_WAIT = 10.0
FIELDS = ("all", "title", "artist", "album")
LOCAL = "local"


# ---------------------------------------------------------------- utilities


class ScanCancelled(PeerlabError):
    """Raised from the scan's progress callback to end a scan early."""


def setup_logging(config: NodeConfig, *, console: bool = True) -> Path:
    """Log to ``<data_dir>/node.log`` (rotated) and, in the foreground, to stderr."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / LOG_FILE
    root = logging.getLogger("peerlab")
    root.setLevel(getattr(logging, config.log_level.upper()))
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    fh = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if console:
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        root.addHandler(sh)
    root.propagate = False
    return path


def open_catalog(config: NodeConfig) -> Catalog:
    """The data dir's catalog, never listing the node's own files.

    Even when a shared folder contains the data dir, partial downloads, the
    log and above all the control file (its token) are never shared.
    """
    private = [config.incomplete_path] + [
        config.data_dir / name for name in (CONTROL_FILE, LOCK_FILE, LOG_FILE)
    ]
    return Catalog(config.data_dir / CATALOG_FILE, exclude=private)


class DataDirLock:
    """An exclusive ``flock`` on ``<data_dir>/node.lock``: one owner per data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, what: str = "node") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"data dir {self.path.parent} is in use by another peerlab node "
                f"(a {what} needs it to itself; stop the other one or use --data-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def data_dir_locked(data_dir: Path) -> bool:
    """Does some process (a node) hold this data dir's lock right now?"""
    path = data_dir / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class NodeObserver:
    """The runtime's observer in a node: counters kept, events sent to the log."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.log = logging.getLogger("peerlab.events")

    def event(self, name: str, /, **fields: Any) -> None:
        level = logging.INFO if any(k in name for k in NOTABLE_EVENTS) else logging.DEBUG
        if self.log.isEnabledFor(level):
            detail = " ".join(f"{k}={v!r}" for k, v in fields.items())
            self.log.log(level, "%s %s", name, detail)
        self.counters["event." + name] += 1

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n


def jsonable(value: Any) -> Any:
    """Dataclasses, addresses, paths and digests as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    ):
        return format_address((value[0], value[1]))
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return b32(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _words_match(text: str, value: str | None) -> bool:
    if not value:
        return False
    hay = value.lower()
    return all(w in hay for w in text.lower().split())


def _normal_urn(text: str) -> str:
    try:
        return sha1_urn(parse_sha1_urn(text))
    except (RemoteProtocolError, ValueError):
        raise ConfigError(f"not a result id or urn:sha1 URN: {text!r}") from None


# ------------------------------------------------------------------ results


@dataclass
class SourceRef:
    """One place a result can be fetched from."""

    address: Address | None  # None: our own catalog
    index: int | None
    name: str

    @property
    def key(self) -> str:
        return LOCAL if self.address is None else format_address(self.address)


@dataclass
class Result:
    """One file found by a search, with every source that has it."""

    id: int
    urn: str
    name: str
    size: int
    chunk_root: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, SourceRef] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "urn": self.urn,
            "name": self.name,
            "size": self.size,
            **{k: jsonable(v) for k, v in self.meta.items()},
            "chunk_root": b32(self.chunk_root) if self.chunk_root else None,
            "sources": [s.key for s in self.sources.values()],
            "local": LOCAL in self.sources,
        }


META_KEYS = ("kind", "title", "artist", "album", "genre", "bitrate", "duration")


class Results:
    """Search results of the session, numbered 1, 2, 3... stable per URN."""

    def __init__(self, limit: int = MAX_RESULTS) -> None:
        self.limit = limit
        self._by_id: dict[int, Result] = {}
        self._by_urn: dict[str, Result] = {}
        self._next = 1

    def note(
        self,
        *,
        urn: str,
        name: str,
        size: int,
        source: SourceRef,
        chunk_root: bytes | None,
        meta: dict[str, Any],
    ) -> Result:
        r = self._by_urn.get(urn)
        if r is None:
            r = Result(self._next, urn, name, size, chunk_root, dict(meta))
            self._next += 1
            self._by_id[r.id] = r
            self._by_urn[urn] = r
            while len(self._by_id) > self.limit:
                oldest = next(iter(self._by_id))
                del self._by_urn[self._by_id.pop(oldest).urn]
        else:
            if r.chunk_root is None and chunk_root is not None:
                r.chunk_root = chunk_root
            for k, v in meta.items():
                if r.meta.get(k) is None and v is not None:
                    r.meta[k] = v
        r.sources[source.key] = source
        return r

    def by_id(self, result_id: int) -> Result | None:
        return self._by_id.get(result_id)

    def by_urn(self, urn: str) -> Result | None:
        return self._by_urn.get(urn)

    def all(self) -> list[Result]:
        return list(self._by_id.values())

    def id_range(self) -> str:
        if not self._by_id:
            return "none yet"
        ids = list(self._by_id)
        return f"{min(ids)}-{max(ids)}"


# --------------------------------------------------------------------- node


class Node:
    """A running peerlab node.  ``await node.start()``, then ``await node.wait()``."""

    def __init__(self, config: NodeConfig, *, exit_with_parent: bool = False) -> None:
        self.config = config
        self.exit_with_parent = exit_with_parent
        self.observer = NodeObserver()
        self.found = Results()
        self.peer_list: list[str] = list(dict.fromkeys(config.peers))
        self.started_at = time.time()
        self.listen_address: Address | None = None
        self._lock = DataDirLock(config.data_dir)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scan_task: asyncio.Future[Any] | None = None
        self._scan: dict[str, Any] = {"running": False, "progress": None, "report": None,
                                      "error": None, "started": None, "finished": None}
        self._scan_logged = 0.0
        self._stack = contextlib.AsyncExitStack()
        self.control: ControlServer | None = None

    # Set by start().
    runtime: AsyncioRuntime
    catalog: Catalog
    uploads: UploadService
    downloads: DownloadManager
    listener: Listener

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open everything; raises a one-line :class:`PeerlabError` on a user mistake."""
        cfg = self.config
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise StorageError(f"cannot create data dir {cfg.data_dir}: {e.strerror}") from None
        self._lock.acquire()
        self._stack.callback(self._lock.release)
        try:
            for d in (cfg.downloads_path, cfg.incomplete_path):
                try:
                    d.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StorageError(f"cannot create {d}: {e.strerror}") from None
                if not os.access(d, os.W_OK):
                    raise StorageError(f"folder {d} is not writable")
            loop = asyncio.get_running_loop()
            self.runtime = AsyncioRuntime(loop, observer=self.observer)
            self._stack.callback(self.runtime.close)

            self.catalog = open_catalog(cfg)
            self._stack.callback(self.catalog.close)
            for folder in cfg.shared:
                await self._add_folder(folder)

            self.uploads = UploadService(
                self.runtime,
                self.catalog,
                UploadConfig(
                    slots=cfg.upload_slots,
                    queue_limit=cfg.queue_length,
                    rate_limit=float(cfg.upload_rate),
                ),
                vendor=f"peerlab/{peerlab.__version__}",
            )
            self._stack.callback(self.uploads.close)
            try:
                self.listener = self.runtime.listen(
                    (cfg.listen_host, cfg.listen_port), self.uploads.handler_factory()
                )
            except AddressInUse:
                raise AddressInUse(
                    f"cannot listen for peers on {cfg.listen_host}:{cfg.listen_port}: "
                    "the port is already in use (choose another with --listen-port, "
                    "or 0 for any free port)"
                ) from None
            except NetworkError as e:
                raise NetworkError(
                    f"cannot listen for peers on {cfg.listen_host}:{cfg.listen_port}: {e}"
                ) from None
            self._stack.callback(self.listener.close)
            self.listen_address = self.listener.address

            self.downloads = DownloadManager(
                self.runtime,
                incomplete_dir=cfg.incomplete_path,
                download_dir=cfg.downloads_path,
                config=DownloadConfig(rate_limit=float(cfg.download_rate)),
            )
            self._stack.callback(self.downloads.close)
            self.downloads.on_change = self._download_changed
            self.downloads.load()
            resumed = self.downloads.downloads()
            if resumed:
                log.info("resuming %d download(s) found in %s", len(resumed), cfg.incomplete_path)

            self.control = ControlServer(self, cfg.data_dir, port=cfg.control_port)
            await self.control.start({"peer_port": self.listen_address[1]})
            self._stack.push_async_callback(self.control.close)
        except BaseException:
            await self._stack.aclose()
            raise

        assert self.listen_address is not None
        log.info(
            "node ready: peers on %s, control on %s:%d, data in %s",
            format_address(self.listen_address), CONTROL_HOST, self.control.port, cfg.data_dir,
        )
        self.start_scan()
        if self.exit_with_parent:
            self._spawn(self._watch_parent(os.getppid()))

    async def wait(self) -> None:
        """Until :meth:`request_stop` (the control API's shutdown, or a signal)."""
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Close everything, persisting download state; idempotent."""
        self._stop.set()
        for task in list(self._tasks):
            task.cancel()
        if self._scan_task is not None and not self._scan_task.done():
            log.info("waiting for the scan in progress to stop")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._scan_task), SCAN_STOP_WAIT)
        await self._stack.aclose()
        log.info("node stopped")

    async def run(self) -> None:
        """start, wait, stop."""
        await self.start()
        try:
            await self.wait()
        finally:
            await self.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_parent(self, parent: int) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(PARENT_CHECK_INTERVAL)
            if os.getppid() != parent:
                log.info("parent process %d went away: stopping", parent)
                self.request_stop()

    def _download_changed(self, info: DownloadInfo) -> None:
        if info.status in ("complete", "failed"):
            log.info("download %s: %s %s", info.status, info.name, info.error or info.path or "")

    # ----------------------------------------------------------------- shares

    async def _add_folder(self, folder: Path) -> Path:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise StorageError(f"no such folder: {path}")
        return Path(await asyncio.to_thread(self.catalog.add_folder, path))

    def shares(self, with_files: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "folders": [str(p) for p in self.catalog.folders()],
            "count": self.catalog.count(),
        }
        if with_files:
            out["files"] = [shared_file_json(f) for f in self.catalog.files()]
        return out

    async def add_share(self, path: str) -> dict[str, Any]:
        added = await self._add_folder(Path(path))
        log.info("sharing %s", added)
        self.start_scan()
        return {"added": str(added), **self.scan_state()}

    async def remove_share(self, path: str) -> dict[str, Any]:
        target = Path(path).expanduser().absolute()
        folders = [Path(p) for p in self.catalog.folders()]
        if target not in folders and target.resolve() not in folders:
            raise NotFound(f"{path} is not a shared folder")
        await asyncio.to_thread(self.catalog.remove_folder, target)
        return {"removed": str(target)}

    def start_scan(self) -> dict[str, Any]:
        """Rescan the shares in a worker (no-op while one runs)."""
        if self._scan["running"]:
            return self.scan_state()
        self._scan.update(running=True, progress=None, error=None, started=time.time(),
                          finished=None)
        log.info("scanning %d shared folder(s)", len(self.catalog.folders()))
        fut = asyncio.ensure_future(asyncio.to_thread(self.catalog.scan, self._scan_progress))
        self._scan_task = fut
        fut.add_done_callback(self._scan_done)
        return self.scan_state()

    def _scan_progress(self, progress: ScanProgress) -> None:
        # Runs in the worker thread: plain assignments only, and the log is thread-safe.
        # Raising here is how a stopping node ends a long scan: the catalog
        # lets the exception through and keeps what it stored so far.
        if self._stop.is_set():
            raise ScanCancelled("the node is stopping")
        state = jsonable(progress)
        self._scan["progress"] = state
        now = time.monotonic()
        if now - self._scan_logged >= SCAN_LOG_INTERVAL:
            self._scan_logged = now
            log.info("scan: %s", _progress_line(state))

    def _scan_done(self, fut: asyncio.Future[Any]) -> None:
        self._scan.update(running=False, finished=time.time())
        if fut.cancelled():
            self._scan["error"] = "cancelled"
            return
        exc = fut.exception()
        if isinstance(exc, ScanCancelled):
            self._scan["error"] = "cancelled"
            return
        if exc is not None:
            self._scan["error"] = str(exc)
            log.error("scan failed: %s", exc)
            return
        report = jsonable(fut.result())
        self._scan["report"] = report
        log.info("scan done: %s", _progress_line(report))

    def scan_state(self) -> dict[str, Any]:
        return dict(self._scan)

    # ----------------------------------------------------------------- search

    async def search(self, text: str, field: str, limit: int) -> list[dict[str, Any]]:
        """Local catalog and every peer at once; results grouped by urn."""
        if field not in FIELDS:
            raise ConfigError(f"unknown search field {field!r} (use one of {', '.join(FIELDS)})")
        if not text.strip():
            raise ConfigError("a search needs at least one word")
        peers = list(self.peer_list)  # the list may change while we wait
        remote = asyncio.gather(
            *(self._browse_peer(p, text, PEER_SEARCH_LIMIT) for p in peers),
            return_exceptions=True,
        )
        try:
            local_files = await asyncio.to_thread(
                self.catalog.search, text, field=field, limit=limit
            )
        except BaseException:
            remote.cancel()
            raise
        answers = await remote
        found: dict[int, Result] = {}
        for f in local_files:
            r = self._note_local(f)
            found.setdefault(r.id, r)
        for peer, files in zip(peers, answers, strict=True):
            if isinstance(files, BaseException):
                log.warning("search: peer %s did not answer: %s", peer, files)
                continue
            for rf in files:
                if field != "all" and not _words_match(text, getattr(rf, field, None)):
                    continue
                r = self._note_remote(rf)
                found.setdefault(r.id, r)
        ordered = sorted(found.values(), key=lambda r: -len(r.sources))
        return [r.to_json() for r in ordered[:limit]]

    def _note_local(self, f: SharedFile) -> Result:
        return self.found.note(
            urn=f.urn,
            name=f.name,
            size=f.size,
            source=SourceRef(None, f.index, f.name),
            chunk_root=f.chunk_root,
            meta={k: getattr(f, k, None) for k in META_KEYS},
        )

    def _note_remote(self, rf: RemoteFile) -> Result:
        # The browse client checked the chunk root is 32 bytes of base32.
        root = unb32(rf.chunk_root) if rf.chunk_root else None
        address = (str(rf.address[0]), int(rf.address[1]))
        return self.found.note(
            urn=_normal_urn(rf.urn),
            name=rf.name,
            size=int(rf.size),
            source=SourceRef(address, rf.index, rf.name),
            chunk_root=root,
            meta={k: getattr(rf, k, None) for k in META_KEYS},
        )

    async def _browse_peer(self, peer: str, text: str, limit: int) -> list[RemoteFile]:
        address = parse_address(peer, "peer")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[RemoteFile]] = loop.create_future()

        def done(files: list[RemoteFile] | None, exc: Exception | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(list(files or []))

        browse(self.runtime, address, text, limit, done, timeout=PEER_TIMEOUT)
        return await asyncio.wait_for(fut, PEER_TIMEOUT + 5.0)

    async def browse(self, address: str, text: str, limit: int) -> list[dict[str, Any]]:
        """Every file (or those matching ``text``) one peer shares, numbered like results."""
        peer = format_address(parse_address(address, "browse"))
        try:
            files = await self._browse_peer(peer, text, limit)
        except PeerlabError as e:
            raise NetworkError(f"cannot browse {peer}: {e}") from None
        except (TimeoutError, OSError) as e:
            raise NetworkError(f"cannot browse {peer}: {e or 'no answer'}") from None
        return [self._note_remote(rf).to_json() for rf in files]

    def results(self) -> list[dict[str, Any]]:
        """Every result of the session, by id."""
        return [r.to_json() for r in self.found.all()]

    # -------------------------------------------------------------- downloads

    async def download(self, ref: str) -> dict[str, Any]:
        """Start (or add sources to) the download of a result id or a URN."""
        ref = ref.strip()
        if ref.isdigit():
            result = self.found.by_id(int(ref))
            if result is None:
                raise NotFound(
                    f"unknown result id {ref} (ids of this session: {self.found.id_range()}; "
                    "run 'peerlab search' first)"
                )
        else:
            urn = _normal_urn(ref)
            result = self.found.by_urn(urn) or await self._find_urn(urn)
        sources = [
            Source(s.address, s.index, s.name)
            for s in result.sources.values()
            if s.address is not None
        ]
        if not sources:
            raise ConfigError(f"{result.name} is in your own shares already; no peer has it")
        self.downloads.add(
            result.urn, name=result.name, size=result.size, sources=sources,
            chunk_root=result.chunk_root,
        )
        log.info("download %s from %d source(s)", result.name, len(sources))
        info = self._download_info(result.urn)
        return {"result": result.to_json(), "download": info}

    async def _find_urn(self, urn: str) -> Result:
        """Ask every peer for its list and keep those that have ``urn``."""
        if not self.peer_list:
            raise NotFound(f"no peer is configured to ask for {urn} (add one with --peer)")
        answers = await asyncio.gather(
            *(self._browse_peer(p, "", URN_LOOKUP_LIMIT) for p in self.peer_list),
            return_exceptions=True,
        )
        for files in answers:
            if isinstance(files, BaseException):
                continue
            for rf in files:
                if _normal_urn(rf.urn) == urn:
                    self._note_remote(rf)
        result = self.found.by_urn(urn)
        if result is None:
            raise NotFound(f"none of the {len(self.peer_list)} peer(s) has {urn}")
        return result

    def _download_info(self, id_or_urn: str) -> dict[str, Any] | None:
        dl = self.downloads.get(id_or_urn)
        return download_json(dl.info()) if dl is not None else None

    def control_download(self, download_id: str, action: str) -> dict[str, Any]:
        """pause, resume or cancel a download named by its id (or a prefix of it, or urn)."""
        dl = self.downloads.get(download_id)
        if dl is None:
            raise NotFound(f"no download {download_id!r} (see 'peerlab transfers')")
        info = dl.info()
        getattr(self.downloads, action)(info.id)
        log.info("download %s: %s", info.name, action)
        after = self._download_info(info.id)
        return {"download": after or {**download_json(info), "status": "cancelled"}}

    def clear_finished(self) -> dict[str, Any]:
        before = len(self.downloads.downloads())
        self.downloads.clear_finished()
        return {"cleared": before - len(self.downloads.downloads())}

    def transfers(self) -> dict[str, Any]:
        downloads = [download_json(d) for d in self.downloads.downloads()]
        uploads = [upload_json(u) for u in self.uploads.uploads()]
        return {
            "downloads": downloads,
            "uploads": uploads,
            "concurrent_downloads": sum(d["status"] == "downloading" for d in downloads),
            "concurrent_uploads": sum(u["status"] == "uploading" for u in uploads),
        }

    # ------------------------------------------------------------------ peers

    def peers(self) -> list[str]:
        return list(self.peer_list)

    def add_peer(self, address: str) -> list[str]:
        peer = format_address(parse_address(address, "peer"))
        if peer not in self.peer_list:
            self.peer_list.append(peer)
            log.info("peer added: %s", peer)
        return self.peers()

    def remove_peer(self, address: str) -> list[str]:
        peer = format_address(parse_address(address, "peer"))
        if peer not in self.peer_list:
            raise NotFound(f"{peer} is not one of the peers")
        self.peer_list.remove(peer)
        return self.peers()

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        assert self.listen_address is not None and self.control is not None
        t = self.transfers()
        return {
            "version": peerlab.__version__,
            "pid": os.getpid(),
            "data_dir": str(self.config.data_dir),
            "listen": format_address(self.listen_address),
            "control_port": self.control.port,
            "uptime": round(time.time() - self.started_at, 1),
            "shares": {"folders": len(self.catalog.folders()), "files": self.catalog.count()},
            "scan": self.scan_state(),
            "peers": self.peers(),
            "download_dir": str(self.config.downloads_path),
            "upload_slots": self.config.upload_slots,
            "upload_rate": self.config.upload_rate,
            "download_rate": self.config.download_rate,
            "downloads": len(t["downloads"]),
            "uploads": len(t["uploads"]),
            "concurrent_downloads": t["concurrent_downloads"],
            "concurrent_uploads": t["concurrent_uploads"],
            "counters": dict(sorted(self.observer.counters.items())),
        }


# ------------------------------------------------------------ JSON shapes


def shared_file_json(f: SharedFile) -> dict[str, Any]:
    return {
        "index": f.index,
        "name": f.name,
        "path": str(f.path),
        "size": f.size,
        "urn": f.urn,
        **{k: getattr(f, k, None) for k in META_KEYS},
    }


def download_json(info: DownloadInfo) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(info)
    out["id"] = str(info.id)
    return out


def upload_json(info: UploadInfo) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(info)
    return out


def _progress_line(state: Any) -> str:
    if isinstance(state, dict):
        return ", ".join(f"{k}={v}" for k, v in state.items() if not isinstance(v, list | dict))
    return str(state)
