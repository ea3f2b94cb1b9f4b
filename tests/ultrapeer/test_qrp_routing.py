"""Leaves under an ultrapeer, routed to by QRP (ultra-peers 2, QRP,
ultrapeer_qrp): on 127.0.0.1 and in the simulator."""

from __future__ import annotations

from gnetkit import WAIT, close_all, hits_at_least, internal_errors, link
from upkit import attach, count, files_for, leaf, ultrapeer

from peerlab.wire.gnutella import Query


def test_a_query_reaches_only_the_leaves_whose_table_matches(world) -> None:  # type: ignore[no-untyped-def]
    up = ultrapeer(world, "up")
    leaves = [
        leaf(world, "leafA", files_for("alpha", ["sunrise"])),
        leaf(world, "leafB", files_for("bravo", ["sunset"])),
        leaf(world, "leafC", files_for("charlie", ["midnight"])),
    ]
    for lf in leaves:
        attach(world, lf, up)
    other = ultrapeer(world, "other")  # the searcher: an ultrapeer neighbour
    link(world, other, up)
    nodes = [up, other, *leaves]
    try:
        assert up.servent.role == "ultrapeer" and leaves[0].servent.role == "leaf"
        assert len(up.servent.leaf_links()) == 3
        assert len(up.servent.ultrapeer_links()) == 1
        assert all(info.role == "leaf" for info in up.servent.leaf_links())
        # compression on leaf links, both ways
        assert all(i.deflate_in and i.deflate_out for i in up.servent.leaf_links())
        # the ultrapeer knows each leaf's table
        ids = {lf.name: lf for lf in leaves}
        by_id = {i.id: i for i in up.servent.leaf_links()}
        assert set(by_id) == set(up.servent.tier.leaf_tables)
        assert sum(up.servent.qrp_matches(i, Query("sunrise")) for i in by_id) == 1

        search = other.servent.search("alpha sunrise")
        assert world.run_until(hits_at_least(search, 1), WAIT)
        world.run_for(1.0)
        assert count(up, "queries.to_leaves") == 1
        assert count(up, "queries.leaf_blocked") == 2
        assert count(ids["leafA"], "rx.query") == 1
        assert count(ids["leafB"], "rx.query") == 0
        assert count(ids["leafC"], "rx.query") == 0
        # the hit came from leaf A, routed back through the ultrapeer
        result = next(iter(search.results.values()))
        assert "alpha sunrise" in result.name
        assert result.sources[0].address == ids["leafA"].address

        # a leaf's own search: its ultrapeer floods it and routes by QRP
        s2 = ids["leafB"].servent.search("charlie")
        assert world.run_until(hits_at_least(s2, 1), WAIT)
        world.run_for(0.5)
        assert count(up, "queries.to_leaves") == 2
        assert count(ids["leafA"], "rx.query") == 1  # not sent to A again
        assert count(ids["leafB"], "rx.query") == 0  # a leaf never gets its own query
        assert count(other, "rx.query") == 1  # flooded to the ultrapeer neighbour
        assert count(ids["leafC"], "tx.query") == 0  # leaves forward nothing
        assert internal_errors(nodes) == 0
    finally:
        close_all(world, nodes)


def test_last_hop_uses_the_merged_table_of_an_ultrapeer(world) -> None:  # type: ignore[no-untyped-def]
    """ultrapeer_qrp: a query that would arrive with TTL 1 goes only to an
    ultrapeer whose merged table (its leaves and itself) matches."""
    a = ultrapeer(world, "upA")
    b = ultrapeer(world, "upB", files_for("bee", ["hive"]))
    c = ultrapeer(world, "upC")
    lf = leaf(world, "leafC", files_for("sea", ["coral"]))
    attach(world, lf, c)
    link(world, a, b)
    link(world, a, c)
    nodes = [a, b, c, lf]
    try:
        # the merged tables reached A
        assert world.run_until(lambda: len(a.servent.tier.up_tables) == 2, WAIT)
        s = a.servent.search("coral", ttl=1)
        assert world.run_until(hits_at_least(s, 1), WAIT)
        world.run_for(0.5)
        assert count(a, "queries.last_hop_blocked") == 0  # own searches go to every link
        # B forwards a TTL-2 query to A's neighbours... use B as searcher
        s2 = b.servent.search("coral", ttl=2)
        assert world.run_until(hits_at_least(s2, 1), WAIT)
        s3 = b.servent.search("nothing here", ttl=2)
        world.run_for(1.0)
        assert s3.hits == 0
        # A passed "coral" to C (its table matches) and withheld "nothing here"
        assert count(a, "queries.last_hop_blocked") == 1
        assert count(c, "rx.query") == 2
        assert internal_errors(nodes) == 0
    finally:
        close_all(world, nodes)


def test_ultrapeers_hits_and_pings_do_not_flood_leaves(world) -> None:  # type: ignore[no-untyped-def]
    up = ultrapeer(world, "up", pong_caching=False)
    lf = leaf(world, "leaf", files_for("x", ["y"]), pong_caching=False)
    attach(world, lf, up)
    other = ultrapeer(world, "other", pong_caching=False)
    link(world, other, up)
    try:
        before = count(lf, "rx.ping")
        other.servent.ping(ttl=3)
        world.run_for(1.0)
        assert count(up, "rx.ping") >= 1
        assert count(lf, "rx.ping") == before
        assert lf.servent.connections()[0].role == "ultrapeer"  # the peer's role
        assert count(lf, "routed.ping") == 0
    finally:
        close_all(world, [up, lf, other])
