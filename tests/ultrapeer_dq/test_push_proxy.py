"""Push proxies (gtk-gnutella ``push_proxy``): LIME/21 -> LIME/22, GGEP
``PUSH`` in the firewalled servent's hits, the HTTP request relayed as a
one-hop Push; and, with ``peerlab node`` processes, a whole download from a
firewalled servent through its proxy, compared byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gnetkit import WAIT, close_all, make_file, new_node
from gnodekit import GNode, file_urn, open_gnutella, result_for
from gnodekit import make_file as make_disk_file

from peerlab.errors import RemoteProtocolError
from peerlab.overlays.gnutella.pushproxy import (
    MAX_PROXIES_PER_SERVENT,
    ProxyBook,
    parse_push_proxy_request,
    push_proxy_target,
)
from peerlab.runtime.worlds import World
from peerlab.wire.gnutella import Push, PushProxyAck, encode_vendor
from peerlab.wire.http import Headers
from peerlab.wire.urn import b32

GUID = bytes(range(16))


def test_request_parsing() -> None:
    target = push_proxy_target(GUID)
    assert target == f"/gnutella/push-proxy?ServerId={b32(GUID)}"
    query = target.partition("?")[2]
    hdrs = Headers([("x-node", "192.0.2.5:6346")])
    assert parse_push_proxy_request(query, hdrs) == (GUID, ("192.0.2.5", 6346))
    # gtk-gnutella's hex form.
    assert parse_push_proxy_request(f"guid={GUID.hex()}", hdrs)[0] == GUID
    for bad_query, bad_hdrs in [
        (query, Headers([])),  # no X-Node
        (query, Headers([("X-Node", "0.0.0.0:6346")])),  # nobody listens there
        (query, Headers([("X-Node", "192.0.2.5")])),  # no port
        ("ServerId=AAAA", hdrs),  # not 16 bytes
        ("ServerId=!!!", hdrs),  # not base32
        ("guid=zz", hdrs),
        ("", hdrs),
    ]:
        with pytest.raises(RemoteProtocolError):
            parse_push_proxy_request(bad_query, bad_hdrs)


def test_proxy_book_is_bounded_and_forgets_failed_proxies() -> None:
    book = ProxyBook()
    many = [(f"192.0.2.{i}", 6346) for i in range(1, 20)]
    book.learn(GUID, [("0.0.0.0", 1), *many])
    assert book.proxies(GUID) == many[:MAX_PROXIES_PER_SERVENT]
    book.forget(GUID, many[0])
    assert many[0] not in book.proxies(GUID)
    assert book.proxies(bytes(16)) == []


def test_firewalled_servent_gets_a_proxy_and_the_proxy_relays(world: World) -> None:
    up = new_node(world, "up")
    fw = new_node(world, "fw", [make_file(3, "dude abides.ogg")], firewalled=True)
    pushes: list[Push] = []
    fw.servent.on_push = pushes.append
    other = new_node(world, "c")
    assert fw.servent.connect(up.address)
    assert other.servent.connect(up.address)
    assert world.run_until(lambda: fw.servent.counters["push_proxy.acks"] == 1, WAIT)
    assert up.servent.counters["push_proxy.acked"] == 1
    assert up.servent.push_proxies.proxied() == [fw.servent.guid]
    assert fw.servent.push_proxies.proxies() == [up.address]

    # The firewalled servent's hits list its proxy (GGEP PUSH, section 4.1).
    assert world.run_until(lambda: other.servent.open_count == 1, WAIT)
    search = other.servent.search("abides", ttl=2)
    assert world.run_until(lambda: search.hits == 1, WAIT)
    (result,) = search.results.values()
    (source,) = result.sources
    assert source.push is True and source.push_proxies == (up.address,)

    # The HTTP request (section 5) becomes a one-hop Push with file index 0.
    query = push_proxy_target(fw.servent.guid).partition("?")[2]
    status = up.servent.push_proxies.handle_http(query, Headers([("X-Node", "192.0.2.9:4444")]))
    assert status == 202
    assert world.run_until(lambda: len(pushes) == 1, WAIT)
    assert pushes[0] == Push(fw.servent.guid, 0, "192.0.2.9", 4444)
    assert up.servent.counters["push_proxy.relayed"] == 1
    assert up.servent.counters["routed.push"] == 0
    # Unknown servent: 410; malformed: 400.
    q2 = push_proxy_target(bytes(16)).partition("?")[2]
    assert up.servent.push_proxies.handle_http(q2, Headers([("X-Node", "192.0.2.9:1")])) == 410
    assert up.servent.push_proxies.handle_http("x=1", Headers([])) == 400

    # The firewalled servent leaves: its proxy forgets it (410 from now on).
    fw.servent.close()
    assert world.run_until(lambda: up.servent.push_proxies.proxied() == [], WAIT)
    assert up.servent.push_proxies.handle_http(query, Headers([("X-Node", "192.0.2.9:1")])) == 410
    close_all(world, [up, other])


def test_a_reachable_servent_asks_for_no_proxy_and_bad_acks_are_dropped(world: World) -> None:
    up = new_node(world, "up")
    plain = new_node(world, "plain")
    assert plain.servent.connect(up.address)
    assert world.run_until(lambda: up.servent.open_count == 1, WAIT)
    world.run_for(0.5)
    assert up.servent.counters["push_proxy.requested"] == 0
    assert plain.servent.push_proxies.proxies() == []
    # An ack nobody asked for (wrong GUID) is dropped, not believed.
    from gnetkit import RawPeer

    raw = RawPeer(world, "raw", plain.address)
    raw.wait_open()
    assert world.run_until(lambda: plain.servent.open_count == 2, WAIT)
    raw.send(encode_vendor(PushProxyAck(6346, "192.0.2.1")), bytes(16), ttl=1)
    assert world.run_until(
        lambda: plain.servent.counters["dropped.push_proxy_ack_guid"] == 1, WAIT
    )
    raw.close()
    close_all(world, [up, plain])


def test_download_from_a_firewalled_node_through_its_push_proxy(
    tmp_path: Path, start_gnode: Callable[..., GNode]
) -> None:
    """P is the proxy; F is firewalled and joins through P only; C searches and
    downloads.  The Push reaches F by C's HTTP request to P (never routed)."""
    shared = make_disk_file(tmp_path / "share_f", "Linkin Park - Numb.mp3", 700_000, seed=5)
    urn = file_urn(shared)
    p = start_gnode("p", "--gnutella-serve")
    addr_p = str(p.wait_ready()["listen"])
    f = start_gnode("f", "--gnutella", addr_p, "--gnutella-firewalled",
                    "--share", str(tmp_path / "share_f"))  # fmt: skip
    c = start_gnode("c", "--gnutella", addr_p)
    f.wait_ready(files=1)
    c.wait_ready()
    p.wait_for(lambda st: open_gnutella(st) >= 2)
    p.wait_for(lambda st: st["gnutella"]["counters"].get("push_proxy.acked", 0) >= 1)

    r = result_for(c.json("search", "numb"), urn)
    assert [h["push"] for h in r["hosts"]] == [True]
    dl = c.json("download", str(r["id"]), "--wait")["download"]
    assert dl["status"] == "complete", dl
    assert Path(dl["path"]).read_bytes() == shared.read_bytes()

    counters_p = p.json("status")["gnutella"]["counters"]
    assert counters_p.get("push_proxy.relayed", 0) >= 1, counters_p
    assert counters_p.get("routed.push", 0) == 0, counters_p
    assert p.json("status")["counters"].get("upload.push_proxy.202", 0) >= 1
    assert f.json("status")["counters"].get("upload.push_connected", 0) >= 1
    assert c.json("status")["counters"].get("transfer.push_connected", 0) >= 1
