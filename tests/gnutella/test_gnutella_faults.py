"""Bad input and faults, in both worlds: handshake garbage, slowloris,
malformed and oversized descriptors, replies nobody asked for, duplicate and
flooded queries, silent peers.  Each costs the message or the connection, is
counted, and the servent keeps serving its other neighbours."""

from __future__ import annotations

import tracemalloc

from gnetkit import WAIT, Node, RawPeer, close_all, internal_errors, link, make_file, new_node

from peerlab.errors import RemoteProtocolError
from peerlab.proto.gnutella import HandshakeRejected
from peerlab.runtime.worlds import StreamRecorder, World
from peerlab.wire.gnutella import (
    PONG,
    QUERY,
    Bye,
    HopsFlow,
    Ping,
    Push,
    Query,
    QueryHit,
    QueryHitResult,
    VendorMessage,
    encode_vendor,
    frame,
)

FILES = [make_file(3, "the big lebowski.mp3", size=4321)]


def guid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_garbage_peers_are_refused_while_others_keep_working(world: World) -> None:
    a = new_node(world, "a")
    b = new_node(world, "b", FILES)
    link(world, a, b)
    junk = [
        b"HELLO I AM NOT GNUTELLA\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\xff" * 200,
        b"GNUTELLA CONNECT/0.6\r\n" + b"X-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GNUTELLA CONNECT/0.6\r\nno colon here\r\n\r\n",
    ]
    recorders = []
    rt = world.new_runtime("junk")
    for data in junk:
        rec = StreamRecorder()
        rt.connect(b.address, rec)
        recorders.append((rec, data))
    assert world.run_until(lambda: all(r.made for r, _ in recorders), WAIT)
    for rec, data in recorders:
        assert rec.stream is not None
        rec.stream.write(data)
    assert world.run_until(lambda: all(r.lost for r, _ in recorders), WAIT)
    assert b.servent.counters["connections.protocol_error"] == len(junk)
    # Nothing but the handshake refusal came back to any of them.
    assert all(not r.data or r.data.startswith(b"GNUTELLA/0.6 4") for r, _ in recorders)
    s = a.servent.search("lebowski", ttl=1)
    assert world.run_until(lambda: s.hits == 1, WAIT)
    assert b.servent.open_count == 1 and internal_errors([a, b]) == 0
    close_all(world, [a, b])


