"""A rich search through a line of servents, the same body on real sockets
on 127.0.0.1 and in the simulator: "Artist: linkin park, 128 kbps or more"
is answered only with the files whose tags match, by the servents that have
them, and every servent it passes reports ``gnutella.query_seen`` with the
query's text, hops and TTL (the web page's Monitor reads that event)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from peerlab.overlays.gnutella.search import HitSource, SearchResult, result_metadata
from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import RealWorld, SimWorld, World
from peerlab.wire.gxml import RichQuery
from peerlab.wire.urn import sha1_urn

#: Virtual or real seconds a step may take, at most.
WAIT = 20.0


@dataclass(frozen=True)
class Track:
    index: int
    name: str
    size: int
    artist: str
    title: str
    bitrate: int
    duration: float

    @property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.name.encode()).digest()

    @property
    def urn(self) -> str:
        return sha1_urn(self.sha1)


class Shares:
    """Shares that match words in names and tags alike (like the catalog's "all")."""

    def __init__(self, files: list[Track]) -> None:
        self.files = files

    def search(self, text: str, *, limit: int = 100) -> list[Track]:
        words = text.lower().split()
        hay = {f.index: f"{f.name} {f.artist} {f.title}".lower() for f in self.files}
        return [f for f in self.files if all(w in hay[f.index] for w in words)][:limit]

    def by_urn(self, urn: str) -> Track | None:
        return next((f for f in self.files if f.urn == urn), None)


SHARES = [
    [],
    [Track(1, "numb.mp3", 100, "Linkin Park", "Numb", 192, 187.0),
     Track(2, "faint.mp3", 101, "Linkin Park", "Faint", 96, 162.0)],
    [Track(1, "linkin park - numb (cover).mp3", 102, "The Cover Band", "Numb", 256, 190.0),
     Track(2, "papercut.mp3", 103, "Linkin Park", "Papercut", 128, 184.0)],
]  # fmt: skip


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=5)
    try:
        yield w
    finally:
        w.close()


def test_a_rich_query_through_a_line_of_servents(world: World) -> None:
    servents: list[Servent] = []
    observers: list[RecordingObserver] = []
    for i, files in enumerate(SHARES):
        obs = RecordingObserver(limit=10_000)
        rt = world.new_runtime(f"s{i}", observer=obs)
        cfg = ServentConfig(listen_host=world.host(rt), listen_port=0, target_degree=0)
        s = Servent(rt, cfg, Shares(files))
        s.start()
        servents.append(s)
        observers.append(obs)
    for i in range(1, len(servents)):
        assert servents[i - 1].connect(servents[i].address)
        assert world.run_until(lambda i=i: servents[i].open_count >= 1, WAIT)
    try:
        rich = RichQuery.from_form("artist", "linkin park", min_bitrate=128)
        found: list[tuple[SearchResult, HitSource]] = []
        search = servents[0].search(
            "linkin park", lambda r, src: found.append((r, src)), ttl=3, xml=rich.to_xml()
        )
        assert world.run_until(lambda: len(found) >= 2, WAIT)
        world.run_for(1.0)  # nothing else may come
        got = {r.name: (src.distance, result_metadata(r.metadata)) for r, src in found}
        assert set(got) == {"numb.mp3", "papercut.mp3"}
        assert got["numb.mp3"][0] == 1 and got["papercut.mp3"][0] == 2
        assert got["numb.mp3"][1]["bitrate"] == 192
        assert got["papercut.mp3"][1]["artist"] == "Linkin Park"
        assert search.bad_xml == 0
        # Each servent the query reached saw it once, one hop further each time.
        seen: list[Any] = [obs.named("gnutella.query_seen") for obs in observers]
        assert seen[0] == []
        for hops, events in ((0, seen[1]), (1, seen[2])):
            (ev,) = events
            assert (ev["text"], ev["hops"], ev["ttl"], ev["urns"]) == (
                "linkin park", hops, 3 - hops, []
            )  # fmt: skip
            assert isinstance(ev["peer"], str) and ":" in ev["peer"]
        for s in servents[1:]:
            assert s.counters["queries.answered"] == 1
    finally:
        for s in servents:
            s.close()
        world.run_for(0.2)
