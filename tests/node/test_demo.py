"""``peerlab demo`` (what ``make demo`` runs): exits 0 after a verified
multi-source download, and Ctrl-C at any moment leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Bounds on the waits below (never asserted as timings).
DEMO_TIMEOUT = 240.0
POLL = 0.1


def demo_env(tmp_path: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    env.update(TMPDIR=str(tmp_path / "tmp"), COLUMNS="200", XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "state"))
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


def test_demo_exits_0_after_a_verified_multi_source_download(tmp_path: Path, home: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "peerlab.cli", "demo"], capture_output=True, text=True,
        timeout=DEMO_TIMEOUT, env=demo_env(tmp_path, home), stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SHA-1 matches urn:sha1:" in p.stdout
    assert "identical to the original, byte for byte" in p.stdout
    assert "from 3 sources at once" in p.stdout
    assert "Concurrent Downloads: 0  Concurrent Uploads: 0" in p.stdout
    assert list((tmp_path / "tmp").iterdir()) == []  # its temp folder is gone
    assert processes_mentioning(str(tmp_path / "tmp")) == []


def test_ctrl_c_stops_the_demo_and_every_node(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "demo.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peerlab.cli", "demo"], stdout=f, stderr=subprocess.STDOUT,
            env=demo_env(tmp_path, home), stdin=subprocess.DEVNULL,
        )
    try:
        # Interrupt once the nodes run (the downloader is told its peers then).
        deadline = time.monotonic() + DEMO_TIMEOUT
        while "listens on" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline
            time.sleep(POLL)
        nodes = processes_mentioning(str(tmp_path / "tmp"))
        assert len(nodes) == 4, nodes
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text(errors="replace")
    assert "interrupted" in text and "Traceback" not in text
    assert processes_mentioning(str(tmp_path / "tmp")) == []
    assert list((tmp_path / "tmp").iterdir()) == []

