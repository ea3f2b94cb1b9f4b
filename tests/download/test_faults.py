"""DownloadManager against misbehaving sources on 127.0.0.1 (real runtime).

Issue 2, "Bad input and faults": a source that sends bad chunks, lies about
ranges, sizes or the file, sends garbage or stalls is dropped (banned for bad
data, remembered in the state), and the download completes from the others.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dlkit import Behaviour, FakeSource, Served, make_data, wait_for

from peerlab.overlays.transfer.download import DownloadConfig, DownloadManager, Source
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import RecordingObserver
from peerlab.storage.partial import PartialState

HOST = "127.0.0.1"
CHUNK = 16 * 1024


def setup(
    tmp_path: Path, behaviours: list[Behaviour], size: int = 40 * CHUNK + 123, **cfg: object
) -> tuple[AsyncioRuntime, RecordingObserver, Served, list[FakeSource], DownloadManager]:
    obs = RecordingObserver()
    rt = AsyncioRuntime(observer=obs)
    served = Served(make_data(size), chunk_size=CHUNK)
    sources = [FakeSource(rt, HOST, served, b) for b in behaviours]
    config = DownloadConfig(**{"retry_backoff": 0.05, "stall_timeout": 1.0, **cfg})  # type: ignore[arg-type]
    mgr = DownloadManager(
        rt, incomplete_dir=tmp_path / "inc", download_dir=tmp_path / "dl", config=config
    )
    return rt, obs, served, sources, mgr


def finished(mgr: DownloadManager) -> bool:
    return all(i.status in ("complete", "failed") for i in mgr.downloads())


async def fetch(
    tmp_path: Path, behaviours: list[Behaviour], timeout: float = 20.0, **cfg: object
) -> tuple[RecordingObserver, Served, list[FakeSource], DownloadManager]:
    rt, obs, served, sources, mgr = setup(tmp_path, behaviours, **cfg)
    mgr.add(
        served.urn,
        name=served.name,
        size=len(served.data),
        sources=[Source(s.address, served.index, served.name) for s in sources],
        chunk_root=served.chunks.root,
    )
    assert await wait_for(lambda: finished(mgr), timeout)
    mgr.close()
    for s in sources:
        s.close()
    rt.close()
    return obs, served, sources, mgr


def assert_complete(mgr: DownloadManager, served: Served, tmp_path: Path) -> None:
    (info,) = mgr.downloads()
    assert info.status == "complete", info.error
    assert info.path is not None and info.path.parent == tmp_path / "dl"
    assert info.path.read_bytes() == served.data
    assert list((tmp_path / "dl").iterdir()) == [info.path]
    assert not list((tmp_path / "inc").glob("*.part"))


async def test_single_source(tmp_path: Path) -> None:
    obs, served, (src,), mgr = await fetch(tmp_path, [Behaviour()])
    assert_complete(mgr, served, tmp_path)
    assert obs.counters["transfer.chunks_verified"] == served.chunks.count
    assert obs.counters["transfer.bytes_fetched"] == len(served.data)
    assert src.body_bytes == len(served.data)
    (done,) = obs.named("transfer.complete")
    assert done["urn"] == served.urn
    # The first request is the chunk list, then ranges.
    assert src.requests[0][1] == f"/uri-res/N2CH?{served.urn}"
    assert all(r[1] == f"/uri-res/N2R?{served.urn}" and r[2] for r in src.requests[1:])


async def test_corrupt_source_banned_download_completes(tmp_path: Path) -> None:
    behaviours = [Behaviour(rate=200_000), Behaviour(corrupt_all=True), Behaviour(rate=200_000)]
    obs, served, sources, mgr = await fetch(tmp_path, behaviours)
    assert_complete(mgr, served, tmp_path)
    assert obs.counters["transfer.chunks_failed"] > 0
    (ban,) = obs.named("transfer.source_banned")
    bad = f"{HOST}:{sources[1].address[1]}"
    assert ban["source"] == bad and "bad chunk" in ban["reason"]
    (info,) = mgr.downloads()
    rows = {f"{s.address[0]}:{s.address[1]}": s for s in info.sources}
    assert rows[bad].status == "banned"


async def test_ban_is_remembered_in_state(tmp_path: Path) -> None:
    rt, obs, served, sources, mgr = setup(
        tmp_path, [Behaviour(rate=100_000), Behaviour(corrupt_all=True)]
    )
    dl = mgr.add(
        served.urn,
        name=served.name,
        size=len(served.data),
        sources=[Source(s.address) for s in sources],
        chunk_root=served.chunks.root,
    )
    assert await wait_for(lambda: obs.counters["transfer.sources_banned"] == 1, 10)
    mgr.pause(dl.id)
    mgr.close()
    state = PartialState.from_json(dl.partial.state_path.read_bytes())
    assert f"{HOST}:{sources[1].address[1]}" in state.banned
    assert state.paused
    for s in sources:
        s.close()
    rt.close()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (Behaviour(lie_range=True), "range"),
        (Behaviour(lie_length=True), "length"),
        (Behaviour(lie_urn=True), "another file"),
        (Behaviour(garbage=True), "garbage"),
        (Behaviour(wrong_list=True), "chunk root"),
    ],
)
async def test_lying_sources_banned(tmp_path: Path, bad: Behaviour, reason: str) -> None:
    obs, served, sources, mgr = await fetch(tmp_path, [bad, Behaviour()])
    assert_complete(mgr, served, tmp_path)
    (ban,) = obs.named("transfer.source_banned")
    assert ban["source"] == f"{HOST}:{sources[0].address[1]}"
    assert reason in ban["reason"]


async def test_stalling_source_dropped(tmp_path: Path) -> None:
    obs, served, sources, mgr = await fetch(
        tmp_path,
        [Behaviour(stall_after=CHUNK // 2), Behaviour(rate=300_000)],
        stall_timeout=0.4,
        max_source_failures=2,
    )
    assert_complete(mgr, served, tmp_path)
    (drop,) = obs.named("transfer.source_dropped")
    assert drop["source"] == f"{HOST}:{sources[0].address[1]}"
    assert "stalled" in drop["reason"]
    assert len(obs.named("transfer.source_stalled")) == 2
    assert not obs.named("transfer.source_banned")


async def test_busy_source_queued_then_served(tmp_path: Path) -> None:
    rt, obs, served, (src,), mgr = setup(tmp_path, [Behaviour(busy=2, retry_after=1)])
    infos = []
    mgr.on_change = infos.append
    mgr.add(served.urn, name=served.name, size=len(served.data), sources=[Source(src.address)])
    assert await wait_for(lambda: finished(mgr), 20)
    assert_complete(mgr, served, tmp_path)
    queued = obs.named("transfer.source_queued")
    assert [q["position"] for q in queued] == [2, 1]
    assert all(q["retry_after"] == 1 for q in queued)
    shown = [s for i in infos for s in i.sources if s.status == "queued"]
    assert shown and shown[0].queue_position == 2
    mgr.close()
    src.close()
    rt.close()


async def test_source_without_chunk_list(tmp_path: Path) -> None:
    """A foreign servent (no N2CH): the whole-file SHA-1 is the check."""
    rt, obs, served, (src,), mgr = setup(tmp_path, [Behaviour(serve_list=False)])
    mgr.add(served.urn, name=served.name, size=len(served.data), sources=[Source(src.address)])
    assert await wait_for(lambda: finished(mgr), 20)
    assert_complete(mgr, served, tmp_path)
    assert obs.counters["transfer.chunks_verified"] == 0
    assert obs.counters["transfer.bytes_fetched"] == len(served.data)
    mgr.close()
    src.close()
    rt.close()


async def test_get_fallback_and_unknown_size(tmp_path: Path) -> None:
    rt, obs, served, (src,), mgr = setup(tmp_path, [Behaviour(n2r_404=True, serve_list=False)])
    mgr.add(
        served.urn,
        name=served.name,
        size=None,
        sources=[Source(src.address, served.index, served.name)],
    )
    assert await wait_for(lambda: finished(mgr), 20)
    assert_complete(mgr, served, tmp_path)
    assert any(t.startswith("/get/7/song.mp3") for _, t, _ in src.requests)
    assert any(m == "HEAD" for m, _, _ in src.requests)
    mgr.close()
    src.close()
    rt.close()


async def test_whole_file_mismatch_without_list_fails_bounded(tmp_path: Path) -> None:
    obs, served, sources, mgr = await fetch(
        tmp_path, [Behaviour(serve_list=False, corrupt_chunks={3})], max_whole_file_attempts=2
    )
    (info,) = mgr.downloads()
    assert info.status == "failed" and "never matched" in (info.error or "")
    assert obs.counters["transfer.whole_file_mismatches"] == 2
    assert not list((tmp_path / "dl").glob("*"))


async def test_no_sources_left_fails(tmp_path: Path) -> None:
    obs, served, sources, mgr = await fetch(tmp_path, [Behaviour(corrupt_all=True)])
    (info,) = mgr.downloads()
    assert info.status == "failed" and "no sources left" in (info.error or "")
    assert not (tmp_path / "dl").exists() or not list((tmp_path / "dl").iterdir())
    assert hashlib.sha1(served.data).digest()  # the partial stays for a later resume
    assert list((tmp_path / "inc").glob("*.part"))
