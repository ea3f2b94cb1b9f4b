"""The Napster machines over StreamDriver, on real sockets and in the simulator.

A toy index (a dict of shares) answers login, share, search and download
requests through ServerSession; a client logs in, shares, searches for
"little toot", and fetches the file from the sharer with GET, then again
through the firewalled path (SEND).  The same body runs in both worlds.
"""

from __future__ import annotations

from peerlab.proto.napster import (
    ClientSession,
    Data,
    FileSize,
    GetRequested,
    IncomingTransfer,
    OffsetRequested,
    OutgoingGet,
    OutgoingSend,
    SendOffered,
    ServerSession,
    TransferComplete,
)
from peerlab.runtime.base import Runtime
from peerlab.runtime.driver import StreamDriver
from peerlab.runtime.worlds import World
from peerlab.wire import napster as nap
from peerlab.wire.napster import LinkType, SearchQuery

TIMEOUT = 20.0
SONG = "Andrews Sisters - Little Toot.mp3"
BODY = bytes(range(256)) * 300  # 76,800 bytes: several segments
MD5 = "0" * 32


class ToyIndex:
    """Enough of an index server to exercise ServerSession."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.shares: dict[str, list[nap.ShareFile]] = {}
        self.ports: dict[str, int] = {}
        self.drivers: dict[str, StreamDriver] = {}

    def factory(self) -> StreamDriver:
        session = ServerSession(now=self.runtime.now())
        holder: list[StreamDriver] = []

        def on_event(event: object) -> None:
            self.handle(session, holder[0], event)

        driver = StreamDriver(self.runtime, session, on_event)
        holder.append(driver)
        return driver

    def handle(self, session: ServerSession, driver: StreamDriver, event: object) -> None:
        if isinstance(event, nap.Login):
            session.accept_login(f"{event.nick}@peerlab")
            self.ports[event.nick] = event.port
            self.drivers[event.nick] = driver
            session.send(nap.Motd("Welcome to the toy index"))
        elif isinstance(event, nap.ShareFile):
            assert session.nick is not None
            self.shares.setdefault(session.nick, []).append(event)
        elif isinstance(event, nap.SearchRequest):
            words = event.query.keywords()
            hits = [
                nap.SearchResult(f.filename, f.md5, f.size, f.bitrate, f.frequency, f.duration,
                                 nick, nap.ip_to_napster("127.0.0.1"), LinkType.CABLE)
                for nick, files in self.shares.items() if nick != session.nick
                for f in files if all(w in f.filename.lower() for w in words)
            ]
            session.send_many([*hits, nap.SearchEnd()])
        elif isinstance(event, nap.DownloadRequest):
            share = next(f for f in self.shares[event.nick] if f.filename == event.filename)
            session.send(nap.DownloadAck(event.nick, nap.ip_to_napster("127.0.0.1"),
                                         self.ports[event.nick], share.filename, share.md5,
                                         LinkType.CABLE))
        elif isinstance(event, nap.AlternateDownloadRequest):
            assert session.nick is not None
            share = next(f for f in self.shares[event.nick] if f.filename == event.filename)
            sharer = self.drivers[event.nick]
            assert isinstance(sharer.machine, ServerSession)
            sharer.machine.send(nap.AlternateDownloadAck(
                session.nick, nap.ip_to_napster("127.0.0.1"), self.ports[session.nick],
                share.filename, share.md5, LinkType.DSL))
            sharer.flush()
        driver.flush()


class Client:
    """A client session with an event log."""

    def __init__(self, runtime: Runtime) -> None:
        self.session = ClientSession()
        self.events: list[object] = []
        self.driver = StreamDriver(runtime, self.session, self.events.append)


class Sharer:
    """Accepts data connections: serves GETs of BODY, takes SENDs into ``received``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.received = bytearray()
        self.done = False
        self.events: list[object] = []

    def factory(self) -> StreamDriver:
        machine = IncomingTransfer(now=self.runtime.now())
        holder: list[StreamDriver] = []

        def on_event(event: object) -> None:
            self.events.append(event)
            if isinstance(event, GetRequested):
                machine.accept_get(len(BODY))
                machine.send_data(BODY[event.offset :])
                holder[0].close()
            elif isinstance(event, SendOffered):
                for ev in machine.accept_send(0):
                    on_event(ev)
            elif isinstance(event, Data):
                self.received += event.data
            elif isinstance(event, TransferComplete):
                self.done = True

        driver = StreamDriver(self.runtime, machine, on_event)
        holder.append(driver)
        return driver


