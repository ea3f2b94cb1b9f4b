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
* with ``--napster HOST:PORT,...`` (issue 3, sections 3 and 4): a Napster
  client (:mod:`peerlab.overlays.napster.client`) logged in to the first
  index server that answers, sharing the catalog, failing over to the next
  server; its search results join the others (grouped with a known file by
  Napster md5 and size), and its downloads and uploads
  (:mod:`peerlab.overlays.napster.peer`) run on a data port of their own and
  show in the same transfers table;
* with ``--gnutella HOST:PORT,...`` (or ``--gwebcache URL``,
  ``--gnutella-serve``; issue 4, sections 2 and 3): a Gnutella 0.6 servent
  (:mod:`peerlab.overlays.gnutella`) sharing the catalog on the node's own
  peer port, which then tells each incoming connection by its first bytes
  (:mod:`peerlab.overlays.transfer.push`: ``GNUTELLA CONNECT`` to the
  servent, HTTP to the upload service, ``GIV`` to the download manager).
  Its hits join the search results grouped by ``urn:sha1`` with every
  source (host, speed, busy/stable/push flags); downloads swarm over every
  source through the download manager, firewalled ones by Push/GIV; a Push
  naming us makes the upload service connect out and send ``GIV``;
* the control API (:mod:`peerlab.apps.control`) the CLI talks to, and on
  the same port the web page (:mod:`peerlab.web`, issue 8), which follows
  the node live: searches stream per network (``search(on_found=...)``),
  observer events reach its monitor (``NodeObserver.listeners``), and rate
  limits and upload slots change while the node runs (``apply_settings``);
* a BitTorrent client (issue 6, item 6; :mod:`peerlab.apps.torrents`):
  torrents added with ``peerlab torrent add`` download and seed on a
  listener of their own, kept over restarts and ``kill -9``, shown in the
  same transfers table.

One node owns a data directory: a lock file (``node.lock``, ``flock``) keeps a
second node, or a CLI command editing the catalog directly, out of it.  The
lock dies with the process, so a ``kill -9`` never leaves it stale.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import fcntl
import json
import logging
import logging.handlers
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peerlab
from peerlab.apps.bt_dht import dht_status, resolve_bootstrap, start_node_dht
from peerlab.apps.config import (
    CONTROL_HOST,
    MAX_UPLOAD_SLOTS,
    NodeConfig,
    format_address,
    parse_address,
    parse_rate,
)
from peerlab.apps.control import CONTROL_FILE, ControlServer, NotFound, write_private_json
from peerlab.apps.torrents import STATE_DIR as TORRENT_STATE_DIR
from peerlab.apps.torrents import NodeTorrents
from peerlab.errors import (
    AddressInUse,
    ConfigError,
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
    StorageError,
)
from peerlab.overlays.dht import DhtNode
from peerlab.overlays.gnutella import HitSource, SearchResult, Servent, ServentConfig
from peerlab.overlays.gnutella.counters import TYPE_NAMES
from peerlab.overlays.gnutella.pushproxy import ProxyBook, request_push
from peerlab.overlays.gnutella.roles import RolePolicy
from peerlab.overlays.gnutella.search import result_metadata
from peerlab.overlays.napster.client import (
    CLOSED,
    ONLINE,
    ClientConfig,
    NapsterClient,
    NapsterHit,
    NapsterLoginRefused,
)
from peerlab.overlays.napster.peer import (
    NapsterSource,
    NapsterTransfers,
    ShareIndex,
    TransferInfo,
    TransfersConfig,
    display_name,
    display_text,
    md5_of_announced,
    wire_text,
)
from peerlab.overlays.transfer.browse import RemoteFile, browse
from peerlab.overlays.transfer.download import (
    DownloadConfig,
    DownloadInfo,
    DownloadManager,
    PushRequest,
    Source,
)
from peerlab.overlays.transfer.push import shared_port_factory
from peerlab.overlays.transfer.server import UploadConfig, UploadInfo, UploadService
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import Address, Listener, StreamHandler
from peerlab.storage.catalog import Catalog, ScanProgress, SharedFile
from peerlab.web import WebSettings, WebUI
from peerlab.web.auth import WEB_FILE
from peerlab.wire.gnutella import Push
from peerlab.wire.gxml import RichQuery
from peerlab.wire.napster import (
    MAX_SEARCH_RESULTS,
    Compare,
    Constraint,
    LinkType,
    SearchField,
    SearchQuery,
)
from peerlab.wire.urn import b32, parse_sha1_urn, sha1_urn, unb32

log = logging.getLogger("peerlab.node")

