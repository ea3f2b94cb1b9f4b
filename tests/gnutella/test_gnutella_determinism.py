"""A seeded simulation of servents is a pure function of its seed: run twice,
it gives the same trace digest and the same counters."""

from __future__ import annotations

from gnetkit import WAIT, hits_at_least, make_file, new_node

from peerlab.runtime.worlds import SimWorld


def scenario(seed: int) -> tuple[str, list[dict[str, int]], list[int]]:
    """Twelve servents joining through one known peer each (random choices
    from each host's seeded rng: GUIDs, GWebCache picks), then searches."""
    w = SimWorld(seed=seed, latency=0.01)
    first = new_node(w, "s0", [make_file(1, "lebowski 0.mp3")], target_degree=3)
    nodes = [first]
    for i in range(1, 12):
        known = nodes[(i * 7 + 3) % i]
        nodes.append(
            new_node(
                w,
                f"s{i}",
                [make_file(1, f"lebowski {i}.mp3")],
                bootstrap=(known.address,),
                target_degree=3,
            )  # fmt: skip
        )
    w.run_for(10.0)
    hits = []
    for i, ttl in ((11, 1), (5, 2), (11, 4)):
        s = nodes[i].servent.search("lebowski", ttl=ttl)
        assert w.run_until(hits_at_least(s, 1), WAIT)
        w.run_for(2.0)
        hits.append(s.hits)
    counters = [n.servent.counters.snapshot() for n in nodes]
    for n in nodes:
        n.servent.close()
    w.run_for(1.0)
    return w.sim.trace_digest(), counters, hits


def test_same_seed_same_trace() -> None:
    one = scenario(42)
    two = scenario(42)
    assert one == two
    digest, counters, hits = one
    assert hits[-1] > hits[0], "a larger TTL reaches more of the network"
    assert all(c["connections.opened"] >= 2 for c in counters)
    assert sum(c.get("internal_errors", 0) for c in counters) == 0
