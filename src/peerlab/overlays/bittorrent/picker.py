"""The piece picker: which blocks to ask a peer for (issue 6, section 4).

A separate, documented, testable unit with no I/O and no clock: it is told
what peers have and what arrived, and answers "request these blocks from
this peer".  Randomness comes from the ``rng`` passed in.  The simulator
swaps its strategy (``PickerConfig.strategy``) to measure what each buys.

The policy, in the order a pick applies it (BEP 3 "peer protocol" leaves
the choice to the client; this is the one Bram Cohen's "Incentives Build
Robustness in BitTorrent" (2003), section 2, describes, as libtorrent runs it):

1. **Strict priority to partial pieces.**  Free blocks of pieces already
   started (and that the peer has) go first, oldest piece first, so pieces
   complete (and can be shared) as soon as possible and few are in flight.
2. **Random first pieces.**  Until ``random_first_pieces`` pieces are
   verified, a new piece is chosen at random among those the peer has:
   the rarest pieces are slow to get, and a newcomer needs *something* to
   trade soon.
3. **Rarest first.**  Otherwise the new piece is one of those the fewest
   connected peers have (ties broken at random).  Availability counts every
   connected peer's bitfield and haves; seeds are counted once each without
   touching per-piece counts.
4. **Sequential** (``strategy="sequential"``, an option for streaming): the
   lowest-numbered missing piece the peer has.  ``strategy="random"``: any
   missing piece at random (the baseline rarest-first is measured against).
5. **Endgame.**  Once every missing piece is started (no free piece is
   left) and the peer has no free block to give and no request of ours
   outstanding, it is asked for one block already requested from others (at
   most ``endgame_duplicates`` requests per block; one at a time per peer,
   as libtorrent's ``request_a_block`` does, so a slow peer's pipeline is not
   filled with blocks that faster ones deliver first); when a block arrives,
   the other requesters are named so their requests can be cancelled
   (BEP 3 "cancel": "generally only sent towards the end of a download,
   during what's called 'endgame mode'").
6. A new piece is started only while ``can_start(piece_size)`` says so (the
   piece store's memory bound).

Public API::

    PickerConfig(strategy="rarest", random_first_pieces=4, endgame_duplicates=2,
                 block_size=BLOCK_SIZE)
    PiecePicker(piece_count, piece_size: Callable[[int], int], rng, config=PickerConfig(),
                *, have=None, can_start=None)
        # availability
        .peer_has(index) / .peer_lost(index)
        .peer_has_bits(bits) / .peer_lost_bits(bits)      # a bitfield (PieceBits)
        .seed_joined() / .seed_left()                     # have-all peers
        .availability(index) -> int
        # picking
        .pick(peer, bits: PieceBits | None, count) -> list[Block]   # bits None: a seed
        .received(peer, block) -> Received | None         # None: not wanted (drop it)
        .abort(peer, block)                               # request gone (choke, reject, timeout)
        .abort_peer(peer)                                 # every request of a peer
        .piece_passed(index) / .piece_failed(index) -> dict[int, object]  # block -> sender
        # state
        .have (PieceBits, verified) .in_endgame .free_pieces .partial_pieces
        .downloading -> list[int]  .requested_from(peer) -> list[Block]
        .wants(index) -> bool      .counters (Counter)

``Block`` is ``(index, begin, length)``, as in a BEP 3 request.  Peers are
any hashable objects (the session passes its connection objects).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from peerlab.storage.pieces import PieceBits
from peerlab.wire.peer import BLOCK_SIZE

__all__ = [
    "RANDOM_PICK_TRIES",
    "Block",
    "PickerConfig",
    "PiecePicker",
    "Received",
]

Block: TypeAlias = tuple[int, int, int]
Strategy: TypeAlias = Literal["rarest", "random", "sequential"]

#: Random draws a random pick tries before it falls back to a scan: most
#: pieces are free early on, so a few draws almost always hit one.
RANDOM_PICK_TRIES: Final = 32

_FREE: Final = 0
_REQUESTED: Final = 1
_RECEIVED: Final = 2


@dataclass(frozen=True, slots=True)
class PickerConfig:
    """How the picker chooses (see the module docstring)."""

    #: "rarest" (the default), "random" or "sequential".
    strategy: Strategy = "rarest"
    #: Pieces picked at random before rarest first takes over (libtorrent's
    #: ``initial_picker_threshold`` is 4).
    random_first_pieces: int = 4
    #: Requests per block at most in endgame (the first one included).
    endgame_duplicates: int = 2
    #: Bytes per request (BEP 3: 16 KiB).
    block_size: int = BLOCK_SIZE

    def __post_init__(self) -> None:
        if self.strategy not in ("rarest", "random", "sequential"):
            raise ValueError(f"unknown picker strategy {self.strategy!r}")
        if self.endgame_duplicates < 1 or self.block_size < 1 or self.random_first_pieces < 0:
            raise ValueError("picker bounds must be positive")


@dataclass(frozen=True, slots=True)
class Received:
    """What a received block meant: ``piece_complete`` when it was the last
    missing block of its piece (submit the piece for verification), and the
    other peers the block was also requested from (cancel there)."""

    piece_complete: bool
    others: tuple[object, ...]


class _Partial:
    """A piece being downloaded: one state per block, who asked whom."""

    __slots__ = ("index", "size", "states", "requesters", "senders", "free", "received",
                 "hint")

    def __init__(self, index: int, size: int, block_size: int) -> None:
        self.index = index
        self.size = size
        n = -(-size // block_size)
        self.states = bytearray(n)
        self.requesters: dict[int, list[object]] = {}
        self.senders: dict[int, object] = {}
        self.free = n
        self.received = 0
        self.hint = 0  # no free block below this one


class PiecePicker:
    """Chooses blocks to request (see the module docstring)."""

    def __init__(
        self,
        piece_count: int,
        piece_size: Callable[[int], int],
        rng: random.Random,
        config: PickerConfig | None = None,
        *,
        have: PieceBits | None = None,
        can_start: Callable[[int], bool] | None = None,
    ) -> None:
        self.piece_count = piece_count
        self.piece_size = piece_size
        self.rng = rng
        self.config = config or PickerConfig()
        self.block_size = self.config.block_size
        self.have = have.copy() if have is not None else PieceBits(piece_count)
        self.can_start = can_start
        self.counters: Counter[str] = Counter()
        self._avail = [0] * piece_count
        self._seeds = 0
        self._buckets: list[list[int]] = [[]]
        self._pos = [-1] * piece_count
        self._partials: dict[int, _Partial] = {}
        self._pending: set[int] = set()  # whole, being verified
        self._senders_of_pending: dict[int, dict[int, object]] = {}
        self._by_peer: dict[object, set[Block]] = {}
        order = [i for i in range(piece_count) if i not in self.have]
        rng.shuffle(order)
        for i in order:
            self._insert(i)
        self._free_count = len(order)

    # ------------------------------------------------------------ buckets

    def _insert(self, index: int) -> None:
        a = self._avail[index]
        buckets = self._buckets
        while len(buckets) <= a:
            buckets.append([])
        bucket = buckets[a]
        self._pos[index] = len(bucket)
        bucket.append(index)

    def _remove(self, index: int) -> None:
        bucket = self._buckets[self._avail[index]]
        i = self._pos[index]
        last = bucket.pop()
        if last != index:
            bucket[i] = last
            self._pos[last] = i
        self._pos[index] = -1

    def _take(self, index: int) -> None:
        """Piece ``index`` leaves the free pieces."""
        self._remove(index)
        self._free_count -= 1

    def _release(self, index: int) -> None:
        """Piece ``index`` is free again (its verification failed)."""
        self._insert(index)
        self._free_count += 1

    # ------------------------------------------------------------ availability

    def peer_has(self, index: int) -> None:
        """A connected peer has piece ``index`` (a have, or its bitfield)."""
        if self._pos[index] >= 0:
            self._remove(index)
            self._avail[index] += 1
            self._insert(index)
        else:
            self._avail[index] += 1

    def peer_lost(self, index: int) -> None:
        """A peer that had piece ``index`` is gone."""
        if self._avail[index] <= 0:
            return
        if self._pos[index] >= 0:
            self._remove(index)
            self._avail[index] -= 1
            self._insert(index)
        else:
            self._avail[index] -= 1

    def peer_has_bits(self, bits: PieceBits) -> None:
        for index in bits:
            self.peer_has(index)

    def peer_lost_bits(self, bits: PieceBits) -> None:
        for index in bits:
            self.peer_lost(index)

    def seed_joined(self) -> None:
        """A peer with every piece (BEP 6 have all, or a full bitfield)."""
        self._seeds += 1

    def seed_left(self) -> None:
        if self._seeds > 0:
            self._seeds -= 1

    def availability(self, index: int) -> int:
        """How many connected peers have piece ``index``."""
        return self._avail[index] + self._seeds

    # ------------------------------------------------------------ state

    @property
    def free_pieces(self) -> int:
        """Missing pieces nobody is downloading yet."""
        return self._free_count

    @property
    def partial_pieces(self) -> int:
        return len(self._partials)

    @property
    def downloading(self) -> list[int]:
        """Pieces started and not yet verified (partial or being verified)."""
        return sorted([*self._partials, *self._pending])

    @property
    def in_endgame(self) -> bool:
        return self._free_count == 0 and bool(self._partials)

    def wants(self, index: int) -> bool:
        """Whether piece ``index`` is still missing."""
        return index not in self.have

    def requested_from(self, peer: object) -> list[Block]:
        return sorted(self._by_peer.get(peer, ()))

    # ------------------------------------------------------------ picking

    def pick(self, peer: object, bits: PieceBits | None, count: int) -> list[Block]:
        """Up to ``count`` blocks to request from ``peer``, which has the
        pieces in ``bits`` (None: every piece).  The blocks count as requested
        from ``peer`` until :meth:`received` or :meth:`abort`."""
        out: list[Block] = []
        if count <= 0:
            return out
        mine = self._by_peer.setdefault(peer, set())
        data = bits.data if bits is not None else None
        # 1. free blocks of partial pieces
        for partial in self._partials.values():
            if partial.free and (
                data is None or data[partial.index >> 3] & (0x80 >> (partial.index & 7))
            ):
                self._take_blocks(partial, peer, mine, count - len(out), out)
                if len(out) >= count:
                    return out
        # 2-4. new pieces
        while len(out) < count and self._free_count:
            index = self._choose(data)
            if index < 0:
                break
            size = self.piece_size(index)
            if self.can_start is not None and not self.can_start(size):
                self.counters["start_deferred"] += 1
                break
            self._take(index)
            partial = self._partials[index] = _Partial(index, size, self.block_size)
            self._take_blocks(partial, peer, mine, count - len(out), out)
        # 5. endgame: one duplicate, and only to a peer with nothing else
        # to send us (libtorrent's rule), so a slow peer's whole pipeline is
        # not blocks that others deliver first
        if not out and not mine and self._free_count == 0 and self._partials:
            self._endgame(peer, data, mine, 1, out)
        if not mine:
            del self._by_peer[peer]
        return out

    def _take_blocks(
        self, partial: _Partial, peer: object, mine: set[Block], want: int, out: list[Block]
    ) -> None:
        states = partial.states
        bs = self.block_size
        index = partial.index
        n = len(states)
        b = partial.hint
        while b < n and want > 0 and partial.free:
            if states[b] == _FREE:
                states[b] = _REQUESTED
                partial.free -= 1
                partial.requesters[b] = [peer]
                begin = b * bs
                block = (index, begin, min(bs, partial.size - begin))
                mine.add(block)
                out.append(block)
                want -= 1
            b += 1
        partial.hint = b

    def _has(self, data: bytearray | None, index: int) -> bool:
        return data is None or bool(data[index >> 3] & (0x80 >> (index & 7)))

    def _choose(self, data: bytearray | None) -> int:
        """A free piece the peer has, by the strategy; -1 if none."""
        strategy = self.config.strategy
        if strategy == "sequential":
            return self._choose_sequential(data)
        if strategy == "random" or self.have.count < self.config.random_first_pieces:
            index = self._choose_random(data)
            if index >= 0:
                self.counters["picked_random"] += 1
                return index
        index = self._choose_rarest(data)
        if index >= 0:
            self.counters["picked_rarest"] += 1
        return index

    def _choose_random(self, data: bytearray | None) -> int:
        pos = self._pos
        rng = self.rng
        n = self.piece_count
        for _ in range(RANDOM_PICK_TRIES):
            index = rng.randrange(n)
            if pos[index] >= 0 and self._has(data, index):
                return index
        # few free pieces left: a random one of those the peer has
        candidates = [
            i for bucket in self._buckets for i in bucket if self._has(data, i)
        ]
        return rng.choice(candidates) if candidates else -1

    def _choose_rarest(self, data: bytearray | None) -> int:
        rng = self.rng
        # A peer that is not a seed counts itself in a piece's availability,
        # so bucket 0 (pieces only seeds have) is the seeds' alone.
        first = 0 if data is None else 1
        for bucket in self._buckets[first:]:
            size = len(bucket)
            if not size:
                continue
            if data is None:
                return bucket[rng.randrange(size)]
            start = rng.randrange(size)
            for k in range(size):
                index = bucket[(start + k) % size]
                if data[index >> 3] & (0x80 >> (index & 7)):
                    return index
        return -1

    def _choose_sequential(self, data: bytearray | None) -> int:
        pos = self._pos
        for index in range(self.piece_count):
            if pos[index] >= 0 and self._has(data, index):
                self.counters["picked_sequential"] += 1
                return index
        return -1

    def _endgame(
        self,
        peer: object,
        data: bytearray | None,
        mine: set[Block],
        want: int,
        out: list[Block],
    ) -> None:
        bs = self.block_size
        limit = self.config.endgame_duplicates
        for partial in self._partials.values():
            if not self._has(data, partial.index):
                continue
            states = partial.states
            for b in range(len(states)):
                if states[b] != _REQUESTED:
                    continue
                requesters = partial.requesters[b]
                if peer in requesters or len(requesters) >= limit:
                    continue
                requesters.append(peer)
                begin = b * bs
                block = (partial.index, begin, min(bs, partial.size - begin))
                mine.add(block)
                out.append(block)
                self.counters["endgame_requests"] += 1
                want -= 1
                if want <= 0:
                    return

    # ------------------------------------------------------------ outcomes

    def received(self, peer: object, block: Block) -> Received | None:
        """A block arrived from ``peer``.  None when it is not wanted (a
        duplicate in endgame, a piece that is no longer missing): drop it."""
        index, begin, length = block
        mine = self._by_peer.get(peer)
        if mine is not None:
            mine.discard(block)
            if not mine:
                del self._by_peer[peer]
        partial = self._partials.get(index)
        if partial is None or begin % self.block_size:
            self.counters["unwanted_blocks"] += 1
            return None
        b = begin // self.block_size
        if b >= len(partial.states) or min(self.block_size, partial.size - begin) != length:
            self.counters["unwanted_blocks"] += 1
            return None
        state = partial.states[b]
        if state == _RECEIVED:
            self.counters["duplicate_blocks"] += 1
            return None
        requesters = partial.requesters.pop(b, [])
        if state == _FREE:
            # a request we had given up on (timed out) answered after all
            partial.free -= 1
            self.counters["late_blocks"] += 1
        partial.states[b] = _RECEIVED
        partial.received += 1
        partial.senders[b] = peer
        others = tuple(p for p in requesters if p != peer)
        for other in others:
            theirs = self._by_peer.get(other)
            if theirs is not None:
                theirs.discard(block)
                if not theirs:
                    del self._by_peer[other]
        complete = partial.received == len(partial.states)
        if complete:
            del self._partials[index]
            self._pending.add(index)
            self._senders_of_pending[index] = partial.senders
        return Received(complete, others)

    def abort(self, peer: object, block: Block) -> None:
        """``peer`` will not deliver ``block`` (choked, rejected, timed out,
        gone): the block is free again unless someone else was asked too."""
        mine = self._by_peer.get(peer)
        if mine is not None:
            mine.discard(block)
            if not mine:
                del self._by_peer[peer]
        index, begin, _ = block
        partial = self._partials.get(index)
        if partial is None:
            return
        b = begin // self.block_size
        if b >= len(partial.states) or partial.states[b] != _REQUESTED:
            return
        requesters = partial.requesters.get(b)
        if requesters is not None and peer in requesters:
            requesters.remove(peer)
        if not requesters:
            partial.requesters.pop(b, None)
            partial.states[b] = _FREE
            partial.free += 1
            if b < partial.hint:
                partial.hint = b

    def abort_peer(self, peer: object) -> list[Block]:
        """Every request of ``peer`` is void (it is gone); returns them."""
        blocks = sorted(self._by_peer.get(peer, ()))
        for block in blocks:
            self.abort(peer, block)
        self._by_peer.pop(peer, None)
        return blocks

    def piece_passed(self, index: int) -> None:
        """Piece ``index`` verified and written: it is had."""
        self._pending.discard(index)
        self._senders_of_pending.pop(index, None)
        partial = self._partials.pop(index, None)
        if partial is None and self._pos[index] >= 0:
            self._take(index)
        self.have.add(index)

    def piece_failed(self, index: int) -> dict[int, object]:
        """Piece ``index`` failed its hash: every block is needed again.
        Returns who sent each block (block number -> peer), for blame."""
        self._pending.discard(index)
        senders = self._senders_of_pending.pop(index, {})
        partial = self._partials.pop(index, None)
        if partial is not None:
            senders = dict(partial.senders)
            for b, requesters in partial.requesters.items():
                begin = b * self.block_size
                block = (index, begin, min(self.block_size, partial.size - begin))
                for p in requesters:
                    theirs = self._by_peer.get(p)
                    if theirs is not None:
                        theirs.discard(block)
        if index not in self.have and self._pos[index] < 0:
            self._release(index)
        return senders
