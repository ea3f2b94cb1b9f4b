"""The index server is written against the runtime interface: the same
session (login, share, search, firewalled push) on real sockets and in the
simulator, with the SQLite index in memory."""

from __future__ import annotations

import pytest

from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.base import Runtime
from peerlab.runtime.worlds import RealWorld, SimWorld, StreamRecorder, World
from peerlab.storage.napster_index import ScryptCost, SqliteIndexStore
from peerlab.wire.napster import (
    AlternateDownloadAck,
    AlternateDownloadRequest,
    FrameDecoder,
    LinkType,
    Login,
    LoginAck,
    Message,
    SearchEnd,
    SearchQuery,
    SearchRequest,
    SearchResult,
    ShareFile,
    decode,
    encode,
    ip_to_napster,
)


def messages(recorder: StreamRecorder) -> list[Message]:
    return [decode(f.type, f.payload) for f in FrameDecoder().feed(bytes(recorder.data))]


def has(recorder: StreamRecorder, kind: type[Message]) -> bool:
    return any(isinstance(m, kind) for m in messages(recorder))


def client(world: World, name: str, address: tuple[str, int]) -> tuple[Runtime, StreamRecorder]:
    rt = world.new_runtime(name)
    rec = StreamRecorder()
    rt.connect(address, rec)
    return rt, rec


@pytest.mark.parametrize("world_name", ["real", "sim"])
def test_session_in_both_worlds(world_name: str) -> None:
    world: World = RealWorld() if world_name == "real" else SimWorld(seed=7, latency=0.01)
    store = SqliteIndexStore(":memory:")
    try:
        server_rt = world.new_runtime("server")
        server = NapsterServer(server_rt, store, NapsterServerConfig(
            host=world.host(server_rt), port=0, password_cost=ScryptCost(log2_n=4)))
        server.start()
        sharer_rt, sharer = client(world, "sharer", server.address)
        seeker_rt, seeker = client(world, "seeker", server.address)
        assert world.run_until(lambda: sharer.made and seeker.made, 10)
        assert sharer.stream is not None and seeker.stream is not None
        sharer.stream.write(
            encode(Login("sharer", "pw", 0, "sim", LinkType.DSL))
            + encode(ShareFile("little toot.mp3", "0" * 32, 4096, 128, 44100, 200))
        )
        assert world.run_until(lambda: has(sharer, LoginAck), 10)
        seeker.stream.write(
            encode(Login("seeker", "pw", 6699, "sim", LinkType.T1))
            + encode(SearchRequest(SearchQuery(contains=("toot",))))
            + encode(AlternateDownloadRequest("sharer", "little toot.mp3"))
        )
        assert world.run_until(lambda: has(seeker, SearchEnd) and has(
            sharer, AlternateDownloadAck), 10)
        (hit,) = [m for m in messages(seeker) if isinstance(m, SearchResult)]
        sharer_ip = ip_to_napster(world.host(sharer_rt))
        assert (hit.filename, hit.nick, hit.ip, hit.link_type) == (
            "little toot.mp3", "sharer", sharer_ip, LinkType.DSL)
        (push,) = [m for m in messages(sharer) if isinstance(m, AlternateDownloadAck)]
        assert push == AlternateDownloadAck("seeker", ip_to_napster(world.host(seeker_rt)), 6699,
                                            "little toot.mp3", "0" * 32, LinkType.T1)
        server.close()
        assert world.run_until(lambda: all(r.eof or r.lost for r in (sharer, seeker)), 10)
    finally:
        world.close()
        store.close()
