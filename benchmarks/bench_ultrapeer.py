"""Ultrapeers: flat flooding vs the two-tier network (issue 5, Benchmark).

``make bench ONLY=ultrapeer``.  One network, two ways of running it, two worlds:

* the **network**: ``NODES`` servents (1,000 in the simulator, ``REAL_NODES``
  = 200 on real sockets); one in ``UP_EVERY`` (10) is ultrapeer-class and
  connects to ``UP_LINKS`` (4) earlier ultrapeer-class servents at random;
  every other servent connects to ``LEAF_UPS`` (3) random ultrapeer-class
  servents.  Every servent shares ``FILES`` (5) files named with three words
  of a ``WORDS``-word vocabulary (a word is on ~1 % of the servents: rare
  content, the case flooding exists for).  ``QUERIES`` searches for one
  random word each start from random leaf-class servents, ``SPACING``
  seconds apart.
* **flat**: every servent is a flat 0.6 servent on exactly those
  connections; queries flood with TTL ``FLAT_TTL`` (7, the classic default).
* **two-tier**: the ultrapeer-class servents run as ultrapeers, the others as
  their leaves (``role`` set: this bench measures routing, not promotion);
  leaves send QRP tables; a leaf's query goes to its ultrapeers, which run
  dynamic queries (``dynquery``) among ultrapeers and pass it to a leaf only
  when its QRP table matches.

Messages are the Query and Query Hit descriptors every servent sent (the
``tx.query``/``tx.query_hit`` counters), plus the dynamic queries' status
vendor messages in two-tier; the QRP tables sent once at start are reported
apart.  A query is *answered* when its querier got at least one hit.

Figures (simulator, 1,000 servents, unless the key says ``real``):

* ``ultrapeer.msgs_per_answered_query_flat`` / ``..._two_tier``;
* ``ultrapeer.answered_fraction_flat`` / ``..._two_tier``;
* ``ultrapeer.results_per_query_flat`` / ``..._two_tier`` (sources found);
* ``ultrapeer.busiest_node_msgs_per_s``: the busiest servent's query+hit
  descriptors (sent and received) per second of the query phase, two-tier
  (beside: ``ultrapeer.busiest_node_msgs_per_s_flat``);
* ``ultrapeer.real_msgs_per_answered_query_flat`` / ``..._two_tier`` and
  ``ultrapeer.real_answered_fraction_*``: the same at 200 servents on
  127.0.0.1.

The simulator keeps the spec's 2.4 s wait per hop (virtual time); on
127.0.0.1 the wait is ``REAL_WAIT_PER_HOP`` (hits come back in
milliseconds there), which keeps the run short and changes only latency.
``PEERLAB_BENCH_ULTRAPEER_NODES``, ``..._REAL_NODES``, ``..._QUERIES``,
``..._SEED`` change the set-up.  Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gnutella import SharedFileLike, Shares, _clock_of, totals  # noqa: E402

from peerlab.overlays.gnutella.dynquery import DqSettings  # noqa: E402
from peerlab.overlays.gnutella.servent import Servent, ServentConfig  # noqa: E402
from peerlab.runtime.worlds import RealWorld, SimWorld, World  # noqa: E402

NODES = int(os.environ.get("PEERLAB_BENCH_ULTRAPEER_NODES", "1000"))
REAL_NODES = int(os.environ.get("PEERLAB_BENCH_ULTRAPEER_REAL_NODES", "200"))
QUERIES = int(os.environ.get("PEERLAB_BENCH_ULTRAPEER_QUERIES", "100"))
SEED = int(os.environ.get("PEERLAB_BENCH_ULTRAPEER_SEED", "2026"))
UP_EVERY = 10
UP_LINKS = 4
LEAF_UPS = 3
FILES = 5
WORDS = 1500
FLAT_TTL = 7
#: Seconds between two queries (both worlds): queries overlap, as on a network.
SPACING = 0.2
#: Dynamic querying's wait per hop on 127.0.0.1 (the spec's 2.4 s is the
#: Internet's hit latency; loopback brings hits back in milliseconds).
REAL_WAIT_PER_HOP = 0.3
#: Seconds the network may take to open every connection / to send QRP
#: tables / for the last query to finish (real or virtual): bounds.
PHASE_LIMIT = 300.0
#: Hosts each servent knows before it connects (more than the servent's
#: HOSTS_WANTED, so it sends no full-TTL Ping for more).
KNOWN_HOSTS = 32
#: Connections opened at once while building the network.
CONNECT_BATCH = 100
#: The query phase ends this long after the last descriptor moved.
QUIET = 3.0
#: How often a wait looks at its condition (real or virtual seconds).
WAIT_POLL = 0.05
#: How often the quiet check looks (real or virtual seconds).
POLL = 0.5

QUERY_KEYS = ("tx.query", "tx.query_hit")


class Plan:
    """Connections, shares and queries: the same for both modes of a world."""

    def __init__(self, n: int, seed: int) -> None:
        rng = random.Random(seed)
        vocab = [f"w{i:04d}" for i in range(WORDS)]
        self.n = n
        self.ups = [i for i in range(n) if i % UP_EVERY == 0]
        up_set = set(self.ups)
        self.leaves = [i for i in range(n) if i not in up_set]
        self.edges: list[tuple[int, int]] = []
        for k, u in enumerate(self.ups[1:], start=1):
            for v in rng.sample(self.ups[:k], min(UP_LINKS, k)):
                self.edges.append((u, v))
        for leaf in self.leaves:
            for v in rng.sample(self.ups, min(LEAF_UPS, len(self.ups))):
                self.edges.append((leaf, v))
        self.shares = [
            [SharedFileLike(k, " ".join(rng.sample(vocab, 3)) + f" {i}-{k}.mp3", 1000 + k,
                            rng.randbytes(20)) for k in range(FILES)]
            for i in range(n)
        ]  # fmt: skip
        self.queries = [(rng.choice(self.leaves), rng.choice(vocab)) for _ in range(QUERIES)]


class Outcome:
    def __init__(
        self,
        msgs: int,
        answered: int,
        results: int,
        busiest: float,
        busiest_total: int,
        qrp_msgs: int,
        elapsed: float,
        wall: float,
    ) -> None:
        self.msgs, self.answered, self.results = msgs, answered, results
        self.busiest, self.busiest_total = busiest, busiest_total
        self.qrp_msgs, self.elapsed, self.wall = qrp_msgs, elapsed, wall

    @property
    def per_answered(self) -> float:
        return self.msgs / self.answered if self.answered else float("inf")


def config(host: str, role: str | None, dq: DqSettings) -> ServentConfig:
    extra: dict[str, Any] = {}
    if role is not None:
        extra = {"role": role, "max_leaves": 200, "max_ultrapeer_links": 64,
                 "ultrapeers_per_leaf": LEAF_UPS}  # fmt: skip
    return ServentConfig(
        listen_host=host,
        listen_port=0,
        target_degree=0,  # the plan's connections, nothing else
        max_connections=256,
        max_handshakes=256,  # an ultrapeer-class servent takes dozens at once here
        max_query_rate=1e9,  # measure the network, not the per-neighbour limit
        query_burst=1e9,
        flood_bye_drops=None,
        search_ttl=FLAT_TTL,
        keepalive_interval=600.0,
        dynamic_query=dq,
        **extra,
    )


def wait(world: World, pred: Callable[[], bool], limit: float) -> bool:
    """Run until ``pred()`` (looked at every WAIT_POLL seconds, not after
    every event: the predicates here walk a thousand servents), at most
    ``limit`` seconds."""
    clock = _clock_of(world)
    deadline = clock() + limit
    while not pred():
        if clock() >= deadline:
            return False
        world.run_for(WAIT_POLL)
    return True


def query_load(s: Servent) -> int:
    c = s.counters
    return sum(c[k] for k in ("tx.query", "tx.query_hit", "rx.query", "rx.query_hit"))


def run_mode(world: World, plan: Plan, two_tier: bool, dq: DqSettings) -> Outcome:
    clock = _clock_of(world)
    servents: list[Servent] = []
    up_set = set(plan.ups)
    opened = [0]

    def on_connection(_info: object, is_open: bool) -> None:
        opened[0] += 1 if is_open else -1

    for i in range(plan.n):
        rt = world.new_runtime(f"{'t' if two_tier else 'f'}{i}")
        role = ("ultrapeer" if i in up_set else "leaf") if two_tier else None
        s = Servent(rt, config(world.host(rt), role, dq), Shares(plan.shares[i]))
        s.on_connection = on_connection
        s.start()
        servents.append(s)
    # A full host cache: no servent pings the network for hosts (a TTL-7
    # Ping per new connection would flood 1,000 servents while they connect).
    rng = random.Random(SEED)
    wall = servents[0].runtime.wall_time()
    for s in servents:
        others = [servents[j].address for j in rng.sample(range(plan.n), KNOWN_HOSTS)]
        s.host_cache.add_many([a for a in others if a != s.address], seen=wall, source="bench")
    # In batches: hundreds of handshakes at once on one loop would outrun
    # their own timeout on 127.0.0.1 (one process carries every servent).
    for start in range(0, len(plan.edges), CONNECT_BATCH):
        for a, b in plan.edges[start : start + CONNECT_BATCH]:
            servents[a].connect(servents[b].address)
        want = 2 * min(len(plan.edges), start + CONNECT_BATCH)
        ok = wait(world, lambda w=want: opened[0] >= w, PHASE_LIMIT)
        assert ok, f"only {opened[0]} of {want} connection ends opened"
    if two_tier:
        # Every ultrapeer holds a QRP table of each of its leaves.
        def tables_in() -> bool:
            return all(
                len(servents[u].tier.leaf_tables) >= len(servents[u].leaf_links())
                for u in plan.ups
            )

        assert wait(world, tables_in, PHASE_LIMIT), "QRP tables did not arrive"
    world.run_for(1.0)
    before = totals(servents)
    loads0 = [query_load(s) for s in servents]
    searches = []
    pending = list(plan.queries)

    def next_query() -> None:
        if not pending:
            return
        origin, word = pending.pop(0)
        searches.append(servents[origin].search(word, ttl=FLAT_TTL))
        servents[0].runtime.call_later(SPACING, next_query)

    t0 = clock()
    w0 = time.perf_counter()
    servents[0].runtime.call_soon(next_query)
    assert wait(world, lambda: not pending, PHASE_LIMIT)
    # Until every dynamic query ended and nothing moved for QUIET seconds.
    last, seen = clock(), sum(query_load(s) for s in servents)
    deadline = clock() + PHASE_LIMIT
    while clock() < deadline:
        world.run_for(POLL)
        now_seen = sum(query_load(s) for s in servents)
        running = sum(len(s.dq.running()) for s in servents)
        if now_seen != seen or running:
            seen, last = now_seen, clock()
        elif clock() - last >= QUIET:
            break
    elapsed = max(last - t0, 1e-9)
    wall = time.perf_counter() - w0
    after = totals(servents)
    diff = {k: v - before.get(k, 0) for k, v in after.items()}
    msgs = sum(diff.get(k, 0) for k in QUERY_KEYS)
    msgs += diff.get("dq.status_requests", 0) + diff.get("dq.status_answered", 0)
    qrp_msgs = before.get("tx.qrp", 0)
    answered = sum(1 for s in searches if s.hits > 0)
    results = sum(s.sources for s in searches)
    busiest_total = max(query_load(s) - l0 for s, l0 in zip(servents, loads0, strict=True))
    for s in servents:
        s.close()
    world.run_for(0.5)
    return Outcome(
        msgs, answered, results, busiest_total / elapsed, busiest_total, qrp_msgs, elapsed, wall
    )


def compare(world_of: Any, plan: Plan, dq: DqSettings) -> tuple[Outcome, Outcome]:
    out = []
    for two_tier in (False, True):
        gc.collect()
        world = world_of()
        try:
            out.append(run_mode(world, plan, two_tier, dq))
        finally:
            world.close()
    return out[0], out[1]


def describe(bench: Any, label: str, o: Outcome) -> None:
    bench.note(
        f"{label}: {o.msgs} query/hit msgs, {o.answered}/{QUERIES} answered,"
        f" {o.results} results, busiest servent {o.busiest_total} msgs ({o.busiest:.0f}/s),"
        f" {o.elapsed:.1f} s"
        f" ({o.wall:.1f} s wall), QRP msgs at start {o.qrp_msgs}"
    )


def run(bench: Any) -> None:
    sim_plan = Plan(NODES, SEED)
    bench.note(
        f"{NODES} servents ({len(sim_plan.ups)} ultrapeer-class), {len(sim_plan.edges)}"
        f" connections, {QUERIES} queries, flat TTL {FLAT_TTL}, seed {SEED}"
    )
    flat, tier = compare(lambda: SimWorld(seed=SEED, latency=0.02), sim_plan, DqSettings())
    describe(bench, "sim flat", flat)
    describe(bench, "sim two-tier", tier)
    bench.figure("ultrapeer.msgs_per_answered_query_flat", flat.per_answered, "msgs")
    bench.figure("ultrapeer.msgs_per_answered_query_two_tier", tier.per_answered, "msgs",
                 beside=["ultrapeer.msgs_per_answered_query_flat"])  # fmt: skip
    bench.figure("ultrapeer.answered_fraction_flat", flat.answered / QUERIES, "fraction")
    bench.figure("ultrapeer.answered_fraction_two_tier", tier.answered / QUERIES, "fraction",
                 beside=["ultrapeer.answered_fraction_flat"])  # fmt: skip
    bench.figure("ultrapeer.results_per_query_flat", flat.results / QUERIES, "results")
    bench.figure("ultrapeer.results_per_query_two_tier", tier.results / QUERIES, "results",
                 beside=["ultrapeer.results_per_query_flat"])  # fmt: skip
    bench.figure("ultrapeer.busiest_node_msgs_per_s_flat", flat.busiest, "msgs/s")
    bench.figure("ultrapeer.busiest_node_msgs_per_s", tier.busiest, "msgs/s",
                 beside=["ultrapeer.busiest_node_msgs_per_s_flat"])  # fmt: skip

    real_plan = Plan(REAL_NODES, SEED)
    real_dq = DqSettings(wait_per_hop=REAL_WAIT_PER_HOP, probe_extra_per_connection=0.1)
    rflat, rtier = compare(RealWorld, real_plan, real_dq)
    describe(bench, f"real {REAL_NODES} flat", rflat)
    describe(bench, f"real {REAL_NODES} two-tier", rtier)
    bench.figure("ultrapeer.real_msgs_per_answered_query_flat", rflat.per_answered, "msgs")
    bench.figure("ultrapeer.real_msgs_per_answered_query_two_tier", rtier.per_answered, "msgs",
                 beside=["ultrapeer.real_msgs_per_answered_query_flat"])  # fmt: skip
    bench.figure("ultrapeer.real_answered_fraction_flat", rflat.answered / QUERIES, "fraction")
    bench.figure("ultrapeer.real_answered_fraction_two_tier", rtier.answered / QUERIES,
                 "fraction", beside=["ultrapeer.real_answered_fraction_flat"])  # fmt: skip
