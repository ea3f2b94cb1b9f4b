"""The BitTorrent tracker: a swarm table served over HTTP (BEP 3) and UDP (BEP 15).

Issue 6, section 2.  Codecs in :mod:`peerlab.wire.tracker`.  :class:`Tracker`
is written only against the :class:`~peerlab.runtime.base.Runtime`
interface, so it runs on real sockets and in the simulator alike.

Public API (stable)::

    TrackerConfig(...)                               # documented defaults below
    Tracker(runtime, config=TrackerConfig(), store=None)
        .start()                     # load the table, bind HTTP and UDP; raises AddressInUse
        .close()                     # stop serving, save the table
        .http_address / .udp_address -> Address | None
        .announce_url / .udp_url     -> str | None   # what a .torrent names
        .swarm(info_hash) -> SwarmInfo | None         # the table, for people and tests
        .swarms() -> list[SwarmInfo]
        .announce(req, source_ip) -> AnnounceResponse | TrackerFailure
        .scrape(info_hashes) -> ScrapeResponse | TrackerFailure
        .sweep() -> int              # expire stale peers now; how many went
        .save() -> None              # write the table now (synchronously)
        .mint_connection_id(addr) -> int; .connection_id_valid(addr, cid) -> bool  # BEP 15
    SwarmTable(config)               # the table alone, time passed in: the testable core
    SwarmInfo(info_hash, seeders, leechers, downloaded, peers)
    PeerInfo(peer_id, ip, port, left, uploaded, downloaded, seeder, age)
    SwarmStore (Protocol): load() -> SwarmSnapshot | None; save(snapshot)
    MemorySwarmStore()               # keeps the last snapshot in memory (simulator, tests)
    FileSwarmStore(path)             # JSON, written atomically (temp file, fsync, rename)
    SwarmSnapshot / SavedSwarm / SavedPeer

The swarm table (BEP 3 "Trackers"):

* per info-hash, the peers keyed by peer id, split into seeders (``left``
  0) and leechers, plus the number of completed downloads (BEP 48
  ``downloaded``);
* a peer that has not announced for ``expiry_factor`` times the announce
  interval is dropped (:data:`EXPIRY_FACTOR`: one lost announce is forgiven,
  two are not);
* a reply lists at most ``numwant`` peers (the client's wish, capped by
  ``max_numwant``), chosen at random with ``runtime.rng``, never the asking
  peer itself; a seeder is given only leechers;
* ``event=stopped`` removes the peer, ``event=completed`` counts a download
  once per peer; an announce from the address of a listed peer under a new
  peer id replaces the old entry (the client restarted);
* a peer id listed from one address cannot be moved to another unless the
  announce carries the same ``key`` (the BEP 3 ``key`` exists for this);
* bounded: ``max_swarms`` swarms (a new info-hash beyond it is refused) and
  ``max_peers_per_swarm`` peers per swarm (a new peer beyond it still gets
  peers, but is not listed); an optional allow-list of info-hashes.

Persistence: the table is saved every ``save_interval`` seconds when it
changed (on a worker thread through ``runtime.offload``) and on
:meth:`Tracker.close`; on :meth:`Tracker.start` it is loaded back, with each
peer keeping its age, so a peer that went silent still expires on time.

UDP connection ids (BEP 15): a keyed BLAKE2b of the client's IP and
the current :data:`CONNECTION_ID_WINDOW_S` window, under a secret drawn from
``runtime.rng``.  Ids of the current and the previous two windows are
accepted, so an id stays valid at least two minutes after it was sent (BEP 15)
and never more than three; no per-client state is kept.

Counters to ``runtime.observer`` (all prefixed ``tracker.``): ``announces``,
``announces_http``, ``announces_udp``, ``scrapes``, ``udp_scrapes``,
``failures``, ``peers_expired``, ``swarm_full``, ``table_full``,
``http_requests``, ``http_bad_requests``, ``http_refused_connections``,
``http_idle_closed``, ``udp_connects``, ``udp_garbage``,
``udp_bad_connection_id``, ``saves``.  Events: ``tracker.started``,
``tracker.peer_event`` (started/completed/stopped/paused), ``tracker.refused``,
``tracker.loaded``, ``tracker.saved``, ``tracker.save_failed``,
``tracker.bad_request``, ``tracker.udp_error``, ``tracker.handler_error``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from peerlab.errors import (
    AddressInUse,
    ConfigError,
    LocalProtocolError,
    NetworkError,
    RemoteProtocolError,
    StorageError,
)
from peerlab.proto.http import (
    ConnectionClosed,
    EndOfMessage,
    Event,
    Headers,
    Request,
    Response,
    ServerConnection,
)
from peerlab.runtime.base import (
    Address,
    BaseStreamHandler,
    DatagramEndpoint,
    Listener,
    Runtime,
    Stream,
    Timer,
)
from peerlab.wire.tracker import (
    INFO_HASH_BYTES,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    Peer,
    ScrapeResponse,
    ScrapeStats,
    TrackerFailure,
    UdpAnnounceRequest,
    UdpAnnounceResponse,
    UdpError,
    UdpPacket,
    UdpScrapeResponse,
    decode_udp_request,
    encode_announce_response,
    encode_failure,
    encode_scrape_response,
    encode_udp,
    parse_announce_query,
    parse_scrape_query,
)

__all__ = [
    "CONNECTION_ID_WINDOW_S",
    "EXPIRY_FACTOR",
    "FileSwarmStore",
    "MemorySwarmStore",
    "PeerInfo",
    "SavedPeer",
    "SavedSwarm",
    "SwarmInfo",
    "SwarmSnapshot",
    "SwarmStore",
    "SwarmTable",
    "Tracker",
    "TrackerConfig",
]

# ---------------------------------------------------------------- constants

#: Announce interval told to clients (BEP 3 ``interval``): 30 minutes, the
#: value of the original tracker and of most public trackers.
DEFAULT_INTERVAL_S = 1800
#: Shortest re-announce a client may make (``min interval``).
DEFAULT_MIN_INTERVAL_S = 300
#: A peer silent for this many announce intervals is dropped: one lost
#: announce is forgiven, a second means the peer is gone.
EXPIRY_FACTOR = 2.0
#: Peers in a reply when the client names no ``numwant`` (BEP 3 suggests 50).
DEFAULT_NUMWANT = 50
#: Most peers in one reply whatever the client asks: libtorrent asks for 200.
MAX_NUMWANT = 200
#: Swarms (info-hashes) one tracker keeps: each costs memory that any client
#: can make us spend by announcing a made-up info-hash.
MAX_SWARMS = 100_000
#: Peers one swarm lists: beyond a few thousand, more peers in the table buy
#: no client anything (each gets numwant of them) and cost memory.
MAX_PEERS_PER_SWARM = 10_000
#: How often stale peers and empty swarms are swept out of the whole table
#: (each swarm is also trimmed whenever it is announced to or scraped).
SWEEP_INTERVAL_S = 60.0
#: How often a changed table is written to its store.
SAVE_INTERVAL_S = 60.0
#: BEP 15: a client may use a connection id for one minute; the tracker
#: accepts it for at least two.  Ids are minted per window of this length...
CONNECTION_ID_WINDOW_S = 60.0
#: ...and ids of the current window and this many before it are accepted
#: (valid for 120-180 s after minting).
CONNECTION_ID_PAST_WINDOWS = 2
#: HTTP connections served at once (each holds a stream and a parser).
MAX_HTTP_CONNECTIONS = 1024
#: Seconds an HTTP connection may wait for (the rest of) a request.
HTTP_IDLE_TIMEOUT_S = 30.0
#: Largest request head: an announce is under 1 kB, a 74-hash scrape ~5 kB.
HTTP_MAX_HEADER_BYTES = 16 * 1024
#: Swarms listed in one full scrape (a scrape with no info_hash) when enabled.
MAX_FULL_SCRAPE = 1000
#: Version of the state file format written by :class:`FileSwarmStore`.
STATE_FORMAT = "peerlab-tracker-state"
STATE_VERSION = 1
#: Largest state file read back: MAX_SWARMS x a few peers in JSON stays far
#: below; a larger file is not ours.
MAX_STATE_BYTES = 1 << 30

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass
class TrackerConfig:
    """Settings of :class:`Tracker`; every bound has its reason above.

    ``http_port``/``udp_port`` 0 takes any free port, ``None`` serves no
    HTTP/UDP.  ``allowed``: the only info-hashes served (``None``: any).
    ``accept_ip``: honour the ``ip`` an announce names (off: every peer is
    listed at the address its packet came from, so nobody can list others).
    """

    host: str = "127.0.0.1"
    http_port: int | None = 0
    udp_port: int | None = 0
    interval: int = DEFAULT_INTERVAL_S
    #: ``None``: :data:`DEFAULT_MIN_INTERVAL_S`, or the interval when shorter.
    min_interval: int | None = None
    expiry_factor: float = EXPIRY_FACTOR
    default_numwant: int = DEFAULT_NUMWANT
    max_numwant: int = MAX_NUMWANT
    max_swarms: int = MAX_SWARMS
    max_peers_per_swarm: int = MAX_PEERS_PER_SWARM
    allowed: frozenset[bytes] | None = None
    accept_ip: bool = False
    full_scrape: bool = False
    sweep_interval: float = SWEEP_INTERVAL_S
    save_interval: float = SAVE_INTERVAL_S
    max_http_connections: int = MAX_HTTP_CONNECTIONS
    http_idle_timeout: float = HTTP_IDLE_TIMEOUT_S
    server_name: str = "peerlab-tracker"
    #: Key of the BEP 15 connection ids.  Trackers answering at one address
    #: (several processes behind one IP) must share it, since clients keep a
    #: connection id per tracker address; ``None`` draws one from the rng.
    connection_secret: bytes | None = None

    def __post_init__(self) -> None:
        for name in ("http_port", "udp_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 0xFFFF:
                raise ConfigError(f"{name.replace('_', ' ')} {port} is out of range")
        if self.interval < 1 or self.interval > 0x7FFFFFFF:
            raise ConfigError(f"announce interval {self.interval} s is out of range")
        if self.min_interval is not None and not 0 <= self.min_interval <= self.interval:
            raise ConfigError("min interval must lie between 0 and the interval")
        if not self.expiry_factor >= 1.0:
            raise ConfigError("peer expiry must be at least one interval")
        if self.default_numwant < 0 or self.max_numwant < 0:
            raise ConfigError("numwant bounds must not be negative")
        if self.max_swarms < 1 or self.max_peers_per_swarm < 1:
            raise ConfigError("the table bounds must be at least 1")
        if self.sweep_interval <= 0 or self.save_interval <= 0 or self.http_idle_timeout <= 0:
            raise ConfigError("sweep, save and idle intervals must be positive")
        if self.allowed is not None:
            bad = [h for h in self.allowed if len(h) != INFO_HASH_BYTES]
            if bad:
                raise ConfigError(f"allowed info-hash {bad[0]!r} is not 20 bytes")

    @property
    def min_interval_s(self) -> int:
        """The ``min interval`` told to clients."""
        if self.min_interval is None:
            return min(DEFAULT_MIN_INTERVAL_S, self.interval)
        return self.min_interval

    @property
    def expiry(self) -> float:
        """Seconds of silence after which a peer is dropped."""
        return self.interval * self.expiry_factor


# ------------------------------------------------------------ the table


class _Entry:
    """One listed peer."""

    __slots__ = (
        "peer_id", "ip", "port", "left", "uploaded", "downloaded", "key",
        "last_seen", "counted", "slot",
    )  # fmt: skip

    def __init__(self, peer_id: bytes, ip: str, port: int) -> None:
        self.peer_id = peer_id
        self.ip = ip
        self.port = port
        self.left = 0
        self.uploaded = 0
        self.downloaded = 0
        self.key: str | None = None
        self.last_seen = 0.0
        #: This peer's completion was counted in the swarm's ``downloaded``.
        self.counted = False
        #: Index in its swarm's seeder or leecher list.
        self.slot = -1

    @property
    def seeder(self) -> bool:
        return self.left == 0


class _Swarm:
    """The peers of one info-hash: by id in last-seen order (oldest first,
    so expiry pops from the front), and in two lists for O(1) sampling."""

    __slots__ = ("info_hash", "by_id", "by_addr", "seeders", "leechers", "downloaded")

    def __init__(self, info_hash: bytes) -> None:
        self.info_hash = info_hash
        self.by_id: OrderedDict[bytes, _Entry] = OrderedDict()
        self.by_addr: dict[tuple[str, int], bytes] = {}
        self.seeders: list[_Entry] = []
        self.leechers: list[_Entry] = []
        self.downloaded = 0

    def _list(self, e: _Entry) -> list[_Entry]:
        return self.seeders if e.seeder else self.leechers

    def _unlist(self, e: _Entry) -> None:
        lst = self._list(e)
        last = lst.pop()
        if last is not e:
            lst[e.slot] = last
            last.slot = e.slot
        e.slot = -1

    def _enlist(self, e: _Entry) -> None:
        lst = self._list(e)
        e.slot = len(lst)
        lst.append(e)

    def add(self, e: _Entry) -> None:
        self.by_id[e.peer_id] = e
        self.by_addr[(e.ip, e.port)] = e.peer_id
        self._enlist(e)

    def remove(self, e: _Entry) -> None:
        del self.by_id[e.peer_id]
        if self.by_addr.get((e.ip, e.port)) == e.peer_id:
            del self.by_addr[(e.ip, e.port)]
        self._unlist(e)

    def update(self, e: _Entry, ip: str, port: int, left: int, now: float) -> None:
        """Move ``e`` to a new address/left and to the end of the age order."""
        if (ip, port) != (e.ip, e.port):
            if self.by_addr.get((e.ip, e.port)) == e.peer_id:
                del self.by_addr[(e.ip, e.port)]
            e.ip, e.port = ip, port
            self.by_addr[(ip, port)] = e.peer_id
        if (left == 0) != e.seeder:
            self._unlist(e)
            e.left = left
            self._enlist(e)
        else:
            e.left = left
        e.last_seen = now
        self.by_id.move_to_end(e.peer_id)

    def expire(self, cutoff: float) -> int:
        """Drop peers last seen before ``cutoff``; how many went."""
        n = 0
        while self.by_id:
            e = next(iter(self.by_id.values()))
            if e.last_seen >= cutoff:
                break
            self.remove(e)
            n += 1
        return n

    def stats(self) -> ScrapeStats:
        return ScrapeStats(len(self.seeders), self.downloaded, len(self.leechers))


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One listed peer, as :meth:`Tracker.swarm` shows it (``age`` in seconds)."""

    peer_id: bytes
    ip: str
    port: int
    left: int
    uploaded: int
    downloaded: int
    seeder: bool
    age: float


