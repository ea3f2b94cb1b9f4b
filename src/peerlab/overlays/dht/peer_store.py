"""The peers a node stores for others: announce_peer in, get_peers values out
(BEP 5 "get_peers" and "announce_peer").

Strangers decide what we store, so everything is bounded: peers per
info-hash (the oldest announce gives way), info-hashes in all and peers in
all (a new one beyond these is refused), and each peer expires
``peer_ttl`` seconds after its last announce.  BEP 5 sets no lifetime;
clients re-announce every 15 to 30 minutes (libtorrent: 15), so 30 minutes
keeps a peer that missed one re-announce.  Time is passed in.
"""

from __future__ import annotations

import random
from collections import OrderedDict

from peerlab.runtime.base import Address

#: A stored peer lives this long after its last announce.
PEER_TTL_S = 30 * 60.0
#: Peers kept per info-hash; a get_peers answer only carries a sample anyway.
MAX_PEERS_PER_INFO_HASH = 200
#: Info-hashes a node stores peers for (libtorrent's dht_max_torrents is 2000).
MAX_INFO_HASHES = 2000
#: Peers stored in all, across info-hashes.
MAX_STORED_PEERS = 50_000
#: Peers in one get_peers answer: 50 compact peers are 400 bytes, which keeps
#: the answer, with 8 nodes and a token, well inside one unfragmented datagram.
MAX_VALUES_PER_REPLY = 50


class PeerStore:
    """Peers by info-hash, each with the time it was last announced."""

    def __init__(
        self,
        *,
        peer_ttl: float = PEER_TTL_S,
        max_peers_per_info_hash: int = MAX_PEERS_PER_INFO_HASH,
        max_info_hashes: int = MAX_INFO_HASHES,
        max_peers: int = MAX_STORED_PEERS,
    ) -> None:
        self.peer_ttl = peer_ttl
        self.max_peers_per_info_hash = max_peers_per_info_hash
        self.max_info_hashes = max_info_hashes
        self.max_peers = max_peers
        #: info-hash -> peer -> time of its last announce, oldest first.
        self._swarms: dict[bytes, OrderedDict[Address, float]] = {}
        self._total = 0

    def __len__(self) -> int:
        """Info-hashes with at least one stored peer."""
        return len(self._swarms)

    @property
    def total_peers(self) -> int:
        return self._total

    def announce(self, info_hash: bytes, peer: Address, now: float) -> bool:
        """Store (or refresh) ``peer`` under ``info_hash``; False when refused
        because the store is full."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            if len(self._swarms) >= self.max_info_hashes or self._total >= self.max_peers:
                return False
            swarm = self._swarms[info_hash] = OrderedDict()
        if peer in swarm:
            swarm.move_to_end(peer)
            swarm[peer] = now
            return True
        if len(swarm) >= self.max_peers_per_info_hash:
            swarm.popitem(last=False)
            self._total -= 1
        elif self._total >= self.max_peers:
            return False
        swarm[peer] = now
        self._total += 1
        return True

    def peers(self, info_hash: bytes, now: float, count: int, rng: random.Random) -> list[Address]:
        """Up to ``count`` live peers of ``info_hash``, a random sample when
        there are more."""
        swarm = self._swarms.get(info_hash)
        if not swarm:
            return []
        cutoff = now - self.peer_ttl
        live = [p for p, t in swarm.items() if t > cutoff]
        if len(live) > count:
            live = rng.sample(live, count)
        return live

    def expire(self, now: float) -> int:
        """Drop peers not announced for ``peer_ttl``; return how many went."""
        cutoff = now - self.peer_ttl
        gone = 0
        for info_hash in list(self._swarms):
            swarm = self._swarms[info_hash]
            while swarm:
                peer, t = next(iter(swarm.items()))
                if t > cutoff:
                    break
                del swarm[peer]
                gone += 1
            if not swarm:
                del self._swarms[info_hash]
        self._total -= gone
        return gone


__all__ = [
    "MAX_INFO_HASHES",
    "MAX_PEERS_PER_INFO_HASH",
    "MAX_STORED_PEERS",
    "MAX_VALUES_PER_REPLY",
    "PEER_TTL_S",
    "PeerStore",
]
