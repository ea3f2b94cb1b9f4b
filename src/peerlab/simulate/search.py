"""Search experiment (issue 7, item 2): the same peers, files and queries on
every architecture.

Architectures (``[search] architectures``):

* ``napster`` -- one index server (``NapsterServer`` with its SQLite index in
  memory), every peer a ``NapsterClient``;
* ``napster-farm`` -- two servers over one index, peers spread over both;
* ``gnutella`` -- flat Gnutella 0.6 servents wired as the scenario's
  overlay, queries flooded at every TTL of ``[search] ttls``;
* ``two-tier`` -- ultrapeers and leaves with QRP, when the servent offers
  roles (``ServentConfig.role``); skipped with a note otherwise.

For every size in ``population.nodes`` and every architecture the workload
runs once (Gnutella: once per TTL on the same network) and gives one row of
``search.csv``: fraction answered (of the queries whose file another live
peer shares), results, messages and bytes per query, median time to the
first result, and the busiest node's load (messages/s and bytes/s: the index
server, or the most loaded servent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peerlab.errors import ConfigError
from peerlab.overlays.gnutella.router import MAX_TTL
from peerlab.overlays.gnutella.servent import ServentConfig
from peerlab.sim import Simulator, derive_seed
from peerlab.sim.collector import frozen
from peerlab.simulate.base import ExperimentReport, Figure, Progress
from peerlab.simulate.measure import (
    combine_digests,
    md_table,
    measurement_row,
    plot,
    run_queries,
    write_csv,
)
from peerlab.simulate.nets import NapsterNet, build_net
from peerlab.simulate.parallel import Piece, run_pieces
from peerlab.simulate.population import build_population, build_queries
from peerlab.simulate.scenario import config_scenario

ARCHITECTURES = ("napster", "napster-farm", "gnutella", "two-tier")
#: The keys of ``[search]`` (the engine refuses any other).
KEYS = ("architectures", "ttls")
DEFAULT_TTLS = (1, 2, 3, 4, 5)
#: The servents' default TTL (resilience and churn flood with it).
TABLE_TTL = ServentConfig().search_ttl
#: The comparison table shows a flooding architecture at the smallest TTL
#: that answers this share of the answerable queries (the cost of searching
#: well), or at its largest TTL when none does.
TARGET_ANSWERED = 0.95
#: Virtual seconds a fresh network runs before the workload (pongs, logins).
SETTLE = 10.0


def two_tier_available() -> bool:
    """Does the servent have roles (ultrapeer / leaf) yet?"""
    return any(f.name == "role" for f in dataclasses.fields(ServentConfig))


def _settings(config: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    archs = config.get("architectures", list(ARCHITECTURES))
    if not isinstance(archs, list) or not all(a in ARCHITECTURES for a in archs):
        raise ConfigError(f"search.architectures: each one of {', '.join(ARCHITECTURES)}")
    ttls = config.get("ttls", list(DEFAULT_TTLS))
    if (
        not isinstance(ttls, list)
        or not ttls
        or not all(
            isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= MAX_TTL for t in ttls
        )
    ):
        raise ConfigError(f"search.ttls: a list of TTLs in 1..{MAX_TTL}")
    return list(archs), list(ttls)


def check(config: Mapping[str, Any]) -> None:
    """Refuse bad ``[search]`` settings before anything runs."""
    _settings(config)


def run(config: Mapping[str, Any], seed: int, out: Path, progress: Progress) -> ExperimentReport:
    """The search experiment (see the module docstring)."""
    sc = config_scenario(config)
    archs, ttls = _settings(config)
    if "two-tier" in archs and not two_tier_available():
        archs = [a for a in archs if a != "two-tier"]
        skipped = ["two-tier (the servent has no ultrapeer/leaf roles in this build)"]
    else:
        skipped = []
    pieces = [
        Piece(f"{arch}, {n} nodes", measure_network, (config, seed, n, arch, ttls),
              cost=n * ARCHITECTURE_COST[arch])
        for n in sc.population.nodes
        for arch in archs
    ]  # fmt: skip

    def piece_progress(what: str, finished: int) -> None:
        progress(f"search: {what}", finished / len(pieces))

    measured = run_pieces(pieces, int(config.get("_jobs", 1)), piece_progress)
    rows = [row for piece_rows, _ in measured for row in piece_rows]
    digests = [digest for _, digest in measured]
    progress("search: writing", 1.0)
    csv_path = write_csv(out / "search.csv", rows)
    command = str(config.get("_command", f"peerlab simulate {sc.source or sc.name} --seed {seed}"))
    figures = _figures(rows, out, command)
    table = _table_rows(rows)
    md = _markdown(rows, table, skipped, sc.name)
    return ExperimentReport(
        name="search",
        title="Search: central index, flooding" + (", two-tier" if "two-tier" in archs else ""),
        rows=table,
        markdown=md,
        figures=figures,
        csv=[csv_path],
        trace_digest=combine_digests(digests),
    )


#: One network's rows of ``search.csv`` and its trace digest.
Measured = tuple[list[dict[str, Any]], str]

#: Rough CPU per peer of building and querying each architecture (the
#: growth scenario at 3,000 peers: 1.7, 1.5, 36 and 73 s): which networks
#: start first when they run in parallel.
ARCHITECTURE_COST = {"napster": 1.0, "napster-farm": 1.0, "gnutella": 20.0, "two-tier": 40.0}


def measure_network(
    config: Mapping[str, Any], seed: int, n: int, arch: str, ttls: list[int]
) -> Measured:
    """Build ``arch`` over the scenario's ``n`` peers and run the workload
    (flooding: once per TTL on the same network).  The peers, files and
    queries come from the seed and ``n`` alone and the simulator's seed from
    the architecture too, so a network measured in a process of its own
    gives what it gives among the others."""
    sc = config_scenario(config)
    qs = sc.queries
    pop = build_population(sc, n, seed)
    queries = build_queries(sc, pop, seed)
    sim = Simulator(derive_seed(seed, "search", arch, str(n)))
    net = build_net(arch, sim, pop, seed=seed)
    variants = [0] if isinstance(net, NapsterNet) else ttls
    if not net.wait_connected():
        raise ConfigError(f"search: the {arch} network of {n} nodes did not come up")
    sim.run(sim.now + SETTLE)
    rows: list[dict[str, Any]] = []
    with frozen():  # the built network, out of the garbage collector's scans
        for ttl in variants:
            m = run_queries(net, queries, ttl=ttl, interval=qs.interval, wait=qs.wait)
            rows.append({"nodes": n, "architecture": arch, "ttl": ttl, **measurement_row(m)})
    return rows, sim.trace_digest()


def _label(row: Mapping[str, Any]) -> str:
    if row["architecture"] in ("gnutella", "two-tier"):
        return f"{row['architecture']} TTL {row['ttl']}"
    return str(row["architecture"])


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comparison table's rows: each architecture at the largest size,
    flooding at the smallest TTL that answers :data:`TARGET_ANSWERED`."""
    if not rows:
        return []
    n = max(r["nodes"] for r in rows)
    out = []
    for arch in ARCHITECTURES:
        mine = [r for r in rows if r["nodes"] == n and r["architecture"] == arch]
        if not mine:
            continue
        good = [r for r in mine if r["answered_fraction"] >= TARGET_ANSWERED]
        r = min(good, key=lambda r: r["ttl"]) if good else max(mine, key=lambda r: r["ttl"])
        out.append({
            "architecture": _label(r),
            "nodes": n,
            "ttl": r["ttl"] if arch in ("gnutella", "two-tier") else "-",
            "answered": r["answered_fraction"],
            "results/query": r["results_per_query"],
            "messages/query": r["messages_per_query"],
            "bytes/query": r["bytes_per_query"],
            "first result s": r["first_result_median_s"],
            "busiest node msgs/s": r["busiest_msgs_per_s"],
            "busiest node bytes/s": r["busiest_bytes_per_s"],
        })  # fmt: skip
    return out


