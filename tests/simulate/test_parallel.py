"""``--jobs``: a run's independent networks (and the report's scenarios) in
several processes, with the very files one process writes."""

from __future__ import annotations

import contextlib
import csv
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peerlab.errors import ConfigError
from peerlab.simulate.engine import run_scenario
from peerlab.simulate.parallel import Piece, check_jobs, run_pieces


def test_pieces_come_back_in_their_order_whatever_ran_first() -> None:
    # The costs put the last piece first in line; the results keep the list's order.
    pieces = [Piece(f"p{i}", operator.mul, (i, 10), cost=i) for i in range(5)]
    heard: list[tuple[str, int]] = []
    got = run_pieces(pieces, 2, lambda what, n: heard.append((what, n)))
    assert got == [0, 10, 20, 30, 40]
    assert heard[0] == ("started p4, p3", 0)  # the costliest two first
    assert sorted(n for _, n in heard[1:]) == [1, 2, 3, 4, 5]
    assert {what for what, _ in heard[1:]} == {f"p{i} done" for i in range(5)}
    # In turn: each piece is announced as it starts, with how many went before.
    heard.clear()
    assert run_pieces(pieces, 1, lambda what, n: heard.append((what, n))) == got
    assert heard == [(f"p{i}", i) for i in range(5)]


def test_a_failing_piece_fails_the_run_with_its_own_error() -> None:
    pieces = [Piece("fine", operator.add, (1, 2)), Piece("bad", check_jobs, (0,))]
    with pytest.raises(ConfigError, match="jobs must be"):
        run_pieces(pieces, 2)
    with pytest.raises(ConfigError, match="jobs must be"):
        run_pieces(pieces, 1)


@pytest.mark.parametrize("jobs", [0, 65, True, 1.5])
def test_jobs_out_of_range_is_a_config_error(jobs: object) -> None:
    with pytest.raises(ConfigError):
        check_jobs(jobs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_processes_write_what_one_writes(tiny: Path, tmp_path: Path) -> None:
    # The tiny scenario with every architecture, two-tier included.
    spec = tmp_path / "four.toml"
    spec.write_text(tiny.read_text().replace('"gnutella"]', '"gnutella", "two-tier"]'))
    one = run_scenario(str(spec), out=tmp_path / "one")
    two = run_scenario(str(spec), out=tmp_path / "two", jobs=2)
    assert one.reports[0].trace_digest == two.reports[0].trace_digest
    for name in ("digest.txt", "search.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    rows = list(csv.DictReader((tmp_path / "two" / "search.csv").open()))
    # 2 sizes x (napster, farm, gnutella TTL 1 and 3, two-tier TTL 1 and 3)
    assert len(rows) == 2 * 6
    assert {r["architecture"] for r in rows} == {"napster", "napster-farm", "gnutella", "two-tier"}


def _peerlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "peerlab.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_cli_jobs_and_its_resources(tiny: Path, tmp_path: Path) -> None:
    done = _peerlab("simulate", str(tiny), "--jobs", "2", "--resources", "--out", "run",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(the largest of up to 2 processes)" in done.stdout
    with (tmp_path / "run" / "resources.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["nodes"] == "24 40" and row["jobs"] == "2"
    # The CPU counts the processes that measured the networks, not only
    # the one that waited for them.
    assert float(row["cpu_s"]) > 0.5 * float(row["wall_s"])


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_cli_refuses_a_bad_jobs_count(tiny: Path, tmp_path: Path, value: str) -> None:
    done = _peerlab("simulate", str(tiny), "--jobs", value, cwd=tmp_path)
    assert done.returncode == 2
    assert "--jobs" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "simulate-tiny").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("to_group", "signum"),
    [(True, signal.SIGINT), (False, signal.SIGINT), (False, signal.SIGTERM)],
    ids=["terminal", "main-process", "sigterm"],
)
def test_ctrl_c_stops_every_process_at_once(tmp_path: Path, to_group: bool,
                                            signum: int) -> None:  # fmt: skip
    # 3,000-peer networks: each takes a minute or so, so the run is in its
    # first two when SIGINT arrives -- at the whole process group, as a
    # terminal sends Ctrl-C, or at the main process alone (kill -INT): the
    # workers are ended then too, not waited for.  So does SIGTERM (kill PID),
    # which the workers would otherwise outlive.
    proc = subprocess.Popen(
        [sys.executable, "-m", "peerlab.cli.main", "simulate", "growth", "--nodes", "3000",
         "--jobs", "2", "--out", "run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(4.0)
        assert proc.poll() is None
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=20)
        # ... and no worker is left running (a zombie, waiting to be reaped
        # by init now that its parent is gone, runs nothing).
        deadline = time.monotonic() + 5.0
        while _running_in_group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _running_in_group(proc.pid)
    finally:
        # the whole group, whatever the main process did: nothing outlives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert left == []
    if signum == signal.SIGINT:
        assert proc.returncode == 130
        assert "interrupted" in err
    else:
        assert proc.returncode == 143  # 128 + SIGTERM, as the shell reports it
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "search.csv").exists()


def _running_in_group(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that are not zombies (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after it.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(entry.name))
    return found
