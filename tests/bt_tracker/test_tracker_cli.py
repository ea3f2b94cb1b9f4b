"""``peerlab tracker`` as a process: ready line, HTTP and UDP served, the table
saved on SIGTERM and back after a restart, and every mistake one line."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from trackerkit import IH, peer_id, req

from peerlab.wire.tracker import (
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    Peer,
    decode_announce_response,
    decode_udp_response,
    encode_announce_query,
    encode_udp,
)

#: Seconds a tracker process may take to start or to stop.
PROCESS_S = 20.0


def argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "peerlab.cli.tracker", "--log-level", "warning",
            "--exit-with-parent", *extra]  # fmt: skip


def run(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(*extra), capture_output=True, text=True, timeout=PROCESS_S)


class TrackerProcess:
    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            argv(*extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], PROCESS_S)
        assert ready, "no ready line"
        self.line = self.proc.stdout.readline().strip()
        assert self.line.startswith("tracker listening on "), (self.line, self.stderr())
        words = self.line.split()
        self.http = next((w for w in words if w.startswith("http://")), "")
        self.udp = next((w for w in words if w.startswith("udp://")), "")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(PROCESS_S)


@pytest.fixture
def procs() -> Iterator[list[TrackerProcess]]:
    started: list[TrackerProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(PROCESS_S)


def http_announce(url: str, n: int) -> AnnounceResponse:
    query = encode_announce_query(req(n, compact=True))
    with urllib.request.urlopen(f"{url}?{query}", timeout=PROCESS_S) as resp:
        body = resp.read()
    result = decode_announce_response(body)
    assert isinstance(result, AnnounceResponse), result
    return result


def test_serves_saves_on_sigterm_and_restores(
    tmp_path: Path, procs: list[TrackerProcess]
) -> None:
    state = tmp_path / "state" / "tracker.json"
    first = TrackerProcess("--http-port", "0", "--udp-port", "0", "--state", str(state))
    procs.append(first)
    assert first.http.startswith("http://127.0.0.1:") and first.http.endswith("/announce")
    assert f"state {state}" in first.line
    assert http_announce(first.http, 1).peers == ()
    # UDP answers a BEP 15 connect.
    host, port = first.udp[len("udp://") :].split("/")[0].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(PROCESS_S)
        s.sendto(encode_udp(ConnectRequest(42)), (host, int(port)))
        reply = decode_udp_response(s.recv(2048))
    assert isinstance(reply, ConnectResponse) and reply.transaction_id == 42
    assert first.stop() == 0

    doc = json.loads(state.read_text())
    assert [s["info_hash"] for s in doc["swarms"]] == [IH.hex()]
    second = TrackerProcess("--http-port", "0", "--no-udp", "--state", str(state))
    procs.append(second)
    assert "1 swarms" in second.line
    got = http_announce(second.http, 2)
    assert got.peers == (Peer("127.0.0.1", 7001),)  # peer 1 survived the restart
    assert second.stop() == 0
    assert len(json.loads(state.read_text())["swarms"][0]["peers"]) == 2
    assert peer_id(2).hex() in state.read_text()


def one_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("peerlab tracker: ")
    return lines[0]


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(run("--http-port", str(port), "--no-udp", "--no-state"))
    assert line == f"peerlab tracker: HTTP port {port} on 127.0.0.1 is already in use"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        line = one_line(run("--udp-port", str(port), "--no-http", "--no-state"))
    assert line == f"peerlab tracker: UDP port {port} on 127.0.0.1 is already in use"


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    assert "info-hash" in one_line(run("--allow", "xyz", "--no-state"))
    assert "nothing to serve" in one_line(run("--no-http", "--no-udp", "--no-state"))
    bad_allow = tmp_path / "allow.txt"
    bad_allow.write_text("# hashes\n" + "ab" * 20 + "\nnot-a-hash\n")
    assert "line 3" in one_line(run("--allow-file", str(bad_allow), "--no-state"))
    assert "--http-port" in one_line(run("--http-port", "70000"), code=2)
    corrupt = tmp_path / "state.json"
    corrupt.write_text('{"format": "something else"}')
    line = one_line(run("--http-port", "0", "--udp-port", "0", "--state", str(corrupt)))
    assert "not a readable tracker state" in line
    assert corrupt.read_text() == '{"format": "something else"}'  # left alone


def test_allow_list_from_the_command_line(tmp_path: Path, procs: list[TrackerProcess]) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{IH.hex()}  # the test torrent\n")
    p = TrackerProcess("--http-port", "0", "--no-udp", "--no-state", "--allow-file", str(allow))
    procs.append(p)
    assert http_announce(p.http, 1).peers == ()
    query = encode_announce_query(req(1, info_hash=b"\x01" * 20))
    with urllib.request.urlopen(f"{p.http}?{query}", timeout=PROCESS_S) as resp:
        assert resp.read() == b"d14:failure reason20:unregistered torrente"
    assert p.stop() == 0
    assert os.path.exists(allow)