def test_slowloris_handshakes_are_bounded_and_cut(world: World) -> None:
    b = new_node(world, "b", FILES, handshake_timeout=1.0, max_handshakes=3)
    rt = world.new_runtime("slow")
    slow = [StreamRecorder() for _ in range(5)]
    for rec in slow:
        rt.connect(b.address, rec)
    assert world.run_until(lambda: all(r.made for r in slow), WAIT)
    for rec in slow:
        if rec.stream is not None and not rec.stream.closing:
            rec.stream.write(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: sl")
    # Two had no handshake slot at all; three are cut when their time is up.
    assert world.run_until(lambda: all(r.lost for r in slow), WAIT)
    c = b.servent.counters
    assert c["connections.refused"] == 2 and c["connections.protocol_error"] == 3
    # The slots are free again: a real servent gets in.
    a = new_node(world, "a")
    link(world, a, b)
    close_all(world, [a, b])


def test_malformed_descriptors_cost_only_themselves(world: World) -> None:
    b = new_node(world, "b", FILES)
    r = RawPeer(world, "raw", b.address)
    r.wait_open()
    r.send_raw(frame(guid(1), QUERY, 3, 0, b"\x00\x00lebowski\x00\xc3\xff\xff"))  # bad GGEP
    r.send_raw(frame(guid(2), PONG, 1, 0, b"\x01\x02\x03"))  # a Pong of 3 bytes
    r.send(QueryHit(6346, "10.9.9.9", 1, (QueryHitResult(1, 2, "x.mp3"),), guid(99)), guid(3))
    r.send(Push(guid(77), 1, "10.9.9.9", 6346), guid(4))  # a servent nobody knows
    r.send(Query("lebowski"), guid(5), ttl=0)  # TTL 0 on arrival
    r.send_raw(frame(guid(6), 0x55, 1, 0, b"what is this"))  # a type we do not model
    r.send(VendorMessage("ZZZZ", 9, 1, b"?"), guid(7), ttl=1)
    r.send(Query("lebowski"), guid(8), ttl=7, hops=3)  # hops + TTL above 7: trimmed
    r.send(Query("lebowski"), guid(8), ttl=2)  # the same GUID again
    assert world.run_until(lambda: len(r.received(QueryHit)) == 1, WAIT)
    world.run_for(0.3)
    c = b.servent.counters
    assert c["dropped.bad_descriptor"] == 2
    assert c["dropped.unrouted_hit"] == 1 and c["dropped.unrouted_push"] == 1
    assert c["dropped_ttl.query"] == 1 and c["ttl_trimmed.query"] == 1
    assert c["dropped.unknown_type"] == 1 and c["dropped.ignored_vendor"] == 1
    assert c["dup.query"] == 1 and c["queries.answered"] == 1
    # The connection lived on, and the answer is what a servent must send.
    hit_ev = r.received(QueryHit)[0]
    hit = hit_ev.message
    assert hit_ev.header.guid == guid(8) and hit_ev.header.hops == 0
    assert hit_ev.header.ttl == 4, "a hit starts with TTL = the query's hops + 1"
    assert (hit.ip, hit.port) == b.address and hit.servent_guid == b.servent.guid
    assert hit.vendor == "PLAB" and hit.push is False
    assert [(x.index, x.name, x.size, x.urns) for x in hit.results] == [
        (3, "the big lebowski.mp3", 4321, (FILES[0].urn,))
    ]
    assert b.servent.open_count == 1 and not r.closed
    assert internal_errors([b]) == 0
    r.close()
    close_all(world, [b])


def test_an_oversized_descriptor_costs_the_connection(world: World) -> None:
    b = new_node(world, "b", FILES)
    r = RawPeer(world, "raw", b.address)
    r.wait_open()
    header = guid(1) + bytes([QUERY, 3, 0]) + (100_000).to_bytes(4, "little")
    r.send_raw(header + b"x" * 1000)
    assert world.run_until(lambda: bool(r.closed), WAIT)
    assert b.servent.counters["connections.protocol_error"] == 1
    assert b.servent.open_count == 0
    close_all(world, [b])


def test_too_many_malformed_messages_earn_a_bye(world: World) -> None:
    b = new_node(world, "b", max_bad_descriptors=5)
    r = RawPeer(world, "raw", b.address)
    r.wait_open()
    for i in range(10):
        r.send_raw(frame(guid(i), PONG, 1, 0, b"\x00"))
    assert world.run_until(lambda: bool(r.closed), WAIT)
    byes = r.received(Bye)
    assert [m.message.code for m in byes] == [402]
    assert b.servent.counters["bye_sent.402"] == 1
    close_all(world, [b])


def test_hops_flow_stops_queries_to_that_neighbour(world: World) -> None:
    a = new_node(world, "a")
    b = new_node(world, "b")
    link(world, a, b)
    r = RawPeer(world, "raw", b.address)
    r.wait_open()
    r.send(encode_vendor(HopsFlow(1)), guid(50), ttl=1)
    world.run_for(0.3)
    a.servent.search("lebowski", ttl=3)  # reaches b with hops 0, forwarded with hops 1
    world.run_for(0.5)
    assert r.received(Query) == []
    assert b.servent.counters["dropped.hops_flow"] == 1
    r.close()
    close_all(world, [a, b])


def test_bye_on_shutdown_and_for_silent_peers(world: World) -> None:
    a = new_node(world, "a", pong_cache_expiry=0.2)
    b = new_node(world, "b", keepalive_interval=0.5, pong_cache_expiry=0.2, maintain_interval=0.1)
    link(world, a, b)
    r = RawPeer(world, "raw", b.address)
    r.wait_open()
    # a answers b's keep-alive pings; the raw peer stays silent.
    assert world.run_until(lambda: bool(r.closed), WAIT)
    assert 1 in [p.header.ttl for p in r.received(Ping)], "an alive ping has TTL 1"
    assert [m.message.code for m in r.received(Bye)] == [405]
    assert b.servent.open_count == 1
    a.servent.close()
    assert world.run_until(lambda: b.servent.counters["bye_received.200"] == 1, WAIT)
    assert world.run_until(lambda: b.servent.open_count == 0, WAIT)
    close_all(world, [b])


def test_already_connected_and_self_connections_are_refused(world: World) -> None:
    a = new_node(world, "a")
    b = new_node(world, "b")
    link(world, a, b)
    assert not a.servent.connect(b.address), "already connected"
    assert not a.servent.connect(a.address), "ourselves"
    host, port = a.address
    r = RawPeer(world, "twin", b.address,
                [("User-Agent", "twin/1"), ("Listen-IP", f"{host}:{port}")])  # fmt: skip
    assert world.run_until(lambda: bool(r.closed), WAIT)
    rejected = [e for e in r.events if isinstance(e, HandshakeRejected)]
    assert [e.code for e in rejected] == [409]
    close_all(world, [a, b])


def flood(
    world: World, r: RawPeer, per_tick: int, ticks: int, tick: float, criteria: bytes = b"flood"
) -> None:
    """Send ``per_tick`` queries with fresh GUIDs every ``tick`` seconds."""
    state = {"n": 0, "left": ticks}

    def burst() -> None:
        if r.closed or r.driver.stream is None or r.driver.stream.closing:
            return
        data = b"".join(
            frame(guid(1_000_000 + state["n"] + i), QUERY, 3, 0, b"\x00\x00" + criteria + b"\x00")
            for i in range(per_tick)
        )
        state["n"] += per_tick
        r.send_raw(data)
        state["left"] -= 1
        if state["left"] > 0:
            r.runtime.call_later(tick, burst)

    r.runtime.call_soon(burst)


def test_a_query_flood_keeps_memory_bounded(world: World) -> None:
    """A neighbour sending 10,000 queries a second for two seconds: the excess
    is dropped and counted, every table stays within its bound, and the
    servent goes on answering its other neighbour."""
    b = new_node(world, "b", FILES, max_routes=2000, flood_bye_drops=None,
                 max_query_rate=100.0, query_burst=200.0)  # fmt: skip
    n = new_node(world, "n")
    link(world, n, b)
    r = RawPeer(world, "hostile", b.address)
    r.wait_open()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        flood(world, r, per_tick=100, ticks=200, tick=0.01)  # 20,000 queries, 10,000/s
        world.run_for(1.0)
        s = n.servent.search("lebowski", ttl=1)  # mid-flood
        assert world.run_until(lambda: s.hits == 1, WAIT), "b stopped serving"
        assert world.run_until(lambda: b.servent.counters["rx.query"] >= 20_000, WAIT)
        world.run_for(0.5)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    c = b.servent.counters
    assert c["rx.query"] == 20_001
    assert c["dropped.query_rate"] >= 20_000 - 200 - 100 * 4
    assert len(b.servent.queries) <= 2000
    # What b forwarded to n is rate-bound (burst + rate x duration), not flood-bound.
    assert n.servent.counters["rx.query"] <= 200 + 100 * 4
    assert all(info.queued_bytes <= 512 * 1024 for info in b.servent.connections())
    assert peak < 16 * 1024 * 1024, f"memory grew by {peak / 1e6:.1f} MB"
    assert b.servent.open_count == 2 and internal_errors([b, n]) == 0
    r.close()
    close_all(world, [b, n])


def test_a_query_flooder_is_cut(world: World) -> None:
    b = new_node(world, "b", flood_bye_drops=500)
    r = RawPeer(world, "hostile", b.address)
    r.wait_open()
    flood(world, r, per_tick=100, ticks=100, tick=0.01)
    assert world.run_until(lambda: bool(r.closed), WAIT)
    assert [m.message.code for m in r.received(Bye)] == [402]
    assert 500 < b.servent.counters["dropped.query_rate"] < 10_000
    close_all(world, [b])


def test_closed_connection_errors_are_network_not_protocol(world: World) -> None:
    """A peer that vanishes mid-handshake is a failure, not a protocol error."""
    a = new_node(world, "a")
    rt = world.new_runtime("gone")
    rec = StreamRecorder()
    rt.connect(a.address, rec)
    assert world.run_until(lambda: rec.made, WAIT)
    assert rec.stream is not None
    rec.stream.write(b"GNUTELLA CONNECT/0.6\r\n")
    rec.stream.close()
    assert world.run_until(lambda: a.servent.connections() == [], WAIT)
    assert a.servent.counters["connections.protocol_error"] == 0
    assert not isinstance(rec.error, RemoteProtocolError)
    close_all(world, [a])


def test_a_stalled_reader_only_fills_its_bounded_queue(world: World) -> None:
    """A neighbour that stops reading: what we forward to it waits in its
    queue up to the bound, the rest is dropped and counted; the servent goes
    on serving the others, and the stalled link resumes when it reads again."""
    bound = 64 * 1024
    b = new_node(world, "b", FILES, max_queue_bytes=bound, max_query_rate=1e9,
                 query_burst=1e9, flood_bye_drops=None)  # fmt: skip
    stalled = RawPeer(world, "stalled", b.address)
    stalled.wait_open()
    assert stalled.driver.stream is not None
    stalled.driver.stream.pause_reading()
    src = RawPeer(world, "src", b.address)
    src.wait_open()
    sent = 15_000
    # 15,000 queries of 2 KB: 30 MB for the stalled link, more than any socket buffers.
    flood(world, src, per_tick=500, ticks=sent // 500, tick=0.01, criteria=b"z" * 2000)
    assert world.run_until(lambda: b.servent.counters["rx.query"] >= sent, WAIT)
    world.run_for(0.5)
    c = b.servent.counters
    link_info = next(i for i in b.servent.connections() if i.listen_address is None
                     and i.messages_out < sent and i.dropped > 0)  # fmt: skip
    assert link_info.queued_bytes <= bound
    assert c["flow_dropped.query"] > 0
    # Every forwarded copy was either handed to the connection or dropped.
    assert c["routed.query"] + c["flow_dropped.query"] + len_queued(b) == sent
    src.send(Query("lebowski"), guid(42), ttl=1)
    assert world.run_until(lambda: len(src.received(QueryHit)) == 1, WAIT)
    before = len(stalled.received(Query))
    stalled.driver.stream.resume_reading()
    assert world.run_until(lambda: len(stalled.received(Query)) > before, WAIT)
    assert b.servent.open_count == 2 and internal_errors([b]) == 0
    stalled.close()
    src.close()
    close_all(world, [b])


def len_queued(node: Node) -> int:
    """Queries still waiting in the servent's outgoing queues."""
    links = node.servent._links.values()
    return sum(1 for link in links for item in link.queue if item.payload_type == QUERY)
