"""``peerlab simulate --report``: the lecture's comparison table, measured
(issue 7, item 5).

Runs the report's scenarios (:data:`REPORT_SCENARIOS`, the shipped ones,
each into ``<out>/<name>/``; BitTorrent's too when its experiment is in the
build), then writes ``<out>/comparison.md``: the lecture's table -- Napster,
Gnutella, KaZaA on efficient searching and resilience to attacks, with the
lecture's plus and minus signs beside the measured numbers -- "how search
grows" (below), BitTorrent's claims with the numbers of its experiment, then
every experiment's own section with its plots, each with the exact command
that reproduces it.

How search grows (issue 7, item 2, at 1,000 / 3,000 / 10,000 peers) is the
``growth`` scenario.  It takes far too long to run with every report, so
``--report`` does not run it: each size runs on its own, as its own process
(:func:`growth_command`, into ``<out>/growth/<nodes>/``), and the report
reads whatever sizes are there (:func:`growth_report`), merges their rows
into ``<out>/growth/growth.csv``, draws the growth plots, writes
``<out>/growth/growth.md`` and puts the section into ``comparison.md``.
Each size derives its peers, files, queries and seeds from the seed and the
size alone, so a size run alone gives the rows it gives among the others.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerlab.simulate.base import ExperimentReport, Progress
from peerlab.simulate.engine import (
    ScenarioRun,
    command_line,
    experiment_available,
    output_folder,
    run_scenario,
    section,
)
from peerlab.simulate.measure import combine_digests, md_table, write_csv
from peerlab.simulate.parallel import Piece, check_jobs, run_pieces
from peerlab.simulate.scenario import load_scenario, shipped_scenarios
from peerlab.simulate.search import ARCHITECTURES, TARGET_ANSWERED
from peerlab.simulate.search import _figures as search_figures

#: The scenarios the report runs, in this order (shipped names).
REPORT_SCENARIOS = ("search", "resilience", "churn")
#: The shipped scenario of BitTorrent's experiment.
BITTORRENT_SCENARIO = "bittorrent"
#: Its run at the issue's large sizes, linked when committed under the report.
BITTORRENT_LARGE = "bittorrent_large"

#: The shipped scenario of "how search grows"; its results live in
#: ``<out>/growth/<nodes>/``, one folder per size (see the module docstring).
GROWTH_SCENARIO = "growth"
#: What a growth size's folder holds besides the search experiment's files:
#: the run's wall and CPU time and peak memory (``peerlab simulate --resources``).
RESOURCES_FILE = "resources.csv"

#: The lecture's signs (its closing comparison of the file-sharing systems).
LECTURE = {
    "search": {"napster": "+++", "gnutella": "---", "two-tier": "+"},
    "resilience": {"napster": "---", "gnutella": "++?", "two-tier": "+"},
}


def report_scenarios() -> list[str]:
    names = list(REPORT_SCENARIOS)
    if BITTORRENT_SCENARIO in shipped_scenarios() and experiment_available("bittorrent"):
        names.append(BITTORRENT_SCENARIO)
    return names


def write_report(
    out: Path, *, seed: int | None = None, progress: Progress | None = None, jobs: int = 1
) -> Path:
    """Run the report's scenarios into ``out`` and write ``out/comparison.md``;
    ``jobs`` processes run scenarios side by side (the files are the same)."""
    names = report_scenarios()
    output_folder(out)
    if check_jobs(jobs) == 1:
        runs = []
        for k, name in enumerate(names):

            def sub(what: str, fraction: float, k: int = k) -> None:
                if progress is not None:
                    progress(what, (k + fraction) / len(names))

            runs.append(_run_report_scenario(name, seed, out, sub))
    else:

        def finished(what: str, n: int) -> None:
            if progress is not None:
                progress(what, n / len(names))

        pieces = [Piece(name, _run_report_scenario, (name, seed, out)) for name in names]
        runs = run_pieces(pieces, jobs, finished)
    reports: list[ExperimentReport] = []
    commands: dict[str, str] = {}
    for name, run in zip(names, runs, strict=True):
        reports.extend(run.reports)
        for r in run.reports:
            commands[r.name] = f"peerlab simulate {name} --seed {run.seed} --out {out / name}"
    growth = growth_report(out / GROWTH_SCENARIO, out)
    path = out / "comparison.md"
    path.write_text(compose(reports, out, commands, growth), encoding="utf-8")
    return path


def _run_report_scenario(
    name: str, seed: int | None, out: Path, progress: Progress | None = None
) -> ScenarioRun:
    return run_scenario(name, seed=seed, out=out / name, progress=progress, command_spec=name)


# ------------------------------------------------------------- growth


@dataclass(frozen=True, slots=True)
class GrowthSize:
    """One size of the growth scenario, as its run left it on disk."""

    nodes: int
    folder: Path
    rows: list[dict[str, Any]]
    #: The search experiment's trace digest of the run that made ``rows``.
    digest: str
    #: Wall and CPU seconds and peak memory (MiB) of that run, when recorded.
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_mib: float | None = None
    #: Processes that measured its networks at once (the peak is one's).
    jobs: int = 1


def growth_command(nodes: int, out: Path, seed: int | None = None) -> str:
    """The command that runs one size of the growth scenario into
    ``<out>/growth/<nodes>/`` (``out``: the report's folder)."""
    seed = load_scenario(GROWTH_SCENARIO).seed if seed is None else seed
    cmd = command_line(GROWTH_SCENARIO, seed, out / GROWTH_SCENARIO / str(nodes), [nodes])
    return cmd.replace(" --out ", " --resources --out ")


#: A size's folder may hold the scenario it ran (a part of ``growth``, say
#: fewer architectures); its command then names that file.
SIZE_SCENARIO_FILE = "scenario.toml"


def size_command(size: GrowthSize, out: Path) -> str:
    """The command that made ``size``'s folder: :func:`growth_command`, or
    the run of the scenario file kept in the folder."""
    own = size.folder / SIZE_SCENARIO_FILE
    if not own.is_file():
        return growth_command(size.nodes, out)
    cmd = command_line(str(own), load_scenario(str(own)).seed, size.folder)
    return cmd.replace(" --out ", " --resources --out ")


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_growth(folder: Path) -> list[GrowthSize]:
    """Every size of the growth scenario found under ``folder``: each
    sub-folder holding a ``search.csv`` (and ``digest.txt``, and
    ``resources.csv`` when the run was timed), smallest size first."""
    if not folder.is_dir():
        return []
    sizes: dict[int, GrowthSize] = {}
    for sub in sorted(p for p in folder.iterdir() if (p / "search.csv").is_file()):
        rows = _read_csv(sub / "search.csv")
        digest = ""
        if (sub / "digest.txt").is_file():
            for line in (sub / "digest.txt").read_text(encoding="utf-8").splitlines():
                name, _, value = line.partition(" ")
                if name == "search":
                    digest = value.strip()
        cost: dict[str, Any] = {}
        if (sub / RESOURCES_FILE).is_file():
            timed = _read_csv(sub / RESOURCES_FILE)
            cost = timed[0] if timed else {}
        for n in sorted({r["nodes"] for r in rows if isinstance(r.get("nodes"), int)}):
            alone = str(cost.get("nodes", "")) == str(n)
            jobs = cost.get("jobs", 1)
            sizes[n] = GrowthSize(
                n, sub, [r for r in rows if r.get("nodes") == n], digest,
                *((_num(cost, "wall_s"), _num(cost, "cpu_s"), _num(cost, "peak_mib"))
                  if alone else (None, None, None)),
                jobs=jobs if alone and isinstance(jobs, int) and jobs > 1 else 1)  # fmt: skip
    return [sizes[n] for n in sorted(sizes)]


def _growth_label(row: Mapping[str, Any]) -> str:
    if row.get("architecture") in ("gnutella", "two-tier"):
        return f"{row['architecture']} TTL {row['ttl']}"
    return str(row.get("architecture", ""))


def _metric_table(rows: Sequence[Mapping[str, Any]], sizes: Sequence[int], key: str,
                  pct: bool = False) -> str:  # fmt: skip
    """One row per architecture (and TTL), one column per size, and the
    factor from the smallest size to the largest."""
    labels: list[str] = []
    for arch in ARCHITECTURES:
        mine = sorted((r for r in rows if r.get("architecture") == arch),
                      key=lambda r: int(r.get("ttl", 0)))  # fmt: skip
        for r in mine:
            if _growth_label(r) not in labels:
                labels.append(_growth_label(r))
    table: list[dict[str, str]] = []
    for label in labels:
        line: dict[str, str] = {"architecture": label}
        values: list[float | None] = []
        for n in sizes:
            row = next((r for r in rows if r.get("nodes") == n and _growth_label(r) == label),
                       None)  # fmt: skip
            value = _num(row, key) if row is not None else None
            line[f"{n:,} peers"] = _figure(value, pct)
            values.append(value)
        if len(sizes) > 1 and not pct:
            first, last = values[0], values[-1]
            line[f"x ({sizes[0]:,} -> {sizes[-1]:,})"] = (
                f"x{last / first:.1f}" if first and last is not None else "-")  # fmt: skip
        table.append(line)
    return md_table(table)


def _figure(value: float | None, pct: bool = False) -> str:
    if value is None or value != value:
        return "not measured"
    if pct:
        return f"{value:.0%}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def growth_report(folder: Path, base: Path) -> ExperimentReport | None:
    """The "how search grows" section from the sizes under ``folder`` (see
    :func:`read_growth`); ``None`` when there are none.  Writes
    ``growth.csv``, the growth plots, ``growth.md`` and ``digest.txt`` (a
    line per size) into ``folder``; paths in the section are relative to
    ``base`` (the report's folder)."""
    found = read_growth(folder)
    if not found:
        return None
    sizes = [g.nodes for g in found]
    rows = [r for g in found for r in g.rows]
    report_dir = folder.parent
    commands = [size_command(g, report_dir) for g in found]
    # The plots come from the sizes' CSV files: the report redraws them
    # (after the size commands listed in the section).
    command = f"peerlab simulate --report --out {report_dir}"
    csv_path = write_csv(folder / "growth.csv", rows)
    figures = search_figures(rows, folder, command)
    (folder / "digest.txt").write_text(
        "".join(f"search@{g.nodes} {g.digest}\n" for g in found), encoding="utf-8")  # fmt: skip
    cost = [{"peers": f"{g.nodes:,}",
             "architectures": ", ".join(a for a in ARCHITECTURES
                                        if any(r.get("architecture") == a for r in g.rows)),
             "wall s": "-" if g.wall_s is None else f"{g.wall_s:,.0f}",
             "CPU s": "-" if g.cpu_s is None else f"{g.cpu_s:,.0f}",
             "peak memory MiB": "-" if g.peak_mib is None else f"{g.peak_mib:,.0f}" + (
                 f" (the largest of {g.jobs} processes)" if g.jobs > 1 else ""),
             "trace digest": f"`{g.digest}`"} for g in found]  # fmt: skip
    queries = max((int(r.get("queries", 0)) for r in rows), default=0)
    parts = [
        f"The `{GROWTH_SCENARIO}` scenario: the search experiment (the same workload on every "
        f"architecture: {queries} queries, "
        "70% free riders, a preferential-attachment overlay of degree 4 for flooding) at "
        + ", ".join(f"{n:,}" for n in sizes)
        + " peers. `answered` counts the queries whose file another peer shares; messages "
        "are Query and Query Hit descriptors sent (Napster: the search frames); the busiest "
        "node is the index server or the most loaded servent, over the whole query phase. "
        "Bytes and the busiest node's load count everything the links carried then, Ping "
        "and Pong upkeep included (a servent that knows too few hosts pings for more, every "
        "10 s and less often while its Pings teach it nothing new, and each such Ping refills "
        "the pong caches it reaches): bytes per query against messages per query in "
        "growth.csv shows where upkeep weighs.\n",
        "**Queries answered** (of those a peer could answer):\n",
        _metric_table(rows, sizes, "answered_fraction", pct=True),
        "**Messages per query:**\n",
        _metric_table(rows, sizes, "messages_per_query"),
        "**Busiest node, messages/s:**\n",
        _metric_table(rows, sizes, "busiest_msgs_per_s"),
        "**Busiest node, bytes/s:**\n",
        _metric_table(rows, sizes, "busiest_bytes_per_s"),
        "**What each size cost** (one process per size on the shared 2-core machine; "
        "wall time includes waiting for the other processes, CPU time does not; peak "
        "memory is the process's resident peak):\n",
        md_table(cost),
        "Not re-run by `peerlab simulate --report` (it reads the sizes it finds in "
        f"`{report_dir / GROWTH_SCENARIO}/<nodes>/`). Reproduce a size with its command; "
        "the report then picks it up:\n",
        "\n".join(f"    {c}" for c in commands) + "\n",
    ]
    summary = [{"nodes": r["nodes"], "architecture": _growth_label(r),
                "answered": r.get("answered_fraction"),
                "messages/query": r.get("messages_per_query"),
                "busiest node msgs/s": r.get("busiest_msgs_per_s"),
                "busiest node bytes/s": r.get("busiest_bytes_per_s")} for r in rows]  # fmt: skip
    report = ExperimentReport(
        name=GROWTH_SCENARIO,
        title="How search grows: " + " / ".join(f"{n:,}" for n in sizes) + " peers",
        rows=summary,
        markdown="\n".join(parts),
        figures=figures,
        csv=[csv_path],
        trace_digest=combine_digests(g.digest for g in found),
    )
    (folder / "growth.md").write_text(section(report, folder), encoding="utf-8")
    return report


def _row(rows: Sequence[Mapping[str, Any]], arch: str) -> Mapping[str, Any] | None:
    for r in rows:
        label = str(r.get("architecture", ""))
        if label == arch or label.startswith(arch + " "):
            return r
    return None


def _cell(row: Mapping[str, Any] | None, key: str, pct: bool = False) -> str:
    if row is None or key not in row or row[key] == "":
        return "not measured"
    v = row[key]
    if pct and isinstance(v, float):
        return f"{v:.0%}"
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return str(v)


def compose(reports: list[ExperimentReport], out: Path, commands: Mapping[str, str],
            growth: ExperimentReport | None = None) -> str:  # fmt: skip
    """``comparison.md``: the table, how search grows (``growth``, when
    measured), BitTorrent's claims, every experiment's section."""
    by = {r.name: r for r in reports}
    s, res, ch, bt = (by.get(k) for k in ("search", "resilience", "churn", "bittorrent"))
    cols = [("Napster (1 server)", "napster"), ("Napster farm (2)", "napster-farm"),
            ("Gnutella (flat)", "gnutella"), ("KaZaA-style two-tier", "two-tier")]  # fmt: skip
    lines = [
        "# The comparison, measured\n",
        "The lecture closes its file-sharing part with a table of plus and minus signs. "
        "Here the same peers, files and queries ran on each architecture in peerlab's "
        "simulator, with the node classes the daemon runs (the Napster index server and "
        "client, the Gnutella servent). Regenerate everything with "
        "`peerlab simulate --report`; each figure below names the command that reproduces "
        "it alone.\n",
        "| | " + " | ".join(c for c, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]

    def line(label: str, rep: ExperimentReport | None, key: str, pct: bool = False,
             lecture: str | None = None) -> None:  # fmt: skip
        cells = []
        for _, arch in cols:
            if lecture is not None:
                family = "napster" if arch.startswith("napster") else arch
                cells.append(LECTURE[lecture].get(family, ""))
            else:
                cells.append(_cell(_row(rep.rows, arch) if rep else None, key, pct))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    line("**Efficient searching** (lecture)", None, "", lecture="search")
    line("query TTL", s, "ttl")
    line("queries answered (file exists)", s, "answered", pct=True)
    line("results per query", s, "results/query")
    line("messages per query", s, "messages/query")
    line("bytes per query", s, "bytes/query")
    line("time to first result, s (median)", s, "first result s")
    line("busiest node, messages/s", s, "busiest node msgs/s")
    line("busiest node, bytes/s", s, "busiest node bytes/s")
    line("**Resilience to attacks** (lecture)", None, "", lecture="resilience")
    line("answered, 10% removed at random", res, "answered, random", pct=True)
    line("answered, 10% removed by importance", res, "answered, targeted", pct=True)
    line("largest part, 10% at random", res, "largest part, random", pct=True)
    line("largest part, 10% by importance", res, "largest part, targeted", pct=True)
    line("churn + attack: largest part at its lowest", ch, "largest part lowest after", pct=True)
    line("churn + attack: heal time, s", ch, "heal time s")
    lines.append("")
    notes = []
    if s is not None:
        nodes = s.rows[0].get("nodes") if s.rows else "?"
        notes.append(f"Search figures at {nodes} peers; flooding at the smallest TTL that "
                     f"answers {TARGET_ANSWERED:.0%} of the queries (the TTL is in the "
                     "search section's table). ")  # fmt: skip
    notes.append(
        '"By importance" removes the nodes with the most live links first: Napster\'s '
        "index server(s) (both servers of the farm are among the first 10%), Gnutella's "
        "hubs, the two-tier network's ultrapeers."
    )
    if ch is not None and ch.rows:
        strikes = "; ".join(f"{r['architecture']}: {r['event']}" for r in ch.rows)
        notes.append(
            f" Churn + attack: peers come and go, and the churn scenario's events strike "
            f"({strikes}; top-degree and ultrapeers: the best-connected first); heal time: "
            "until the largest part is back to 90% of its level (0: it never fell below; "
            '"never": not within the run).'
        )
    if s is None or _row(s.rows, "two-tier") is None:
        notes.append(' "not measured" in the two-tier column: the servent has no ultrapeer '
                     "roles in this build.")  # fmt: skip
    lines.append("".join(notes) + "\n")
    if growth is not None:
        lines.append(section(growth, out))
    lines.append("## BitTorrent's claims\n")
    if bt is None:
        lines.append("Efficient distribution, only slow in the beginning, enforces "
                     "contribution: the BitTorrent experiment is not in this build, so these "
                     "stay unmeasured here.\n")  # fmt: skip
    else:
        lines.append("Efficient distribution, only slow in the beginning, enforces "
                     "contribution -- measured by the BitTorrent experiment (flash crowd, "
                     "tit-for-tat, piece picking):\n")  # fmt: skip
        claims = bt_claims(bt.rows)
        if claims:
            lines.append(md_table(claims))
        lines.append(md_table(bt.rows))
        if (out / BITTORRENT_LARGE / "bittorrent.md").exists():
            # committed, not re-run: it takes tens of minutes
            lines.append(f"The same experiments at the issue's large sizes (flash crowds of "
                         f"up to 1,000 leechers): [{BITTORRENT_LARGE}/bittorrent.md]"
                         f"({BITTORRENT_LARGE}/bittorrent.md), made by `peerlab simulate "
                         f"src/peerlab/simulate/scenarios/{BITTORRENT_LARGE}.toml --seed 1 "
                         f"--out {out / BITTORRENT_LARGE}` (`--report` does not re-run it).\n")
    for r in reports:
        lines.append(section(r, out))
        if r.name in commands:
            lines.append(f"Whole experiment: `{commands[r.name]}`\n")
    return "\n".join(lines)


def _num(row: Mapping[str, Any], key: str) -> float | None:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def bt_claims(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """BitTorrent's three claims, each with the numbers that answer it, from
    the BitTorrent experiment's summary rows (``experiment``, ``variant``,
    ``leechers``, ``median_s``, ``client_server_median_s``); empty when the
    rows do not have that shape."""
    out: list[dict[str, str]] = []
    crowd = sorted((r for r in rows if r.get("experiment") == "flash crowd"
                    and _num(r, "median_s") is not None
                    and _num(r, "client_server_median_s") is not None),
                   key=lambda r: _num(r, "leechers") or 0)  # fmt: skip
    if crowd:
        big = crowd[-1]
        bt_s, cs_s = _num(big, "median_s"), _num(big, "client_server_median_s")
        assert bt_s is not None and cs_s is not None
        out.append({"claim": "efficient distribution",
                    "measured": f"{big['leechers']} leechers on one seed: median download "
                                f"{bt_s:.0f} s, against {cs_s:.0f} s from a server with "
                                "the seed's upload"})  # fmt: skip
    if len(crowd) > 1:
        small, big = crowd[0], crowd[-1]
        a, b = _num(small, "median_s"), _num(big, "median_s")
        c, d = _num(small, "client_server_median_s"), _num(big, "client_server_median_s")
        if a and b and c and d:
            text = (f"{small['leechers']} -> {big['leechers']} leechers: median {a:.0f} -> "
                    f"{b:.0f} s (x{b / a:.1f}); client-server {c:.0f} -> {d:.0f} s "
                    f"(x{d / c:.1f})")  # fmt: skip
            out.append({"claim": "only slow in the beginning", "measured": text})
    riders = {str(r.get("variant", "")): _num(r, "median_s") for r in rows
              if r.get("experiment") == "free riders"}  # fmt: skip
    tft_c = riders.get("tit-for-tat: contributors")
    tft_f = riders.get("tit-for-tat: free riders")
    if tft_c and tft_f:
        text = f"tit-for-tat: free riders' median {tft_f:.0f} s, contributors' {tft_c:.0f} s"
        rnd_c = riders.get("random unchoke: contributors")
        rnd_f = riders.get("random unchoke: free riders")
        if rnd_c and rnd_f:
            text += f"; unchoking at random: {rnd_f:.0f} s and {rnd_c:.0f} s"
        out.append({"claim": "enforces contribution", "measured": text})
    return out
