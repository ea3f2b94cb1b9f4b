"""Two real nodes on 127.0.0.1: B searches A and downloads from it, all via the CLI."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerlab.apps.media import write_mp3
from peerlab.wire.urn import sha1_urn


def make_music(folder: Path) -> dict[str, Path]:
    return {
        "toot": write_mp3(folder / "Maclean & Maclean - Little Toot.mp3", title="Little Toot",
                          artist="Maclean & Maclean", album="The Gross Manual", genre="Comedy",
                          seconds=40, bitrate_kbps=320, seed=11),
        "ohio": write_mp3(folder / "CSNY - Ohio.mp3", title="Ohio",
                          artist="Crosby, Stills, Nash And Young", album="4 Way Street",
                          genre="Rock", seconds=5, seed=12),
    }


def one_error_line(p: Any, needle: str) -> None:
    assert p.returncode != 0, p.stdout
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("peerlab: ") and needle in lines[0], lines[0]
    assert "Traceback" not in p.stderr


def test_b_searches_and_downloads_from_a(
    tmp_path: Path, start_node: Callable[..., Any], run_cli: Callable[..., Any]
) -> None:
    music = make_music(tmp_path / "music")
    a = start_node("a", "--share", str(tmp_path / "music"))
    a.wait_ready(files=2)
    a_addr = a.peer_address
    b = start_node("b", "--peer", a_addr)
    b.wait_ready()

    # Search by a word of the file and by the artist tag only.
    results = b.json("search", "toot")
    assert [r["name"] for r in results] == [music["toot"].name]
    toot = results[0]
    assert toot["sources"] == [a_addr] and toot["artist"] == "Maclean & Maclean"
    want_urn = sha1_urn(hashlib.sha1(music["toot"].read_bytes()).digest())
    assert toot["urn"] == want_urn
    by_artist = b.json("search", "--artist", "crosby")
    assert [r["name"] for r in by_artist] == [music["ohio"].name]
    assert b.json("search", "--artist", "toot") == []  # a title word, not an artist's
    # Ids are stable for the session: the same file keeps its id.
    assert b.json("search", "little", "toot")[0]["id"] == toot["id"]

    done = b.json("download", str(toot["id"]), "--wait")
    d = done["download"]
    assert d["status"] == "complete", d
    path = Path(d["path"])
    assert path.parent == tmp_path / "b" / "downloads"
    assert path.read_bytes() == music["toot"].read_bytes()

    transfers = b.json("transfers")
    (row,) = transfers["downloads"]
    assert row["status"] == "complete" and row["done"] == music["toot"].stat().st_size
    uploads = a.json("transfers")["uploads"]
    assert sum(u["sent"] for u in uploads) == music["toot"].stat().st_size
    assert all(u["status"] == "complete" for u in uploads)
    status = b.json("status")
    assert status["counters"]["transfer.bytes_fetched"] == music["toot"].stat().st_size

    # The table view has the lecture's columns and closing line.
    table = b.cli("transfers").stdout
    for column in ("File", "Size", "Peer", "Status", "Progress", "Rate", "Time Left"):
        assert column in table
    assert "File Complete!" in table
    assert "Concurrent Downloads: 0  Concurrent Uploads: 0" in table

    # Download by URN (the other file), sources found by asking the peers.
    ohio_urn = sha1_urn(hashlib.sha1(music["ohio"].read_bytes()).digest())
    done = b.json("download", ohio_urn, "--wait")
    assert Path(done["download"]["path"]).read_bytes() == music["ohio"].read_bytes()

    # Browse A through B's node, and directly without a node.
    listed = b.json("browse", a_addr)
    assert sorted(r["name"] for r in listed) == sorted(p.name for p in music.values())
    p = run_cli("--data-dir", str(tmp_path / "nobody"), "browse", a_addr, "--json")
    assert p.returncode == 0, p.stderr
    assert sorted(r["urn"] for r in json.loads(p.stdout)) == sorted(r["urn"] for r in listed)


def test_mistakes_with_a_running_node_are_one_line(
    tmp_path: Path, start_node: Callable[..., Any], run_cli: Callable[..., Any]
) -> None:
    a = start_node("a")
    a.wait_ready()
    one_error_line(a.cli("download", "urn:sha1:NOTBASE32", check=False), "not a result id or urn")
    one_error_line(a.cli("download", "42", check=False), "unknown result id 42")
    one_error_line(a.cli("pause", "ZZZZZZZZ", check=False), "no download 'ZZZZZZZZ'")
    one_error_line(a.cli("peer", "add", "nohost", check=False), "HOST:PORT")
    one_error_line(a.cli("share", "add", str(tmp_path / "nope"), check=False), "no such folder")
    one_error_line(a.cli("search", "--title", "x", "y", check=False), "either WORDS")

    # A second node on the same data dir is refused, and the first keeps running.
    p = run_cli("--data-dir", str(a.data_dir), "node", "--listen-port", "0")
    one_error_line(p, "in use by another peerlab node")

    # The peer port is taken: one line, non-zero, no node left behind.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run_cli("--data-dir", str(tmp_path / "c"), "node", "--listen-port", str(port))
        one_error_line(p, f"cannot listen for peers on 127.0.0.1:{port}")
        assert "already in use" in p.stderr
        p = run_cli("--data-dir", str(tmp_path / "c"), "node", "--listen-port", "0",
                    "--control-port", str(port))
        one_error_line(p, f"control port 127.0.0.1:{port} is already in use")
    assert not (tmp_path / "c" / "control.json").exists()
    assert a.json("status")["pid"] == a.proc.pid


def test_share_commands_go_through_the_running_node(
    tmp_path: Path, start_node: Callable[..., Any]
) -> None:
    a = start_node("a")
    a.wait_ready()
    music = make_music(tmp_path / "music")
    p = a.cli("share", "add", str(tmp_path / "music"))
    assert "sharing" in p.stdout and "scan done" in p.stdout
    listed = a.json("share", "list")
    assert sorted(f["name"] for f in listed["files"]) == sorted(m.name for m in music.values())
    assert a.json("status")["shares"]["files"] == 2
    report = a.json("share", "scan")
    assert report["unchanged"] == 2 and report["hashed"] == 0


def test_sigint_stops_a_node_cleanly(tmp_path: Path, start_node: Callable[..., Any]) -> None:
    a = start_node("a")
    a.wait_ready()
    a.signal(signal.SIGINT)
    assert a.wait() == 0
    assert not (a.data_dir / "control.json").exists()
    assert "node stopped" in a.output()
    assert "Traceback" not in a.output()


def test_node_never_shares_its_own_files(tmp_path: Path, start_node: Callable[..., Any]) -> None:
    # The data dir lies inside the shared folder: the token must not leak.
    shared = tmp_path / "everything"
    music = make_music(shared / "music")
    a = start_node("everything/data", "--share", str(shared))
    a.wait_ready(files=3)
    assert (a.data_dir / "control.json").exists() and (a.data_dir / "node.log").exists()
    names = sorted(f["name"] for f in a.json("share", "list")["files"])
    # (data.out is this test's capture of the node's output, beside its data dir.)
    assert names == sorted([p.name for p in music.values()] + ["data.out"])
    assert a.json("share", "scan")["files"] == 3
