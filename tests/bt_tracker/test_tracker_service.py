"""The tracker served over HTTP and UDP, driven by our own clients, on
127.0.0.1 and in the simulator: announce/completed/stopped, numwant, scrape,
expiry on the simulator's clock, BEP 15 connection ids and retransmission,
restart persistence, and bad input costing only itself."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from trackerkit import IH, IH2, call, ok, peer_id, req, start_tracker

from peerlab.errors import AddressInUse, NetworkError, StorageError
from peerlab.overlays.tracker.client import (
    TrackerRefused,
    UdpTrackerClient,
    announce,
    http_announce,
    http_scrape,
    scrape,
)
from peerlab.overlays.tracker.server import FileSwarmStore, MemorySwarmStore, Tracker, TrackerConfig
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import DatagramRecorder, SimWorld, StreamRecorder, World
from peerlab.wire.tracker import (
    AnnounceEvent,
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    Peer,
    ScrapeStats,
    UdpAnnounceRequest,
    UdpAnnounceResponse,
    UdpError,
    decode_udp_response,
    encode_udp,
)

# ----------------------------------------------------------------- HTTP


def test_http_announce_completed_stopped_and_scrape(world: World) -> None:
    t, _, obs = start_tracker(world)
    url = t.announce_url
    assert url is not None and url.endswith("/announce")
    client = world.new_runtime("client")
    me = world.host(client)

    seed = ok(world, lambda d: http_announce(client, url, req(1, left=0, compact=True), d))
    assert seed.peers == () and (seed.complete, seed.incomplete) == (1, 0)
    leech = ok(world, lambda d: http_announce(client, url, req(2, compact=True), d))
    assert leech.peers == (Peer(me, 7001),)  # compact: no peer ids
    assert (leech.interval, leech.min_interval, leech.complete, leech.incomplete) == (
        1800, 300, 1, 1,
    )  # fmt: skip
    dicts = ok(world, lambda d: http_announce(client, url, req(3), d))
    assert sorted(dicts.peers, key=lambda p: p.port) == [
        Peer(me, 7001, peer_id(1)),
        Peer(me, 7002, peer_id(2)),
    ]
    done = req(2, left=0, event=AnnounceEvent.COMPLETED)
    ok(world, lambda d: http_announce(client, url, done, d))
    stopped = req(3, event=AnnounceEvent.STOPPED)
    assert ok(world, lambda d: http_announce(client, url, stopped, d)).peers == ()

    stats = ok(world, lambda d: http_scrape(client, url, [IH, IH2], d))
    assert stats.get(IH) == ScrapeStats(complete=2, downloaded=1, incomplete=0)
    assert stats.get(IH2) == ScrapeStats(0, 0, 0)
    info = t.swarm(IH)
    assert info is not None and {(p.ip, p.port, p.seeder) for p in info.peers} == {
        (me, 7001, True),
        (me, 7002, True),
    }
    c = obs.counters
    assert (c["tracker.announces_http"], c["tracker.scrapes"], c["tracker.http_requests"]) == (
        5, 1, 6,
    )  # fmt: skip
    events = [f["event"] for f in obs.named("tracker.peer_event")]
    assert events == ["started", "started", "started", "completed", "stopped"]
    t.close()


def test_http_numwant_over_the_wire(world: World) -> None:
    t, _, _ = start_tracker(world, max_numwant=4)
    url = t.announce_url
    assert url is not None
    client = world.new_runtime("client")
    for n in range(8):
        ok(world, lambda d, n=n: http_announce(client, url, req(n, compact=True), d))
    few = ok(world, lambda d: http_announce(client, url, req(0, numwant=2, compact=True), d))
    many = ok(world, lambda d: http_announce(client, url, req(0, numwant=100, compact=True), d))
    assert len(few.peers) == 2 and len(many.peers) == 4
    assert all(p.port != 7000 for p in few.peers + many.peers)
    t.close()


def test_http_refusals(world: World) -> None:
    t, _, obs = start_tracker(world, allowed=frozenset({IH}))
    url = t.announce_url
    assert url is not None
    client = world.new_runtime("client")
    _, exc = call(world, lambda d: http_announce(client, url, req(1, info_hash=IH2), d))
    assert isinstance(exc, TrackerRefused) and exc.reason == "unregistered torrent"
    _, exc = call(world, lambda d: http_scrape(client, url, [], d))
    assert isinstance(exc, TrackerRefused) and "full scrape" in exc.reason
    assert obs.counters["tracker.failures"] == 2
    t.close()


def raw_http(world: World, t: Tracker, data: bytes, wait_close: bool = True) -> bytes:
    client = world.new_runtime("raw")
    rec = StreamRecorder()
    assert t.http_address is not None
    client.connect(t.http_address, rec)
    assert world.run_until(lambda: rec.made, 10)
    assert rec.stream is not None
    rec.stream.write(data)
    if wait_close:
        assert world.run_until(lambda: rec.eof or rec.lost, 10)
        rec.stream.close()
    else:
        assert world.run_until(lambda: bytes(rec.data).count(b"HTTP/1.1 ") >= 2, 10)
        rec.stream.close()
    return bytes(rec.data)


def test_http_bad_requests_cost_only_themselves(world: World) -> None:
    t, _, obs = start_tracker(world)
    assert raw_http(world, t, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    reply = raw_http(world, t, b"GET /announce?info_hash=x HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and b"d14:failure reason" in reply
    assert raw_http(world, t, b"GET /x HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    post = b"POST /announce HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    assert raw_http(world, t, post).startswith(b"HTTP/1.1 405 ")
    huge = b"GET /announce?" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n"
    assert raw_http(world, t, huge).startswith(b"HTTP/1.1 431 ")
    assert obs.counters["tracker.http_bad_requests"] == 2
    # The tracker still serves.
    client = world.new_runtime("client")
    url = t.announce_url
    assert url is not None
    ok(world, lambda d: http_announce(client, url, req(1), d))
    t.close()


def test_http_keep_alive_pipelining(world: World) -> None:
    t, _, _ = start_tracker(world)
    one = b"GET /scrape?info_hash=" + b"a" * 20 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    reply = raw_http(world, t, one + one, wait_close=False)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.count(b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei0e") == 2
    t.close()


def test_http_idle_connection_is_closed(world: World) -> None:
    t, _, obs = start_tracker(world, http_idle_timeout=0.3)
    client = world.new_runtime("raw")
    rec = StreamRecorder()
    assert t.http_address is not None
    client.connect(t.http_address, rec)
    assert world.run_until(lambda: rec.eof or rec.lost, 10)
    assert rec.data == b"" and obs.counters["tracker.http_idle_closed"] == 1
    t.close()


def test_http_connection_cap(world: World) -> None:
    t, _, obs = start_tracker(world, max_http_connections=1)
    client = world.new_runtime("raw")
    first, second = StreamRecorder(), StreamRecorder()
    assert t.http_address is not None
    client.connect(t.http_address, first)
    assert world.run_until(lambda: first.made, 10)
    world.run_for(0.05)
    client.connect(t.http_address, second)
    assert world.run_until(lambda: second.eof or second.lost, 10)
    assert second.data.startswith(b"HTTP/1.1 503 ")
    assert obs.counters["tracker.http_refused_connections"] == 1
    t.close()


# ------------------------------------------------------------------ UDP


def test_udp_announce_completed_stopped_and_scrape(world: World) -> None:
    t, _, obs = start_tracker(world)
    assert t.udp_address is not None
    client_rt = world.new_runtime("client")
    me = world.host(client_rt)
    c = UdpTrackerClient(client_rt, t.udp_address)

    seed = ok(world, lambda d: c.announce(req(1, left=0), d))
    assert seed.peers == () and (seed.complete, seed.incomplete) == (1, 0)
    leech = ok(world, lambda d: c.announce(req(2, numwant=10), d))
    assert leech.peers == (Peer(me, 7001),) and leech.interval == 1800
    ok(world, lambda d: c.announce(req(2, left=0, event=AnnounceEvent.COMPLETED), d))
    ok(world, lambda d: c.announce(req(3), d))
    gone = ok(world, lambda d: c.announce(req(3, event=AnnounceEvent.STOPPED), d))
    assert gone.peers == ()
    stats = ok(world, lambda d: c.scrape([IH, IH2], d))
    assert stats.files == ((IH, ScrapeStats(2, 1, 0)), (IH2, ScrapeStats(0, 0, 0)))
    # One connect served every request (BEP 15: the id is reused for a minute).
    assert obs.counters["tracker.udp_connects"] == 1
    assert obs.counters["tracker.announces_udp"] == 5
    assert obs.counters["tracker.udp_scrapes"] == 1
    c.close()
    t.close()


def test_udp_and_http_share_one_table(world: World) -> None:
    t, _, _ = start_tracker(world)
    assert t.udp_url is not None and t.announce_url is not None
    client = world.new_runtime("client")
    ok(world, lambda d: announce(client, t.udp_url or "", req(1, left=0), d))
    got = ok(world, lambda d: announce(client, t.announce_url or "", req(2, compact=True), d))
    assert [p.port for p in got.peers] == [7001]
    stats = ok(world, lambda d: scrape(client, t.udp_url or "", [IH], d))
    assert stats.get(IH) == ScrapeStats(1, 0, 1)
    t.close()


def test_udp_refusal_is_an_error_packet(world: World) -> None:
    t, _, _ = start_tracker(world, allowed=frozenset({IH}))
    assert t.udp_address is not None
    c = UdpTrackerClient(world.new_runtime("client"), t.udp_address)
    _, exc = call(world, lambda d: c.announce(req(1, info_hash=IH2), d))
    assert isinstance(exc, TrackerRefused) and exc.reason == "unregistered torrent"
    c.close()
    t.close()


def raw_udp(world: World, name: str = "raw") -> tuple[DatagramRecorder, object]:
    rt = world.new_runtime(name)
    rec = DatagramRecorder()
    ep = rt.bind_udp((world.host(rt), 0), rec)
    return rec, ep


def test_udp_garbage_gets_silence_and_a_bad_id_an_error(world: World) -> None:
    t, _, obs = start_tracker(world)
    assert t.udp_address is not None
    rec, ep = raw_udp(world)
    for junk in (b"", b"x" * 15, b"\x00" * 16, struct.pack(">QII", 5, 9, 1) + b"z" * 90):
        ep.send_to(junk, t.udp_address)  # type: ignore[attr-defined]
    bad_id = UdpAnnounceRequest(12345, 77, IH, peer_id(1), 0, 0, 0, AnnounceEvent.NONE, 0, 0, -1, 1)
    ep.send_to(encode_udp(bad_id), t.udp_address)  # type: ignore[attr-defined]
    assert world.run_until(lambda: len(rec.datagrams) >= 1, 10)
    world.run_for(0.2)
    assert [decode_udp_response(d) for d, _ in rec.datagrams] == [
        UdpError(77, "invalid connection id")
    ]
    assert obs.counters["tracker.udp_garbage"] == 4
    assert obs.counters["tracker.udp_bad_connection_id"] == 1
    assert t.swarm(IH) is None
    t.close()


def test_udp_connection_ids_expire_per_bep15(sim: SimWorld) -> None:
    t, trt, _ = start_tracker(sim)
    assert t.udp_address is not None
    rec, ep = raw_udp(sim)
    ep.send_to(encode_udp(ConnectRequest(1)), t.udp_address)  # type: ignore[attr-defined]
    assert sim.run_until(lambda: len(rec.datagrams) == 1, 5)
    reply = decode_udp_response(rec.datagrams[0][0])
    assert isinstance(reply, ConnectResponse) and reply.transaction_id == 1
    cid = reply.connection_id

    def announce_with(tid: int) -> object:
        pkt = UdpAnnounceRequest(cid, tid, IH, peer_id(1), 0, 5, 0, AnnounceEvent.NONE, 0, 0, 5,
                                 7001)  # fmt: skip
        ep.send_to(encode_udp(pkt), t.udp_address)  # type: ignore[attr-defined]
        n = len(rec.datagrams)
        assert sim.run_until(lambda: len(rec.datagrams) == n + 1, 5)
        return decode_udp_response(rec.datagrams[-1][0])

    sim.run_for(119.0)  # BEP 15: still valid two minutes after it was sent
    assert isinstance(announce_with(2), UdpAnnounceResponse)
    sim.run_for(70.0)  # past the longest validity (three windows)
    assert announce_with(3) == UdpError(3, "invalid connection id")
    # Another address cannot use an id minted for this one.
    assert t.connection_id_valid((sim.host(trt), 1), t.mint_connection_id(ep.address)) is False  # type: ignore[attr-defined]
    t.close()


def test_udp_retransmission_schedule(sim: SimWorld) -> None:
    """Nobody answers: BEP 15 resends after 15 * 2**n s, then gives up."""
    silent_rt = sim.new_runtime("silent")
    heard = DatagramRecorder()
    silent = silent_rt.bind_udp((sim.host(silent_rt), 6969), heard)
    obs = RecordingObserver()
    crt = sim.new_runtime("client", observer=obs)
    c = UdpTrackerClient(crt, silent.address, max_retransmissions=3)
    times: list[float] = []
    orig = heard.datagram_received
    heard.datagram_received = lambda d, a: (times.append(silent_rt.now()), orig(d, a))  # type: ignore[method-assign]
    start = crt.now()
    _, exc = call(sim, lambda d: c.announce(req(1), d), timeout=1000)
    assert isinstance(exc, NetworkError) and "did not answer" in str(exc)
    sent = [round(x - start) for x in times]
    assert sent == [0, 15, 45, 105]  # 15 * (2**0 ... 2**2) apart
    assert round(crt.now() - start) == 225  # the last wait is 15 * 2**3
    assert all(decode_is_connect(d) for d, _ in heard.datagrams)
    assert obs.counters["tracker_client.udp_retransmits"] == 3
    c.close()


def decode_is_connect(data: bytes) -> bool:
    return data[8:12] == b"\x00\x00\x00\x00" and len(data) == 16


def test_udp_retransmission_reaches_a_late_tracker(sim: SimWorld) -> None:
    trt = sim.new_runtime("tracker")
    crt = sim.new_runtime("client")
    c = UdpTrackerClient(crt, (sim.host(trt), 6969), max_retransmissions=2)
    out: list[object] = []
    c.announce(req(1), lambda r, e: out.append(r or e))
    sim.run_for(20.0)  # the first send and one retransmission found nobody
    assert out == []
    t = Tracker(trt, TrackerConfig(host=sim.host(trt), udp_port=6969, http_port=None))
    t.start()
    assert sim.run_until(lambda: bool(out), 100)
    assert isinstance(out[0], AnnounceResponse)
    info = t.swarm(IH)
    assert info is not None and len(info.peers) == 1
    c.close()
    t.close()


# ------------------------------------------------------- expiry (sim clock)


def test_peers_expire_on_the_simulated_clock(sim: SimWorld) -> None:
    t, _, obs = start_tracker(sim, interval=60, sweep_interval=10)
    assert t.udp_address is not None
    c = UdpTrackerClient(sim.new_runtime("client"), t.udp_address)
    for n in (1, 2, 3):
        ok(sim, lambda d, n=n: c.announce(req(n), d))
    # Peer 3 keeps announcing every interval; 1 and 2 go silent.
    for _ in range(3):
        sim.run_for(60.0)
        ok(sim, lambda d: c.announce(req(3, event=AnnounceEvent.NONE), d))
    info = t.swarm(IH)
    assert info is not None and [p.port for p in info.peers] == [7003]
    assert obs.counters["tracker.peers_expired"] == 2
    sim.run_for(130.0)  # 2 intervals of silence, then the next sweep
    assert t.swarm(IH) is None and obs.counters["tracker.peers_expired"] == 3
    c.close()
    t.close()


# ------------------------------------------------------------- persistence


def test_restart_keeps_the_swarm_table(world: World, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    t, _, obs = start_tracker(world, store=FileSwarmStore(path))
    assert t.udp_address is not None
    client = world.new_runtime("client")
    c = UdpTrackerClient(client, t.udp_address)
    ok(world, lambda d: c.announce(req(1, left=0), d))
    ok(world, lambda d: c.announce(req(2, left=0, event=AnnounceEvent.COMPLETED), d))
    c.close()
    t.close()
    assert obs.counters["tracker.saves"] == 1
    doc = json.loads(path.read_text())
    assert doc["format"] == "peerlab-tracker-state" and len(doc["swarms"][0]["peers"]) == 2

    t2, _, obs2 = start_tracker(world, "tracker2", store=FileSwarmStore(path))
    assert obs2.named("tracker.loaded") == [{"swarms": 1, "peers": 2}]
    info = t2.swarm(IH)
    assert info is not None and (info.seeders, info.downloaded) == (2, 1)
    assert t2.udp_address is not None
    c2 = UdpTrackerClient(client, t2.udp_address)
    got = ok(world, lambda d: c2.announce(req(3), d))
    assert sorted(p.port for p in got.peers) == [7001, 7002]
    c2.close()
    t2.close()


def test_periodic_save_survives_a_crash(sim: SimWorld, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    t, _, obs = start_tracker(sim, store=FileSwarmStore(path), save_interval=5)
    assert t.udp_address is not None
    c = UdpTrackerClient(sim.new_runtime("client"), t.udp_address)
    ok(sim, lambda d: c.announce(req(1), d))
    sim.run_for(6.0)
    assert obs.counters["tracker.saves"] == 1
    sim.run_for(6.0)  # nothing changed: nothing written
    assert obs.counters["tracker.saves"] == 1
    # No close(): the process died.  A new tracker finds the saved table.
    t2, _, _ = start_tracker(sim, "tracker2", store=FileSwarmStore(path))
    info = t2.swarm(IH)
    assert info is not None and [p.peer_id for p in info.peers] == [peer_id(1)]
    assert 11.0 <= info.peers[0].age <= 13.0  # its age came along
    c.close()
    t2.close()


def test_memory_store_restart_in_the_simulator(sim: SimWorld) -> None:
    store = MemorySwarmStore()
    t, _, _ = start_tracker(sim, store=store)
    assert t.udp_address is not None
    c = UdpTrackerClient(sim.new_runtime("client"), t.udp_address)
    ok(sim, lambda d: c.announce(req(1), d))
    t.close()
    assert store.saves == 1
    t2, _, _ = start_tracker(sim, "tracker2", store=store)
    assert t2.swarm(IH) is not None
    c.close()
    t2.close()


def test_unreadable_state_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"{not json")
    sim = SimWorld()
    rt = sim.new_runtime("tracker")
    t = Tracker(rt, TrackerConfig(host=sim.host(rt)), FileSwarmStore(path))
    with pytest.raises(StorageError, match="not a readable tracker state"):
        t.start()
    t.close()
    assert path.read_bytes() == b"{not json"


def test_port_in_use_is_one_clear_error(world: World) -> None:
    t, rt, _ = start_tracker(world)
    assert t.http_address is not None and t.udp_address is not None
    host = world.host(rt)
    http_taken = Tracker(rt, TrackerConfig(host=host, http_port=t.http_address[1], udp_port=None))
    with pytest.raises(AddressInUse, match=f"HTTP port {t.http_address[1]} on {host}"):
        http_taken.start()
    udp_taken = Tracker(rt, TrackerConfig(host=host, http_port=0, udp_port=t.udp_address[1]))
    with pytest.raises(AddressInUse, match=f"UDP port {t.udp_address[1]} on {host}"):
        udp_taken.start()
    assert udp_taken.http_address is None  # nothing stays bound after a failed start
    t.close()


def test_full_scrape_when_enabled(world: World) -> None:
    t, _, _ = start_tracker(world, full_scrape=True)
    url = t.announce_url
    assert url is not None
    client = world.new_runtime("client")
    ok(world, lambda d: http_announce(client, url, req(1, info_hash=IH), d))
    ok(world, lambda d: http_announce(client, url, req(1, info_hash=IH2), d))
    every = ok(world, lambda d: http_scrape(client, url, [], d))
    assert sorted(h for h, _ in every.files) == [IH, IH2]
    t.close()


# ------------------------------------------------------------ seeded fuzz


def test_seeded_garbage_never_hurts_the_tracker(sim: SimWorld) -> None:
    """Random datagrams and random HTTP bytes: each costs only itself, no
    handler error, and the tracker answers a real client afterwards."""
    import random

    rng = random.Random(2026)
    t, _, obs = start_tracker(sim)
    assert t.udp_address is not None and t.http_address is not None
    rec, ep = raw_udp(sim)
    good = encode_udp(ConnectRequest(1))
    for _ in range(400):
        if rng.random() < 0.5:
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        else:  # a real packet with a few bytes flipped
            base = bytearray(good + bytes(rng.getrandbits(8) for _ in range(rng.randrange(90))))
            for _ in range(rng.randrange(1, 4)):
                base[rng.randrange(len(base))] = rng.getrandbits(8)
            junk = bytes(base)
        ep.send_to(junk, t.udp_address)  # type: ignore[attr-defined]
    crt = sim.new_runtime("http-junk")
    recorders = []
    for _ in range(30):
        r = StreamRecorder()
        crt.connect(t.http_address, r)
        recorders.append(r)
    assert sim.run_until(lambda: all(r.made for r in recorders), 10)
    for r in recorders:
        head = rng.choice([b"GET /announce?", b"GET /scrape?", b"", b"GET / HTTP/1.1\r\n"])
        assert r.stream is not None
        r.stream.write(head + bytes(rng.getrandbits(8) for _ in range(rng.randrange(300))))
        r.stream.write(b"\r\n\r\n")
    sim.run_for(40.0)  # past the idle timeout: every junk connection is gone
    assert obs.named("tracker.handler_error") == []
    assert t._handlers == set()
    c = obs.counters
    assert c["tracker.udp_garbage"] >= 250  # the rest still parsed as connects
    refused = c["tracker.http_bad_requests"] + c["tracker.failures"] + c["tracker.http_idle_closed"]
    assert refused >= 30
    client = UdpTrackerClient(sim.new_runtime("client"), t.udp_address)
    assert ok(sim, lambda d: client.announce(req(1), d)).interval == 1800
    client.close()
    t.close()


class FailingStore(MemorySwarmStore):
    """A store whose disk is full until ``healed``."""

    def __init__(self) -> None:
        super().__init__()
        self.healed = False

    def save(self, snapshot: object) -> None:
        if not self.healed:
            raise StorageError("disk full")
        super().save(snapshot)  # type: ignore[arg-type]


def test_a_failed_save_is_reported_and_retried(sim: SimWorld) -> None:
    store = FailingStore()
    t, _, obs = start_tracker(sim, store=store, save_interval=5)
    assert t.udp_address is not None
    c = UdpTrackerClient(sim.new_runtime("client"), t.udp_address)
    ok(sim, lambda d: c.announce(req(1), d))
    sim.run_for(6.0)
    assert [f["error"] for f in obs.named("tracker.save_failed")] == ["disk full"]
    ok(sim, lambda d: c.announce(req(2), d))  # still serving
    store.healed = True
    sim.run_for(5.0)  # the next tick writes
    assert store.saves == 1 and store.snapshot is not None
    assert len(store.snapshot.swarms[0].peers) == 2
    c.close()
    t.close()
