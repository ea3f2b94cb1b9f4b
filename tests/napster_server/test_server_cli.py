"""``peerlab napster-server``: mistakes are one line on stderr, never a
traceback; a running server answers and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from napserverkit import WAIT, free_port

from peerlab.cli.napster_server import display_database

STANDALONE = [sys.executable, "-m", "peerlab.cli.napster_server"]
VIA_PEERLAB = [sys.executable, "-m", "peerlab.cli", "napster-server"]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("prefix", [STANDALONE, VIA_PEERLAB], ids=["standalone", "peerlab"])
def test_port_in_use_is_one_line(prefix: list[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run([*prefix, "--port", str(port), "--database",
                    f"sqlite:{tmp_path / 'index.db'}", "--log-level", "error"])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "already in use" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("database", "words"),
    [
        ("mysql://db/napster", "unknown scheme"),
        ("sqlite:", "empty SQLite path"),
        ("postgresql://postgres@127.0.0.1:1/none", "cannot connect"),
    ],
)
def test_bad_database_is_one_line(database: str, words: str) -> None:
    proc = run([*STANDALONE, "--port", "0", "--database", database, "--log-level", "error"])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_mistake_is_one_line() -> None:
    proc = run([*STANDALONE, "--port", "70000"])
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    from peerlab.wire.napster import FrameDecoder, Login, LoginAck, Motd, decode, encode

    port = free_port()
    motd = tmp_path / "motd.txt"
    motd.write_text("first line\nsecond line\n")
    proc = subprocess.Popen(
        [*VIA_PEERLAB, "--port", str(port), "--database", f"sqlite:{tmp_path / 'i.db'}",
         "--motd-file", str(motd), "--password-cost", "4", "--log-level", "error"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"listening on 127.0.0.1:{port}" in proc.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(encode(Login("cli_user", "pw", 6699, "x", 7)))  # type: ignore[arg-type]
            decoder, got = FrameDecoder(), []
            while len(got) < 3:
                data = s.recv(65536)
                assert data
                got += [decode(f.type, f.payload) for f in decoder.feed(data)]
        assert got[:3] == [LoginAck("anon@peerlab"), Motd("first line"), Motd("second line")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_display_database_masks_the_password() -> None:
    assert display_database("postgresql://nap:secret@db:5432/napster") == (
        "postgresql://nap:***@db:5432/napster")
    assert display_database("sqlite:/x/y.db") == "sqlite:/x/y.db"
