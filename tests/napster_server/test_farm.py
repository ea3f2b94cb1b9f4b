"""The farm without a single point of failure (issue 3, section 2 and "Done
when"): servers sharing one real PostgreSQL database that the tests start
themselves.  Cross-server routing (501 pushes, ghosts, whois, browse) with
two servers in this process; then THE FARM TEST: two ``napster-server``
processes, one SIGKILLed while clients search."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from napserverkit import WAIT, Closed, NapClient, free_port, share_file
from prockit import stop_process

from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import RecordingObserver
from peerlab.storage.napster_index import PostgresIndexStore, ScryptCost
from peerlab.wire.napster import (
    AlternateDownloadAck,
    AlternateDownloadRequest,
    BrowseEnd,
    BrowseRequest,
    BrowseResult,
    DownloadAck,
    DownloadRequest,
    ErrorMessage,
    LinkType,
    LoginAck,
    Ping,
    ServerStats,
    ServerStatsRequest,
    WhoisRequest,
    WhoisResponse,
)

LOOPBACK_IP = 16777343
MakeServer = Callable[[], NapsterServer]


@pytest.fixture
async def farm(pg_url: str) -> AsyncIterator[MakeServer]:
    made: list[tuple[NapsterServer, AsyncioRuntime, PostgresIndexStore]] = []

    def make() -> NapsterServer:
        runtime = AsyncioRuntime(observer=RecordingObserver(), workers=4)
        store = PostgresIndexStore(pg_url)
        config = NapsterServerConfig(
            port=0, password_cost=ScryptCost(log2_n=4), heartbeat_interval=0.2,
            server_timeout=1.0, mail_interval=0.05,
        )
        server = NapsterServer(runtime, store, config)
        server.start()
        made.append((server, runtime, store))
        return server

    yield make
    for server, runtime, store in made:
        server.close()
        runtime.close()
        store.close()


async def online(server: NapsterServer, nick: str, **kw: object) -> NapClient:
    c = await NapClient.connect(server.address)
    ack = await c.login(nick, **kw)  # type: ignore[arg-type]
    assert isinstance(ack, LoginAck), ack
    await c.expect(ServerStats)
    return c


async def test_cross_server_routing(farm: MakeServer) -> None:
    s1, s2 = farm(), farm()
    assert s1.server_id != s2.server_id
    alice = await online(s1, "alice", port=0, link=LinkType.DSL)  # firewalled, on s1
    md5 = "b92870e0d41bc8e698cf2f0a1ddfeac7"
    alice.share(share_file("farm little toot.mp3", md5=md5, size=4321))
    assert len(await alice.search("toot")) == 1
    bob = await online(s2, "bob", port=6700, link=LinkType.T1)  # on s2

    # s2 answers for a user of s1: her nick, ip and link type in the result
    (hit,) = await bob.search("little toot")
    assert (hit.filename, hit.nick, hit.ip, hit.link_type, hit.size) == (
        "farm little toot.mp3", "alice", LOOPBACK_IP, LinkType.DSL, 4321)
    bob.send(DownloadRequest("alice", "farm little toot.mp3"))
    assert await bob.recv() == DownloadAck("alice", LOOPBACK_IP, 0, "farm little toot.mp3", md5,
                                           LinkType.DSL)
    # the firewalled path: 500 on s2, 501 delivered to alice on s1
    bob.send(AlternateDownloadRequest("alice", "farm little toot.mp3"))
    assert await alice.expect(AlternateDownloadAck) == AlternateDownloadAck(
        "bob", LOOPBACK_IP, 6700, "farm little toot.mp3", md5, LinkType.T1)
    bob.send(Ping("alice"))
    assert await alice.expect(Ping) == Ping("bob")
    bob.send(WhoisRequest("alice"))
    who = await bob.expect(WhoisResponse)
    assert isinstance(who, WhoisResponse) and (who.nick, who.shared) == ("alice", 1)
    bob.send(BrowseRequest("alice"))
    assert isinstance(await bob.recv(), BrowseResult)
    assert await bob.recv() == BrowseEnd("alice", LOOPBACK_IP)

    # farm-wide stats once both heartbeats are in
    for _ in range(50):
        bob.send(ServerStatsRequest())
        stats = await bob.expect(ServerStats)
        if stats == ServerStats(2, 1, 0):
            break
        await asyncio.sleep(0.1)
    assert stats == ServerStats(2, 1, 0)

    # alice logs in again on s2: the session on s1 is the ghost, closed via mail
    again = await online(s2, "alice", port=0, link=LinkType.DSL)
    tail = await alice.until_closed()
    assert any(isinstance(m, ErrorMessage) and "another location" in m.text for m in tail)
    assert await bob.search("little toot") == []  # her old shares went with the ghost
    again.share(share_file("farm little toot.mp3", md5=md5, size=4321))
    assert len(await again.search("little toot")) == 1  # its share is in
    assert [r.nick for r in await bob.search("little toot")] == ["alice"]


# ------------------------------------------------------------------ the farm test

#: Farm timing for the kill test: heartbeats every 0.5 s, a server silent for
#: 2 s is dead.  Together they bound how long a dead server's files linger.
HEARTBEAT = 0.5
SERVER_TIMEOUT = 2.0
#: The issue's bound: every client searching again through another server.
FAILOVER_BOUND = 10.0
FILES_EACH = 4
TERM = "farmshared"


def start_server(port: int, url: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "peerlab.cli.napster_server", "--port", str(port),
        "--database", url, "--heartbeat-interval", str(HEARTBEAT),
        "--server-timeout", str(SERVER_TIMEOUT), "--password-cost", "4",
        "--log-level", "warning", "--exit-with-parent",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the readiness line (bounded by the process's own checks)
    if "listening on" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=WAIT)
        raise AssertionError(f"napster-server did not start: {line!r} {err}")
    return proc


@dataclass
class FarmUser:
    """A client that searches in a loop and fails over to the next server,
    logging in again and re-sharing its files (what NC's client does)."""

    nick: str
    ports: list[int]
    index: int = 0
    searches: list[tuple[float, int, set[str]]] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    stop: bool = False

    @property
    def files(self) -> list[str]:
        return [f"{TERM} {self.nick} {i}.mp3" for i in range(FILES_EACH)]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop:
            port = self.ports[self.index]
            try:
                c = await NapClient.connect(("127.0.0.1", port))
                try:
                    ack = await c.login(self.nick, "pw")
                    assert isinstance(ack, LoginAck), ack
                    c.share(*(share_file(name) for name in self.files))
                    while not self.stop:
                        got = await c.search(TERM, timeout=3.0)
                        self.searches.append((loop.time(), port, {r.filename for r in got}))
                        await asyncio.sleep(0.1)
                finally:
                    await c.close()
            except (Closed, ConnectionError, OSError, TimeoutError):
                self.failures.append(loop.time())
                self.index = (self.index + 1) % len(self.ports)
                await asyncio.sleep(0.1)


async def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def test_farm_survives_sigkill(pg_url: str) -> None:
    port_a, port_b = free_port(), free_port()
    server_a = start_server(port_a, pg_url)
    server_b = start_server(port_b, pg_url)
    users = [FarmUser(f"a{i}", [port_a, port_b]) for i in range(3)]
    users += [FarmUser(f"b{i}", [port_b, port_a]) for i in range(3)]
    tasks = [asyncio.ensure_future(u.run()) for u in users]
    orphan: NapClient | None = None
    try:
        # a user of A who will not come back: its files must leave the results
        orphan = await NapClient.connect(("127.0.0.1", port_a))
        assert isinstance(await orphan.login("orphan", "pw"), LoginAck)
        orphan_files = {f"{TERM} orphan {i}.mp3" for i in range(FILES_EACH)}
        orphan.share(*(share_file(n) for n in sorted(orphan_files)))
        everyone = set().union(*(u.files for u in users))
        assert await wait_until(
            lambda: all(u.searches and u.searches[-1][2] == everyone | orphan_files
                        for u in users), 30.0), "the farm never showed every share"

        loop = asyncio.get_running_loop()
        ready_at = loop.time()
        await asyncio.sleep(0.5)  # a few searches with everything in place
        killed_at = loop.time()
        server_a.send_signal(signal.SIGKILL)
        server_a.wait(timeout=WAIT)

        a_users, b_users = users[:3], users[3:]

        def back(u: FarmUser) -> bool:
            return any(t > killed_at and port == port_b and res for t, port, res in u.searches)

        assert await wait_until(lambda: all(back(u) for u in a_users), FAILOVER_BOUND + 5)
        for u in a_users:
            first = min(t for t, port, res in u.searches if t > killed_at and port == port_b
                        and res)
            assert first - killed_at < FAILOVER_BOUND, (u.nick, first - killed_at)
        # B's users never lost their server, and never lost a share of B's users
        b_files = set().union(*(u.files for u in b_users))
        for u in b_users:
            assert not u.failures, u.nick
            assert all(b_files <= res for t, port, res in u.searches if t > ready_at), u.nick
        # after fail-over: everything re-shared, the orphan's files gone (reaped)
        assert await wait_until(
            lambda: all(u.searches[-1][0] > killed_at and u.searches[-1][2] == everyone
                        for u in users), FAILOVER_BOUND), [
            (u.nick, sorted(u.searches[-1][2] ^ everyone)) for u in users]
        vanished = min(t for t, port, res in b_users[0].searches
                       if t > killed_at and not res & orphan_files)
        assert vanished - killed_at < FAILOVER_BOUND
    finally:
        for u in users:
            u.stop = True
        await asyncio.wait(tasks, timeout=WAIT)
        for t in tasks:
            t.cancel()
        if orphan is not None:
            await orphan.close()
        for proc in (server_a, server_b):
            stop_process(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    assert server_b.returncode == 0, server_b.returncode
