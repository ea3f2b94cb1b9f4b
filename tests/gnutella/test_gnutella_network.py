"""Servents in small networks, each test body run on real sockets on
127.0.0.1 and in the simulator (the ``world`` fixture): search reach by TTL,
duplicate suppression, reverse-path routing of hits, pongs and pushes, host
exchange, joining through one peer, the host cache file, GWebCache bootstrap."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gnetkit import (
    WAIT,
    Node,
    close_all,
    hits_at_least,
    internal_errors,
    line,
    link,
    make_file,
    make_world,
    new_node,
)

from peerlab.errors import ConfigError
from peerlab.overlays.gnutella.gwebcache import GWebCache, GWebCacheConfig
from peerlab.runtime.worlds import World
from peerlab.wire.gnutella import Push


def lebowski(i: int) -> list:  # type: ignore[type-arg]
    return [make_file(1, f"the big lebowski part {i}.mp3", size=1000 + i)]


def flood_counters(nodes: list[Node]) -> list[dict[str, int]]:
    """The query and hit counters of every node (what must agree between worlds)."""
    keep = ("rx.query", "tx.query", "routed.query", "dup.query", "dropped_ttl.query",
            "queries.answered", "hits.delivered")  # fmt: skip
    return [
        {k: v for k, v in n.servent.counters.snapshot().items() if k.startswith(keep)}
        for n in nodes
    ]


def test_search_reach_grows_with_ttl(world: World) -> None:
    nodes = line(world, 5, lebowski)
    a = nodes[0].servent
    reach = {}
    for ttl in (1, 2, 3, 4):
        s = a.search("lebowski", ttl=ttl)
        assert world.run_until(hits_at_least(s, ttl), WAIT)
        world.run_for(0.5)
        reach[ttl] = dict(sorted(s.by_distance.items()))
        names = sorted(r.name for r in s.results.values())
        assert names == [f"the big lebowski part {i}.mp3" for i in range(1, ttl + 1)]
    # Hits counted by distance: TTL t reaches exactly the t nearest servents.
    assert reach == {1: {1: 1}, 2: {1: 1, 2: 1}, 3: {1: 1, 2: 1, 3: 1},
                     4: {1: 1, 2: 1, 3: 1, 4: 1}}  # fmt: skip
    # Node i saw the queries whose TTL reached it, answered each, forwarded them on.
    for i in range(1, 5):
        c = nodes[i].servent.counters
        assert c["rx.query"] == 5 - i and c["queries.answered"] == 5 - i
        assert c["routed.query"] == (4 - i if i < 4 else 0)
    # Hits came back along the line (reverse path): n1 passed on those of
    # n2 (3 searches reached it), n3 (2) and n4 (1); n2 those of n3 and n4 ...
    assert [nodes[i].servent.counters["routed.query_hit"] for i in range(5)] == [0, 6, 3, 1, 0]
    assert a.counters["hits.delivered"] == 1 + 2 + 3 + 4
    assert internal_errors(nodes) == 0
    close_all(world, nodes)


def test_same_counters_in_both_worlds() -> None:
    """The same scenario on real sockets and in the simulator counts the same
    messages (one code, two worlds)."""
    results = []
    for kind in ("real", "sim"):
        w = make_world(kind)
        try:
            nodes = line(w, 4, lebowski)
            extra = new_node(w, "x", lebowski(9))
            link(w, extra, nodes[1])  # a branch: the line with a side arm
            for ttl, expect in ((2, 2), (3, 4)):
                s = nodes[3].servent.search("lebowski", ttl=ttl)
                assert w.run_until(hits_at_least(s, expect), WAIT)
                w.run_for(0.5)
            results.append(flood_counters([*nodes, extra]))
            close_all(w, [*nodes, extra])
        finally:
            w.close()
    assert results[0] == results[1]
    assert results[0][3]["hits.delivered"] == 2 + 4


def test_duplicates_are_suppressed_in_a_mesh(world: World) -> None:
    nodes = [new_node(world, f"m{i}", lebowski(i)) for i in range(5)]
    for a, b in [(1, 0), (2, 0), (3, 1), (3, 2), (4, 3), (4, 0), (2, 1)]:
        link(world, nodes[a], nodes[b])
    s = nodes[0].servent.search("lebowski", ttl=4)
    assert world.run_until(lambda: len(s.results) == 4, WAIT)
    world.run_for(1.0)
    # Each servent answered the query once, however many copies reached it.
    assert [n.servent.counters["queries.answered"] for n in nodes[1:]] == [1, 1, 1, 1]
    assert sum(n.servent.counters["dup.query"] for n in nodes) > 0
    assert s.hits == 4 and all(len(r.sources) == 1 for r in s.results.values())
    # Every copy was either new (answered) or a duplicate (dropped).
    for n in nodes[1:]:
        c = n.servent.counters
        assert c["rx.query"] == c["queries.answered"] + c["dup.query"]
    assert internal_errors(nodes) == 0
    close_all(world, nodes)


def test_push_is_routed_back_along_the_hits_path(world: World) -> None:
    nodes = line(world, 4, lebowski)
    a, d = nodes[0].servent, nodes[3].servent
    pushes: list[Push] = []
    d.on_push = pushes.append
    s = a.search("lebowski", ttl=3)
    assert world.run_until(lambda: s.hits == 3, WAIT)
    src = s.results[lebowski(3)[0].urn].sources[0]
    assert src.servent_guid == d.guid and src.distance == 3
    assert a.send_push(src.servent_guid, src.index)
    assert world.run_until(lambda: bool(pushes), WAIT)
    assert (pushes[0].ip, pushes[0].port, pushes[0].file_index) == (*a.address, 1)
    assert [n.servent.counters["routed.push"] for n in nodes] == [0, 1, 1, 0]
    assert not a.send_push(bytes(16), 1), "no hit of that servent came through here"
    close_all(world, nodes)


def test_classic_pings_flood_and_pongs_route_back(world: World) -> None:
    nodes = line(world, 4, pong_caching=False)
    world.run_for(0.5)
    before = [n.servent.counters["routed.pong"] for n in nodes]
    a = nodes[0].servent
    a.ping(ttl=3)
    assert world.run_until(lambda: nodes[3].address in a.host_cache, WAIT)
    world.run_for(0.5)
    routed = [n.servent.counters["routed.pong"] - b for n, b in zip(nodes, before, strict=True)]
    # n1 routes the pongs of n2 and n3 back, n2 that of n3.
    assert routed == [0, 2, 1, 0]
    assert {nodes[i].address for i in (1, 2, 3)} <= {e.address for e in a.host_cache.entries()}
    close_all(world, nodes)


def test_pong_cache_teaches_hosts_without_flooding_pings(world: World) -> None:
    nodes = line(world, 4, pong_cache_expiry=0.5)
    a = nodes[0].servent
    world.run_for(0.6)  # past the cache expiry: the next ping refreshes along the line
    a.ping()
    assert world.run_until(lambda: nodes[3].address in a.host_cache, WAIT)
    # No ping was forwarded: pong caching answers, never floods.
    assert sum(n.servent.counters["routed.ping"] for n in nodes) == 0
    assert sum(n.servent.counters["pong_cache.refreshes"] for n in nodes) >= 2
    close_all(world, nodes)


def test_join_through_one_known_peer(world: World) -> None:
    core = [new_node(world, f"c{i}") for i in range(4)]
    for a, b in [(1, 0), (2, 0), (3, 0)]:
        link(world, core[a], core[b])
    j = new_node(world, "joiner", bootstrap=(core[0].address,), target_degree=3)
    assert world.run_until(lambda: j.servent.open_count == 3, WAIT)
    # It knew one address; the others came from c0's X-Try-Ultrapeers and pongs.
    entries = {e.address: e.source for e in j.servent.host_cache.entries()}
    assert entries[core[0].address] == "bootstrap"
    learned = {a for a in (core[1].address, core[2].address, core[3].address) if a in entries}
    assert len(learned) == 3
    assert any(entries[a] in ("handshake", "x-try") for a in learned)
    roles = {c.role for c in j.servent.connections() if c.state == "open"}
    assert roles == {"ultrapeer"}
    close_all(world, [*core, j])


def test_full_servent_refuses_with_x_try(world: World) -> None:
    hub = new_node(world, "hub", max_connections=2)
    others = [new_node(world, f"o{i}") for i in range(2)]
    for o in others:
        link(world, o, hub)
    late = new_node(world, "late")
    assert late.servent.connect(hub.address)
    assert world.run_until(lambda: late.servent.counters["connections.rejected_by_peer"] == 1, WAIT)
    # The 503 came with X-Try-Ultrapeers: the refused servent learned the others.
    learned = {e.address for e in late.servent.host_cache.entries()}
    assert {o.address for o in others} <= learned
    assert hub.servent.counters["connections.refused"] == 1
    close_all(world, [hub, *others, late])


def test_host_cache_survives_a_restart(world: World, tmp_path: Path) -> None:
    path = tmp_path / "gnutella-hosts.json"
    core = line(world, 3)
    me = new_node(world, "me", host_cache_path=path)
    link(world, me, core[0])
    me.servent.ping()
    assert world.run_until(lambda: core[2].address in me.servent.host_cache, WAIT)
    me.servent.close()
    world.run_for(0.2)
    saved = json.loads(path.read_text())["hosts"]
    assert {(h, p) for h, p, *_ in saved} >= {core[0].address, core[2].address}
    assert os.listdir(tmp_path) == [path.name]
    # A new servent with the same file and no bootstrap finds its way back.
    again = new_node(world, "me2", host_cache_path=path, target_degree=2)
    assert len(again.servent.host_cache) >= 3
    assert world.run_until(lambda: again.servent.open_count == 2, WAIT)
    close_all(world, [*core, again])


def test_bootstrap_from_a_gwebcache(world: World) -> None:
    rt = world.new_runtime("gwc")
    cache = GWebCache(rt, GWebCacheConfig(host=world.host(rt), port=0, update_interval=0))
    cache.start()
    seed = new_node(world, "seed", lebowski(0), gwebcaches=(cache.url,), gwebcache_first_update=0)
    assert world.run_until(lambda: seed.servent.counters["gwebcache.updates"] == 1, WAIT)
    assert seed.address in cache.hosts
    newcomer = new_node(world, "new", gwebcaches=(cache.url,), target_degree=1)
    assert world.run_until(lambda: newcomer.servent.open_count == 1, WAIT)
    assert newcomer.servent.host_cache.get(seed.address).source == "gwebcache"  # type: ignore[union-attr]
    s = newcomer.servent.search("lebowski", ttl=1)
    assert world.run_until(lambda: s.hits == 1, WAIT)
    close_all(world, [seed, newcomer])
    cache.close()


def test_the_owners_callbacks_cannot_break_the_servent(world: World) -> None:
    nodes = line(world, 3, lambda i: [*lebowski(i), make_file(2, f"lebowski extra {i}.mp3")])
    opened: list[bool] = []

    def bad_hit(result: object, source: object) -> None:
        raise RuntimeError("a bug in the node")

    nodes[0].servent.on_connection = lambda info, up: opened.append(up)
    s = nodes[0].servent.search("lebowski", bad_hit, ttl=2)
    assert world.run_until(hits_at_least(s, 2), WAIT)
    assert world.run_until(lambda: s.callback_errors == 4, WAIT), "every result was offered"
    assert nodes[0].servent.counters["callback_errors"] == 4
    assert nodes[0].servent.open_count == 1 and internal_errors(nodes) == 0
    nodes[1].servent.close()
    assert world.run_until(lambda: opened == [False], WAIT)
    close_all(world, nodes)


def test_search_by_urn(world: World) -> None:
    nodes = line(world, 3, lebowski)
    wanted = lebowski(2)[0]
    s = nodes[0].servent.search("", urn=wanted.urn, ttl=2)
    assert world.run_until(hits_at_least(s, 1), WAIT)
    world.run_for(0.3)
    assert list(s.results) == [wanted.urn] and s.hits == 1
    try:
        nodes[0].servent.search("", urn="urn:sha1:nonsense")
    except ConfigError as exc:
        assert "urn:sha1" in str(exc)
    else:
        raise AssertionError("a bad urn must be refused")
    close_all(world, nodes)
