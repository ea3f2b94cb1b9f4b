"""The flood's hot path was made faster without changing what it does
(issue 7, item 6): the same seed still gives the same trace, byte for byte,
as before the work, and each shortcut agrees with the longer way it
replaced."""

from __future__ import annotations

import hashlib
import random
from collections import deque

from peerlab.overlays.gnutella.pongcache import MAX_CACHED_PER_DISTANCE, CachedPong, PongCache
from peerlab.overlays.gnutella.router import MAX_TTL
from peerlab.sim import Simulator
from peerlab.sim.engine import TRACE_BATCH
from peerlab.sim.topology import flood_scenario
from peerlab.wire import gnutella as wire
from peerlab.wire.gnutella import DECODE_MEMO_ENTRIES, QUERY, Query

#: Digests, deliveries and hits of two small floods, measured on the code
#: before the speed work (commit 0bcdce6) with the link compressor of today
#: (``DEFLATE_WBITS`` 10, ``DEFLATE_MEM_LEVEL`` 1, which change the bytes on
#: the wire and so the trace), today's pong-cache refill TTL (a refill set
#: off by a Ping takes the Ping's TTL less one, ``pongcache.refresh_ttl``)
#: and today's wait between fruitless Pings for hosts (doubling up to
#: ``HOST_PING_MAX_INTERVAL``): the speed work must not move them.
PINNED = {
    "pong caching": ("b91d48675401f709d1edbcf78ece6552", 5026, 0),
    "flooded pings": ("5d047b8ba5c6a7b51f380e4bc2b97f75", 1545, 1),
}


def test_flood_traces_are_those_of_the_code_before_the_speed_work() -> None:
    a = flood_scenario(80, 12)
    b = flood_scenario(60, 10, config={"pong_caching": False}, seed=3)
    assert (a.digest, a.deliveries, a.hits) == PINNED["pong caching"]
    assert (b.digest, b.deliveries, b.hits) == PINNED["flooded pings"]


def test_batched_trace_hashing_gives_the_digest_of_the_lines_one_by_one() -> None:
    sim = Simulator(7, trace=True)
    digests = []
    for i in range(2 * TRACE_BATCH + 17):
        sim.now = i * 0.1
        sim.trace(f"10.0.0.{i % 7}", "timer", "" if i % 3 else f"detail {i}")
        if i in (5, TRACE_BATCH, TRACE_BATCH + 1):
            digests.append(sim.trace_digest())  # mid-batch and at its edge
    assert sim.trace_lines is not None
    lines = sim.trace_lines
    assert len(lines) == 2 * TRACE_BATCH + 17
    assert lines[4] == f"{0.4!r} 10.0.0.4 timer \n"
    one_by_one = hashlib.blake2b(digest_size=16)
    for n, line in enumerate(lines, 1):
        one_by_one.update(line.encode())
        if n in (6, TRACE_BATCH + 1, TRACE_BATCH + 2):
            assert one_by_one.hexdigest() == digests.pop(0)
    assert sim.trace_digest() == one_by_one.hexdigest()
    assert sim.trace_digest() == one_by_one.hexdigest()  # asking twice changes nothing


def test_now_text_is_repr_of_now_for_every_time() -> None:
    sim = Simulator(1)
    rng = random.Random(3)
    for _ in range(2000):
        sim.now = rng.choice([rng.random() * 1e4, 0.1 + 0.2, float(rng.randrange(100))])
        assert sim.now_text() == repr(sim.now)
        assert sim.now_text() == repr(sim.now)  # remembered, still right


def _pick_by_whole_lists(
    cache: dict[int, list[CachedPong]], max_distance: int, exclude_link: int, limit: int
) -> list[CachedPong]:
    """The round robin as first written: filter every distance's list whole,
    then take the i-th of each in turn."""
    lists = [
        [c for c in cache.get(d, []) if c.link_id != exclude_link]
        for d in range(1, max_distance + 1)
    ]
    out: list[CachedPong] = []
    seen: set[tuple[str, int]] = set()
    i = 0
    while len(out) < limit and any(i < len(x) for x in lists):
        for x in lists:
            if i < len(x) and x[i].address not in seen and len(out) < limit:
                seen.add(x[i].address)
                out.append(x[i])
        i += 1
    return out


def test_pong_cache_pick_and_add_agree_with_the_plain_way() -> None:
    rng = random.Random(11)
    for _ in range(300):
        cache = PongCache()
        kept: dict[int, list[CachedPong]] = {}
        for _ in range(rng.randrange(0, 120)):
            # Few addresses and links, so duplicates and exclusions are common.
            pong = CachedPong(
                b"p",
                (f"10.0.0.{rng.randrange(12)}", 6346),
                rng.randrange(0, 9),
                rng.randrange(1, 5),
            )
            bucket = kept.setdefault(pong.distance, [])
            fits = (
                1 <= pong.distance <= MAX_TTL
                and len(bucket) < MAX_CACHED_PER_DISTANCE
                and all(c.address != pong.address for c in bucket)
            )
            assert cache.add(pong) is fits
            if fits:
                bucket.append(pong)
        for max_distance in (0, 1, 3, 6, 7):
            for limit in (1, 4, 10):
                exclude = rng.randrange(0, 5)
                assert cache.pick(max_distance, exclude, limit) == _pick_by_whole_lists(
                    kept, max_distance, exclude, limit
                )
        assert len(cache) == sum(len(v) for v in kept.values())


def test_the_decode_memo_forgets_its_oldest_entries_first() -> None:
    memo, order = wire._decode_memo, wire._memo_order
    saved_memo, saved_order = dict(memo), deque(order)
    memo.clear()
    order.clear()
    try:
        payloads = [
            b"\x00\x00" + f"word{i}".encode() + b"\x00" for i in range(DECODE_MEMO_ENTRIES + 5)
        ]
        for p in payloads:
            assert isinstance(wire.decode_payload(QUERY, p), Query)
        assert len(memo) == len(order) == DECODE_MEMO_ENTRIES
        assert list(memo) == list(order)
        assert [(QUERY, p) in memo for p in payloads[:6]] == [False] * 5 + [True]
        again = wire.decode_payload(QUERY, payloads[-1])
        assert again is memo[(QUERY, payloads[-1])]  # a hit: the same object
        assert len(memo) == DECODE_MEMO_ENTRIES
    finally:
        memo.clear()
        order.clear()
        memo.update(saved_memo)
        order.extend(saved_order)
