"""The Gnutella connection machine (peerlab.proto.gnutella).

Two machines talk to each other in memory: the handshakes of
``handshaking_0.6`` and ``ultra-peers``, both ``compression`` examples, the
descriptor stream, Bye, the timers.  Bytes are pumped whole and one byte at
a time.  Last, the machine runs under StreamDriver on real sockets
(127.0.0.1) and in the simulator.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
from gnutkit import SHA1_URN, chunks, messages
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.proto.gnutella import (
    BadDescriptor,
    ConnectionClosed,
    ConnectionConfig,
    ConnectRequest,
    DescriptorReceived,
    GnutellaConnection,
    HandshakeComplete,
    HandshakeRejected,
    HandshakeResponse,
    IdleTimeout,
    Negotiation,
    State,
)
from peerlab.runtime.driver import SansIOMachine, StreamDriver
from peerlab.runtime.worlds import RealWorld, SimWorld, StreamRecorder, World
from peerlab.wire.gnutella import (
    Bye,
    Ping,
    Pong,
    Query,
    QueryHit,
    QueryHitResult,
    encode_descriptor,
    frame,
)
from peerlab.wire.handshake import (
    capability_headers,
    is_ultrapeer,
    try_ultrapeers,
    ultrapeer_needed,
)

GUID = bytes(range(16))
LEAF = capability_headers(user_agent="peerlab-leaf/0.1", ultrapeer=False)
ULTRA = capability_headers(user_agent="peerlab-up/0.1", ultrapeer=True)


def pump(
    a: GnutellaConnection,
    b: GnutellaConnection,
    now: float = 1.0,
    *,
    split: Callable[[bytes], list[bytes]] = lambda d: [d],
) -> tuple[list[object], list[object]]:
    """Move bytes both ways until both are quiet; events seen by a and by b."""
    ev_a: list[object] = []
    ev_b: list[object] = []
    for _ in range(100):
        moved = False
        for src, dst, ev in ((a, b, ev_b), (b, a, ev_a)):
            data = src.data_to_send()
            if data:
                moved = True
                for piece in split(data):
                    ev += dst.receive_data(piece, now)
        if not moved:
            return ev_a, ev_b
    raise AssertionError("pump did not settle")


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def open_pair(
    client_headers: list[tuple[str, str]],
    server_headers: list[tuple[str, str]],
    final_headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    split: Callable[[bytes], list[bytes]] = lambda d: [d],
    config: ConnectionConfig | None = None,
) -> tuple[GnutellaConnection, GnutellaConnection, Negotiation, Negotiation]:
    client = GnutellaConnection.outgoing_connection(client_headers, now=0.0, config=config)
    server = GnutellaConnection.incoming_connection(now=0.0, config=config)
    ev_c, ev_s = pump(client, server, split=split)
    assert ev_c == [] and len(ev_s) == 1 and isinstance(ev_s[0], ConnectRequest)
    assert ev_s[0].version == "0.6"
    assert server.accept(server_headers) is None
    ev_c, ev_s = pump(client, server, split=split)
    assert len(ev_c) == 1 and isinstance(ev_c[0], HandshakeResponse) and ev_s == []
    neg_c = client.accept(final_headers)
    assert neg_c is not None and client.is_open
    ev_c, ev_s = pump(client, server, split=split)
    assert len(ev_s) == 1 and isinstance(ev_s[0], HandshakeComplete) and server.is_open
    return client, server, neg_c, ev_s[0].negotiation


def received(events: list[object]) -> list[object]:
    return [e.message for e in events if isinstance(e, DescriptorReceived)]


def test_machine_has_the_driver_shape() -> None:
    assert isinstance(GnutellaConnection.incoming_connection(now=0.0), SansIOMachine)


@pytest.mark.parametrize("split", [lambda d: [d], bytewise], ids=["whole", "bytewise"])
def test_sample_handshake_then_descriptors(split: Callable[[bytes], list[bytes]]) -> None:
    client, server, neg_c, neg_s = open_pair(LEAF, ULTRA, split=split)
    assert not (neg_c.deflate_in or neg_c.deflate_out or neg_s.deflate_in or neg_s.deflate_out)
    assert neg_c.remote_ultrapeer is True and neg_s.remote_ultrapeer is False
    assert neg_s.remote_user_agent == "peerlab-leaf/0.1" and neg_c.outgoing and not neg_s.outgoing
    query = Query("little toot", urns=(SHA1_URN,))
    client.send(query, guid=GUID, ttl=3)
    hit = QueryHit(6346, "10.0.0.2", 128, (QueryHitResult(1, 99, "toot.mp3"),), GUID, "GTKG")
    server.send(hit, guid=GUID, ttl=2, hops=1)
    ev_c, ev_s = pump(client, server, split=split)
    assert received(ev_s) == [query] and received(ev_c) == [hit]
    (d,) = ev_s
    assert isinstance(d, DescriptorReceived)
    assert (d.header.guid, d.header.ttl, d.header.hops) == (GUID, 3, 0)
    assert d.payload == encode_descriptor(query, guid=GUID, ttl=3)[23:]


def test_handshake_bytes_on_the_wire() -> None:
    client = GnutellaConnection.outgoing_connection([("User-Agent", "BearShare")], now=0.0)
    assert client.data_to_send() == b"GNUTELLA CONNECT/0.6\r\nUser-Agent: BearShare\r\n\r\n"
    server = GnutellaConnection.incoming_connection(now=0.0)
    assert server.data_to_send() == b""
    (req,) = server.receive_data(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: BearShare\r\n\r\n", 0.1)
    assert isinstance(req, ConnectRequest) and server.state is State.DECIDE
    server.accept([("BearShare-Data", "5ef89a")])
    assert server.data_to_send() == b"GNUTELLA/0.6 200 OK\r\nBearShare-Data: 5ef89a\r\n\r\n"
    (ok,) = client.receive_data(b"GNUTELLA/0.6 200 OK\r\nBearShare-Data: 5ef89a\r\n\r\n", 0.2)
    assert isinstance(ok, HandshakeResponse)
    client.accept([("BearShare-Data", "a04fce")])
    assert client.data_to_send() == b"GNUTELLA/0.6 200 OK\r\nBearShare-Data: a04fce\r\n\r\n"


@pytest.mark.parametrize("split", [lambda d: [d], bytewise], ids=["whole", "bytewise"])
def test_compression_both_ways(split: Callable[[bytes], list[bytes]]) -> None:
    # compression section 3, first example.
    client, server, neg_c, neg_s = open_pair(
        LEAF,
        ULTRA + [("Content-Encoding", "deflate")],
        [("Content-Encoding", "deflate")],
        split=split,
    )
    assert neg_c.deflate_in and neg_c.deflate_out and neg_s.deflate_in and neg_s.deflate_out
    sent = [Query(f"lebowski part {i}") for i in range(30)]
    for q in sent:
        client.send(q, guid=GUID, ttl=3)
    wire = client.data_to_send()
    plain = b"".join(encode_descriptor(q, guid=GUID, ttl=3) for q in sent)
    assert b"lebowski" not in wire and len(wire) < len(plain) // 2
    events: list[object] = []
    for piece in split(wire):
        events += server.receive_data(piece, 2.0)
    assert received(events) == sent
    server.send(Pong(6346, "10.0.0.1", 5, 6), guid=GUID, ttl=1)
    ev_c, _ = pump(client, server, split=split)
    assert received(ev_c) == [Pong(6346, "10.0.0.1", 5, 6)]


def test_compression_one_way_only() -> None:
    # compression section 3, second example: B refuses to compress, A compresses.
    client, server, neg_c, neg_s = open_pair(LEAF, ULTRA, [("Content-Encoding", "deflate")])
    assert neg_c.deflate_out and not neg_c.deflate_in
    assert neg_s.deflate_in and not neg_s.deflate_out
    client.send(Ping(), guid=GUID, ttl=1)
    server.send(Ping(), guid=GUID, ttl=1)
    raw = server.data_to_send()
    assert raw == encode_descriptor(Ping(), guid=GUID, ttl=1)  # uncompressed
    assert received(client.receive_data(raw, 1.0)) == [Ping()]
    assert received(server.receive_data(client.data_to_send(), 1.0)) == [Ping()]


def test_first_compressed_bytes_in_the_same_segment_as_the_final_block() -> None:
    # The client's final block and its first compressed descriptor in one write.
    client = GnutellaConnection.outgoing_connection(LEAF, now=0.0)
    server = GnutellaConnection.incoming_connection(now=0.0)
    server.receive_data(client.data_to_send(), 0.1)
    server.accept(ULTRA)
    client.receive_data(server.data_to_send(), 0.2)
    client.accept([("Content-Encoding", "deflate")])
    client.send(Query("same segment"), guid=GUID, ttl=2)
    events = server.receive_data(client.data_to_send(), 0.3)
    assert isinstance(events[0], HandshakeComplete)
    assert received(events) == [Query("same segment")]


def test_leaf_guidance_is_merged_into_the_negotiation() -> None:
    # ultra-peers 3.5: B tells ultrapeer A it is not needed; A's final block
    # says X-Ultrapeer: False and becomes B's leaf.
    client, server, neg_c, neg_s = open_pair(
        ULTRA,
        ULTRA + [("X-Ultrapeer-Needed", "false")],
        [("X-Ultrapeer", "False")],
    )
    assert ultrapeer_needed(neg_c.remote_headers) is False
    assert is_ultrapeer(neg_s.remote_headers) is False and neg_s.remote_ultrapeer is False
    assert neg_c.local_ultrapeer is False
    assert neg_s.remote_headers.get_all("X-Ultrapeer") == ["False"]


def test_server_refuses_with_redirection() -> None:
    client = GnutellaConnection.outgoing_connection(LEAF, now=0.0)
    server = GnutellaConnection.incoming_connection(now=0.0)
    pump(client, server)
    server.reject(503, "I am a shielded leaf node", [("X-Try-Ultrapeers", "18.2.3.14:6346")])
    assert server.state is State.CLOSED
    ev_c, _ = pump(client, server)
    (rej,) = ev_c
    assert isinstance(rej, HandshakeRejected) and (rej.code, rej.reason) == (
        503,
        "I am a shielded leaf node",
    )
    assert try_ultrapeers(rej.headers) == [("18.2.3.14", 6346)] and client.state is State.CLOSED
    # Whatever follows a refusal is ignored.
    assert client.receive_data(b"junk", 1.0) == []


def test_client_refuses_in_its_final_block() -> None:
    client = GnutellaConnection.outgoing_connection(LEAF, now=0.0)
    server = GnutellaConnection.incoming_connection(now=0.0)
    pump(client, server)
    server.accept(ULTRA)
    pump(client, server)
    client.reject(409, "Vendor rejected")
    _, ev_s = pump(client, server)
    (rej,) = ev_s
    assert isinstance(rej, HandshakeRejected) and (rej.code, rej.reason) == (409, "Vendor rejected")
    assert server.state is State.CLOSED and client.state is State.CLOSED


def test_compression_rules_are_enforced() -> None:
    client = GnutellaConnection.outgoing_connection(
        capability_headers(user_agent="x", ultrapeer=False, accept_deflate=False), now=0.0
    )
    server = GnutellaConnection.incoming_connection(now=0.0)
    pump(client, server)
    with pytest.raises(LocalProtocolError):
        server.accept(ULTRA + [("Content-Encoding", "deflate")])  # client did not accept it
    with pytest.raises(LocalProtocolError):
        server.accept([("Content-Encoding", "deflate, gzip")])
    # A peer that compresses anyway, or with something else, is refused.
    raw = b"GNUTELLA/0.6 200 OK\r\nContent-Encoding: deflate\r\n\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(raw, 1.0)
    assert info.value.code == 415 and client.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"", 1.0)  # stays failed
    other = GnutellaConnection.outgoing_connection(LEAF, now=0.0)
    with pytest.raises(RemoteProtocolError):
        other.receive_data(b"GNUTELLA/0.6 200 OK\r\nContent-Encoding: gzip\r\n\r\n", 1.0)


def test_descriptor_faults() -> None:
    client, server, _, _ = open_pair(LEAF, ULTRA)
    # A bad payload costs only itself.
    bad = frame(GUID, 0x01, 1, 0, b"short pong")
    good = encode_descriptor(Ping(), guid=GUID, ttl=1)
    events = server.receive_data(bad + good, 1.0)
    assert isinstance(events[0], BadDescriptor) and events[0].header.payload_type == 0x01
    assert received(events[1:]) == [Ping()] and server.is_open
    # A Bye that is not TTL 1 / hops 0 is discarded, not obeyed.
    stray = encode_descriptor(Bye(200, "x"), guid=GUID, ttl=2)
    (ev,) = server.receive_data(stray, 1.0)
    assert isinstance(ev, BadDescriptor) and server.is_open
    # An oversized descriptor costs the connection.
    huge = GUID + bytes.fromhex("80 01 00") + (70_000).to_bytes(4, "little")
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(huge, 1.0)
    assert info.value.code == 400 and server.state is State.ERROR


def test_bye_both_ways() -> None:
    client, server, _, _ = open_pair(LEAF, ULTRA)
    server.send_bye(200, "Shutting Down", [("Server", "peerlab")], guid=GUID)
    assert server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(Ping(), guid=GUID, ttl=1)
    after = encode_descriptor(Ping(), guid=GUID, ttl=1)
    events = client.receive_data(server.data_to_send() + after, 1.0)
    assert received(events) == [Bye(200, "Shutting Down", (("Server", "peerlab"),))]
    assert client.state is State.CLOSED
    assert client.receive_data(after, 1.0) == []  # nothing processed after a Bye


def test_handshake_timeout_and_slowloris() -> None:
    server = GnutellaConnection.incoming_connection(now=100.0)
    assert server.next_deadline() == 130.0
    assert server.handle_timeout(129.9) == []
    for i, byte in enumerate(b"GNUTELLA CONNECT/0.6\r\nX-Slow: "):
        server.receive_data(bytes((byte,)), 100.0 + i)  # trickling keeps nothing alive
    with pytest.raises(RemoteProtocolError) as info:
        server.handle_timeout(130.0)
    assert info.value.code == 408 and server.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"\r\n\r\n", 131.0)
    client, server, _, _ = open_pair(LEAF, ULTRA)
    assert client.next_deadline() is None and server.next_deadline() is None


def test_idle_timer() -> None:
    cfg = ConnectionConfig(idle_timeout=60.0)
    client, server, _, _ = open_pair(LEAF, ULTRA, config=cfg)
    assert server.next_deadline() == 1.0 + 60.0
    assert server.handle_timeout(30.0) == []
    assert server.handle_timeout(61.0) == [IdleTimeout(60.0)]
    assert server.next_deadline() == 121.0
    server.receive_data(encode_descriptor(Ping(), guid=GUID, ttl=1), 100.0)
    assert server.next_deadline() == 160.0


def test_garbage_and_misuse() -> None:
    for raw, code in (
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GNUTELLA CONNECT/0.4\n\n", 505),
        (b"GNUTELLA/0.6 200 OK\r\n\r\n", 400),
    ):
        server = GnutellaConnection.incoming_connection(now=0.0)
        with pytest.raises(RemoteProtocolError) as info:
            server.receive_data(raw, 0.0)
        assert info.value.code == code
    client = GnutellaConnection.outgoing_connection(LEAF, now=0.0)
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"GNUTELLA CONNECT/0.6\r\n\r\n", 0.0)
    fresh = GnutellaConnection.incoming_connection(now=0.0)
    with pytest.raises(LocalProtocolError):
        fresh.accept()
    with pytest.raises(LocalProtocolError):
        fresh.send(Ping(), guid=GUID, ttl=1)
    fresh.receive_data(b"GNUTELLA CONNECT/0.6\r\n\r\n", 0.0)
    with pytest.raises(LocalProtocolError):
        fresh.reject(200, "OK")
    # A peer may not flood us while we decide.
    with pytest.raises(RemoteProtocolError):
        fresh.receive_data(b"x" * 20_000, 0.0)


def test_link_bomb_costs_the_connection() -> None:
    client, server, _, _ = open_pair(LEAF, ULTRA, [("Content-Encoding", "deflate")])
    bomb = zlib.compress(bytes(16 * 1024 * 1024), 9)
    with pytest.raises(RemoteProtocolError, match="bound"):
        for piece in chunks(bomb, [4096]):
            server.receive_data(piece, 1.0)


def test_raw_payload_mode_and_forwarding() -> None:
    cfg = ConnectionConfig(decode_payloads=False)
    client, server, _, _ = open_pair(LEAF, ULTRA, config=cfg)
    client.send(Query("x"), guid=GUID, ttl=3)
    (ev,) = server.receive_data(client.data_to_send(), 1.0)
    assert isinstance(ev, DescriptorReceived) and ev.message is None
    # Forward it with TTL and hops moved on, payload untouched.
    server.send_descriptor(ev.header.guid, ev.header.payload_type, 2, 1, ev.payload)
    (fw,) = client.receive_data(server.data_to_send(), 1.0)
    assert isinstance(fw, DescriptorReceived) and fw.payload == ev.payload
    assert (fw.header.ttl, fw.header.hops) == (2, 1)


def test_eof() -> None:
    server = GnutellaConnection.incoming_connection(now=0.0)
    assert server.receive_eof(1.0) == [ConnectionClosed()] and server.state is State.CLOSED


@settings(max_examples=40, deadline=None)
@given(
    st.lists(messages, min_size=1, max_size=8),
    st.booleans(),
    st.lists(st.integers(1, 300), min_size=1, max_size=5),
)
def test_any_messages_any_chunking(msgs: list, compress: bool, sizes: list[int]) -> None:
    final = [("Content-Encoding", "deflate")] if compress else []
    client, server, _, _ = open_pair(LEAF, ULTRA, final)
    for m in msgs:
        client.send(m, guid=GUID, ttl=1)
    events: list[object] = []
    for piece in chunks(client.data_to_send(), sizes):
        events += server.receive_data(piece, 1.0)
    # Everything up to and including the first Bye arrives; nothing after it.
    expected: list[object] = []
    for m in msgs:
        expected.append(m)
        if isinstance(m, Bye):
            break
    assert all(isinstance(e, DescriptorReceived) for e in events)
    assert received(events) == expected


# ------------------------------------------------- driven, in both worlds


def make_world(kind: str) -> World:
    return RealWorld() if kind == "real" else SimWorld(seed=11)


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    w = make_world(request.param)
    try:
        yield w
    finally:
        w.close()


def test_driven_handshake_and_compressed_stream(world: World) -> None:
    up_rt, leaf_rt = world.new_runtime("ultrapeer"), world.new_runtime("leaf")
    up_events: list[object] = []
    up_closed: list[Exception | None] = []
    drivers: list[StreamDriver] = []

    def factory() -> StreamDriver:
        machine = GnutellaConnection.incoming_connection(now=up_rt.now())

        def on_event(ev: object) -> None:
            up_events.append(ev)
            if isinstance(ev, ConnectRequest):
                machine.accept(ULTRA + [("Content-Encoding", "deflate")])
            elif isinstance(ev, DescriptorReceived) and isinstance(ev.message, Query):
                hit = QueryHit(6346, "127.0.0.1", 1, (QueryHitResult(1, 2, "a.mp3"),), GUID, "GTKG")
                machine.send(hit, guid=ev.header.guid, ttl=ev.header.hops + 1)

        drivers.append(StreamDriver(up_rt, machine, on_event, on_closed=up_closed.append))
        return drivers[-1]

    listener = up_rt.listen((world.host(up_rt), 0), factory)
    leaf = GnutellaConnection.outgoing_connection(LEAF, now=leaf_rt.now())
    leaf_events: list[object] = []
    leaf_closed: list[Exception | None] = []

    def on_leaf_event(ev: object) -> None:
        leaf_events.append(ev)
        if isinstance(ev, HandshakeResponse):
            leaf.accept([("Content-Encoding", "deflate")])
            leaf.send(Query("driven"), guid=GUID, ttl=2)
        elif isinstance(ev, DescriptorReceived) and isinstance(ev.message, QueryHit):
            leaf.send_bye(200, "done", guid=GUID)

    driver = StreamDriver(leaf_rt, leaf, on_leaf_event, on_closed=leaf_closed.append)
    leaf_rt.connect(listener.address, driver)
    assert world.run_until(lambda: any(isinstance(e, DescriptorReceived) for e in leaf_events), 20)
    assert leaf.deflate_in and leaf.deflate_out
    assert world.run_until(lambda: leaf.state is State.CLOSED and bool(up_events), 20)
    assert world.run_until(
        lambda: any(
            isinstance(e, DescriptorReceived) and isinstance(e.message, Bye) for e in up_events
        ),
        20,
    )
    driver.close()
    drivers[0].close()
    assert world.run_until(lambda: bool(leaf_closed) and bool(up_closed), 20)
    assert leaf_closed == [None] and up_closed == [None]
    kinds = [type(e).__name__ for e in up_events]
    assert kinds[:3] == ["ConnectRequest", "HandshakeComplete", "DescriptorReceived"]


def test_driven_slowloris_is_dropped(world: World) -> None:
    up_rt, peer_rt = world.new_runtime("ultrapeer"), world.new_runtime("slow")
    closed: list[Exception | None] = []
    cfg = ConnectionConfig(handshake_timeout=0.5)

    def factory() -> StreamDriver:
        machine = GnutellaConnection.incoming_connection(now=up_rt.now(), config=cfg)
        return StreamDriver(up_rt, machine, lambda ev: None, on_closed=closed.append)

    listener = up_rt.listen((world.host(up_rt), 0), factory)
    slow = StreamRecorder()
    peer_rt.connect(listener.address, slow)
    assert world.run_until(lambda: slow.stream is not None, 20)
    assert slow.stream is not None
    slow.stream.write(b"GNUTELLA CONNECT/0.6\r\n")
    assert world.run_until(lambda: bool(closed), 20)
    assert isinstance(closed[0], RemoteProtocolError) and closed[0].code == 408
