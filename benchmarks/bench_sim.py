"""The simulator's speed and size running real Gnutella servents (issue 7, item 6).

``make bench ONLY=sim``.  Every figure comes from
:func:`peerlab.sim.topology.flood_scenario`: servents (the daemon's own
``Servent`` class, default settings: deflate links, pong caching) on
simulated cable links in a random graph of mean degree 4; 30% share three
files each; queries for random words from random servents at the servents'
default TTL (4), 100 per virtual second.

**A message delivery** is one Gnutella descriptor handed to a servent (a
``DescriptorReceived`` reaching ``Servent._on_descriptor``, what its
``rx.*`` counters count), duplicates included: each is a descriptor the
simulated network carried and a servent parsed and judged.

Figures:

* ``sim.heap_events_per_s`` (reference; ``..._per_cpu_s`` beside it): a bare
  loop of no-op events through the simulator's heap, the ceiling any
  simulated work sits under;
* ``sim.deliveries_per_s``: deliveries during the query phase of a
  ``FLOOD_NODES``-node (2,000) network with ``FLOOD_QUERIES`` (300) queries,
  run in a child process, divided by that phase's wall time
  (``sim.deliveries_per_cpu_s`` beside it: the same over the child's CPU
  time, which other load on the machine does not inflate;
  ``sim.delivery_cpu_us``: its inverse, CPU microseconds per delivery);
* ``sim.flood10k_wall_s``, ``sim.flood10k_peak_mib``: a whole
  ``BIG_NODES``-node (10,000) scenario with ``BIG_QUERIES`` (1,000) queries
  -- hosts, servents, every handshake, then the queries -- run in a child
  process: its wall time and its peak resident memory (``ru_maxrss``);
  beside them its CPU time (which other load on the machine does not
  inflate), its deliveries and the issue's targets (600 s, 4,096 MiB);
* the same with the compiled build (``make fast``: ``.venv-fast``, whose
  flood-path modules mypyc compiled), each run in a ``.venv-fast/bin/python``
  child: ``sim.deliveries_per_s_compiled``, ``sim.delivery_cpu_us_compiled``,
  ``sim.flood10k_wall_s_compiled``, ``sim.flood10k_peak_mib_compiled``; a note
  says whether the compiled run's trace digest equals the pure one's.  Without
  a compiled venv a note says so and only the pure figures are printed.

``PEERLAB_BENCH_SIM_NODES``, ``..._QUERIES``, ``..._BIG_NODES``,
``..._BIG_QUERIES`` change the sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from peerlab.sim import Simulator
from peerlab.sim.topology import flood_scenario

FLOOD_NODES = int(os.environ.get("PEERLAB_BENCH_SIM_NODES", "2000"))
FLOOD_QUERIES = int(os.environ.get("PEERLAB_BENCH_SIM_QUERIES", "300"))
BIG_NODES = int(os.environ.get("PEERLAB_BENCH_SIM_BIG_NODES", "10000"))
BIG_QUERIES = int(os.environ.get("PEERLAB_BENCH_SIM_BIG_QUERIES", "1000"))
#: No-op events in the bare heap loop (a second or so).
HEAP_EVENTS = 1_000_000
#: The issue's targets, printed beside the measurements.
TARGET_WALL_S = 600.0
TARGET_PEAK_MIB = 4096.0
#: The child running the 10,000-node scenario is killed after this long.
BIG_LIMIT_S = 1800.0
#: The compiled build's interpreter (``make fast``).
FAST_PYTHON = Path(__file__).resolve().parents[1] / ".venv-fast" / "bin" / "python"
#: A module the compiled build compiles: its ``__file__`` tells which build ran.
PROBE_MODULE = "peerlab.overlays.gnutella.servent"


def heap_rate() -> tuple[float, float]:
    """No-op events per second through ``Simulator.schedule``/``run``: per
    second of wall time and per second of this process's CPU time."""
    sim = Simulator(0)

    def noop(_: object) -> None:
        return None

    schedule = sim.schedule
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(HEAP_EVENTS):
        schedule(i * 1e-6, noop)
    sim.run()
    return (HEAP_EVENTS / (time.perf_counter() - t0),
            HEAP_EVENTS / max(time.process_time() - c0, 1e-9))  # fmt: skip


def compiled() -> bool:
    """Whether this interpreter runs the compiled build."""
    import importlib

    return str(importlib.import_module(PROBE_MODULE).__file__).endswith(".so")


def flood_child() -> None:
    """A child process: the ``FLOOD_NODES`` figure, a JSON line out."""
    r = flood_scenario(
        FLOOD_NODES, FLOOD_QUERIES, clock=time.perf_counter, cpu_clock=time.process_time
    )
    print(json.dumps({"compiled": compiled(), "deliveries": r.deliveries, "events": r.events,
                      "hits": r.hits, "build": r.build_wall_s, "wall": r.query_wall_s,
                      "cpu": r.query_cpu_s, "digest": r.digest}))  # fmt: skip


def big_child() -> None:
    """The child process: one 10,000-node scenario, a JSON line out."""
    import resource

    t0 = time.perf_counter()
    r = flood_scenario(BIG_NODES, BIG_QUERIES, clock=time.perf_counter)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": time.process_time(), "peak_mib": peak,
                      "deliveries": r.deliveries,
                      "build": r.build_wall_s, "queries": r.query_wall_s,
                      "hits": r.hits, "compiled": compiled()}))  # fmt: skip


