"""The scenario engine: ``peerlab simulate SCENARIO.toml [--seed N] [--out DIR]``.

:func:`run_scenario` loads a scenario, runs each of its experiments in the
simulator (an experiment is a module with a ``run`` of the shape
:data:`peerlab.simulate.base.Experiment`, found by name in
:data:`EXPERIMENTS`), and writes to ``out``: each experiment's CSV and PNG
files, ``<experiment>.md`` (its Markdown section with the figures), and
``digest.txt`` (one line per experiment: name and trace digest).  The same
scenario and seed give the same digests and byte-identical CSV files.

Progress goes to a ``progress(what, fraction)`` callback (the CLI draws it
with rich); the engine itself prints nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from peerlab.errors import ConfigError
from peerlab.simulate.base import ExperimentReport, Progress
from peerlab.simulate.parallel import check_jobs
from peerlab.simulate.scenario import (
    MAX_NODES,
    SCENARIO_KEYS,
    Scenario,
    check_keys,
    load_scenario,
)

#: Experiment name -> the module whose ``run`` implements it.  Architecture
#: ``bittorrent`` is sim-bt's experiment module.
EXPERIMENTS: dict[str, str] = {
    "search": "peerlab.simulate.search",
    "resilience": "peerlab.simulate.resilience",
    "churn": "peerlab.simulate.churn",
    "bittorrent": "peerlab.simulate.bittorrent",
}


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    scenario: Scenario
    seed: int
    out: Path
    reports: list[ExperimentReport]


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name``; a :class:`ConfigError` when it is
    unknown or not part of this build."""
    target = EXPERIMENTS.get(name)
    if target is None:
        raise ConfigError(f"unknown experiment {name!r} (known: {', '.join(EXPERIMENTS)})")
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name == target:
            raise ConfigError(f"the {name} experiment ({target}) is not in this build") from None
        raise


def experiment_available(name: str) -> bool:
    try:
        experiment_module(name)
    except ConfigError:
        return False
    return True


def check_scenario(sc: Scenario) -> None:
    """Refuse a scenario with a key nothing reads, or bad settings in any of
    its experiments' tables, before it runs anything.  A table named after
    an experiment the scenario does not run is checked too (when that
    experiment is in this build): it is there to be used."""
    check_keys(sc.raw, (*SCENARIO_KEYS, *EXPERIMENTS), "scenario")
    for name in EXPERIMENTS:
        if name not in sc.experiments and (name not in sc.raw or not experiment_available(name)):
            continue
        module = experiment_module(name)
        own = sc.raw.get(name, {})
        if not isinstance(own, Mapping):
            raise ConfigError(f"[{name}] must be a table")
        check_keys(own, module.KEYS, name)
        module.check(sc.table(name))


def command_line(spec: str, seed: int, out: Path, nodes: Sequence[int] | None = None) -> str:
    """The command that reproduces a run (``--nodes`` when the sizes were
    not the scenario's).  An ``out`` inside the working directory is named
    relative to it: a report written from a clone at ``/tmp/x`` with
    ``--out /tmp/x/report/search`` says ``--out report/search``, the command
    as run from the project, not the path of one machine's checkout."""
    sizes = f" --nodes {','.join(str(n) for n in nodes)}" if nodes else ""
    return f"peerlab simulate {spec} --seed {seed}{sizes} --out {_from_here(out)}"


def _from_here(path: Path) -> Path:
    here = Path.cwd()
    return path.relative_to(here) if path.is_relative_to(here) else path


def with_nodes(sc: Scenario, nodes: Sequence[int]) -> Scenario:
    """``sc`` at the network sizes ``nodes`` instead of its own.  Every size
    derives its peers, files, queries and hosts' seeds from the seed and the
    size alone, so a size run on its own gives the rows it gives among
    others (a big scenario can run one size per process)."""
    if not nodes or not all(2 <= n <= MAX_NODES for n in nodes):
        raise ConfigError(f"nodes: each size must be in 2..{MAX_NODES}")
    if all(e == "bittorrent" for e in sc.experiments):
        # Its swarms are sized by [bittorrent] sizes, not by the population.
        raise ConfigError(
            "--nodes sizes the search, resilience and churn networks; "
            "a BitTorrent scenario's flash crowds are its [bittorrent] sizes"
        )
    raw = dict(sc.raw)
    population = raw.get("population", {})
    raw["population"] = {**(population if isinstance(population, Mapping) else {}),
                         "nodes": list(nodes)}  # fmt: skip
    pop = dataclasses.replace(sc.population, nodes=tuple(nodes))
    return dataclasses.replace(sc, population=pop, raw=raw)


