"""Healing under churn (issue 7, item 3): how quickly each architecture
recovers from the scenario's events while peers come and go.

Every peer alternates sessions online (length drawn from ``[churn]
session``: exponential, pareto (shape 2) or fixed, mean ``mean_session``)
and time away (exponential, mean ``mean_offline``).  A peer leaving closes
its node (Bye / logout); coming back it starts a new one: a servent
bootstrapping from three online peers (what a GWebCache would hand it) and
keeping ``topology.degree`` connections itself, or a Napster client logging
in again.  The scenario's ``[[events]]`` strike on top: ``index-server``
(Napster's servers, one per count), ``top-degree`` (the nodes with the most
live links), ``random``; a node an event killed stays dead; an event with ``on = [...]`` strikes
only the architectures it names.

Every ``sample`` seconds the run records the online peers, the largest
connected part of the live overlay as a fraction of the online peers, and
sends ``per_sample`` queries from random online peers; their answered
fraction (of the queries whose file another online peer shares) is that
sample's.  Samples fall at exact multiples of ``sample`` after the start, and
the events due at a sample's instant strike before it is taken: the sample
at an event's time is the first to see the damage.  The heal time of an
event is the time from it until the largest part is back to 90% of its mean
over the samples before it, once it fell below that (0: it never did, at
the sampling's resolution).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peerlab.errors import ConfigError
from peerlab.sim import Simulator, derive_seed
from peerlab.simulate.base import ExperimentReport, Figure, Progress
from peerlab.simulate.measure import combine_digests, md_table, plot, write_csv
from peerlab.simulate.nets import GnutellaNet, NapsterNet, Probe, build_net
from peerlab.simulate.population import build_population, build_queries, largest_component
from peerlab.simulate.resilience import Net, _nodes, _remove, _victims
from peerlab.simulate.scenario import (
    MAX_DURATION,
    TABLE_KEYS,
    Churn,
    Event,
    config_scenario,
    experiment_nodes,
    get_float,
    get_int,
)
from peerlab.simulate.search import SETTLE, TABLE_TTL, two_tier_available

ARCHITECTURES = ("napster", "napster-farm", "gnutella", "two-tier")
#: The keys of ``[churn]``: the scenario's churn model and this experiment's
#: own settings (the engine refuses any other).
KEYS = (*TABLE_KEYS["churn"], "architectures", "sample", "per_sample", "ttl", "nodes")
#: The shortest interval between two samples, seconds, and most queries a sample.
MIN_SAMPLE = 0.1
MAX_PER_SAMPLE = 1_000
#: Seconds between two samples.
SAMPLE = 5.0
#: Queries sent per sample.
PER_SAMPLE = 10
#: Peers a rejoining servent is told about (a GWebCache answer's worth).
BOOTSTRAP_HOSTS = 3
#: Recovered: the largest part back to this share of its level before the event.
HEALED = 0.9
#: Pareto shape for session lengths (heavy-tailed, finite mean): Gnutella
#: session measurements (Saroiu et al.) show most sessions short, a few long.
PARETO_SHAPE = 2.0


def session_length(churn: Churn, rng: random.Random) -> float:
    """One online session's length, seconds."""
    if churn.session == "fixed":
        return churn.mean_session
    if churn.session == "pareto":
        scale = churn.mean_session * (PARETO_SHAPE - 1) / PARETO_SHAPE
        return scale * rng.paretovariate(PARETO_SHAPE)
    return rng.expovariate(1.0 / churn.mean_session)


