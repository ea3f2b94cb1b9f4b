"""Multi-source downloads from real UploadServices on 127.0.0.1, resume after a
crash, and disk faults (issue 2, section 4 and "Bad input and faults")."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from dlkit import Behaviour, FakeSource, Served, make_data

from peerlab.overlays.transfer.download import DownloadConfig, DownloadManager, Source
from peerlab.overlays.transfer.server import UploadConfig, UploadService
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import RealWorld
from peerlab.storage.catalog import Catalog
from peerlab.storage.partial import PartialState
from peerlab.wire.chunks import chunk_size_for

MIB = 1 << 20
HOST = "127.0.0.1"


class Node:
    """A sharing node: its own folder, catalog and UploadService."""

    def __init__(self, world: RealWorld, folder: Path, data: bytes, rate: float) -> None:
        folder.mkdir(parents=True)
        (folder / "track.bin").write_bytes(data)
        self.catalog = Catalog(folder.parent / f"{folder.name}.db")
        self.catalog.add_folder(folder)
        self.catalog.scan()
        (self.file,) = self.catalog.files()
        self.runtime = world.new_runtime(folder.name)
        self.service = UploadService(self.runtime, self.catalog, UploadConfig(rate_limit=rate))
        self.listener = self.runtime.listen((HOST, 0), self.service.handler_factory())

    @property
    def source(self) -> Source:
        return Source(self.listener.address, self.file.index, self.file.name)

    def sent(self) -> int:
        return sum(u.sent for u in self.service.uploads())

    def close(self) -> None:
        self.listener.close()
        self.service.close()
        self.catalog.close()


def status_of(mgr: DownloadManager) -> str:
    return mgr.downloads()[0].status


def done(mgr: DownloadManager) -> bool:
    return status_of(mgr) in ("complete", "failed")


def test_three_sources_share_the_work(tmp_path: Path) -> None:
    world = RealWorld()
    data = make_data(12 * MIB + 777, seed=5)
    nodes = [Node(world, tmp_path / f"node{i}", data, rate=3 * MIB) for i in range(3)]
    obs = RecordingObserver()
    rt = world.new_runtime("downloader", observer=obs)
    mgr = DownloadManager(
        rt, incomplete_dir=tmp_path / "inc", download_dir=tmp_path / "dl", config=DownloadConfig()
    )
    f = nodes[0].file
    mgr.add(f.urn, name=f.name, size=f.size, sources=[n.source for n in nodes],
            chunk_root=f.chunk_root)
    assert world.run_until(lambda: done(mgr), 60)
    (info,) = mgr.downloads()
    assert info.status == "complete", info.error
    assert info.path is not None and info.path.read_bytes() == data
    served = [n.sent() for n in nodes]
    assert all(s > 0 for s in served), served
    by_source = {s.address: s.bytes for s in info.sources}
    assert all(by_source[n.listener.address] > 0 for n in nodes), by_source
    assert sum(by_source.values()) == obs.counters["transfer.bytes_fetched"] >= len(data)
    mgr.close()
    for n in nodes:
        n.close()
    world.close()


@pytest.mark.parametrize("save_interval", [0.3, 1000.0])
def test_resume_fetches_only_missing_chunks(tmp_path: Path, save_interval: float) -> None:
    """Stop a manager mid-download without a clean close (no state flush, sockets
    dropped), start a new one on the same folders: nothing verified is fetched again.

    With a save interval longer than the run, the only state on disk is the one
    written when the chunk list arrived: every verified chunk must then come
    back by re-hashing the partial (a kill in a download's first seconds)."""
    data = make_data(16 * MIB, seed=9)
    chunk = chunk_size_for(len(data))
    world1 = RealWorld()
    node = Node(world1, tmp_path / "share", data, rate=4 * MIB)
    f = node.file
    obs1 = RecordingObserver()
    rt1 = world1.new_runtime("first", observer=obs1)
    config = DownloadConfig(state_save_interval=save_interval)
    mgr1 = DownloadManager(rt1, incomplete_dir=tmp_path / "inc", download_dir=tmp_path / "dl",
                           config=config)
    dl = mgr1.add(f.urn, name=f.name, size=f.size, sources=[node.source],
                  chunk_root=f.chunk_root)
    assert world1.run_until(lambda: obs1.counters["transfer.chunks_verified"] >= 20, 30)
    verified_before = obs1.counters["transfer.chunks_verified"]
    state_path = dl.partial.state_path
    node.close()
    world1.close()  # the "crash": no mgr1.close(), the loop and its sockets are gone
    del mgr1, dl

    state = PartialState.from_json(state_path.read_bytes())
    trusted = state.have
    assert state.chunks is not None and trusted is not None and trusted.ones < trusted.count
    if save_interval < 1:
        assert trusted.ones > 0

    world2 = RealWorld()
    node2 = Node(world2, tmp_path / "share2", data, rate=0)
    obs2 = RecordingObserver()
    rt2 = world2.new_runtime("second", observer=obs2)
    mgr2 = DownloadManager(rt2, incomplete_dir=tmp_path / "inc", download_dir=tmp_path / "dl",
                           config=config)
    (loaded,) = mgr2.load()
    assert loaded.urn == f.urn
    mgr2.add(f.urn, name=f.name, size=f.size, sources=[node2.source])
    assert world2.run_until(lambda: done(mgr2), 60)
    (info,) = mgr2.downloads()
    assert info.status == "complete", info.error
    assert info.path is not None and hashlib.sha1(info.path.read_bytes()).digest() == f.sha1
    kept = trusted.ones + obs2.counters["transfer.chunks_recovered"]
    assert kept >= verified_before
    fetched = obs2.counters["transfer.bytes_fetched"]
    assert fetched == len(data) - kept * chunk  # exactly the missing chunks
    assert obs2.counters["transfer.chunks_verified"] == len(data) // chunk - kept
    mgr2.close()
    node2.close()
    world2.close()


async def test_disk_full_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlkit import wait_for

    from peerlab.runtime.aio import AsyncioRuntime

    rt = AsyncioRuntime()
    served = Served(make_data(20 * 16384), chunk_size=16384)
    src = FakeSource(rt, HOST, served, Behaviour())
    mgr = DownloadManager(rt, incomplete_dir=tmp_path / "inc", download_dir=tmp_path / "dl")

    def full(fd: int, buffers: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwritev", full)
    changes = []
    mgr.on_change = changes.append
    mgr.add(served.urn, name="x.bin", size=len(served.data), sources=[Source(src.address)])
    assert await wait_for(lambda: done(mgr), 20)
    (info,) = mgr.downloads()
    assert info.status == "failed" and "No space left on device" in (info.error or "")
    assert info.path is None and info.done == 0
    assert changes[-1].status == "failed"
    assert not (tmp_path / "dl").exists()
    assert list((tmp_path / "inc").glob("*.part")) and list((tmp_path / "inc").glob("*.state"))
    mgr.close()
    src.close()
    rt.close()


async def test_unwritable_download_folder(tmp_path: Path) -> None:
    from dlkit import wait_for

    from peerlab.runtime.aio import AsyncioRuntime

    obs = RecordingObserver()
    rt = AsyncioRuntime(observer=obs)
    served = Served(make_data(20 * 16384 + 5), chunk_size=16384)
    src = FakeSource(rt, HOST, served, Behaviour())
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    mgr = DownloadManager(rt, incomplete_dir=tmp_path / "inc", download_dir=blocker / "dl")
    mgr.add(served.urn, name="x.bin", size=len(served.data), sources=[Source(src.address)])
    assert await wait_for(lambda: done(mgr), 20)
    (info,) = mgr.downloads()
    assert info.status == "failed" and "cannot create download folder" in (info.error or "")
    assert info.path is None
    assert obs.counters["transfer.chunks_verified"] == served.chunks.count
    assert not obs.named("transfer.complete")
    (part,) = (tmp_path / "inc").glob("*.part")
    assert part.read_bytes() == served.data  # verified work kept, not presented as complete
    assert list((tmp_path / "inc").glob("*.state"))
    mgr.close()
    src.close()
    rt.close()
