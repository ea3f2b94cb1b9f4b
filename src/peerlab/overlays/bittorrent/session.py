"""A BitTorrent session: one peer id, one listener, many torrents (issue 6).

The API the node calls.  Written only against the runtime interface, so a
session runs on real sockets and, by the hundreds, in the simulator.

:class:`Session` owns the listening socket shared by every torrent: an
incoming connection is routed by the info-hash of its handshake (BEP 3: the
receiving side may answer once it has read the info-hash).  It also bounds
the connections of all its torrents together (``max_connections``) and the
connection attempts in flight (``max_half_open``), and keeps resume files
and fetched metadata in ``state_dir``.

With a :class:`~peerlab.overlays.dht.DhtNode` (``dht=``), the session is
trackerless-capable (BEP 5): every running torrent that is not private gets
peers from ``get_peers`` lookups and announces our listen port with
``announce_peer`` (:mod:`.dht`), beside its trackers if it has any; our
handshakes set the DHT reserved bit and send a PORT message with the DHT
node's UDP port; a peer's PORT message has its DHT node pinged (and, if it
answers, added to the routing table); the ``nodes`` of a trackerless
``.torrent`` are pinged the same way.  The session does not start or close
the DHT node: its owner does (start it before :meth:`Session.start` so the
PORT message carries its port), and the node keeps its own routing table
on disk (``DhtConfig.state_path``).

Public API::

    Session(runtime, config=SessionConfig(), *, peer_id=None, dht=None)
        .start()                 # bind the listener (AddressInUse)
        .close(done=None)        # stop every torrent (announces stopped), unbind
        .add_torrent(source, *, save_path=None, peers=(), start=True,
                     seed_mode=False, data=None, choker=None, picker=None) -> Torrent
              # source: Metainfo | Info | .torrent bytes
        .add_magnet(magnet, *, save_path=None, peers=(), start=True, ...) -> Torrent
              # magnet: Magnet | "magnet:?xt=urn:btih:..."
        .remove_torrent(info_hash, done=None)
        .torrent(info_hash) -> Torrent | None     .torrents -> list[Torrent]
        .status() -> SessionStatus                .counters
        .peer_id .listen_address .listen_port .announce_port
        .on_metadata: list[Callable[[Torrent, Info], None]]   # a magnet's info arrived
        .set_rate_limits(up=None, down=None)   # global limits, bytes/s (0: unlimited)
        .up_bucket .down_bucket                # shared by every torrent
        .dht -> DhtNode | None    .dht_source(info_hash) -> DhtPeerSource | None

Observer counters are named ``bt.<counter>`` (the torrent's counters,
summed over torrents) and events ``bt.<event>`` with the info-hash.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from peerlab.errors import ConfigError
from peerlab.overlays.bittorrent.choker import ChokerPolicy
from peerlab.overlays.bittorrent.config import MAX_REQUEST_QUEUE, SessionConfig
from peerlab.overlays.bittorrent.dht import DhtPeerSource
from peerlab.overlays.bittorrent.peer import PeerLink
from peerlab.overlays.bittorrent.picker import PickerConfig
from peerlab.overlays.bittorrent.torrent import (
    Torrent,
    TorrentState,
    TorrentStatus,
    _is_ip,
    after,
)
from peerlab.overlays.dht import DhtNode
from peerlab.overlays.transfer.ratelimit import TokenBucket
from peerlab.proto.peer import PEER_ID_PREFIX, PeerConfig
from peerlab.runtime.base import Address, Listener, Runtime
from peerlab.runtime.driver import StreamDriver
from peerlab.storage.pieces import write_atomic
from peerlab.wire.magnet import Magnet, parse_magnet
from peerlab.wire.metainfo import Info, Metainfo
from peerlab.wire.peer import Handshake

__all__ = ["Session", "SessionStatus"]

#: Characters of the random part of our peer id (BEP 20 style: printable).
_PEER_ID_CHARS = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Suffixes of the files kept per torrent in ``state_dir``.
RESUME_SUFFIX = ".resume"
#: The port announced by a session that does not listen.
DEFAULT_ANNOUNCE_PORT = 6881
INFO_SUFFIX = ".info"
#: Connections whose PORT message (BEP 5) we acted on, remembered so that a
#: peer repeating it costs no more pings; forgotten when they close.
MAX_PORTED_LINKS = 4096


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """The session at one moment."""

    peer_id: str
    listen_address: Address | None
    connections: int
    half_open: int
    torrents: tuple[TorrentStatus, ...]
    counters: dict[str, int]
    #: Nodes in our DHT routing table (None: the session has no DHT).
    dht_nodes: int | None = None


class Session:
    """Torrents sharing a peer id and a listener (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        config: SessionConfig | None = None,
        *,
        peer_id: bytes | None = None,
        dht: DhtNode | None = None,
    ) -> None:
        self.runtime = runtime
        self.dht = dht
        self.config = config or SessionConfig()
        if peer_id is None:
            rng = runtime.rng
            peer_id = PEER_ID_PREFIX + bytes(rng.choice(_PEER_ID_CHARS) for _ in range(12))
        if len(peer_id) != 20:
            raise ConfigError("a peer id is 20 bytes")
        self.peer_id = peer_id
        #: BEP 3 ``key``: lets a tracker recognise us if our address changes.
        self.announce_key = "".join(runtime.rng.choice("0123456789abcdef") for _ in range(8))
        self.peer_config = self._peer_config(None)
        self.counters: Counter[str] = Counter()
        self.on_metadata: list[Callable[[Torrent, Info], None]] = []
        self._torrents: dict[bytes, Torrent] = {}
        self._links: dict[PeerLink, None] = {}
        self._half_open = 0
        self._listener: Listener | None = None
        self._announce_port = DEFAULT_ANNOUNCE_PORT
        self._closed = False
        #: Global limits over every torrent (issue 6, item 6); each torrent
        #: has its own buckets besides.
        self.up_bucket = TokenBucket(float(self.config.upload_rate))
        self.down_bucket = TokenBucket(float(self.config.download_rate))
        self._served_last: Torrent | None = None
        self._dht_sources: dict[bytes, DhtPeerSource] = {}
        self._ported: dict[PeerLink, None] = {}

    def _peer_config(self, listen_port: int | None) -> PeerConfig:
        cfg = self.config
        return PeerConfig(
            peer_id=self.peer_id,
            client_version=cfg.client_version,
            listen_port=listen_port or None,
            reqq=cfg.reqq,
            max_requests=MAX_REQUEST_QUEUE,
            keepalive_interval=cfg.keepalive_interval,
            idle_timeout=cfg.idle_timeout,
            dht=self.dht is not None,
            dht_port=self._dht_port(),
        )

    def _dht_port(self) -> int | None:
        """The UDP port of our DHT node, for PORT messages (None: not bound)."""
        address = self.dht.address if self.dht is not None else None
        return address[1] if address is not None else None

    def _sync_dht_port(self) -> None:
        """A DHT node started after us: new connections send its port."""
        if self.dht is not None and self.peer_config.dht_port is None:
            port = self._dht_port()
            if port is not None:
                self.peer_config = replace(self.peer_config, dht_port=port)

    # ------------------------------------------------------------ listener

    def start(self) -> None:
        """Bind the listener (when ``listen_port`` is not None).  Raises
        :class:`~peerlab.errors.AddressInUse` if the port is taken."""
        cfg = self.config
        if self._listener is not None or cfg.listen_port is None:
            return
        self._listener = self.runtime.listen((cfg.listen_host, cfg.listen_port), self._incoming)
        self._announce_port = self._listener.address[1]
        self.peer_config = replace(self.peer_config, listen_port=self._listener.address[1],
                                   dht_port=self._dht_port())
        self.runtime.observer.event("bt.listening", address=self._listener.address)

    @property
    def listen_address(self) -> Address | None:
        return self._listener.address if self._listener is not None else None

    @property
    def listen_port(self) -> int | None:
        return self._listener.address[1] if self._listener is not None else None

    @property
    def announce_port(self) -> int:
        """The port trackers are told (BEP 3 ``port``): the listener's, kept
        after it closed (for the ``stopped`` announce); 6881, BitTorrent's
        classic port, when we never listened (nobody can dial us then)."""
        return self._announce_port

    def close(self, done: Callable[[], None] | None = None) -> None:
        """Stop every torrent (each announces ``stopped``), then unbind."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._closed = True
        torrents = list(self._torrents.values())
        left = [len(torrents)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0 and done is not None:
                done()

        if not torrents and done is not None:
            done()
        for t in torrents:
            t.stop(one_done)
        for link in list(self._links):
            link.abort("session closed")
        for source in self._dht_sources.values():
            source.close()
        self._dht_sources.clear()

    def set_rate_limits(self, up: float | None = None, down: float | None = None) -> None:
        """Global upload and download limits in bytes/s over every torrent
        (0: unlimited; None: unchanged)."""
        now = self.runtime.now()
        if up is not None:
            self.up_bucket.set_rate(max(0.0, float(up)), now)
        if down is not None:
            self.down_bucket.set_rate(max(0.0, float(down)), now)
        for torrent in self._torrents.values():
            torrent.set_rate_limits()

    # ------------------------------------------------------------ torrents

    @property
    def torrents(self) -> list[Torrent]:
        return list(self._torrents.values())

    def torrent(self, info_hash: bytes) -> Torrent | None:
        return self._torrents.get(info_hash)

    def resume_path(self, info_hash: bytes) -> Path | None:
        state_dir = self.config.state_dir
        return state_dir / f"{info_hash.hex()}{RESUME_SUFFIX}" if state_dir else None

    def _save_path(self, save_path: Path | str | None) -> Path | None:
        if save_path is not None:
            return Path(save_path)
        if self.config.download_dir is not None:
            return self.config.download_dir
        if self.config.storage == "memory":
            return None
        raise ConfigError("no download folder: give save_path or SessionConfig.download_dir")

    def add_torrent(
        self,
        source: Metainfo | Info | bytes,
        *,
        save_path: Path | str | None = None,
        peers: Iterable[Address] = (),
        start: bool = True,
        seed_mode: bool = False,
        data: bytes | None = None,
        choker: ChokerPolicy | None = None,
        picker: PickerConfig | None = None,
    ) -> Torrent:
        """Add a torrent from a ``.torrent`` (bytes or parsed) or a bare info
        dictionary.  ``seed_mode``: trust that the files are complete (we
        made the torrent from them).  ``data``: the content, for memory
        storage (a seed in the simulator).  ``choker``/``picker``: other
        policies than the session's (the simulator compares them)."""
        if isinstance(source, bytes | bytearray | memoryview):
            source = Metainfo.from_bytes(source)
        if isinstance(source, Metainfo):
            info = source.info
            tiers: Sequence[Sequence[str]] = source.trackers
            if not info.private:
                self._ping_dht_nodes(source.nodes)
        else:
            info = source
            tiers = ()
        torrent = self._add(
            Torrent(
                self,
                info_hash=info.info_hash,
                info=info,
                name=info.name,
                tiers=tiers,
                save_path=self._save_path(save_path),
                seed_mode=seed_mode,
                data=data,
                choker=choker,
                picker=picker,
            )
        )
        torrent.add_peers(peers, source="direct")
        if start:
            torrent.start()
        return torrent

    def add_magnet(
        self,
        magnet: Magnet | str,
        *,
        save_path: Path | str | None = None,
        peers: Iterable[Address] = (),
        start: bool = True,
        choker: ChokerPolicy | None = None,
        picker: PickerConfig | None = None,
    ) -> Torrent:
        """Add a magnet link (BEP 9): its metadata is fetched from peers
        (trackers and ``x.pe`` addresses of the link, ``peers``) unless an
        earlier fetch kept it in ``state_dir``."""
        if isinstance(magnet, str):
            magnet = parse_magnet(magnet)
        if magnet.info_hash is None:
            raise ConfigError("this magnet link has no BitTorrent v1 info-hash (btih)")
        info = self._load_info(magnet.info_hash)
        torrent = self._add(
            Torrent(
                self,
                info_hash=magnet.info_hash,
                info=info,
                name=info.name if info is not None else (
                    magnet.display_name or magnet.info_hash.hex()
                ),
                tiers=[[url] for url in magnet.trackers],
                save_path=self._save_path(save_path),
                choker=choker,
                picker=picker,
            )
        )
        torrent.add_peers(magnet.peers, source="magnet")
        torrent.add_peers(peers, source="direct")
        if start:
            torrent.start()
        return torrent

    def _add(self, torrent: Torrent) -> Torrent:
        if self._closed:
            raise ConfigError("the session is closed")
        if torrent.info_hash in self._torrents:
            raise ConfigError(f"torrent {torrent.info_hash.hex()} is already added")
        self._torrents[torrent.info_hash] = torrent
        torrent.on_change.append(self._torrent_changed)
        self.runtime.observer.event("bt.torrent_added", info_hash=torrent.info_hash.hex(),
                                    name=torrent.name)
        return torrent

    def remove_torrent(self, info_hash: bytes, done: Callable[[], None] | None = None) -> None:
        """Stop a torrent and forget it (its files and resume state stay)."""
        torrent = self._torrents.pop(info_hash, None)
        if torrent is None:
            raise ConfigError(f"no torrent {info_hash.hex()}")
        if self._served_last is torrent:
            self._served_last = None
        torrent.stop(done)

    def _load_info(self, info_hash: bytes) -> Info | None:
        state_dir = self.config.state_dir
        if state_dir is None:
            return None
        path = state_dir / f"{info_hash.hex()}{INFO_SUFFIX}"
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            info = Info.from_bytes(raw)
        except Exception:
            return None
        return info if info.info_hash == info_hash else None

    def _metadata_fetched(self, torrent: Torrent, info: Info) -> None:
        """Keep a magnet's metadata (so a restart does not fetch it again)."""
        for fn in list(self.on_metadata):
            fn(torrent, info)
        state_dir = self.config.state_dir
        if state_dir is None:
            return
        path = state_dir / f"{info.info_hash.hex()}{INFO_SUFFIX}"

        def work() -> None:
            write_atomic(path, info.raw)

        def finished(_: None, exc: BaseException | None) -> None:
            if exc is not None:
                self.runtime.observer.event("bt.metadata_save_failed", error=str(exc))

        self.runtime.offload(work, finished)

    def _serve_uploads(self) -> None:
        """Blocks waiting for upload, a block per torrent in turn (each its
        peers in turn), beginning after the torrent served last, until every
        torrent is out of blocks or its bucket or ours is in debt: the
        global limit is shared among the torrents uploading, as a torrent's
        is among its peers.  A torrent's wake-up calls it, whichever wakes
        first."""
        turn = deque(after(list(self._torrents.values()), self._served_last))
        while turn:
            torrent = turn.popleft()
            if torrent._serve_one():
                self._served_last = torrent
                turn.append(torrent)

    # ------------------------------------------------------------ DHT (BEP 5)

    def dht_source(self, info_hash: bytes) -> DhtPeerSource | None:
        """The DHT lookups of a running torrent (None: no DHT, private, stopped)."""
        return self._dht_sources.get(info_hash)

    def _torrent_changed(self, torrent: Torrent) -> None:
        """Keep a DHT peer source exactly for the running torrents that may
        use the DHT (BEP 27: a private torrent's peers come from its
        trackers only; a magnet learns it is private with its metadata)."""
        info_hash = torrent.info_hash
        wanted = (
            self.dht is not None
            and not self._closed
            and torrent.running
            and not torrent.private
            and self._torrents.get(info_hash) is torrent
        )
        source = self._dht_sources.get(info_hash)
        if not wanted:
            if source is not None:
                del self._dht_sources[info_hash]
                source.close()
            return
        if source is not None or self.dht is None:
            return
        self._sync_dht_port()

        def wants_peers() -> bool:
            return (
                torrent.state in (TorrentState.METADATA, TorrentState.DOWNLOADING)
                and len(torrent.links) < self.config.max_peers_per_torrent
            )

        def observe(name: str, n: int) -> None:
            torrent.counters[name] += n
            self.runtime.observer.count(f"bt.{name}", n)

        source = DhtPeerSource(
            self.runtime,
            self.dht,
            info_hash,
            port=lambda: self.listen_port,
            on_peers=lambda peers: torrent.add_peers(peers, source="dht"),
            wants_peers=wants_peers,
            observe=observe,
        )
        self._dht_sources[info_hash] = source
        source.start()

    def _ping_dht_nodes(self, nodes: Iterable[Address]) -> None:
        """BEP 5 "Torrent File Extensions": a trackerless torrent's ``nodes``
        are DHT nodes to join through; each is pinged and, if it answers,
        enters the routing table.  Host names are skipped (the DHT speaks to
        addresses; resolving would block)."""
        if self.dht is None:
            return
        for host, port in nodes:
            if not _is_ip(host) or not 0 < port <= 0xFFFF:
                self.counters["dht_nodes_skipped"] += 1
                continue
            self.counters["dht_nodes_from_torrents"] += 1
            self.dht.add_node((host, port))

    def _peer_dht_port(self, link: PeerLink, port: int) -> None:
        """A peer's PORT message (BEP 5 "BitTorrent Protocol Extension"):
        ping its DHT node at its IP and that UDP port; it enters our routing
        table if it answers.  Once per connection; not for a private
        torrent's peers (BEP 27 keeps those off the DHT)."""
        self.counters["dht_ports_received"] += 1
        if self.dht is None or link.address is None or not 0 < port <= 0xFFFF:
            return
        if link.torrent is not None and link.torrent.private:
            self.counters["dht_ports_ignored"] += 1
            return
        if link in self._ported or len(self._ported) >= MAX_PORTED_LINKS:
            self.counters["dht_ports_ignored"] += 1
            return
        self._ported[link] = None
        self.counters["dht_nodes_from_peers"] += 1
        self.dht.add_node((link.address[0], port))

    # ------------------------------------------------------------ connections

    def accept(self, info_hash: bytes) -> int | None:
        """Whether an incoming handshake for ``info_hash`` is welcome: the
        torrent's piece count (0 while a magnet's is unknown), else None."""
        torrent = self._torrents.get(info_hash)
        if torrent is None or not torrent.running:
            self.counters["unknown_info_hash"] += 1
            return None
        return torrent.piece_count

    def can_dial(self) -> bool:
        return (
            self._half_open < self.config.max_half_open
            and len(self._links) < self.config.max_connections
        )

    def _incoming(self) -> StreamDriver:
        self._sync_dht_port()
        link = PeerLink(self, None, outgoing=False)
        self._links[link] = None
        return link.driver

    def _dial(self, link: PeerLink) -> None:
        self._links[link] = None
        self._half_open += 1
        link.half_open = True
        self.counters["dials"] += 1
        link.connect(self.config.connect_timeout)

    def _link_connected(self, link: PeerLink) -> None:
        if link.half_open:
            link.half_open = False
            self._half_open -= 1
        elif len(self._links) > self.config.max_connections:
            self.counters["refused_connections"] += 1
            link.abort("too many connections")

    def _link_handshake(self, link: PeerLink, event: Any) -> None:
        if not isinstance(event, Handshake):
            return
        torrent = link.torrent
        if torrent is None:
            info_hash = link.machine.info_hash
            torrent = self._torrents.get(info_hash) if info_hash is not None else None
            if torrent is None or not torrent.running:
                link.abort("no such torrent")
                return
            link.torrent = torrent
        torrent._attach(link)

    def _link_closed(self, link: PeerLink, exc: Exception | None) -> None:
        if link.half_open:
            link.half_open = False
            self._half_open -= 1
        self._links.pop(link, None)
        self._ported.pop(link, None)
        if link.torrent is not None:
            link.torrent._detach(link, exc)

    # ------------------------------------------------------------ status

    def status(self) -> SessionStatus:
        counters: Counter[str] = Counter(self.counters)
        for t in self._torrents.values():
            counters.update(t.counters)
        return SessionStatus(
            peer_id=self.peer_id.decode("latin-1"),
            listen_address=self.listen_address,
            connections=len(self._links),
            half_open=self._half_open,
            torrents=tuple(t.status() for t in self._torrents.values()),
            counters=dict(counters),
            dht_nodes=len(self.dht.routing_table) if self.dht is not None and
            self.dht.table is not None else None,  # fmt: skip
        )