class ChurnRun:
    """One architecture under churn and events."""

    def __init__(self, net: Net, churn: Churn, rng: random.Random, degree_note: str) -> None:
        self.net = net
        self.sim = net.sim
        self.churn = churn
        self.rng = rng
        self.dead: set[int] = set()
        self.notes: list[str] = []
        self.arch = degree_note

    def start(self) -> None:
        for i in sorted(self.net.alive):
            self.sim.schedule(self.sim.now + session_length(self.churn, self.rng), self._leave, i)

    def _leave(self, i: int) -> None:
        if i in self.dead or i not in self.net.alive:
            return
        self.net.kill(i)
        away = self.rng.expovariate(1.0 / self.churn.mean_offline)
        self.sim.schedule(self.sim.now + away, self._return, i)

    def _return(self, i: int) -> None:
        if i in self.dead:
            return
        net = self.net
        if isinstance(net, GnutellaNet):
            online = sorted(net.alive)
            picks = self.rng.sample(online, min(BOOTSTRAP_HOSTS, len(online)))
            net.join(i, [net.network.nodes[j].address for j in picks])
        else:
            net.join(i)
        self.sim.schedule(self.sim.now + session_length(self.churn, self.rng), self._leave, i)

    def strike(self, ev: Event) -> None:
        net = self.net
        if ev.kill == "index-server":
            if not isinstance(net, NapsterNet):
                self.notes.append(f"at {ev.at:g} s: no index server to kill")
                return
            for k in sorted(net.servers_alive)[: ev.count]:
                net.kill_server(k)
            return
        if ev.kill == "ultrapeers" and isinstance(net, GnutellaNet) and net.tiers is not None:
            degree = Counter(v for e in net.edges() for v in e)
            ups = sorted((u for u in net.tiers.ultrapeers if u in net.alive),
                         key=lambda u: (-degree[u], u))  # fmt: skip
            for u in ups[: ev.count]:
                self.dead.add(u)
                net.kill(u)
            return
        if ev.kill in ("ultrapeers", "seed"):
            self.notes.append(f"at {ev.at:g} s: no {ev.kill} in this architecture")
            return
        strategy = "random" if ev.kill == "random" else "targeted"
        for v in _victims(net, strategy, ev.count, self.rng):
            if v >= 0:
                self.dead.add(v)
            _remove(net, v)


def _settings(config: Mapping[str, Any]) -> tuple[list[str], float, int, int]:
    archs = config.get("architectures", list(ARCHITECTURES))
    if not isinstance(archs, list) or not all(a in ARCHITECTURES for a in archs):
        raise ConfigError(f"churn.architectures: each one of {', '.join(ARCHITECTURES)}")
    sample = get_float(config, "sample", SAMPLE, "churn", low=MIN_SAMPLE, high=MAX_DURATION)
    per = get_int(config, "per_sample", PER_SAMPLE, "churn", low=0, high=MAX_PER_SAMPLE)
    ttl = get_int(config, "ttl", TABLE_TTL, "churn", low=1, high=7)
    return list(archs), sample, per, ttl


def check(config: Mapping[str, Any]) -> None:
    """Refuse bad ``[churn]`` settings before anything runs."""
    _settings(config)
    experiment_nodes(config, config_scenario(config), "churn")


