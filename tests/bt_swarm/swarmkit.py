"""Helpers of the bt_swarm tests: torrents from bytes, sessions in a world,
libtorrent settings for loopback."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from peerlab.overlays.bittorrent import Session, SessionConfig, Torrent
from peerlab.runtime.base import RecordingObserver, Runtime
from peerlab.runtime.worlds import World
from peerlab.wire.metainfo import Info, Metainfo

#: libtorrent on loopback: TCP only (uTP crawls there), nothing but 127.0.0.1.
LT_SETTINGS: dict[str, Any] = {
    "listen_interfaces": "127.0.0.1:0",
    "outgoing_interfaces": "127.0.0.1",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_tcp": True,
    "enable_incoming_tcp": True,
    "allow_multiple_connections_per_ip": True,
    "ssrf_mitigation": False,
    "stop_tracker_timeout": 1,
    "alert_mask": 0,
}


def content(size: int, salt: bytes = b"") -> bytes:
    """Deterministic, incompressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(salt + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def pieces_of(data: bytes, piece_length: int) -> bytes:
    return b"".join(
        hashlib.sha1(data[i : i + piece_length]).digest()
        for i in range(0, len(data), piece_length)
    )


def single_file(data: bytes, piece_length: int, name: str = "payload.bin") -> Info:
    return Info.create(name, piece_length, pieces_of(data, piece_length), length=len(data))


def multi_file(files: Sequence[tuple[Sequence[str], bytes]], piece_length: int,
               name: str = "album") -> tuple[Info, bytes]:
    data = b"".join(d for _, d in files)
    info = Info.create(name, piece_length, pieces_of(data, piece_length),
                       files=[(p, len(d)) for p, d in files])
    return info, data


def metainfo(info: Info, trackers: Sequence[str] = ()) -> Metainfo:
    return Metainfo.create(info, trackers=[[t] for t in trackers])


def session(world: World, name: str, *, link: dict[str, float] | None = None,
            **cfg: Any) -> tuple[Session, Runtime, RecordingObserver]:
    """A started session on a new host; ``link`` overrides a simulated host's
    link figures (``up``, ``down``, ``latency``)."""
    obs = RecordingObserver()
    if link:
        rt = world.new_runtime(name, observer=obs, **link)  # type: ignore[call-arg]
    else:
        rt = world.new_runtime(name, observer=obs)
    cfg.setdefault("listen_host", world.host(rt))
    s = Session(rt, SessionConfig(**cfg))
    s.start()
    return s, rt, obs


def blocks_received(t: Torrent) -> int:
    return t.counters["blocks_received"]


def write_files(root: Path, info: Info, data: bytes) -> None:
    """Lay ``data`` out as ``info``'s files under ``root`` (a seed's folder)."""
    for f in info.data_files:
        path = root.joinpath(*f.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[f.offset : f.offset + f.length])


class Swarm:
    """A tracker, one seed and ``leechers`` peerlab peers in a simulated
    world, all on memory storage.  ``free_riders`` of the leechers (the last
    ones) run a choker that never unchokes anybody."""

    def __init__(
        self,
        leechers: int,
        data: bytes,
        piece_length: int,
        *,
        seed: int = 1,
        up: float = 200_000.0,
        strategy: str = "rarest",
        free_riders: int = 0,
        stagger: float = 0.05,
    ) -> None:
        from peerlab.overlays.bittorrent import NeverUnchoke, PickerConfig
        from peerlab.overlays.tracker.server import Tracker, TrackerConfig
        from peerlab.runtime.worlds import SimWorld

        self.world = SimWorld(seed, up=up, down=5 * up, latency=0.01)
        w = self.world
        trt = w.new_runtime("tracker", up=10e6, down=10e6)
        self.tracker = Tracker(trt, TrackerConfig(host=w.host(trt), interval=300, udp_port=None))
        self.tracker.start()
        assert self.tracker.announce_url is not None
        self.data = data
        self.info = single_file(data, piece_length)
        self.meta = metainfo(self.info, [self.tracker.announce_url])
        picker = PickerConfig(strategy=strategy)  # type: ignore[arg-type]
        self.seed_session, _, self.seed_obs = session(w, "seed", storage="memory", picker=picker)
        self.seed = self.seed_session.add_torrent(self.meta, data=data, seed_mode=True)
        self.peers: list[Torrent] = []
        self.free_riders: list[Torrent] = []
        for i in range(leechers):
            s, rt, _ = session(w, f"leech{i}", storage="memory", picker=picker)
            rider = i >= leechers - free_riders
            t = s.add_torrent(self.meta, start=False, choker=NeverUnchoke() if rider else None)
            rt.call_later(stagger * i, t.start)  # a flash crowd, a few ms apart
            (self.free_riders if rider else self.peers).append(t)
        self.spread_at: int | None = None  # seed upload when every piece left it

    @property
    def leechers(self) -> list[Torrent]:
        return self.peers + self.free_riders

    def _spread(self) -> bool:
        union = 0
        for t in self.leechers:
            if t.store is not None:
                union |= int.from_bytes(t.store.have.data, "big")
        return union.bit_count() == self.info.piece_count

    def run(self, limit: float = 600.0, step: float = 0.25) -> bool:
        """Run until every leecher completes (virtual seconds)."""
        w = self.world
        while w.sim.now < limit:
            w.run_for(step)
            if self.spread_at is None and self._spread():
                self.spread_at = self.seed.uploaded
            if all(t.complete for t in self.leechers):
                return True
        return False


def written(path: Path, data: bytes) -> Callable[[], bool]:
    """``path`` holds ``data``: libtorrent reports seeding once every piece
    hashed, which can be before its disk thread wrote the last blocks out, so
    a test waits (bounded) for the bytes rather than reading them at once."""
    return lambda: path.exists() and path.read_bytes() == data
