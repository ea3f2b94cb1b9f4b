"""One DHT node, queried with hand-made datagrams, and a few nodes together:
the same bodies on 127.0.0.1 and in the simulator."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import pytest
from dhtkit import WAIT_S, RawClient, nid, start_node, top, wait_for

from peerlab.errors import ConfigError
from peerlab.overlays.dht import DhtConfig, DhtNode
from peerlab.overlays.dht.node import VERSION
from peerlab.overlays.dht.routing import GOOD_WINDOW_S
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import SimWorld, World
from peerlab.wire import krpc
from peerlab.wire.bencode import encode as bencode
from peerlab.wire.krpc import (
    AnnouncePeer,
    FindNode,
    GetPeers,
    KrpcError,
    Ping,
    Query,
    Response,
    decode,
    encode,
)

ME = b"abcdefghij0123456789"  # the raw client's id (BEP 5's example id)
IH = b"mnopqrstuvwxyz123456"


def test_node_answers_the_four_queries_on_the_wire(world: World) -> None:
    node, _, obs = start_node(world, "node", node_id=top(0x42))
    raw = RawClient(world)
    to = node.address
    assert to is not None
    ip = krpc.encode_compact_peer(raw.address)
    # ping: BEP 5's example query, answered with our id, BEP 42's ip and our version.
    reply = raw.ask(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", to)
    assert reply == (b"d2:ip6:" + ip + b"1:rd2:id20:" + top(0x42) + b"e1:t2:aa1:v4:"
                     + VERSION + b"1:y1:re")  # fmt: skip
    # find_node on an empty table: an empty node list.
    reply = raw.ask(encode(Query(b"ab", FindNode(ME, IH))), to)
    assert decode(reply) == Response(b"ab", top(0x42), nodes=(), ip=raw.address, version=VERSION)
    # get_peers: a token, no values yet.
    got = decode(raw.ask(encode(Query(b"ac", GetPeers(ME, IH))), to))
    assert isinstance(got, Response) and got.values is None and got.token
    token = got.token
    # announce_peer with it: stored under the querying IP and the given port.
    got = decode(raw.ask(encode(Query(b"ad", AnnouncePeer(ME, IH, 7001, token))), to))
    assert got == Response(b"ad", top(0x42), ip=raw.address, version=VERSION)
    # implied_port: the UDP source port is stored instead.
    raw.ask(encode(Query(b"ae", AnnouncePeer(ME, IH, 9, token, implied_port=True))), to)
    got = decode(raw.ask(encode(Query(b"af", GetPeers(ME, IH))), to))
    assert isinstance(got, Response) and got.values is not None
    assert sorted(got.values) == sorted([(raw.address[0], 7001), raw.address])
    assert obs.counters["dht.peers_stored"] == 2
    assert obs.counters["dht.queries_received.announce_peer"] == 2


def test_node_answers_errors_203_and_204(world: World) -> None:
    node, _, obs = start_node(world, "node", node_id=top(0x42))
    raw = RawClient(world)
    to = node.address
    assert to is not None
    bad = decode(raw.ask(encode(Query(b"ba", AnnouncePeer(ME, IH, 7001, b"forged"))), to))
    assert bad == KrpcError(b"ba", 203, "bad token", VERSION)
    unknown = bencode({b"t": b"bb", b"y": b"q", b"q": b"sample_infohashes",
                       b"a": {b"id": ME, b"target": IH}})  # fmt: skip
    assert decode(raw.ask(unknown, to)) == KrpcError(b"bb", 204, "Method Unknown", VERSION)
    # A malformed query whose t can be read: 203.
    got = decode(raw.ask(b"d1:ad2:id3:abce1:q4:ping1:t2:bc1:y1:qe", to))
    assert isinstance(got, KrpcError) and got.code == 203 and got.transaction_id == b"bc"
    # Garbage without a transaction id: no answer at all, the node carries on.
    raw.send(b"\xff\x00garbage", to)
    raw.send(b"d1:y1:qe", to)
    reply = raw.ask(encode(Query(b"bd", Ping(ME))), to)
    assert decode(reply).transaction_id == b"bd"
    assert obs.counters["dht.garbage"] == 3
    assert obs.counters["dht.bad_tokens"] == 1
    assert obs.counters["dht.errors_sent"] == 3
    assert obs.counters["dht.handler_errors"] == 0


def test_queries_beyond_the_rate_limit_are_dropped(world: World) -> None:
    node, _, obs = start_node(world, "node", query_rate=0.001, query_burst=3)
    raw = RawClient(world)
    to = node.address
    assert to is not None
    for i in range(6):
        raw.send(encode(Query(bytes([0x70, i]), Ping(ME))), to)
    world.run_until(lambda: obs.counters["dht.rate_limited"] >= 3, WAIT_S)
    world.run_for(0.2)
    answers = [decode(d) for d in raw.replies()]
    tids = sorted(m.transaction_id for m in answers if isinstance(m, Response))
    assert tids == [b"\x70\x00", b"\x70\x01", b"\x70\x02"]
    assert obs.counters["dht.rate_limited"] == 3
    assert obs.counters["dht.responses_sent"] == 3


def test_a_stranger_that_queries_is_verified_with_a_ping(world: World) -> None:
    node, _, obs = start_node(world, "node")
    raw = RawClient(world)
    assert node.address is not None
    raw.ask(encode(Query(b"ca", Ping(ME))), node.address)
    # The node pings back before it trusts us (BEP 5: only nodes that answer
    # enter the table).
    assert world.run_until(lambda: len(raw.replies()) >= 2, WAIT_S)
    ping = decode(raw.replies()[1])
    assert isinstance(ping, Query) and isinstance(ping.arguments, Ping)
    assert ping.arguments.id == node.node_id and len(ping.transaction_id) == 2
    assert len(node.routing_table) == 0
    raw.send(encode(Response(ping.transaction_id, ME)), node.address)
    assert world.run_until(lambda: len(node.routing_table) == 1, WAIT_S)
    entry = node.routing_table.find(ME)
    assert entry is not None and entry.address == raw.address
    assert obs.counters["dht.verify_pings"] == 1
    # An answer from elsewhere with a used transaction id is not an answer.
    assert obs.counters["dht.replies_wrong_address"] == 0


def test_two_nodes_know_each_other_after_bootstrap(world: World) -> None:
    a, _, obs_a = start_node(world, "a")
    b, _, obs_b = start_node(world, "b")
    a_addr = a.address
    assert a_addr is not None
    result = wait_for(world, lambda done: b.bootstrap([a_addr], done))
    assert result.responses == 1 and result.nodes[0].id == a.node_id
    assert b.routing_table.find(a.node_id) is not None
    assert world.run_until(lambda: a.routing_table.find(b.node_id) is not None, WAIT_S)
    assert a.stats().routing.good == 1 and b.stats().routing.good == 1
    assert obs_a.counters["dht.queries_received.find_node"] == 1
    assert obs_b.counters["dht.queries_sent.find_node"] == 1


def test_unanswered_lookup_ends_with_its_timeouts(world: World) -> None:
    """A bootstrap address where nobody listens: the lookup fails and ends."""
    node, _, obs = start_node(world, "node", query_timeout=0.5, query_stall=0.2)
    dead = RawClient(world, "dead")
    dead_addr = dead.address
    dead.endpoint.close()
    result = wait_for(world, lambda done: node.bootstrap([dead_addr], done))
    assert result.responses == 0 and result.timeouts == 1 and result.nodes == ()
    assert obs.counters["dht.timeouts"] == 1


def test_no_callback_after_close(world: World) -> None:
    a, _, _ = start_node(world, "a")
    b, _, _ = start_node(world, "b")
    assert a.address is not None
    called: list[object] = []
    b.get_peers(IH, called.append, called.append)
    b.close()
    world.run_for(0.3)
    assert called == []
    assert b.address is not None  # the endpoint is closed, the address remembered


def test_routing_table_survives_a_restart(world: World, tmp_path: Path) -> None:
    state = str(tmp_path / "dht.state")
    hub, _, _ = start_node(world, "hub")
    others = [start_node(world, f"o{i}")[0] for i in range(3)]
    hub_addr = hub.address
    assert hub_addr is not None
    for o in others:
        wait_for(world, partial(lambda o, done: o.bootstrap([hub_addr], done), o))
    node, _, _ = start_node(world, "node", state_path=state)
    wait_for(world, lambda done: node.bootstrap([hub_addr], done))
    assert world.run_until(lambda: len(node.routing_table) == 4, WAIT_S)
    first_id = node.node_id
    node.close()
    assert Path(state).is_file()
    # A new node on the same file: same id, and it joins without being told
    # any address, through the nodes it saved.
    again, _, obs = start_node(world, "again", state_path=state)
    assert again.node_id == first_id
    assert obs.named("dht.state_loaded") == [{"nodes": 4}]
    assert world.run_until(lambda: len(again.routing_table) == 4, WAIT_S)


def test_questionable_node_is_pinged_twice_then_replaced(sim: SimWorld) -> None:
    """k = 1 makes one node fill a bucket.  After 15 minutes of silence the
    node in the far half is questionable; a newcomer for that bucket makes
    our node ping it, twice (BEP 5: "try once more"), and then replace it."""
    node, _, obs = start_node(sim, "node", node_id=nid(0), k=1, query_timeout=2.0,
                              query_stall=1.0, maintenance_interval=10_000.0)  # fmt: skip
    old, _, _ = start_node(sim, "old", node_id=top(0x80))
    new, _, _ = start_node(sim, "new", node_id=top(0xC0))
    old_addr, new_addr = old.address, new.address
    assert old_addr is not None and new_addr is not None
    wait_for(sim, lambda done: node.bootstrap([old_addr], done))
    assert node.routing_table.find(top(0x80)) is not None
    old.close()
    sim.run_for(GOOD_WINDOW_S + 1)
    # The newcomer answers a query of ours: it is cached, the old one pinged.
    node.add_node(new_addr)
    assert sim.run_until(lambda: node.routing_table.find(top(0x80)) is None, 10.0)
    entry = node.routing_table.find(top(0xC0))
    assert entry is not None and entry.live
    assert obs.counters["dht.questionable_pings"] == 2
    assert obs.counters["dht.timeouts"] == 2
    assert obs.counters["dht.nodes_replaced"] == 1


def test_config_is_checked() -> None:
    for bad in ({"node_id": b"short"}, {"k": 0}, {"query_stall": 9.0, "query_timeout": 1.0},
                {"port": 70000}):  # fmt: skip
        with pytest.raises(ConfigError):
            DhtConfig(**bad)
    idle = DhtNode(SimWorld().new_runtime("x"))
    assert idle.address is None and idle.stats().routing.nodes == 0
    assert RecordingObserver().counters["x"] == 0


def test_seeded_garbage_costs_only_itself(sim: SimWorld) -> None:
    """A stranger sends 400 damaged queries and answers (answers with the
    transaction ids the node waits on, too): each costs only itself; the
    node still answers, and nothing reached the handler-error path."""
    node, _, obs = start_node(sim, "node", query_rate=1e6, query_burst=1e6)
    raw = RawClient(sim)
    to = node.address
    assert to is not None
    rng = random.Random(99)
    peer_node = krpc.NodeInfo(top(0x11), ("10.9.9.9", 6881))
    for i in range(400):
        # Make the node wait for an answer from us: it verifies strangers.
        before = len(raw.replies())
        raw.send(encode(Query(b"g" + bytes([i % 256]), Ping(nid(i + 1)))), to)
        sim.run_for(0.05)
        pings = [decode(d) for d in raw.replies()[before:]]
        tids = [m.transaction_id for m in pings if isinstance(m, Query)] or [b"zz"]
        choices: list[krpc.Message] = [
            Response(tids[0], nid(i + 1), nodes=(peer_node,) * rng.randrange(9),
                     values=(("10.1.1.1", 1),) * rng.randrange(5), token=b"t"),
            Query(tids[0], AnnouncePeer(nid(i + 1), IH, 6881, b"x" * rng.randrange(20))),
            Query(tids[0], FindNode(nid(i + 1), IH)),
            KrpcError(tids[0], 201, "x"),
        ]  # fmt: skip
        good = rng.choice(choices)
        data = bytearray(encode(good))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        raw.send(bytes(data[: rng.randrange(len(data) + 1)]), to)
        sim.run_for(0.05)
    assert decode(raw.ask(encode(Query(b"ok", Ping(ME))), to)).transaction_id == b"ok"
    assert obs.counters["dht.garbage"] > 100
    assert obs.counters["dht.handler_errors"] == 0
    assert len(node.routing_table) <= 8 * 160
