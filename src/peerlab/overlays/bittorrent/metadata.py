"""Fetching a magnet link's info dictionary from peers (BEP 9, ut_metadata).

BEP 9 "metadata": the info dictionary travels in 16 KiB pieces; a peer
announces its size as ``metadata_size`` in the extended handshake (BEP 10)
and answers ``request`` messages with ``data`` or ``reject``.  "If the
hash does not match, the client MUST discard the metadata": the assembled
bytes count only when their SHA-1 is the magnet's info-hash.

:class:`MetadataFetcher` is the bookkeeping, without I/O or clock (time is
passed in): which peers can serve, which pieces are asked of whom, what
arrived.  The torrent sends the requests it names.

Public API::

    MetadataFetcher(info_hash)
        .add_source(peer, size) -> bool     # from the peer's extended handshake
        .remove_source(peer)                # gone: its pieces are asked elsewhere
        .wanted(peer, now) -> list[int]     # pieces to request from peer now
        .received(peer, piece, total_size, data) -> bytes | None   # the verified
                                            # metadata once complete, else None
        .rejected(peer, piece)
        .expire(now)                        # requests older than the timeout
        .size .done .failed_senders (peers of the last bad assembly) .counters
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Final

from peerlab.wire.peer import MAX_METADATA_SIZE, metadata_piece_count

__all__ = [
    "METADATA_IN_FLIGHT",
    "METADATA_REQUEST_TIMEOUT",
    "MetadataFetcher",
]

#: Metadata pieces asked of one peer at once: small messages, so two keep a
#: peer busy without tying all pieces to one slow peer.
METADATA_IN_FLIGHT: Final = 2
#: Seconds after which an unanswered metadata request is asked elsewhere.
METADATA_REQUEST_TIMEOUT: Final = 15.0


class MetadataFetcher:
    """BEP 9 bookkeeping for one info-hash (see the module docstring)."""

    def __init__(self, info_hash: bytes) -> None:
        self.info_hash = info_hash
        self.size: int | None = None
        self.done = False
        self.counters: Counter[str] = Counter()
        self.failed_senders: set[object] = set()
        self._pieces: list[bytes | None] = []
        self._senders: dict[int, object] = {}
        self._asked: dict[int, tuple[object, float]] = {}
        self._sources: dict[object, int] = {}
        self._refused: set[object] = set()

    def add_source(self, peer: object, size: int) -> bool:
        """``peer`` says the metadata is ``size`` bytes.  The first plausible
        size is taken; peers that disagree are not asked (their size cannot
        hash to the info-hash if the first one's does)."""
        if not 0 < size <= MAX_METADATA_SIZE:
            self.counters["metadata_bad_size"] += 1
            return False
        if self.size is None:
            self.size = size
            self._pieces = [None] * metadata_piece_count(size)
        elif size != self.size:
            self.counters["metadata_size_mismatch"] += 1
            return False
        self._sources[peer] = size
        return True

    def remove_source(self, peer: object) -> None:
        self._sources.pop(peer, None)
        self._refused.discard(peer)
        for piece, (who, _) in list(self._asked.items()):
            if who is peer:
                del self._asked[piece]

    def wanted(self, peer: object, now: float) -> list[int]:
        """Pieces to request from ``peer`` now (marked as asked)."""
        if self.done or peer not in self._sources or peer in self._refused:
            return []
        busy = sum(1 for who, _ in self._asked.values() if who is peer)
        out: list[int] = []
        for piece, data in enumerate(self._pieces):
            if busy + len(out) >= METADATA_IN_FLIGHT:
                break
            if data is None and piece not in self._asked:
                self._asked[piece] = (peer, now)
                out.append(piece)
        return out

    def expire(self, now: float) -> None:
        for piece, (_, at) in list(self._asked.items()):
            if now - at >= METADATA_REQUEST_TIMEOUT:
                del self._asked[piece]
                self.counters["metadata_timeouts"] += 1

    def rejected(self, peer: object, piece: int) -> None:
        """BEP 9 "reject": the peer will not send; ask others."""
        asked = self._asked.get(piece)
        if asked is not None and asked[0] is peer:
            del self._asked[piece]
        self._refused.add(peer)
        self.counters["metadata_rejects"] += 1

    def received(
        self, peer: object, piece: int, total_size: int, data: bytes | memoryview
    ) -> bytes | None:
        """A data message.  Returns the whole metadata once every piece is in
        and its SHA-1 is the info-hash; on a mismatch everything is dropped,
        the senders are in :attr:`failed_senders`, and the fetch starts over."""
        if self.done or self.size is None or total_size != self.size:
            self.counters["metadata_unexpected"] += 1
            return None
        if not 0 <= piece < len(self._pieces):
            self.counters["metadata_unexpected"] += 1
            return None
        asked = self._asked.pop(piece, None)
        if asked is None and self._pieces[piece] is not None:
            self.counters["metadata_unexpected"] += 1
            return None
        self._pieces[piece] = bytes(data)
        self._senders[piece] = peer
        self.counters["metadata_pieces"] += 1
        if any(p is None for p in self._pieces):
            return None
        raw = b"".join(p for p in self._pieces if p is not None)
        if hashlib.sha1(raw).digest() == self.info_hash:
            self.done = True
            return raw
        # BEP 9: discard; whoever sent pieces of it is suspect
        self.counters["metadata_hash_failed"] += 1
        self.failed_senders = set(self._senders.values())
        self._pieces = [None] * len(self._pieces)
        self._senders.clear()
        self._asked.clear()
        return None