@dataclass(frozen=True, slots=True)
class SwarmInfo:
    """One swarm of the table: counts and its peers, oldest first."""

    info_hash: bytes
    seeders: int
    leechers: int
    downloaded: int
    peers: tuple[PeerInfo, ...]


@dataclass(frozen=True, slots=True)
class SavedPeer:
    """A peer in a snapshot; ``seen`` is the wall-clock time of its last announce."""

    peer_id: bytes
    ip: str
    port: int
    left: int
    uploaded: int
    downloaded: int
    key: str | None
    seen: float
    counted: bool


@dataclass(frozen=True, slots=True)
class SavedSwarm:
    info_hash: bytes
    downloaded: int
    peers: tuple[SavedPeer, ...]


@dataclass(frozen=True, slots=True)
class SwarmSnapshot:
    """The whole table at one moment (``saved_at``: wall-clock seconds);
    ``generation`` orders snapshots so an older one never overwrites a newer."""

    saved_at: float
    generation: int
    swarms: tuple[SavedSwarm, ...]


class SwarmTable:
    """The swarm table of BEP 3's tracker, with time passed in (no runtime).

    :class:`Tracker` serves it; tests drive it directly with any ``now``.
    ``announce`` and ``scrape`` never raise for a client's wishes: refusals
    come back as :class:`~peerlab.wire.tracker.TrackerFailure`.
    """

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._swarms: dict[bytes, _Swarm] = {}
        #: Counts not yet reported; :class:`Tracker` hands them to its
        #: observer and resets them.
        self.expired = 0
        self.swarm_full = 0
        self.table_full = 0
        #: Bumped on every change: the saver compares it.
        self.changes = 0

    def __len__(self) -> int:
        return len(self._swarms)

    # ---------------------------------------------------------- announce

    def announce(
        self,
        req: AnnounceRequest,
        source_ip: str,
        now: float,
        sample: Callable[[range, int], list[int]],
    ) -> AnnounceResponse | TrackerFailure:
        """Apply one announce and choose the peers of the reply.

        ``source_ip``: where the announce came from (the peer is listed
        there unless ``accept_ip`` honours ``req.ip``); ``sample(range, k)``
        draws ``k`` distinct members of a range (``rng.sample``).
        """
        cfg = self.config
        if cfg.allowed is not None and req.info_hash not in cfg.allowed:
            return TrackerFailure("unregistered torrent")
        ip = req.ip if cfg.accept_ip and req.ip is not None else source_ip
        swarm = self._swarms.get(req.info_hash)
        if swarm is not None:
            self.expired += swarm.expire(now - cfg.expiry)
        entry = swarm.by_id.get(req.peer_id) if swarm is not None else None
        if entry is not None and entry.ip != ip:
            # A peer id moving address must prove it is the same client.
            if entry.key is None or entry.key != req.key:
                return TrackerFailure("peer id already in use from another address")
        if req.event is AnnounceEvent.STOPPED:
            if swarm is not None and entry is not None:
                swarm.remove(entry)
                self.changes += 1
                self._drop_if_empty(swarm)
            return self._reply(swarm, [])
        if swarm is None:
            if len(self._swarms) >= cfg.max_swarms:
                self.table_full += 1
                return TrackerFailure("tracker is full, try again later", retry_in=30)
            swarm = self._swarms[req.info_hash] = _Swarm(req.info_hash)
        listed = True
        if entry is None:
            stale = swarm.by_addr.get((ip, req.port))
            if stale is not None:
                # The same address under a new peer id: the client restarted.
                swarm.remove(swarm.by_id[stale])
            if len(swarm.by_id) >= cfg.max_peers_per_swarm:
                self.swarm_full += 1
                listed = False
            else:
                entry = _Entry(req.peer_id, ip, req.port)
                entry.left = req.left
                entry.last_seen = now
                swarm.add(entry)
        else:
            swarm.update(entry, ip, req.port, req.left, now)
        if entry is not None and listed:
            entry.uploaded = req.uploaded
            entry.downloaded = req.downloaded
            if req.key is not None:
                entry.key = req.key
            if req.event is AnnounceEvent.COMPLETED and not entry.counted:
                entry.counted = True
                swarm.downloaded += 1
            self.changes += 1
        if not swarm.by_id and not listed:
            self._drop_if_empty(swarm)
        wanted = cfg.default_numwant if req.numwant is None else req.numwant
        peers = self._choose(swarm, entry, req.left == 0, min(wanted, cfg.max_numwant), sample)
        return self._reply(swarm, peers)

    def _reply(self, swarm: _Swarm | None, peers: list[Peer]) -> AnnounceResponse:
        cfg = self.config
        return AnnounceResponse(
            interval=cfg.interval,
            min_interval=cfg.min_interval_s,
            complete=len(swarm.seeders) if swarm is not None else 0,
            incomplete=len(swarm.leechers) if swarm is not None else 0,
            peers=tuple(peers),
        )

    @staticmethod
    def _choose(
        swarm: _Swarm,
        me: _Entry | None,
        seeding: bool,
        k: int,
        sample: Callable[[range, int], list[int]],
    ) -> list[Peer]:
        """Up to ``k`` random peers other than ``me``; only leechers for a seeder."""
        leechers, seeders = swarm.leechers, swarm.seeders
        n = len(leechers) + (0 if seeding else len(seeders))
        if k <= 0 or n == 0:
            return []
        draw = min(n, k + 1)  # one spare in case ``me`` is drawn
        out: list[Peer] = []
        for i in sample(range(n), draw):
            e = leechers[i] if i < len(leechers) else seeders[i - len(leechers)]
            if e is me:
                continue
            out.append(Peer(e.ip, e.port, e.peer_id))
            if len(out) == k:
                break
        return out

    def _drop_if_empty(self, swarm: _Swarm) -> None:
        if not swarm.by_id and self._swarms.get(swarm.info_hash) is swarm:
            del self._swarms[swarm.info_hash]

    # ------------------------------------------------------------ scrape

    def scrape(self, info_hashes: Iterable[bytes], now: float) -> list[tuple[bytes, ScrapeStats]]:
        """Figures per asked info-hash, in order (zeros for an unknown swarm;
        hashes outside the allow-list are left out)."""
        cfg = self.config
        out: list[tuple[bytes, ScrapeStats]] = []
        for h in info_hashes:
            if cfg.allowed is not None and h not in cfg.allowed:
                continue
            swarm = self._swarms.get(h)
            if swarm is None:
                out.append((h, ScrapeStats(0, 0, 0)))
                continue
            self.expired += swarm.expire(now - cfg.expiry)
            out.append((h, swarm.stats()))
            self._drop_if_empty(swarm)
        return out

    def full_scrape(self, now: float, limit: int) -> list[tuple[bytes, ScrapeStats]]:
        """Figures of up to ``limit`` swarms (a BEP 48 scrape without info_hash)."""
        hashes = list(self._swarms)[:limit]
        return self.scrape(hashes, now)

    # ------------------------------------------------------------- upkeep

    def sweep(self, now: float) -> int:
        """Expire stale peers of every swarm, forget empty swarms; how many peers went."""
        cutoff = now - self.config.expiry
        gone = 0
        for swarm in list(self._swarms.values()):
            gone += swarm.expire(cutoff)
            self._drop_if_empty(swarm)
        self.expired += gone
        if gone:
            self.changes += 1
        return gone

    def info(self, info_hash: bytes, now: float) -> SwarmInfo | None:
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return None
        peers = tuple(
            PeerInfo(e.peer_id, e.ip, e.port, e.left, e.uploaded, e.downloaded, e.seeder,
                     max(0.0, now - e.last_seen))
            for e in swarm.by_id.values()
        )  # fmt: skip
        return SwarmInfo(
            info_hash, len(swarm.seeders), len(swarm.leechers), swarm.downloaded, peers
        )

    def info_hashes(self) -> list[bytes]:
        return list(self._swarms)

    # -------------------------------------------------------- persistence

    def snapshot(self, now: float, wall: float, generation: int) -> SwarmSnapshot:
        """The table as wall-clock data (ages survive a restart)."""
        swarms = []
        for swarm in self._swarms.values():
            peers = tuple(
                SavedPeer(e.peer_id, e.ip, e.port, e.left, e.uploaded, e.downloaded, e.key,
                          wall - (now - e.last_seen), e.counted)
                for e in swarm.by_id.values()
            )  # fmt: skip
            swarms.append(SavedSwarm(swarm.info_hash, swarm.downloaded, peers))
        return SwarmSnapshot(wall, generation, tuple(swarms))

    def restore(self, snapshot: SwarmSnapshot, now: float, wall: float) -> int:
        """Load a snapshot into an empty table, dropping peers that expired
        meanwhile and everything beyond the bounds; how many peers came back."""
        cfg = self.config
        self._swarms.clear()
        restored = 0
        for saved in snapshot.swarms:
            if len(self._swarms) >= cfg.max_swarms:
                break
            if cfg.allowed is not None and saved.info_hash not in cfg.allowed:
                continue
            swarm = _Swarm(saved.info_hash)
            swarm.downloaded = saved.downloaded
            for p in sorted(saved.peers, key=lambda p: p.seen):
                age = max(0.0, wall - p.seen)
                if age >= cfg.expiry or len(swarm.by_id) >= cfg.max_peers_per_swarm:
                    continue
                if p.peer_id in swarm.by_id or (p.ip, p.port) in swarm.by_addr:
                    continue
                e = _Entry(p.peer_id, p.ip, p.port)
                e.left, e.uploaded, e.downloaded = p.left, p.uploaded, p.downloaded
                e.key, e.counted, e.last_seen = p.key, p.counted, now - age
                swarm.add(e)
                restored += 1
            if swarm.by_id:
                self._swarms[saved.info_hash] = swarm
        return restored


