"""peerlab.sim.topology: random graphs, the network builder, the flood scenario."""

from __future__ import annotations

import random

import pytest

from peerlab.errors import ConfigError
from peerlab.sim import Simulator
from peerlab.sim.topology import (
    LINK_CLASSES,
    GnutellaNetwork,
    MemoryShares,
    flood_scenario,
    line_edges,
    random_edges,
    ring_edges,
    sim_file,
)


def components(n: int, edges: list[tuple[int, int]]) -> int:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    return len({find(i) for i in range(n)})


def test_random_edges_are_connected_simple_and_seeded() -> None:
    edges = random_edges(300, 4, random.Random(5))
    assert len(edges) == 600
    assert all(a != b for a, b in edges)
    assert len({frozenset(e) for e in edges}) == 600
    assert components(300, edges) == 1
    assert edges == random_edges(300, 4, random.Random(5))
    assert edges != random_edges(300, 4, random.Random(6))
    assert line_edges(4) == [(1, 0), (2, 1), (3, 2)]
    assert ring_edges(4) == [(1, 0), (2, 1), (3, 2), (0, 3)]
    with pytest.raises(ConfigError):
        random_edges(0, 4, random.Random(1))


def test_memory_shares_match_every_word() -> None:
    shares = MemoryShares([sim_file(1, "w1 w2.mp3"), sim_file(2, "w2-w3.mp3")])
    assert [f.index for f in shares.search("w2")] == [1, 2]
    assert [f.index for f in shares.search("W3 w2")] == [2]
    assert shares.search("w4") == [] and shares.search("  ") == []
    assert shares.by_urn(sim_file(2, "w2-w3.mp3").urn) == shares.files[1]
    assert shares.count() == 2


def test_a_ring_floods_a_query_to_ttl_and_counts_deliveries() -> None:
    sim = Simulator(9)
    net = GnutellaNetwork(
        sim, 8, link_class=LINK_CLASSES["dsl"],
        shares_of=lambda i: MemoryShares([sim_file(1, f"song {i}.mp3")]),
    )  # fmt: skip
    net.connect(ring_edges(8))
    assert [node.servent.open_count for node in net.nodes] == [2] * 8
    before = net.counter("rx.query")
    net.search(0, "song", ttl=3)
    sim.run(sim.now + 10)
    # TTL 3 both ways round the ring: 3 servents each side receive it once.
    assert net.counter("rx.query") - before == 6
    assert net.counter("queries.answered") == 6
    assert net.nodes[0].servent.counters["hits.delivered"] == 6
    assert net.deliveries() == net.counter("rx.query") + net.counter("rx.query_hit") + sum(
        net.counter(f"rx.{t}") for t in ("ping", "pong", "push", "vendor", "bye", "qrp")
    )
    net.close()


def test_flood_scenario_is_deterministic() -> None:
    a = flood_scenario(60, 10, seed=4)
    b = flood_scenario(60, 10, seed=4)
    c = flood_scenario(60, 10, seed=5)
    assert a == b
    assert a.digest != c.digest
    assert a.deliveries > 10 and a.queries == 10 and a.nodes == 60


def test_a_killed_node_is_cut_off_and_its_neighbours_notice() -> None:
    sim = Simulator(2)
    net = GnutellaNetwork(sim, 4, shares_of=lambda i: MemoryShares([sim_file(1, f"x{i}.mp3")]))
    net.connect(line_edges(4))  # 0 - 1 - 2 - 3
    net.kill(1)
    sim.run(sim.now + 5)
    assert net.alive() == [0, 2, 3]
    assert net.nodes[0].servent.open_count == 0
    assert net.nodes[2].servent.open_count == 1
    before = net.nodes[2].servent.counters["rx.query"]
    net.search(3, "x2", ttl=3)
    sim.run(sim.now + 5)
    assert net.nodes[2].servent.counters["rx.query"] == before + 1
    assert net.nodes[0].servent.counters["rx.query"] == 0
    # Nothing reaches it any more: a new connection to it never opens.
    assert net.nodes[1].address[0] not in sim.routes
    net.nodes[3].servent.connect(net.nodes[1].address)
    sim.run(sim.now + 30)
    assert net.nodes[3].servent.open_count == 1
    assert net.nodes[3].servent.counters["connections.failed"] == 1
    net.close()
