"""The simulator counts a flood exactly as real sockets do (issue 7, Done when).

One small overlay with a cycle, built twice from the same code: the daemon's
``Servent`` on real TCP connections on 127.0.0.1 and on simulated hosts.  A
Ping (classic flooding, pong caching off, so Pongs route back) and a Query
flood it; every servent's message counters must be equal in both worlds,
and equal to the figures worked out by hand below.

The overlay (``a - b``: a link; node 3 starts both floods)::

    3 - 1 - 0 - 2 - 5
        |    \\      |
        4     6 ----+

The Query (TTL 4) goes 3 -> 1 -> {0, 4}; 0 -> {2, 6}; 2 -> 5 and 6 -> 5, so
node 5 gets it twice, TTL spent (one duplicate, forwarded nowhere).  Nodes
4, 2 and 6 share a matching file, node 5 none, so every hit has one way back.
The Ping (TTL 3) stops at 2 and 6.  Every figure here is independent of
which copy of a descriptor arrives first, so the comparison is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.runtime.worlds import RealWorld, SimWorld, World
from peerlab.sim.topology import NO_SHARES, MemoryShares, sim_file

EDGES = [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 5), (6, 0)]
NODES = 7
SHARING = {4, 2, 6}
QUERY_TTL = 4
PING_TTL = 3
#: Real or virtual seconds any step may take, at most.
WAIT = 20.0
#: Counter families compared between the worlds.
COMPARED = ("rx.", "tx.", "routed.", "dup.", "dropped", "queries.answered",
            "hits.delivered", "connections.opened")  # fmt: skip


def build(world: World) -> list[Servent]:
    servents = []
    for i in range(NODES):
        rt = world.new_runtime(f"n{i}")
        shares = MemoryShares([sim_file(1, f"flood test {i}.mp3")]) if i in SHARING else NO_SHARES
        cfg = ServentConfig(listen_host=world.host(rt), listen_port=0, target_degree=0,
                            pong_caching=False)  # fmt: skip
        s = Servent(rt, cfg, shares)
        s.start()
        servents.append(s)
    for a, b in EDGES:
        sa, sb = servents[a], servents[b]
        want = sa.open_count + 1, sb.open_count + 1
        assert sa.connect(sb.address)
        assert world.run_until(
            lambda sa=sa, sb=sb, want=want: sa.open_count >= want[0] and sb.open_count >= want[1],
            WAIT,
        )
    return servents


def quiet(world: World, servents: list[Servent], done: Callable[[], bool]) -> None:
    """Run until ``done()``, then until no descriptor moved for a while."""
    assert world.run_until(done, WAIT)
    last = -1
    for _ in range(50):
        total = sum(s.counters.total("rx.") for s in servents)
        if total == last:
            return
        last = total
        world.run_for(0.2)
    raise AssertionError("the network did not go quiet")


def flood(world: World) -> list[dict[str, int]]:
    servents = build(world)
    quiet(world, servents, lambda: True)
    s = servents[3]
    s.ping(ttl=PING_TTL)
    quiet(world, servents, lambda: servents[6].counters["rx.ping"] >= 2)
    search = s.search("flood test", ttl=QUERY_TTL)
    quiet(world, servents, lambda: search.hits >= len(SHARING))
    counts = [
        {k: v for k, v in sv.counters.snapshot().items() if k.startswith(COMPARED)}
        for sv in servents
    ]
    for sv in servents:
        sv.close()
    world.run_for(0.2)
    return counts


@pytest.fixture
def real_counts() -> list[dict[str, int]]:
    world = RealWorld()
    try:
        return flood(world)
    finally:
        world.close()


def test_flood_counts_equal_on_real_sockets_and_in_the_simulator(
    real_counts: list[dict[str, int]],
) -> None:
    sim = SimWorld(seed=3, latency=0.002)
    try:
        sim_counts = flood(sim)
    finally:
        sim.close()
    for i in range(NODES):
        assert sim_counts[i] == real_counts[i], f"node {i}"

    c = sim_counts
    # The Query: who received it, who forwarded it, the one duplicate.
    assert [c[i].get("rx.query", 0) for i in range(NODES)] == [1, 1, 1, 0, 1, 2, 1]
    assert [c[i].get("routed.query", 0) for i in range(NODES)] == [2, 2, 1, 0, 0, 0, 1]
    assert [c[i].get("dup.query", 0) for i in range(NODES)] == [0, 0, 0, 0, 0, 1, 0]
    assert c[3]["tx.query"] == 1
    # Its hits: answered by 4, 2 and 6, routed back through 0 and 1.
    assert [c[i].get("queries.answered", 0) for i in range(NODES)] == [0, 0, 1, 0, 1, 0, 1]
    assert [c[i].get("routed.query_hit", 0) for i in range(NODES)] == [2, 3, 0, 0, 0, 0, 0]
    assert c[3]["hits.delivered"] == 3
    # The Ping (TTL 3): 1, then 0 and 4, then 2 and 6; each answers with a
    # Pong routed back to 3 (plus every link's TTL-1 handshake Ping, answered
    # by one Pong each way).
    links = [sum(1 for e in EDGES if i in e) for i in range(NODES)]
    flooded = [1, 1, 1, 0, 1, 0, 1]
    assert [c[i].get("rx.ping", 0) for i in range(NODES)] == [
        links[i] + flooded[i] for i in range(NODES)
    ]
    assert c[3]["rx.pong"] == links[3] + 5
    assert [c[i].get("routed.pong", 0) for i in range(NODES)] == [2, 4, 0, 0, 0, 0, 0]