# ------------------------------------------------------------ the stores


class SwarmStore(Protocol):
    """Where :class:`Tracker` keeps its table across restarts.

    ``save`` may run on a worker thread; it must ignore a snapshot whose
    ``generation`` is not newer than the last one it wrote.
    """

    def load(self) -> SwarmSnapshot | None:
        """The last saved snapshot, ``None`` when there is none.  Raises
        :class:`~peerlab.errors.StorageError` when what is stored is unreadable."""

    def save(self, snapshot: SwarmSnapshot) -> None: ...


class MemorySwarmStore:
    """Keeps the last snapshot in memory: a restart in the same process (tests,
    the simulator) hands it to the next :class:`Tracker`."""

    def __init__(self) -> None:
        self.snapshot: SwarmSnapshot | None = None
        self.saves = 0

    def load(self) -> SwarmSnapshot | None:
        return self.snapshot

    def save(self, snapshot: SwarmSnapshot) -> None:
        if self.snapshot is None or snapshot.generation > self.snapshot.generation:
            self.snapshot = snapshot
            self.saves += 1


def _saved_peer_json(p: SavedPeer) -> list[Any]:
    return [p.peer_id.hex(), p.ip, p.port, p.left, p.uploaded, p.downloaded, p.key,
            round(p.seen, 3), p.counted]  # fmt: skip


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _bytes20(v: Any) -> bytes:
    if not isinstance(v, str) or len(v) != 40:
        raise ValueError("not a 20-byte hex string")
    return bytes.fromhex(v)


