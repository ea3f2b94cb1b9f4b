"""``peerlab simulate``: run a scenario in the simulator, or write the report.

::

    peerlab simulate search                       # a shipped scenario, by name
    peerlab simulate my.toml --seed 7 --out runs/my
    peerlab simulate --list                       # the shipped scenarios
    peerlab simulate --report                     # report/comparison.md, every experiment
    peerlab simulate growth --nodes 10000 --resources --out report/growth/10000
                                                  # one size of a scenario, timed
    peerlab simulate growth --jobs 2              # its networks two at a time

A progress bar shows where the run is; at the end a line per experiment gives
its trace digest and the files written, and a line the run's wall and CPU time
and peak memory (``--resources`` also writes them to ``<out>/resources.csv``).
``--jobs N`` measures up to N independent networks (or, with ``--report``,
scenarios) at once, each in a process of its own: the files written are the
same, the CPU time counts every process, and the peak is the largest one's.
A bad scenario is one line on stderr and exit status 1 (the main command turns
the ConfigError into it).
"""

from __future__ import annotations

import csv
import io
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from peerlab.simulate.base import Progress as ProgressFn
from peerlab.simulate.parallel import MAX_JOBS

if TYPE_CHECKING:
    from peerlab.simulate.scenario import Scenario

console = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Resources:
    """What a run cost: wall seconds, CPU seconds of this process and the
    processes it ran, the peak resident memory (MiB) of the largest of them,
    and how many could run at once (``--jobs``)."""

    wall_s: float
    cpu_s: float
    peak_mib: float
    jobs: int = 1


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def resources_start() -> tuple[float, float]:
    """The clocks :func:`resources_since` measures from."""
    return time.perf_counter(), _cpu_s()


