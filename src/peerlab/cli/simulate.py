"""``peerlab simulate``: run a scenario in the simulator, or write the report.

::

    peerlab simulate search                       # a shipped scenario, by name
    peerlab simulate my.toml --seed 7 --out runs/my
    peerlab simulate --list                       # the shipped scenarios
    peerlab simulate --report                     # report/comparison.md, every experiment

A progress bar shows where the run is; at the end a line per experiment gives
its trace digest and the files written.  A bad scenario is one line on stderr
and exit status 1 (the main command turns the ConfigError into it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from peerlab.simulate.base import Progress as ProgressFn

console = Console(stderr=True)


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
@click.option("--list", "list_", is_flag=True, help="List the shipped scenarios.")
def simulate(scenario: str | None, seed: int | None, out: Path | None, report: bool,
             list_: bool) -> None:  # fmt: skip
    """Run SCENARIO (a .toml file or a shipped scenario's name) in the simulator."""
    from peerlab.simulate.scenario import load_scenario, shipped_scenarios

    if list_:
        for name in shipped_scenarios():
            sc = load_scenario(name)
            click.echo(f"{name:14} {', '.join(sc.experiments)}; nodes "
                       f"{', '.join(str(n) for n in sc.population.nodes)}")  # fmt: skip
        return
    if report:
        from peerlab.simulate.report import write_report

        if scenario is not None:
            raise click.UsageError("--report runs the report's own scenarios; give no SCENARIO")
        with progress_bar("report") as update:
            path = write_report(out or Path("report"), seed=seed, progress=update)
        click.echo(f"wrote {path}")
        return
    if scenario is None:
        raise click.UsageError("name a scenario (see --list), or give --report")
    from peerlab.simulate.engine import run_scenario

    name = load_scenario(scenario).name  # a bad file fails before the bar is drawn
    with progress_bar(name) as update:
        run = run_scenario(scenario, seed=seed, out=out, progress=update)
    for r in run.reports:
        files = [p.name for p in r.csv] + [f.path.name for f in r.figures]
        click.echo(f"{r.name}: trace {r.trace_digest}; {len(files)} files in {run.out}")
