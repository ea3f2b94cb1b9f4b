"""``peerlab demo``'s Napster part: the lecture's search, a direct and a
firewalled download, fail-over; Ctrl-C during it leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO_TIMEOUT = 240.0
POLL = 0.1


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    home = tmp_path / "home"
    env.update(TMPDIR=str(tmp_path / "tmp"), COLUMNS="200", XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "state"))
    (tmp_path / "tmp").mkdir()
    return env


def _mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_demo_napster_part(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "peerlab.cli", "demo"], capture_output=True, text=True,
        timeout=DEMO_TIMEOUT, env=_env(tmp_path), stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    napster = out[out.index("Napster"):]
    for needle in (
        "search 'little toot'", "Filesize", "Bitrate", "Connection",
        "Maclean & Maclean - Little Toot.mp3", "4,005,062", "lefty", "Cable",
        "Andrews Sisters - Little Toot.mp3", "jane", "DSL",
        "jane connects out with SEND", "lefty (Cable)", "jane (DSL)",
        "logged in to server two", "fail-over to the second server",
    ):
        assert needle in napster, needle
    assert napster.count("Napster md5 matches; identical to the original, byte for byte") == 2
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _mentioning(str(tmp_path / "tmp")) == []


@pytest.mark.slow
def test_ctrl_c_in_the_napster_part_stops_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peerlab.cli", "demo"], stdout=f, stderr=subprocess.STDOUT,
            env=_env(tmp_path), stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT
        while "search 'little toot'" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline
            time.sleep(POLL)
        # 4 nodes, 2 index servers, 3 Napster peers.
        assert len(_mentioning(str(tmp_path / "tmp"))) == 9
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text(errors="replace")
    assert "interrupted" in text and "Traceback" not in text
    assert _mentioning(str(tmp_path / "tmp")) == []
    assert list((tmp_path / "tmp").iterdir()) == []