def resources_since(wall0: float, cpu0: float, jobs: int = 1) -> Resources:
    """The cost since ``wall0`` and ``cpu0`` (:func:`resources_start`): the
    CPU of this process and of the ones it waited for; the peak is the whole
    process's or its largest child's (ru_maxrss, KiB on Linux)."""
    peak = max(resource.getrusage(who).ru_maxrss
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024  # fmt: skip
    return Resources(time.perf_counter() - wall0, _cpu_s() - cpu0, peak, jobs)


def resources_csv(nodes: tuple[int, ...], r: Resources) -> str:
    """``resources.csv``: one row, the sizes the run measured and its cost
    (``jobs`` only when above 1, the peak then being one process's)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["nodes", "wall_s", "cpu_s", "peak_mib"]
    row = [" ".join(str(n) for n in nodes), f"{r.wall_s:.1f}", f"{r.cpu_s:.1f}",
           f"{r.peak_mib:.0f}"]  # fmt: skip
    if r.jobs > 1:
        header.append("jobs")
        row.append(str(r.jobs))
    w.writerow(header)
    w.writerow(row)
    return buf.getvalue()


def parse_nodes(ctx: click.Context, param: click.Parameter, value: str | None
                ) -> tuple[int, ...] | None:  # fmt: skip
    """``--nodes 1000,3000``: network sizes, comma-separated."""
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("a size or sizes separated by commas (1000,3000)") from None
    return sizes


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressFn]:
    """A rich progress bar on stderr; yields the ``progress(what, fraction)``
    callback the engine calls."""
    with Progress(
        TextColumn("[bold]{task.fields[what]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=1.0, what=label)

        def update(what: str, fraction: float) -> None:
            bar.update(task, completed=fraction, what=what)

        yield update


def _sizes(sc: Scenario) -> tuple[str, str]:
    """A scenario's experiments and the sizes it runs them at, for --list:
    peers for the search, resilience and churn networks, leechers for the
    BitTorrent flash crowds."""
    sizes = []
    if any(e != "bittorrent" for e in sc.experiments):
        sizes.append("peers " + " / ".join(f"{n:,}" for n in sc.population.nodes))
    if "bittorrent" in sc.experiments:
        from peerlab.simulate.bittorrent import BtConfig

        crowds = BtConfig.parse(sc.table("bittorrent")).sizes
        sizes.append("leechers " + " / ".join(f"{n:,}" for n in crowds))
    return ", ".join(sc.experiments), "; ".join(sizes)


@click.command("simulate")
@click.argument("scenario", required=False)
@click.option("--seed", type=int, default=None, help="Seed (default: the scenario's).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Where CSV, PNG and Markdown go (default: simulate-<name>, or report/).",
)
@click.option(
    "--report",
    "report",
    is_flag=True,
    help="Run the report's scenarios and write report/comparison.md.",
)
@click.option(
    "--nodes",
    callback=parse_nodes,
    metavar="N[,N...]",
    help="Network sizes (peers) of the search, resilience and churn experiments instead of "
    "the scenario's (one size per process for big runs).",
)
@click.option(
    "--resources",
    "write_resources",
    is_flag=True,
    help="Also write the run's wall and CPU time and peak memory to <out>/resources.csv.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, MAX_JOBS),
    default=1,
    show_default=True,
    help="Processes to measure independent networks (--report: scenarios) in at once.",
)
@click.option("--list", "list_", is_flag=True, help="List the shipped scenarios.")
def simulate(scenario: str | None, seed: int | None, out: Path | None, report: bool,
             nodes: tuple[int, ...] | None, write_resources: bool, jobs: int,
             list_: bool) -> None:  # fmt: skip
    """Run SCENARIO (a .toml file or a shipped scenario's name) in the simulator."""
    from peerlab.simulate.scenario import load_scenario, shipped_scenarios

    if list_:
        rows = [(name, *_sizes(load_scenario(name))) for name in shipped_scenarios()]
        wide = max(len(r[0]) for r in rows)
        for name, experiments, sizes in rows:
            click.echo(f"{name:{wide}}  {experiments}: {sizes}")
        return
    if report:
        from peerlab.simulate.report import write_report

        if scenario is not None or nodes is not None or write_resources:
            raise click.UsageError("--report runs the report's own scenarios; give no SCENARIO, "
                                   "--nodes or --resources")  # fmt: skip
        from peerlab.simulate.engine import output_folder

        folder = output_folder(out)  # a file in the way fails before the bar is drawn
        with progress_bar("report") as update:
            path = write_report(folder, seed=seed, progress=update, jobs=jobs)
        click.echo(f"wrote {path}")
        return
    if scenario is None:
        raise click.UsageError("name a scenario (see --list), or give --report")
    from peerlab.simulate.engine import output_folder, prepare_scenario, run_scenario

    # A bad file, key, setting, size or output folder fails before the bar is drawn.
    sc = prepare_scenario(scenario, nodes)
    folder = output_folder(out, sc)
    wall0, cpu0 = resources_start()
    with progress_bar(sc.name) as update:
        run = run_scenario(scenario, seed=seed, out=folder, progress=update, nodes=nodes,
                           jobs=jobs, prepared=sc)  # fmt: skip
    cost = resources_since(wall0, cpu0, jobs)
    for r in run.reports:
        files = [p.name for p in r.csv] + [f.path.name for f in r.figures]
        click.echo(f"{r.name}: trace {r.trace_digest}; {len(files)} files in {run.out}")
    largest = f" (the largest of up to {jobs} processes)" if jobs > 1 else ""
    click.echo(f"wall {cost.wall_s:.1f} s, CPU {cost.cpu_s:.1f} s, "
               f"peak memory {cost.peak_mib:.0f} MiB{largest}")  # fmt: skip
    if write_resources:
        from peerlab.simulate.report import RESOURCES_FILE

        text = resources_csv(run.scenario.population.nodes, cost)
        (run.out / RESOURCES_FILE).write_text(text, encoding="utf-8")
