"""The BitTorrent client inside ``peerlab node`` (issue 6, item 6), driven by
the CLI against node processes on 127.0.0.1: ``torrent add FILE|MAGNET``,
progress in ``peerlab transfers``, ``torrent list|stop|resume|remove``, and
stop/resume surviving a restart and a ``kill -9`` without fetching verified
pieces again.  Files compared byte for byte."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from nodekit import KIB, NodeProc, bt_listen, content, torrent_row, torrents, wait_for

from peerlab.storage.pieces import read_resume
from peerlab.wire.metainfo import Metainfo

Start = Callable[..., NodeProc]


def _seed(
    start_node: Start, tmp_path: Path, size: int, name: str = "song.bin"
) -> tuple[NodeProc, str, bytes, Path]:
    """A node seeding a file it made a torrent of: (node, info-hash, data, .torrent path)."""
    folder = tmp_path / "seedfiles"
    folder.mkdir()
    data = content(size, name.encode())
    (folder / name).write_bytes(data)
    seed = start_node("seed", "--bittorrent-port", "0")
    seed.wait_ready()
    tfile = tmp_path / f"{name}.torrent"
    seed.cli("torrent", "create", str(folder / name), "--piece-size", "16K", "-o", str(tfile))
    ih = Metainfo.from_bytes(tfile.read_bytes()).info.info_hash.hex()
    out = seed.cli("torrent", "add", str(tfile), "--save-path", str(folder)).stdout
    assert out.startswith(f"added {ih[:8]}")
    wait_for(seed, ih, lambda r: r["status"] == "seeding", "seed checked its file")
    return seed, ih, data, tfile


@pytest.mark.slow
def test_add_magnet_downloads_and_shows_in_transfers(start_node: Start, tmp_path: Path) -> None:
    seed, ih, data, _ = _seed(start_node, tmp_path, 1024 * KIB)
    leech = start_node("leech", "--bittorrent-port", "0")
    leech.wait_ready()
    magnet = f"magnet:?xt=urn:btih:{ih}&dn=song.bin&x.pe={bt_listen(seed)}"
    leech.cli("torrent", "add", magnet, "--seed-ratio", "5")
    row = wait_for(leech, ih, lambda r: r["status"] == "seeding", "download complete")
    got = Path(row["path"]).read_bytes()
    assert got == data
    assert row["done"] == row["size"] == len(data) and row["pieces_have"] == row["pieces"]
    assert row["piece_map"] == "#" * row["pieces"]
    assert row["seed_ratio"] == 5.0
    # the same table as other downloads
    tr = leech.json("transfers")
    d = [x for x in tr["downloads"] if x.get("network") == "bittorrent"]
    assert len(d) == 1 and d[0]["id"] == ih and d[0]["done"] == len(data)
    text = leech.cli("transfers").stdout
    assert "song.bin" in text and "Seeding" in text
    # the seed uploaded it (both seeds now: the connection is closed)
    seed_row = torrent_row(seed, ih)
    assert seed_row is not None and seed_row["uploaded"] >= len(data)
    # list, stop, resume, remove by a prefix of the info-hash
    listing = leech.cli("torrent", "list").stdout
    assert ih[:8] in listing and "ratio 5" in listing
    assert "stopped" in leech.cli("torrent", "stop", ih[:10]).stdout
    assert torrent_row(leech, ih)["status"] == "stopped"  # type: ignore[index]
    leech.cli("torrent", "resume", ih[:10])
    wait_for(leech, ih, lambda r: r["status"] == "seeding", "resumed as seed")
    # a seeding-time goal stops it by itself
    leech.cli("torrent", "set", ih[:10], "--seed-time", "1")
    row = wait_for(leech, ih, lambda r: r["status"] == "finished", "seeding goal reached")
    assert row["goal_reached"] == "time" and row["seeding_seconds"] >= 1
    assert "finished (time)" in leech.cli("torrent", "list").stdout
    leech.cli("torrent", "remove", ih[:10])
    assert torrents(leech) == []
    assert Path(row["path"]).read_bytes() == data  # files stay


def test_bad_input_is_one_line(start_node: Start, tmp_path: Path) -> None:
    node = start_node("n", "--bittorrent-port", "0")
    node.wait_ready()
    junk = tmp_path / "junk.torrent"
    junk.write_bytes(b"d4:infoi1ee")
    for args in (("add", str(junk)), ("add", "magnet:?xt=urn:btih:zz"),
                 ("add", str(tmp_path / "missing.torrent")), ("stop", "abcdef"),
                 ("add", "magnet:?dn=x", "--seed-time", "soon")):
        p = node.cli("torrent", *args, check=False)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert torrents(node) == []


@pytest.mark.slow
def test_stop_survives_restart_and_kill9_keeps_verified_pieces(
    start_node: Start, tmp_path: Path
) -> None:
    seed, ih, data, tfile = _seed(start_node, tmp_path, 4096 * KIB)
    # slow the seed down so the leecher is caught half way
    seed.cli("torrent", "set", ih[:8], "--up-limit", "256K")
    leech = start_node("leech", "--bittorrent-port", "0")
    leech.wait_ready()
    # the torrent names no tracker: the magnet's x.pe points at the seed
    leech.cli("torrent", "add", f"magnet:?xt=urn:btih:{ih}&x.pe={bt_listen(seed)}")
    pieces = 256
    row = wait_for(leech, ih, lambda r: (r["pieces_have"] or 0) >= pieces // 4,
                   "a quarter downloaded")
    assert row["status"] == "downloading"
    # meanwhile the seed shows the upload to that peer in its transfers
    ups = [u for u in seed.json("transfers")["uploads"] if u.get("network") == "bittorrent"]
    assert len(ups) == 1 and ups[0]["sent"] > 0 and ups[0]["name"] == "song.bin"
    assert row["sources"] and row["sources"][0]["bytes"] > 0
    # the resume file records verified pieces within RESUME_SAVE_DELAY
    resume = leech.data_dir / "bittorrent" / f"{ih}.resume"
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline:
        state = read_resume(resume) if resume.exists() else None
        if state is not None and bin(int.from_bytes(state.have, "big")).count("1") >= pieces // 4:
            break
        time.sleep(0.2)
    assert state is not None
    leech.signal(signal.SIGKILL)
    leech.wait()
    state = read_resume(resume)
    assert state is not None
    kept = bin(int.from_bytes(state.have, "big")).count("1")
    assert pieces // 4 <= kept < pieces

    leech.start()
    leech.wait_ready()
    row = wait_for(leech, ih, lambda r: r["status"] == "seeding", "completed after kill -9")
    assert Path(row["path"]).read_bytes() == data
    # verified pieces were not downloaded again: this run verified only the rest
    assert row["counters"]["pieces_verified"] <= pieces - kept
    assert row["session_downloaded"] <= (pieces - kept) * 16 * KIB + 64 * 16 * KIB

    # stopped stays stopped over a clean restart
    leech.cli("torrent", "stop", ih[:8])
    leech.stop()
    leech.start()
    leech.wait_ready()
    row = wait_for(leech, ih, lambda r: r["status"] in ("stopped", "seeding"), "re-added")
    assert row["status"] == "stopped"
    leech.cli("torrent", "resume", ih[:8])
    row = wait_for(leech, ih, lambda r: r["status"] == "seeding", "resumed")
    assert row["session_downloaded"] == 0  # everything was on disk and verified
