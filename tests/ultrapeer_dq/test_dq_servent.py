"""Dynamic querying in the servent, on 127.0.0.1 and in the simulator: an
ultrapeer runs its leaf's query (and its own) connection by connection,
asks the leaf for its kept results (``BEAR/11``), and a leaf answers
(``BEAR/12``)."""

from __future__ import annotations

from typing import Any

from gnetkit import WAIT, Node, RawPeer, close_all, make_file, new_node

from peerlab.overlays.gnutella.dynquery import STATUS_STOP, DqSettings
from peerlab.proto.gnutella import DescriptorReceived
from peerlab.runtime.worlds import World
from peerlab.wire.gnutella import (
    QUERY,
    QUERY_HIT,
    VENDOR,
    Query,
    QueryHit,
    QueryStatusRequest,
    QueryStatusResponse,
    decode_payload,
    decode_vendor,
    encode_vendor,
)

#: Quick waits (the spec's 2.4 s per hop would make a slow real-socket test);
#: TTL 2 at most: the neighbours have no neighbours of their own.
FAST = DqSettings(wait_per_hop=0.3, probe_extra_per_connection=0.1, max_ttl=2)
PEERS = 8
LEAF_HEADERS = [("User-Agent", "rawleaf/1"), ("X-Ultrapeer", "False")]
UP_HEADERS = [("User-Agent", "rawup/1"), ("X-Ultrapeer", "True")]


def star(world: World, role: str = "ultrapeer") -> tuple[Node, list[Node]]:
    """An ultrapeer U with PEERS ultrapeer neighbours, one matching file each
    (``role="auto"``: flat servents, as in issue 4)."""
    up = new_node(world, "up", dynamic_query=FAST, role=role)
    peers = [new_node(world, f"s{i}", [make_file(1, f"linkin park track {i}.mp3")], role=role)
             for i in range(PEERS)]  # fmt: skip
    for p in peers:
        assert p.servent.connect(up.address)
    assert world.run_until(lambda: up.servent.open_count == PEERS, WAIT)
    return up, peers


def got_query(peers: list[Node]) -> list[Node]:
    return [p for p in peers if p.servent.counters["rx.query"] > 0]


def descriptors(raw: RawPeer, ptype: int) -> list[DescriptorReceived]:
    return [
        ev for ev in raw.events
        if isinstance(ev, DescriptorReceived) and ev.header.payload_type == ptype
    ]  # fmt: skip


def vendor_bodies(raw: RawPeer) -> list[tuple[bytes, Any]]:
    out = []
    for ev in descriptors(raw, VENDOR):
        vm = decode_payload(VENDOR, ev.payload)
        out.append((ev.header.guid, decode_vendor(vm)))  # type: ignore[arg-type]
    return out


def test_a_leafs_query_is_probed_then_widened(world: World) -> None:
    up, peers = star(world)
    leaf = RawPeer(world, "leaf", up.address, LEAF_HEADERS)
    leaf.wait_open()
    assert world.run_until(lambda: up.servent.open_count == PEERS + 1, WAIT)
    guid = bytes(range(16))
    leaf.send(Query("linkin park", 0), guid, ttl=4)

    # The probe: three connections at once, at TTL 2 -- not the flood to all.
    assert world.run_until(lambda: len(got_query(peers)) >= 3, WAIT)
    assert len(got_query(peers)) == 3
    assert up.servent.counters["dq.started"] == 1
    # Then one connection per iteration until none is left (8 results < 50).
    assert world.run_until(
        lambda: up.servent.counters["dq.finished.no_connections"] == 1, WAIT * 2
    )
    assert len(got_query(peers)) == PEERS
    assert up.servent.counters["dq.sent"] == PEERS
    assert up.servent.counters["dq.iterations"] == PEERS - 3
    # Every hit reached the leaf, and the leaf was asked how many it kept.
    assert world.run_until(lambda: len(descriptors(leaf, QUERY_HIT)) == PEERS, WAIT)
    asks = [(g, b) for g, b in vendor_bodies(leaf) if isinstance(b, QueryStatusRequest)]
    assert asks and all(g == guid for g, _ in asks)
    # Nothing was flooded the classic way by U: each peer saw the query once.
    assert all(p.servent.counters["rx.query"] == 1 for p in peers)
    leaf.close()
    close_all(world, [up, *peers])