def _parse_state(doc: Any) -> SwarmSnapshot:
    """A snapshot from the state file's JSON; ValueError on anything off."""
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise ValueError("not a tracker state file")
    if doc.get("version") != STATE_VERSION:
        raise ValueError(f"unknown state version {doc.get('version')!r}")
    saved_at = doc.get("saved_at")
    generation = doc.get("generation", 0)
    swarms_doc = doc.get("swarms")
    if not isinstance(saved_at, int | float) or not _is_count(generation):
        raise ValueError("bad saved_at or generation")
    if not isinstance(swarms_doc, list):
        raise ValueError("swarms is not a list")
    swarms: list[SavedSwarm] = []
    for s in swarms_doc:
        if not isinstance(s, dict) or not _is_count(s.get("downloaded")):
            raise ValueError("bad swarm entry")
        peers_doc = s.get("peers")
        if not isinstance(peers_doc, list):
            raise ValueError("bad peer list")
        peers: list[SavedPeer] = []
        for p in peers_doc:
            if not isinstance(p, list) or len(p) != 9:
                raise ValueError("bad peer entry")
            pid, ip, port, left, up, down, key, seen, counted = p
            if not isinstance(ip, str) or not (isinstance(port, int) and 0 < port <= 0xFFFF):
                raise ValueError("bad peer address")
            if not all(_is_count(v) for v in (left, up, down)):
                raise ValueError("bad peer counts")
            if key is not None and not isinstance(key, str):
                raise ValueError("bad peer key")
            if not isinstance(seen, int | float) or not math.isfinite(seen):
                raise ValueError("bad peer time")
            if not isinstance(counted, bool):
                raise ValueError("bad peer flag")
            peers.append(SavedPeer(_bytes20(pid), ip, port, left, up, down, key, float(seen),
                                   counted))  # fmt: skip
        swarms.append(SavedSwarm(_bytes20(s.get("info_hash")), s["downloaded"], tuple(peers)))
    return SwarmSnapshot(float(saved_at), generation, tuple(swarms))


