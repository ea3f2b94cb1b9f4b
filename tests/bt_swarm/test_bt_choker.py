"""The choker as a unit, driven by a fake schedule (issue 6, section 4): regular
slots by download rate every 10 s, one optimistic unchoke rotated every 30 s
with new peers favoured, anti-snubbing after 60 s, the seeding choker by
upload rate, and a free rider that only ever gets optimistic unchokes."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from peerlab.overlays.bittorrent.choker import Choker, ChokerConfig, NeverUnchoke, UnchokeKind


@dataclass(eq=False)
class FakePeer:
    name: str
    download_rate: float = 0.0
    upload_rate: float = 0.0
    peer_interested: bool = True
    am_interested: bool = True
    connected_at: float = -1000.0
    last_block_at: float | None = 0.0

    def __repr__(self) -> str:
        return self.name


def choker(seed: int = 1, **cfg: object) -> Choker:
    return Choker(ChokerConfig(**cfg), random.Random(seed))  # type: ignore[arg-type]


def regular(result: dict[FakePeer, UnchokeKind]) -> set[str]:
    return {p.name for p, k in result.items() if k is UnchokeKind.REGULAR}


def optimistic(result: dict[FakePeer, UnchokeKind]) -> set[str]:
    return {p.name for p, k in result.items() if k is UnchokeKind.OPTIMISTIC}


def test_regular_slots_go_to_the_fastest_uploaders_to_us() -> None:
    peers = [FakePeer(f"p{i}", download_rate=float(i * 1000)) for i in range(8)]
    result = choker().rechoke(peers, 0.0, seeding=False)
    assert regular(result) == {"p7", "p6", "p5", "p4"}
    assert len(optimistic(result)) == 1 and optimistic(result) <= {"p0", "p1", "p2", "p3"}
    assert len(result) == 5


def test_uninterested_peers_are_choked() -> None:
    peers = [FakePeer("fast", download_rate=9e6, peer_interested=False),
             FakePeer("slow", download_rate=1.0)]
    result = choker().rechoke(peers, 0.0, seeding=False)
    assert [p.name for p in result] == ["slow"]


def test_rates_are_reconsidered_every_rechoke() -> None:
    peers = [FakePeer(f"p{i}", download_rate=float(10 + i)) for i in range(6)]
    c = choker(optimistic_slots=0)
    assert regular(c.rechoke(peers, 0.0, seeding=False)) == {"p5", "p4", "p3", "p2"}
    peers[0].download_rate = 1e6  # p0 now uploads to us fastest
    peers[5].download_rate = 0.0  # p5 stopped
    assert regular(c.rechoke(peers, 10.0, seeding=False)) == {"p0", "p4", "p3", "p2"}


def test_the_optimistic_unchoke_rotates_every_30_seconds() -> None:
    # one regular slot held by the one peer that uploads to us; 29 others
    peers = [FakePeer(f"p{i}", download_rate=1e6 if i == 0 else 0.0) for i in range(30)]
    c = choker(regular_slots=1)
    chosen = []
    for t in range(0, 300, 10):  # the 10 s rechoke schedule
        peers[0].last_block_at = float(t)
        result = c.rechoke(peers, float(t), seeding=False)
        assert regular(result) == {"p0"}
        (opt,) = c.optimistic
        chosen.append((t, opt.name))
    # the optimistic peer changes only at 0, 30, 60, ... seconds
    changes = [t for (t, a), (_, b) in zip(chosen, chosen[1:], strict=False) if a != b]
    assert changes and all((t + 10) % 30 == 0 for t in changes)
    assert c.counters["optimistic_rotations"] == 10
    assert len({name for _, name in chosen}) >= 5


def test_new_connections_are_three_times_as_likely_to_be_optimistic() -> None:
    hits = Counter()
    for seed in range(600):
        old = [FakePeer(f"old{i}", connected_at=-1000.0) for i in range(3)]
        new = [FakePeer("new", connected_at=-5.0)]
        c = choker(seed, regular_slots=0)
        (opt,) = c.rechoke(old + new, 0.0, seeding=False)
        hits["new" if opt.name == "new" else "old"] += 1
    # weights 3 : 1+1+1 -> the new peer wins about half the draws
    assert 0.4 < hits["new"] / 600 < 0.6


def test_a_snubbing_peer_loses_its_regular_slot() -> None:
    fast = FakePeer("fast", download_rate=5e6, last_block_at=0.0)
    others = [FakePeer(f"p{i}", download_rate=1000.0, last_block_at=0.0) for i in range(4)]
    c = choker(optimistic_slots=0)
    assert "fast" in regular(c.rechoke([fast, *others], 10.0, seeding=False))
    # 60 s without a block while we want its pieces: snubbed (its averaged
    # rate still looks good, so only anti-snubbing can take the slot away)
    for p in others:
        p.last_block_at = 65.0
    result = c.rechoke([fast, *others], 70.0, seeding=False)
    assert c.is_snubbing(fast, 70.0)
    assert "fast" not in regular(result)
    # ... it can still be reached optimistically
    fast.am_interested = False
    assert not c.is_snubbing(fast, 70.0)


def test_the_seeding_choker_favours_the_fastest_downloaders() -> None:
    peers = [FakePeer(f"p{i}", upload_rate=float(i), download_rate=0.0) for i in range(7)]
    result = choker().rechoke(peers, 0.0, seeding=True)
    seeding = {p.name for p, k in result.items() if k is UnchokeKind.SEEDING}
    assert seeding == {"p6", "p5", "p4", "p3"}
    assert len(optimistic(result)) == 1


def test_a_free_rider_only_ever_gets_optimistic_unchokes() -> None:
    traders = [FakePeer(f"t{i}", download_rate=1000.0 + i) for i in range(6)]
    rider = FakePeer("rider", download_rate=0.0)
    c = choker(7)
    kinds: Counter[UnchokeKind] = Counter()
    for t in range(0, 600, 10):
        result = c.rechoke([*traders, rider], float(t), seeding=False)
        for p in traders:
            p.last_block_at = float(t)
        if rider in result:
            kinds[result[rider]] += 1
    assert kinds[UnchokeKind.REGULAR] == 0
    assert kinds[UnchokeKind.OPTIMISTIC] > 0  # it does get its chances


def test_spare_slots_are_optimistic_and_stay_while_nobody_reciprocates() -> None:
    peers = [FakePeer(f"p{i}") for i in range(3)]  # nobody has sent us anything yet
    c = choker()
    first = c.rechoke(peers, 0.0, seeding=False)
    assert set(first.values()) == {UnchokeKind.OPTIMISTIC} and len(first) == 3
    assert c.rechoke(peers, 10.0, seeding=False).keys() == first.keys()


def test_never_unchoke_uploads_to_nobody() -> None:
    peers = [FakePeer(f"p{i}", download_rate=1e6) for i in range(3)]
    assert NeverUnchoke().rechoke(peers, 0.0, seeding=False) == {}
