"""Two-tier Gnutella roles (issue 5): how fast leaves re-home when their
ultrapeer is killed, and how a network of equals sorts itself into
ultrapeers and leaves.  The ``ultrapeer`` area (bench_ultrapeer.py) compares
message counts of flat and two-tier search; this one measures the roles.

* ``roles.rehome_s_sim`` / ``roles.rehome_s_real``: an ultrapeer with
  ``LEAVES`` leaves is killed (connections reset, no Bye); seconds (virtual /
  real) until every leaf's QRP table is held by a live ultrapeer again, i.e.
  every leaf is searchable again.  Leaves keep one ultrapeer each (the worst
  case: no second link to fall back on) and dial every ``MAINTAIN`` s.
* ``roles.promotion_s_sim``: ``NODES`` servents of the lecture's link classes
  (modem, DSL, cable, T1) start as equal leaves in the simulator, one every
  ``ARRIVAL`` s; virtual seconds from the first start until every weak one
  (modem, DSL) is a leaf under an ultrapeer, with ``MIN_UPTIME`` s of
  required uptime; how many capable ones (cable, T1) the
  network took as ultrapeers is noted (leaf guidance keeps the rest leaves).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "gnutella"), str(HERE.parent / "tests" / "ultrapeer")]

from gnetkit import Node, link, make_world, new_node  # noqa: E402
from upkit import CABLE, DSL, MODEM, T1, files_for  # noqa: E402

from peerlab.overlays.gnutella.roles import RolePolicy  # noqa: E402

LEAVES = 30
NODES = 100
MAINTAIN = 1.0
MIN_UPTIME = 10.0
WAIT = 120.0
#: Seconds between two newcomers (all bootstrap through the first node; a
#: stampede of 100 at once would only measure its handshake limit).
ARRIVAL = 0.5


def rehome(kind: str) -> float:
    world = make_world(kind, seed=11)
    try:
        up1 = new_node(world, "up1", role="ultrapeer", qrp_interval=0.5)
        up2 = new_node(world, "up2", role="ultrapeer", qrp_interval=0.5)
        link(world, up1, up2)
        leaves: list[Node] = []
        for i in range(LEAVES):
            # Leaves joined at different times: their housekeeping rounds are
            # spread over the interval, as on a real network.
            leaves.append(new_node(world, f"leaf{i}", files_for(f"leaf{i}", ["track"]),
                                   role="leaf", target_degree=1, ultrapeers_per_leaf=1,
                                   maintain_interval=MAINTAIN, qrp_interval=0.5))  # fmt: skip
            leaves[-1].servent.connect(up1.address)
            world.run_for(MAINTAIN / LEAVES)
        assert world.run_until(lambda: len(up1.servent.tier.leaf_tables) == LEAVES, WAIT)
        t0, w0 = up2.runtime.now(), time.perf_counter()
        up1.servent.abort()
        ok = world.run_until(lambda: len(up2.servent.tier.leaf_tables) == LEAVES, WAIT)
        assert ok, f"{len(up2.servent.tier.leaf_tables)} of {LEAVES} leaves re-homed"
        took = up2.runtime.now() - t0 if kind == "sim" else time.perf_counter() - w0
        for n in [up2, *leaves]:
            n.servent.close()
        world.run_for(0.2)
        return took
    finally:
        world.close()


def promotion() -> tuple[float, int, int, int, int, int]:
    world = make_world("sim", seed=5)
    policy = RolePolicy(min_uptime=MIN_UPTIME, orphan_grace=5.0, hold=5.0, idle_grace=30.0)
    classes = [MODEM, DSL, CABLE, T1]
    try:
        nodes: list[Node] = []
        speeds: list[float] = []
        for i in range(NODES):
            speed = classes[i % 7 % 4]  # more modems and DSL than cable and T1
            boot = (nodes[0].address,) if nodes else ()
            nodes.append(new_node(world, f"n{i}", files_for(f"n{i}", ["song"]), role="auto",
                                  upload_bps=speed, role_policy=policy, target_degree=4,
                                  busy_retry=5.0, bootstrap=boot))  # fmt: skip
            speeds.append(speed)
            world.run_for(ARRIVAL)
        strong = [n for n, s in zip(nodes, speeds, strict=True) if s >= policy.min_upload_bps]
        weak = [n for n in nodes if n not in strong]

        def settled() -> bool:
            return any(n.servent.role == "ultrapeer" for n in strong) and all(
                n.servent.role == "leaf" and n.servent.ultrapeer_links() for n in weak
            )

        world.run_until(settled, 600.0)
        took = nodes[0].runtime.now()  # from the first node's start
        world.run_for(60.0)  # a minute more: does it stay put?
        ups = sum(n.servent.role == "ultrapeer" for n in strong)
        weak_ups = sum(n.servent.role == "ultrapeer" for n in weak)
        attached = sum(bool(n.servent.ultrapeer_links()) for n in weak)
        return took, ups, len(strong), weak_ups, attached, len(weak)
    finally:
        world.close()


def run(bench: Any) -> None:
    bench.figure("roles.rehome_s_sim", rehome("sim"), "s (virtual)")
    bench.figure("roles.rehome_s_real", rehome("real"), "s", beside=["roles.rehome_s_sim"])
    took, ups, strong, weak_ups, attached, weak = promotion()
    bench.figure("roles.promotion_s_sim", took, "s (virtual)")
    bench.note(
        f"{NODES} nodes: {ups} of {strong} capable nodes are ultrapeers (the others "
        f"were told none is needed), {weak_ups} of {weak} weak nodes are; "
        f"{attached} weak nodes attached as leaves"
    )