def prepare_scenario(spec: str, nodes: Sequence[int] | None = None) -> Scenario:
    """Scenario ``spec`` (a file, or a shipped scenario's name) at the
    network sizes ``nodes`` when given (:func:`with_nodes`), checked whole
    (:func:`check_scenario`): what :func:`run_scenario` runs."""
    sc = load_scenario(spec)
    if nodes is not None:
        sc = with_nodes(sc, nodes)
    check_scenario(sc)
    return sc


def output_folder(out: Path | None, sc: Scenario | None = None) -> Path:
    """Make the folder a run writes into (``out``; without it
    ``simulate-<name>`` of ``sc``, else ``report``) and return it; a path
    that is a file or cannot be made is a :class:`ConfigError`, before
    anything runs."""
    path = out if out is not None else Path(f"simulate-{sc.name}" if sc else "report")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"output folder {path}: a file of that name is in the way") from None
    except OSError as e:
        raise ConfigError(f"output folder {path}: cannot make it ({e.strerror or e})") from None
    return path


def run_scenario(
    spec: str,
    *,
    seed: int | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
    command_spec: str | None = None,
    nodes: Sequence[int] | None = None,
    jobs: int = 1,
    prepared: Scenario | None = None,
) -> ScenarioRun:
    """Run every experiment of scenario ``spec`` (a file, or a shipped
    scenario's name); ``seed`` overrides the file's; ``nodes`` its network
    sizes (:func:`with_nodes`); ``out`` defaults to ``simulate-<name>``.
    ``command_spec`` is how figures name the scenario in their reproducing
    command (default: ``spec``).  ``jobs``: how many processes an experiment
    may run its independent networks in (:mod:`peerlab.simulate.parallel`);
    the files written do not depend on it.  ``prepared``: the scenario as
    :func:`prepare_scenario` gave it for ``spec`` and ``nodes``, when the
    caller already has it."""
    check_jobs(jobs)
    sc = prepared if prepared is not None else prepare_scenario(spec, nodes)
    seed = sc.seed if seed is None else seed
    out = output_folder(out, sc)
    report: Progress = progress or _quiet
    command = command_line(command_spec or spec, seed, out, nodes)
    reports: list[ExperimentReport] = []
    for k, name in enumerate(sc.experiments):
        module = experiment_module(name)
        config = sc.table(name)
        config["_command"] = command
        config["_jobs"] = jobs
        share = 1.0 / len(sc.experiments)

        def sub(what: str, fraction: float, k: int = k, share: float = share) -> None:
            report(what, min(1.0, (k + max(0.0, min(1.0, fraction))) * share))

        fn: Callable[..., ExperimentReport] = module.run
        result = fn(config, seed, out, sub)
        if not isinstance(result, ExperimentReport):
            raise ConfigError(f"experiment {name} returned no ExperimentReport")
        reports.append(result)
        (out / f"{result.name}.md").write_text(section(result, out), encoding="utf-8")
    (out / "digest.txt").write_text(
        "".join(f"{r.name} {r.trace_digest}\n" for r in reports), encoding="utf-8"
    )
    report("done", 1.0)
    return ScenarioRun(sc, seed, out, reports)


def section(report: ExperimentReport, base: Path) -> str:
    """An experiment's Markdown: title, its own text, figures with the
    command that reproduces each, the CSV files; paths relative to ``base``."""
    lines = [f"## {report.title}\n", report.markdown.rstrip() + "\n"]
    for fig in report.figures:
        rel = _relative(fig.path, base)
        lines.append(f"![{fig.caption}]({rel})\n")
        lines.append(f"*{fig.caption}* Reproduce: `{fig.command}`\n")
    if report.csv:
        lines.append("Data: " + ", ".join(f"[{p.name}]({_relative(p, base)})"
                                          for p in report.csv) + "\n")  # fmt: skip
    lines.append(f"Trace digest: `{report.trace_digest}`\n")
    return "\n".join(lines)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _quiet(what: str, fraction: float) -> None:
    return None
