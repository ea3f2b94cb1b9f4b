"""BitTorrent swarms: the session the node runs, and its separate policies.

Issue 6, sections 3 and 4.  Everything here is written against the runtime
interface only (:mod:`peerlab.runtime.base`), so one session runs on real
sockets and hundreds run in the simulator.  Specs: BEP 3 (peer protocol,
trackers), BEP 6 (fast extension), BEP 9 (metadata, magnet links), BEP 10
(extension protocol), BEP 11 (PEX), BEP 12 (multitracker), BEP 15 (UDP
trackers), BEP 27 (private torrents), BEP 5 (peers from the DHT: a session
given a :class:`~peerlab.overlays.dht.DhtNode`).

Public API (stable), re-exported here::

    Session(runtime, config=SessionConfig(), *, peer_id=None, dht=None)  # .session
        .start() .close(done=None) .status() -> SessionStatus
        .add_torrent(metainfo | info | bytes, *, save_path=None, peers=(), start=True,
                     seed_mode=False, data=None, choker=None, picker=None) -> Torrent
        .add_magnet(magnet | uri, *, save_path=None, peers=(), start=True) -> Torrent
        .remove_torrent(info_hash, done=None) .torrent(info_hash) .torrents
        .peer_id .listen_address .listen_port .on_metadata
        .dht .dht_source(info_hash) -> DhtPeerSource | None
    SessionConfig(...)                                             # .config
    Torrent                                                        # .torrent
        .start() .stop(done=None) .add_peers(addresses) .status() -> TorrentStatus
        .piece_map() .state (TorrentState) .info .info_hash .counters .on_change
        .uploaded_to(peer_id) -> {"regular" | "optimistic" | "seeding": bytes}
    TorrentStatus, PeerStatus, SessionStatus, TrackerStatus        # frozen dataclasses
    Choker(ChokerConfig, rng), ChokerConfig, UnchokeKind, NeverUnchoke,
    RandomUnchoke                                                  # .choker
    PiecePicker(...), PickerConfig                                 # .picker
    MetadataFetcher                                                # .metadata
    RateMeter                                                      # .rate
    DhtPeerSource, DhtSourceStatus      # .dht: a torrent's get_peers/announce_peer

Piece storage (files, verified writes, resume) is
:mod:`peerlab.storage.pieces`.
"""

from peerlab.overlays.bittorrent.announce import TrackerStatus
from peerlab.overlays.bittorrent.choker import (
    Choker,
    ChokerConfig,
    ChokerPeer,
    ChokerPolicy,
    NeverUnchoke,
    RandomUnchoke,
    UnchokeKind,
)
from peerlab.overlays.bittorrent.config import SessionConfig
from peerlab.overlays.bittorrent.dht import DhtPeerSource, DhtSourceStatus
from peerlab.overlays.bittorrent.metadata import MetadataFetcher
from peerlab.overlays.bittorrent.peer import PeerLink, PeerStatus
from peerlab.overlays.bittorrent.picker import PickerConfig, PiecePicker
from peerlab.overlays.bittorrent.rate import RateMeter
from peerlab.overlays.bittorrent.session import Session, SessionStatus
from peerlab.overlays.bittorrent.torrent import Torrent, TorrentState, TorrentStatus

__all__ = [
    "Choker",
    "ChokerConfig",
    "ChokerPeer",
    "ChokerPolicy",
    "DhtPeerSource",
    "DhtSourceStatus",
    "MetadataFetcher",
    "NeverUnchoke",
    "PeerLink",
    "PeerStatus",
    "PickerConfig",
    "PiecePicker",
    "RandomUnchoke",
    "RateMeter",
    "Session",
    "SessionConfig",
    "SessionStatus",
    "Torrent",
    "TorrentState",
    "TorrentStatus",
    "TrackerStatus",
    "UnchokeKind",
]
