"""``X-Push-Proxies`` (gtk-gnutella ``doc/gnutella/push_proxy`` section 4.2):
a firewalled servent names its current push proxies in every response, and the
downloader must replace what it knew for that servent with the list, so the
next Push goes through the proxies the servent has now, not the ones its
Query Hit listed.  On 127.0.0.1 and in the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from pushkit import WORLDS, PushRouter, RawPeer, make_data, make_downloader, make_sharer, make_world

from peerlab.overlays.gnutella.pushproxy import ProxyBook
from peerlab.overlays.transfer.download import (
    MAX_PUSH_PROXIES_READ,
    DownloadConfig,
    PushRequest,
    Source,
)
from peerlab.overlays.transfer.push import Giv, encode_giv
from peerlab.runtime.base import Address

#: What the servent's Query Hit listed (GGEP PUSH): replaced once it speaks.
HIT_PROXIES: list[Address] = [("192.0.2.1", 6346)]
GUID = bytes(range(16))


def _busy(proxies: str) -> bytes:
    """A 503 that keeps the source queued and names ``proxies``."""
    return (
        "HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n"
        f"X-Push-Proxies: {proxies}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("world_name", WORLDS)
def test_x_push_proxies_replace_the_list_the_next_push_goes_through(
    tmp_path: Path, world_name: str
) -> None:
    """A raw firewalled servent answers each request busy with a proxy list:
    the first (garbage, duplicates and unusable addresses among it) replaces
    the hit's list, the same list again is no news, a new one replaces it, and
    the Push after the servent hangs up goes by the newest."""
    world = make_world(world_name)
    try:
        dl = make_downloader(world, tmp_path / "dl", DownloadConfig(retry_backoff=0.05))
        book = ProxyBook()
        book.learn(GUID, HIT_PROXIES)
        dl.manager.push_proxies_heard = book.learn
        fs = world.new_runtime("firewalled")
        first = "192.0.2.7:6346, 0.0.0.0:1, junk, 192.0.2.7:6346,192.0.2.8:6347"
        answers = [_busy(first), _busy(first), _busy("192.0.2.9:6346")]
        proxies_at_push: list[list[Address]] = []
        peers: list[RawPeer] = []

        def on_request(peer: RawPeer) -> None:
            # One answer per complete request head; after the last, hang up.
            while b"\r\n\r\n" in peer.data:
                _, _, rest = bytes(peer.data).partition(b"\r\n\r\n")
                peer.data[:] = rest
                if answers:
                    peer.write(answers.pop(0))
                if not answers and peer.stream is not None:
                    peer.stream.close()

        def send(req: PushRequest) -> bool:
            proxies_at_push.append(book.proxies(req.servent_guid))
            peer = RawPeer(on_request)
            peers.append(peer)

            def giv() -> None:
                if not peer.made:
                    fs.call_later(0.05, giv)
                    return
                peer.write(encode_giv(Giv(req.index, req.servent_guid, req.name or "")))

            fs.connect(dl.address, peer)
            fs.call_later(0.05, giv)
            return True

        dl.manager.push_sender = send
        src = Source(("10.1.2.3", 6346), 3, "toot.mp3", servent_guid=GUID, push=True)
        urn = "urn:sha1:" + "A" * 32
        dl.manager.add(urn, name="toot.mp3", size=100_000, sources=[src])
        assert world.run_until(lambda: len(proxies_at_push) >= 2, timeout=30)
        assert proxies_at_push[0] == HIT_PROXIES
        assert proxies_at_push[1] == [("192.0.2.9", 6346)]
        counters = dl.observer.counters
        assert counters["transfer.push_proxies_heard"] == 2  # the repeat was no news
        events = [e for e in dl.observer.events if e[0] == "transfer.push_proxies"]
        assert [e[1]["proxies"] for e in events] == [
            ["192.0.2.7:6346", "192.0.2.8:6347"],
            ["192.0.2.9:6346"],
        ]
        dl.close()
    finally:
        world.close()


@pytest.mark.parametrize("world_name", WORLDS)
def test_a_firewalled_upload_service_refreshes_the_book(tmp_path: Path, world_name: str) -> None:
    """peerlab's own upload side, firewalled, sends its proxies on every
    response: the download completes and the book holds them, told once."""
    world = make_world(world_name)
    try:
        data = make_data(400_000, seed=4)
        sharer = make_sharer(world, "fw", tmp_path / "fw", data)
        now: list[Address] = [("192.0.2.7", 6346), ("192.0.2.8", 6347)]
        sharer.service.our_push_proxies = lambda: list(now)
        dl = make_downloader(world, tmp_path / "dl")
        router = PushRouter(dl)
        router.add(sharer)
        book = ProxyBook()
        book.learn(sharer.guid, HIT_PROXIES)
        dl.manager.push_proxies_heard = book.learn
        f = sharer.file
        src = Source(("10.1.2.3", 6346), f.index, f.name, servent_guid=sharer.guid, push=True)
        d = dl.manager.add(f.urn, name=f.name, size=f.size, sources=[src],
                           chunk_root=f.chunk_root)  # fmt: skip
        assert world.run_until(lambda: d.status in ("complete", "failed"), timeout=60)
        assert d.status == "complete", d.error
        assert book.proxies(sharer.guid) == now
        assert dl.observer.counters["transfer.push_proxies_heard"] == 1
        dl.close()
        sharer.close()
    finally:
        world.close()


def test_a_long_list_is_read_only_so_far(tmp_path: Path) -> None:
    world = make_world("sim")
    dl = make_downloader(world, tmp_path / "dl", DownloadConfig(push_timeout=600))
    heard: list[tuple[bytes, list[Address]]] = []
    dl.manager.push_proxies_heard = lambda guid, proxies: heard.append((guid, proxies))
    fs = world.new_runtime("firewalled")
    long_list = ",".join(f"192.0.2.{n}:6346" for n in range(1, 40))

    def answer(peer: RawPeer) -> None:
        if b"\r\n\r\n" in peer.data and peer.stream is not None:
            peer.data.clear()
            peer.write(_busy(long_list))

    peer = RawPeer(answer)

    def send(req: PushRequest) -> bool:
        fs.connect(dl.address, peer)
        fs.call_later(0.05, lambda: peer.write(encode_giv(Giv(req.index, req.servent_guid))))
        return True

    dl.manager.push_sender = send
    src = Source(("10.1.2.3", 6346), 3, "toot.mp3", servent_guid=GUID, push=True)
    dl.manager.add("urn:sha1:" + "B" * 32, name="toot.mp3", size=50_000, sources=[src])
    assert world.run_until(lambda: bool(heard), timeout=30)
    ((guid, proxies),) = heard
    assert guid == GUID
    assert proxies == [(f"192.0.2.{n}", 6346) for n in range(1, MAX_PUSH_PROXIES_READ + 1)]
    dl.close()
