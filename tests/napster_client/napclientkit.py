"""Helpers for the Napster client tests: index servers and peers in one world.

A :class:`NapPeer` is the Napster half of a node built from the cores only (a
catalog, the share index, a :class:`NapsterClient` and
:class:`NapsterTransfers`), so the same test body runs on real sockets
(:class:`RealWorld`) and in the simulator (:class:`SimWorld`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prockit
from prockit import POLL as POLL
from prockit import START_TIMEOUT as START_TIMEOUT
from prockit import ServerProc as ServerProc

from peerlab.apps.media import write_mp3
from peerlab.overlays.napster.client import ClientConfig, NapsterClient, NapsterHit
from peerlab.overlays.napster.peer import NapsterSource, NapsterTransfers, ShareIndex
from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.base import Address, Listener, RecordingObserver, Runtime
from peerlab.runtime.worlds import World
from peerlab.storage.catalog import Catalog
from peerlab.storage.napster_index import ScryptCost, SqliteIndexStore
from peerlab.wire.napster import LinkType, SearchQuery

#: Bounds on every wait (seconds, real or virtual; never asserted as timings).
WAIT = 30.0


class IndexServer:
    """A NapsterServer on its own runtime with an in-memory SQLite index."""

    def __init__(self, world: World, name: str, **overrides: Any) -> None:
        self.runtime = world.new_runtime(name, observer=RecordingObserver())
        self.store = SqliteIndexStore(":memory:")
        settings: dict[str, Any] = {
            "host": world.host(self.runtime), "port": 0, "password_cost": ScryptCost(log2_n=4),
            "motd": (f"Welcome to {name}.",),
        }
        settings.update(overrides)
        self.server = NapsterServer(self.runtime, self.store, NapsterServerConfig(**settings))
        self.server.start()
        self.address: Address = self.server.address

    def close(self) -> None:
        self.server.close()


def little_toot(folder: Path, seconds: float = 30.0, seed: int = 1) -> Path:
    """The lecture's track, tagged, about 1.2 MB at 320 kbps."""
    return write_mp3(
        folder / "Maclean & Maclean - Little Toot.mp3", title="Little Toot",
        artist="Maclean & Maclean", album="The Gross Manual", genre="Comedy",
        seconds=seconds, bitrate_kbps=320, seed=seed,
    )  # fmt: skip


class NapPeer:
    """One Napster user: catalog, share index, client and transfers."""

    def __init__(
        self,
        world: World,
        root: Path,
        name: str,
        servers: list[Address],
        *,
        firewalled: bool = False,
        password: str | None = None,
        link: LinkType = LinkType.CABLE,
        files: Callable[[Path], object] | None = None,
    ) -> None:
        self.world = world
        self.name = name
        self.observer = RecordingObserver()
        self.runtime: Runtime = world.new_runtime(name, observer=self.observer)
        self.dir = root / name
        self.share_dir = self.dir / "share"
        self.share_dir.mkdir(parents=True)
        if files is not None:
            files(self.share_dir)
        self.catalog = Catalog(self.dir / "catalog.db")
        self.catalog.add_folder(self.share_dir)
        self.catalog.scan()
        self.index = ShareIndex()
        self.index.rebuild(self.catalog.files())
        self.listener: Listener | None = None
        transfers: list[NapsterTransfers] = []
        if not firewalled:
            self.listener = self.runtime.listen(
                (world.host(self.runtime), 0), lambda: transfers[0].handler_factory()()
            )
        port = self.listener.address[1] if self.listener is not None else 0
        self.client = NapsterClient(
            self.runtime,
            ClientConfig(servers=list(servers), nick=name, password=password or f"pw-{name}",
                         data_port=port, link_type=link, retry_min=0.2, retry_max=1.0),
            shares=lambda: self.index.messages,
        )
        self.transfers = NapsterTransfers(
            self.runtime, self.client, self.catalog, self.index,
            incomplete_dir=self.dir / "incomplete", download_dir=self.dir / "downloads",
        )  # fmt: skip
        transfers.append(self.transfers)
        self.client.on_online = self.transfers.online
        self.client.on_push_request = self.transfers.push_requested
        self.client.on_upload_request = self.transfers.upload_requested
        self.client.on_link_speed = self.transfers.link_speed

    def start(self) -> NapPeer:
        self.client.start()
        return self

    def wait_online(self) -> None:
        assert self.world.run_until(lambda: self.client.online, WAIT), (
            f"{self.name} not online: {self.client.state} {self.client.detail}"
        )

    def search(self, words: str, limit: int = 100) -> list[NapsterHit]:
        hits: list[NapsterHit] = []
        done: list[str | None] = []
        self.client.search(SearchQuery(contains=(words,), max_results=limit),
                           hits.append, done.append)
        assert self.world.run_until(lambda: bool(done), WAIT), "search did not end"
        assert done == [None], done
        return hits

    def download(self, hit: NapsterHit, name: str | None = None) -> str:
        dl = self.transfers.add(
            name=name or hit.filename.rsplit("\\", 1)[-1], size=hit.size, md5=hit.md5,
            sources=[NapsterSource(hit.nick, hit.filename, int(hit.link_type))],
        )  # fmt: skip
        return dl.id

    def wait_download(self, download_id: str, statuses: tuple[str, ...] = ("complete", "failed")
                      ) -> Any:
        def ended() -> bool:
            dl = self.transfers.get(download_id)
            return dl is not None and dl.status in statuses

        assert self.world.run_until(ended, WAIT), self.transfers.downloads()
        dl = self.transfers.get(download_id)
        assert dl is not None
        return dl.info(self.runtime.now())

    def close(self) -> None:
        self.transfers.close()
        self.client.close()
        if self.listener is not None:
            self.listener.close()
        self.catalog.close()


def same_bytes(a: Path, b: Path) -> bool:
    return os.path.getsize(a) == os.path.getsize(b) and a.read_bytes() == b.read_bytes()


# ------------------------------------------------------- processes (CLI tests)
# The shared kit (tests/kits/prockit.py): ServerProc and the bounds
# are its own; a NodeProc here is a Napster client, started at once.


class NodeProc(prockit.NodeProc):
    """One ``peerlab node`` subprocess with a Napster client; ready means
    online on its server too."""

    def __init__(self, home: Path, data_dir: Path, args: list[str]) -> None:
        super().__init__(home, data_dir, args)
        self.start()

    def node_args(self) -> list[str]:
        return [*super().node_args(), "--napster-port", "0"]

    def wait_ready(
        self, files: int = 0, *, napster: bool = True, shared: int | None = None
    ) -> dict[str, Any]:
        """Until the node answers, has scanned ``files`` files and is on Napster
        with ``shared`` files shared there (default: ``files``)."""
        return super().wait_ready(files, napster=napster, shared=shared)
