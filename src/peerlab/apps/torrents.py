"""The node's BitTorrent client: a session, its torrents kept over restarts (issue 6, item 6).

:class:`NodeTorrents` runs one :class:`~peerlab.overlays.bittorrent.Session`
inside the node (:mod:`peerlab.apps.node`) and is what the control API, the
CLI (``peerlab torrent add|list|stop|resume|remove``) and the web page drive:

* **add** a ``.torrent`` (its bytes) or a magnet link, with optional seeding
  goals (share ratio, seconds of seeding) and per-torrent rate limits; the
  node's ``[bittorrent]`` settings give the defaults;
* **stop / resume / remove** by info-hash (or a unique prefix of it);
* **rows** for ``peerlab transfers``: one download row per torrent in the
  shape of the other downloads (its peers as sources), one upload row per
  peer we sent to, and the per-peer detail and piece map for the web page.

What survives a restart, and a ``kill -9``, lives in
``<data_dir>/bittorrent/``: the verified pieces are the session's resume
files (``<info-hash>.resume``, written atomically after pieces verify, see
:mod:`peerlab.storage.pieces`), a magnet's fetched metadata
(``<info-hash>.info``), a copy of each added ``.torrent`` and
``torrents.json``: which torrents the node has, stopped or not, their goals,
limits, folder and the byte and seeding-time totals of earlier runs.  That
list is written atomically on every change and every
:data:`SAVE_INTERVAL` seconds, so after a ``kill -9`` a restarted node
re-adds every torrent, trusts the resume files and fetches only the pieces
it never verified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from peerlab.apps.config import parse_rate
from peerlab.apps.control import NotFound
from peerlab.errors import AddressInUse, ConfigError, PeerlabError
from peerlab.overlays.bittorrent import Session, SessionConfig, Torrent, TorrentState
from peerlab.overlays.bittorrent.peer import PeerStatus
from peerlab.overlays.dht import DhtNode
from peerlab.runtime.base import Runtime, Timer
from peerlab.storage.pieces import write_atomic
from peerlab.wire.magnet import parse_magnet
from peerlab.wire.metainfo import MAX_METAINFO_BYTES, Metainfo

log = logging.getLogger("peerlab.torrents")

#: Folder of the BitTorrent state inside the node's data directory.
STATE_DIR = "bittorrent"
#: The list of torrents the node has (see the module docstring).
LIST_FILE = "torrents.json"
#: Shape of ``torrents.json``; another version is not read (a newer node's).
LIST_VERSION = 1
#: Seconds between saves of the totals (uploaded, seeding time) while
#: torrents run: a ``kill -9`` loses at most this much of them (never a piece).
SAVE_INTERVAL = 10.0
#: Where the port the session listens on is remembered: with no port
#: configured the first start takes any free one, later starts the same one
#: again (peers and trackers that know it find us after a restart), or any
#: free one if it has been taken meanwhile.
PORT_FILE = "listen_port"
#: Torrents one node keeps: each holds connections, buffers and a resume
#: file; a script adding in a loop hits this instead of exhausting the node.
MAX_TORRENTS = 1000
#: Seconds a stopping node waits for trackers to hear ``stopped``.
CLOSE_WAIT = 5.0
#: Row statuses of a torrent (``peerlab transfers``) by engine state.
ROW_STATUS = {
    TorrentState.METADATA: "metadata",
    TorrentState.CHECKING: "checking",
    TorrentState.DOWNLOADING: "downloading",
    TorrentState.SEEDING: "seeding",
    TorrentState.STOPPED: "stopped",
    TorrentState.ERROR: "failed",
}


@dataclass
class Entry:
    """What the node remembers of one torrent (a row of ``torrents.json``)."""

    info_hash: str
    save_path: str
    magnet: str | None = None  # added from a magnet link (else a .torrent copy)
    stopped: bool = False
    seed_ratio: float | None = None
    seed_time: float | None = None
    up_limit: float = 0.0
    down_limit: float = 0.0
    uploaded: int = 0  # totals of the runs before this one
    downloaded: int = 0
    seeding_seconds: float = 0.0
    goal_reached: str | None = None
    added_at: float = 0.0

    @classmethod
    def from_json(cls, raw: Any) -> Entry:
        if not isinstance(raw, dict):
            raise ValueError("entry is not an object")
        ih = raw.get("info_hash")
        if not isinstance(ih, str) or len(ih) != 40:
            raise ValueError("bad info_hash")
        bytes.fromhex(ih)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        for key, value in known.items():
            kinds = _ENTRY_TYPES[key]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"{key}: {value!r} is not {kinds}")
        return cls(**known)


#: The type of each field of ``torrents.json``'s entries (checked when read).
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "info_hash": (str,), "save_path": (str,), "magnet": (str, type(None)),
    "stopped": (bool,), "seed_ratio": (int, float, type(None)),
    "seed_time": (int, float, type(None)), "up_limit": (int, float),
    "down_limit": (int, float), "uploaded": (int,), "downloaded": (int,),
    "seeding_seconds": (int, float), "goal_reached": (str, type(None)),
    "added_at": (int, float),
}  # fmt: skip
assert set(_ENTRY_TYPES) == set(Entry.__dataclass_fields__)


def _rate(value: Any, where: str) -> float | None:
    """Bytes/s from a number or ``"500K"`` (None: not given)."""
    if value is None or value == "":
        return None
    return float(parse_rate(value, where))


def _number(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if number < 0 or number != number or number == float("inf"):
        raise ConfigError(f"{where}: expected a number of at least 0, got {value!r}")
    return number


class NodeTorrents:
    """The node's session and torrent list (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        data_dir: Path,
        *,
        download_dir: Path,
        listen_host: str,
        listen_port: int | None,
        upload_rate: float = 0.0,
        download_rate: float = 0.0,
        seed_ratio: float | None = None,
        seed_time: float | None = None,
        dht: DhtNode | None = None,
    ) -> None:
        self.runtime = runtime
        #: The node's DHT node (BEP 5), handed to the session; the node owns it.
        self.dht = dht
        self.state_dir = data_dir / STATE_DIR
        self.download_dir = download_dir
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.default_ratio = seed_ratio
        self.default_time = seed_time
        self._rates = (upload_rate, download_rate)
        self.entries: dict[str, Entry] = {}
        self.session: Session | None = None
        self._save_timer: Timer | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Listen, then add every torrent of ``torrents.json`` again (stopped
        ones stay stopped)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        up, down = self._rates
        port = self.listen_port
        cfg = SessionConfig(
            listen_host=self.listen_host,
            listen_port=self._remembered_port() if port is None else port,
            download_dir=self.download_dir, state_dir=self.state_dir,
            upload_rate=up, download_rate=down,
        )  # fmt: skip
        session = Session(self.runtime, cfg, dht=self.dht)
        try:
            session.start()
        except AddressInUse:
            if port is not None:
                raise AddressInUse(
                    f"cannot listen for BitTorrent peers on {self.listen_host}:{port}: the "
                    "port is in use (bittorrent_listen_port, 0 for any free port)"
                ) from None
            session = Session(self.runtime, replace(cfg, listen_port=0), dht=self.dht)
            session.start()
        self.session = session
        if port is None and session.listen_port is not None:
            try:
                write_atomic(self.state_dir / PORT_FILE, b"%d\n" % session.listen_port)
            except OSError as exc:
                log.warning("cannot remember the BitTorrent port: %s", exc)
        for entry in self._load():
            try:
                self._open(entry)
            except (PeerlabError, OSError, TypeError, ValueError) as exc:
                # a hand-edited list or a deleted .torrent copy: that torrent only
                self.entries.pop(entry.info_hash, None)
                log.warning("torrent %s not resumed: %s", entry.info_hash, exc)
        self._save_timer = self.runtime.call_later(SAVE_INTERVAL, self._periodic_save)

    def _remembered_port(self) -> int:
        try:
            text = (self.state_dir / PORT_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return 0
        return int(text) if text.isdigit() and 0 < int(text) <= 0xFFFF else 0

    async def close(self) -> None:
        """Save the list, stop every torrent (trackers hear ``stopped``), unbind."""
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        session = self.session
        if session is None:
            return
        self.save()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def closed() -> None:
            if not done.done():
                done.set_result(None)

        session.close(closed)
        try:
            await asyncio.wait_for(done, CLOSE_WAIT)
        except TimeoutError:
            log.info("trackers did not all answer the stopped announce")
        self.session = None

    def _periodic_save(self) -> None:
        self._save_timer = self.runtime.call_later(SAVE_INTERVAL, self._periodic_save)
        if self.session is not None and any(t.running for t in self.session.torrents):
            self.save()

    # ------------------------------------------------------------ persistence

    @property
    def list_path(self) -> Path:
        return self.state_dir / LIST_FILE

    def _torrent_file(self, info_hash: str) -> Path:
        return self.state_dir / f"{info_hash}.torrent"

    def _load(self) -> list[Entry]:
        try:
            raw = json.loads(self.list_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s): no torrents resumed", self.list_path, exc)
            return []
        if not isinstance(raw, dict) or raw.get("version") != LIST_VERSION:
            log.warning("%s has another shape: no torrents resumed", self.list_path)
            return []
        out = []
        for item in raw.get("torrents", [])[:MAX_TORRENTS]:
            try:
                out.append(Entry.from_json(item))
            except (TypeError, ValueError) as exc:
                log.warning("%s: an entry skipped (%s)", self.list_path, exc)
        return out

    def save(self) -> None:
        """Write ``torrents.json`` atomically, with the current totals."""
        session = self.session
        if session is not None:
            for ih, entry in self.entries.items():
                t = session.torrent(bytes.fromhex(ih))
                if t is not None:
                    self._note_totals(entry, t)
        payload = {
            "version": LIST_VERSION,
            "torrents": [vars(e) for e in self.entries.values()],
        }
        try:
            write_atomic(self.list_path, json.dumps(payload, indent=1).encode())
        except OSError as exc:
            log.warning("cannot save %s: %s", self.list_path, exc)

    @staticmethod
    def _note_totals(entry: Entry, t: Torrent) -> None:
        entry.uploaded = t.total_uploaded
        entry.downloaded = t.total_downloaded
        entry.seeding_seconds = round(t.seeding_seconds(), 1)
        entry.goal_reached = t.goal_reached
        entry.stopped = not t.running

    def _open(self, entry: Entry) -> Torrent:
        """Add ``entry``'s torrent to the session (at start, or when added)."""
        session = self.session
        assert session is not None
        if entry.magnet is not None:
            t = session.add_magnet(entry.magnet, save_path=entry.save_path, start=False)
        else:
            raw = self._torrent_file(entry.info_hash).read_bytes()
            t = session.add_torrent(raw, save_path=entry.save_path, start=False)
        t.carry_over(entry.uploaded, entry.downloaded, entry.seeding_seconds)
        t.set_goals(entry.seed_ratio, entry.seed_time)
        t.set_rate_limits(up=entry.up_limit, down=entry.down_limit)
        t.on_change.append(self._changed)
        self.entries[entry.info_hash] = entry
        if not entry.stopped:
            t.start()
        t.goal_reached = entry.goal_reached if entry.stopped else None
        return t

    def _changed(self, t: Torrent) -> None:
        entry = self.entries.get(t.info_hash.hex())
        if entry is None:
            return
        if t.state in (TorrentState.SEEDING, TorrentState.STOPPED, TorrentState.ERROR):
            log.info("torrent %s: %s%s", t.name, t.state.value,
                     f" ({t.error})" if t.error else "")
        self.save()

    # ------------------------------------------------------------ actions

    def add(
        self,
        *,
        torrent: bytes | None = None,
        magnet: str | None = None,
        save_path: str | None = None,
        seed_ratio: Any = None,
        seed_time: Any = None,
        up_limit: Any = None,
        down_limit: Any = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        """Add a ``.torrent`` (bytes) or a magnet link; its row."""
        self._session()
        if (torrent is None) == (magnet is None):
            raise ConfigError("give a .torrent file or a magnet link (one of them)")
        if len(self.entries) >= MAX_TORRENTS:
            raise ConfigError(f"the node has {MAX_TORRENTS} torrents already: remove some")
        ratio = _number(seed_ratio, "seed_ratio")
        secs = _number(seed_time, "seed_time")
        up = _rate(up_limit, "up_limit") or 0.0
        down = _rate(down_limit, "down_limit") or 0.0
        if torrent is not None:
            if len(torrent) > MAX_METAINFO_BYTES:
                raise ConfigError("that .torrent is larger than any torrent file may be")
            meta = Metainfo.from_bytes(torrent)  # RemoteProtocolError: not a torrent
            ih = meta.info.info_hash.hex()
            magnet_text = None
        else:
            assert magnet is not None
            parsed = parse_magnet(magnet.strip())
            if parsed.info_hash is None:
                raise ConfigError("this magnet link has no BitTorrent v1 info-hash (btih)")
            ih = parsed.info_hash.hex()
            magnet_text = magnet.strip()
        if ih in self.entries:
            raise ConfigError(f"torrent {ih} is already added")
        folder = Path(save_path).expanduser() if save_path else self.download_dir
        if torrent is not None:
            write_atomic(self._torrent_file(ih), torrent)
        entry = Entry(
            info_hash=ih, save_path=str(folder), magnet=magnet_text, stopped=paused,
            seed_ratio=self.default_ratio if ratio is None else ratio or None,
            seed_time=self.default_time if secs is None else secs or None,
            up_limit=up, down_limit=down, added_at=time.time(),
        )  # fmt: skip
        try:
            t = self._open(entry)
        except PeerlabError:
            self.entries.pop(ih, None)
            raise
        self.save()
        log.info("torrent added: %s (%s)", t.name, ih)
        return {"torrent": self.row(t)}

    def find(self, ref: str) -> Torrent:
        """A torrent by info-hash or a unique prefix of it (else
        :class:`~peerlab.apps.control.NotFound`)."""
        session = self._session()
        ref = ref.strip().lower()
        hits = [t for t in session.torrents if t.info_hash.hex().startswith(ref)] if ref else []
        if len(hits) != 1:
            what = "no torrent" if not hits else "more than one torrent"
            raise NotFound(f"{what} matches {ref!r} (see 'peerlab torrent list')")
        return hits[0]

    def action(self, ref: str, action: str, **changes: Any) -> dict[str, Any]:
        """``stop``, ``resume``, ``remove`` or ``set`` (goals and limits)."""
        t = self.find(ref)
        ih = t.info_hash.hex()
        entry = self.entries[ih]
        if action == "stop":
            t.stop()
            entry.stopped = True
        elif action == "resume":
            entry.stopped = False
            entry.goal_reached = None
            t.start()
        elif action == "remove":
            row = self.row(t)
            self._session().remove_torrent(t.info_hash)
            del self.entries[ih]
            self._torrent_file(ih).unlink(missing_ok=True)
            self.save()
            log.info("torrent removed: %s (its files stay)", t.name)
            return {"torrent": {**row, "status": "removed"}}
        elif action == "set":
            self._set(t, entry, changes)
        else:
            raise ConfigError(f"unknown torrent action {action!r}")
        self.save()
        log.info("torrent %s: %s", t.name, action)
        return {"torrent": self.row(t)}

    def _set(self, t: Torrent, entry: Entry, changes: dict[str, Any]) -> None:
        unknown = set(changes) - {"seed_ratio", "seed_time", "up_limit", "down_limit"}
        if unknown:
            raise ConfigError(f"unknown torrent setting {sorted(unknown)[0]!r}")
        if "up_limit" in changes or "down_limit" in changes:
            up = _rate(changes.get("up_limit"), "up_limit")
            down = _rate(changes.get("down_limit"), "down_limit")
            t.set_rate_limits(up=up, down=down)
            entry.up_limit, entry.down_limit = t.up_bucket.rate, t.down_bucket.rate
        if "seed_ratio" in changes or "seed_time" in changes:
            ratio = _number(changes.get("seed_ratio", entry.seed_ratio), "seed_ratio")
            secs = _number(changes.get("seed_time", entry.seed_time), "seed_time")
            entry.seed_ratio, entry.seed_time = ratio or None, secs or None
            t.set_goals(entry.seed_ratio, entry.seed_time)

    def set_global_limits(self, up: float | None = None, down: float | None = None) -> None:
        self._session().set_rate_limits(up=up, down=down)

    def _session(self) -> Session:
        if self.session is None:
            raise ConfigError("BitTorrent is not running on this node")
        return self.session

    # ------------------------------------------------------------ views

    def torrents(self) -> list[dict[str, Any]]:
        session = self.session
        return [self.row(t) for t in session.torrents] if session is not None else []

    def status(self) -> dict[str, Any]:
        session = self.session
        if session is None:
            return {}
        st = session.status()
        return {
            "peer_id": st.peer_id,
            "listen": f"{st.listen_address[0]}:{st.listen_address[1]}"
            if st.listen_address else None,
            "connections": st.connections,
            "torrents": len(st.torrents),
            "dht_nodes": st.dht_nodes,
            "upload_limit": session.up_bucket.rate,
            "download_limit": session.down_bucket.rate,
        }

    def row(self, t: Torrent, *, detail: bool = True) -> dict[str, Any]:
        """One torrent as a download row of ``peerlab transfers`` (the HTTP
        downloads' keys: id, name, size, done, status, rate, eta, sources),
        with BitTorrent's own besides (peers, piece map, ratio, goals)."""
        st = t.status()
        entry = self.entries.get(st.info_hash)
        size = st.total_size
        done = None if size is None or st.left is None else size - st.left
        status = ROW_STATUS[t.state]
        if status == "stopped" and st.goal_reached:
            status = "finished"
        rate = st.down_rate if t.state is TorrentState.DOWNLOADING else 0.0
        left = st.left
        eta = left / rate if rate > 0 and left else None
        row: dict[str, Any] = {
            "id": st.info_hash,
            "network": "bittorrent",
            "info_hash": st.info_hash,
            "urn": None,
            "name": st.name,
            "size": size,
            "done": done,
            "status": status,
            "rate": rate,
            "up_rate": st.up_rate,
            "eta": eta,
            "error": st.error,
            "path": str(Path(st.save_path) / st.name) if st.save_path else None,
            "pieces": st.piece_count,
            "pieces_have": st.pieces_have,
            "piece_length": st.piece_length,
            "progress": st.progress,
            "uploaded": st.total_uploaded,
            "downloaded": st.total_downloaded,
            "ratio": round(st.share_ratio, 3),
            "seeding_seconds": round(st.seeding_seconds, 1),
            "seed_ratio": st.seed_ratio,
            "seed_time": st.seed_time,
            "goal_reached": st.goal_reached,
            "up_limit": st.up_limit,
            "down_limit": st.down_limit,
            "seeds": st.seeds,
            "leechers": st.leechers,
            "magnet": entry.magnet if entry is not None else None,
            "sources": [_source(p) for p in st.peers],
        }
        if detail:
            row["peers"] = [_peer(p) for p in st.peers]
            row["piece_map"] = st.piece_map
            row["session_downloaded"] = st.downloaded  # this run only
            row["counters"] = st.counters
            row["trackers"] = [
                {"url": tr.url, "announces": tr.announces, "failures": tr.failures,
                 "error": tr.last_error, "seeders": tr.seeders, "leechers": tr.leechers}
                for tr in st.trackers
            ]
        return row

    def uploads(self) -> list[dict[str, Any]]:
        """One upload row per peer we sent blocks to (in the HTTP uploads' shape)."""
        session = self.session
        if session is None:
            return []
        now = self.runtime.now()
        out = []
        for t in session.torrents:
            size = t.info.total_size if t.info is not None else None
            for link in list(t.links):
                if link.closing or not link.up.total:
                    continue
                p = link.status(now, t.config.request_queue_time)
                sending = not p.am_choking and p.peer_interested
                out.append({
                    "id": f"{t.info_hash.hex()[:8]}-{_address(p)}",
                    "network": "bittorrent", "peer": _address(p), "name": t.name,
                    "size": size, "urn": None, "sent": p.uploaded, "length": size,
                    "offset": 0, "status": "uploading" if sending else "idle",
                    "rate": p.up_rate, "error": None, "position": None,
                    "unchoke": p.unchoke,
                })  # fmt: skip
        return out


def _address(p: PeerStatus) -> str:
    host, port = p.address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _source(p: PeerStatus) -> dict[str, Any]:
    """A peer as one source of the download row (the HTTP sources' keys)."""
    active = not p.peer_choking and p.am_interested
    return {
        "address": _address(p),
        "status": "downloading" if active else ("seed" if p.seed else "choked"),
        "bytes": p.downloaded,
        "rate": p.down_rate,
        "error": None,
        "queue_position": None,
    }


def _peer(p: PeerStatus) -> dict[str, Any]:
    """Per-peer detail for the web page (the lecture's swarm, peer by peer)."""
    return {
        "address": _address(p),
        "client": p.client,
        "direction": p.direction,
        "source": p.source,
        "pieces": p.pieces,
        "seed": p.seed,
        "down_rate": p.down_rate,
        "up_rate": p.up_rate,
        "downloaded": p.downloaded,
        "uploaded": p.uploaded,
        "am_choking": p.am_choking,
        "am_interested": p.am_interested,
        "peer_choking": p.peer_choking,
        "peer_interested": p.peer_interested,
        "unchoke": p.unchoke,
        "snubbed": p.snubbed,
        "flags": _flags(p),
    }


def _flags(p: PeerStatus) -> str:
    """libtorrent/uTorrent-style peer flags: D downloading from it, d we
    want to but it chokes us, U uploading to it, u it wants to but we choke
    it, O optimistic unchoke, S snubbed."""
    flags = ""
    if p.am_interested:
        flags += "d" if p.peer_choking else "D"
    if p.peer_interested:
        flags += "u" if p.am_choking else "U"
    if p.unchoke == "optimistic":
        flags += "O"
    if p.snubbed:
        flags += "S"
    return flags
