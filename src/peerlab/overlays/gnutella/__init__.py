"""Gnutella 0.6 (issue 4): the servent and what it stands on.

* :mod:`.servent` -- :class:`Servent`, :class:`ServentConfig`,
  :class:`ConnectionInfo`: connections, routing, pong caching, flow
  control, query answering and search;
* :mod:`.router` -- TTL/hops rules and the bounded GUID routing tables;
* :mod:`.pongcache` -- the ping-pong scheme's cache and per-connection demand;
* :mod:`.flow` -- per-connection prioritised, bounded outgoing queues;
* :mod:`.hostcache` -- known servents, persisted atomically;
* :mod:`.search` -- Query Hits from our shares; hits grouped by ``urn:sha1``;
* :mod:`.gwebcache` -- a GWebCache server and client;
* :mod:`.counters` -- the message counters;
* :mod:`.tier` -- ultrapeer and leaf roles inside the servent (issue 5);
* :mod:`.roles` -- the promotion policy, a pure function of measured inputs;
* :mod:`.qrt` -- QRP tables of leaves, their limits, the merged last-hop table.

Everything runs on the :class:`~peerlab.runtime.base.Runtime` interface:
the same objects run on real sockets and in the simulator.
"""

from peerlab.overlays.gnutella.gwebcache import (
    GWebCache,
    GWebCacheClient,
    GWebCacheConfig,
    GWebCacheReply,
)
from peerlab.overlays.gnutella.hostcache import HostCache
from peerlab.overlays.gnutella.search import HitSource, Search, SearchResult
from peerlab.overlays.gnutella.servent import ConnectionInfo, Servent, ServentConfig

__all__ = [
    "ConnectionInfo",
    "GWebCache",
    "GWebCacheClient",
    "GWebCacheConfig",
    "GWebCacheReply",
    "HitSource",
    "HostCache",
    "Search",
    "SearchResult",
    "Servent",
    "ServentConfig",
]
