"""RandomUnchoke, the no-reciprocity choker the free-rider experiment
measures tit-for-tat against."""

from __future__ import annotations

import random
from dataclasses import dataclass

from peerlab.overlays.bittorrent import ChokerConfig, RandomUnchoke, UnchokeKind


@dataclass(eq=False)
class FakePeer:
    name: str
    peer_interested: bool = True
    am_interested: bool = True
    download_rate: float = 0.0
    upload_rate: float = 0.0
    connected_at: float = 0.0
    last_block_at: float | None = None


def test_random_unchoke_ignores_rates_and_redraws_each_interval() -> None:
    peers = [FakePeer(f"p{i}", download_rate=1000.0 * i) for i in range(12)]
    peers.append(FakePeer("idle", peer_interested=False, download_rate=1e9))
    ch = RandomUnchoke(ChokerConfig(), random.Random(4))
    first = ch.rechoke(peers, 0.0, seeding=False)
    # the 4 + 1 slots, all unearned, never to a peer that wants nothing
    assert len(first) == 5
    assert set(first.values()) == {UnchokeKind.OPTIMISTIC}
    assert all(p.peer_interested for p in first)
    # before the interval the set holds (an interest change does not reshuffle)
    assert ch.rechoke(peers, 5.0, seeding=False) == first
    # a chosen peer that loses interest leaves at once and its slot is refilled
    gone = next(iter(first))
    gone.peer_interested = False
    again = ch.rechoke(peers, 6.0, seeding=False)
    assert gone not in again and len(again) == 5
    assert set(first) - {gone} <= set(again)
    gone.peer_interested = True
    # every interval a fresh draw: over many, everyone interested gets turns,
    # the fastest uploaders no more than the others
    turns = {p.name: 0 for p in peers}
    for k in range(1, 200):
        for p in ch.rechoke(peers, 10.0 * k, seeding=False):
            turns[p.name] += 1
    assert turns["idle"] == 0
    assert min(v for k, v in turns.items() if k != "idle") > 40
    assert ch.counters["redraws"] == 200
    # seeding: the same draw, marked as seeding
    assert set(ch.rechoke(peers, 5000.0, seeding=True).values()) == {UnchokeKind.SEEDING}
    # a peer that leaves is forgotten
    chosen = next(iter(ch.rechoke(peers, 5001.0, seeding=True)))
    ch.peer_left(chosen)
    assert chosen not in ch._chosen
