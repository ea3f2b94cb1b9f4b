"""Same seed, same two-tier network: the simulator replays promotion,
attachment and QRP routing to the message."""

from __future__ import annotations

from gnetkit import close_all, make_world
from upkit import CABLE, DSL, MODEM, T1, auto, files_for


def _run(seed: int) -> list[tuple[str, str, dict[str, int]]]:
    world = make_world("sim", seed=seed)
    try:
        speeds = [T1, MODEM, CABLE, DSL, MODEM, T1, DSL, MODEM]
        nodes = [auto(world, "n0", speeds[0], files_for("n0", ["song"]), target_degree=3)]
        for i, up in enumerate(speeds[1:], 1):
            nodes.append(auto(world, f"n{i}", up, files_for(f"n{i}", ["song"]),
                              target_degree=3, bootstrap=(nodes[0].address,)))  # fmt: skip
        world.run_for(20.0)
        for n in nodes[1:4]:
            n.servent.search("song")
        world.run_for(5.0)
        out = [(n.name, n.servent.role, n.servent.counters.snapshot()) for n in nodes]
        close_all(world, nodes)
        return out
    finally:
        world.close()


def test_same_seed_same_two_tier_network() -> None:
    first, second = _run(3), _run(3)
    assert first == second
    assert sum(c.get("queries.to_leaves", 0) for _, _, c in first) > 0
    assert {role for _, role, _ in first} == {"ultrapeer", "leaf"}
