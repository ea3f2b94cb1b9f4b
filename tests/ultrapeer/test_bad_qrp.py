"""A leaf sending bad QRP input to an ultrapeer: refused, bounded, counted;
it costs that leaf's routing (and, repeated, its connection), nothing else."""

from __future__ import annotations

import zlib

from gnetkit import WAIT, RawPeer, close_all, hits_at_least, internal_errors, link
from upkit import count, files_for, ultrapeer

from peerlab.wire.gnutella import Bye, Query
from peerlab.wire.qrp import (
    COMPRESSOR_NONE,
    COMPRESSOR_ZLIB,
    PatchTable,
    QueryRouteTable,
    ResetTable,
    make_update,
)

LEAF_HEADERS = [("User-Agent", "rawleaf/1"), ("X-Ultrapeer", "False"),
                ("X-Query-Routing", "0.2")]  # fmt: skip


def guid(n: int) -> bytes:
    return bytes([n]) * 15 + b"\x00"


def test_bad_tables_are_refused_and_counted(world) -> None:  # type: ignore[no-untyped-def]
    up = ultrapeer(world, "up", max_qrp_table_length=1 << 16)
    other = ultrapeer(world, "other", files_for("o", ["z"]))
    link(world, other, up)
    raw = RawPeer(world, "rawleaf", up.address, LEAF_HEADERS)
    raw.wait_open()
    try:
        assert world.run_until(lambda: len(up.servent.leaf_links()) == 1, WAIT)
        leaf_id = up.servent.leaf_links()[0].id
        n = 0

        def send(msg: object) -> None:
            nonlocal n
            n += 1
            raw.send(msg, guid(n), ttl=1)

        # 1. a table longer than allowed
        send(ResetTable(1 << 17, 7))
        # 2. a PATCH with no RESET before it (the oversized one was dropped)
        send(PatchTable(1, 1, COMPRESSOR_NONE, 8, bytes(64)))
        # 3. a table claiming every keyword
        send(ResetTable(1024, 7))
        send(PatchTable(1, 1, COMPRESSOR_NONE, 8, bytes([0xFA]) * 1024))
        # 4. out of sequence: 1 of 2, then 3 of 2
        send(ResetTable(1024, 7))
        data = zlib.compress(bytes(512))
        send(PatchTable(1, 2, COMPRESSOR_ZLIB, 4, data[:4]))
        send(PatchTable(3, 2, COMPRESSOR_ZLIB, 4, data[4:]))
        # 5. a zip bomb: far more inflated bytes than the table holds
        send(ResetTable(1024, 7))
        send(PatchTable(1, 1, COMPRESSOR_ZLIB, 4, zlib.compress(bytes(1_000_000))))

        def refused() -> int:
            return up.servent.counters.total("qrp.refused.")

        assert world.run_until(lambda: refused() >= 5, WAIT)
        assert count(up, "qrp.refused.too_large") == 2
        assert count(up, "qrp.refused.sequence") == 2
        assert count(up, "qrp.refused.full") == 1
        assert count(up, "qrp.tables_received") == len(up.servent.tier.up_tables)  # only other's
        assert leaf_id not in up.servent.tier.leaf_tables
        assert count(up, "dropped.bad_descriptor") == 5
        assert raw.machine.is_open  # refused, not cut

        # without a table the leaf is sent no query
        s = other.servent.search("anything")
        world.run_for(1.0)
        assert count(up, "queries.leaf_no_table") == 1
        assert not raw.received(Query)

        # a good table afterwards routes again
        table = QueryRouteTable.from_keywords(["anything"], 1024)
        for msg in make_update(table):
            send(msg)
        assert world.run_until(lambda: leaf_id in up.servent.tier.leaf_tables, WAIT)
        other.servent.search("anything")
        assert world.run_until(lambda: bool(raw.received(Query)), WAIT)
        assert count(up, "queries.to_leaves") == 1
        assert s.hits == 0
        assert internal_errors([up, other]) == 0
    finally:
        raw.close()
        close_all(world, [up, other])


def test_a_leaf_repeating_bad_tables_is_cut(world) -> None:  # type: ignore[no-untyped-def]
    up = ultrapeer(world, "up", max_bad_descriptors=5)
    raw = RawPeer(world, "rawleaf", up.address, LEAF_HEADERS)
    raw.wait_open()
    try:
        for i in range(8):
            raw.send(PatchTable(1, 1, COMPRESSOR_NONE, 8, b""), guid(i + 1), ttl=1)
        assert world.run_until(lambda: bool(raw.closed), WAIT)
        assert count(up, "qrp.refused.sequence") == 6
        assert count(up, "bye_sent.402") == 1
        assert any(isinstance(getattr(ev, "message", None), Bye) for ev in raw.events)
        assert not up.servent.leaf_links()
    finally:
        raw.close()
        close_all(world, [up])


def test_a_hit_from_a_leaf_needs_no_table(world) -> None:  # type: ignore[no-untyped-def]
    """Sanity: the ultrapeer's own shares answer even with no leaf at all."""
    up = ultrapeer(world, "up", files_for("own", ["file"]))
    other = ultrapeer(world, "other")
    link(world, other, up)
    try:
        s = other.servent.search("own file")
        assert world.run_until(hits_at_least(s, 1), WAIT)
    finally:
        close_all(world, [up, other])


def test_a_leaf_without_qrp_gets_every_query(world) -> None:  # type: ignore[no-untyped-def]
    """An old leaf announcing no X-Query-Routing cannot be routed to: it is
    sent every query rather than starved."""
    up = ultrapeer(world, "up")
    other = ultrapeer(world, "other")
    link(world, other, up)
    assert world.run_until(lambda: len(other.servent.tier.up_tables) == 1, WAIT)
    raw = RawPeer(world, "oldleaf", up.address, [("User-Agent", "old/1"), ("X-Ultrapeer", "False")])
    raw.wait_open()
    try:
        assert world.run_until(lambda: len(up.servent.leaf_links()) == 1, WAIT)
        # up's merged table cannot show that leaf: it withdraws it (a RESET)
        assert world.run_until(lambda: not other.servent.tier.up_tables, WAIT)
        other.servent.search("whatever it is")
        assert world.run_until(lambda: bool(raw.received(Query)), WAIT)
        assert count(up, "queries.to_unrouted_leaves") == 1
        assert count(up, "queries.leaf_no_table") == 0
    finally:
        raw.close()
        close_all(world, [up, other])
