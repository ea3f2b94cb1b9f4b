"""The mainline DHT (BEP 5): trackerless peer finding for BitTorrent.

Issue 6, section 5.  The wire format is :mod:`peerlab.wire.krpc`; this
package is the node, written only against the
:class:`~peerlab.runtime.base.Runtime` interface, so it runs on real UDP
sockets and by the thousand in the simulator.

Public API (stable)::

    DhtConfig(host="0.0.0.0", port=0, node_id=None, bootstrap=(), state_path=None,
              k=8, alpha=3, query_timeout=5.0, query_stall=1.5, ...)
    DhtNode(runtime, config)
        .start()                                   # bind UDP, load state, bootstrap
        .close()                                   # stop, save the table
        .address -> Address | None; .node_id -> bytes
        .bootstrap([addr, ...], on_done=None) -> Lookup
        .get_peers(info_hash, on_peers, on_done) -> Lookup
              # on_peers(list[Address]) as peers arrive; on_done(LookupResult)
        .announce(info_hash, port, on_done, *, implied_port=False, on_peers=None) -> Lookup
              # on_done(AnnounceResult)
        .find_node(target, on_done) -> Lookup
        .add_node(addr)                            # BEP 5 PORT message: ping, add if it answers
        .stats() -> DhtStats                       # routing table stats and more
        .routing_table -> RoutingTable; .store -> PeerStore
        .save()                                    # write the table now
    Lookup.cancel(); Lookup.finished
    LookupResult(target, peers, nodes, hops, queries, responses, timeouts, elapsed)
    AnnounceResult(info_hash, port, stored, attempted, lookup)
    DhtStats(node_id, address, routing: RoutingStats, stored_info_hashes,
             stored_peers, lookups, queries_in_flight)
    RoutingTable, RoutingStats, NodeState        # :mod:`.routing`
    PeerStore                                    # :mod:`.peer_store`
    TokenSecrets                                 # :mod:`.tokens`
    SourceRateLimiter                            # :mod:`.ratelimit`
    Traversal                                    # :mod:`.lookup`
    DhtState, load_state, save_state             # :mod:`.state`

Counters and events are listed in :mod:`peerlab.overlays.dht.node`.
"""

from peerlab.overlays.dht.lookup import Traversal
from peerlab.overlays.dht.node import (
    AnnounceResult,
    DhtConfig,
    DhtNode,
    DhtStats,
    Lookup,
    LookupResult,
)
from peerlab.overlays.dht.peer_store import PeerStore
from peerlab.overlays.dht.ratelimit import SourceRateLimiter
from peerlab.overlays.dht.routing import NodeState, RoutingStats, RoutingTable
from peerlab.overlays.dht.state import DhtState, load_state, save_state
from peerlab.overlays.dht.tokens import TokenSecrets

__all__ = [
    "AnnounceResult",
    "DhtConfig",
    "DhtNode",
    "DhtState",
    "DhtStats",
    "Lookup",
    "LookupResult",
    "NodeState",
    "PeerStore",
    "RoutingStats",
    "RoutingTable",
    "SourceRateLimiter",
    "TokenSecrets",
    "Traversal",
    "load_state",
    "save_state",
]
