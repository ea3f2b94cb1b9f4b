"""``peerlab demo`` as the tests run it (tests/node, tests/gnutella_demo,
tests/napster_client): in a subprocess with its own temporary folder, so that
what it leaves behind (files, processes) can be checked, and interrupted with
Ctrl-C once it is under way.  Every wait is bounded; none is asserted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Bound on one demo run (its parts take well under a minute each).
DEMO_TIMEOUT = 240.0
#: Seconds the demo gets to stop after Ctrl-C.
STOP_TIMEOUT = 60.0
POLL = 0.1
#: The exit status of a command a user stopped with Ctrl-C (128 + SIGINT).
INTERRUPTED = 130


def demo_env(tmp_path: Path, columns: int = 200) -> dict[str, str]:
    """No PEERLAB_* variables, per-user folders under ``tmp_path/home`` and the
    demo's temporary folder ``tmp_path/tmp`` (created empty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    home = tmp_path / "home"
    env.update(TMPDIR=str(tmp_path / "tmp"), COLUMNS=str(columns),
               XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               XDG_STATE_HOME=str(home / "state"))  # fmt: skip
    (tmp_path / "tmp").mkdir()
    return env


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def run_demo(tmp_path: Path, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """``peerlab demo ARGS`` to the end; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "peerlab.cli", "demo", *args], capture_output=True, text=True,
        timeout=DEMO_TIMEOUT, env=demo_env(tmp_path, columns), stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_left_nothing(tmp_path: Path) -> None:
    """The demo's temporary folder is empty and no process still uses it."""
    assert list((tmp_path / "tmp").iterdir()) == []
    assert processes_mentioning(str(tmp_path / "tmp")) == []


def assert_ctrl_c_stops_everything(
    tmp_path: Path, args: list[str], marker: str, processes: int, columns: int = 200
) -> None:
    """Start ``peerlab demo ARGS``; once its output shows ``marker`` and
    ``processes`` processes use its temporary folder, Ctrl-C: it says it was
    interrupted (no traceback), exits 130, and leaves nothing behind."""
    out = tmp_path / "demo.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peerlab.cli", "demo", *args], stdout=f,
            stderr=subprocess.STDOUT, env=demo_env(tmp_path, columns), stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT
        while marker not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, f"no {marker!r} in {DEMO_TIMEOUT:g} s"
            time.sleep(POLL)
        running = processes_mentioning(str(tmp_path / "tmp"))
        assert len(running) == processes, running
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT) == INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text(errors="replace")
    assert "interrupted" in text and "Traceback" not in text
    assert_left_nothing(tmp_path)