def run(config: Mapping[str, Any], seed: int, out: Path, progress: Progress) -> ExperimentReport:
    """The churn experiment (see the module docstring)."""
    sc = config_scenario(config)
    archs, sample, per, ttl = _settings(config)
    notes: list[str] = []
    if "two-tier" in archs and not two_tier_available():
        archs.remove("two-tier")
        notes.append("two-tier: not measured (the servent has no ultrapeer/leaf roles here)")
    n = experiment_nodes(config, sc, "churn")
    pop = build_population(sc, n, seed)
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    digests = []
    for a, arch in enumerate(archs):
        sim = Simulator(derive_seed(seed, "churn", arch))
        net = build_net(arch, sim, pop, seed=seed, heal=sc.topology.degree)
        if not net.wait_connected():
            raise ConfigError(f"churn: the {arch} network of {n} nodes did not come up")
        sim.run(sim.now + SETTLE)
        t0 = sim.now
        cr = ChurnRun(net, sc.churn, random.Random(derive_seed(seed, "churn-rng", arch)), arch)
        cr.start()
        events = tuple(ev for ev in sc.events if not ev.on or arch in ev.on)
        for ev in events:
            sim.schedule(t0 + ev.at, _strike(cr, ev))
        probes: list[tuple[int, Probe, bool]] = []
        ticks = int(sc.churn.duration // sample)
        series = []
        for k in range(ticks + 1):
            progress(f"churn: {arch}", (a + k / max(ticks, 1)) / len(archs))
            alive = set(net.alive)
            lcc = largest_component(_nodes(net), net.edges(), peers_only=True)
            qs = build_queries(sc, pop, seed, f"churn/{arch}/{k}", count=per, origins=alive)
            for q in qs:
                ok = any(h != q.origin for h in pop.holders(q.rank, alive))
                probes.append((k, net.query(q, ttl), ok))
            series.append((k, sim.now - t0, len(alive), lcc / max(len(alive), 1)))
            # t0 + k * sample, not a sum of steps: sample k and an event at
            # k * sample fall on the same instant (the event first).
            sim.run(t0 + (k + 1) * sample)
        sim.run(sim.now + sc.queries.wait)
        for k, t, online, lcc_f in series:
            mine = [p for kk, p, ok in probes if kk == k and ok]
            answered = sum(p.answered for p in mine) / len(mine) if mine else float("nan")
            rows.append({"architecture": arch, "time_s": t, "online": online,
                         "lcc_fraction": lcc_f, "answered_fraction": answered})  # fmt: skip
        summary.extend(_heal(arch, [r for r in rows if r["architecture"] == arch], events))
        notes.extend(f"{arch}: {x}" for x in cr.notes)
        digests.append(sim.trace_digest())
    progress("churn: writing", 1.0)
    csv_path = write_csv(out / "churn.csv", rows)
    command = str(config.get("_command", f"peerlab simulate {sc.source or sc.name} --seed {seed}"))
    figures = _figures(rows, out, command, sc.events)
    ch = sc.churn
    md = (
        f"Scenario `{sc.name}`, {n} peers; sessions {ch.session} with mean {ch.mean_session:g} s, "
        f"away {ch.mean_offline:g} s on average; events: "
        + (", ".join(f"at {e.at:g} s kill {e.kill} x{e.count}" for e in sc.events) or "none")
        + f". Heal time: until the largest connected part is back to {HEALED:.0%} of its "
        "level before the event, once below it (0: it never fell below; 'never': not "
        "within the run).\n\n" + md_table(summary)
    )
    if notes:
        md += "\n" + "\n".join(f"- {x}" for x in notes) + "\n"
    return ExperimentReport(
        name="churn",
        title="Healing under churn",
        rows=summary,
        markdown=md,
        figures=figures,
        csv=[csv_path],
        trace_digest=combine_digests(digests),
    )


def _strike(cr: ChurnRun, ev: Event) -> Callable[[Any], None]:
    return lambda _: cr.strike(ev)


def _heal(arch: str, rows: list[dict[str, Any]], events: tuple[Event, ...]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        # The sample at the event's own instant was taken after it struck.
        before = [r["lcc_fraction"] for r in rows if r["time_s"] < ev.at]
        after = [r for r in rows if r["time_s"] >= ev.at]
        if not before or not after:
            continue
        level = sum(before) / len(before)
        low = next((r for r in after if r["lcc_fraction"] < HEALED * level), None)
        healed: float | None = 0.0  # never below the mark: no visible damage
        if low is not None:
            healed = next((r["time_s"] - ev.at for r in after if r["time_s"] > low["time_s"]
                           and r["lcc_fraction"] >= HEALED * level), None)  # fmt: skip
        ans_before = [r["answered_fraction"] for r in rows if r["time_s"] < ev.at
                      and r["answered_fraction"] == r["answered_fraction"]]  # fmt: skip
        ans_after = [r["answered_fraction"] for r in after
                     if r["answered_fraction"] == r["answered_fraction"]]  # fmt: skip
        out.append({
            "architecture": arch,
            "event": f"{ev.kill} x{ev.count} at {ev.at:g} s",
            "largest part before": level,
            "largest part lowest after": min(r["lcc_fraction"] for r in after),
            "heal time s": "never" if healed is None else healed,
            "answered before": sum(ans_before) / len(ans_before) if ans_before else "",
            "answered after": sum(ans_after) / len(ans_after) if ans_after else "",
        })  # fmt: skip
    return out


def _figures(rows: list[dict[str, Any]], out: Path, command: str,
             events: tuple[Event, ...]) -> list[Figure]:  # fmt: skip
    figs = []
    archs = list(dict.fromkeys(r["architecture"] for r in rows))
    for key, name, what in (
        ("lcc_fraction", "churn_lcc.png", "largest connected part (of online peers)"),
        ("answered_fraction", "churn_answered.png", "fraction of queries answered"),
    ):

        def draw(ax: Any, key: str = key) -> None:
            for arch in archs:
                rs = [r for r in rows if r["architecture"] == arch]
                ax.plot([r["time_s"] for r in rs], [r[key] for r in rs], marker=".", label=arch)
            for ev in events:
                ax.axvline(ev.at, color="grey", linestyle=":")

        p = plot(out / name, draw, title=f"{what.capitalize()} under churn", xlabel="time (s)",
                 ylabel=what)  # fmt: skip
        figs.append(Figure(p, f"{what.capitalize()} over time under churn; dotted lines: "
                              "the events.", command))  # fmt: skip
    return figs
