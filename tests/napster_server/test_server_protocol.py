"""The index server over real sockets on 127.0.0.1: login, passwords, shares,
search with every constraint, browse, downloads (direct and firewalled),
whois, transfer counts, relays and the server's small answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from napserverkit import Closed, NapClient, share_file

from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import RecordingObserver
from peerlab.storage.napster_index import ScryptCost, SqliteIndexStore
from peerlab.wire.napster import (
    AlternateDownloadAck,
    AlternateDownloadRequest,
    BrowseEnd,
    BrowseRequest,
    BrowseResult,
    Compare,
    Constraint,
    DownloadAck,
    DownloadComplete,
    Downloading,
    DownloadRequest,
    ErrorMessage,
    GetError,
    InvalidNick,
    LinkSpeed,
    LinkSpeedRequest,
    LinkType,
    Login,
    LoginAck,
    LoginError,
    Motd,
    NickAlreadyRegistered,
    NickCheck,
    NickNotRegistered,
    Ping,
    PrivateMessage,
    SearchEnd,
    SearchField,
    SearchQuery,
    SearchRequest,
    SearchResult,
    ServerStats,
    ServerStatsRequest,
    UnshareAll,
    UnshareFile,
    UploadAccept,
    Uploading,
    UploadRequest,
    UserSignoff,
    WhoisRequest,
    WhoisResponse,
    WhowasResponse,
    encode_frame,
)

MOTD = ("Welcome to the test server.", "Be nice.")
LOOPBACK_IP = 16777343  # 127.0.0.1 as Napster writes it (napster.txt 201)

MakeServer = Callable[..., NapsterServer]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    made: list[tuple[NapsterServer, AsyncioRuntime, SqliteIndexStore]] = []

    def make(**overrides: object) -> NapsterServer:
        runtime = AsyncioRuntime(observer=RecordingObserver())
        store = SqliteIndexStore(":memory:")
        settings: dict[str, object] = {
            "port": 0, "motd": MOTD, "password_cost": ScryptCost(log2_n=4),
        }
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


@pytest.fixture
async def server(make_server: MakeServer) -> NapsterServer:
    return make_server()


async def online(server: NapsterServer, nick: str, **kw: object) -> NapClient:
    c = await NapClient.connect(server.address)
    ack = await c.login(nick, **kw)  # type: ignore[arg-type]
    assert isinstance(ack, LoginAck), ack
    await c.expect(ServerStats)  # the MOTD, then the stats end the greeting
    return c


async def test_login_acks_with_motd_and_stats(server: NapsterServer) -> None:
    c = await NapClient.connect(server.address)
    c.send_raw(encode_frame(2, b'lefty s3cret 6699 "nap v0.8" 3'))
    assert await c.recv() == LoginAck("anon@peerlab")
    assert await c.recv() == Motd(MOTD[0])
    assert await c.recv() == Motd(MOTD[1])
    assert await c.recv() == ServerStats(1, 0, 0)
    # asking again gives the MOTD again (napster.txt 621)
    c.send(Motd())
    assert [await c.recv(), await c.recv()] == [Motd(MOTD[0]), Motd(MOTD[1])]
    await c.close()


async def test_wrong_password_refused_and_nick_not_taken_over(server: NapsterServer) -> None:
    owner = await online(server, "Alice", password="right")
    thief = await NapClient.connect(server.address)
    assert await thief.login("alice", password="wrong") == LoginError("Invalid Password")
    with pytest.raises(Closed):
        await thief.recv()
    # a new-user login (6) of a registered nick is refused too, whatever the case
    thief2 = await NapClient.connect(server.address)
    refused = await thief2.login("ALICE", password="x", new=True)
    assert isinstance(refused, LoginError) and "already registered" in refused.message
    # the owner never noticed
    owner.send(WhoisRequest("alice"))
    who = await owner.expect(WhoisResponse)
    assert isinstance(who, WhoisResponse) and who.nick == "Alice"
    assert server.runtime.observer.counters["napster.server.login_failed"] == 2  # type: ignore[attr-defined]
    await owner.close()


async def test_nick_check_and_invalid_nick(server: NapsterServer) -> None:
    await (await online(server, "taken")).close()
    c = await NapClient.connect(server.address)
    c.send(NickCheck("taken"), NickCheck("free_nick"), NickCheck("bad~nick"))
    assert [await c.recv() for _ in range(3)] == [
        NickAlreadyRegistered(), NickNotRegistered(), InvalidNick()]
    bad = await c.login("has~tilde")
    assert isinstance(bad, LoginError) and "invalid nickname" in bad.message


async def test_new_user_login_keeps_email_and_ghost_is_replaced(server: NapsterServer) -> None:
    first = await NapClient.connect(server.address)
    assert await first.login("bob", "pw", new=True, email="bob@example.org") == LoginAck(
        "bob@example.org")
    first.share(share_file("bob ghost song.mp3"))
    watcher = await online(server, "watcher")
    assert len(await watcher.search("ghost")) == 1
    # the same nick with its password again: the older session is the ghost
    second = await NapClient.connect(server.address)
    assert await second.login("bob", "pw") == LoginAck("bob@example.org")
    tail = await first.until_closed()
    assert any(isinstance(m, ErrorMessage) and "another location" in m.text for m in tail)
    assert await watcher.search("ghost") == []
    second.share(share_file("bob ghost song.mp3"))
    assert [r.nick for r in await watcher.search("ghost")] == ["bob"]


async def test_share_search_every_constraint(server: NapsterServer) -> None:
    slow = await online(server, "slow", link=LinkType.K28_8)
    fast = await online(server, "fast", link=LinkType.T1)
    slow.share(share_file("Little Toot - Disney.mp3", size=3_000_000, bitrate=96, freq=22050,
                          duration=180))
    fast.share(
        share_file("little_toot remix.mp3", size=5_000_000, bitrate=192, freq=44100,
                   duration=240),
        share_file("little toot.mp3", size=4_000_000, bitrate=128, freq=48000, duration=200),
        share_file("unrelated.mp3"),
    )
    seeker = await online(server, "seeker")
    everything = {"Little Toot - Disney.mp3", "little_toot remix.mp3", "little toot.mp3"}

    async def q(*cons: tuple[SearchField, Compare, int], **kw: object) -> set[str]:
        query = SearchQuery(contains=("little", "TOOT"),
                            constraints=tuple(Constraint(*c) for c in cons), **kw)  # type: ignore[arg-type]
        return {r.filename for r in await seeker.search(query)}

    assert await q() == everything
    assert len(await q(max_results=2)) == 2
    assert await q(excludes=("remix", "disney")) == {"little toot.mp3"}
    assert await q((SearchField.LINESPEED, Compare.AT_LEAST, LinkType.CABLE)) == everything - {
        "Little Toot - Disney.mp3"}
    assert await q((SearchField.LINESPEED, Compare.AT_BEST, LinkType.K56)) == {
        "Little Toot - Disney.mp3"}
    assert await q((SearchField.LINESPEED, Compare.EQUAL_TO, LinkType.T1),
                   (SearchField.BITRATE, Compare.EQUAL_TO, 128)) == {"little toot.mp3"}
    assert await q((SearchField.BITRATE, Compare.AT_LEAST, 128)) == everything - {
        "Little Toot - Disney.mp3"}
    assert await q((SearchField.BITRATE, Compare.AT_BEST, 96)) == {"Little Toot - Disney.mp3"}
    assert await q((SearchField.FREQ, Compare.EQUAL_TO, 48000)) == {"little toot.mp3"}
    assert await q((SearchField.FREQ, Compare.AT_LEAST, 44100)) == everything - {
        "Little Toot - Disney.mp3"}
    assert await q((SearchField.SIZE, Compare.AT_BEST, 4_000_000)) == everything - {
        "little_toot remix.mp3"}
    assert await q((SearchField.SIZE, Compare.AT_LEAST, 5_000_000)) == {"little_toot remix.mp3"}
    assert await q((SearchField.DURATION, Compare.AT_BEST, 180)) == {"Little Toot - Disney.mp3"}

    # the result's bytes on the wire (napster.txt 201): the sharer's nick, ip, link
    seeker.send_raw(encode_frame(200, b'FILENAME CONTAINS "disney" MAX_RESULTS 10'))
    raw = await seeker.reader.read(65536)
    payload = (b'"Little Toot - Disney.mp3" 0123456789abcdef0123456789abcdef 3000000 96 22050'
               b" 180 slow 16777343 2")
    assert raw == encode_frame(201, payload) + encode_frame(202, b"")

    # a search without words: an error, and the end of results all the same
    seeker.send_raw(encode_frame(200, b"MAX_RESULTS 10"))
    assert isinstance(await seeker.recv(), ErrorMessage)
    assert await seeker.reader.readexactly(4) == encode_frame(202, b"")
    assert await seeker.search("nothing-matches-this") == []

    # unsharing (102, 110)
    fast.send(UnshareFile("little toot.mp3"))
    assert await q() == everything - {"little toot.mp3"}
    fast.send(UnshareAll())
    assert await q() == {"Little Toot - Disney.mp3"}
    seeker.send(ServerStatsRequest())
    assert await seeker.expect(ServerStats) == ServerStats(3, 1, 0)


async def test_share_cap_per_user(make_server: MakeServer) -> None:
    server = make_server(max_shares=3)
    c = await online(server, "hoarder")
    c.share(*(share_file(f"capped {i}.mp3") for i in range(5)))
    err = await c.expect(ErrorMessage)
    assert isinstance(err, ErrorMessage) and "share limit" in err.text
    assert len(await c.search("capped")) == 3


async def test_browse(server: NapsterServer) -> None:
    sharer = await online(server, "Lefty")
    sharer.share(*(share_file(f"album track {i}.mp3", size=100 + i) for i in range(3)))
    other = await online(server, "other")
    await other.search("album")  # the shares are in
    other.send(BrowseRequest("lefty"))
    got = [await other.recv() for _ in range(4)]
    assert got[:3] == [
        BrowseResult("Lefty", f"album track {i}.mp3", "0123456789abcdef0123456789abcdef",
                     100 + i, 128, 44100, 200) for i in range(3)]
    assert got[3] == BrowseEnd("Lefty", LOOPBACK_IP)
    other.send(BrowseRequest("nobody"))
    assert [await other.recv(), await other.recv()] == [UserSignoff("nobody"),
                                                        BrowseEnd("nobody")]


async def test_download_ack_and_firewalled_push(server: NapsterServer) -> None:
    sharer = await online(server, "open", port=6699, link=LinkType.DSL)
    walled = await online(server, "walled", port=0, link=LinkType.CABLE)
    md5 = "b92870e0d41bc8e698cf2f0a1ddfeac7"
    sharer.share(share_file("open song.mp3", md5=md5))
    walled.share(share_file("walled song.mp3", md5=md5))
    getter = await online(server, "getter", port=7777, link=LinkType.T3)
    assert len(await getter.search("song")) == 2

    # 203 -> 204 with the sharer's ip, port and link (napster.txt 203/204)
    getter.send(DownloadRequest("open", "open song.mp3"))
    assert await getter.recv() == DownloadAck("open", LOOPBACK_IP, 6699, "open song.mp3", md5,
                                              LinkType.DSL)
    # a firewalled sharer: 204 says port 0, the client asks for a push
    getter.send(DownloadRequest("walled", "walled song.mp3"))
    assert await getter.recv() == DownloadAck("walled", LOOPBACK_IP, 0, "walled song.mp3", md5,
                                              LinkType.CABLE)
    getter.send(AlternateDownloadRequest("walled", "walled song.mp3"))
    # 501 reaches the sharer with the downloader's address (napster.txt 500/501)
    assert await walled.expect(AlternateDownloadAck) == AlternateDownloadAck(
        "getter", LOOPBACK_IP, 7777, "walled song.mp3", md5, LinkType.T3)
    # not shared, or nobody: 206
    getter.send(DownloadRequest("open", "missing.mp3"), DownloadRequest("ghost", "x.mp3"))
    assert [await getter.recv(), await getter.recv()] == [GetError("open", "missing.mp3"),
                                                          GetError("ghost", "x.mp3")]
    # both firewalled: no transfer is possible
    walled2 = await online(server, "walled2", port=0)
    walled2.send(AlternateDownloadRequest("walled", "walled song.mp3"))
    err = await walled2.recv()
    assert isinstance(err, ErrorMessage) and "firewalled" in err.text


async def test_confirmed_downloads_use_607_608(make_server: MakeServer) -> None:
    server = make_server(confirm_downloads=True)
    sharer = await online(server, "sharer", port=6699, link=LinkType.DSL)
    sharer.share(share_file("wanted.mp3"))
    getter = await online(server, "getter", link=LinkType.T1)
    assert len(await getter.search("wanted")) == 1
    getter.send(DownloadRequest("sharer", "wanted.mp3"))
    assert await sharer.expect(UploadRequest) == UploadRequest("getter", "wanted.mp3",
                                                               LinkType.T1)
    sharer.send(UploadAccept("getter", "wanted.mp3"))
    assert await getter.expect(DownloadAck) == DownloadAck(
        "sharer", LOOPBACK_IP, 6699, "wanted.mp3", "0123456789abcdef0123456789abcdef",
        LinkType.DSL)


async def test_whois_transfers_relays_and_small_answers(server: NapsterServer) -> None:
    a = await online(server, "anna", link=LinkType.ISDN_128K)
    b = await online(server, "bert")
    a.share(share_file("anna 1.mp3"), share_file("anna 2.mp3"))
    a.send(Downloading(), Downloading(), DownloadComplete(), Uploading())
    await a.search("anna")  # everything before it is processed
    b.send(WhoisRequest("ANNA"))
    who = await b.expect(WhoisResponse)
    assert isinstance(who, WhoisResponse)
    assert (who.nick, who.level, who.status, who.shared, who.downloads, who.uploads,
            who.link_type, who.client_info) == ("anna", "User", "Active", 2, 1, 1,
                                                LinkType.ISDN_128K, "peerlab-test 1.0")
    b.send(LinkSpeedRequest("anna"))
    assert await b.recv() == LinkSpeed("anna", LinkType.ISDN_128K)
    # relays: private message and ping go to the user, named by the sender
    b.send(PrivateMessage("anna", "hello there"), Ping("anna"))
    assert await a.recv() == PrivateMessage("bert", "hello there")
    assert await a.recv() == Ping("bert")
    b.send(Ping("nobody"))
    err = await b.recv()
    assert isinstance(err, ErrorMessage) and "nobody" in err.text
    # server ping (750) and an unknown type
    b.send_raw(encode_frame(750, b""))
    assert await b.reader.readexactly(4) == encode_frame(750, b"")
    b.send_raw(encode_frame(999, b"what is this"))
    assert await b.recv() == ErrorMessage("unknown command code 999")
    # whowas once she is gone
    await a.close()
    await b.search("anna")  # give the server a turn to see the close
    b.send(WhoisRequest("anna"))
    was = await b.expect(WhowasResponse)
    assert isinstance(was, WhowasResponse) and was.nick == "anna" and was.last_seen > 0
    b.send(WhoisRequest("never_seen"))
    err = await b.recv()
    assert isinstance(err, ErrorMessage) and "never_seen" in err.text


async def test_messages_before_login_are_refused(server: NapsterServer) -> None:
    c = await NapClient.connect(server.address)
    c.send(ServerStatsRequest())
    tail = await c.until_closed()
    assert tail == [LoginError("you must log in first")]


async def test_pipelined_commands_after_login_wait_their_turn(server: NapsterServer) -> None:
    # login, a share and a search in one write: the share and the search wait
    # for the login (a password check on a worker thread), then run in order
    c = await NapClient.connect(server.address)
    c.send(Login("piper", "pw", 1, "x", LinkType.DSL), share_file("pipe.mp3"),
           SearchRequest(SearchQuery(contains=("pipe",))))
    assert isinstance(await c.expect(LoginAck), LoginAck)
    result = await c.expect(SearchResult)
    assert isinstance(result, SearchResult) and result.filename == "pipe.mp3"
    assert isinstance(await c.recv(), SearchEnd)
