"""Resilience experiment (issue 7, item 3): random failures against targeted
attacks.

One network per architecture and strategy.  Nodes are removed in steps up
to each fraction of ``[resilience] fractions`` (cumulative: 0, 5%, 10%...
of every node, index servers included), either chosen at random or by
importance: at each step the nodes with the most live overlay links go
first -- in Napster that is the index server (every online user's one
link), then the farm's other server once its users failed over to it; in
Gnutella the hubs.  After each step the network gets ``recover`` virtual
seconds (fail-over, Byes), then a fresh workload from surviving peers
measures the fraction of queries answered (of those whose file a surviving
peer shares) and the largest connected part of the overlay, in peers, as a
fraction of the original population.

Random removal is drawn ``trials`` times (different victims, a network of
its own each) and the figures average them; every trial is a row of the
CSV.  Removal is a process kill (``GnutellaNet.kill`` / ``NapsterNet.kill_server``):
the node's connections close, nothing listens there any more; nodes do not
come back (churn and healing are :mod:`peerlab.simulate.churn`).  The flat
overlay is static here (``target_degree`` 0): what survives is the wiring
the attack left.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peerlab.errors import ConfigError
from peerlab.sim import Simulator, derive_seed
from peerlab.simulate.base import ExperimentReport, Figure, Progress
from peerlab.simulate.measure import combine_digests, md_table, plot, run_queries, write_csv
from peerlab.simulate.nets import GnutellaNet, NapsterNet, build_net
from peerlab.simulate.population import build_population, build_queries, largest_component
from peerlab.simulate.scenario import (
    Scenario,
    config_scenario,
    experiment_nodes,
    get_float,
    get_int,
)
from peerlab.simulate.search import SETTLE, TABLE_TTL, two_tier_available

ARCHITECTURES = ("napster", "napster-farm", "gnutella", "two-tier")
#: The keys of ``[resilience]`` (the engine refuses any other).
KEYS = ("architectures", "fractions", "ttl", "recover", "nodes", "trials")
#: Most random trials per fraction, and most seconds to wait for a network to recover.
MAX_TRIALS = 100
MAX_RECOVER = 3_600.0
STRATEGIES = ("random", "targeted")
DEFAULT_FRACTIONS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5)
#: Virtual seconds after a removal step before measuring (fail-over, Byes).
RECOVER = 10.0
#: Random removals drawn per architecture (their figures are averaged): a
#: single draw may or may not hit the one index server.
TRIALS = 3
#: The removed fraction the comparison table quotes.
TABLE_FRACTION = 0.1

Net = GnutellaNet | NapsterNet


def _settings(config: Mapping[str, Any]) -> tuple[list[str], list[float], int, float]:
    archs = config.get("architectures", list(ARCHITECTURES))
    if not isinstance(archs, list) or not all(a in ARCHITECTURES for a in archs):
        raise ConfigError(f"resilience.architectures: each one of {', '.join(ARCHITECTURES)}")
    fr = config.get("fractions", list(DEFAULT_FRACTIONS))
    if (
        not isinstance(fr, list)
        or not fr
        or not all(
            isinstance(f, int | float) and not isinstance(f, bool) and 0 <= f < 1 for f in fr
        )
    ):
        raise ConfigError("resilience.fractions: a list of fractions in [0, 1)")
    ttl = get_int(config, "ttl", TABLE_TTL, "resilience", low=1, high=7)
    recover = get_float(config, "recover", RECOVER, "resilience", low=0.0, high=MAX_RECOVER)
    return list(archs), sorted(float(f) for f in fr), ttl, recover


def _nodes(net: Net) -> list[int]:
    """Every live node: peers by index, index servers as -1, -2, ..."""
    out = sorted(net.alive)
    if isinstance(net, NapsterNet):
        out.extend(-1 - k for k in sorted(net.servers_alive))
    return out


def _remove(net: Net, v: int) -> None:
    if v < 0 and isinstance(net, NapsterNet):
        net.kill_server(-1 - v)
    else:
        net.kill(v)


def _victims(net: Net, strategy: str, k: int, rng: random.Random) -> list[int]:
    nodes = _nodes(net)
    if strategy == "random":
        return rng.sample(nodes, min(k, len(nodes)))
    degree: Counter[int] = Counter()
    for a, b in net.edges():
        degree[a] += 1
        degree[b] += 1
    return sorted(nodes, key=lambda v: (-degree[v], v))[:k]


def _size(config: Mapping[str, Any], sc: Scenario) -> tuple[int, int]:
    """The network's size (default: the scenario's largest) and the random trials."""
    n = experiment_nodes(config, sc, "resilience")
    return n, get_int(config, "trials", TRIALS, "resilience", low=1, high=MAX_TRIALS)


def check(config: Mapping[str, Any]) -> None:
    """Refuse bad ``[resilience]`` settings before anything runs."""
    _settings(config)
    _size(config, config_scenario(config))


def run(config: Mapping[str, Any], seed: int, out: Path, progress: Progress) -> ExperimentReport:
    """The resilience experiment (see the module docstring)."""
    sc = config_scenario(config)
    archs, fractions, ttl, recover = _settings(config)
    skipped = []
    if "two-tier" in archs and not two_tier_available():
        archs.remove("two-tier")
        skipped.append("two-tier (the servent has no ultrapeer/leaf roles in this build)")
    n, trials = _size(config, sc)
    pop = build_population(sc, n, seed)
    qs = sc.queries
    rows: list[dict[str, Any]] = []
    digests = []
    runs = [(a, s, t) for a in archs for s in STRATEGIES
            for t in range(trials if s == "random" else 1)]  # fmt: skip
    for step, (arch, strategy, trial) in enumerate(runs):
        progress(f"resilience: {arch}, {strategy}", step / len(runs))
        tag = (arch, strategy) if trial == 0 else (arch, strategy, str(trial))
        sim = Simulator(derive_seed(seed, "resilience", *tag))
        rng = random.Random(derive_seed(seed, "victims", *tag))
        net = build_net(arch, sim, pop, seed=seed)
        if not net.wait_connected():
            raise ConfigError(f"resilience: the {arch} network of {n} nodes did not come up")
        sim.run(sim.now + SETTLE)
        total = len(_nodes(net))
        removed = 0
        for f in fractions:
            want = round(f * total)
            if want > removed:
                for v in _victims(net, strategy, want - removed, rng):
                    _remove(net, v)
                removed = want
                sim.run(sim.now + recover)
            queries = build_queries(sc, pop, seed, f"{arch}/{strategy}/{f}", origins=net.alive)
            m = run_queries(net, queries, ttl=ttl, interval=qs.interval, wait=qs.wait)
            lcc = largest_component(_nodes(net), net.edges(), peers_only=True)
            rows.append({
                "nodes": n, "architecture": arch, "strategy": strategy, "trial": trial,
                "removed_fraction": f, "removed": removed, "alive_peers": len(net.alive),
                "answered_fraction": m.answered_fraction, "answered_of_all": m.answered_of_all,
                "lcc_fraction": lcc / n, "messages_per_query": m.messages_per_query,
            })  # fmt: skip
        digests.append(sim.trace_digest())
    progress("resilience: writing", 1.0)
    csv_path = write_csv(out / "resilience.csv", rows)
    rows = _means(rows)
    command = str(config.get("_command", f"peerlab simulate {sc.source or sc.name} --seed {seed}"))
    figures = _figures(rows, out, command, n)
    table = _table(rows)
    md = (
        f"Scenario `{sc.name}`, {n} peers, TTL {ttl} for flooding. Removal is cumulative; "
        f"random removal is the mean of {trials} draws (each in the CSV); "
        "`targeted` removes the nodes with the most live links first (the index server, "
        "the hubs); `lcc_fraction` is the largest connected part of the live overlay, in "
        "peers, over the original population.\n\n" + md_table(rows)
    )
    if skipped:
        md += "\nNot measured: " + "; ".join(skipped) + ".\n"
    return ExperimentReport(
        name="resilience",
        title="Resilience: random failures and targeted attacks",
        rows=table,
        markdown=md,
        figures=figures,
        csv=[csv_path],
        trace_digest=combine_digests(digests),
    )


def _means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per architecture, strategy and fraction: the trials' mean."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["architecture"], r["strategy"], r["removed_fraction"]), []).append(r)
    out = []
    for rs in groups.values():
        row = {k: v for k, v in rs[0].items() if k != "trial"}
        row["trials"] = len(rs)
        for key in ("alive_peers", "answered_fraction", "answered_of_all", "lcc_fraction",
                    "messages_per_query"):  # fmt: skip
            row[key] = sum(r[key] for r in rs) / len(rs)
        out.append(row)
    return out


def _at(rows: list[dict[str, Any]], arch: str, strategy: str, f: float) -> dict[str, Any] | None:
    mine = [r for r in rows if r["architecture"] == arch and r["strategy"] == strategy]
    if not mine:
        return None
    return min(mine, key=lambda r: (abs(r["removed_fraction"] - f), r["removed_fraction"]))


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for arch in ARCHITECTURES:
        rnd = _at(rows, arch, "random", TABLE_FRACTION)
        tgt = _at(rows, arch, "targeted", TABLE_FRACTION)
        if rnd is None or tgt is None:
            continue
        out.append({
            "architecture": arch,
            "removed": rnd["removed_fraction"],
            "answered, random": rnd["answered_fraction"],
            "answered, targeted": tgt["answered_fraction"],
            "largest part, random": rnd["lcc_fraction"],
            "largest part, targeted": tgt["lcc_fraction"],
        })  # fmt: skip
    return out


def _figures(rows: list[dict[str, Any]], out: Path, command: str, n: int) -> list[Figure]:
    figs = []
    for key, name, what in (
        ("answered_fraction", "resilience_answered.png", "fraction of queries answered"),
        ("lcc_fraction", "resilience_lcc.png", "largest connected part (of all peers)"),
    ):

        def draw(ax: Any, key: str = key) -> None:
            for arch in ARCHITECTURES:
                for strategy, style in (("random", "--"), ("targeted", "-")):
                    rs = [r for r in rows if r["architecture"] == arch
                          and r["strategy"] == strategy]  # fmt: skip
                    if rs:
                        ax.plot([r["removed_fraction"] for r in rs], [r[key] for r in rs],
                                style, marker="o", label=f"{arch}, {strategy}")  # fmt: skip

        p = plot(out / name, draw, title=f"{what.capitalize()} as nodes are removed ({n} peers)",
                 xlabel="fraction of nodes removed", ylabel=what)  # fmt: skip
        caption = (f"{what.capitalize()} against the fraction of nodes removed, "
                   "at random (dashed) and by importance (solid).")  # fmt: skip
        figs.append(Figure(p, caption, command))
    return figs
