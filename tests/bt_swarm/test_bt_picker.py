"""The piece picker as a unit (issue 6, section 4): random first pieces,
rarest first, strict priority to partial pieces, endgame with duplicates and
cancels, sequential mode, the memory bound on new pieces."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from peerlab.overlays.bittorrent.picker import PickerConfig, PiecePicker
from peerlab.storage.pieces import PieceBits

BS = 16384


def picker(n: int = 10, piece: int = 2 * BS, *, have: tuple[int, ...] | list[int] = (),
           seed: int = 1, **cfg: object) -> PiecePicker:
    bits = PieceBits(n)
    for i in have:
        bits.add(i)
    config = PickerConfig(**cfg)  # type: ignore[arg-type]
    return PiecePicker(n, lambda i: piece, random.Random(seed), config, have=bits)


def bits_of(n: int, pieces: list[int] | range) -> PieceBits:
    b = PieceBits(n)
    for i in pieces:
        b.add(i)
    return b


def test_blocks_cover_a_piece_with_a_short_last_block() -> None:
    p = PiecePicker(1, lambda i: 2 * BS + 100, random.Random(0))
    p.seed_joined()
    blocks = p.pick("a", None, 10)
    assert blocks == [(0, 0, BS), (0, BS, BS), (0, 2 * BS, 100)]
    assert p.requested_from("a") == blocks


def test_rarest_first_after_the_random_first_pieces() -> None:
    n = 8
    p = picker(n, have=[0, 1, 2, 3], random_first_pieces=4)  # past the random phase
    # piece 7 is held by one peer, the rest by three
    common = bits_of(n, range(4, 7))
    for _ in range(3):
        p.peer_has_bits(common)
    rich = bits_of(n, range(4, 8))
    p.peer_has_bits(rich)
    assert p.availability(7) == 1 and p.availability(4) == 4
    first = p.pick("rich", rich, 2)
    assert {b[0] for b in first} == {7}  # the rarest piece first
    assert p.counters["picked_rarest"] == 1


def test_random_first_pieces_ignore_rarity() -> None:
    n = 200
    seen = Counter()
    for seed in range(30):
        p = picker(n, seed=seed, random_first_pieces=4)
        everything = bits_of(n, range(n))
        p.peer_has_bits(everything)
        p.peer_has(0)  # piece 0 is the only one two peers have: never rarest
        blocks = p.pick("x", everything, 2)
        seen[blocks[0][0]] += 1
        assert p.counters["picked_random"] == 1
    # random: many different first pieces, not always the same one
    assert len(seen) > 20


def test_strict_priority_to_partial_pieces() -> None:
    n = 6
    p = picker(n, have=[0, 1, 2, 3], random_first_pieces=0)
    everything = bits_of(n, range(n))
    p.peer_has_bits(everything)
    p.peer_has_bits(everything)
    a = p.pick("a", everything, 1)  # starts a piece, takes one of its two blocks
    b = p.pick("b", everything, 1)  # must finish that piece, not start another
    assert a[0][0] == b[0][0] and a != b
    assert p.partial_pieces == 1


def test_a_peer_is_only_asked_for_pieces_it_has() -> None:
    n = 6
    p = picker(n, random_first_pieces=0)
    only5 = bits_of(n, [5])
    p.peer_has_bits(only5)
    blocks = p.pick("x", only5, 10)
    assert {b[0] for b in blocks} == {5}
    assert p.pick("x", only5, 10) == []  # nothing else to give


def test_endgame_duplicates_and_names_the_requests_to_cancel() -> None:
    n = 2
    p = picker(n, have=[0], random_first_pieces=0, endgame_duplicates=2)
    p.seed_joined()
    p.seed_joined()
    a = p.pick("a", None, 10)
    assert len(a) == 2 and p.free_pieces == 0
    assert p.in_endgame
    b = p.pick("b", None, 10)  # every block is requested: one duplicate
    assert len(b) == 1 and b[0] in a
    assert p.pick("b", None, 10) == []  # not while b has one outstanding
    c = p.pick("c", None, 10)
    assert len(c) == 1 and c[0] in a and c != b
    assert p.counters["endgame_requests"] == 2
    assert p.pick("d", None, 10) == []  # at most two requests per block
    got = p.received("b", b[0])
    assert got is not None and got.others == ("a",) and not got.piece_complete
    assert p.received("a", b[0]) is None  # the duplicate is dropped
    assert p.counters["duplicate_blocks"] == 1
    assert p.pick("b", None, 10) == []  # its duplicate is c's already
    done = p.received("a", c[0])
    assert done is not None and done.piece_complete and done.others == ("c",)
    p.piece_passed(1)
    assert p.have.complete


def test_aborted_blocks_go_back_to_others() -> None:
    n = 3
    p = picker(n, random_first_pieces=0)
    p.seed_joined()
    a = p.pick("slow", None, 2)
    assert p.pick("fast", None, 0) == []
    p.abort_peer("slow")  # timed out, choked or gone
    again = p.pick("fast", None, 2)
    assert again == a  # the same blocks, no hole left
    assert p.requested_from("slow") == []


def test_a_failed_piece_is_downloaded_again_and_senders_are_named() -> None:
    p = picker(2, random_first_pieces=0)
    p.seed_joined()
    blocks = p.pick("x", None, 2)
    assert {b[0] for b in blocks} == {blocks[0][0]}
    index = blocks[0][0]
    p.received("x", blocks[0])
    p.received("y", blocks[1])  # a late answer from someone else
    senders = p.piece_failed(index)
    assert senders == {0: "x", 1: "y"}
    assert p.wants(index) and p.free_pieces == 2
    again = p.pick("z", None, 4)
    assert index in {b[0] for b in again}


def test_sequential_mode_goes_in_order() -> None:
    n = 5
    p = picker(n, strategy="sequential")
    p.seed_joined()
    order = [p.pick("x", None, 2)[0][0] for _ in range(n)]
    assert order == [0, 1, 2, 3, 4]


def test_no_new_piece_beyond_the_memory_bound() -> None:
    room = {"ok": True}
    p = PiecePicker(4, lambda i: 2 * BS, random.Random(0), PickerConfig(random_first_pieces=0),
                    can_start=lambda size: room["ok"])
    p.seed_joined()
    first = p.pick("x", None, 2)
    room["ok"] = False
    assert p.pick("x", None, 4) == []  # the partial piece is fully requested
    assert p.counters["start_deferred"] == 1
    room["ok"] = True
    assert p.pick("x", None, 2) and first


def test_availability_follows_peers_coming_and_going() -> None:
    n = 4
    p = picker(n)
    b = bits_of(n, [1, 2])
    p.peer_has_bits(b)
    p.seed_joined()
    assert [p.availability(i) for i in range(n)] == [1, 2, 2, 1]
    p.peer_lost_bits(b)
    p.seed_left()
    assert [p.availability(i) for i in range(n)] == [0, 0, 0, 0]


@pytest.mark.parametrize("strategy", ["rarest", "random", "sequential"])
def test_every_strategy_completes_a_download(strategy: str) -> None:
    n = 30
    p = picker(n, strategy=strategy)
    for k in range(3):
        p.peer_has_bits(bits_of(n, range(k, n, 3)))
    p.seed_joined()
    for _ in range(200):
        blocks = p.pick("s", None, 7)
        if not blocks:
            break
        for block in blocks:
            r = p.received("s", block)
            assert r is not None
            if r.piece_complete:
                p.piece_passed(block[0])
    assert p.have.complete
