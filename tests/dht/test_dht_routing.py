"""The routing table on its own, time passed in (BEP 5 "Routing Table")."""

from __future__ import annotations

import random

from dhtkit import nid, top
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.overlays.dht.routing import (
    GOOD_WINDOW_S,
    MAX_FAILURES,
    K,
    NodeState,
    Outcome,
    RoutingTable,
)

OWN = nid(0)
SPACE = 1 << 160


def addr(n: int) -> tuple[str, int]:
    return (f"10.0.{n >> 8 & 255}.{n & 255}", 6881)


def fill_far_half(t: RoutingTable, now: float = 0.0) -> list[bytes]:
    """K nodes whose first bit differs from ours (0x80..0x87)."""
    ids = [top(0x80 + i) for i in range(K)]
    for i, x in enumerate(ids):
        assert t.heard_response(x, addr(i), now) is Outcome.ADDED
    return ids


def test_the_first_split_covers_the_two_halves() -> None:
    """BEP 5: "For a new table with only one bucket, the full bucket is always
    split into two new buckets covering the ranges 0..2^159 and 2^159..2^160"."""
    t = RoutingTable(OWN)
    assert t.bucket_count == 1 and t.bucket_range(0) == (0, SPACE)
    fill_far_half(t)
    assert t.bucket_count == 1
    assert t.heard_response(top(0x40), addr(100), 0.0) is Outcome.ADDED
    assert t.bucket_count == 2
    assert t.bucket_range(0) == (1 << 159, SPACE)
    assert t.bucket_range(1) == (0, 1 << 159)
    assert t.bucket_sizes() == [K, 1]


def test_only_the_bucket_with_our_id_splits() -> None:
    t = RoutingTable(OWN)
    fill_far_half(t)
    t.heard_response(top(0x40), addr(100), 0.0)
    # The far half is full of good nodes: a ninth far node waits, no split.
    assert t.heard_response(top(0xF0), addr(101), 0.0) is Outcome.CACHED
    assert t.bucket_count == 2 and t.bucket_sizes()[0] == K
    assert [e.id for e in t.replacements()] == [top(0xF0)]
    # All good: nobody to ping.
    assert t.ping_candidates(0.0) == []
    # Near our id the table keeps splitting: 8 nodes in 0x40.. fill bucket 1,
    # the next (0x20..) splits it, and so on down.
    for i in range(1, K):
        assert t.heard_response(top(0x40, i), addr(200 + i), 0.0) is Outcome.ADDED
    assert t.heard_response(top(0x20), addr(300), 0.0) is Outcome.ADDED
    assert t.bucket_count == 3
    assert t.bucket_range(1) == (1 << 158, 1 << 159)
    assert t.bucket_range(2) == (0, 1 << 158)


def test_node_states_follow_the_15_minute_rule() -> None:
    t = RoutingTable(OWN)
    t.heard_response(top(0x80), addr(1), 0.0)
    e = t.find(top(0x80))
    assert e is not None
    assert e.state(GOOD_WINDOW_S - 1) is NodeState.GOOD
    assert e.state(GOOD_WINDOW_S) is NodeState.QUESTIONABLE
    # "A node is also good if it has ever responded to one of our queries and
    # has sent us a query within the last 15 minutes."
    assert t.heard_query(top(0x80), addr(1), 1000.0)
    assert e.state(1000.0 + GOOD_WINDOW_S - 1) is NodeState.GOOD
    assert e.state(1000.0 + GOOD_WINDOW_S) is NodeState.QUESTIONABLE
    # A query from the id at another address does not count.
    assert not t.heard_query(top(0x80), addr(2), 2000.0)
    # Failures: one makes it questionable, MAX_FAILURES make it bad.
    t.heard_response(top(0x80), addr(1), 3000.0)
    assert t.failed(top(0x80), addr(1), 3001.0) is Outcome.FAILED
    assert e.state(3001.0) is NodeState.QUESTIONABLE
    assert t.failed(top(0x80), addr(1), 3002.0) is Outcome.BAD  # nobody to replace it
    assert e.state(3002.0) is NodeState.BAD
    assert MAX_FAILURES == 2
    # An answer makes it good again.
    assert t.heard_response(top(0x80), addr(1), 3003.0) is Outcome.UPDATED
    assert e.state(3003.0) is NodeState.GOOD