def test_the_leaf_stops_its_query_with_status_65535(world: World) -> None:
    up, peers = star(world)
    leaf = RawPeer(world, "leaf", up.address, LEAF_HEADERS)
    leaf.wait_open()
    assert world.run_until(lambda: up.servent.open_count == PEERS + 1, WAIT)
    guid = bytes(range(1, 17))
    leaf.send(Query("linkin park", 0), guid, ttl=4)
    assert world.run_until(lambda: up.servent.counters["dq.status_requests"] >= 1, WAIT)
    leaf.send(encode_vendor(QueryStatusResponse(STATUS_STOP)), guid, ttl=1)
    assert world.run_until(lambda: up.servent.counters["dq.finished.leaf_stopped"] == 1, WAIT)
    sent = up.servent.counters["dq.sent"]
    world.run_for(2.0)
    assert up.servent.counters["dq.sent"] == sent < PEERS
    assert len(got_query(peers)) == sent
    leaf.close()
    close_all(world, [up, *peers])


def test_an_ultrapeers_own_search_is_dynamic_and_reaches_matching_leaves(world: World) -> None:
    up, peers = star(world)
    leaf = new_node(world, "leaf", [make_file(2, "linkin park live.mp3")], role="leaf")
    other = new_node(world, "other", [make_file(2, "something else.mp3")], role="leaf")
    assert leaf.servent.connect(up.address) and other.servent.connect(up.address)
    assert world.run_until(lambda: len(up.servent.tier.leaf_tables) == 2, WAIT)
    search = up.servent.search("linkin park")
    # The matching leaf gets it (last hop, by its QRP table), the other not;
    # the ultrapeers get a probe first, then one connection at a time.
    assert world.run_until(lambda: search.hits == PEERS + 1, WAIT * 2)
    assert leaf.servent.counters["rx.query"] == 1
    assert other.servent.counters["rx.query"] == 0
    assert up.servent.counters["queries.to_leaves"] == 1
    assert up.servent.counters["queries.leaf_blocked"] == 1
    assert up.servent.counters["dq.started"] == 1
    assert up.servent.counters["dq.sent"] == PEERS
    close_all(world, [up, *peers, leaf, other])


def test_a_flat_servent_still_floods(world: World) -> None:
    """No leaves: the classic flood, every neighbour at once (issue 4's network)."""
    up, peers = star(world, role="auto")
    search = up.servent.search("linkin park", ttl=2)
    assert world.run_until(lambda: search.hits == PEERS, WAIT)
    assert up.servent.counters["dq.started"] == 0
    close_all(world, [up, *peers])


def test_a_leaf_answers_query_status(world: World) -> None:
    node = new_node(world, "leafnode")
    up = RawPeer(world, "rawup", node.address, UP_HEADERS)
    up.wait_open()
    assert world.run_until(lambda: node.servent.open_count == 1, WAIT)
    search = node.servent.search("anything")
    assert world.run_until(lambda: len(descriptors(up, QUERY)) == 1, WAIT)
    guid = descriptors(up, QUERY)[0].header.guid
    up.send(encode_vendor(QueryStatusRequest()), guid, ttl=1)
    assert world.run_until(
        lambda: any(isinstance(b, QueryStatusResponse) for _, b in vendor_bodies(up)), WAIT
    )
    # A hit arrives; then the user cancels: the next answer says stop.
    hit = QueryHit(6346, "192.0.2.1", 100, (), bytes(16))
    up.send(hit, guid, ttl=3)
    search.cancel()
    up.send(encode_vendor(QueryStatusRequest()), guid, ttl=1)
    assert world.run_until(
        lambda: sum(isinstance(b, QueryStatusResponse) for _, b in vendor_bodies(up)) == 2, WAIT
    )
    answers = [b.kept for g, b in vendor_bodies(up) if isinstance(b, QueryStatusResponse)]
    assert answers == [0, STATUS_STOP]
    assert all(g == guid for g, b in vendor_bodies(up))
    up.close()
    close_all(world, [node])


def test_a_leaf_servents_search_is_run_by_its_ultrapeer(world: World) -> None:
    """Leaf and ultrapeer both peerlab: the leaf searches, its ultrapeer runs
    the dynamic query and asks, the leaf answers with its kept results."""
    up, peers = star(world)
    leaf = new_node(world, "leaf", role="leaf")
    assert leaf.servent.connect(up.address)
    assert world.run_until(lambda: len(up.servent.tier.leaf_tables) == 1, WAIT)
    search = leaf.servent.search("linkin park")
    assert world.run_until(lambda: search.hits == PEERS, WAIT * 2)
    assert up.servent.counters["dq.started"] == 1
    assert world.run_until(lambda: up.servent.counters["dq.status_responses"] >= 1, WAIT)
    assert leaf.servent.counters["dq.status_answered"] >= 1
    # The leaf itself ran no dynamic query and forwarded nothing.
    assert leaf.servent.counters["dq.started"] == 0
    assert all(p.servent.counters["rx.query"] == 1 for p in peers)
    close_all(world, [up, *peers, leaf])