LOCK_FILE = "node.lock"
LOG_FILE = "node.log"
CATALOG_FILE = "catalog.db"
#: The generated Napster nick and password (mode 0600), when the config names none.
NAPSTER_FILE = "napster.json"
#: How long a starting node waits for its first Napster login to succeed or be
#: refused (a refusal stops the node with the server's words); servers that
#: do not answer in time are tried again in the background.
NAPSTER_START_WAIT = 15.0
#: Poll interval of that wait.
NAPSTER_POLL = 0.05
#: Bytes of randomness in a generated Napster password (printable, no spaces).
NAPSTER_PASSWORD_BYTES = 18
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
#: Largest minimum bitrate (kbit/s) or length (seconds) a search filters on
#: (Napster's numbers are 32-bit; no audio file is longer than a year).
MAX_FILTER_VALUE = 31_536_000
#: Longest rich-query XML put in a Gnutella Query: a Query is flooded to
#: every neighbour, so it stays small (a filled form is about 170 bytes);
#: longer, the query goes as keywords and the answers are filtered here alone.
MAX_QUERY_XML = 512
LOCAL = "local"
#: The networks a search can ask: our own catalog, the configured peers
#: (direct ``/browse``), Napster.  Gnutella and BitTorrent join this list when
#: the node joins them.
PEERS = "peers"
NAPSTER = "napster"
GNUTELLA = "gnutella"
SEARCH_NETWORKS = (LOCAL, PEERS, NAPSTER, GNUTELLA)
#: The Gnutella host cache, kept across runs (hostcache.py).
GNUTELLA_HOSTS_FILE = "gnutella_hosts.json"
#: A Gnutella search has no end (hits trickle back along the reverse path,
#: RFC-Gnutella 0.6 section 2.2.7): the node collects for at most this long,
#: and returns early once hits came and none arrived for GNUTELLA_QUIET s.
GNUTELLA_SEARCH_WAIT = 4.0
GNUTELLA_QUIET = 1.0
#: Poll interval of that wait.
GNUTELLA_POLL = 0.05
#: Push proxies of one firewalled source asked at once for a Push (each
#: relays the same Push one hop; two survive one proxy having gone).
PUSH_PROXIES_TRIED = 2
#: Peers whose last answer is remembered for the web page's Network tab.
MAX_PEER_STATES = 1024


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
    log and above all the control file (its token), the web page's key
    (``web.json``) and the BitTorrent state (``bittorrent/``) are never shared.
    """
    private = [config.incomplete_path, config.data_dir / TORRENT_STATE_DIR] + [
        config.data_dir / name
        for name in (CONTROL_FILE, LOCK_FILE, LOG_FILE, NAPSTER_FILE, WEB_FILE, GNUTELLA_HOSTS_FILE)
    ]
    return Catalog(config.data_dir / CATALOG_FILE, exclude=private)


def napster_credentials(config: NodeConfig) -> tuple[str, str]:
    """The Napster nick and password: the config's, else generated once and kept.

    Generated values live in ``<data_dir>/napster.json`` (mode 0600), so the
    node logs in as the same registered nick every time.
    """
    path = config.data_dir / NAPSTER_FILE
    stored: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            stored = {k: v for k, v in loaded.items() if isinstance(v, str) and v}
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    nick = config.napster_nick or stored.get("nick")
    password = config.napster_password or stored.get("password")
    changed = False
    if not nick:
        nick = f"peerlab{secrets.randbelow(10**6):06d}"
        stored["nick"] = nick
        changed = True
    if not password:
        password = secrets.token_urlsafe(NAPSTER_PASSWORD_BYTES)
        stored["password"] = password
        changed = True
    if changed:
        try:
            write_private_json(path, stored)
        except OSError as e:
            raise StorageError(f"cannot write {path}: {e.strerror or e}") from None
    return nick, password


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
    """The runtime's observer in a node: counters kept, events sent to the log
    and to ``listeners`` (the web page's monitor of passing queries)."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.log = logging.getLogger("peerlab.events")
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def event(self, name: str, /, **fields: Any) -> None:
        level = logging.INFO if any(k in name for k in NOTABLE_EVENTS) else logging.DEBUG
        if self.log.isEnabledFor(level):
            detail = " ".join(f"{k}={v!r}" for k, v in fields.items())
            self.log.log(level, "%s %s", name, detail)
        self.counters["event." + name] += 1
        for listener in self.listeners:
            try:
                listener(name, fields)
            except Exception:  # a listener's bug must not break the core reporting
                self.log.exception("event listener failed on %s", name)

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
    """One place a result can be fetched from: our catalog (no address), a
    peer's HTTP service (its address), or a Napster user (``nick``)."""

    address: Address | None  # None: our own catalog, or a Napster user
    index: int | None
    name: str
    #: Napster: the sharer's nick, link type and the name it shared (wire text).
    nick: str | None = None
    link: int | None = None
    filename: str | None = None
    bitrate: int | None = None
    md5: str | None = None
    #: Gnutella: the Query Hit's servent GUID, its QHD flags (``None``: not
    #: stated), stated speed (kbit/s), vendor code and hops away.
    servent_guid: bytes | None = None
    push: bool | None = None
    busy: bool | None = None
    stable: bool | None = None
    speed: int | None = None
    vendor: str | None = None
    distance: int | None = None

    @property
    def key(self) -> str:
        if self.nick is not None:
            return NAPSTER_PREFIX + self.nick
        if self.push and self.servent_guid is not None:
            return f"push:{self.servent_guid.hex()}"
        return LOCAL if self.address is None else format_address(self.address)

    @property
    def napster(self) -> bool:
        return self.nick is not None

    @property
    def gnutella(self) -> bool:
        return self.servent_guid is not None

    def transfer_source(self) -> Source | None:
        """The download manager's source for this one (``None``: ours, or Napster)."""
        if self.address is None:
            return None
        if self.push and self.servent_guid is not None and self.index is not None:
            return Source(self.address, self.index, self.name,
                          servent_guid=self.servent_guid, push=True)  # fmt: skip
        return Source(self.address, self.index, self.name)


#: Source keys of Napster users: ``napster:<nick>``.
NAPSTER_PREFIX = "napster:"
#: Words of a Napster search: anything but quotes (the protocol cannot carry
#: one inside a quoted field, napster.txt section 2) and control characters.
_NAPSTER_WORD = re.compile(r'[^\s"\x00-\x1f\x7f]+')


@dataclass
class Result:
    """One file found by a search, with every source that has it.

    A file is named by its ``urn:sha1`` when any source told it (our catalog,
    a peer's HTTP service); a file only Napster users have is named by its
    Napster md5 and size, all Napster can tell (napster.txt, "MD5").
    """

    id: int
    urn: str | None
    name: str
    size: int
    chunk_root: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, SourceRef] = field(default_factory=dict)
    napster_md5: str | None = None

    def napster_sources(self) -> list[SourceRef]:
        return [s for s in self.sources.values() if s.napster]

    def to_json(self) -> dict[str, Any]:
        users = [
            {"nick": s.nick, "link": _link_label(s.link), "link_type": s.link,
             "bitrate": s.bitrate, "filename": display_text(s.filename or "")}
            for s in self.napster_sources()
        ]  # fmt: skip
        out = {
            "id": self.id,
            "urn": self.urn,
            "name": self.name,
            "size": self.size,
            **{k: jsonable(v) for k, v in self.meta.items()},
            "chunk_root": b32(self.chunk_root) if self.chunk_root else None,
            "sources": [s.key for s in self.sources.values()],
            "hosts": [
                {"host": format_address(s.address) if s.address else None,
                 "speed": s.speed, "busy": s.busy, "stable": s.stable, "push": s.push,
                 "vendor": s.vendor, "distance": s.distance}
                for s in self.sources.values() if s.gnutella
            ],
            "local": LOCAL in self.sources,
        }
        if self.napster_md5 is not None or users:
            out["napster_md5"] = self.napster_md5
            out["users"] = users
            out["user"] = users[0]["nick"] if users else None
            out["link"] = users[0]["link"] if users else None
        return out


META_KEYS = ("kind", "title", "artist", "album", "genre", "bitrate", "duration")


