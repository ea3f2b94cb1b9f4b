"""Pong-cache refills die out when nobody wants hosts (the refill wave).

A refill that a neighbour's Ping of TTL ``t`` sets off pings with ``t - 1``
(:func:`~peerlab.overlays.gnutella.pongcache.refresh_ttl`); with the full
TTL every time, a Ping reaching expired caches set off a refill at every
servent of the overlay, and where a round trip over a link takes longer than
the cache expiry the refills came back to expired caches and never stopped.
"""

from __future__ import annotations

import random

from peerlab.overlays.gnutella.pongcache import refresh_ttl
from peerlab.overlays.gnutella.router import MAX_TTL
from peerlab.overlays.gnutella.servent import HOSTS_WANTED
from peerlab.sim import Simulator
from peerlab.sim.topology import LINK_CLASSES, GnutellaNetwork, random_edges

#: Servents of the overlay: enough that each learns more than HOSTS_WANTED
#: hosts and stops pinging for hosts of its own.
NODES = 30
#: Cache expiry T, below the round trip over a modem link (two 150 ms access
#: latencies each way plus the bytes' time), so a refill Ping's echo from
#: the neighbour comes back to an expired cache.
EXPIRY = 0.5
#: Virtual seconds after the overlay opens: the host pings and their pongs.
WARM_UP = 25.0
#: The quiet interval measured: no searches, no joins, no host wanted.
QUIET = 10.0


def test_refresh_ttl_passes_on_the_pings_reach_less_one_hop() -> None:
    assert [refresh_ttl(t) for t in range(2, MAX_TTL + 1)] == list(range(1, MAX_TTL))
    # Never above what a Ping of the max TTL sets off, never below an
    # "alive" Ping (which sets off no refill of its own).
    assert refresh_ttl(255) == MAX_TTL - 1
    assert refresh_ttl(1) == refresh_ttl(0) == 1
    # A chain of refills, each set off by the one before, ends within MAX_TTL.
    ttl, chain = 255, 0
    while ttl > 1:
        ttl, chain = refresh_ttl(ttl), chain + 1
    assert chain <= MAX_TTL


def test_a_quiet_network_of_slow_links_stops_refilling_its_pong_caches() -> None:
    sim = Simulator(5)
    net = GnutellaNetwork(
        sim, NODES, link_class=LINK_CLASSES["modem14k"],
        config={"pong_cache_expiry": EXPIRY},
    )  # fmt: skip
    net.connect(random_edges(NODES, 4, random.Random(2)))
    sim.run(sim.now + WARM_UP)
    # Every servent knows the hosts it wants: none pings for hosts any more.
    assert min(len(node.servent.host_cache) for node in net.nodes) >= HOSTS_WANTED
    refreshes, pongs = net.counter("pong_cache.refreshes"), net.counter("rx.pong")
    sim.run(sim.now + QUIET)
    refreshes = net.counter("pong_cache.refreshes") - refreshes
    pongs = net.counter("rx.pong") - pongs
    # With the full TTL on every refill the warm-up's refills go on for ever:
    # every servent refilled about every round trip (~490 refills and ~13,000
    # Pongs in these 10 s).  Now none: the only Pongs left answer keep-alive
    # Pings, one per connection at most.
    assert refreshes == 0
    assert pongs <= net.open_links()
    assert net.counter("internal_errors") == 0
    net.close()


def test_a_peer_that_cannot_learn_more_hosts_pings_for_them_less_and_less() -> None:
    """In the search scenario's 300-peer network one servent (degree 3)
    hears of the same 18 hosts from every Ping it sends for more (its
    neighbours' pong caches answer in the same order each time).  Every
    such Ping sets off pong-cache refills over the whole network, so a
    fruitless round doubles the wait before the next (10, 20, 40 ... 320 s)
    instead of pinging every 10 s for ever."""
    from peerlab.sim.engine import derive_seed
    from peerlab.simulate.nets import build_net
    from peerlab.simulate.population import build_population
    from peerlab.simulate.scenario import load_scenario

    pop = build_population(load_scenario("search"), 300, 1)
    sim = Simulator(derive_seed(1, "search", "gnutella", "300"))
    net = build_net("gnutella", sim, pop, seed=1)
    assert net.wait_connected()
    nodes, network = net.network.nodes, net.network
    sim.run(95.0)
    short = [i for i, n in enumerate(nodes) if len(n.servent.host_cache) < HOSTS_WANTED]
    assert short, "the case under test: a servent short of hosts"
    refills = network.counter("pong_cache.refreshes")
    sim.run(395.0)
    refills = network.counter("pong_cache.refreshes") - refills
    # 300 s at one Ping every 10 s: 30 rounds of about 300 refills each
    # (9,000); with the doubling wait, three rounds (at 100, 180 and 340 s).
    assert refills <= 4 * len(nodes)
    assert all(len(nodes[i].servent.host_cache) < HOSTS_WANTED for i in short)
    assert network.counter("hosts.ping_backoffs") >= 3
    assert network.counter("internal_errors") == 0
