"""Downloads through Push/GIV (RFC-Gnutella 0.6 draft 2.2.8), the same test
bodies on 127.0.0.1 and in the simulator.

The firewalled sharer never listens: it only connects out when a Push reaches
it, sends GIV, and serves HTTP on that connection.  The downloader's shared
port hands the GIV connection to the DownloadManager, which matches it to the
waiting source and fetches over it like over any other connection.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pushkit import (
    WORLDS,
    PushRouter,
    RawPeer,
    make_data,
    make_downloader,
    make_sharer,
    make_world,
)

from peerlab.overlays.transfer.download import DownloadConfig, Source
from peerlab.overlays.transfer.push import Giv, encode_giv
from peerlab.overlays.transfer.server import UploadConfig

SIZE = 1_500_000


@pytest.mark.parametrize("world_name", WORLDS)
def test_firewalled_source_delivers_through_push(tmp_path: Path, world_name: str) -> None:
    world = make_world(world_name)
    try:
        data = make_data(SIZE, seed=11)
        sharer = make_sharer(world, "firewalled", tmp_path / "fw", data)
        dl = make_downloader(world, tmp_path / "dl")
        router = PushRouter(dl)
        router.add(sharer)
        f = sharer.file
        src = Source(("192.168.1.20", 6346), f.index, f.name, servent_guid=sharer.guid, push=True)
        d = dl.manager.add(f.urn, name=f.name, size=f.size, sources=[src],
                           chunk_root=f.chunk_root)  # fmt: skip
        assert world.run_until(lambda: d.status in ("complete", "failed"), timeout=60)
        info = d.info()
        assert info.status == "complete", info.error
        assert info.path is not None and info.path.read_bytes() == data
        assert hashlib.sha1(info.path.read_bytes()).digest() == f.sha1
        # Everything came over connections the sharer opened.
        (row,) = info.sources
        assert row.push and row.bytes == SIZE
        assert dl.observer.counters["transfer.bytes_fetched"] == SIZE
        assert sharer.observer.counters["upload.bytes"] == SIZE
        pushes = len(router.calls)
        assert pushes >= 1
        assert all(c.servent_guid == sharer.guid and c.index == f.index for c in router.calls)
        assert all(router.answers) and len(router.answers) == pushes
        assert sharer.observer.counters["upload.push_connected"] == pushes
        assert dl.observer.counters["transfer.push_connected"] == pushes
        assert dl.observer.counters["transfer.giv_refused"] == 0
        assert sharer.listener is None and sharer.service.pushes_pending == 0
        assert dl.manager.pushes_waiting == 0
        dl.close()
        sharer.close()
    finally:
        world.close()


@pytest.mark.parametrize("world_name", WORLDS)
def test_giv_nobody_waits_for_is_refused(tmp_path: Path, world_name: str) -> None:
    """A GIV for an unknown GUID, a wrong index, or garbage is closed without a
    request; the matching GIV gets the download's first request."""
    world = make_world(world_name)
    try:
        data = make_data(200_000, seed=3)
        sharer = make_sharer(world, "fw", tmp_path / "fw", data)
        dl = make_downloader(world, tmp_path / "dl", DownloadConfig(push_timeout=600))
        router = PushRouter(dl, silent={sharer.guid})  # routed, never answered
        f = sharer.file
        src = Source(("10.9.9.9", 6346), f.index, f.name, servent_guid=sharer.guid, push=True)
        dl.manager.add(f.urn, name=f.name, size=f.size, sources=[src])
        assert world.run_until(lambda: dl.manager.pushes_waiting == 1, timeout=10)
        client = world.new_runtime("intruder")
        other_guid = bytes(range(16))
        attempts = [
            encode_giv(Giv(f.index, other_guid, f.name)),  # unknown GUID
            encode_giv(Giv(f.index + 1, sharer.guid, f.name)),  # right GUID, wrong index
            b"GIV zz:nothex/x\n\n",  # garbage
            encode_giv(Giv(f.index, sharer.guid, f.name)) + b"GET / HTTP/1.1\r\n\r\n",
        ]
        for n, giv in enumerate(attempts, 1):
            peer = RawPeer()
            client.connect(dl.address, peer)
            assert world.run_until(lambda: peer.made, timeout=10)  # noqa: B023
            peer.write(giv)
            assert world.run_until(lambda: peer.lost, timeout=10)  # noqa: B023
            assert peer.data == b""  # not one request
            assert dl.observer.counters["transfer.giv_refused"] == n
        assert dl.manager.pushes_waiting == 1  # still waiting for the real one
        good = RawPeer()
        client.connect(dl.address, good)
        assert world.run_until(lambda: good.made, timeout=10)
        good.write(encode_giv(Giv(f.index, sharer.guid, f.name)))
        assert world.run_until(lambda: b"\r\n\r\n" in good.data, timeout=10)
        line = bytes(good.data).split(b"\r\n")[0]
        assert line.startswith(b"GET /uri-res/N2") and f.urn.encode() in line
        assert dl.observer.counters["transfer.push_connected"] == 1
        assert dl.observer.counters["transfer.giv_refused"] == len(attempts)
        assert len(router.calls) == 1
        dl.close()
        sharer.close()
    finally:
        world.close()