def test_login_share_search_and_both_downloads(world: World) -> None:
    server_rt = world.new_runtime("index")
    alice_rt = world.new_runtime("alice")  # shares the song
    bob_rt = world.new_runtime("bob")  # searches and downloads
    index = ToyIndex(server_rt)
    listener = server_rt.listen((world.host(server_rt), 0), index.factory)

    bob_data = Sharer(bob_rt)
    bob_port = bob_rt.listen((world.host(bob_rt), 0), bob_data.factory).address[1]
    alice_data = Sharer(alice_rt)
    alice_port = alice_rt.listen((world.host(alice_rt), 0), alice_data.factory).address[1]

    alice, bob = Client(alice_rt), Client(bob_rt)
    alice.session.login(nap.Login("alice", "pw", alice_port, "peerlab", LinkType.CABLE),
                        alice_rt.now())
    bob.session.login(nap.Login("bob", "pw", bob_port, "peerlab", LinkType.DSL), bob_rt.now())
    alice_rt.connect(listener.address, alice.driver)
    bob_rt.connect(listener.address, bob.driver)
    assert world.run_until(
        lambda: nap.LoginAck("alice@peerlab") in alice.events
        and nap.LoginAck("bob@peerlab") in bob.events,
        TIMEOUT,
    )
    assert nap.Motd("Welcome to the toy index") in bob.events

    alice.session.send(nap.ShareFile(SONG, MD5, len(BODY), 128, 44100, 180))
    alice.driver.flush()
    assert world.run_until(lambda: "alice" in index.shares, TIMEOUT)
    bob.session.send(nap.SearchRequest(SearchQuery(("little toot",), 100)))
    bob.driver.flush()
    assert world.run_until(lambda: nap.SearchEnd() in bob.events, TIMEOUT)
    results = [e for e in bob.events if isinstance(e, nap.SearchResult)]
    assert [(r.filename, r.nick, r.size, r.link_type.label) for r in results] == [
        (SONG, "alice", len(BODY), "Cable")
    ]
    assert bob.session.pending_searches == 0

    # Normal download (5.1): 203 -> 204, then GET to the sharer's data port.
    bob.session.send(nap.DownloadRequest("alice", SONG))
    bob.driver.flush()
    assert world.run_until(lambda: any(isinstance(e, nap.DownloadAck) for e in bob.events),
                           TIMEOUT)
    ack = next(e for e in bob.events if isinstance(e, nap.DownloadAck))
    assert ack.port == alice_port and nap.napster_to_ip(ack.ip) == "127.0.0.1"
    got: list[object] = []
    getter = OutgoingGet("bob", ack.filename, 0, now=bob_rt.now(), expected_size=len(BODY))
    bob_rt.connect((world.host(alice_rt), ack.port), StreamDriver(bob_rt, getter, got.append))
    assert world.run_until(lambda: TransferComplete() in got, TIMEOUT)
    assert got[0] == FileSize(len(BODY))
    assert b"".join(e.data for e in got if isinstance(e, Data)) == BODY
    assert alice_data.events[0] == GetRequested("bob", SONG, 0)

    # Firewalled download (5.2): 500 -> 501 to the sharer, which connects out with SEND.
    bob.session.send(nap.AlternateDownloadRequest("alice", SONG))
    bob.driver.flush()
    assert world.run_until(
        lambda: any(isinstance(e, nap.AlternateDownloadAck) for e in alice.events), TIMEOUT
    )
    push = next(e for e in alice.events if isinstance(e, nap.AlternateDownloadAck))
    assert push.nick == "bob" and push.port == bob_port
    sender = OutgoingSend("alice", push.filename, len(BODY), now=alice_rt.now())
    sent: list[object] = []
    holder: list[StreamDriver] = []

    def on_send_event(event: object) -> None:
        sent.append(event)
        if isinstance(event, OffsetRequested):
            sender.send_data(BODY[event.offset :])
            holder[0].close()

    holder.append(StreamDriver(alice_rt, sender, on_send_event))
    alice_rt.connect((world.host(bob_rt), push.port), holder[0])
    assert world.run_until(lambda: bob_data.done, TIMEOUT)
    assert sent[0] == OffsetRequested(0)
    assert bytes(bob_data.received) == BODY
    assert bob_data.events[0] == SendOffered("alice", SONG, len(BODY))
