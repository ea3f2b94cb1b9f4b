"""What every experiment returns, so the report can put them side by side.

An experiment is a function ``run(config, seed, out, progress)``:

* ``config`` -- the scenario's table for that experiment, as parsed from TOML
  (the engine fills in the scenario's other top-level keys and tables where
  the experiment's table does not set them, so ``config["population"]`` and
  ``config["seed"]`` are there; ``config["_command"]`` is the command line
  that reproduces the run, for :attr:`Figure.command`, and
  ``config["_scenario"]`` the parsed :class:`~peerlab.simulate.scenario.Scenario`);
* ``seed`` -- the scenario seed (every simulated host derives its rng from it);
* ``out`` -- the directory the experiment writes its CSV and PNG files to;
* ``progress(what, fraction)`` -- called now and then so the terminal can
  show where the run is (``fraction`` in 0..1).

It returns an :class:`ExperimentReport`.  Equal seeds give equal reports,
``trace_digest`` included: the determinism test compares them.

Its module also names the keys of its table, ``KEYS`` (the engine refuses
any other: a misspelt key must not quietly run the default), and has a
``check(config)`` that raises :class:`~peerlab.errors.ConfigError` for bad
settings; the engine calls it for every experiment of a scenario before it
runs the first, so a mistake in the last table costs no run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ``progress(what, fraction)``.
Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class Figure:
    """One plot the experiment drew."""

    path: Path
    caption: str
    #: The exact command line that reproduces this figure.
    command: str


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """One experiment's measured results."""

    #: Short key (``search``, ``resilience``, ``bittorrent``...).
    name: str
    title: str
    #: Rows for the comparison table: one dict per architecture or variant,
    #: same keys in every row (the column names).
    rows: list[dict[str, Any]]
    #: The experiment's own Markdown section (tables, findings, figure links
    #: relative to the report directory).
    markdown: str
    figures: list[Figure] = field(default_factory=list)
    csv: list[Path] = field(default_factory=list)
    #: Hex digest over everything the simulator delivered (``Simulator.trace_digest``),
    #: combined over every run the experiment made.
    trace_digest: str = ""


#: ``run(config, seed, out, progress) -> ExperimentReport``.
Experiment = Callable[[Mapping[str, Any], int, Path, Progress], ExperimentReport]
