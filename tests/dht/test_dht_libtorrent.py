"""Interop: libtorrent's DHT (the engine under qBittorrent and Deluge) and a
small DHT of our nodes, all on 127.0.0.1.

libtorrent bootstraps from one of our nodes, its queries are answered, our
nodes ping it back and take it into their tables, it takes ours into its
table; a torrent libtorrent announces (``dht_announce``) is found by our
get_peers, and a peer we announce is found by libtorrent's ``dht_get_peers``.
Every packet libtorrent sends or receives (``dht_pkt_alert``) goes through
our KRPC decoder too.

libtorrent refuses by default what a loopback test needs: several nodes on
one IP (``dht_restrict_routing_ips``, ``dht_restrict_search_ips``) and
addresses it considers dark (``dht_ignore_dark_internet``).  uTP, LSD, UPnP
and NAT-PMP are off; the session listens on 127.0.0.1 only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from dhtkit import build_network

from peerlab.overlays.dht import DhtNode, LookupResult
from peerlab.runtime.base import Address, RecordingObserver
from peerlab.runtime.worlds import RealWorld
from peerlab.wire.krpc import AnnouncePeer, GetPeers, Query, Response, decode

lt = pytest.importorskip("libtorrent")

#: Seconds any one step may take (loopback needs well under one).
STEP_S = 20.0
#: Our nodes: more than k = 8, so that some of them do not store an announce.
OUR_NODES = 12
LT_PEER_PORT = 6999
OUR_PEER_PORT = 7777


def lt_session(bootstrap: Address) -> Any:
    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "outgoing_interfaces": "127.0.0.1",
            "enable_dht": True,
            "dht_bootstrap_nodes": f"{bootstrap[0]}:{bootstrap[1]}",
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": lt.alert.category_t.dht_notification
            | lt.alert.category_t.dht_log_notification
            | lt.alert.category_t.dht_operation_notification
            | lt.alert.category_t.error_notification,
        }
    )


class Alerts:
    """libtorrent's alerts, copied out as they are popped (an alert object
    dies at the next ``pop_alerts``)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.sent: list[bytes] = []  # packets libtorrent sent ("==>")
        self.received: list[bytes] = []  # packets libtorrent received ("<==")
        self.live_nodes: list[bytes] = []
        self.live_nodes_asked = False
        self.peers_found: list[Address] = []
        self.announces_in: list[str] = []

    def poll(self) -> None:
        for a in self.session.pop_alerts():
            if isinstance(a, lt.dht_pkt_alert):
                (self.sent if a.message().startswith("==>") else self.received).append(
                    bytes(a.pkt_buf)
                )
            elif isinstance(a, lt.dht_live_nodes_alert):
                self.live_nodes = [bytes.fromhex(str(n["nid"])) for n in a.nodes]
                self.live_nodes_asked = False
            elif isinstance(a, lt.dht_get_peers_reply_alert):
                self.peers_found.extend((str(h), int(p)) for h, p in a.peers())
            elif isinstance(a, lt.dht_announce_alert):
                self.announces_in.append(a.message())


@pytest.fixture
def world() -> Iterator[RealWorld]:
    w = RealWorld()
    yield w
    w.close()


def until(world: RealWorld, alerts: Alerts, pred: Any, timeout: float = STEP_S) -> bool:
    """Run our nodes and poll libtorrent until ``pred()``."""
    deadline = time.monotonic() + timeout

    def check() -> bool:
        alerts.poll()
        return bool(pred()) or time.monotonic() > deadline

    world.run_until(check, timeout + 1.0)
    return bool(pred())


def test_libtorrent_and_our_dht_find_each_others_peers(world: RealWorld) -> None:
    obs = RecordingObserver(limit=10_000)
    nodes = build_network(world, OUR_NODES, stagger=0.01, observer=obs)
    boot = nodes[0].address
    assert boot is not None
    session = lt_session(boot)
    alerts = Alerts(session)
    lt_addr = ("127.0.0.1", session.listen_port())
    try:
        # 1. libtorrent joins through our node; every one of our nodes it
        #    queried answered, pinged it back, and took it into its table.
        def lt_in_our_tables() -> int:
            return sum(1 for n in nodes if n.routing_table.find_address(lt_addr) is not None)

        assert until(world, alerts, lambda: lt_in_our_tables() >= OUR_NODES // 2)
        assert obs.counters["dht.verify_pings"] >= OUR_NODES // 2
        # ... and our nodes are in libtorrent's table (asked under its node
        # id, which its queries carry).
        first = decode(alerts.sent[0])
        assert isinstance(first, Query)
        lt_id = first.arguments.id
        ours = {n.node_id for n in nodes}

        def ours_in_lt_table() -> int:
            if not alerts.live_nodes_asked:  # ask again once answered
                session.dht_live_nodes(lt.sha1_hash(lt_id))
                alerts.live_nodes_asked = True
            return len(ours & set(alerts.live_nodes))

        assert until(world, alerts, lambda: ours_in_lt_table() >= 4)

        # 2. libtorrent announces a torrent into our DHT ...
        ih = bytes(range(1, 21))
        session.dht_announce(lt.sha1_hash(ih), LT_PEER_PORT, 0)

        def holders() -> list[DhtNode]:
            return [n for n in nodes if n.store.peers(ih, n.runtime.now(), 10, n.runtime.rng)]

        assert until(world, alerts, lambda: len(holders()) >= 6)
        # ... under its own IP and the port it named, with our tokens.
        for n in holders():
            assert n.store.peers(ih, n.runtime.now(), 10, n.runtime.rng) == [
                ("127.0.0.1", LT_PEER_PORT)
            ]
        assert obs.counters["dht.bad_tokens"] == 0
        # ... and one of our nodes that does not hold it finds it by lookup.
        seeker = next(n for n in nodes if n not in holders())
        found: list[LookupResult] = []
        seeker.get_peers(ih, None, found.append)
        assert until(world, alerts, lambda: bool(found))
        assert found[0].peers == (("127.0.0.1", LT_PEER_PORT),)
        assert found[0].hops >= 1

        # 3. We announce; libtorrent's get_peers finds us.
        ih2 = bytes(range(40, 60))
        announced: list[Any] = []
        nodes[5].announce(ih2, OUR_PEER_PORT, announced.append)
        assert until(world, alerts, lambda: bool(announced))
        assert announced[0].stored >= 6
        session.dht_get_peers(lt.sha1_hash(ih2))
        assert until(world, alerts, lambda: ("127.0.0.1", OUR_PEER_PORT) in alerts.peers_found)

        # 4. Every packet either side sent decodes with our codec; libtorrent's
        #    queries include the get_peers and announce_peer we answered.
        assert alerts.sent and alerts.received
        sent = [decode(p) for p in alerts.sent]
        for p in alerts.received:
            decode(p)
        methods = {type(m.arguments) for m in sent if isinstance(m, Query)}
        assert {GetPeers, AnnouncePeer} <= methods
        assert any(isinstance(m, Response) for m in sent)  # its answers to our pings
        assert obs.counters["dht.garbage"] == 0
        assert obs.counters["dht.handler_errors"] == 0
    finally:
        for n in nodes:
            n.close()
