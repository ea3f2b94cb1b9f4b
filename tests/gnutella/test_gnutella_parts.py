"""The servent's parts on their own: routing tables and TTL rules, flow
control queues, the host cache and its file, the pong cache, query answering
and hit grouping, the GWebCache response reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gnetkit import make_file

from peerlab.errors import ConfigError, StorageError
from peerlab.overlays.gnutella.flow import OutgoingQueue, Queued, priority
from peerlab.overlays.gnutella.gwebcache import parse_cache_url, parse_response
from peerlab.overlays.gnutella.hostcache import MAX_FAILURES, HostCache, usable_address
from peerlab.overlays.gnutella.pongcache import CachedPong, PingDemand, PongCache
from peerlab.overlays.gnutella.router import (
    LOCAL,
    MAX_TTL,
    RouteTable,
    admit_ttl,
    forward_fields,
    reply_fields,
)
from peerlab.overlays.gnutella.search import HitIdentity, Search, build_query_hits
from peerlab.overlays.gnutella.servent import ServentConfig
from peerlab.wire.gnutella import (
    PING,
    PONG,
    QUERY,
    QUERY_HIT,
    Query,
    QueryFlags,
    QueryHit,
    QueryHitResult,
    decode_payload,
    encode_payload,
    parse_xml_records,
)
from peerlab.wire.urn import sha1_urn

G = [bytes([i]) * 16 for i in range(256)]


# ------------------------------------------------------------------ router


def test_route_table_duplicates_and_expiry() -> None:
    t = RouteTable(lifetime=10.0, max_entries=100)
    assert t.add(G[1], 5, now=0.0)
    assert not t.add(G[1], 6, now=1.0), "a GUID seen before is a duplicate"
    assert t.get(G[1], now=9.0) == 5
    # After one lifetime it moved to the previous generation: still known.
    assert t.get(G[1], now=15.0) == 5
    assert not t.add(G[1], 7, now=15.0)
    # Gone once two lifetimes passed.
    assert t.get(G[1], now=31.0) is None
    assert t.add(G[1], 8, now=31.0)


def test_route_table_is_bounded_whatever_is_added() -> None:
    t = RouteTable(lifetime=1000.0, max_entries=100)
    for i in range(10_000):
        t.add(i.to_bytes(16, "big"), 1, now=0.0)
        assert len(t) <= 100
    assert t.evicted >= 10_000 - 100
    # The newest are still known, the oldest forgotten.
    assert t.get((9999).to_bytes(16, "big"), 0.0) == 1
    assert t.get((0).to_bytes(16, "big"), 0.0) is None


def test_route_table_put_replaces_and_forget_route() -> None:
    t = RouteTable(lifetime=10.0, max_entries=10)
    t.put(G[2], 1, 0.0)
    t.put(G[2], 3, 1.0)
    assert t.get(G[2], 1.0) == 3
    t.put(G[3], 3, 1.0)
    t.put(G[4], LOCAL, 1.0)
    assert t.forget_route(3) == 2
    assert t.get(G[2], 1.0) is None and t.get(G[4], 1.0) == LOCAL


def test_ttl_rules() -> None:
    assert admit_ttl(0, 0) is None, "TTL 0 on arrival is dropped"
    assert admit_ttl(3, 2) == (3, False)
    assert admit_ttl(7, 3) == (MAX_TTL - 3, True), "hops + TTL above the cap is trimmed"
    assert admit_ttl(5, MAX_TTL) is None
    assert forward_fields(1, 0) is None, "TTL 1: the last hop"
    assert forward_fields(3, 1) == (2, 2)
    assert reply_fields(1, 3) == (1, 4), "a routed reply keeps TTL >= 1"
    assert reply_fields(5, 14) is None


# -------------------------------------------------------------------- flow


def q(ptype: int, hops: int = 0, size: int = 100, tag: int = 0) -> Queued:
    return Queued(G[tag], ptype, 3, hops, bytes(size))


def test_queue_sends_by_priority_oldest_first() -> None:
    queue = OutgoingQueue()
    order = [q(QUERY, 3, tag=1), q(QUERY, 0, tag=2), q(QUERY_HIT, tag=3), q(PING, tag=4),
             q(PONG, tag=5), q(QUERY_HIT, tag=6)]  # fmt: skip
    for item in order:
        assert queue.push(item) == []
    got = []
    while (sent := queue.pop()) is not None:
        got.append(sent.guid[0])
    assert got == [4, 5, 3, 6, 2, 1]
    assert priority(QUERY, 2) > priority(QUERY, 1) > priority(QUERY_HIT, 0)


def test_queue_drops_rather_than_grows() -> None:
    size = 100 + 23
    queue = OutgoingQueue(max_bytes=10 * size, max_messages=1000)
    for i in range(10):
        assert queue.push(q(QUERY, 5, tag=i)) == []
    # A hit is worth more: the newest far-travelled query makes room.
    dropped = queue.push(q(QUERY_HIT, tag=100))
    assert [d.guid[0] for d in dropped] == [9]
    # A query of the same worth as everything queued is itself dropped.
    new = q(QUERY, 5, tag=101)
    assert queue.push(new) == [new]
    # Our own query (hops 0) beats the forwarded ones.
    assert [d.guid[0] for d in queue.push(q(QUERY, 0, tag=102))] == [8]
    assert queue.bytes <= 10 * size and len(queue) == 10
    # Nothing queued is worth less than a ping? Then the ping replaces a query.
    for i in range(50):
        queue.push(q(PING, tag=i))
        assert queue.bytes <= 10 * size
    assert all(item.payload_type == PING for item in queue.clear())
    assert queue.bytes == 0 and len(queue) == 0


def test_queue_message_bound() -> None:
    queue = OutgoingQueue(max_bytes=1 << 30, max_messages=5)
    for i in range(20):
        queue.push(q(QUERY, i % 3, size=1, tag=i))
        assert len(queue) <= 5


# -------------------------------------------------------------- host cache


def test_usable_addresses() -> None:
    assert usable_address(("127.0.0.1", 6346)) and usable_address(("10.0.0.3", 1))
    for bad in [("0.0.0.0", 6346), ("224.0.0.1", 1), ("1.2.3", 5), ("1.2.3.4", 0),
                ("a.b.c.d", 1), ("1.2.3.256", 1), ("::1", 6346)]:  # fmt: skip
        assert not usable_address(bad), bad


def test_host_cache_order_bound_and_backoff() -> None:
    hc = HostCache(max_hosts=3)
    for i in range(1, 5):
        assert hc.add((f"10.0.0.{i}", 6346), seen=float(i), source="pong")
    assert len(hc) == 3 and ("10.0.0.1", 6346) not in hc, "the stalest goes"
    hc.add(("10.0.0.2", 6346), seen=9.0, source="pong")
    assert hc.candidates(0.0, limit=3)[0] == ("10.0.0.2", 6346), "freshest first"
    hc.failed(("10.0.0.2", 6346), now=0.0)
    assert ("10.0.0.2", 6346) not in hc.candidates(1.0)
    assert ("10.0.0.2", 6346) in hc.candidates(31.0)
    for _ in range(MAX_FAILURES):
        hc.failed(("10.0.0.3", 6346), now=0.0)
    assert ("10.0.0.3", 6346) not in hc
    assert not hc.add(("0.0.0.0", 1), seen=1.0)


def test_host_cache_file_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "hosts.json"
    hc = HostCache(path)
    hc.add(("10.0.0.1", 6346), seen=100.0, ultrapeer=True, source="x-try")
    hc.add(("10.0.0.2", 6347), seen=200.0, source="pong")
    hc.write(hc.snapshot(300.0))
    doc = json.loads(path.read_text())
    assert doc["format"] == "peerlab-gnutella-hosts"
    assert doc["hosts"] == [["10.0.0.1", 6346, 100.0, True], ["10.0.0.2", 6347, 200.0, False]]
    assert sorted(os.listdir(tmp_path)) == ["hosts.json"], "no temporary file left behind"
    back = HostCache(path)
    assert back.load() == 2
    assert [e.address for e in back.entries()] == [("10.0.0.2", 6347), ("10.0.0.1", 6346)]
    assert back.get(("10.0.0.1", 6346)).ultrapeer  # type: ignore[union-attr]


def test_host_cache_refuses_to_read_garbage(tmp_path: Path) -> None:
    path = tmp_path / "hosts.json"
    path.write_text("not json")
    with pytest.raises(StorageError):
        HostCache(path).load()
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(StorageError):
        HostCache(path).load()
    # Bad entries inside a good file are skipped, not fatal.
    path.write_text(json.dumps({"format": "peerlab-gnutella-hosts", "hosts": [
        ["10.0.0.1", 6346, 1.0], ["x", "y", "z"], ["0.0.0.0", 1, 1.0], "junk"]}))  # fmt: skip
    hc = HostCache(path)
    assert hc.load() == 1
    assert HostCache(tmp_path / "missing.json").load() == 0


# -------------------------------------------------------------- pong cache


def test_pong_cache_spreads_distances_and_skips_the_asker() -> None:
    pc = PongCache(expiry=3.0)
    assert pc.expired(0.0)
    pc.refresh(0.0)
    for d in (1, 2, 3):
        for i in range(5):
            pc.add(CachedPong(b"p", (f"10.{d}.0.{i}", 1), d, link_id=i % 2))
    assert not pc.add(CachedPong(b"p", ("10.1.0.0", 1), 1, 0)), "same host twice"
    picked = pc.pick(max_distance=2, exclude_link=1, limit=4)
    assert [p.distance for p in picked] == [1, 2, 1, 2]
    assert all(p.link_id != 1 for p in picked)
    assert pc.expired(3.0) and not pc.expired(2.9)


def test_ping_demand_throttle_and_needs() -> None:
    d = PingDemand()
    assert d.accept(0.0, 3.0) and not d.accept(2.9, 3.0) and d.accept(3.0, 3.0)
    d.set(G[1], ttl=3, hops=0, now=0.0, expiry=3.0)
    assert d.needed == {1: 5, 2: 5}
    assert d.wants(2, 1.0) and not d.wants(3, 1.0) and not d.wants(1, 7.0)
    for _ in range(5):
        d.took(1)
    assert not d.wants(1, 1.0)
    d.set(G[2], ttl=1, hops=0, now=0.0, expiry=3.0)
    assert d.needed == {}, "a TTL-1 ping wants only our own pong"


# -------------------------------------------------------------- answering

ME = HitIdentity(ip="10.0.0.9", port=6346, speed=1000, servent_guid=G[9],
                 push=False, busy=True, stable=True)  # fmt: skip


def test_query_hits_carry_huge_urns_and_the_qhd() -> None:
    files = [make_file(i, f"lebowski {i}.mp3", size=1000 + i) for i in range(25)]
    hits = build_query_hits(Query("lebowski"), files, ME)
    assert [len(h.results) for h in hits] == [10, 10, 5]
    raw = encode_payload(hits[0])
    assert raw[-16:] == G[9], "the servent GUID ends the hit"
    assert b"PLAB" in raw
    back = decode_payload(QUERY_HIT, raw)
    assert isinstance(back, QueryHit)
    assert (back.ip, back.port, back.speed) == ("10.0.0.9", 6346, 1000)
    assert (back.vendor, back.push, back.busy, back.stable) == ("PLAB", False, True, True)
    r = back.results[0]
    assert (r.index, r.name, r.size) == (0, "lebowski 0.mp3", 1000)
    assert r.urns == (files[0].urn,) and r.sha1 == files[0].sha1


def test_query_hits_respect_max_hits_and_send_xml_when_asked() -> None:
    files = [make_file(i, f"song {i}.mp3", title=f"Song {i}", artist="Dude", bitrate=192,
                       duration=201.5) for i in range(5)]  # fmt: skip
    flags = int(QueryFlags.MARK | QueryFlags.XML) | 3
    hits = build_query_hits(Query("song", flags=flags), files, ME)
    assert sum(len(h.results) for h in hits) == 3, "the query's max-hits byte"
    assert hits[0].xml is not None
    records = parse_xml_records(hits[0].xml)
    assert [r.get("title") for r in records] == ["Song 0", "Song 1", "Song 2"]
    assert records[1].get("seconds") == "201" and records[1].index == 1
    plain = build_query_hits(Query("song", flags=int(QueryFlags.MARK)), files, ME)
    assert plain[0].xml is None, "no XML unless the query asks for it"


def test_query_hits_stay_under_the_payload_limit() -> None:
    files = [make_file(i, "x" * 200 + f"{i}.mp3") for i in range(10)]
    hits = build_query_hits(Query("x"), files, ME, max_payload=1000)
    assert sum(len(h.results) for h in hits) == 10
    assert all(len(encode_payload(h)) <= 1000 for h in hits)


def hit_from(
    ip: str,
    guid: bytes,
    results: list[QueryHitResult],
    *,
    push: bool | None = None,
    busy: bool | None = None,
    stable: bool | None = None,
) -> QueryHit:
    return QueryHit(
        6346, ip, 500, tuple(results), guid, "GTKG", push=push, busy=busy, stable=stable
    )


def test_search_groups_sources_by_urn() -> None:
    seen: list[tuple[str, str]] = []
    s = Search(G[1], "dude", 3, 0.0, lambda r, src: seen.append((r.name, src.host)))
    f = make_file(0, "dude.mp3")
    urn = sha1_urn(f.sha1)
    s.add_hit(hit_from("10.0.0.1", G[2], [QueryHitResult(1, 1000, "dude.mp3", (urn,))],
                       busy=True, push=False, stable=True), hops=0)  # fmt: skip
    s.add_hit(hit_from("10.0.0.2", G[3], [QueryHitResult(7, 1000, "Dude (copy).mp3", (urn,)),
                                          QueryHitResult(8, 5, "other.txt")]), hops=2)  # fmt: skip
    # The same source again is not a new source.
    s.add_hit(hit_from("10.0.0.1", G[2], [QueryHitResult(1, 1000, "dude.mp3", (urn,))]), hops=0)
    assert len(s.results) == 2 and s.hits == 3
    row = s.results[urn]
    assert [src.host for src in row.sources] == ["10.0.0.1", "10.0.0.2"]
    first = row.sources[0]
    assert (first.busy, first.push, first.stable, first.distance) == (True, False, True, 1)
    assert row.sources[1].distance == 3 and row.sources[1].servent_guid == G[3]
    assert s.by_distance == {1: 1, 3: 2}
    assert seen == [("dude.mp3", "10.0.0.1"), ("dude.mp3", "10.0.0.2"), ("other.txt", "10.0.0.2")]
    s.cancel()
    assert s.add_hit(hit_from("10.0.0.3", G[4], [QueryHitResult(1, 1, "dude.mp3")]), 0) == 0


# ---------------------------------------------------------------- config


def test_config_refuses_nonsense() -> None:
    for bad in [{"listen_port": 70000}, {"target_degree": 40, "max_connections": 10},
                {"search_ttl": 9}, {"handshake_timeout": 0},
                {"bootstrap": (("example.org", 6346),)}]:  # fmt: skip
        with pytest.raises(ConfigError):
            ServentConfig(**bad)  # type: ignore[arg-type]


# -------------------------------------------------------- GWebCache lines


def test_gwebcache_v2_and_v1_answers_are_read() -> None:
    v2 = parse_response(
        "I|pong|Skulls 0.3.0|gnutella-gnutella2\r\nH|1.2.3.4:6346|120\r\nH|5.6.7.8:6347|5|c\r\n"
        "U|http://cache.example/gwc.php|300\r\nI|update|OK\r\nH|garbage\r\nU|ftp://x|1\r\n"
    )
    assert v2.pong == "Skulls 0.3.0"
    assert v2.hosts == ((("1.2.3.4", 6346), 120), (("5.6.7.8", 6347), 5))
    assert v2.urls == (("http://cache.example/gwc.php", 300),)
    assert v2.update_ok is True and v2.error is None
    v1 = parse_response("PONG GnuCache 1.0\n1.2.3.4:6346\nhttp://a.example/c\nOK\nWARNING: slow\n")
    assert v1.pong == "GnuCache 1.0" and v1.hosts == ((("1.2.3.4", 6346), None),)
    assert v1.urls == (("http://a.example/c", None),)
    assert v1.update_ok is False and v1.warnings == ("slow",)
    assert parse_response("ERROR: Network not supported").error == "Network not supported"
    assert parse_response("I|update|WARNING|Returned too soon").update_ok is False
    assert parse_response("\x00\xff" * 1000).hosts == ()


def test_cache_urls() -> None:
    assert parse_cache_url("http://10.0.0.1:8080/gwc?x=1") == (("10.0.0.1", 8080), "/gwc?x=1")
    assert parse_cache_url("http://example.org") == (("example.org", 80), "/")
    for bad in ["https://a/b", "ftp://a", "http://", "http://a:99999/"]:
        with pytest.raises(ConfigError):
            parse_cache_url(bad)