def child(python: str, mode: str) -> dict[str, Any]:
    """Run this file as ``python FILE mode`` (outside the source tree's
    ``src``, so ``.venv-fast`` imports its own installed package) and return
    the JSON line it prints."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [python, __file__, mode],
        capture_output=True, text=True, timeout=BIG_LIMIT_S, check=True, env=env,
    )  # fmt: skip
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return got


def run(bench: Any) -> None:
    wall_rate, cpu_rate = heap_rate()
    bench.figure("sim.heap_events_per_cpu_s", cpu_rate, "events/s")
    bench.figure("sim.heap_events_per_s", wall_rate, "events/s",
                 beside=["sim.heap_events_per_cpu_s"])  # fmt: skip

    # In a fresh child, as the compiled run is: in this process, after the
    # heap loop's million events, the same flood took 15% more CPU.
    r = child(sys.executable, "--flood")
    bench.note(
        f"{FLOOD_NODES} nodes: build {r['build']:.1f} s, {FLOOD_QUERIES} queries "
        f"{r['wall']:.1f} s wall, {r['deliveries']} deliveries, {r['events']} events, "
        f"{r['hits']} hits"
    )
    bench.figure("sim.delivery_cpu_us", 1e6 * r["cpu"] / max(r["deliveries"], 1), "us")
    bench.figure("sim.deliveries_per_cpu_s", r["deliveries"] / max(r["cpu"], 1e-9), "msgs/s")
    bench.figure("sim.deliveries_per_s", r["deliveries"] / r["wall"], "msgs/s",
                 beside=["sim.deliveries_per_cpu_s", "sim.heap_events_per_s"])  # fmt: skip

    got = child(sys.executable, "--big")
    bench.note(
        f"{BIG_NODES} nodes: build {got['build']:.1f} s, {BIG_QUERIES} queries "
        f"{got['queries']:.1f} s, {got['deliveries']} deliveries, {got['hits']} hits"
    )
    bench.figure("sim.flood10k_deliveries", got["deliveries"], "msgs")
    bench.figure("sim.flood10k_target_s", TARGET_WALL_S, "s")
    bench.figure("sim.flood10k_cpu_s", got["cpu"], "s")
    bench.figure("sim.flood10k_wall_s", got["wall"], "s",
                 beside=["sim.flood10k_target_s", "sim.flood10k_cpu_s",
                         "sim.flood10k_deliveries"])  # fmt: skip
    bench.figure("sim.flood10k_target_mib", TARGET_PEAK_MIB, "MiB")
    bench.figure("sim.flood10k_peak_mib", got["peak_mib"], "MiB",
                 beside=["sim.flood10k_target_mib"])  # fmt: skip

    run_compiled(bench, r["digest"])


def run_compiled(bench: Any, pure_digest: str) -> None:
    """The same figures with the compiled build, if ``make fast`` built it."""
    if not FAST_PYTHON.exists():
        bench.note(f"no compiled build ({FAST_PYTHON} is missing: `make fast`); pure figures only")
        return
    try:
        fast = child(str(FAST_PYTHON), "--flood")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        bench.note(f"the compiled build failed to run ({exc}; rebuild: `make fast`); skipped")
        return
    if not fast["compiled"]:
        bench.note(f"{FAST_PYTHON} runs uncompiled modules (rebuild: `make fast`); skipped")
        return
    same = "the same digest as" if fast["digest"] == pure_digest else "A DIFFERENT DIGEST FROM"
    bench.note(
        f"compiled, {FLOOD_NODES} nodes: build {fast['build']:.1f} s, {FLOOD_QUERIES} queries "
        f"{fast['wall']:.1f} s wall, {fast['deliveries']} deliveries, {fast['events']} events, "
        f"{fast['hits']} hits; {same} pure Python"
    )
    bench.figure("sim.delivery_cpu_us_compiled", 1e6 * fast["cpu"] / max(fast["deliveries"], 1),
                 "us", beside=["sim.delivery_cpu_us"])  # fmt: skip
    bench.figure("sim.deliveries_per_s_compiled", fast["deliveries"] / fast["wall"], "msgs/s",
                 beside=["sim.deliveries_per_s"])  # fmt: skip

    try:
        big = child(str(FAST_PYTHON), "--big")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        bench.note(f"the compiled {BIG_NODES}-node run failed ({exc}); skipped")
        return
    bench.note(
        f"compiled, {BIG_NODES} nodes: build {big['build']:.1f} s, {BIG_QUERIES} queries "
        f"{big['queries']:.1f} s, {big['deliveries']} deliveries, {big['hits']} hits, "
        f"{big['cpu']:.1f} s of CPU"
    )
    bench.figure("sim.flood10k_wall_s_compiled", big["wall"], "s",
                 beside=["sim.flood10k_wall_s"])  # fmt: skip
    bench.figure("sim.flood10k_peak_mib_compiled", big["peak_mib"], "MiB",
                 beside=["sim.flood10k_peak_mib"])  # fmt: skip


if __name__ == "__main__" and sys.argv[1:] == ["--big"]:
    big_child()
elif __name__ == "__main__" and sys.argv[1:] == ["--flood"]:
    flood_child()
