"""Napster client and peer transfers against the index server, in both worlds:
login, share, search, direct and firewalled downloads byte for byte, resume
by offset, the md5 check, uploads only of shared files, fail-over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from napclientkit import WAIT, IndexServer, NapPeer, little_toot, same_bytes

from peerlab.overlays.napster.client import ONLINE
from peerlab.runtime.worlds import World
from peerlab.wire.napster import LinkType, SearchQuery


@pytest.fixture
def made() -> Iterator[list[NapPeer | IndexServer]]:
    things: list[NapPeer | IndexServer] = []
    yield things
    for t in reversed(things):
        t.close()


def test_login_share_search_and_direct_download(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    server = IndexServer(world, "server")
    made.append(server)
    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot).start()
    mred = NapPeer(world, tmp_path, "mred", [server.address], link=LinkType.DSL).start()
    made += [lefty, mred]
    lefty.wait_online()
    mred.wait_online()

    hits = mred.search("little toot")
    assert len(hits) == 1
    hit = hits[0]
    original = lefty.share_dir / "Maclean & Maclean - Little Toot.mp3"
    [shared] = lefty.catalog.files()
    assert hit.nick == "lefty" and hit.link_type is LinkType.CABLE
    assert hit.filename == "share\\Maclean & Maclean - Little Toot.mp3"
    assert (hit.size, hit.bitrate, hit.md5) == (shared.size, 320, shared.napster_md5)

    dl_id = mred.download(hit)
    info = mred.wait_download(dl_id)
    assert info.status == "complete", info
    assert same_bytes(info.path, original)
    assert info.path.parent == mred.dir / "downloads"
    assert not list((mred.dir / "incomplete" / "napster").iterdir())
    [up] = lefty.transfers.uploads()
    assert (up.peer, up.status, up.done, up.offset) == ("mred", "complete", shared.size, 0)
    # The GET named only a nick; the server told lefty mred's link type (600/601).
    assert world.run_until(lambda: lefty.transfers.uploads()[0].link == "DSL", WAIT)
    assert lefty.observer.counters["napster.upload_bytes"] == shared.size
    assert mred.observer.counters["napster.download_bytes"] == shared.size
    assert mred.observer.named("napster.download_started")[0]["pushed"] is False
    # Transfer notices (napster.txt 5.1): one 218/219 pair and one 220/221 pair.
    counters = server.runtime.observer.counters
    names = ("download_start", "download_end", "upload_start", "upload_end")
    assert world.run_until(
        lambda: all(counters[f"napster.server.{n}"] == 1 for n in names), WAIT
    ), counters
    assert server.store.find_user("mred").total_downloads == 1
    assert server.store.find_user("lefty").total_uploads == 1
    assert server.store.find_user("lefty").uploads == 0


def test_firewalled_sharer_pushes_with_send(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    server = IndexServer(world, "server")
    made.append(server)
    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot,
                    firewalled=True).start()
    mred = NapPeer(world, tmp_path, "mred", [server.address]).start()
    made += [lefty, mred]
    lefty.wait_online()
    mred.wait_online()
    [hit] = mred.search("toot")
    info = mred.wait_download(mred.download(hit))
    assert info.status == "complete", info
    assert info.firewalled is True
    assert same_bytes(info.path, lefty.share_dir / "Maclean & Maclean - Little Toot.mp3")
    assert mred.observer.named("napster.download_started")[0]["pushed"] is True
    [up] = lefty.transfers.uploads()
    assert up.status == "complete" and up.link == "Cable"  # the 501 named mred's link


def test_both_firewalled_fails_cleanly(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    server = IndexServer(world, "server")
    made.append(server)
    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot,
                    firewalled=True).start()
    mred = NapPeer(world, tmp_path, "mred", [server.address], firewalled=True).start()
    made += [lefty, mred]
    lefty.wait_online()
    mred.wait_online()
    [hit] = mred.search("toot")
    info = mred.wait_download(mred.download(hit))
    assert info.status == "failed" and "both firewalled" in (info.error or "")
    assert not (mred.dir / "downloads").exists() or not list((mred.dir / "downloads").iterdir())


def test_download_resumes_from_the_bytes_on_disk(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    server = IndexServer(world, "server")
    made.append(server)
    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot).start()
    mred = NapPeer(world, tmp_path, "mred", [server.address]).start()
    made += [lefty, mred]
    lefty.wait_online()
    mred.wait_online()
    [hit] = mred.search("little toot")
    original = lefty.share_dir / "Maclean & Maclean - Little Toot.mp3"
    # A previous run got the first 400,000 bytes (past the md5 region).
    dl = mred.transfers.add(name="x.mp3", size=hit.size, md5=hit.md5, sources=[])
    dl.stop_activity()
    dl.part_path.write_bytes(original.read_bytes()[:400_000])
    mred.transfers.cancel(dl.id)  # forget it (the partial goes too) ...
    dl.part_path.write_bytes(original.read_bytes()[:400_000])  # ... and put the bytes back
    info = mred.wait_download(mred.download(hit))
    assert info.status == "complete", info
    assert same_bytes(info.path, original)
    [up] = lefty.transfers.uploads()
    assert up.offset == 400_000 and up.done == hit.size - 400_000


def test_a_file_failing_its_md5_never_reaches_the_download_folder(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    server = IndexServer(world, "server")
    made.append(server)
    lefty = NapPeer(world, tmp_path, "lefty", [server.address], files=little_toot).start()
    mred = NapPeer(world, tmp_path, "mred", [server.address]).start()
    made += [lefty, mred]
    lefty.wait_online()
    mred.wait_online()
    [hit] = mred.search("little toot")
    original = lefty.share_dir / "Maclean & Maclean - Little Toot.mp3"
    # Bytes already on disk that are not the file's: the md5 region is wrong.
    dl = mred.transfers.add(name="x.mp3", size=hit.size, md5=hit.md5, sources=[])
    dl.stop_activity()
    mred.transfers.cancel(dl.id)
    dl.part_path.parent.mkdir(parents=True, exist_ok=True)
    dl.part_path.write_bytes(b"\0" * 200_000)
    info = mred.wait_download(mred.download(hit))
    assert info.status == "failed" and "md5" in (info.error or ""), info
    assert not (mred.dir / "downloads").exists() or not list((mred.dir / "downloads").iterdir())
    assert not dl.part_path.exists()
    assert mred.observer.named("napster.download_corrupt")
    # Asked again, it starts from scratch and completes.
    mred.transfers.resume(dl.id)
    info = mred.wait_download(dl.id)
    assert info.status == "complete" and same_bytes(info.path, original)


def test_fail_over_to_the_next_server_reshares_and_searches_resume(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    one = IndexServer(world, "one")
    two = IndexServer(world, "two")
    made += [one, two]
    servers = [one.address, two.address]
    lefty = NapPeer(world, tmp_path, "lefty", servers, files=little_toot).start()
    mred = NapPeer(world, tmp_path, "mred", servers).start()
    made += [lefty, mred]
    lefty.wait_online()
    mred.wait_online()
    assert lefty.client.server == one.address and mred.client.server == one.address
    assert len(mred.search("toot")) == 1

    one.close()  # the server dies
    # A search asked as the server goes away is not lost: it runs again on "two".
    done: list[str | None] = []
    mred.client.search(SearchQuery(contains=("little toot",), max_results=10),
                       lambda hit: None, done.append)
    assert world.run_until(
        lambda: lefty.client.server == two.address and mred.client.server == two.address
        and bool(done), WAIT,
    ), (lefty.client.state, mred.client.state, done)
    assert done == [None]
    assert lefty.client.state == ONLINE and lefty.client.logins == 2
    assert lefty.observer.named("napster.server_lost")
    # lefty shared everything again on "two": searches find its file there.
    found: list[int] = []

    def search_finds() -> bool:
        found.append(len(mred.search("little toot")))
        return found[-1] == 1

    assert any(search_finds() for _ in range(20)), found
    # Downloads work through the new server too.
    [hit] = mred.search("little toot")
    info = mred.wait_download(mred.download(hit))
    assert info.status == "complete"


def test_wrong_password_is_refused_with_the_servers_words(
    world: World, tmp_path: Path, made: list[NapPeer | IndexServer]
) -> None:
    server = IndexServer(world, "server")
    made.append(server)
    first = NapPeer(world, tmp_path, "lefty", [server.address]).start()
    made.append(first)
    first.wait_online()  # registers "lefty" with pw-lefty
    first.close()
    made.remove(first)
    impostor = NapPeer(world, tmp_path, "lefty2", [server.address])
    impostor.client.config.nick = "lefty"
    impostor.client.config.password = "wrong"
    impostor.start()
    made.append(impostor)
    assert world.run_until(lambda: bool(impostor.client.refusals), WAIT)
    assert impostor.client.refusals[server.address] == "Invalid Password"
    assert impostor.client.state != ONLINE
