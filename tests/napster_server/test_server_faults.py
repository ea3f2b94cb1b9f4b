"""Bad input and faults (issue 3): oversized and truncated frames, unknown
types, control bytes and junk, floods of searches and shares, slow clients;
the offender pays, the server never crashes and other users do not notice."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator, Callable

import pytest
from napserverkit import Closed, NapClient, share_file

from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import RecordingObserver
from peerlab.storage.napster_index import ScryptCost, SqliteIndexStore
from peerlab.wire.napster import (
    ErrorMessage,
    FrameDecoder,
    LinkType,
    Login,
    LoginAck,
    LoginError,
    SearchQuery,
    SearchRequest,
    ServerStats,
    ServerStatsRequest,
    encode,
    encode_frame,
)

MakeServer = Callable[..., NapsterServer]
#: Types a well-behaved server may answer garbage with, besides results.
ANSWERS = {0, 3, 8, 9, 10, 201, 202, 204, 206, 210, 212, 213, 214, 404, 601, 604, 605, 621,
           750}


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    made: list[tuple[NapsterServer, AsyncioRuntime, SqliteIndexStore]] = []

    def make(**overrides: object) -> NapsterServer:
        runtime = AsyncioRuntime(observer=RecordingObserver())
        store = SqliteIndexStore(":memory:")
        settings: dict[str, object] = {"port": 0, "password_cost": ScryptCost(log2_n=4)}
        settings.update(overrides)
        server = NapsterServer(runtime, store, NapsterServerConfig(**settings))  # type: ignore[arg-type]
        server.start()
        made.append((server, runtime, store))
        return server

    yield make
    for server, runtime, store in made:
        server.close()
        runtime.close()
        store.close()


def counters(server: NapsterServer) -> dict[str, int]:
    return dict(server.runtime.observer.counters)  # type: ignore[attr-defined]


async def honest(server: NapsterServer, nick: str = "honest") -> NapClient:
    """A user who shares one file; the tests check it keeps finding it."""
    c = await NapClient.connect(server.address)
    assert isinstance(await c.login(nick), LoginAck)
    await c.expect(ServerStats)
    c.share(share_file(f"{nick} keeps working.mp3"))
    assert len(await c.search(f"{nick} working")) == 1
    return c


async def still_works(c: NapClient, nick: str = "honest") -> None:
    results = await c.search(f"{nick} working")
    assert [r.filename for r in results] == [f"{nick} keeps working.mp3"]


async def test_oversized_frame_closes_only_that_connection(make_server: MakeServer) -> None:
    server = make_server()
    good = await honest(server)
    bad = await NapClient.connect(server.address)
    bad.send_raw(struct.pack("<HH", 60000, 200) + b"x" * 100)
    tail = await bad.until_closed()
    assert len(tail) == 1 and isinstance(tail[0], LoginError) and "exceeds" in tail[0].message
    await still_works(good)
    assert counters(server)["napster.server.bad_frame"] == 1


async def test_bad_payloads_cost_only_that_message(make_server: MakeServer) -> None:
    server = make_server()
    good = await honest(server)
    c = await NapClient.connect(server.address)
    assert isinstance(await c.login("messy"), LoginAck)
    await c.expect(ServerStats)
    c.send_raw(encode_frame(100, b'"unterminated 0123 1 2 3 4'))      # bad share
    c.send_raw(encode_frame(100, b'"ctl\x01.mp3" md5 1 2 3 4'))       # control byte
    c.send_raw(encode_frame(200, b"FILENAME CONTAINS"))               # bad search
    c.send_raw(encode_frame(203, b"\xff\xfe\xfd"))                    # junk download
    c.send_raw(encode_frame(12345, b"\x80\x81 unknown"))              # unknown type
    c.send_raw(encode_frame(201, b"x"))                               # a server-only type
    errors = []
    for _ in range(6):
        errors.append(await c.recv())
        if len(errors) == 3:
            assert (await c.recv()).TYPE == 202  # the bad search still ends
    assert all(isinstance(e, ErrorMessage) for e in errors), errors
    assert errors[4] == ErrorMessage("unknown command code 12345")
    assert errors[5] == ErrorMessage("unknown command code 201")
    # latin-1 junk in a name is just a name: shared and found
    c.send_raw(encode_frame(100, b'"caf\xe9 \xfc\xff song.mp3" md5 1 2 3 4'))
    found = await c.search("song")
    assert [r.filename for r in found] == ["caf\xe9 \xfc\xff song.mp3"]
    await still_works(good)


async def test_truncated_frame_and_abrupt_close(make_server: MakeServer) -> None:
    server = make_server()
    good = await honest(server)
    for junk in (b"\x10", b"\x10\x00\xc8\x00FILENAME", encode(Login("half", "pw", 1, "x",
                                                                     LinkType.T1))[:9]):
        c = await NapClient.connect(server.address)
        c.send_raw(junk)
        await c.writer.drain()
        c.writer.transport.abort()
    await still_works(good)
    # a user who vanishes mid-session leaves nothing behind
    gone = await honest(server, "vanisher")
    gone.writer.transport.abort()
    for _ in range(50):
        if not await good.search("vanisher"):
            break
        await asyncio.sleep(0.02)
    assert await good.search("vanisher") == []
    await still_works(good)


async def test_search_flood_disconnects_the_flooder(make_server: MakeServer) -> None:
    server = make_server(command_rate=50.0, command_burst=200.0, search_cost=10.0)
    good = await honest(server)
    flooder = await honest(server, "flooder")
    query = encode(SearchRequest(SearchQuery(contains=("working",))))
    flooder.send_raw(query * 200)  # 2000 tokens worth in one go
    tail = await flooder.until_closed()
    assert ErrorMessage("flooding: too many commands, disconnecting") in tail
    # it was cut off before its flood was served
    assert sum(1 for m in tail if m.TYPE == 202) < 25
    await still_works(good)
    assert counters(server)["napster.server.flood"] == 1


async def test_share_flood_disconnects_and_cap_holds(make_server: MakeServer) -> None:
    server = make_server(command_rate=100.0, command_burst=1000.0, max_shares=300)
    good = await honest(server)
    c = await NapClient.connect(server.address)
    assert isinstance(await c.login("sharer"), LoginAck)
    await c.expect(ServerStats)
    c.share(*(share_file(f"bulk {i}.mp3") for i in range(500)))
    capped = await c.expect(ErrorMessage)
    assert isinstance(capped, ErrorMessage) and "share limit" in capped.text
    assert len(await c.search("bulk")) == 100  # MAX_RESULTS of the protocol
    c.send(ServerStatsRequest())
    assert await c.expect(ServerStats) == ServerStats(2, 301, 0)  # 300 + honest's 1
    c.share(*(share_file(f"flood {i}.mp3") for i in range(3000)))
    tail = await c.until_closed()
    assert ErrorMessage("flooding: too many commands, disconnecting") in tail
    await still_works(good)


async def test_login_timeout_and_connection_cap(make_server: MakeServer) -> None:
    server = make_server(login_timeout=0.3, max_connections=3)
    good = await honest(server)
    idle = await NapClient.connect(server.address)
    assert await idle.until_closed() == [LoginError("login timed out")]
    a = await NapClient.connect(server.address)
    b = await NapClient.connect(server.address)
    over = await NapClient.connect(server.address)
    assert await over.until_closed() == [LoginError("server is full, try again later")]
    for c in (a, b):
        await c.close()
    await still_works(good)


async def test_a_client_that_does_not_read_is_bounded(make_server: MakeServer) -> None:
    server = make_server(command_rate=1e6, command_burst=1e6)
    good = await honest(server)
    sharer = await honest(server, "wide")
    sharer.share(*(share_file(f"wide result {i} with a long name.mp3") for i in range(100)))
    assert len(await sharer.search("wide result")) == 100
    hog = await honest(server, "hog")
    # ~70 KB of results per search, thousands asked for, none read
    hog.send_raw(encode(SearchRequest(SearchQuery(contains=("wide",)))) * 3000)
    await asyncio.sleep(0.5)
    await still_works(good)
    conns = [c for c in server.connections if c.user is not None and c.user.nick == "hog"]
    if conns:  # still connected: stalled, with its queue and output bounded
        hog_conn = conns[0]
        assert len(hog_conn.pending) <= 3000
        assert hog_conn.stream is not None
        assert hog_conn.stream.get_write_buffer_size() <= server.config.max_output_bytes
    hog.writer.transport.abort()
    await still_works(good)


async def test_random_garbage_only_gets_clean_answers(make_server: MakeServer) -> None:
    """A fuzz round: seeded random frames and raw bytes on many connections;
    every answer is a well-formed frame of a type the server sends, nothing
    internal fails, and an honest user keeps working."""
    server = make_server()
    good = await honest(server)
    rng = random.Random(20240603)
    types = [0, 2, 6, 7, 100, 102, 110, 200, 203, 205, 211, 214, 218, 500, 600, 603, 608,
             619, 621, 626, 700, 703, 750, 751, 752, 999, 65535]
    for round_ in range(40):
        c = await NapClient.connect(server.address)
        if round_ % 2:
            # log in first, so the garbage reaches the online handlers
            assert isinstance(await c.login(f"fuzz{round_}"), LoginAck)
        out = bytearray()
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.1:
                out += rng.randbytes(rng.randint(1, 40))  # raw junk: framing may be lost
            else:
                kind = rng.choice(types)
                words = [rng.choice(['"', "FILENAME", "CONTAINS", "MAX_RESULTS", "BITRATE",
                                     '"AT LEAST"', "x" * rng.randint(0, 600), str(rng.randint(
                                         -5, 2**40)), "\xe9\xff", "\x00", "\x7f", "lefty"])
                         for _ in range(rng.randint(0, 12))]
                payload = " ".join(words).encode("latin-1")[:4096]
                out += encode_frame(kind, payload)
        c.send_raw(bytes(out))
        await c.writer.drain()
        c.writer.write_eof()
        decoder = FrameDecoder()
        while True:
            try:
                data = await asyncio.wait_for(c.reader.read(65536), 10)
            except ConnectionError:
                break
            if not data:
                break
            for frame in decoder.feed(data):
                assert frame.type in ANSWERS, frame
        decoder.check_eof()
        await c.close()
    await still_works(good)
    assert not server.runtime.observer.named("napster.server.error")  # type: ignore[attr-defined]


async def test_closed_server_refuses_cleanly(make_server: MakeServer) -> None:
    server = make_server()
    c = await honest(server)
    server.close()
    with pytest.raises((Closed, ConnectionError)):
        await c.search("anything")


async def test_a_server_declared_dead_drops_its_users_and_rejoins(
    make_server: MakeServer,
) -> None:
    """If the farm reaped this server (it missed its heartbeats), its users'
    rows are gone: it drops them so they log in again, and registers anew."""
    server = make_server(heartbeat_interval=0.05, server_timeout=0.2)
    c = await honest(server)
    old_id = server.server_id
    server.store.unregister_server(old_id)  # what a live peer's reaping does
    tail = await c.until_closed()
    assert any("reconnect" in getattr(m, "text", getattr(m, "message", "")) for m in tail)
    for _ in range(100):
        if server.server_id != old_id:
            break
        await asyncio.sleep(0.02)
    assert server.server_id != old_id
    again = await honest(server, "again")
    await still_works(again, "again")
    assert server.pending_logins == 0
