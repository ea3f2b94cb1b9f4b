"""Running a query workload on a network and measuring it; CSV and plots.

:func:`run_queries` sends the workload (one query every ``interval``
virtual seconds), lets every query collect for ``wait`` seconds, and
returns a :class:`Measurement` with the issue's figures: fraction answered
(of the queries whose file some *other* live peer shares), results per
query, messages and bytes per query, time to first result, and the busiest
node's messages/s and bytes/s over the phase.

Plots use matplotlib's Agg backend (files only, no display), imported
lazily so that the rest of peerlab never pays for it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from peerlab.sim import Simulator
from peerlab.simulate.nets import Load, Probe
from peerlab.simulate.population import Population, Query


class Net(Protocol):
    """What :func:`run_queries` needs of a network (both nets offer it)."""

    sim: Simulator
    population: Population
    alive: set[int]

    def query(self, q: Query, ttl: int) -> Probe: ...

    def search_messages(self) -> int: ...

    def load(self) -> list[Load]: ...


@dataclass(frozen=True, slots=True)
class Measurement:
    queries: int
    answerable: int
    answered: int
    answered_fraction: float
    #: Answered / all queries sent (the file may be gone everywhere).
    answered_of_all: float
    results_per_query: float
    messages_per_query: float
    bytes_per_query: float
    first_result_median_s: float
    busiest_msgs_per_s: float
    busiest_bytes_per_s: float
    busiest_node: int


def run_queries(net: Net, queries: Sequence[Query], *, ttl: int, interval: float,
                wait: float) -> Measurement:  # fmt: skip
    """Send ``queries`` from their (live) origins; see the module docstring."""
    sim = net.sim
    alive = set(net.alive)
    pop = net.population
    msgs0 = net.search_messages()
    load0 = net.load()
    start = sim.now
    probes: list[Probe] = []
    answerable: list[bool] = []
    for q in queries:
        if q.origin not in alive:
            continue
        answerable.append(any(h != q.origin for h in pop.holders(q.rank, alive)))
        probes.append(net.query(q, ttl))
        if interval > 0:
            sim.run(sim.now + interval)
    sim.run(sim.now + wait)
    span = max(sim.now - start, 1e-9)
    load1 = net.load()
    deltas = [(b.messages - a.messages, b.bytes - a.bytes)
              for a, b in zip(load0, load1, strict=True)]  # fmt: skip
    busiest = max(range(len(deltas)), key=lambda k: (deltas[k][0], deltas[k][1], -k))
    n = max(len(probes), 1)
    answered = [p for p, ok in zip(probes, answerable, strict=True) if ok and p.answered]
    firsts = [p.first - p.started for p in probes if p.first is not None]
    total_bytes = sum(b.bytes - a.bytes for a, b in zip(load0, load1, strict=True)) / 2
    return Measurement(
        queries=len(probes),
        answerable=sum(answerable),
        answered=len(answered),
        answered_fraction=len(answered) / max(sum(answerable), 1),
        answered_of_all=sum(p.answered for p in probes) / n,
        results_per_query=sum(p.results for p in probes) / n,
        messages_per_query=(net.search_messages() - msgs0) / n,
        # Every byte leaves one host and reaches another: halve the sum of
        # both directions over every host.
        bytes_per_query=total_bytes / n,
        first_result_median_s=statistics.median(firsts) if firsts else float("nan"),
        busiest_msgs_per_s=max(d[0] for d in deltas) / span,
        busiest_bytes_per_s=max(d[1] for d in deltas) / span,
        busiest_node=busiest,
    )


def measurement_row(m: Measurement) -> dict[str, Any]:
    return asdict(m)


# ------------------------------------------------------------------ output


def fmt(value: Any) -> str:
    """A CSV cell: floats with 6 significant digits (the same bytes on every
    run and platform), everything else as text."""
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.6g}"
    return str(value)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (same keys each) as CSV with ``\\n`` line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    if rows:
        w = csv.writer(buf, lineterminator="\n")
        keys = list(rows[0])
        w.writerow(keys)
        for row in rows:
            w.writerow([fmt(row[k]) for k in keys])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def combine_digests(digests: Iterable[str]) -> str:
    """One digest over the digests of several simulator runs, in order."""
    h = hashlib.blake2b(digest_size=16)
    for d in digests:
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def md_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows``."""
    if not rows:
        return ""
    keys = list(keys or rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, draw: Callable[[Any], None], *, title: str, xlabel: str,
         ylabel: str, logx: bool = False, logy: bool = False) -> Path:  # fmt: skip
    """Draw one PNG with matplotlib (Agg): ``draw(axes)`` adds the lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    try:
        draw(ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
