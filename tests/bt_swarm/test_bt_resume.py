"""Resume (issue 6: "Resume after SIGKILL without re-downloading verified
pieces"): a leecher that dies mid-download, by a crash of its runtime or by
``kill -9`` of its process, comes back, trusts its resume file, re-checks
the rest, and downloads only the pieces it never verified."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmkit import LT_SETTINGS, content, metainfo, single_file, write_files

from peerlab.overlays.bittorrent import Session, SessionConfig
from peerlab.runtime.worlds import RealWorld
from peerlab.storage.pieces import PieceBits, read_resume
from peerlab.wire.metainfo import Info

lt: Any = pytest.importorskip("libtorrent", reason="libtorrent (PyPI) is a test dependency")

KIB = 1024
#: The seed's upload limit: slow enough to stop the leecher half way.
SEED_RATE = 256 * KIB
STEP_S = 30.0
HERE = Path(__file__).resolve().parent


@pytest.fixture
def world() -> Iterator[RealWorld]:
    w = RealWorld()
    yield w
    w.close()


class SlowSeed:
    """A libtorrent seed with an upload limit."""

    def __init__(self, tmp_path: Path, size: int = 1024 * KIB) -> None:
        self.data = content(size, b"resume")
        self.info: Info = single_file(self.data, 16 * KIB)
        self.torrent = metainfo(self.info).to_bytes()
        write_files(tmp_path / "seed", self.info, self.data)
        self.session = lt.session(LT_SETTINGS)
        # loopback peers are in libtorrent's "local" peer class, which the
        # global rate limit exempts: limit that class itself
        local = self.session.get_peer_class(lt.session.local_peer_class_id)
        local["upload_limit"] = SEED_RATE
        self.session.set_peer_class(lt.session.local_peer_class_id, local)
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(self.torrent)
        atp.save_path = str(tmp_path / "seed")
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        atp.flags |= lt.torrent_flags.seed_mode
        self.handle = self.session.add_torrent(atp)

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def close(self) -> None:
        self.session.remove_torrent(self.handle)
        self.session.pause()


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[SlowSeed]:
    s = SlowSeed(tmp_path)
    yield s
    s.close()


def restart_and_finish(world: RealWorld, tmp_path: Path, seed: SlowSeed,
                       verified_before: PieceBits) -> None:
    """A new session on the same folders: what was verified is not fetched again."""
    rt = world.new_runtime("again")
    s = Session(rt, SessionConfig(state_dir=tmp_path / "state"))
    s.start()
    t = s.add_torrent(seed.torrent, save_path=tmp_path / "leech", peers=[("127.0.0.1", seed.port)])
    assert world.run_until(lambda: t.store is not None and t.store.checked, STEP_S)
    store = t.store
    assert store is not None
    found = store.have.copy()
    # The download starts as the check ends: a busy machine may have
    # verified a piece or two from the seed before this look.
    early = t.counters["pieces_verified"]
    assert all(i in found for i in verified_before)  # nothing verified was lost
    assert store.counters["resume_trusted"] > 0  # the resume file was used ...
    at_start = store.counters["resume_trusted"] + store.counters["recheck_found"]
    assert found.count == at_start + early
    assert world.run_until(lambda: t.complete, STEP_S)
    assert (tmp_path / "leech" / "payload.bin").read_bytes() == seed.data
    # ... and only the missing pieces came over the wire
    missing = seed.info.piece_count - at_start
    assert t.counters["pieces_verified"] == missing
    assert t.counters["blocks_received"] == missing  # one block per 16 KiB piece
    assert t.downloaded == missing * seed.info.piece_length  # (every piece full: 1 MiB)


def test_resume_after_the_runtime_crashes(world: RealWorld, tmp_path: Path,
                                          seed: SlowSeed) -> None:
    rt = world.new_runtime("first")
    s = Session(rt, SessionConfig(state_dir=tmp_path / "state"))
    s.start()
    t = s.add_torrent(seed.torrent, save_path=tmp_path / "leech",
                      peers=[("127.0.0.1", seed.port)])
    resume = tmp_path / "state" / f"{seed.info.info_hash.hex()}.resume"
    assert world.run_until(lambda: resume.exists() and t.store is not None
                           and t.store.have.count >= 16, STEP_S)
    assert t.store is not None and not t.complete
    verified = t.store.have.copy()
    # the crash: the runtime goes away under the session (no close, no last save)
    rt.close()
    world.runtimes.pop("first")
    restart_and_finish(world, tmp_path, seed, verified)


def test_resume_after_sigkill(world: RealWorld, tmp_path: Path, seed: SlowSeed) -> None:
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(seed.torrent)
    resume = tmp_path / "state" / f"{seed.info.info_hash.hex()}.resume"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "leech_process.py"), str(torrent), str(tmp_path / "leech"),
         str(tmp_path / "state"), "127.0.0.1", str(seed.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + STEP_S
        state = None
        while time.monotonic() < deadline:
            state = read_resume(resume)
            if state is not None and PieceBits(state.piece_count, state.have).count >= 8:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        assert state is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    recorded = PieceBits(state.piece_count, state.have)
    assert recorded.count < seed.info.piece_count  # it really was cut off half way
    restart_and_finish(world, tmp_path, seed, recorded)
