"""Gnutella: a network of servents flooding queries (issue 4, Benchmark).

``make bench ONLY=gnutella``.  One topology, one seed, two worlds:

* **real**: ``NODES`` servents (200) in this process, one event loop, every
  connection a real TCP connection on 127.0.0.1 (deflate on, as servents
  run it);
* **sim**: the same servents, topology and query schedule in the simulator
  (virtual time, 5 ms links).

The topology is a random graph: servent *i* connects to ``LINKS`` (2)
servents chosen at random among those before it (average degree 4, a
connected network).  Every servent shares ``FILES`` (10) files named with
words of a ``WORDS``-word vocabulary.  Then ``QUERIES`` searches for one
random word each, from random servents, with TTL ``TTL`` (4), are started in
bursts of ``BURST`` every 10 ms -- faster than the network can carry them,
so the run measures what it sustains -- and the network runs until no
descriptor moved for ``QUIET`` seconds.

Figures:

* ``gnutella.network_queries_per_s``: queries / (time from the first query
  to the last descriptor), real world;
* ``gnutella.routed_msgs_per_s_per_node``: descriptors forwarded on behalf
  of others (the ``routed.*`` counters) per second per servent, real world;
* ``gnutella.sim_to_real_message_ratio``: Query and Query Hit descriptors
  sent in the simulator / on real sockets, same topology and seed (1.0: the
  same code did the same work);
* ``gnutella.sim_queries_per_s`` (beside): the simulator's own speed at
  running the network, wall-clock.

``PEERLAB_BENCH_GNUTELLA_NODES``, ``..._QUERIES``, ``..._TTL``, ``..._SEED``,
``..._BURST`` change the set-up.  Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections.abc import Callable
from typing import Any

from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.runtime.worlds import RealWorld, SimWorld, World

NODES = int(os.environ.get("PEERLAB_BENCH_GNUTELLA_NODES", "200"))
QUERIES = int(os.environ.get("PEERLAB_BENCH_GNUTELLA_QUERIES", "600"))
TTL = int(os.environ.get("PEERLAB_BENCH_GNUTELLA_TTL", "4"))
SEED = int(os.environ.get("PEERLAB_BENCH_GNUTELLA_SEED", "2026"))
BURST = int(os.environ.get("PEERLAB_BENCH_GNUTELLA_BURST", "20"))
LINKS = 2
FILES = 10
WORDS = 200
TICK = 0.01
#: The network is done when no descriptor moved for this long.
QUIET = 0.3
#: Longest any phase may take (real or virtual seconds).
PHASE_LIMIT = 300.0

SEARCH_KEYS = ("tx.query", "tx.query_hit")


class SharedFileLike:
    """A shared file as the servent reads one (the catalog's fields it uses).

    (No dataclasses in this module: the harness loads it without registering
    it in ``sys.modules``, which dataclasses need.)"""

    __slots__ = ("index", "name", "size", "sha1")

    def __init__(self, index: int, name: str, size: int, sha1: bytes) -> None:
        self.index, self.name, self.size, self.sha1 = index, name, size, sha1


class Shares:
    """A servent's shares in memory: every word of the query in the name."""

    def __init__(self, files: list[SharedFileLike]) -> None:
        self.files = files

    def search(self, text: str, *, limit: int = 100) -> list[SharedFileLike]:
        words = text.lower().split()
        return [f for f in self.files if all(w in f.name.split() for w in words)][:limit]

    def count(self) -> int:
        return len(self.files)

    def total_size(self) -> int:
        return sum(f.size for f in self.files)


class Plan:
    """The topology, the shares and the query schedule: the same in both worlds."""

    def __init__(
        self,
        edges: list[tuple[int, int]],
        shares: list[list[SharedFileLike]],
        queries: list[tuple[int, str]],
    ) -> None:
        self.edges, self.shares, self.queries = edges, shares, queries


def make_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    vocab = [f"w{i:03d}" for i in range(WORDS)]
    edges = []
    for i in range(1, NODES):
        for j in sorted(rng.sample(range(i), min(LINKS, i))):
            edges.append((i, j))
    shares = []
    for i in range(NODES):
        files = []
        for k in range(FILES):
            words = rng.sample(vocab, 3)
            name = " ".join(words) + f" {i}-{k}.mp3"
            files.append(SharedFileLike(k, name, 1000 + k, rng.randbytes(20)))
        shares.append(files)
    queries = [(rng.randrange(NODES), rng.choice(vocab)) for _ in range(QUERIES)]
    return Plan(edges, shares, queries)


def config(host: str) -> ServentConfig:
    return ServentConfig(
        listen_host=host,
        listen_port=0,
        target_degree=0,  # the plan's topology, nothing else
        max_connections=64,
        max_query_rate=1e9,  # measure the network, not the per-neighbour limit
        query_burst=1e9,
        flood_bye_drops=None,
        search_ttl=TTL,
        keepalive_interval=600.0,
    )


class Run:
    """One world's run: seconds from the first query to the last descriptor
    (its own clock), wall seconds, and the counters it moved."""

    def __init__(self, elapsed: float, wall: float, counters: dict[str, int]) -> None:
        self.elapsed, self.wall, self.counters = elapsed, wall, counters


def totals(servents: list[Servent]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in servents:
        for k, v in s.counters.values.items():
            out[k] = out.get(k, 0) + v
    return out


def moved(servents: list[Servent]) -> int:
    return sum(s.counters.total("rx.") for s in servents)


def run_world(world: World, plan: Plan, clock: Callable[[], float]) -> Run:
    servents: list[Servent] = []
    for i in range(NODES):
        rt = world.new_runtime(f"s{i}")
        s = Servent(rt, config(world.host(rt)), Shares(plan.shares[i]))
        s.start()
        servents.append(s)
    for a, b in plan.edges:
        servents[a].connect(servents[b].address)
    want = 2 * len(plan.edges)
    ok = world.run_until(lambda: sum(s.open_count for s in servents) == want, PHASE_LIMIT)
    assert ok, f"only {sum(s.open_count for s in servents)} of {want} connection ends opened"
    settle(world, servents)
    before = totals(servents)
    pending = list(plan.queries)

    def burst() -> None:
        for _ in range(min(BURST, len(pending))):
            origin, word = pending.pop(0)
            servents[origin].search(word, ttl=TTL)
        if pending:
            servents[0].runtime.call_later(TICK, burst)

    t0 = clock()
    w0 = time.perf_counter()
    servents[0].runtime.call_soon(burst)
    assert world.run_until(lambda: not pending, PHASE_LIMIT)
    settle(world, servents)
    elapsed = last_activity[0] - t0
    wall = time.perf_counter() - w0
    after = totals(servents)
    diff = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    for s in servents:
        s.close()
    world.run_for(0.5)
    return Run(elapsed, wall, diff)


last_activity = [0.0]


def settle(world: World, servents: list[Servent]) -> None:
    """Run until no descriptor moved for QUIET seconds; note when the last one did."""
    clock = _clock_of(world)
    seen = moved(servents)
    last_activity[0] = clock()
    deadline = clock() + PHASE_LIMIT
    while clock() < deadline:
        world.run_for(QUIET / 3)
        now_moved = moved(servents)
        if now_moved != seen:
            seen = now_moved
            last_activity[0] = clock()
        elif clock() - last_activity[0] >= QUIET:
            return


def _clock_of(world: World) -> Callable[[], float]:
    if isinstance(world, SimWorld):
        sim = world.sim
        return lambda: sim.now
    assert isinstance(world, RealWorld)
    loop = world.loop
    return loop.time


def search_messages(counters: dict[str, int]) -> int:
    return sum(counters.get(k, 0) for k in SEARCH_KEYS)


def run(bench: Any) -> None:
    plan = make_plan(SEED)
    bench.note(
        f"{NODES} servents, {len(plan.edges)} connections, {QUERIES} queries with TTL {TTL},"
        f" seed {SEED}"
    )
    gc.collect()
    real_world = RealWorld()
    try:
        real = run_world(real_world, plan, _clock_of(real_world))
    finally:
        real_world.close()
    gc.collect()
    sim_world = SimWorld(seed=SEED, latency=0.005)
    sim = run_world(sim_world, plan, _clock_of(sim_world))
    real_msgs = search_messages(real.counters)
    sim_msgs = search_messages(sim.counters)
    routed = sum(v for k, v in real.counters.items() if k.startswith("routed."))
    bench.note(
        f"real: {real.elapsed:.2f} s, {real_msgs} query+hit descriptors sent,"
        f" {routed} routed, {real.counters.get('hits.delivered', 0)} hits delivered,"
        f" {real.counters.get('flow_dropped.query', 0)} queries shed by flow control"
    )
    bench.note(
        f"sim: {sim.elapsed:.2f} virtual s in {sim.wall:.2f} wall s, {sim_msgs} query+hit"
        f" descriptors, {sim.counters.get('hits.delivered', 0)} hits delivered"
    )
    bench.figure("gnutella.network_queries_per_s", QUERIES / real.elapsed, "queries/s")
    bench.figure(
        "gnutella.routed_msgs_per_s_per_node", routed / real.elapsed / NODES, "msgs/s/servent"
    )
    bench.figure("gnutella.sim_queries_per_s", QUERIES / sim.wall, "queries/s (wall)")
    bench.figure(
        "gnutella.sim_to_real_message_ratio",
        sim_msgs / real_msgs if real_msgs else 0.0,
        "sim/real",
        beside=["gnutella.network_queries_per_s"],
    )