def _series(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(_label(r), []).append(r)
    return out


def _figures(rows: list[dict[str, Any]], out: Path, command: str) -> list[Figure]:
    figs: list[Figure] = []
    if not rows:
        return figs
    n = max(r["nodes"] for r in rows)
    last = [r for r in rows if r["nodes"] == n]

    def cost(ax: Any) -> None:
        for label, rs in _series(last).items():
            xs = [r["messages_per_query"] for r in rs]
            ys = [r["answered_fraction"] for r in rs]
            ax.scatter(xs, ys, label=label)
            for r in rs:
                ax.annotate(_label(r), (r["messages_per_query"], r["answered_fraction"]),
                            fontsize=7)  # fmt: skip

    p = plot(out / "search_cost.png", cost, title=f"Answered vs messages per query ({n} nodes)",
             xlabel="messages per query", ylabel="fraction answered", logx=True)  # fmt: skip
    figs.append(Figure(p, f"Fraction of queries answered against the messages each query "
                          f"cost, {n} nodes.", command))  # fmt: skip
    sizes = sorted({r["nodes"] for r in rows})
    if len(sizes) > 1:
        for key, name, what in (
            ("messages_per_query", "search_growth_msgs.png", "messages per query"),
            ("busiest_msgs_per_s", "search_growth_busiest.png", "busiest node messages/s"),
            ("answered_fraction", "search_growth_answered.png", "fraction answered"),
        ):

            def grow(ax: Any, key: str = key) -> None:
                for label, rs in _series(rows).items():
                    rs = sorted(rs, key=lambda r: r["nodes"])
                    ax.plot([r["nodes"] for r in rs], [r[key] for r in rs], marker="o",
                            label=label)  # fmt: skip

            p = plot(out / name, grow, title=f"{what} as the network grows", xlabel="nodes",
                     ylabel=what, logx=True, logy=key != "answered_fraction")  # fmt: skip
            figs.append(Figure(p, f"{what.capitalize()} against network size.", command))
    gn = [r for r in rows if r["architecture"] == "gnutella"]
    if gn:

        def by_ttl(ax: Any) -> None:
            for size in sizes:
                rs = sorted((r for r in gn if r["nodes"] == size), key=lambda r: r["ttl"])
                ax.plot([r["ttl"] for r in rs], [r["answered_fraction"] for r in rs],
                        marker="o", label=f"{size} nodes")  # fmt: skip

        p = plot(out / "search_gnutella_ttl.png", by_ttl, title="Gnutella: answered by TTL",
                 xlabel="TTL", ylabel="fraction answered")  # fmt: skip
        figs.append(Figure(p, "Flooding: the fraction answered as the TTL grows.", command))
    return figs


def _markdown(rows: list[dict[str, Any]], table: list[dict[str, Any]], skipped: list[str],
              name: str) -> str:  # fmt: skip
    keys = ["nodes", "architecture", "ttl", "answered_fraction", "results_per_query",
            "messages_per_query", "bytes_per_query", "first_result_median_s",
            "busiest_msgs_per_s", "busiest_bytes_per_s"]  # fmt: skip
    parts = [
        f"Scenario `{name}`. Every architecture got the same peers, files and queries. "
        "`answered_fraction` counts queries whose file another live peer shares; "
        "messages are Gnutella descriptors sent (Query and Query Hit) or Napster search "
        "frames (200, each 201, 202); bytes are what the access links carried; the busiest "
        "node is the index server or the most loaded servent.\n",
        md_table(rows, keys),
    ]
    if skipped:
        parts.append("Not measured: " + "; ".join(skipped) + ".\n")
    return "\n".join(parts)
