"""Settings of a BitTorrent session: one documented dataclass (issue 6).

Every bound a remote peer could otherwise push on is a named constant here
with its reason; :class:`SessionConfig` carries the tunable ones with their
defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from peerlab.errors import ConfigError
from peerlab.overlays.bittorrent.choker import ChokerConfig
from peerlab.overlays.bittorrent.picker import PickerConfig
from peerlab.storage.pieces import MAX_BUFFER_BYTES, READ_CACHE_BYTES

__all__ = [
    "ANNOUNCE_RETRY_MAX",
    "ANNOUNCE_RETRY_MIN",
    "CLIENT_VERSION",
    "FLOOD_WINDOW",
    "MAGNET_LEFT",
    "MAX_BANNED",
    "MAX_CANDIDATES",
    "MAX_CONNECT_ATTEMPTS",
    "MAX_METADATA_REQUESTS",
    "MAX_PENDING_HAVE_INDEX",
    "MAX_REFUSED_PER_WINDOW",
    "MAX_REQUEST_QUEUE",
    "MIN_REQUEST_QUEUE",
    "MIN_REQUEST_TIMEOUT",
    "PEX_MAX_ADDED",
    "PEX_MAX_DROPPED",
    "PEX_MIN_INTERVAL",
    "SessionConfig",
]

#: Our client name in the extended handshake's "v" (BEP 10).
CLIENT_VERSION: Final = "peerlab 0.1.0"
#: Addresses remembered per torrent to connect to later (from trackers, PEX,
#: magnet links): trackers return 50 at a time and PEX 50 per minute per
#: peer, so a torrent that is not full burns through them; a peer cannot
#: grow the table beyond this (the oldest untried are dropped).
MAX_CANDIDATES: Final = 1000
#: Failed connection attempts after which an address is forgotten.
MAX_CONNECT_ATTEMPTS: Final = 3
#: Peers (peer ids and addresses) remembered as banned per torrent.
MAX_BANNED: Final = 1024
#: Requests the pipeline keeps outstanding to one peer at least (a new
#: connection starts here, before its rate is known); libtorrent's
#: ``min_request_queue`` is 2.  More would not help a slow peer, only make its
#: blocks wait: a 56K modem unchoked by several peers gets each one's blocks
#: tens of seconds apart, and blocks queued behind them time out.  A peer
#: that timed out (snubbed) gets one request at a time.
MIN_REQUEST_QUEUE: Final = 2
#: Shortest request timeout (s): the timeout adapts to the gaps between a
#: peer's blocks, and a LAN peer's are milliseconds, so its timeout would be
#: libtorrent's floor of 2 s; a Python peer on a busy machine (a GC pause,
#: two cores shared by many processes) can stall that long, and its block
#: then came twice (seen against libtorrent on loopback).  A stuck peer's
#: requests move after 10 s instead.
MIN_REQUEST_TIMEOUT: Final = 10.0
#: ... and at most: libtorrent's ``max_out_request_queue`` is 500.  Capped
#: further by the peer's ``reqq`` (BEP 10).
MAX_REQUEST_QUEUE: Final = 500
#: BEP 11 conventions (wiki.theory.org "BitTorrentPeerExchangeConventions"):
#: at most 50 added and 50 dropped peers per message, at most one message a
#: minute; a sender a little under a minute is tolerated.
PEX_MAX_ADDED: Final = 50
PEX_MAX_DROPPED: Final = 50
PEX_MIN_INTERVAL: Final = 45.0
#: Metadata (BEP 9) requests we answer per connection: the metadata of the
#: largest torrent is ~3000 pieces; a peer asking much more than once for
#: each is flooding us.
MAX_METADATA_REQUESTS: Final = 4096
#: Highest piece index remembered from a have before a magnet's metadata
#: says how many pieces there are (the bitmap grows to it): BEP 3 pieces
#: are bounded by :data:`peerlab.wire.peer.MAX_PIECE_COUNT` anyway.
MAX_PENDING_HAVE_INDEX: Final = 1 << 21
#: Window over which refused requests (while choked, over the queue,
#: duplicates) are counted, and how many a peer may send in it before it is
#: disconnected as a flooder: a peer that missed our choke may send its whole
#: pipeline (up to ~2000 by BEP 10's reqq) once, not repeatedly.
FLOOD_WINDOW: Final = 10.0
MAX_REFUSED_PER_WINDOW: Final = 4000
#: ``left`` announced for a magnet link before its metadata tells the size:
#: non-zero so the tracker counts us as a leecher (and gives us seeds).
MAGNET_LEFT: Final = 16384
#: Retry delays of a failed announce: doubling from the first to the last.
ANNOUNCE_RETRY_MIN: Final = 15.0
ANNOUNCE_RETRY_MAX: Final = 1800.0


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Settings of a :class:`~peerlab.overlays.bittorrent.session.Session`."""

    #: Where peers connect to us (one listener shared by every torrent).
    #: ``listen_port`` 0 takes any free port; ``None`` accepts nobody.
    listen_host: str = "127.0.0.1"
    listen_port: int | None = 0
    #: Where a torrent's files go unless ``add_torrent`` names a folder.
    download_dir: Path | None = None
    #: Where resume files (verified pieces) and fetched metadata are kept;
    #: ``None`` keeps none (a restart re-checks the files on disk).
    state_dir: Path | None = None
    #: "file": the torrent's files on disk; "memory": in memory (the
    #: simulator runs hundreds of peers this way).
    storage: Literal["file", "memory"] = "file"
    #: Connections at once, over all torrents and per torrent.
    max_connections: int = 500
    max_peers_per_torrent: int = 50
    #: A torrent dials out only while it has fewer connections than this;
    #: the rest of ``max_peers_per_torrent`` is left to peers that dial in
    #: (BitTorrent 3.x's ``max_initiate`` 40 against ``max_allow_in`` 80):
    #: otherwise every peer of a flash crowd fills itself by dialling, and
    #: each newcomer is refused by all the peers it tries.
    max_initiate: int = 40
    #: Outgoing connection attempts in flight at once.
    max_half_open: int = 16
    connect_timeout: float = 10.0
    #: Peers asked of a tracker per announce (BEP 3 ``numwant``).
    numwant: int = 50
    announce_timeout: float = 30.0
    #: Seconds of a peer's download rate kept in flight as requests
    #: (libtorrent's ``request_queue_time`` is 3).
    request_queue_time: float = 3.0
    #: The longest a peer may go without sending a block while our requests
    #: wait there (s); the timeout of a peer is the mean gap between its
    #: blocks plus four mean deviations (libtorrent's ``request_timeout()``),
    #: between :data:`MIN_REQUEST_TIMEOUT` and this (libtorrent's default is
    #: 60).  On a timeout the peer is snubbed: its newest request goes to
    #: others and it gets one request at a time until a block comes; silent
    #: for a second timeout, all its requests go to others.
    request_timeout: float = 60.0
    #: Requests we queue from each peer (our BEP 10 ``reqq``).
    reqq: int = 500
    #: The choker's and the picker's policies (separate units).
    choker: ChokerConfig = field(default_factory=ChokerConfig)
    picker: PickerConfig = field(default_factory=PickerConfig)
    #: BEP 11 peer exchange (never for private torrents, BEP 27).
    pex: bool = True
    pex_interval: float = 60.0
    #: Strikes after which a peer that sent bad pieces is banned: a piece that
    #: fails its hash gives each peer that sent blocks of it a strike, two if
    #: it sent them all.
    ban_strikes: int = 4
    #: Global limits over every torrent, bytes/s (0: unlimited); each torrent
    #: may have its own besides (``Torrent.set_rate_limits``).
    upload_rate: float = 0.0
    download_rate: float = 0.0
    #: Memory for partial pieces, and for the read cache (bytes).
    max_buffer_bytes: int = MAX_BUFFER_BYTES
    read_cache_bytes: int = READ_CACHE_BYTES
    #: Period of the housekeeping tick (connect, timeouts, rechoke, PEX).
    tick_interval: float = 1.0
    #: BEP 3 keep-alive and idle bounds of each connection.
    keepalive_interval: float = 60.0
    idle_timeout: float = 180.0
    client_version: str = CLIENT_VERSION

    def __post_init__(self) -> None:
        if self.listen_port is not None and not 0 <= self.listen_port <= 0xFFFF:
            raise ConfigError(f"listen port {self.listen_port} out of range")
        if self.storage not in ("file", "memory"):
            raise ConfigError(f"unknown storage {self.storage!r}")
        for name in ("max_connections", "max_peers_per_torrent", "max_initiate",
                     "max_half_open", "reqq", "ban_strikes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.upload_rate < 0 or self.download_rate < 0:
            raise ConfigError("a rate limit cannot be negative")
        for name in ("connect_timeout", "announce_timeout", "request_queue_time",
                     "request_timeout", "pex_interval", "tick_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
