"""The 0.6 role headers on the wire (ultra-peers section 3)."""

from __future__ import annotations

from gnetkit import WAIT, RawPeer, close_all, link
from upkit import leaf, ultrapeer

from peerlab.proto.gnutella import HandshakeRejected, HandshakeResponse

LEAF = [("User-Agent", "raw/1"), ("X-Ultrapeer", "False"), ("X-Query-Routing", "0.2")]
CANDIDATE = [("User-Agent", "raw/1"), ("X-Ultrapeer", "True")]


def _response(world, raw: RawPeer):  # type: ignore[no-untyped-def]
    kinds = (HandshakeResponse, HandshakeRejected)
    assert world.run_until(lambda: any(isinstance(e, kinds) for e in raw.events), WAIT)
    return next(e for e in raw.events if isinstance(e, kinds))


def test_an_ultrapeer_announces_its_role_and_needs(world) -> None:  # type: ignore[no-untyped-def]
    up = ultrapeer(world, "up", target_degree=1, max_ttl=4)
    raw = RawPeer(world, "raw", up.address, LEAF)
    try:
        ev = _response(world, raw)
        assert isinstance(ev, HandshakeResponse)
        h = ev.headers
        assert h.get("X-Ultrapeer") == "True"
        assert h.get("X-Query-Routing") == "0.2"
        assert h.get("X-Ultrapeer-Query-Routing") == "0.1"
        assert h.get("X-Degree") == "32"
        assert h.get("X-Max-TTL") == "4"
        assert h.get("X-Ultrapeer-Needed") == "True"  # no ultrapeer link yet
        assert h.get("Accept-Encoding") == "deflate"
    finally:
        raw.close()
        close_all(world, [up])


def test_guidance_and_refusals(world) -> None:  # type: ignore[no-untyped-def]
    up = ultrapeer(world, "up", target_degree=1, max_leaves=2)
    other = ultrapeer(world, "other")
    lf = leaf(world, "leaf")
    link(world, other, up)  # up has the one ultrapeer link it wants
    link(world, lf, up)  # and one of its two leaves
    raws: list[RawPeer] = []
    try:
        # a candidate ultrapeer is told none is needed (leaf guidance)
        raws.append(RawPeer(world, "cand", up.address, CANDIDATE))
        ev = _response(world, raws[-1])
        assert isinstance(ev, HandshakeResponse)
        assert ev.headers.get("X-Ultrapeer-Needed") == "False"
        raws[-1].close()
        # a second leaf takes the last slot
        raws.append(RawPeer(world, "leaf2", up.address, LEAF))
        raws[-1].wait_open()
        assert world.run_until(lambda: len(up.servent.leaf_links()) == 2, WAIT)
        # the next leaf finds no room: 503 naming other ultrapeers
        raws.append(RawPeer(world, "leaf3", up.address, LEAF))
        ev = _response(world, raws[-1])
        assert isinstance(ev, HandshakeRejected) and ev.code == 503
        assert "leaves" in ev.reason.lower()
        assert ev.headers.get("X-Ultrapeer") == "True"
        assert f"{other.address[0]}:{other.address[1]}" in (
            ev.headers.get("X-Try-Ultrapeers") or ""
        )
        # full of leaves, it now says another ultrapeer is needed
        raws.append(RawPeer(world, "cand2", up.address, CANDIDATE))
        ev = _response(world, raws[-1])
        assert isinstance(ev, HandshakeResponse)
        assert ev.headers.get("X-Ultrapeer-Needed") == "True"
        # a leaf refuses another leaf: "I am a shielded leaf node"
        raws.append(RawPeer(world, "leaf3", lf.address, LEAF))
        ev = _response(world, raws[-1])
        assert isinstance(ev, HandshakeRejected) and ev.code == 503
        assert ev.reason == "I am a shielded leaf node"
        assert ev.headers.get("X-Ultrapeer") == "False"
        assert f"{up.address[0]}:{up.address[1]}" in (ev.headers.get("X-Try-Ultrapeers") or "")
    finally:
        for r in raws:
            r.close()
        close_all(world, [up, other, lf])


def test_pongs_state_role_and_free_slots(world) -> None:  # type: ignore[no-untyped-def]
    """GGEP ``UP`` in an ultrapeer's Pong: its free leaf and ultrapeer
    slots; a leaf's Pong claims none."""
    from peerlab.wire.gnutella import Ping, Pong

    up = ultrapeer(world, "up", max_leaves=5, max_ultrapeer_links=4)
    lf = leaf(world, "leaf")
    link(world, lf, up)
    raws = [RawPeer(world, "r1", up.address, LEAF), RawPeer(world, "r2", lf.address, CANDIDATE)]
    try:
        for r in raws:
            r.wait_open()
            r.send(Ping(), bytes([9]) * 15 + b"\x00", ttl=1)
        assert world.run_until(lambda: all(r.received(Pong) for r in raws), WAIT)
        up_pong = raws[0].received(Pong)[0].message
        assert up_pong.is_ultrapeer and up_pong.free_slots == (3, 4)  # 2 leaves: lf and r1
        leaf_pong = raws[1].received(Pong)[0].message
        assert not leaf_pong.is_ultrapeer
    finally:
        for r in raws:
            r.close()
        close_all(world, [up, lf])
