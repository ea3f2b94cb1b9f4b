"""The choker: whom we upload to (issue 6, section 4; the lecture's tit-for-tat).

A separate, documented, testable unit in the manner of the original
BitTorrent's ``Choker.py``, which took its scheduler as a constructor
argument: this one takes the time as an argument of every call and its
randomness as ``rng``, so a test drives it with a fake schedule, and the
simulator can swap it for alternatives (:class:`ChokerPolicy`).

BEP 3 ("peer protocol") names the mechanism and leaves the policy open; the
policy here is the one of Cohen's "Incentives Build Robustness in
BitTorrent" (2003), section 3, as BitTorrent 3.x and libtorrent run it:

* **Regular unchoke slots** (``regular_slots``, 4 by default) are re-chosen
  every ``rechoke_interval`` (10 s): while downloading, the interested peers
  that *upload to us* fastest get them (download rate from each peer, a
  20-second running average).  Tit-for-tat: a slot is earned by
  reciprocating, so a peer that sends us nothing (a rate of 0) never holds a
  regular slot.
* **One optimistic unchoke** (``optimistic_slots``) is rotated every
  ``optimistic_interval`` (30 s) to a random choked, interested peer; peers
  connected less than ``new_peer_age`` ago are ``new_peer_weight`` (3) times
  as likely to be chosen, since they have nothing to trade yet.  Regular
  slots that no reciprocating peer fills are given the same way (marked
  optimistic too: the upload is not earned) and kept until a reciprocating
  peer takes them.
* **Anti-snubbing**: a peer from which we (interested) have not received a
  block for ``snub_timeout`` (60 s) is snubbing us and gets no regular slot;
  only an optimistic unchoke can reach it.
* **Seeding**: with nothing left to download, the regular slots go to the
  interested peers we upload to fastest (they get the most out of our
  upload), ties at random; the optimistic rotation goes on as above, so a new
  peer gets its chance to prove faster.

Public API::

    ChokerConfig(regular_slots=4, optimistic_slots=1, rechoke_interval=10.0,
                 optimistic_interval=30.0, snub_timeout=60.0, new_peer_age=60.0,
                 new_peer_weight=3)
    UnchokeKind: REGULAR, OPTIMISTIC, SEEDING
    ChokerPeer (Protocol): peer_interested, am_interested, download_rate,
                           upload_rate, connected_at, last_block_at
    ChokerPolicy (Protocol): rechoke(peers, now, *, seeding) -> dict[peer, UnchokeKind];
                             peer_left(peer)
    Choker(config, rng)                 # the tit-for-tat policy
        .rechoke(peers, now, *, seeding) -> dict[peer, UnchokeKind]  # who is unchoked, why
        .peer_left(peer)
        .is_snubbing(peer, now) -> bool
        .optimistic -> list[peer]       .counters (Counter)
    NeverUnchoke()                      # a free rider's policy (simulator, tests)
    RandomUnchoke(config, rng)          # no reciprocity: the baseline tit-for-tat is
                                        # measured against (simulator)

``rechoke`` may be called at any time (the session calls it every
``rechoke_interval`` and when a peer's interest changes); the optimistic
choice only rotates once ``optimistic_interval`` has passed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

__all__ = [
    "ChokerConfig",
    "ChokerPeer",
    "ChokerPolicy",
    "Choker",
    "NeverUnchoke",
    "RandomUnchoke",
    "UnchokeKind",
]


class UnchokeKind(Enum):
    """Why a peer is unchoked."""

    REGULAR = "regular"  # earned: it uploads to us among the fastest
    OPTIMISTIC = "optimistic"  # a chance: rotated optimistic slot, or a spare slot
    SEEDING = "seeding"  # we seed: it downloads from us among the fastest


@dataclass(frozen=True, slots=True)
class ChokerConfig:
    """Slots and timings of the choker (see the module docstring)."""

    regular_slots: int = 4
    optimistic_slots: int = 1
    rechoke_interval: float = 10.0
    optimistic_interval: float = 30.0
    snub_timeout: float = 60.0
    new_peer_age: float = 60.0
    new_peer_weight: int = 3

    def __post_init__(self) -> None:
        if self.regular_slots < 0 or self.optimistic_slots < 0:
            raise ValueError("unchoke slots must not be negative")
        if self.rechoke_interval <= 0 or self.optimistic_interval <= 0:
            raise ValueError("choker intervals must be positive")
        if self.new_peer_weight < 1:
            raise ValueError("new_peer_weight must be at least 1")


class ChokerPeer(Hashable, Protocol):
    """What the choker reads of a peer connection."""

    @property
    def peer_interested(self) -> bool:
        """The peer wants pieces we have."""

    @property
    def am_interested(self) -> bool:
        """We want pieces the peer has."""

    @property
    def download_rate(self) -> float:
        """Bytes/s of blocks we receive from the peer."""

    @property
    def upload_rate(self) -> float:
        """Bytes/s of blocks we send the peer."""

    @property
    def connected_at(self) -> float: ...

    @property
    def last_block_at(self) -> float | None:
        """When the last block from the peer arrived (None: never)."""


P = TypeVar("P", bound=ChokerPeer)


class ChokerPolicy(Protocol):
    """What the session needs of a choker (the simulator plugs in others)."""

    def rechoke(
        self, peers: Sequence[P], now: float, *, seeding: bool
    ) -> dict[P, UnchokeKind]: ...

    def peer_left(self, peer: ChokerPeer) -> None: ...


class Choker:
    """Tit-for-tat with optimistic unchoking and anti-snubbing."""

    def __init__(self, config: ChokerConfig | None = None, rng: random.Random | None = None):
        self.config = config or ChokerConfig()
        self.rng = rng if rng is not None else random.Random(0)
        self.counters: Counter[str] = Counter()
        self._optimistic: list[Any] = []
        self._optimistic_at: float | None = None
        self._spare: list[Any] = []

    @property
    def optimistic(self) -> list[ChokerPeer]:
        """The peers holding the rotated optimistic slots now."""
        return list(self._optimistic)

    def peer_left(self, peer: ChokerPeer) -> None:
        if peer in self._optimistic:
            self._optimistic.remove(peer)
        if peer in self._spare:
            self._spare.remove(peer)

    def is_snubbing(self, peer: ChokerPeer, now: float) -> bool:
        """We want its pieces and no block came for ``snub_timeout`` seconds."""
        if not peer.am_interested:
            return False
        since = peer.last_block_at if peer.last_block_at is not None else peer.connected_at
        return now - since >= self.config.snub_timeout

    def rechoke(
        self, peers: Sequence[P], now: float, *, seeding: bool
    ) -> dict[P, UnchokeKind]:
        """The peers to unchoke now, each with the reason (all others are
        choked).  Deterministic given ``rng``."""
        cfg = self.config
        interested = [p for p in peers if p.peer_interested]
        present = set(interested)
        self._optimistic = [p for p in self._optimistic if p in present]
        self._spare = [p for p in self._spare if p in present]
        result: dict[P, UnchokeKind] = {}
        # Regular slots: by rate, ties broken at random (shuffle, then a stable sort).
        ranked = list(interested)
        self.rng.shuffle(ranked)
        if seeding:
            ranked.sort(key=lambda p: p.upload_rate, reverse=True)
            kind = UnchokeKind.SEEDING
            eligible = ranked
        else:
            ranked.sort(key=lambda p: p.download_rate, reverse=True)
            kind = UnchokeKind.REGULAR
            eligible = [
                p for p in ranked if p.download_rate > 0 and not self.is_snubbing(p, now)
            ]
            self.counters["snubbing"] += sum(1 for p in ranked if self.is_snubbing(p, now))
        for p in eligible[: cfg.regular_slots]:
            result[p] = kind
        # The rotated optimistic unchoke.
        due = self._optimistic_at is None or now - self._optimistic_at >= cfg.optimistic_interval
        if due or len(self._optimistic) < cfg.optimistic_slots:
            keep = [] if due else [p for p in self._optimistic if p not in result]
            chosen = self._draw(
                [p for p in interested if p not in result and p not in keep],
                cfg.optimistic_slots - len(keep),
                now,
            )
            if due:
                self._optimistic_at = now
                if chosen:
                    self.counters["optimistic_rotations"] += 1
            self._optimistic = [*keep, *chosen]
        for p in self._optimistic:
            if p not in result:
                result[p] = UnchokeKind.OPTIMISTIC
        # Spare regular slots: unearned, so optimistic too; kept while useful.
        spare_room = cfg.regular_slots - sum(1 for k in result.values() if k is kind)
        if spare_room > 0:
            keep_spare = [p for p in self._spare if p not in result][:spare_room]
            extra = self._draw(
                [p for p in interested if p not in result and p not in keep_spare],
                spare_room - len(keep_spare),
                now,
            )
            self._spare = [*keep_spare, *extra]
            for p in self._spare:
                result[p] = UnchokeKind.OPTIMISTIC
        else:
            self._spare = []
        self.counters["rechokes"] += 1
        return result

    def _draw(self, candidates: list[P], n: int, now: float) -> list[P]:
        """``n`` peers at random, new connections weighted ``new_peer_weight``."""
        cfg = self.config
        out: list[P] = []
        pool = list(candidates)
        while pool and len(out) < n:
            weights = [
                cfg.new_peer_weight if now - p.connected_at < cfg.new_peer_age else 1
                for p in pool
            ]
            pick = self.rng.choices(range(len(pool)), weights)[0]
            out.append(pool.pop(pick))
        return out


class NeverUnchoke:
    """Uploads to nobody: a free rider (for the simulator and tests)."""

    def rechoke(
        self, peers: Sequence[P], now: float, *, seeding: bool
    ) -> dict[P, UnchokeKind]:
        return {}

    def peer_left(self, peer: ChokerPeer) -> None:
        pass


class RandomUnchoke:
    """Uploads to random interested peers, whatever they give back: the
    baseline tit-for-tat is measured against (the simulator's free-rider
    experiment).  The same number of slots as :class:`Choker`
    (``regular_slots + optimistic_slots``); the set is redrawn every
    ``rechoke_interval`` (peers that lose interest leave it at once and their
    slots are refilled), so everyone interested gets turns and nobody earns
    anything.  Every unchoke is optimistic (unearned), or seeding."""

    def __init__(self, config: ChokerConfig | None = None, rng: random.Random | None = None):
        self.config = config or ChokerConfig()
        self.rng = rng if rng is not None else random.Random(0)
        self.counters: Counter[str] = Counter()
        self._chosen: list[Any] = []
        self._drawn_at: float | None = None

    def rechoke(
        self, peers: Sequence[P], now: float, *, seeding: bool
    ) -> dict[P, UnchokeKind]:
        cfg = self.config
        slots = cfg.regular_slots + cfg.optimistic_slots
        interested = [p for p in peers if p.peer_interested]
        due = self._drawn_at is None or now - self._drawn_at >= cfg.rechoke_interval
        if due:
            self._drawn_at = now
            self._chosen = []
            self.counters["redraws"] += 1
        present = set(interested)
        keep = [p for p in self._chosen if p in present]
        pool = [p for p in interested if p not in keep]
        self.rng.shuffle(pool)
        self._chosen = [*keep, *pool[: max(0, slots - len(keep))]]
        kind = UnchokeKind.SEEDING if seeding else UnchokeKind.OPTIMISTIC
        self.counters["rechokes"] += 1
        return {p: kind for p in self._chosen}

    def peer_left(self, peer: ChokerPeer) -> None:
        if peer in self._chosen:
            self._chosen.remove(peer)
