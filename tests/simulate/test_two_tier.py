"""Two-tier search in the simulator (runs once the servent has roles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerlab.sim import Simulator
from peerlab.simulate.measure import run_queries
from peerlab.simulate.nets import ULTRAPEER_FRACTION, GnutellaNet, build_net
from peerlab.simulate.population import (
    LEAVES_PER_ULTRAPEER,
    ULTRAPEERS_PER_LEAF,
    build_population,
    build_queries,
    build_tiers,
)
from peerlab.simulate.scenario import load_scenario
from peerlab.simulate.search import two_tier_available


def test_tiers_fastest_uplinks_and_leaf_links(tiny: Path) -> None:
    sc = load_scenario(str(tiny))
    pop = build_population(sc, 120, 1)
    tiers = build_tiers(pop, fraction=ULTRAPEER_FRACTION, degree=6, seed=1)
    ups = tiers.ultrapeers
    assert len(ups) >= 120 * ULTRAPEERS_PER_LEAF / LEAVES_PER_ULTRAPEER
    slowest_up = min(pop.peers[u].link.up for u in ups)
    assert all(pop.peers[i].link.up <= slowest_up for i in range(120) if i not in ups)
    per_leaf: dict[int, int] = {}
    per_up: dict[int, int] = {}
    for a, b in tiers.edges:
        if a not in ups:
            assert b in ups
            per_leaf[a] = per_leaf.get(a, 0) + 1
            per_up[b] = per_up.get(b, 0) + 1
    assert set(per_leaf.values()) == {ULTRAPEERS_PER_LEAF} and len(per_leaf) == 120 - len(ups)
    assert max(per_up.values()) <= LEAVES_PER_ULTRAPEER


@pytest.mark.skipif(not two_tier_available(), reason="the servent has no ultrapeer roles yet")
def test_two_tier_answers_and_spares_the_leaves(tiny: Path) -> None:
    """Every query answered, and the leaves see only the queries their QRP
    tables match: a free rider's table is empty, so it sees a small part of
    what the same peer sees when flooded."""
    sc = load_scenario(str(tiny))
    pop = build_population(sc, 80, 2)
    queries = build_queries(sc, pop, 2, count=15)
    got = {}
    leaf_queries = {}
    leaves: set[int] = set()
    for arch in ("gnutella", "two-tier"):
        sim = Simulator(3)
        net = build_net(arch, sim, pop, seed=2)
        assert isinstance(net, GnutellaNet)
        assert net.wait_connected()
        sim.run(sim.now + 5)
        got[arch] = run_queries(net, queries, ttl=3, interval=0.05, wait=5)
        if arch == "two-tier":
            assert net.tiers is not None
            for i, s in enumerate(net.servents):
                assert s is not None
                assert s.role == ("ultrapeer" if i in net.tiers.ultrapeers else "leaf")
            assert sum(s.counters["internal_errors"] for s in net.servents if s) == 0
            assert sum(s.counters["queries.leaf_blocked"] for s in net.servents if s) > 0
            leaves = {i for i in range(80) if i not in net.tiers.ultrapeers
                      and pop.peers[i].free_rider}  # fmt: skip
        leaf_queries[arch] = net.servents
    flat, two = got["gnutella"], got["two-tier"]
    assert two.answered_fraction >= flat.answered_fraction
    assert two.answered_fraction == 1.0

    def rx(arch: str) -> int:
        return sum(s.counters["rx.query"] for i, s in enumerate(leaf_queries[arch])
                   if s is not None and i in leaves)  # fmt: skip

    assert rx("two-tier") * 5 < rx("gnutella")