def test_questionable_nodes_are_pinged_before_a_newcomer_replaces_them() -> None:
    t = RoutingTable(OWN)
    far = fill_far_half(t, now=0.0)
    t.heard_response(top(0x40), addr(100), 0.0)  # split: the far half is bucket 0
    # Refresh all but far[3] and far[5] later, so those two are the least
    # recently seen once everything turns questionable.
    for i, x in enumerate(far):
        if i not in (3, 5):
            t.heard_response(x, addr(i), 100.0 + i)
    later = 100.0 + GOOD_WINDOW_S + 10
    assert t.heard_response(top(0xC0), addr(50), later) is Outcome.CACHED
    first = t.ping_candidates(later)
    assert [e.id for e in first] == [far[3]] or [e.id for e in first] == [far[5]]
    # While a ping is in flight, nothing more for that bucket.
    first[0].pinging = True
    assert t.ping_candidates(later) == []
    # It answers: good again; the next least recently seen is named.
    first[0].pinging = False
    t.heard_response(first[0].id, first[0].address, later + 1)
    second = t.ping_candidates(later + 1)
    assert len(second) == 1 and second[0].id in (far[3], far[5]) and second[0] is not first[0]
    # It fails once: still in the table (to be tried once more).
    assert t.failed(second[0].id, second[0].address, later + 2) is Outcome.FAILED
    assert t.find(second[0].id) is second[0] and second[0].live
    # It fails again: bad, and the newcomer takes its place.
    assert t.failed(second[0].id, second[0].address, later + 3) is Outcome.REPLACED
    assert t.find(second[0].id) is None
    newcomer = t.find(top(0xC0))
    assert newcomer is not None and newcomer.live
    assert t.bucket_sizes()[0] == K and list(t.replacements()) == []


def test_a_bad_node_is_replaced_at_once() -> None:
    t = RoutingTable(OWN)
    far = fill_far_half(t)
    t.heard_response(top(0x40), addr(100), 0.0)
    for _ in range(MAX_FAILURES):
        t.failed(far[2], addr(2), 1.0)
    assert t.heard_response(top(0xC0), addr(50), 2.0) is Outcome.REPLACED
    assert t.find(far[2]) is None
    assert t.find(top(0xC0)) is not None


def test_replacement_cache_is_bounded_and_keeps_the_most_recent() -> None:
    t = RoutingTable(OWN)
    fill_far_half(t)
    t.heard_response(top(0x40), addr(100), 0.0)
    for i in range(3 * K):
        assert t.heard_response(top(0xC0, i), addr(500 + i), 10.0 + i) is Outcome.CACHED
    waiting = sorted(e.id for e in t.replacements())
    assert waiting == sorted(top(0xC0, i) for i in range(2 * K, 3 * K))
    # A waiting node that answers again is the freshest: it moves up first
    # when a place frees.
    t.heard_response(top(0xC0, 2 * K), addr(500 + 2 * K), 100.0)
    e = t.find(top(0xC0, 2 * K))
    assert e is not None and not e.live
    for _ in range(MAX_FAILURES):
        t.failed(top(0x80), addr(0), 101.0)
    assert e.live and t.find(top(0x80)) is None
    assert sum(1 for _ in t.replacements()) == K - 1


