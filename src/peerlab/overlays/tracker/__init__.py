"""BitTorrent trackers (issue 6, section 2): the tracker that serves a swarm
table over HTTP and UDP (:mod:`peerlab.overlays.tracker.server`) and the
clients that announce and scrape (:mod:`peerlab.overlays.tracker.client`).
The codecs live in :mod:`peerlab.wire.tracker`."""

from __future__ import annotations

from peerlab.overlays.tracker.client import (
    TrackerRefused,
    UdpTrackerClient,
    announce,
    http_announce,
    http_scrape,
    scrape,
)
from peerlab.overlays.tracker.server import (
    FileSwarmStore,
    MemorySwarmStore,
    SwarmInfo,
    SwarmTable,
    Tracker,
    TrackerConfig,
)

__all__ = [
    "FileSwarmStore",
    "MemorySwarmStore",
    "SwarmInfo",
    "SwarmTable",
    "Tracker",
    "TrackerConfig",
    "TrackerRefused",
    "UdpTrackerClient",
    "announce",
    "http_announce",
    "http_scrape",
    "scrape",
]