class FileSwarmStore:
    """The table as one JSON file, replaced atomically on every save: written
    to a temporary file in the same folder, fsynced, renamed over the old
    one, and the folder fsynced, so a crash at any moment leaves either the
    old or the new table, never a torn one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._written = -1

    def load(self) -> SwarmSnapshot | None:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(
                f"cannot read the tracker state {self.path}: {exc.strerror or exc}"
            ) from None
        if len(data) > MAX_STATE_BYTES:
            raise StorageError(f"tracker state {self.path} is larger than {MAX_STATE_BYTES} bytes")
        try:
            snapshot = _parse_state(json.loads(data.decode("utf-8")))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise StorageError(f"{self.path} is not a readable tracker state: {exc}") from None
        self._written = max(self._written, snapshot.generation)
        return snapshot

    def save(self, snapshot: SwarmSnapshot) -> None:
        doc = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "saved_at": snapshot.saved_at,
            "generation": snapshot.generation,
            "swarms": [
                {
                    "info_hash": s.info_hash.hex(),
                    "downloaded": s.downloaded,
                    "peers": [_saved_peer_json(p) for p in s.peers],
                }
                for s in snapshot.swarms
            ],
        }
        data = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        with self._lock:
            if snapshot.generation <= self._written:
                return
            self._write(data)
            self._written = snapshot.generation

    def _write(self, data: bytes) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise StorageError(f"cannot write the tracker state in {folder}: "
                               f"{exc.strerror or exc}") from None  # fmt: skip
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StorageError(f"cannot write the tracker state {self.path}: "
                               f"{exc.strerror or exc}") from None  # fmt: skip
        try:
            dfd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)


# ------------------------------------------------------------ the tracker


class Tracker:
    """The tracker: a :class:`SwarmTable` served over HTTP and UDP (see the
    module docstring).  Call :meth:`start`, and :meth:`close` at the end."""

    def __init__(
        self,
        runtime: Runtime,
        config: TrackerConfig | None = None,
        store: SwarmStore | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config or TrackerConfig()
        self.store = store
        self.table = SwarmTable(self.config)
        self._secret = self.config.connection_secret or runtime.rng.getrandbits(256).to_bytes(
            32, "big"
        )
        self._listener: Listener | None = None
        self._endpoint: DatagramEndpoint | None = None
        self._handlers: set[_HttpHandler] = set()
        self._sweep_timer: Timer | None = None
        self._save_timer: Timer | None = None
        self._generation = 0
        self._saved_changes = 0
        self._saving = False
        self._started = False
        #: Loaded and bound: only then does close() write the table back (a
        #: start that failed must not overwrite a state file it could not read).
        self._serving = False
        self._closed = False

    # --------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Load the saved table, then bind HTTP and UDP.  Raises
        :class:`~peerlab.errors.AddressInUse` (nothing stays bound then) or
        :class:`~peerlab.errors.StorageError` for an unreadable store."""
        if self._started:
            raise LocalProtocolError("the tracker is already started")
        self._started = True
        rt, cfg = self.runtime, self.config
        if self.store is not None:
            snapshot = self.store.load()
            if snapshot is not None:
                self._generation = snapshot.generation
                restored = self.table.restore(snapshot, rt.now(), rt.wall_time())
                self._saved_changes = self.table.changes
                rt.observer.event("tracker.loaded", swarms=len(self.table), peers=restored)
        try:
            if cfg.http_port is not None:
                try:
                    self._listener = rt.listen((cfg.host, cfg.http_port), self._new_http_handler)
                except AddressInUse as exc:
                    raise AddressInUse(
                        f"HTTP port {cfg.http_port} on {cfg.host} is already in use"
                    ) from exc
            if cfg.udp_port is not None:
                try:
                    self._endpoint = rt.bind_udp((cfg.host, cfg.udp_port), _UdpHandler(self))
                except AddressInUse as exc:
                    raise AddressInUse(
                        f"UDP port {cfg.udp_port} on {cfg.host} is already in use"
                    ) from exc
        except NetworkError:
            self._close_sockets()
            raise
        self._serving = True
        self._sweep_timer = rt.call_later(cfg.sweep_interval, self._on_sweep)
        if self.store is not None:
            self._save_timer = rt.call_later(cfg.save_interval, self._on_save_timer)
        rt.observer.event(
            "tracker.started", http=self.announce_url, udp=self.udp_url, swarms=len(self.table)
        )

    def close(self) -> None:
        """Stop serving (connections are dropped) and save the table."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._sweep_timer, self._save_timer):
            if timer is not None:
                timer.cancel()
        self._sweep_timer = self._save_timer = None
        self._close_sockets()
        for h in list(self._handlers):
            h.abort()
        self._handlers.clear()
        if self.store is not None and self._serving:
            self.save()

    def _close_sockets(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None

    @property
    def http_address(self) -> Address | None:
        return self._listener.address if self._listener is not None else None

    @property
    def udp_address(self) -> Address | None:
        return self._endpoint.address if self._endpoint is not None else None

    @property
    def announce_url(self) -> str | None:
        """``http://HOST:PORT/announce``, the URL a .torrent names."""
        a = self.http_address
        return f"http://{_host_in_url(a[0])}:{a[1]}/announce" if a is not None else None

    @property
    def udp_url(self) -> str | None:
        """``udp://HOST:PORT/announce`` (BEP 15 URLs carry no meaningful path)."""
        a = self.udp_address
        return f"udp://{_host_in_url(a[0])}:{a[1]}/announce" if a is not None else None

    # ------------------------------------------------------------- table

    def swarm(self, info_hash: bytes) -> SwarmInfo | None:
        """One swarm as it stands (stale peers already left out)."""
        self.table.scrape([info_hash], self.runtime.now())
        return self.table.info(info_hash, self.runtime.now())

    def swarms(self) -> list[SwarmInfo]:
        now = self.runtime.now()
        self.table.sweep(now)
        self._report_counts()
        out = [self.table.info(h, now) for h in self.table.info_hashes()]
        return [s for s in out if s is not None]

    def announce(self, req: AnnounceRequest, source_ip: str) -> AnnounceResponse | TrackerFailure:
        """Apply an announce from ``source_ip`` (either transport ends here)."""
        obs = self.runtime.observer
        obs.count("tracker.announces")
        result = self.table.announce(req, source_ip, self.runtime.now(), self.runtime.rng.sample)
        if isinstance(result, TrackerFailure):
            obs.count("tracker.failures")
            obs.event("tracker.refused", info_hash=req.info_hash.hex(), peer=source_ip,
                      reason=result.reason)  # fmt: skip
        elif req.event is not AnnounceEvent.NONE:
            obs.event(
                "tracker.peer_event",
                event=req.event.http,
                info_hash=req.info_hash.hex(),
                peer=f"{source_ip}:{req.port}",
                left=req.left,
            )
        self._report_counts()
        return result

    def scrape(self, info_hashes: Iterable[bytes]) -> ScrapeResponse | TrackerFailure:
        """BEP 48 figures for the asked swarms; none asked: a full scrape, if enabled."""
        cfg = self.config
        self.runtime.observer.count("tracker.scrapes")
        hashes = list(info_hashes)
        now = self.runtime.now()
        if not hashes:
            if not cfg.full_scrape:
                self.runtime.observer.count("tracker.failures")
                return TrackerFailure("full scrape is disabled: name an info_hash")
            files = self.table.full_scrape(now, MAX_FULL_SCRAPE)
        else:
            files = self.table.scrape(hashes, now)
        self._report_counts()
        return ScrapeResponse(tuple(files), min_request_interval=cfg.min_interval_s)

    def sweep(self) -> int:
        """Expire stale peers across the table now."""
        gone = self.table.sweep(self.runtime.now())
        self._report_counts()
        return gone

    def _report_counts(self) -> None:
        t, obs = self.table, self.runtime.observer
        if t.expired:
            obs.count("tracker.peers_expired", t.expired)
            t.expired = 0
        if t.swarm_full:
            obs.count("tracker.swarm_full", t.swarm_full)
            t.swarm_full = 0
        if t.table_full:
            obs.count("tracker.table_full", t.table_full)
            t.table_full = 0

    def _on_sweep(self) -> None:
        self._sweep_timer = None
        if self._closed:
            return
        self.sweep()
        self._sweep_timer = self.runtime.call_later(self.config.sweep_interval, self._on_sweep)

    # ------------------------------------------------------- persistence

    def _snapshot(self) -> SwarmSnapshot:
        self._generation += 1
        self._saved_changes = self.table.changes
        rt = self.runtime
        return self.table.snapshot(rt.now(), rt.wall_time(), self._generation)

    def save(self) -> None:
        """Write the table to the store now, on this thread."""
        if self.store is None:
            return
        self.table.sweep(self.runtime.now())
        snapshot = self._snapshot()
        self.store.save(snapshot)
        self.runtime.observer.count("tracker.saves")
        self.runtime.observer.event("tracker.saved", swarms=len(snapshot.swarms))

    def _on_save_timer(self) -> None:
        self._save_timer = None
        if self._closed or self.store is None:
            return
        self._save_timer = self.runtime.call_later(self.config.save_interval, self._on_save_timer)
        if self._saving or self.table.changes == self._saved_changes:
            return
        store = self.store
        snapshot = self._snapshot()
        self._saving = True

        def done(_: None, exc: BaseException | None) -> None:
            self._saving = False
            obs = self.runtime.observer
            if exc is not None:
                # Try again at the next tick; the old file is intact.
                self._saved_changes = -1
                obs.event("tracker.save_failed", error=str(exc))
            else:
                obs.count("tracker.saves")
                obs.event("tracker.saved", swarms=len(snapshot.swarms))

        self.runtime.offload(lambda: store.save(snapshot), done)

    # -------------------------------------------------------------- HTTP

    def _new_http_handler(self) -> _HttpHandler:
        return _HttpHandler(self)

    def _http_route(self, req: Request, source_ip: str) -> tuple[int, bytes]:
        """Status and body for one HTTP request (BEP 3 announce, BEP 48 scrape)."""
        obs = self.runtime.observer
        obs.count("tracker.http_requests")
        if req.method != "GET":
            return 405, b"only GET\n"
        path, _, query = req.target.partition("?")
        if path == "/announce":
            try:
                areq = parse_announce_query(query)
            except RemoteProtocolError as exc:
                obs.count("tracker.failures")
                obs.event("tracker.bad_request", peer=source_ip, error=str(exc)[:200])
                return 200, encode_failure(f"bad announce: {exc}"[:200])
            obs.count("tracker.announces_http")
            result = self.announce(areq, source_ip)
            if isinstance(result, TrackerFailure):
                return 200, encode_failure(result.reason, result.retry_in)
            return 200, encode_announce_response(
                result, compact=areq.compact, no_peer_id=areq.no_peer_id
            )
        if path == "/scrape":
            try:
                sreq = parse_scrape_query(query)
            except RemoteProtocolError as exc:
                obs.count("tracker.failures")
                obs.event("tracker.bad_request", peer=source_ip, error=str(exc)[:200])
                return 200, encode_failure(f"bad scrape: {exc}"[:200])
            sresult = self.scrape(sreq.info_hashes)
            if isinstance(sresult, TrackerFailure):
                return 200, encode_failure(sresult.reason)
            return 200, encode_scrape_response(sresult)
        return 404, b"no such resource: try /announce or /scrape\n"

    # --------------------------------------------------------------- UDP

    def _connection_id(self, addr: Address, window: int) -> int:
        # Bound to the IP only, not the port: one client may announce from
        # several sockets (libtorrent caches connection ids per tracker, not
        # per socket), and the id exists to stop spoofed source *addresses*.
        mac = hashlib.blake2b(f"{window}|{addr[0]}".encode(), key=self._secret, digest_size=8)
        return int.from_bytes(mac.digest(), "big")

    def mint_connection_id(self, addr: Address) -> int:
        """A BEP 15 connection id for ``addr``, valid for 2-3 minutes."""
        return self._connection_id(addr, int(self.runtime.now() // CONNECTION_ID_WINDOW_S))

    def connection_id_valid(self, addr: Address, connection_id: int) -> bool:
        window = int(self.runtime.now() // CONNECTION_ID_WINDOW_S)
        return any(
            self._connection_id(addr, window - back) == connection_id
            for back in range(CONNECTION_ID_PAST_WINDOWS + 1)
        )

    def _udp_packet(self, data: bytes, addr: Address) -> UdpPacket | None:
        """The reply to one datagram, or ``None`` to stay silent."""
        obs = self.runtime.observer
        try:
            packet = decode_udp_request(data)
        except RemoteProtocolError as exc:
            # Silence: an answer to garbage from a spoofed source would make
            # us a reflector.
            obs.count("tracker.udp_garbage")
            obs.event("tracker.bad_request", peer=f"{addr[0]}:{addr[1]}", error=str(exc)[:200])
            return None
        if isinstance(packet, ConnectRequest):
            obs.count("tracker.udp_connects")
            return ConnectResponse(packet.transaction_id, self.mint_connection_id(addr))
        if not self.connection_id_valid(addr, packet.connection_id):
            # The error is shorter than any announce or scrape: no amplification.
            obs.count("tracker.udp_bad_connection_id")
            return UdpError(packet.transaction_id, "invalid connection id")
        if isinstance(packet, UdpAnnounceRequest):
            return self._udp_announce(packet, addr)
        obs.count("tracker.udp_scrapes")
        result = self.scrape(packet.info_hashes)
        if isinstance(result, TrackerFailure):
            return UdpError(packet.transaction_id, result.reason)
        # BEP 15 answers every hash in order: zeros where the tracker has none.
        stats = tuple(result.get(h) or ScrapeStats(0, 0, 0) for h in packet.info_hashes)
        return UdpScrapeResponse(packet.transaction_id, stats)

    def _udp_announce(self, p: UdpAnnounceRequest, addr: Address) -> UdpPacket:
        obs = self.runtime.observer
        obs.count("tracker.announces_udp")
        if p.port == 0:
            return UdpError(p.transaction_id, "port 0 cannot be connected to")
        ip: str | None = None
        if p.ip:
            ip = ".".join(str(b) for b in p.ip.to_bytes(4, "big"))
        req = AnnounceRequest(
            info_hash=p.info_hash,
            peer_id=p.peer_id,
            port=p.port,
            uploaded=p.uploaded,
            downloaded=p.downloaded,
            left=p.left,
            event=p.event,
            compact=True,
            numwant=None if p.num_want < 0 else p.num_want,
            key=f"{p.key:08x}",
            ip=ip,
        )
        result = self.announce(req, addr[0])
        if isinstance(result, TrackerFailure):
            return UdpError(p.transaction_id, result.reason)
        ipv6 = ":" in addr[0]
        # BEP 15: the reply carries peers of the request's address family only.
        peers = tuple(peer for peer in result.peers if (":" in peer.ip) == ipv6)
        return UdpAnnounceResponse(
            p.transaction_id,
            interval=result.interval,
            leechers=min(result.incomplete or 0, 0x7FFFFFFF),
            seeders=min(result.complete or 0, 0x7FFFFFFF),
            peers=peers,
        )


def _peer_ip(host: str) -> str:
    """The address a peer is listed at: an IPv4-mapped IPv6 source (a
    dual-stack socket) is the IPv4 peer it stands for, so it goes into the
    compact ``peers`` string (BEP 23) rather than ``peers6``."""
    if host.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _UdpHandler:
    """The tracker's UDP socket: one reply per good datagram."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def datagram_received(self, data: bytes, addr: Address) -> None:
        t = self.tracker
        if t._closed or t._endpoint is None:
            return
        try:
            source = _peer_ip(addr[0])
            reply = t._udp_packet(data, (source, addr[1]))
            if reply is not None:
                t._endpoint.send_to(encode_udp(reply, ipv6=":" in source), addr)
        except Exception as exc:  # the handler boundary: a datagram costs only itself
            t.runtime.observer.event("tracker.handler_error", where="udp", error=repr(exc))

    def error_received(self, exc: NetworkError) -> None:
        self.tracker.runtime.observer.event("tracker.udp_error", error=str(exc))


class _HttpHandler(BaseStreamHandler):
    """One HTTP connection: GET /announce and GET /scrape, keep-alive allowed."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.runtime = tracker.runtime
        self.conn = ServerConnection(max_header_bytes=HTTP_MAX_HEADER_BYTES)
        self.stream: Stream | None = None
        self.peer_ip = "?"
        self.closed = False
        self._idle: Timer | None = None

    # ---------------------------------------------------- runtime callbacks

    def connection_made(self, stream: Stream) -> None:
        self._guard(lambda: self._made(stream))

    def data_received(self, data: bytes) -> None:
        self._guard(lambda: self._feed(data))

    def eof_received(self) -> None:
        self._guard(self._eof)

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.closed = True
        self._cancel_idle()
        self.tracker._handlers.discard(self)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # the handler boundary: costs this connection only
            self.runtime.observer.event(
                "tracker.handler_error", where="http", peer=self.peer_ip, error=repr(exc)
            )
            self.abort()

    # ------------------------------------------------------------ workings

    def _made(self, stream: Stream) -> None:
        self.stream = stream
        self.peer_ip = _peer_ip(str(stream.remote_address[0]))
        t = self.tracker
        if t._closed or len(t._handlers) >= t.config.max_http_connections:
            self.runtime.observer.count("tracker.http_refused_connections")
            stream.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                b"Retry-After: 30\r\nConnection: close\r\n\r\n"
            )
            self.closed = True
            stream.close()
            return
        t._handlers.add(self)
        self._arm_idle()

    def _feed(self, data: bytes) -> None:
        while not self.closed:
            try:
                events = self.conn.receive_data(data)
            except RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            data = b""
            for ev in events:
                self._on_event(ev)
                if self.closed:
                    return
            if not (self.conn.response_complete and self.conn.request_complete):
                return
            if not self.conn.keep_alive:
                self.close()
                return
            self.conn.start_next_cycle()
            self._arm_idle()

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, Request):
            status, body = self.tracker._http_route(ev, self.peer_ip)
            self._respond(status, body)
        elif isinstance(ev, ConnectionClosed):
            self.close()
        elif isinstance(ev, EndOfMessage):
            pass  # a request body is read and dropped: no route takes one

    def _respond(self, status: int, body: bytes) -> None:
        ctype = "text/plain" if status == 200 else "text/plain; charset=utf-8"
        fields = [
            ("Server", self.tracker.config.server_name),
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
        ]
        if status == 405:
            fields.append(("Allow", "GET"))
        headers = Headers(fields)
        self.conn.send_response(Response(status, _REASONS.get(status, "Unknown"), headers))
        self.conn.send_data(body)
        self.conn.send_end()
        self._flush()

    def _bad_request(self, exc: RemoteProtocolError) -> None:
        obs = self.runtime.observer
        obs.count("tracker.http_bad_requests")
        obs.event("tracker.bad_request", peer=self.peer_ip, error=str(exc)[:200])
        code = exc.code if exc.code in _REASONS else 400
        try:
            self.conn.send_response(
                Response(
                    code or 400,
                    _REASONS.get(code or 400, "Bad Request"),
                    Headers([("Content-Length", "0"), ("Connection", "close")]),
                )
            )
            self.conn.send_end()
            self._flush()
        except LocalProtocolError:
            pass  # a response was already under way: just close
        self.close()

    def _eof(self) -> None:
        if self.closed:
            return
        try:
            events = self.conn.receive_eof()
        except RemoteProtocolError:
            self.close()
            return
        for ev in events:
            self._on_event(ev)

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.stream is not None and not self.closed:
            self.stream.write(out)

    def _arm_idle(self) -> None:
        self._cancel_idle()
        self._idle = self.runtime.call_later(self.tracker.config.http_idle_timeout, self._idle_out)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_out(self) -> None:
        self._idle = None
        if not self.closed:
            self.runtime.observer.count("tracker.http_idle_closed")
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_idle()
        self.tracker._handlers.discard(self)
        if self.stream is not None:
            self.stream.close()

    def abort(self) -> None:
        self.closed = True
        self._cancel_idle()
        self.tracker._handlers.discard(self)
        if self.stream is not None:
            self.stream.abort()
