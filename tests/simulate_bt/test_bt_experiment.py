"""The BitTorrent experiments (issue 7 item 4): the baselines are exact, the
configuration is checked, swarms behave as the engine's policies say, and the
same seed gives the same trace digest and the same CSV bytes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peerlab.errors import ConfigError
from peerlab.simulate.bittorrent import (
    LINK_CLASSES,
    BtConfig,
    LinkClass,
    SwarmSpec,
    assign_links,
    client_server_times,
    p2p_lower_bound,
    run,
    run_swarm,
)

KIB = 1024

#: A small scenario: every experiment, a few leechers, a small file.
TINY: dict[str, Any] = {
    "bittorrent": {
        "scenario": "tiny.toml",
        "file_size": 128 * KIB,
        "sizes": [4, 6],
        "free_riders": {"leechers": 5, "share": 0.4, "file_size": 128 * KIB, "runs": 2},
        "pickers": {"leechers": 4, "strategies": ["rarest", "sequential"],
                    "seed_leaves_after": 1.0},
    }
}


def test_client_server_baseline_is_processor_sharing() -> None:
    # two clients at once share 10 B/s: both finish 100 B at 20 s
    assert client_server_times(100, 10, [0, 0], [1e9, 1e9]) == [20.0, 20.0]
    # alone from 0 to 5 (50 B), then halves: A done at 15, B alone after
    assert client_server_times(100, 10, [0, 5], [1e9, 1e9]) == pytest.approx([15.0, 15.0])
    # max-min fair under the downlinks: a 2 B/s client leaves 8 B/s to the other
    a, b = client_server_times(80, 10, [0, 0], [2, 1e9])
    assert b == pytest.approx(10.0)  # 80 B at 8 B/s
    assert a == pytest.approx(40.0)  # 80 B at 2 B/s
    # a late arrival after everyone is done waits for nobody
    assert client_server_times(10, 10, [0, 100], [1e9, 1e9]) == pytest.approx([1.0, 1.0])
    # N clients: N * S / U for everyone
    n = 50
    assert client_server_times(1000, 100, [0] * n, [1e9] * n) == pytest.approx([n * 10.0] * n)


def test_p2p_lower_bound_takes_the_tightest_constraint() -> None:
    # the seed must send one copy
    assert p2p_lower_bound(100, 10, [1000], [1000]) == 10.0
    # the slowest downlink
    assert p2p_lower_bound(100, 1000, [1000], [5]) == 20.0
    # N copies through all uplinks together: 4 * 100 / (10 + 4 * 5) = 13.33
    assert p2p_lower_bound(100, 10, [5] * 4, [1e9] * 4) == pytest.approx(400 / 30 + 0.0)
    assert p2p_lower_bound(100, 10, [], []) == 0.0


def test_link_classes_are_assigned_in_their_shares() -> None:
    names = assign_links([("dsl", 0.5), ("cable", 0.4), ("t1", 0.1)], 30, random.Random(1))
    assert Counter(names) == {"dsl": 15, "cable": 12, "t1": 3}
    # largest remainder: 7 * (0.5, 0.4, 0.1) = 3.5, 2.8, 0.7 -> 3 + 3 + 1
    names = assign_links([("dsl", 0.5), ("cable", 0.4), ("t1", 0.1)], 7, random.Random(1))
    assert Counter(names) == {"dsl": 3, "cable": 3, "t1": 1}
    assert assign_links([("dsl", 1.0)], 0, random.Random(1)) == []


def test_configuration_defaults_and_errors() -> None:
    cfg = BtConfig.parse({})
    assert cfg.sizes == (10, 30, 100) and cfg.seed_link == "t1"
    assert cfg.link("dsl") == LINK_CLASSES["dsl"]
    # a whole scenario: its [bittorrent] table is used, other keys ignored
    cfg = BtConfig.parse({"architecture": "bittorrent", "bittorrent": {"sizes": [3]}})
    assert cfg.sizes == (3,)
    # a class is added or overridden field by field
    cfg = BtConfig.parse({"bittorrent": {"link_classes": {"dsl": {"up": 1000.0},
                                                          "lan": {"up": 1e6, "down": 1e6}},
                                         "seed_link": "lan"}})
    assert cfg.link("dsl").up == 1000.0 and cfg.link("dsl").down == LINK_CLASSES["dsl"].down
    assert cfg.link("lan").latency == 0.0
    # as the scenario engine hands it: the section merged over the scenario's
    # keys, the engine's link classes and reproducing command
    engine = SimpleNamespace(link_classes={"dsl": SimpleNamespace(up=1, down=2, latency=0.5)})
    cfg = BtConfig.parse({"name": "bittorrent", "seed": 1, "architecture": "bittorrent",
                          "population": {"nodes": 5}, "sizes": [3], "_scenario": engine,
                          "_command": "peerlab simulate bittorrent --seed 1 --out r/bt"})
    assert cfg.sizes == (3,) and cfg.link("dsl") == LinkClass("dsl", 1.0, 2.0, 0.5)
    assert cfg.command == "peerlab simulate bittorrent --seed 1 --out r/bt"
    bad: list[dict[str, Any]] = [
        {"sizes": [10], "colour": 1},
        {"seed_link": "isdn"},
        {"leecher_links": {"dsl": 0}},
        {"leecher_links": {"fibre": 1.0}},
        {"sizes": []},
        {"sizes": [100_000]},
        {"file_size": "big"},
        {"free_riders": {"chokers": ["grudger"]}},
        {"free_riders": {"share": 1.5}},
        {"free_riders": {"leave_when_done": 1}},
        {"free_riders": {"runs": 0}},
        {"free_riders": {"runs": 2.5}},
        {"free_riders": {"runs": 51}},
        {"pickers": {"strategies": ["endgame"]}},
        {"link_classes": {"dsl": {"up": -1.0}}},
        {"link_classes": {"dsl": {"up": float("nan")}}},
        {"link_classes": {"dsl": {"loss": 0.1}}},  # not modelled here
        {"link_classes": {"lan": {"up": 1e6}}},  # a new class names up and down
        {"free_riders": {"chokers": 5}},
        {"free_riders": {"leechrs": 5}},
        {"pickers": {"strategy": ["rarest"]}},
        {"leecher_links": {"dsl": float("inf")}},
    ]
    for table in bad:
        with pytest.raises(ConfigError):
            BtConfig.parse({"bittorrent": table})


def test_a_flash_crowd_completes_and_the_leechers_serve_each_other() -> None:
    cfg = BtConfig.parse({"bittorrent": {"file_size": 256 * KIB}})
    r = run_swarm(cfg, SwarmSpec("flash-8", 8), seed=5)
    size = 256 * KIB
    assert r.completed == 8 and len(r.times()) == 8
    assert all(t > 0 for t in r.times())
    # every leecher got the whole file (verified pieces), and the seed sent
    # far less than the eight copies: the rest came from leechers
    assert all(p.downloaded >= size for p in r.peers)
    assert r.seed_uploaded < 6 * size
    assert sum(p.uploaded for p in r.peers) + r.seed_uploaded >= 8 * size
    # the samples end with everybody done and every piece in 8 copies
    last = r.samples[-1]
    assert last.complete == 8 and last.distinct == r.piece_count == 16
    assert last.rarest == 8 and last.pieces == 8 * 16
    assert r.spread_at is not None and r.spread_at <= r.seed_uploaded
    # links follow the shares: 8 * (0.5, 0.4, 0.1) -> 4, 3, 1
    assert Counter(p.link for p in r.peers) == {"dsl": 4, "cable": 3, "t1": 1}


def test_each_leechers_downlink_is_accounted_until_it_completes(tmp_path: Path) -> None:
    # a modem's downlink is its bottleneck: busy all the time it downloads,
    # carrying the file, its duplicates, the other messages and the headers
    raw = {"bittorrent": {"file_size": 256 * KIB, "sizes": [8],
                          "leecher_links": {"modem56k": 0.25, "cable": 0.75},
                          "free_riders": {"leechers": 0}, "pickers": {"leechers": 0}}}
    cfg = BtConfig.parse(raw)
    r = run_swarm(cfg, SwarmSpec("flash-8", 8), seed=4)
    size = 256 * KIB
    assert r.completed == 8
    for p in r.peers:
        assert p.download_time is not None
        # the file and every duplicate crossed the downlink, with headers on top
        assert p.down_bytes > size + p.duplicate_bytes
        # a downlink cannot carry more than its rate allows in the time taken
        assert p.down_bytes <= cfg.link(p.link).down * (p.download_time + 1.0)
        assert p.duplicate_bytes % (16 * KIB) == 0 and p.duplicate_bytes <= p.downloaded - size
    modems = [p for p in r.peers if p.link == "modem56k"]
    assert len(modems) == 2
    for p in modems:
        assert p.down_bytes > 0.9 * cfg.link("modem56k").down * (p.download_time or 0)
    out = tmp_path / "bt"
    report = run(raw, 4, out, lambda w, f: None)
    md = report.markdown
    assert "### Where the leechers' downlinks went (N=8)" in md
    section = md.split("### Where the leechers' downlinks went")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith(("| cable", "| modem"))]
    assert [row.split(" | ")[1] for row in rows] == ["6", "2"]
    assert "Of what the modem56k leechers' downlinks carried, the least was the file" in md
    header = (out / "bt_flash_crowd.csv").read_text().splitlines()[0]
    assert header.endswith(",down_bytes,duplicate_bytes,endgame_requests")


def test_free_riders_upload_nothing_and_contributors_leave_when_done() -> None:
    cfg = BtConfig.parse({})
    spec = SwarmSpec("riders", 6, rider_share=0.5, leave_when_done=True, file_size=128 * KIB)
    r = run_swarm(cfg, spec, seed=2)
    riders = [p for p in r.peers if p.rider]
    assert len(riders) == 3 and r.completed == 6
    assert all(p.uploaded == 0 for p in riders)
    assert all(p.counters.get("unchokes_regular", 0) == 0 for p in riders)
    assert sum(p.uploaded for p in r.peers if not p.rider) > 0
    # every uplink carried something (requests at least), no more than its
    # rate allows in the time it took; a free rider's only its requests, HAVEs
    # and headers, the contributors' blocks besides
    for p in r.peers:
        assert 0 < p.up_bytes <= cfg.link(p.link).up * ((p.download_time or 0) + 1.0)
    assert all(p.up_bytes < 16 * KIB for p in riders)
    assert sum(p.up_bytes for p in r.peers if not p.rider) > 6 * 16 * KIB
    # contributors that left hold no pieces any more: the last sample counts
    # only those still in the swarm
    assert r.samples[-1].pieces < 6 * r.piece_count


def test_the_free_rider_findings_follow_the_figures() -> None:
    from peerlab.simulate.bittorrent_report import rider_findings

    # (median ratio, swarms where riders were slower, swarms, uplink busy:
    # contributors, free riders)
    text = " ".join(rider_findings({"tit-for-tat": (1.8, 5, 5, 0.97, 0.04),
                                              "random": (0.81, 0, 5, 0.95, 0.10)}))
    assert "it took 1.80× the contributors' time (longer in 5 of 5 swarms)" in text
    assert "free riders finished *sooner*: 0.81× the contributors' time (in 5 of 5 swarms)" in text
    assert "busy 95% of its download time, a free rider's 10%" in text
    text = " ".join(rider_findings({"random": (1.05, 1, 1, 0.9, 0.1)}))
    assert "served like everyone else: 1.05×" in text and "sooner" not in text
    assert rider_findings({"random": (float("nan"), 0, 0, 0.0, 0.0)}) == []


def test_one_free_rider_swarm_per_choker_has_no_spread_columns(tmp_path: Path) -> None:
    raw = {"bittorrent": {"file_size": 64 * KIB, "sizes": [2], "pickers": {"leechers": 0},
                          "free_riders": {"leechers": 4, "share": 0.5, "file_size": 64 * KIB,
                                          "runs": 1, "chokers": ["random"]}}}
    md = run(raw, 3, tmp_path / "bt", lambda w, f: None).markdown
    table = [line for line in md.split("### Tit-for-tat against free riders")[1].splitlines()
             if line.startswith("|")]
    assert table[0] == ("| choker | contributors (s) | free riders (s) | free riders / "
                        "contributors | uplink busy: contributors | free riders |")
    assert table[1] == "|---" + "|---:" * 5 + "|"
    assert table[2].startswith("| random unchoke | ") and table[2].count("|") == 7
    assert "Median download times; *uplink busy*" in md and "swarms" not in table[2]


def test_a_sequential_swarm_whose_seed_leaves_early_is_stuck() -> None:
    cfg = BtConfig.parse({"bittorrent": {"file_size": 256 * KIB, "stall_timeout": 30.0}})
    spec = SwarmSpec("seq", 6, strategy="sequential", seed_leaves_after=1.0)
    r = run_swarm(cfg, spec, seed=3)
    assert r.seed_left_at is not None
    size = 256 * KIB
    assert size <= r.seed_uploaded < 1.5 * size
    # the last pieces never left the seed: nobody completes, and the run
    # stopped once no piece moved for the stall timeout, long before the limit
    assert r.completed == 0
    assert r.samples[-1].distinct < r.piece_count
    assert r.end < r.seed_left_at + 30.0 + 60.0


@pytest.mark.slow
def test_equal_seeds_give_equal_digests_and_csv_bytes(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    a = run(TINY, 9, tmp_path / "a" / "bittorrent", lambda w, f: seen.append((w, f)))
    # the same in two processes (``--jobs 2``): each swarm in a process of its own
    heard: list[tuple[str, float]] = []
    b = run({**TINY, "_jobs": 2}, 9, tmp_path / "b" / "bittorrent",
            lambda w, f: heard.append((w, f)))
    # the costliest first: 6 leechers of 128 KiB, then 5 (ties in order)
    assert heard[0] == ("bittorrent: started flash-6, riders-tit-for-tat", 0.0)
    assert heard[-1][1] == 1.0 and len(heard) == 1 + 8  # the 2 + 2 x 2 + 2 swarms
    assert a.trace_digest == b.trace_digest and len(a.trace_digest) == 32
    assert a.rows == b.rows and a.markdown == b.markdown
    for fa, fb in zip(a.figures, b.figures, strict=True):
        assert fa.path.read_bytes() == fb.path.read_bytes()
    assert [p.name for p in a.csv] == ["bt_flash_crowd.csv", "bt_timeline.csv",
                                       "bt_free_riders.csv", "bt_summary.csv"]
    for pa, pb in zip(a.csv, b.csv, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    # progress went from 0 to 1
    assert seen[-1][1] == pytest.approx(1.0)
    assert all(0.0 <= f <= 1.0 for _, f in seen)
    # figures: PNGs in out, each with its reproducing command (the scenario
    # engine puts them under the section)
    assert [f.path.name for f in a.figures] == [
        "bt_download_times.png", "bt_scaling.png", "bt_completion.png",
        "bt_free_riders.png", "bt_pieces.png"]
    for fig in a.figures:
        assert fig.path.parent == tmp_path / "a" / "bittorrent"
        assert fig.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig.command == "peerlab simulate tiny.toml --seed 9"
    assert "### Flash crowd" in a.markdown and "### Tit-for-tat" in a.markdown
    # the rows have the same columns, one per variant
    assert len({tuple(r) for r in a.rows}) == 1
    assert [r["variant"] for r in a.rows][:2] == ["N=4", "N=6"]
    summary = (tmp_path / "a" / "bittorrent" / "bt_summary.csv").read_text().splitlines()
    assert summary[0].startswith("experiment,variant,leechers,completed,median_s")
    assert len(summary) == 1 + len(a.rows)
    # the free riders' swarms ran twice per choker: both runs in the CSV and
    # in the table's swarms column
    riders = (tmp_path / "a" / "bittorrent" / "bt_free_riders.csv").read_text().splitlines()
    assert riders[0] == ("choker,run,peer,link,free_rider,download_s,uploaded,downloaded,"
                         "up_bytes")
    assert Counter(tuple(line.split(",")[:2]) for line in riders[1:]) == {
        ("tit-for-tat", "1"): 5, ("tit-for-tat", "2"): 5, ("random", "1"): 5, ("random", "2"): 5}
    assert "| tit-for-tat | 2 | " in a.markdown and "| random unchoke | 2 | " in a.markdown
    rider_rows = {r["variant"]: r for r in a.rows if r["experiment"] == "free riders"}
    assert rider_rows["tit-for-tat: free riders"]["leechers"] == 4  # 2 of 5, twice
    assert rider_rows["tit-for-tat: contributors"]["leechers"] == 6
    # another seed, another run
    c = run(TINY, 10, tmp_path / "c" / "bittorrent", lambda w, f: None)
    assert c.trace_digest != a.trace_digest


def test_the_shipped_scenarios_parse() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2] / "src" / "peerlab" / "simulate" / "scenarios"
    paths = sorted(root.glob("bittorrent*.toml"))
    assert [p.name for p in paths] == ["bittorrent.toml", "bittorrent_large.toml",
                                       "bittorrent_modems.toml"]
    for path in paths:
        scenario = tomllib.loads(path.read_text())
        assert scenario["architecture"] == "bittorrent"
        cfg = BtConfig.parse(scenario)
        # the command under each figure names the file itself
        assert cfg.scenario == f"src/peerlab/simulate/scenarios/{path.name}"
    large = BtConfig.parse(tomllib.loads((root / "bittorrent_large.toml").read_text()))
    assert max(large.sizes) == 1000
    # the default scenario writes out the defaults
    assert BtConfig.parse(tomllib.loads((root / "bittorrent.toml").read_text())) == BtConfig()


def test_the_comparison_links_the_large_run_once_it_is_committed(tmp_path: Path) -> None:
    from peerlab.simulate.base import ExperimentReport
    from peerlab.simulate.report import compose

    bt = ExperimentReport("bittorrent", "BitTorrent", [{"claim": "c", "measured": "x"}], "bt")
    assert "bittorrent_large" not in compose([bt], tmp_path, {})
    (tmp_path / "bittorrent_large").mkdir()
    (tmp_path / "bittorrent_large" / "bittorrent.md").write_text("# large\n")
    md = compose([bt], tmp_path, {})
    assert "[bittorrent_large/bittorrent.md](bittorrent_large/bittorrent.md)" in md
    assert "scenarios/bittorrent_large.toml --seed 1" in md
