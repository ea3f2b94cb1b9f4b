"""Uploads serve only catalog files, with the HTTP service's traversal safety;
transfer garbage costs only its connection; pause, resume, cancel and a
restart keep the bytes on disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from napclientkit import WAIT, IndexServer, NapPeer, little_toot, same_bytes

from peerlab.proto.napster import FileSize, OutgoingGet, TransferRefused
from peerlab.runtime.base import BaseStreamHandler, Stream
from peerlab.runtime.driver import StreamDriver
from peerlab.runtime.worlds import World
from peerlab.wire.napster import FILE_NOT_SHARED, INVALID_REQUEST

TOOT = "share\\Maclean & Maclean - Little Toot.mp3"


@pytest.fixture
def sharer(world: World, tmp_path: Path) -> Iterator[tuple[IndexServer, NapPeer]]:
    server = IndexServer(world, "server")
    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot).start()
    lefty.wait_online()
    yield server, lefty
    lefty.close()
    server.close()


def _get(world: World, lefty: NapPeer, filename: str, offset: int = 0) -> list[Any]:
    """A raw GET (napster.txt 5.1) to lefty's data port; the events it got."""
    rt = world.new_runtime(f"raw{len(filename)}-{offset}")
    events: list[Any] = []
    closed: list[object] = []
    machine = OutgoingGet("mallory", filename, offset, now=rt.now())
    driver = StreamDriver(rt, machine, events.append, on_closed=closed.append)
    assert lefty.listener is not None
    rt.connect(lefty.listener.address, driver, timeout=10)
    assert world.run_until(lambda: bool(closed) or any(
        isinstance(e, TransferRefused) for e in events), WAIT)
    driver.abort()
    world.run_until(lambda: bool(closed), WAIT)
    return events


@pytest.mark.parametrize(
    "name",
    [
        "share\\..\\..\\etc\\passwd",
        "/etc/passwd",
        "share/Maclean & Maclean - Little Toot.mp3",  # not the name we shared
        "Maclean & Maclean - Little Toot.mp3",
    ],
)
def test_only_shared_names_are_served(
    world: World, sharer: tuple[IndexServer, NapPeer], name: str
) -> None:
    _, lefty = sharer
    events = _get(world, lefty, name)
    assert [e for e in events if isinstance(e, TransferRefused)] == [
        TransferRefused(FILE_NOT_SHARED)
    ]
    assert lefty.observer.named("napster.upload_refused")[-1]["filename"] == name
    assert lefty.transfers.uploads() == []


def test_an_offset_past_the_end_is_an_invalid_request(
    world: World, sharer: tuple[IndexServer, NapPeer]
) -> None:
    _, lefty = sharer
    size = lefty.catalog.files()[0].size
    events = _get(world, lefty, TOOT, offset=size + 1)
    assert TransferRefused(INVALID_REQUEST) in events


def test_a_shared_file_swapped_for_a_symlink_out_of_the_share_is_refused(
    world: World, sharer: tuple[IndexServer, NapPeer], tmp_path: Path
) -> None:
    _, lefty = sharer
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret")
    path = lefty.share_dir / "Maclean & Maclean - Little Toot.mp3"
    path.unlink()
    os.symlink(secret, path)
    events = _get(world, lefty, TOOT)
    assert TransferRefused(FILE_NOT_SHARED) in events
    assert not any(isinstance(e, FileSize) for e in events)
    assert lefty.observer.named("napster.upload_traversal")


def test_garbage_on_the_data_port_costs_only_that_connection(
    world: World, sharer: tuple[IndexServer, NapPeer]
) -> None:
    _, lefty = sharer

    class Junk(BaseStreamHandler):
        lost = False

        def connection_made(self, stream: Stream) -> None:
            stream.write(b"HELLO?\x00\xff" * 10)

        def connection_lost(self, exc: object) -> None:
            self.lost = True

    rt = world.new_runtime("junk")
    junk = Junk()
    assert lefty.listener is not None
    rt.connect(lefty.listener.address, junk, timeout=10)
    assert world.run_until(lambda: junk.lost, WAIT)
    assert lefty.client.online
    assert len(_get(world, lefty, "nope")) >= 1  # still serving


def test_pause_resume_cancel_and_restart(world: World, tmp_path: Path) -> None:
    server = IndexServer(world, "server")
    # A slow sharer (64 KB/s) so the download is still running when paused.
    from peerlab.overlays.transfer.ratelimit import TokenBucket

    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot).start()
    lefty.transfers.bucket = TokenBucket(64 * 1024)
    mred = NapPeer(world, tmp_path, "mred", [server.address]).start()
    try:
        lefty.wait_online()
        mred.wait_online()
        [hit] = mred.search("little toot")
        dl_id = mred.download(hit)
        assert world.run_until(lambda: mred.transfers.get(dl_id).done > 100_000, WAIT)
        mred.transfers.pause(dl_id)
        dl = mred.transfers.get(dl_id)
        assert dl is not None and dl.status == "paused"
        have = dl.part_path.stat().st_size
        assert 100_000 <= have < hit.size
        # A restart of mred: a new transfers object finds the partial, paused.
        mred.transfers.close()
        from peerlab.overlays.napster.peer import NapsterTransfers

        again = NapsterTransfers(mred.runtime, mred.client, mred.catalog, mred.index,
                                 incomplete_dir=mred.dir / "incomplete",
                                 download_dir=mred.dir / "downloads")
        mred.transfers = again
        mred.client.on_online = again.online
        [loaded] = again.load()
        assert (loaded.id, loaded.status, loaded.done) == (dl_id, "paused", have)
        lefty.transfers.bucket = None
        again.resume(dl_id)
        info = mred.wait_download(dl_id)
        assert info.status == "complete"
        assert same_bytes(info.path, lefty.share_dir / "Maclean & Maclean - Little Toot.mp3")
        ups = lefty.transfers.uploads()
        assert ups[-1].offset == have  # the rest only
        # Cancel of a running download removes its partial.
        dl2 = again.add(name="again.mp3", size=hit.size, md5=hit.md5, sources=[])
        assert dl2.id == dl_id  # complete: the same file is not fetched twice
        again.clear_finished()
        dl3 = again.add(name="again.mp3", size=hit.size, md5=hit.md5, sources=[])
        assert dl3.state_path.exists()
        again.cancel(dl3.id)
        assert not dl3.state_path.exists() and again.get(dl3.id) is None
    finally:
        mred.close()
        lefty.close()
        server.close()
