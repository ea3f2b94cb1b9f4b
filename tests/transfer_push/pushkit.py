"""Helpers for the Push/GIV and X-Alt tests: one-file shares with the real
Catalog, a firewalled sharer (an UploadService that never listens), a
downloader behind a shared port (HTTP + GIV), a stand-in for the Gnutella
overlay that carries Push descriptors, and a raw stream peer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peerlab.overlays.transfer.download import DownloadConfig, DownloadManager, PushRequest
from peerlab.overlays.transfer.push import shared_port_factory
from peerlab.overlays.transfer.server import UploadConfig, UploadService
from peerlab.runtime.base import (
    Address,
    BaseStreamHandler,
    Listener,
    RecordingObserver,
    Runtime,
    Stream,
)
from peerlab.runtime.worlds import RealWorld, SimWorld, World
from peerlab.storage.catalog import Catalog, SharedFile

WORLDS = ["real", "sim"]


def make_world(name: str, seed: int = 1) -> World:
    """127.0.0.1, or a simulated network of 10 MB/s links with 5 ms latency."""
    if name == "real":
        return RealWorld()
    return SimWorld(seed=seed, up=1e7, down=1e7, latency=0.005)


def make_data(n: int, seed: int = 1) -> bytes:
    """``n`` deterministic pseudo-random bytes."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 256
    return bytes(out[:n])


def one_file_catalog(folder: Path, name: str, data: bytes) -> tuple[Catalog, SharedFile]:
    """A real catalog sharing ``folder`` with one file ``name``."""
    share = folder / "share"
    share.mkdir(parents=True)
    (share / name).write_bytes(data)
    catalog = Catalog(folder / "catalog.db")
    catalog.add_folder(share)
    catalog.scan()
    (shared,) = catalog.files()
    return catalog, shared


@dataclass
class Sharer:
    """An UploadService on its own runtime; ``listener`` only when asked."""

    runtime: Runtime
    observer: RecordingObserver
    service: UploadService
    catalog: Catalog
    file: SharedFile
    guid: bytes
    listener: Listener | None = None

    @property
    def address(self) -> Address:
        assert self.listener is not None
        return self.listener.address

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.service.close()
        self.catalog.close()


def make_sharer(
    world: World,
    name: str,
    folder: Path,
    data: bytes,
    *,
    file_name: str = "little toot.mp3",
    listen: bool = False,
    config: UploadConfig | None = None,
) -> Sharer:
    obs = RecordingObserver()
    rt = world.new_runtime(name, observer=obs)
    catalog, shared = one_file_catalog(folder, file_name, data)
    service = UploadService(rt, catalog, config or UploadConfig())
    guid = hashlib.md5(name.encode()).digest()
    sharer = Sharer(rt, obs, service, catalog, shared, guid)
    if listen:
        sharer.listener = rt.listen((world.host(rt), 0), service.handler_factory())
    return sharer


@dataclass
class Downloader:
    """A DownloadManager behind one shared port: HTTP for its own (empty)
    uploads, GIV for pushed connections."""

    runtime: Runtime
    observer: RecordingObserver
    manager: DownloadManager
    listener: Listener

    @property
    def address(self) -> Address:
        return self.listener.address

    def close(self) -> None:
        self.manager.close()
        self.listener.close()


def make_downloader(world: World, folder: Path, config: DownloadConfig | None = None) -> Downloader:
    obs = RecordingObserver()
    rt = world.new_runtime("downloader", observer=obs)
    mgr = DownloadManager(
        rt,
        incomplete_dir=folder / "incomplete",
        download_dir=folder / "downloads",
        config=config or DownloadConfig(),
    )
    routes = {"giv": mgr.giv_handler}
    listener = rt.listen((world.host(rt), 0), shared_port_factory(rt, routes))
    mgr.self_addresses.add(listener.address)
    return Downloader(rt, obs, mgr, listener)


@dataclass
class PushRouter:
    """Stands in for the Gnutella overlay between downloader and sharers: a
    Push for a known servent GUID reaches that sharer ``hop_delay`` seconds
    later (its servent then calls ``UploadService.push``), addressed to the
    downloader's listening port.  ``silent`` GUIDs are routed but never
    answered (a Push lost on the way)."""

    downloader: Downloader
    sharers: dict[bytes, Sharer] = field(default_factory=dict)
    silent: set[bytes] = field(default_factory=set)
    hop_delay: float = 0.01
    calls: list[PushRequest] = field(default_factory=list)
    answers: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.downloader.manager.push_sender = self.send

    def add(self, sharer: Sharer) -> None:
        self.sharers[sharer.guid] = sharer

    def send(self, req: PushRequest) -> bool:
        self.calls.append(req)
        sharer = self.sharers.get(req.servent_guid)
        if sharer is None and req.servent_guid not in self.silent:
            return False
        if sharer is not None and req.servent_guid not in self.silent:
            target = self.downloader.address

            def arrive() -> None:
                self.answers.append(sharer.service.push(target, req.index, req.servent_guid))

            sharer.runtime.call_later(self.hop_delay, arrive)
        return True


class RawPeer(BaseStreamHandler):
    """A raw stream end that records what it gets and can write."""

    def __init__(self, on_data: Callable[[RawPeer], None] | None = None) -> None:
        self.data = bytearray()
        self.made = False
        self.lost = False
        self.eof = False
        self.failed = False
        self.on_data = on_data

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self.made = True

    def connection_failed(self, exc: object) -> None:
        self.failed = True

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.on_data is not None:
            self.on_data(self)

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: object) -> None:
        self.lost = True

    @property
    def ended(self) -> bool:
        """The other end closed (half or whole)."""
        return self.eof or self.lost

    def write(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """``(status line, headers lower-cased, body)`` of one raw HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return line, headers, body