def test_ids_and_addresses_cannot_be_hijacked() -> None:
    t = RoutingTable(OWN)
    t.heard_response(top(0x80), addr(1), 0.0)
    # Another address claiming a known id is ignored.
    assert t.heard_response(top(0x80), addr(2), 1.0) is Outcome.IGNORED
    assert t.find(top(0x80)).address == addr(1)  # type: ignore[union-attr]
    # The same address under a new id (the node restarted): the old entry goes.
    assert t.heard_response(top(0x90), addr(1), 2.0) is Outcome.ADDED
    assert t.find(top(0x80)) is None
    assert t.find_address(addr(1)).id == top(0x90)  # type: ignore[union-attr]
    # Our own id never enters.
    assert t.heard_response(OWN, addr(3), 3.0) is Outcome.IGNORED
    assert len(t) == 1


def test_closest_is_by_xor_and_leaves_bad_nodes_out() -> None:
    t = RoutingTable(OWN)
    ids = [top(b) for b in (0x10, 0x20, 0x30, 0x81, 0xF0)]
    for i, x in enumerate(ids):
        t.heard_response(x, addr(i), 0.0)
    target = top(0x31)
    assert [e.id for e in t.closest(target, 3, 0.0)] == [top(0x30), top(0x20), top(0x10)]
    for _ in range(MAX_FAILURES):
        t.failed(top(0x30), addr(2), 1.0)
    assert [e.id for e in t.closest(target, 2, 1.0)] == [top(0x20), top(0x10)]


def test_wants_says_whom_to_verify() -> None:
    t = RoutingTable(OWN)
    fill_far_half(t)
    t.heard_response(top(0x40), addr(100), 0.0)
    assert t.wants(top(0x20))  # room near us
    assert t.wants(top(0xF0))  # far half full, but its replacement cache has room
    for i in range(K):
        t.heard_response(top(0xC0, i), addr(500 + i), 1.0)
    assert not t.wants(top(0xF0))  # full and nobody bad
    assert not t.wants(OWN) and not t.wants(top(0x80))


def test_bucket_refresh_targets() -> None:
    t = RoutingTable(OWN)
    fill_far_half(t)
    t.heard_response(top(0x40), addr(100), 0.0)
    assert t.buckets_to_refresh(GOOD_WINDOW_S - 1) == []
    assert t.buckets_to_refresh(GOOD_WINDOW_S) == [0, 1]
    t.touch_bucket(0, GOOD_WINDOW_S)
    assert t.buckets_to_refresh(GOOD_WINDOW_S) == [1]
    rng = random.Random(3)
    for i in range(t.bucket_count):
        lo, hi = t.bucket_range(i)
        for _ in range(20):
            x = t.random_id_in(i, rng)
            assert lo <= int.from_bytes(x, "big") < hi
            assert t.bucket_of(x) == i


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 2**160 - 1), st.lists(st.integers(0, 2**160 - 1), max_size=300),
       st.integers(1, 8))  # fmt: skip
def test_buckets_partition_the_id_space(own: int, others: list[int], k: int) -> None:
    """Whatever arrives: the buckets' ranges tile 0..2^160 without overlap,
    every node sits in its bucket's range, no bucket exceeds k, and only the
    last bucket holds our own id."""
    t = RoutingTable(nid(own), k=k)
    for i, x in enumerate(others):
        t.heard_response(nid(x), addr(i), float(i))
    ranges = [t.bucket_range(i) for i in range(t.bucket_count)]
    assert sorted(ranges)[0][0] == 0
    edges = sorted(ranges)
    for (_, hi), (lo, _) in zip(edges, edges[1:], strict=False):
        assert hi == lo
    assert edges[-1][1] == SPACE
    for i, (lo, hi) in enumerate(ranges):
        assert (lo <= own < hi) == (i == t.bucket_count - 1)
    assert all(n <= k for n in t.bucket_sizes())
    for e in t.nodes():
        lo, hi = ranges[t.bucket_of(e.id)]
        assert lo <= e.id_int < hi
    assert len(t) + sum(1 for _ in t.replacements()) <= len(set(others) - {own})