@pytest.mark.parametrize("world_name", WORLDS)
def test_unanswered_push_times_out_and_another_source_finishes(
    tmp_path: Path, world_name: str
) -> None:
    world = make_world(world_name)
    try:
        data = make_data(SIZE, seed=5)
        # The direct source is slow (a rate limit), so the push source has
        # time to be pushed, time out, be pushed again and be dropped.
        direct = make_sharer(world, "direct", tmp_path / "direct", data, listen=True,
                             config=UploadConfig(rate_limit=1_000_000))  # fmt: skip
        silent = make_sharer(world, "silent", tmp_path / "silent", data)
        cfg = DownloadConfig(push_timeout=0.2, retry_backoff=0.05, max_push_failures=2)
        dl = make_downloader(world, tmp_path / "dl", cfg)
        router = PushRouter(dl, silent={silent.guid})
        f = direct.file
        sources = [
            Source(("10.1.2.3", 6346), f.index, f.name, servent_guid=silent.guid, push=True),
            Source(direct.address, f.index, f.name),
        ]
        d = dl.manager.add(f.urn, name=f.name, size=f.size, sources=sources)
        assert world.run_until(lambda: d.status in ("complete", "failed"), timeout=60)
        info = d.info()
        assert info.status == "complete", info.error
        assert info.path is not None and info.path.read_bytes() == data
        rows = {r.push: r for r in info.sources}
        assert rows[False].bytes == SIZE
        assert rows[True].bytes == 0 and rows[True].status == "dropped"
        error = rows[True].error
        assert error is not None and "no GIV" in error
        assert len(router.calls) == 2  # pushed, timed out, pushed again, dropped
        assert dl.observer.counters["transfer.push_timeouts"] == 2
        assert dl.observer.counters["transfer.pushes_sent"] == 2
        assert dl.manager.pushes_waiting == 0
        dl.close()
        direct.close()
        silent.close()
    finally:
        world.close()


def test_push_source_alone_is_retried_then_dropped(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(100_000, seed=9)
    silent = make_sharer(world, "silent", tmp_path / "silent", data)
    cfg = DownloadConfig(push_timeout=5.0, retry_backoff=1.0, max_push_failures=3)
    dl = make_downloader(world, tmp_path / "dl", cfg)
    router = PushRouter(dl, silent={silent.guid})
    f = silent.file
    src = Source(("10.1.2.3", 6346), f.index, f.name, servent_guid=silent.guid, push=True)
    d = dl.manager.add(f.urn, name=f.name, size=f.size, sources=[src])
    assert world.run_until(lambda: d.status in ("complete", "failed"), timeout=120)
    error = d.error
    assert d.status == "failed" and error is not None and "no sources left" in error
    assert len(router.calls) == 3
    assert dl.observer.counters["transfer.push_timeouts"] == 3
    # Pushed at 0, then after 5 s + 1 s backoff, then after 5 s + 2 s: dropped at ~19 s.
    assert 18.0 <= dl.runtime.now() <= 20.5


def test_unroutable_push_and_no_push_sender(tmp_path: Path) -> None:
    world = make_world("sim")
    data = make_data(50_000, seed=2)
    fw = make_sharer(world, "fw", tmp_path / "fw", data)
    f = fw.file
    src = Source(("10.1.2.3", 6346), f.index, f.name, servent_guid=fw.guid, push=True)
    # No route to that GUID: every attempt fails at once, the source is dropped.
    dl = make_downloader(world, tmp_path / "dl", DownloadConfig(retry_backoff=0.5))
    router = PushRouter(dl)  # knows no sharer
    d = dl.manager.add(f.urn, name=f.name, size=f.size, sources=[src])
    assert world.run_until(lambda: d.status == "failed", timeout=60)
    assert len(router.calls) == 3
    assert dl.observer.counters["transfer.push_unroutable"] == 3
    assert dl.observer.counters["transfer.pushes_sent"] == 0
    # A manager that cannot push at all drops the source on the first try.
    dl2 = make_downloader(world, tmp_path / "dl2")
    d2 = dl2.manager.add(f.urn, name=f.name, size=f.size, sources=[src])
    assert world.run_until(lambda: d2.status == "failed", timeout=10)
    (row,) = d2.info().sources
    assert row.status == "dropped" and row.error is not None and "cannot send a Push" in row.error
