"""How search grows (issue 7, item 2): one size per process with
``--nodes``, the report reading the sizes it finds, and the memory a
two-tier network of many peers keeps per QRP link."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from peerlab.errors import ConfigError
from peerlab.simulate.engine import run_scenario, with_nodes
from peerlab.simulate.measure import write_csv
from peerlab.simulate.report import compose, growth_command, growth_report, read_growth
from peerlab.simulate.scenario import load_scenario
from peerlab.wire.qrp import QrpReceiver, QueryRouteTable, make_update

PEERLAB = [sys.executable, "-m", "peerlab.cli.main"]

#: Two small sizes on the defaults (random overlay, 70% free riders).
TINY = """
name = "tiny"
seed = 5
experiments = ["search"]
population = { nodes = [24, 40] }
files = { catalog = 40, per_sharer = 4 }
queries = { count = 12, wait = 5.0 }
search = { architectures = ["napster", "gnutella"], ttls = [1, 3] }
"""


def peerlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERLAB, *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def rows_of(path: Path, nodes: int) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f) if row[0] == str(nodes)]


def test_a_size_run_alone_gives_the_rows_it_gives_among_the_others(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY, encoding="utf-8")
    both = run_scenario(str(tiny), out=tmp_path / "both")
    alone_dir = tmp_path / "alone"
    done = peerlab("simulate", str(tiny), "--nodes", "40", "--resources", "--out", str(alone_dir))
    assert done.returncode == 0, done.stderr
    assert "peak memory" in done.stdout
    alone = rows_of(alone_dir / "search.csv", 40)
    assert len(alone) == 3  # napster, gnutella TTL 1 and 3
    assert alone == rows_of(both.out / "search.csv", 40)
    assert rows_of(alone_dir / "search.csv", 24) == []
    with (alone_dir / "resources.csv").open(encoding="utf-8") as f:
        cost = list(csv.DictReader(f))
    assert [c["nodes"] for c in cost] == ["40"]
    assert float(cost[0]["peak_mib"]) > 0 and float(cost[0]["cpu_s"]) > 0
    md = (alone_dir / "search.md").read_text(encoding="utf-8")
    assert f"Reproduce: `peerlab simulate {tiny} --seed 5 --nodes 40 --out {alone_dir}`" in md


def test_bad_sizes_are_one_line(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY, encoding="utf-8")
    for value, code in (("40,99999", 1), ("forty", 2)):
        r = peerlab("simulate", str(tiny), "--nodes", value)
        assert r.returncode == code, (value, r.stderr)
        assert r.stderr.startswith("peerlab: ") and r.stderr.count("\n") == 1, r.stderr
    r = peerlab("simulate", "--report", "--nodes", "40")
    assert r.returncode == 2
    with pytest.raises(ConfigError, match="nodes"):
        with_nodes(load_scenario(str(tiny)), [])


def _size(folder: Path, n: int, scale: float, digest: str, timed: bool = True,
          jobs: int = 1) -> None:  # fmt: skip
    rows = []
    for arch, ttl, msgs in (("napster", 0, 30.0), ("gnutella", 2, 40.0), ("gnutella", 3, 200.0),
                            ("two-tier", 3, 250.0)):  # fmt: skip
        rows.append({"nodes": n, "architecture": arch, "ttl": ttl, "queries": 100,
                     "answerable": 80, "answered": 80, "answered_fraction": 0.5 + ttl / 10,
                     "answered_of_all": 0.8, "results_per_query": 3.0,
                     "messages_per_query": msgs * scale, "bytes_per_query": 1000.0,
                     "first_result_median_s": 0.2, "busiest_msgs_per_s": 10.0 * scale,
                     "busiest_bytes_per_s": 500.0, "busiest_node": 1})  # fmt: skip
    write_csv(folder / str(n) / "search.csv", rows)
    (folder / str(n) / "digest.txt").write_text(f"search {digest}\n", encoding="utf-8")
    if timed:
        extra = (",jobs", f",{jobs}") if jobs > 1 else ("", "")
        (folder / str(n) / "resources.csv").write_text(
            f"nodes,wall_s,cpu_s,peak_mib{extra[0]}\n{n},{n / 10},{n / 20},{n // 3}{extra[1]}\n",
            encoding="utf-8",
        )


def test_the_report_reads_every_size_it_finds(tmp_path: Path) -> None:
    report = tmp_path / "report"
    folder = report / "growth"
    assert read_growth(folder) == [] and growth_report(folder, report) is None
    _size(folder, 10000, 10.0, "c" * 32)
    _size(folder, 1000, 1.0, "a" * 32, jobs=2)
    _size(folder, 3000, 3.0, "b" * 32, timed=False)
    sizes = read_growth(folder)
    assert [g.nodes for g in sizes] == [1000, 3000, 10000]
    assert sizes[0].peak_mib == 333 and sizes[1].peak_mib is None
    assert [g.jobs for g in sizes] == [2, 1, 1]
    g = growth_report(folder, report)
    assert g is not None and g.name == "growth"
    lines = (folder / "growth.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1000"] * 4 + ["3000"] * 4 + ["10000"] * 4
    assert (folder / "digest.txt").read_text(encoding="utf-8") == (
        f"search@1000 {'a' * 32}\nsearch@3000 {'b' * 32}\nsearch@10000 {'c' * 32}\n"
    )
    for name in ("search_growth_msgs.png", "search_growth_busiest.png",
                 "search_growth_answered.png", "growth.md"):  # fmt: skip
        assert (folder / name).is_file(), name
    md = compose([], report, {}, g)
    table = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    # Messages per query: 200 -> 600 -> 2,000 for flooding at TTL 3, x10.0.
    assert "| gnutella TTL 3 | 200 | 600 | 2,000 | x10.0 |" in md
    assert "| gnutella TTL 3 | 80% | 80% | 80% |" in md
    every = "napster, gnutella, two-tier"
    # Measured by two processes at once: the peak is the larger one's.
    assert table["| 1,000"] == (
        f"| 1,000 | {every} | 100 | 50 | 333 (the largest of 2 processes) | `{'a' * 32}` |"
    )
    assert table["| 3,000"] == f"| 3,000 | {every} | - | - | - | `{'b' * 32}` |"
    assert table["| 10,000"] == f"| 10,000 | {every} | 1,000 | 500 | 3,333 | `{'c' * 32}` |"
    assert "## How search grows: 1,000 / 3,000 / 10,000 peers" in md
    assert md.index("## How search grows") < md.index("## BitTorrent's claims")
    assert "![Messages per query against network size.](growth/search_growth_msgs.png)" in md
    assert "    " + growth_command(10000, report) in md
    assert growth_command(10000, report) == (
        f"peerlab simulate growth --seed 1 --nodes 10000 --resources --out {folder / '10000'}"
    )
    assert "How search grows" not in compose([], report, {})
    # A size made by a part of the scenario names the file it ran.
    _size(folder, 20000, 20.0, "d" * 32)
    part = folder / "20000"
    (part / "scenario.toml").write_text('name = "growth"\nseed = 4\nexperiments = ["search"]\n')
    g = growth_report(folder, report)
    assert g is not None and (
        f"    peerlab simulate {part / 'scenario.toml'} --seed 4 --resources --out {part}\n"
        in g.markdown
    )


def test_a_qrp_link_holds_one_table_between_updates() -> None:
    """An ultrapeer keeps a table per leaf link: between two updates the
    receiver publishes its working table rather than a second copy, and a
    later update never changes a table it published before."""
    rx = QrpReceiver()
    first = QueryRouteTable.from_keywords(["abide", "rug"], length=1024)
    for m in make_update(first):
        got = rx.receive(m)
    assert got == first and rx.table is got
    assert rx._work is rx.table  # one table held, not two
    second = first.copy()
    second.add("dude")
    for m in make_update(second, first):
        newer = rx.receive(m)
    assert newer == second and rx.table is newer
    assert got == first and got is not newer  # the first one is as it was
    assert rx._work is rx.table
