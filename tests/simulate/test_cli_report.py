"""``peerlab simulate`` on the command line, and the comparison report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peerlab.simulate.base import ExperimentReport, Figure
from peerlab.simulate.engine import experiment_module
from peerlab.simulate.report import compose

PEERLAB = [sys.executable, "-m", "peerlab.cli.main"]


def peerlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERLAB, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)  # fmt: skip


def test_list_and_run_a_scenario(tiny: Path, tmp_path: Path) -> None:
    listed = peerlab("simulate", "--list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert lines["growth"].endswith("  search: peers 1,000 / 3,000 / 10,000")
    assert lines["bittorrent"].endswith("  bittorrent: leechers 10 / 30 / 100")
    assert len({line.index(":") - len(line.split()[1]) for line in lines.values()}) == 1
    out = tmp_path / "out"
    done = peerlab("simulate", str(tiny), "--seed", "9", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "search: trace " in done.stdout
    assert (out / "search.csv").is_file() and (out / "search_cost.png").is_file()
    md = (out / "search.md").read_text()
    assert "Reproduce: `peerlab simulate " + str(tiny) + " --seed 9" in md


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('experiments = ["search"]\n[population]\nnodes = 1\n', encoding="utf-8")
    for args, code in ((["simulate", str(bad)], 1), (["simulate", "nothing-like-it"], 1),
                       (["simulate"], 2), (["simulate", "--report", "search"], 2),
                       (["simulate", "bittorrent", "--nodes", "20"], 1)):  # fmt: skip
        r = peerlab(*args)
        assert r.returncode == code, (args, r.stderr)
        assert r.stderr.startswith("peerlab: ") and r.stderr.count("\n") == 1, r.stderr
    assert "population.nodes" in peerlab("simulate", str(bad)).stderr
    # --nodes sizes networks; a flash crowd is sized by [bittorrent] sizes
    assert "[bittorrent] sizes" in peerlab("simulate", "bittorrent", "--nodes", "20").stderr
    # a misspelt key in the last experiment's table: refused before the first runs
    typo = tmp_path / "typo.toml"
    typo.write_text('experiments = ["search", "bittorrent"]\n[bittorrent.pickers]\n'
                    'strategy = ["random"]\n', encoding="utf-8")  # fmt: skip
    r = peerlab("simulate", str(typo), "--out", str(tmp_path / "out"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("peerlab: bittorrent.pickers: unknown key 'strategy' "
                        "(did you mean 'strategies'?)\n")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(tiny: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"keep me")
    for args, reason in (
        (["simulate", str(tiny), "--out", str(afile)], "a file of that name is in the way"),
        (["simulate", "--report", "--out", str(afile / "sub")], "cannot make it (Not a directory)"),
    ):
        r = peerlab(*args)
        assert r.returncode == 1, r.stderr
        assert r.stdout == ""
        assert r.stderr == f"peerlab: output folder {args[-1]}: {reason}\n"
    assert afile.read_bytes() == b"keep me"


def test_unknown_or_missing_experiment() -> None:
    import pytest

    from peerlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        experiment_module("telepathy")


def test_the_comparison_table(tmp_path: Path) -> None:
    fig = Figure(tmp_path / "search" / "search_cost.png", "Cost.",
                 "peerlab simulate search --seed 1 --out report/search")  # fmt: skip
    search = ExperimentReport("search", "Search", [
        {"architecture": "napster", "answered": 1.0, "messages/query": 26.5,
         "busiest node msgs/s": 178.0},
        {"architecture": "gnutella TTL 4", "answered": 0.96, "messages/query": 413.4,
         "busiest node msgs/s": 262.7},
    ], "text", [fig], [], "ab")  # fmt: skip
    res = ExperimentReport("resilience", "Resilience", [
        {"architecture": "napster", "answered, random": 1.0, "answered, targeted": 0.0},
    ], "text")  # fmt: skip
    md = compose([search, res], tmp_path, {"search": "peerlab simulate search --seed 1"})
    table = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    assert table["| **Efficient searching** (lecture)"].split(" | ")[1:] == [
        "+++", "+++", "---", "+ |"]  # fmt: skip
    assert table["| **Resilience to attacks** (lecture)"].split(" | ")[1:] == [
        "---", "---", "++?", "+ |"]  # fmt: skip
    assert table["| messages per query"].split(" | ")[1:] == [
        "26.5", "not measured", "413", "not measured |"]  # fmt: skip
    assert table["| queries answered (file exists)"].split(" | ")[1:3] == ["100%", "not measured"]
    assert table["| answered, 10% removed by importance"].split(" | ")[1] == "0%"
    assert "the BitTorrent experiment is not in this build" in md
    assert "![Cost.](search/search_cost.png)" in md
    assert "Reproduce: `peerlab simulate search --seed 1 --out report/search`" in md
    bt = ExperimentReport("bittorrent", "BitTorrent", [{"claim": "only slow in the beginning",
                                                          "measured": "x"}], "bt")  # fmt: skip
    assert "| only slow in the beginning | x |" in compose([bt], tmp_path, {})


def test_bittorrent_claims_from_its_summary_rows() -> None:
    from peerlab.simulate.report import bt_claims

    rows = [
        {"experiment": "flash crowd", "variant": "N=10", "leechers": 10, "median_s": 25.6,
         "client_server_median_s": 53.9},
        {"experiment": "flash crowd", "variant": "N=100", "leechers": 100, "median_s": 50.8,
         "client_server_median_s": 539.2},
        {"experiment": "free riders", "variant": "tit-for-tat: contributors", "median_s": 146.6},
        {"experiment": "free riders", "variant": "tit-for-tat: free riders", "median_s": 203.1},
    ]  # fmt: skip
    claims = {c["claim"]: c["measured"] for c in bt_claims(rows)}
    assert claims["efficient distribution"].startswith("100 leechers on one seed: median "
                                                       "download 51 s, against 539 s")  # fmt: skip
    assert "(x2.0); client-server 54 -> 539 s (x10.0)" in claims["only slow in the beginning"]
    assert claims["enforces contribution"] == (
        "tit-for-tat: free riders' median 203 s, contributors' 147 s")
    assert bt_claims([{"something": "else"}]) == []


def test_a_command_names_an_out_inside_the_working_directory_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peerlab.simulate.engine import command_line

    checkout = tmp_path / "clone"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    inside = command_line("growth", 1, checkout / "report" / "growth" / "3000", [3000])
    assert inside == "peerlab simulate growth --seed 1 --nodes 3000 --out report/growth/3000"
    elsewhere = tmp_path / "runs" / "g"
    assert command_line("search", 2, elsewhere).endswith(f" --out {elsewhere}")
    assert command_line("search", 2, Path("runs/s")).endswith(" --out runs/s")
