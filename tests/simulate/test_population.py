"""Peers, files and overlays drawn from the seed."""

from __future__ import annotations

from collections import Counter

from peerlab.sim.topology import MemoryShares
from peerlab.simulate.population import (
    MAX_DEGREE,
    build_overlay,
    build_population,
    build_queries,
    by_degree,
    largest_component,
)
from peerlab.simulate.scenario import parse_scenario


def scenario(**population: object):  # type: ignore[no-untyped-def]
    return parse_scenario({"experiments": ["search"], "population": population,
                           "files": {"catalog": 100, "per_sharer": 5, "zipf": 1.0},
                           "topology": {"kind": "preferential", "degree": 4}})  # fmt: skip


def test_same_seed_same_population_other_seed_other() -> None:
    sc = scenario()
    a, b = build_population(sc, 200, 3), build_population(sc, 200, 3)
    c = build_population(sc, 200, 4)
    assert a == b
    assert a != c


def test_free_riders_share_nothing_and_the_others_their_quota() -> None:
    sc = scenario(free_riders=0.7)
    pop = build_population(sc, 200, 1)
    free = [p for p in pop.peers if p.free_rider]
    assert len(free) == 140
    assert all(not p.files for p in free)
    assert all(len(p.files) == 5 and len({f.rank for f in p.files}) == 5
               for p in pop.peers if not p.free_rider)  # fmt: skip


def test_zipf_popular_files_are_shared_and_asked_for_more() -> None:
    sc = scenario(free_riders=0.0)
    pop = build_population(sc, 400, 1)
    held = Counter(f.rank for p in pop.peers for f in p.files)
    assert held[0] > held[10] > held[90]
    asked = Counter(q.rank for q in build_queries(sc, pop, 1, count=2000))
    assert asked[0] > 5 * asked[50]


def test_a_query_matches_exactly_the_copies_of_its_file() -> None:
    sc = scenario(free_riders=0.0)
    pop = build_population(sc, 50, 1)
    q = build_queries(sc, pop, 1, count=1)[0]
    holders = pop.holders(q.rank)
    for p in pop.peers:
        found = MemoryShares(p.files).search(q.text)
        assert (p.index in holders) == bool(found)
        assert all(f.rank == q.rank for f in found)


def test_overlays_connected_and_capped() -> None:
    import random

    for kind in ("random", "preferential"):
        edges = build_overlay(kind, 2000, 4, random.Random(9))
        assert largest_component(range(2000), edges) == 2000
        deg = Counter(v for e in edges for v in e)
        assert max(deg.values()) <= MAX_DEGREE + 2
        assert len(edges) == 2 * 1999 - 1
    pref = Counter(v for e in build_overlay("preferential", 2000, 4, random.Random(9)) for v in e)
    rnd = Counter(v for e in build_overlay("random", 2000, 4, random.Random(9)) for v in e)
    assert max(pref.values()) > max(rnd.values())  # hubs


def test_largest_component_and_degree_ranking() -> None:
    edges = [(0, 1), (1, 2), (3, 4), (-1, 5), (-1, 6)]
    assert largest_component(range(7), edges) == 3
    assert largest_component([-1, *range(7)], edges) == 3
    assert largest_component([-1, *range(7)], edges, peers_only=True) == 3
    assert largest_component([0, 2, 3, 4], edges) == 2  # 1 is gone: 0 and 2 apart
    assert by_degree(5, [(0, 1), (1, 2), (1, 3), (3, 4)])[:2] == [1, 3]
