"""Resilience and healing: what removing nodes and churn do, measured."""

from __future__ import annotations

import csv
from pathlib import Path

from peerlab.simulate.engine import run_scenario


def world(name: str, nodes: int, kind: str) -> str:
    """The part both scenarios share: peers, files, overlay."""
    return (f'name = "{name}"\nseed = 3\nexperiments = ["{name}"]\n'
            f"[population]\nnodes = {nodes}\nfree_riders = 0.5\nlinks = {{ dsl = 1 }}\n"
            f'[files]\ncatalog = 30\nper_sharer = 4\n[topology]\nkind = "{kind}"\n'
            "degree = 4\n")  # fmt: skip


RESILIENCE = world("resilience", 40, "preferential") + """
[queries]
count = 10
wait = 4.0
[resilience]
architectures = ["napster", "gnutella"]
fractions = [0.0, 0.1, 0.3]
recover = 3.0
trials = 2
"""

CHURN = world("churn", 30, "random") + """
[queries]
wait = 4.0
[churn]
session = "pareto"
mean_session = 200.0
mean_offline = 20.0
duration = 40.0
architectures = ["napster", "napster-farm", "gnutella"]
sample = 2.0
per_sample = 3
[[events]]
at = 10.0
kill = "index-server"
on = ["napster", "napster-farm"]
[[events]]
at = 10.0
kill = "random"
count = 3
on = ["gnutella"]
"""


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_targeted_removal_kills_the_index_random_removal_does_not(tmp_path: Path) -> None:
    spec = tmp_path / "res.toml"
    spec.write_text(RESILIENCE, encoding="utf-8")
    run = run_scenario(str(spec), out=tmp_path)
    every = read(tmp_path / "resilience.csv")
    assert len(every) == 2 * (2 + 1) * 3  # random drawn twice, targeted once
    rows = {(r["architecture"], r["strategy"], r["removed_fraction"]): r
            for r in every if r["trial"] == "0"}  # fmt: skip
    for arch in ("napster", "gnutella"):
        for strategy in ("random", "targeted"):
            start = rows[(arch, strategy, "0")]
            assert float(start["lcc_fraction"]) == 1.0 and start["removed"] == "0"
    # 10% of 41 nodes by importance: the index server goes first.
    tgt = rows[("napster", "targeted", "0.1")]
    assert tgt["removed"] == "4" and float(tgt["answered_fraction"]) == 0.0
    assert float(tgt["lcc_fraction"]) < 0.05
    # The hubs matter more to Gnutella than random peers.
    g_rand, g_tgt = rows[("gnutella", "random", "0.3")], rows[("gnutella", "targeted", "0.3")]
    assert float(g_tgt["lcc_fraction"]) < float(g_rand["lcc_fraction"])
    (report,) = run.reports
    assert [r["architecture"] for r in report.rows] == ["napster", "gnutella"]
    lcc = [float(r["lcc_fraction"]) for r in every if r["architecture"] == "gnutella"
           and r["strategy"] == "random" and r["removed_fraction"] == "0.1"]  # fmt: skip
    assert report.rows[1]["largest part, random"] == sum(lcc) / 2
    assert len(report.figures) == 2


def test_churn_heals_a_farm_not_a_single_server(tmp_path: Path) -> None:
    spec = tmp_path / "churn.toml"
    spec.write_text(CHURN, encoding="utf-8")
    run = run_scenario(str(spec), out=tmp_path)
    (report,) = run.reports
    heal = {r["architecture"]: r for r in report.rows}
    assert heal["napster"]["heal time s"] == "never"
    assert isinstance(heal["napster-farm"]["heal time s"], float)
    assert heal["napster-farm"]["heal time s"] <= 4.0
    assert heal["napster"]["largest part lowest after"] < 0.1
    series = read(tmp_path / "churn.csv")
    # The sample at the event's instant is the first after it: the farm's
    # peers on the dead server are cut off there, and back by the next.
    farm = {r["time_s"]: float(r["lcc_fraction"]) for r in series
            if r["architecture"] == "napster-farm"}  # fmt: skip
    assert farm["8"] > 0.9 and farm["10"] < 0.9
    assert heal["napster-farm"]["largest part lowest after"] == farm["10"]
    assert len(series) == 3 * 21
    assert all(0 < int(r["online"]) <= 30 for r in series)
