"""Push/GIV wired to real servents (peerlab.overlays.gnutella), as the node
wires them, in both worlds.

    A (downloader) -- B (plain servent) -- C (firewalled: never listens)
                                       \\-- D (shares the same file directly)

Each node but C takes Gnutella, HTTP and GIV on one shared port
(SharedPortHandler).  A searches, gets hits from C (push flag) and D, and
downloads from both at once: A's DownloadManager asks A's servent to route a
Push toward C's servent GUID, C's servent hands the Push to C's
UploadService, which connects to A's shared port and sends GIV; A serves the
GIV connection to the waiting source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pushkit import WORLDS, make_data, make_world, one_file_catalog

from peerlab.overlays.gnutella.search import HitSource, SearchResult
from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.overlays.transfer.download import DownloadManager, PushRequest, Source
from peerlab.overlays.transfer.push import shared_port_factory
from peerlab.overlays.transfer.server import UploadConfig, UploadService
from peerlab.runtime.base import RecordingObserver, StreamHandler
from peerlab.runtime.worlds import World
from peerlab.storage.catalog import Catalog
from peerlab.wire.gnutella import Push

SIZE = 1_200_000


class GNode:
    """A servent, an upload service and a download manager behind one port
    (or, ``firewalled``, no port at all)."""

    def __init__(
        self, world: World, name: str, folder: Path, *, catalog: Catalog, firewalled: bool = False
    ) -> None:
        self.observer = RecordingObserver(limit=50_000)
        rt = self.runtime = world.new_runtime(name, observer=self.observer)
        self.catalog = catalog
        self.uploads = UploadService(rt, catalog, UploadConfig(rate_limit=400_000))
        self.downloads = DownloadManager(
            rt, incomplete_dir=folder / "inc", download_dir=folder / "downloads"
        )
        self.listener = None
        advertise = None
        routes: dict[str, Callable[[], StreamHandler]] = {}
        if not firewalled:
            self.listener = rt.listen((world.host(rt), 0), shared_port_factory(rt, routes))
            advertise = self.listener.address
            self.downloads.self_addresses.add(advertise)
            self.uploads.self_addresses.add(advertise)
        cfg = ServentConfig(
            listen_host=world.host(rt),
            listen_port=0,
            listen=False,
            advertise=advertise,
            target_degree=0,
            firewalled=firewalled,
        )
        self.servent = Servent(rt, cfg, catalog)
        routes["gnutella"] = self.servent.incoming_handler
        routes["http"] = self.uploads.handler_factory()
        routes["giv"] = self.downloads.giv_handler
        # The wiring the node does: Pushes in -> GIV out; our pushes -> the overlay.
        self.servent.on_push = self._on_push
        self.downloads.push_sender = self._send_push
        self.servent.start()

    def _on_push(self, push: Push) -> None:
        self.uploads.push((push.ip, push.port), push.file_index, push.servent_guid)

    def _send_push(self, req: PushRequest) -> bool:
        return self.servent.send_push(req.servent_guid, req.index)

    def close(self) -> None:
        self.downloads.close()
        self.uploads.close()
        self.servent.close()
        if self.listener is not None:
            self.listener.close()
        self.catalog.close()


def _empty_catalog(folder: Path) -> Catalog:
    (folder / "share").mkdir(parents=True)
    catalog = Catalog(folder / "catalog.db")
    catalog.add_folder(folder / "share")
    catalog.scan()
    return catalog


def _link(world: World, a: GNode, b: GNode) -> None:
    assert b.listener is not None
    before = (a.servent.open_count, b.servent.open_count)
    assert a.servent.connect(b.listener.address)
    assert world.run_until(
        lambda: a.servent.open_count > before[0] and b.servent.open_count > before[1], 20
    )


@pytest.mark.parametrize("world_name", WORLDS)
def test_download_from_a_firewalled_servent_and_a_direct_one(
    tmp_path: Path, world_name: str
) -> None:
    world = make_world(world_name)
    nodes: list[GNode] = []
    try:
        data = make_data(SIZE, seed=31)
        a = GNode(world, "a", tmp_path / "a", catalog=_empty_catalog(tmp_path / "a"))
        b = GNode(world, "b", tmp_path / "b", catalog=_empty_catalog(tmp_path / "b"))
        cat_c, file_c = one_file_catalog(tmp_path / "c", "Little Toot.mp3", data)
        c = GNode(world, "c", tmp_path / "c", catalog=cat_c, firewalled=True)
        cat_d, file_d = one_file_catalog(tmp_path / "d", "Little Toot.mp3", data)
        d = GNode(world, "d", tmp_path / "d", catalog=cat_d)
        nodes = [a, b, c, d]
        _link(world, a, b)
        _link(world, c, b)  # C only ever dials out
        _link(world, d, b)
        found: list[tuple[SearchResult, HitSource]] = []
        search = a.servent.search("little toot", lambda r, s: found.append((r, s)))
        assert world.run_until(lambda: search.sources >= 2, 20)
        by_guid = {s.servent_guid: s for _, s in found}
        hit_c = by_guid[c.servent.guid]
        hit_d = by_guid[d.servent.guid]
        assert hit_c.push is True and hit_d.push is not True
        result = found[0][0]
        assert result.urn == file_c.urn == file_d.urn
        sources = [
            Source(hit_c.address, hit_c.index, hit_c.name,
                   servent_guid=hit_c.servent_guid, push=True),
            Source(hit_d.address, hit_d.index, hit_d.name),
        ]  # fmt: skip
        dl = a.downloads.add(result.urn, name=result.name, size=result.size, sources=sources)
        assert world.run_until(lambda: dl.status in ("complete", "failed"), 60)
        info = dl.info()
        assert info.status == "complete", info.error
        assert info.path is not None and info.path.read_bytes() == data
        rows = {r.push: r for r in info.sources}
        assert rows[True].bytes > 0 and rows[False].bytes > 0
        # The Push went A -> B -> C along the hit's reverse path; C connected out.
        assert b.servent.counters["routed.push"] >= 1
        assert c.observer.counters["upload.push_connected"] >= 1
        assert c.observer.counters["upload.bytes"] == rows[True].bytes
        assert a.observer.counters["transfer.push_connected"] >= 1
        assert a.observer.counters["transfer.giv_refused"] == 0
        assert c.listener is None
    finally:
        for node in nodes:
            node.close()
        world.run_for(0.2)
        world.close()
