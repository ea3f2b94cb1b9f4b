"""Roles on a network: promotion of the strongest, leaf guidance, demotion
and re-homing after an ultrapeer dies.  On 127.0.0.1 and in the simulator."""

from __future__ import annotations

from gnetkit import WAIT, Node, close_all, hits_at_least, internal_errors, link, new_node
from upkit import (
    CABLE,
    DSL,
    FAST_POLICY,
    MODEM,
    T1,
    attach,
    auto,
    count,
    files_for,
    leaf,
    ultrapeer,
)


def test_the_strongest_nodes_are_promoted_and_the_rest_attach_as_leaves(world) -> None:  # type: ignore[no-untyped-def]
    speeds = [T1, MODEM, CABLE, DSL, MODEM, T1, DSL, MODEM]
    nodes: list[Node] = []
    first = auto(world, "n0", speeds[0], files_for("n0", ["song"]), target_degree=3)
    nodes.append(first)
    for i, up in enumerate(speeds[1:], 1):
        nodes.append(auto(world, f"n{i}", up, files_for(f"n{i}", ["song"]),
                          target_degree=3, bootstrap=(first.address,)))  # fmt: skip
    strong = [n for n, s in zip(nodes, speeds, strict=True) if s >= 256_000]
    weak = [n for n in nodes if n not in strong]
    try:
        assert all(n.servent.role == "leaf" for n in nodes)  # measured nodes start as leaves

        def settled() -> bool:
            return (
                all(n.servent.role == "ultrapeer" for n in strong)
                and all(n.servent.role == "leaf" and n.servent.ultrapeer_links() for n in weak)
                and sum(len(n.servent.leaf_links()) for n in strong) >= len(weak)
            )

        assert world.run_until(settled, 60.0), [(n.name, n.servent.role) for n in nodes]
        assert all(count(n, "roles.promoted") >= 1 for n in strong)
        assert all(count(n, "roles.promoted") == 0 for n in weak)
        # every weak node is a leaf of a strong one, and routed to by QRP
        assert world.run_until(
            lambda: sum(len(n.servent.tier.leaf_tables) for n in strong) >= len(weak), WAIT
        )
        s = strong[0].servent.search("n3 song")
        assert world.run_until(hits_at_least(s, 1), WAIT)
        assert internal_errors(nodes) == 0
    finally:
        close_all(world, nodes)


def test_leaf_guidance_turns_a_candidate_into_a_leaf(world) -> None:  # type: ignore[no-untyped-def]
    """ultra-peers 3.5: an ultrapeer with ultrapeers enough answers
    X-Ultrapeer-Needed: false; a candidate without leaves becomes its leaf."""
    b = ultrapeer(world, "B", target_degree=1)
    c = ultrapeer(world, "C")
    link(world, c, b)  # B has the one ultrapeer it wants
    a = new_node(world, "A", files_for("a", ["tune"]), role="auto", role_policy=FAST_POLICY)
    nodes = [a, b, c]
    try:
        a.servent.set_capacity(T1)  # measured after start: tiered, still an ultrapeer
        assert a.servent.role == "ultrapeer"
        roles: list[str] = []
        a.servent.on_role_change = roles.append
        assert a.servent.connect(b.address)
        assert world.run_until(lambda: len(b.servent.leaf_links()) == 1, WAIT)
        assert a.servent.role == "leaf" and roles == ["leaf"]
        assert count(a, "roles.demoted") == 1
        assert a.servent.connections()[0].role == "ultrapeer"
        # and it is routed to as a leaf
        assert world.run_until(lambda: len(b.servent.tier.leaf_tables) == 1, WAIT)
        s = c.servent.search("tune")
        assert world.run_until(hits_at_least(s, 1), WAIT)
        assert count(b, "queries.to_leaves") == 1
    finally:
        close_all(world, nodes)


def test_an_ultrapeer_demotes_itself_when_its_measured_bandwidth_drops(world) -> None:  # type: ignore[no-untyped-def]
    up = auto(world, "up", T1)
    lf = leaf(world, "lf", files_for("lf", ["x"]))
    try:
        up.servent.set_capacity(T1, reachable=True)
        up.servent.tier.set_role("ultrapeer", "test")  # as if promoted earlier
        attach(world, lf, up)
        up.servent.set_capacity(MODEM)  # what the owner measures now
        assert world.run_until(lambda: up.servent.role == "leaf", WAIT)
        assert count(up, "roles.demoted") == 1
        # its leaf was dropped (Bye 200) and the servent kept running
        assert world.run_until(lambda: not lf.servent.ultrapeer_links(), WAIT)
        assert up.servent.listening_address is not None
    finally:
        close_all(world, [up, lf])


def test_leaves_rehome_after_their_ultrapeer_dies(world, record_property) -> None:  # type: ignore[no-untyped-def]
    """Kill an ultrapeer with leaves (no Bye: reset connections); each leaf
    dials another ultrapeer it learnt from X-Try-Ultrapeers and is searchable
    again.  The time it takes is recorded (not asserted)."""
    up1 = ultrapeer(world, "up1")
    up2 = ultrapeer(world, "up2")
    searcher = ultrapeer(world, "searcher")
    link(world, up1, up2)
    link(world, searcher, up2)
    leaves = [
        leaf(
            world,
            f"leaf{i}",
            files_for(f"leaf{i}", ["track"]),
            target_degree=1,
            ultrapeers_per_leaf=1,
            maintain_interval=0.25,
        )  # fmt: skip
        for i in range(4)
    ]
    for lf in leaves:
        assert lf.servent.connect(up1.address)
    nodes = [up2, searcher, *leaves]
    try:
        assert world.run_until(lambda: len(up1.servent.tier.leaf_tables) == 4, WAIT)
        # the leaves learnt other ultrapeers from up1's X-Try-Ultrapeers
        assert all(up2.address in lf.servent.host_cache for lf in leaves)
        entry = leaves[0].servent.host_cache.get(up2.address)
        assert entry is not None and entry.ultrapeer
        t0 = up1.runtime.now()
        up1.servent.abort()

        def searchable() -> bool:  # every leaf's table is held by a live ultrapeer
            return sum(len(u.servent.tier.leaf_tables) for u in (up2, searcher)) == 4

        assert world.run_until(searchable, WAIT)
        rehome = up2.runtime.now() - t0
        record_property("rehome_seconds", round(rehome, 3))
        searches = [searcher.servent.search(f"leaf{i} track") for i in range(4)]
        assert world.run_until(lambda: all(s.hits >= 1 for s in searches), WAIT)
        homes = {up2.address, searcher.address}
        assert all(lf.servent.ultrapeer_links()[0].listen_address in homes for lf in leaves)
        assert sum(count(lf, "connections.closed") for lf in leaves) == 4
        assert internal_errors(nodes) == 0
    finally:
        close_all(world, nodes)