def _link_label(link: int | None) -> str:
    try:
        return LinkType(int(link or 0)).label
    except ValueError:
        return LinkType.UNKNOWN.label


class Results:
    """Search results of the session, numbered 1, 2, 3... stable per file.

    A file is one result however it was found: by ``urn:sha1``, or by Napster
    md5 and size once either is known for it.
    """

    def __init__(self, limit: int = MAX_RESULTS) -> None:
        self.limit = limit
        self._by_id: dict[int, Result] = {}
        self._by_urn: dict[str, Result] = {}
        self._by_md5: dict[tuple[str, int], Result] = {}
        self._next = 1

    def note(
        self,
        *,
        urn: str | None,
        name: str,
        size: int,
        source: SourceRef,
        chunk_root: bytes | None,
        meta: dict[str, Any],
        napster_md5: str | None = None,
    ) -> Result:
        md5_key = (napster_md5.lower(), size) if napster_md5 else None
        r = self._by_urn.get(urn) if urn else None
        if r is None and md5_key is not None:
            r = self._by_md5.get(md5_key)
        if r is None:
            r = Result(self._next, urn, name, size, chunk_root, dict(meta))
            self._next += 1
            self._by_id[r.id] = r
            while len(self._by_id) > self.limit:
                self._forget(self._by_id[next(iter(self._by_id))])
        else:
            if r.chunk_root is None and chunk_root is not None:
                r.chunk_root = chunk_root
            for k, v in meta.items():
                if r.meta.get(k) is None and v is not None:
                    r.meta[k] = v
        if urn and r.urn is None:
            r.urn = urn
        if r.urn:
            self._by_urn[r.urn] = r
        if md5_key is not None and r.size == size and r.napster_md5 in (None, md5_key[0]):
            r.napster_md5 = md5_key[0]
            self._by_md5[md5_key] = r
        r.sources[source.key] = source
        return r

    def _forget(self, r: Result) -> None:
        del self._by_id[r.id]
        if r.urn and self._by_urn.get(r.urn) is r:
            del self._by_urn[r.urn]
        if r.napster_md5 and self._by_md5.get((r.napster_md5, r.size)) is r:
            del self._by_md5[(r.napster_md5, r.size)]

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

    def __init__(
        self,
        config: NodeConfig,
        *,
        exit_with_parent: bool = False,
        web: WebSettings | None = None,
    ) -> None:
        self.config = config
        #: The web page's settings (issue 8); by default from ``PEERLAB_WEB_*``.
        self.web_settings = web if web is not None else WebSettings.from_env(os.environ)
        self.web: WebUI | None = None
        self.exit_with_parent = exit_with_parent
        self.observer = NodeObserver()
        self.found = Results()
        self.peer_list: list[str] = list(dict.fromkeys(config.peers))
        #: The last answer of each peer (the web page's Network tab).
        self.peer_state: dict[str, dict[str, Any]] = {}
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
        #: Napster (issue 3): the client, its transfers and what we share there.
        self.napster: NapsterClient | None = None
        self.napster_transfers: NapsterTransfers | None = None
        self.napster_index = ShareIndex()
        self.napster_listener: Listener | None = None
        #: Gnutella (issue 4): the servent, when the node joins.
        self.gnutella: Servent | None = None
        #: BitTorrent (issue 6): the session and its torrents, when enabled.
        self.torrents: NodeTorrents | None = None
        #: The mainline DHT node (BEP 5) the BitTorrent session uses.
        self.dht: DhtNode | None = None
        self._dht_bootstrap_count = 0
        self._port_routes: dict[str, Callable[[], StreamHandler]] = {}

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
            # On Gnutella the peer port is shared (Gnutella, HTTP, GIV), told
            # apart by the first bytes; the routes are filled once the
            # servent and the download manager exist.
            factory = (
                self._reached(shared_port_factory(self.runtime, self._port_routes))
                if cfg.gnutella_on else self.uploads.handler_factory()
            )  # fmt: skip
            try:
                self.listener = self.runtime.listen((cfg.listen_host, cfg.listen_port), factory)
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

            if cfg.napster:
                await self._start_napster()
            if cfg.gnutella_on:
                self._start_gnutella()
            if cfg.bittorrent:
                if cfg.bittorrent_dht:
                    await self._start_dht()  # first: our PORT messages carry its port
                self._start_bittorrent()

            self.web = WebUI(self, cfg.data_dir, self.web_settings)
            self.control = ControlServer(self, cfg.data_dir, port=cfg.control_port,
                                         web_gate=self.web)
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
        if self.torrents is not None:
            st = self.torrents.status()
            log.info("bittorrent: listening on %s, %d torrent(s)", st["listen"], st["torrents"])
        if self.dht is not None and self.dht.address is not None:
            log.info("dht: node %s on UDP %s, %d bootstrap node(s)", self.dht.node_id.hex()[:12],
                     format_address(self.dht.address), self._dht_bootstrap_count)  # fmt: skip
        for url in self.web.urls(self.control.port):
            log.info("web page: %s (log in with the token in %s or the web password)",
                     url, CONTROL_FILE)
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
        if self.napster is not None:
            self._spawn(self._napster_reshare())
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
        if self.napster is not None:
            self._spawn(self._napster_reshare())

    def scan_state(self) -> dict[str, Any]:
        return dict(self._scan)

    # ----------------------------------------------------------------- search

    def search_networks(self) -> list[str]:
        """The networks a search can ask now (:data:`SEARCH_NETWORKS` order)."""
        joined = {LOCAL: True, PEERS: bool(self.peer_list), NAPSTER: self.napster is not None,
                  GNUTELLA: self.gnutella is not None}
        return [n for n in SEARCH_NETWORKS if joined.get(n)]

    async def search(
        self,
        text: str,
        field: str,
        limit: int,
        *,
        networks: Collection[str] | None = None,
        on_found: Callable[[list[dict[str, Any]]], None] | None = None,
        ttl: int | None = None,
        min_bitrate: int | None = None,
        min_length: int | None = None,
    ) -> list[dict[str, Any]]:
        """Local catalog, every peer and Napster at once; results grouped by file.

        ``networks`` picks which of :data:`SEARCH_NETWORKS` to ask (default:
        all the node has).  ``on_found`` hears each part's results as soon as
        it answers (the web page streams them); a result heard again carries
        its grown list of sources.  Napster has no tags: with ``field`` set,
        its results are the files whose name holds the words (napster.txt 200
        matches file names only).  ``ttl`` is the Gnutella Query's TTL (draft
        2.2.6; default: the servent's ``search_ttl``, capped at its ``max_ttl``).
        ``min_bitrate`` (kbit/s) and ``min_length`` (seconds) keep the files
        known to be at least that good and long (the KaZaA form's Quality and
        Length): the catalog filters itself, Napster gets BITRATE/DURATION
        "AT LEAST" clauses (napster.txt 200), Gnutella a rich query whose XML
        names the field and minimums (:mod:`peerlab.wire.gxml`); every
        answer is filtered again on the metadata it came with.
        """
        if field not in FIELDS:
            raise ConfigError(f"unknown search field {field!r} (use one of {', '.join(FIELDS)})")
        for name, value in (("min_bitrate", min_bitrate), ("min_length", min_length)):
            if value is not None and not 0 <= value <= MAX_FILTER_VALUE:
                raise ConfigError(f"{name} must be from 0 to {MAX_FILTER_VALUE}")
        rich = RichQuery.from_form(field, text, min_bitrate, min_length)
        floor = RichQuery((), rich.min_bitrate, rich.min_seconds)
        if not text.strip():
            raise ConfigError("a search needs at least one word")
        wanted = set(SEARCH_NETWORKS if networks is None else networks)
        unknown = wanted - set(SEARCH_NETWORKS)
        if unknown:
            raise ConfigError(
                f"unknown network {sorted(unknown)[0]!r} (use {', '.join(SEARCH_NETWORKS)})"
            )
        peers = list(self.peer_list) if PEERS in wanted else []  # the list may change
        found: dict[int, Result] = {}

        def take(results: list[Result]) -> None:
            fresh = list({r.id: r for r in results}.values())
            for r in fresh:
                found.setdefault(r.id, r)
            if on_found is not None and fresh:
                on_found([r.to_json() for r in fresh])

        async def local() -> None:
            files = await asyncio.to_thread(
                self.catalog.search, text, field=field, limit=limit,
                min_bitrate=rich.min_bitrate, min_duration=rich.min_seconds,
            )  # fmt: skip
            take([self._note_local(f) for f in files])

        async def peer(address: str) -> None:
            try:
                files = await self._browse_peer(address, text, PEER_SEARCH_LIMIT)
            except Exception as e:  # one peer's failure costs only its answer
                self._note_peer(address, False, str(e) or type(e).__name__)
                log.warning("search: peer %s did not answer: %s", address, e)
                return
            self._note_peer(address, True, f"answered with {len(files)} file(s)")
            take([
                self._note_remote(rf) for rf in files
                if (field == "all" or _words_match(text, getattr(rf, field, None)))
                and floor.admits({k: getattr(rf, k, None) for k in META_KEYS})
            ])  # fmt: skip

        async def napster() -> None:
            hits = await self._napster_search(text, limit, floor)
            take([
                self._note_napster(hit) for hit in hits
                if floor.admits({"bitrate": hit.bitrate, "duration": hit.duration})
            ])  # fmt: skip

        async def gnutella() -> None:
            # Gnutella matches names only (draft 2.2.6); a tag search keeps
            # the hits whose XML metadata holds the words.
            xml = rich.to_xml() if rich.constrains else None
            if xml is not None and len(xml.encode()) > MAX_QUERY_XML:
                xml = None
            take([
                r for r in await self._gnutella_search(text, limit, ttl=ttl, xml=xml)
                if (field == "all" or _words_match(text, r.meta.get(field)))
                and floor.admits(r.meta)
            ])  # fmt: skip

        parts = [peer(p) for p in peers]
        if LOCAL in wanted:
            parts.insert(0, local())
        if NAPSTER in wanted and self.napster is not None:
            parts.append(napster())
        if GNUTELLA in wanted and self.gnutella is not None:
            parts.append(gnutella())
        tasks = [asyncio.ensure_future(c) for c in parts]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        ordered = sorted(found.values(), key=lambda r: -len(r.sources))
        return [r.to_json() for r in ordered[:limit]]

    def _note_peer(self, address: str, ok: bool, detail: str) -> None:
        self.peer_state.pop(address, None)
        self.peer_state[address] = {"ok": ok, "at": time.time(), "detail": detail}
        while len(self.peer_state) > MAX_PEER_STATES:
            del self.peer_state[next(iter(self.peer_state))]

    def _note_local(self, f: SharedFile) -> Result:
        return self.found.note(
            urn=f.urn,
            name=f.name,
            size=f.size,
            source=SourceRef(None, f.index, f.name),
            chunk_root=f.chunk_root,
            meta={k: getattr(f, k, None) for k in META_KEYS},
            napster_md5=f.napster_md5,
        )

    def _note_napster(self, hit: NapsterHit) -> Result:
        """A Napster result, grouped with the file it is when we know it:
        same Napster md5 and size as a file in our catalog or in an earlier
        result (napster.txt "MD5": all Napster says about a file's content)."""
        md5 = md5_of_announced(hit.md5)
        local = self.catalog.by_napster_md5(md5, hit.size) if md5 else None
        name = display_name(hit.filename)
        return self.found.note(
            urn=local.urn if local is not None else None,
            name=local.name if local is not None else name,
            size=hit.size,
            source=SourceRef(None, None, name, nick=hit.nick, link=int(hit.link_type),
                             filename=hit.filename, bitrate=hit.bitrate or None, md5=hit.md5),
            chunk_root=local.chunk_root if local is not None else None,
            meta={
                "kind": "audio" if name.lower().endswith(".mp3") else None,
                "bitrate": hit.bitrate or None,
                "duration": hit.duration or None,
            },
            napster_md5=md5,
        )

    async def _napster_search(
        self, text: str, limit: int, floor: RichQuery | None = None
    ) -> list[NapsterHit]:
        """One Napster search (200 -> 201... 202), bounded by PEER_TIMEOUT.

        A search asked while the client fails over waits for the next server
        within that bound; while every server is down (the client waits to
        retry) it ends at once.  Our own shares come from the catalog, so our
        own nick's results are left out.
        """
        client = self.napster
        assert client is not None
        words = " ".join(_NAPSTER_WORD.findall(text))
        if not words:
            return []
        if client.all_failed:
            # Every server is down: do not make the user wait for a retry.
            log.warning("search: Napster: no server reachable (%s)", client.detail)
            return []
        clauses = [
            Constraint(f, Compare.AT_LEAST, v) for f, v in (
                (SearchField.BITRATE, floor.min_bitrate if floor else None),
                (SearchField.DURATION, floor.min_seconds if floor else None),
            ) if v
        ]  # fmt: skip
        query = SearchQuery(
            contains=(wire_text(words),), max_results=min(limit, MAX_SEARCH_RESULTS),
            constraints=tuple(clauses),
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str | None] = loop.create_future()
        hits: list[NapsterHit] = []

        def done(error: str | None) -> None:
            if not fut.done():
                fut.set_result(error)

        handle = client.search(query, hits.append, done)
        self.observer.count("napster.tx.search")
        try:
            error = await asyncio.wait_for(fut, PEER_TIMEOUT)
        except TimeoutError:
            error = f"no answer within {PEER_TIMEOUT:g} s ({client.state}: {client.detail})"
        finally:
            handle.cancel()
        if error:
            log.warning("search: Napster: %s", error)
        self.observer.count("napster.rx.search_result", len(hits))
        return [h for h in hits if h.nick != client.nick]

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
        sources = [src for s in result.sources.values() if (src := s.transfer_source())]
        users = result.napster_sources()
        if not sources and users:
            # Only Napster users have it: Napster's own transfer, one sharer at
            # a time, checked against size and Napster md5 (peer.py).
            return self._napster_download(result, users)
        if not sources or result.urn is None:
            raise ConfigError(f"{result.name} is in your own shares already; no peer has it")
        self.downloads.add(
            result.urn, name=result.name, size=result.size, sources=sources,
            chunk_root=result.chunk_root,
        )
        log.info("download %s from %d source(s)", result.name, len(sources))
        info = self._download_info(result.urn)
        return {"result": result.to_json(), "download": info}

    async def _find_urn(self, urn: str) -> Result:
        """Ask Gnutella by hash, and every peer for its list; keep those that have ``urn``."""
        if self.gnutella is not None:
            await self._gnutella_search("", URN_LOOKUP_LIMIT, urn=urn)
            if not self.peer_list:
                result = self.found.by_urn(urn)
                if result is None:
                    raise NotFound(f"no Gnutella servent answered for {urn}")
                return result
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

    def _napster_download(self, result: Result, users: list[SourceRef]) -> dict[str, Any]:
        transfers = self.napster_transfers
        if transfers is None:
            raise ConfigError(f"{result.name} is on Napster, and this node is not (use --napster)")
        md5 = result.napster_md5 or next((u.md5 for u in users if u.md5), None)
        if md5 is None:
            raise ConfigError(f"{result.name}: the Napster result carries no md5")
        dl = transfers.add(
            name=result.name, size=result.size, md5=md5,
            sources=[NapsterSource(u.nick or "", u.filename or "", int(u.link or 0))
                     for u in users],
        )  # fmt: skip
        log.info("napster download %s from %s", result.name, ", ".join(u.nick or "" for u in users))
        info = napster_download_json(dl.info(self.runtime.now()))
        return {"result": result.to_json(), "download": info}

    def _download_info(self, id_or_urn: str) -> dict[str, Any] | None:
        dl = self.downloads.get(id_or_urn)
        return download_json(dl.info()) if dl is not None else None

    def control_download(self, download_id: str, action: str) -> dict[str, Any]:
        """pause, resume or cancel a download named by its id (or a prefix of it, or urn)."""
        nt = self.napster_transfers
        ndl = nt.get(download_id) if nt is not None else None
        if nt is not None and ndl is not None:
            before = ndl.info(self.runtime.now())
            getattr(nt, action)(ndl.id)
            log.info("napster download %s: %s", ndl.name, action)
            still = nt.get(ndl.id)
            if still is None:
                return {"download": {**napster_download_json(before), "status": "cancelled"}}
            return {"download": napster_download_json(still.info(self.runtime.now()))}
        dl = self.downloads.get(download_id)
        if dl is None and self.torrents is not None:
            # a torrent's row: pause/resume/cancel are stop/resume/remove
            verb = {"pause": "stop", "resume": "resume", "cancel": "remove"}[action]
            with contextlib.suppress(NotFound):
                row = self.torrents.action(download_id, verb)["torrent"]
                return {"download": row}
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
        cleared = before - len(self.downloads.downloads())
        if self.napster_transfers is not None:
            cleared += self.napster_transfers.clear_finished()
        return {"cleared": cleared}

    def transfers(self) -> dict[str, Any]:
        """HTTP and Napster transfers in one table (Napster rows say ``network``)."""
        downloads = [download_json(d) for d in self.downloads.downloads()]
        uploads = [upload_json(u) for u in self.uploads.uploads()]
        if self.napster_transfers is not None:
            downloads += [napster_download_json(i) for i in self.napster_transfers.downloads()]
            uploads += [napster_upload_json(i) for i in self.napster_transfers.uploads()]
        if self.torrents is not None:
            downloads += self.torrents.torrents()
            uploads += self.torrents.uploads()
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

    # --------------------------------------------------------------- settings

    def settings(self) -> dict[str, Any]:
        """The settings the web page changes while the node runs."""
        out = {
            "upload_rate": self.config.upload_rate,
            "download_rate": self.config.download_rate,
            "upload_slots": self.config.upload_slots,
        }
        if self.torrents is not None:  # BitTorrent's global limits (issue 6, item 6)
            out["bittorrent_upload_rate"] = self.config.bittorrent_upload_rate
            out["bittorrent_download_rate"] = self.config.bittorrent_download_rate
        return out

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change rate limits and upload slots for this session (not the config file)."""
        bt_keys = {"bittorrent_upload_rate", "bittorrent_download_rate"}
        unknown = set(changes) - {"upload_rate", "download_rate", "upload_slots"} - (
            bt_keys if self.torrents is not None else set()
        )
        if unknown:
            raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
        for key in sorted(bt_keys & set(changes)):
            rate = parse_rate(changes[key], key)
            setattr(self.config, key, rate)
            up = key == "bittorrent_upload_rate"
            self._bt().set_global_limits(up=rate if up else None, down=None if up else rate)
        if "upload_rate" in changes:
            rate = parse_rate(changes["upload_rate"], "upload_rate")
            self.uploads.set_rate_limit(float(rate))
            self.config.upload_rate = rate
        if "download_rate" in changes:
            rate = parse_rate(changes["download_rate"], "download_rate")
            self.downloads.set_rate_limit(float(rate))
            self.config.download_rate = rate
        if "upload_slots" in changes:
            slots = changes["upload_slots"]
            if isinstance(slots, bool) or not isinstance(slots, int) or not (
                1 <= slots <= MAX_UPLOAD_SLOTS
            ):
                raise ConfigError(f"upload_slots: expected a whole number 1-{MAX_UPLOAD_SLOTS}")
            self.uploads.config.slots = slots
            if self.napster_transfers is not None:
                self.napster_transfers.config.slots = slots
            self.config.upload_slots = slots
        log.info("settings changed: %s", ", ".join(f"{k}={v}" for k, v in changes.items()))
        return self.settings()

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
            "napster": self.napster_status(),
            "gnutella": self.gnutella_status(),
            "bittorrent": self.torrents.status() if self.torrents is not None else None,
            "dht": dht_status(self.dht),
        }

    def napster_status(self) -> dict[str, Any] | None:
        """Where the Napster client is (None when the node is not on Napster)."""
        client = self.napster
        if client is None:
            return None
        return {
            "state": client.state,
            "detail": client.detail,
            "server": format_address(client.server) if client.server else None,
            "servers": list(self.config.napster),
            "nick": client.nick,
            "link": _link_label(client.config.link_type),
            "data_port": client.config.data_port,
            "firewalled": client.firewalled,
            "shared": len(client.shared) if client.online else 0,
            "shareable": len(self.napster_index),
            "not_shareable": self.napster_index.skipped,
            "logins": client.logins,
            "refusals": {format_address(a): r for a, r in client.refusals.items()},
            "motd": list(client.motd),
        }

    # ---------------------------------------------------------------- napster

    async def _start_napster(self) -> None:
        """Join Napster: data port, client, transfers; wait for the first login.

        A refusal from every server that answered (a wrong password, a nick
        registered by someone else) stops the node with the server's words;
        servers that do not answer are tried again in the background.
        """
        cfg = self.config
        nick, password = napster_credentials(cfg)
        servers = [parse_address(a, "napster server") for a in cfg.napster]
        self.napster_index.rebuild(await asyncio.to_thread(self.catalog.files))
        made: list[NapsterTransfers] = []
        port = 0
        if not cfg.napster_firewalled:
            try:
                self.napster_listener = self.runtime.listen(
                    (cfg.listen_host, cfg.napster_port), lambda: made[0].handler_factory()()
                )
            except AddressInUse:
                raise AddressInUse(
                    f"cannot listen for Napster transfers on {cfg.listen_host}:"
                    f"{cfg.napster_port}: the port is already in use (choose another with "
                    "--napster-port, or 0 for any free port)"
                ) from None
            except NetworkError as e:
                raise NetworkError(
                    f"cannot listen for Napster transfers on {cfg.listen_host}:"
                    f"{cfg.napster_port}: {e}"
                ) from None
            self._stack.callback(self.napster_listener.close)
            port = self.napster_listener.address[1]
        client = NapsterClient(
            self.runtime,
            ClientConfig(
                servers=servers, nick=nick, password=password, data_port=port,
                link_type=LinkType(cfg.napster_link),
                client_info=f"peerlab {peerlab.__version__}",
            ),
            shares=lambda: self.napster_index.messages,
        )  # fmt: skip
        transfers = NapsterTransfers(
            self.runtime, client, self.catalog, self.napster_index,
            incomplete_dir=cfg.incomplete_path, download_dir=cfg.downloads_path,
            config=TransfersConfig(slots=cfg.upload_slots), bucket=self.uploads.bucket,
        )  # fmt: skip
        made.append(transfers)
        client.on_online = transfers.online
        client.on_push_request = transfers.push_requested
        client.on_upload_request = transfers.upload_requested
        client.on_link_speed = transfers.link_speed
        client.on_state = self._napster_state
        transfers.on_change = self._napster_changed
        self.napster, self.napster_transfers = client, transfers
        self._stack.callback(client.close)
        self._stack.callback(transfers.close)
        resumed = transfers.load()
        if resumed:
            log.info("resuming %d Napster download(s)", len(resumed))
        log.info(
            "napster: logging in as %s (data port %s) to %s", nick,
            port or "0, firewalled", ", ".join(cfg.napster),
        )  # fmt: skip
        client.start()
        await self._await_napster_login(client, servers)

    async def _await_napster_login(self, client: NapsterClient, servers: list[Address]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NAPSTER_START_WAIT
        while loop.time() < deadline and not self._stop.is_set():
            if client.state == ONLINE:
                return
            answered = set(client.refusals) | set(client.failures)
            if answered >= set(servers):
                if client.refusals:
                    address, reason = next(iter(client.refusals.items()))
                    raise NapsterLoginRefused(
                        f"Napster server {format_address(address)} refused the login of "
                        f"{client.nick!r}: {reason} (a registered nick needs its own password: "
                        "set napster_password, or choose another --napster-nick)"
                    )
                break  # every server failed once: keep trying in the background
            await asyncio.sleep(NAPSTER_POLL)
        if not self._stop.is_set():
            log.warning("napster: not logged in yet (%s); still trying", client.detail)

    def _napster_state(self, state: str, detail: str) -> None:
        if state == ONLINE:
            log.info("napster: online at %s as %s", detail,
                     self.napster.nick if self.napster else "?")
        elif state not in (CLOSED,):
            log.info("napster: %s %s", state, detail)

    def _napster_changed(self, info: TransferInfo) -> None:
        if info.status in ("complete", "failed"):
            log.info("napster download %s: %s %s", info.status, info.name,
                     info.error or info.path or "")

    async def _napster_reshare(self) -> None:
        """After a rescan: share what changed (100/102) on the Napster server."""
        files = await asyncio.to_thread(self.catalog.files)
        self.napster_index.rebuild(files)
        if self.napster is not None:
            self.napster.reshare()

    # --------------------------------------------------------------- gnutella

    def _start_gnutella(self) -> None:
        """Join Gnutella: a servent on the shared peer port (issue 4, section 2).

        The servent does not listen itself: the node's listener hands it the
        connections that open with ``GNUTELLA CONNECT``; HTTP goes to the
        upload service and ``GIV`` (a firewalled servent answering our Push,
        draft 2.2.8) to the download manager.  Firewalled, the node refuses
        every incoming connection and its hits carry the push flag.
        """
        cfg = self.config
        assert self.listen_address is not None
        servent = Servent(
            self.runtime,
            ServentConfig(
                listen_host=cfg.listen_host, listen_port=self.listen_address[1], listen=False,
                advertise=self.listen_address, firewalled=cfg.gnutella_firewalled,
                bootstrap=tuple(parse_address(a, "gnutella") for a in cfg.gnutella),
                gwebcaches=tuple(cfg.gwebcache),
                host_cache_path=cfg.data_dir / GNUTELLA_HOSTS_FILE,
                user_agent=f"peerlab/{peerlab.__version__}",
                role=cfg.gnutella_role,
                upload_bps=cfg.gnutella_upload_kbps * 1000.0 or None,
                role_policy=RolePolicy.with_uptime(cfg.gnutella_min_uptime),
            ),
            shares=self.catalog,
        )  # fmt: skip
        if not cfg.gnutella_firewalled:
            self._port_routes["gnutella"] = servent.incoming_handler
            self._port_routes["http"] = self.uploads.handler_factory()
            self._port_routes["giv"] = self.downloads.giv_handler
            self.uploads.self_addresses.add(self.listen_address)
            self.downloads.self_addresses.add(self.listen_address)
        servent.on_push = self._gnutella_push
        self.downloads.push_sender = self._gnutella_send_push
        # Push proxies (gtk-gnutella push_proxy): we relay for firewalled
        # servents that asked us, and reach firewalled sources through theirs.
        self.uploads.push_proxy = servent.push_proxies.handle_http
        self.uploads.our_push_proxies = servent.push_proxies.proxies
        self._push_book = ProxyBook()
        self.downloads.push_proxies_heard = self._push_book.learn
        self.gnutella = servent
        self._stack.callback(servent.close)
        servent.start()
        log.info(
            "gnutella: servent %s on %s%s, joining through %s", servent.guid.hex(),
            format_address(self.listen_address),
            " (firewalled: pushes only)" if cfg.gnutella_firewalled else "",
            ", ".join([*cfg.gnutella, *cfg.gwebcache]) or "whoever connects",
        )  # fmt: skip

    # ------------------------------------------------------------ bittorrent

    def _start_bittorrent(self) -> None:
        """The BitTorrent session on its own listener, its torrents re-added."""
        cfg = self.config
        torrents = NodeTorrents(
            self.runtime, cfg.data_dir, download_dir=cfg.torrent_download_path,
            listen_host=cfg.listen_host, listen_port=cfg.bittorrent_listen_port,
            upload_rate=float(cfg.bittorrent_upload_rate),
            download_rate=float(cfg.bittorrent_download_rate),
            seed_ratio=cfg.bittorrent_seed_ratio, seed_time=cfg.bittorrent_seed_time,
            dht=self.dht,
        )  # fmt: skip
        torrents.start()
        self.torrents = torrents
        self._stack.push_async_callback(torrents.close)

    async def _start_dht(self) -> None:
        """The DHT node (BEP 5) the session finds peers with; its routing
        table is kept in the BitTorrent state folder."""
        cfg = self.config
        where = "bittorrent_dht_bootstrap"
        boot = await resolve_bootstrap(
            [parse_address(a, where) for a in cfg.bittorrent_dht_bootstrap]
        )
        dht = start_node_dht(
            self.runtime, host=cfg.listen_host, port=cfg.bittorrent_dht_port, bootstrap=boot,
            state_dir=cfg.data_dir / TORRENT_STATE_DIR,
        )  # fmt: skip
        self.dht = dht
        self._stack.callback(dht.close)  # after the session (the stack unwinds backwards)
        self._dht_bootstrap_count = len(boot)

    def _bt(self) -> NodeTorrents:
        if self.torrents is None:
            raise ConfigError("BitTorrent is off on this node (bittorrent = false)")
        return self.torrents

    def torrent_add(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add a .torrent (``torrent``: base64) or a ``magnet`` link."""
        raw = body.get("torrent")
        data = None
        if raw is not None:
            if not isinstance(raw, str):
                raise ConfigError("torrent: expected the file's bytes in base64")
            try:
                data = base64.b64decode(raw, validate=True)
            except ValueError:
                raise ConfigError("torrent: not valid base64") from None
        magnet = body.get("magnet")
        if magnet is not None and not isinstance(magnet, str):
            raise ConfigError("magnet: expected a magnet: link")
        save = body.get("save_path")
        return self._bt().add(
            torrent=data, magnet=magnet, save_path=save if isinstance(save, str) else None,
            seed_ratio=body.get("seed_ratio"), seed_time=body.get("seed_time"),
            up_limit=body.get("up_limit"), down_limit=body.get("down_limit"),
            paused=bool(body.get("paused")),
        )  # fmt: skip

    def torrent_list(self) -> dict[str, Any]:
        bt = self._bt()
        return {"torrents": bt.torrents(), "session": bt.status()}

    def torrent_action(self, ref: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """stop, resume, remove, or set (seeding goals and limits) a torrent."""
        return self._bt().action(ref, action, **(body if action == "set" else {}))
    def _reached(self, factory: Callable[[], StreamHandler]) -> Callable[[], StreamHandler]:
        """Every connection reaching the peer port proves we are reachable
        (what the servent's promotion policy measures, issue 5)."""

        def make() -> StreamHandler:
            if self.gnutella is not None:
                self.gnutella.note_reachable()
            return factory()

        return make

    def _gnutella_push(self, push: Push) -> None:
        """A Push for us: connect out to its address and send GIV (draft 2.2.8)."""
        self.uploads.push((push.ip, push.port), push.file_index, push.servent_guid)

    def _gnutella_send_push(self, req: PushRequest) -> bool:
        """Reach a firewalled source: through the push proxies its hits
        listed (``push_proxy`` section 5: an HTTP request, the proxy sends the
        Push one hop), else by a Push routed back along its hit's path."""
        servent = self.gnutella
        if servent is None:
            return False
        me = self.listen_address
        proxies = self._push_book.proxies(req.servent_guid)
        if proxies and me is not None and not servent.config.firewalled:
            for proxy in proxies[:PUSH_PROXIES_TRIED]:
                def done(status: int | None, exc: Exception | None, proxy: Address = proxy) -> None:
                    if exc is not None:
                        self._push_book.forget(req.servent_guid, proxy)
                        log.info("push proxy %s: %s", format_address(proxy), exc)
                request_push(self.runtime, proxy, req.servent_guid, servent.address, done)
            return True
        return servent.send_push(req.servent_guid, req.index)

    async def _gnutella_search(
        self,
        text: str,
        limit: int,
        *,
        urn: str | None = None,
        ttl: int | None = None,
        xml: str | None = None,
    ) -> list[Result]:
        """Flood a Query (draft 2.2.6; by ``urn:sha1`` too, HUGE section 4)
        and collect hits for a bounded while."""
        servent = self.gnutella
        assert servent is not None
        loop = asyncio.get_running_loop()
        hits: list[tuple[SearchResult, HitSource]] = []
        search = servent.search(
            text, lambda r, src: hits.append((r, src)), urn=urn, ttl=ttl, xml=xml
        )
        start = last = loop.time()
        seen = 0
        try:
            while loop.time() - start < GNUTELLA_SEARCH_WAIT and not self._stop.is_set():
                if len(hits) != seen:
                    seen, last = len(hits), loop.time()
                elif hits and loop.time() - last >= GNUTELLA_QUIET:
                    break
                if len({r.key for r, _ in hits}) >= limit:
                    break
                await asyncio.sleep(GNUTELLA_POLL)
        finally:
            search.cancel()
        return [r for r in (self._note_gnutella(res, src) for res, src in hits) if r is not None]

    def _note_gnutella(self, res: SearchResult, src: HitSource) -> Result | None:
        """One Gnutella source of a file, grouped by its ``urn:sha1`` (HUGE)."""
        if res.urn is None:
            return None  # no hash: nothing to check a download against
        try:
            urn = _normal_urn(res.urn)
        except ConfigError:
            return None
        if self.gnutella is not None and src.servent_guid == self.gnutella.guid:
            return None  # our own hit (a loop in the network): the catalog answers for us
        meta = result_metadata(res.metadata)
        if src.push and src.push_proxies:
            self._push_book.learn(src.servent_guid, src.push_proxies)
        return self.found.note(
            urn=urn, name=res.name, size=res.size,
            source=SourceRef(
                (src.host, src.port), src.index, src.name, servent_guid=src.servent_guid,
                push=src.push, busy=src.busy, stable=src.stable, speed=src.speed,
                vendor=src.vendor, distance=src.distance,
            ),
            chunk_root=None, meta=meta,
        )  # fmt: skip

    def gnutella_status(self) -> dict[str, Any] | None:
        """The servent's connections (with role) and counters (``None``: not on Gnutella)."""
        servent = self.gnutella
        if servent is None:
            return None
        return {
            "guid": servent.guid.hex(),
            "address": format_address(servent.address),
            "firewalled": servent.config.firewalled,
            "role": servent.role,
            "leaves": len(servent.leaf_links()),
            "bootstrap": list(self.config.gnutella),
            "gwebcaches": list(self.config.gwebcache),
            "hosts_known": len(servent.host_cache),
            "connections": [
                {"address": format_address(c.address),
                 "listen": format_address(c.listen_address) if c.listen_address else None,
                 "direction": "out" if c.outgoing else "in", "state": c.state, "role": c.role,
                 "user_agent": c.user_agent, "messages_in": c.messages_in,
                 "messages_out": c.messages_out, "dropped": c.dropped,
                 "deflate": c.deflate_in or c.deflate_out}
                for c in servent.connections()
            ],
            "counters": servent.counters.snapshot(),
            "messages": gnutella_messages(servent.counters.snapshot()),
        }  # fmt: skip


# ------------------------------------------------------------ JSON shapes

#: ``peerlab status --gnutella`` columns -> the servent's counter prefixes
#: (issue 4, section 4; :mod:`peerlab.overlays.gnutella.counters`).
GNUTELLA_MESSAGE_COUNTERS = {
    "sent": "tx.", "received": "rx.", "dropped_duplicate": "dup.",
    "dropped_ttl": "dropped_ttl.", "routed": "routed.",
}  # fmt: skip


def gnutella_messages(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per message type (ping, pong, query...): sent, received, dropped as
    duplicate, dropped by TTL, routed (issue 4, section 4), every type shown."""
    types = list(dict.fromkeys(TYPE_NAMES.values()))
    for name in counters:
        kind = name.split(".", 1)[1] if "." in name else ""
        if name.startswith(tuple(GNUTELLA_MESSAGE_COUNTERS.values())) and kind not in types:
            types.append(kind)
    return {
        t: {col: counters.get(prefix + t, 0) for col, prefix in GNUTELLA_MESSAGE_COUNTERS.items()}
        for t in types
    }



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


def _napster_peer(info: TransferInfo) -> str:
    """The other side as Napster's transfer window showed it: nick and link."""
    if info.peer and info.link:
        return f"{info.peer} ({info.link})"
    return info.peer


def napster_download_json(info: TransferInfo) -> dict[str, Any]:
    """A Napster download in the shape of the HTTP downloads' rows."""
    active = info.status == "downloading"
    return {
        "id": info.id,
        "network": "napster",
        "urn": None,
        "napster_md5": info.md5,
        "name": info.name,
        "size": info.size,
        "done": info.done,
        "status": info.status,
        "rate": info.rate,
        "eta": info.eta,
        "error": info.error,
        "path": str(info.path) if info.path else None,
        "user": info.peer,
        "link": info.link,
        "firewalled": info.firewalled,
        "sources": [{
            "address": _napster_peer(info), "status": info.status if active else "idle",
            "bytes": info.done, "rate": info.rate, "error": None, "queue_position": None,
        }] if info.peer else [],
    }  # fmt: skip


def napster_upload_json(info: TransferInfo) -> dict[str, Any]:
    """A Napster upload in the shape of the HTTP uploads' rows."""
    return {
        "id": info.id,
        "network": "napster",
        "peer": _napster_peer(info),
        "name": info.name,
        "size": info.size,
        "urn": None,
        "sent": info.done,
        "length": info.size - info.offset,
        "offset": info.offset,
        "status": info.status,
        "rate": info.rate,
        "error": info.error,
        "position": None,
    }


def upload_json(info: UploadInfo) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(info)
    return out


def _progress_line(state: Any) -> str:
    if isinstance(state, dict):
        return ", ".join(f"{k}={v}" for k, v in state.items() if not isinstance(v, list | dict))
    return str(state)
