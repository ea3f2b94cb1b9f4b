"""One of each: one link class table, one address scheme, one network builder.

The scenario engine's networks (``peerlab.simulate.nets``), the BitTorrent
experiment and the ``sim`` benchmark (``peerlab.sim.topology``) take their
link classes, addresses, shares and servents from the same place, so a class
or a node means one thing everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peerlab.errors import ConfigError
from peerlab.runtime.worlds import SimWorld
from peerlab.sim import Simulator, topology
from peerlab.sim.topology import (
    LINK_CLASSES,
    MAX_NODE_INDEX,
    GnutellaNetwork,
    MemoryShares,
    line_edges,
    node_ip,
    server_ip,
    sim_file,
)
from peerlab.simulate import bittorrent, scenario
from peerlab.simulate.nets import GnutellaNet, NapsterNet
from peerlab.simulate.population import build_population, catalog_file, title_word
from peerlab.simulate.scenario import load_scenario, parse_scenario


def test_one_link_class_table_with_the_reports_figures() -> None:
    assert scenario.LINK_CLASSES is LINK_CLASSES
    assert bittorrent.LINK_CLASSES is LINK_CLASSES
    assert scenario.LinkClass is bittorrent.LinkClass is topology.LinkClass
    assert all(name == lc.name and lc.loss == 0.0 for name, lc in LINK_CLASSES.items())
    # The figures the committed report was made with: DSL 128/1500 kbit/s, 25 ms.
    dsl = LINK_CLASSES["dsl"]
    assert (dsl.up, dsl.down, dsl.latency) == (16_000.0, 187_500.0, 0.025)
    # The flood benchmark's cable: 384/3000 kbit/s, 20 ms.
    cable = LINK_CLASSES["cable"]
    assert (cable.up, cable.down, cable.latency) == (48_000.0, 375_000.0, 0.020)
    # An index server or tracker: a T3.
    assert LINK_CLASSES["server"].up == LINK_CLASSES["server"].down == 5_625_000.0
    # The BitTorrent experiment reads the same classes, the engine's first.
    own = {"dsl": {"up": 1000, "down": 2000, "latency": 0.5}}
    sc = parse_scenario({"architecture": "bittorrent", "link_classes": own})
    cfg = bittorrent.BtConfig.parse(sc.table("bittorrent"))
    assert cfg.link("cable") == LINK_CLASSES["cable"]
    assert cfg.link("dsl") == topology.LinkClass("dsl", 1000.0, 2000.0, 0.5)


def test_a_scenario_link_class_may_lose_packets() -> None:
    sc = parse_scenario({"experiments": ["search"], "population": {"links": {"lossy": 1}},
                         "link_classes": {"lossy": {"up": 8000, "down": 8000,
                                                    "latency": 0.03, "loss": 0.02}}})  # fmt: skip
    assert sc.link_classes["lossy"].loss == 0.02
    assert sc.link_classes["dsl"] is LINK_CLASSES["dsl"]
    # The loss reaches the peers' hosts, in every architecture.
    pop = build_population(sc, 6, 1)
    gnutella = GnutellaNet(Simulator(1), pop)
    napster = NapsterNet(Simulator(1), pop)
    for net in (gnutella, napster):
        assert [h.loss for h in net.hosts] == [0.02] * 6
    with pytest.raises(ConfigError, match=r"link_classes\.lossy\.loss"):
        parse_scenario({"experiments": ["search"],
                        "link_classes": {"lossy": {"up": 1000, "down": 1000, "latency": 0,
                                                   "loss": 1.5}}})  # fmt: skip


def test_one_address_scheme() -> None:
    assert [node_ip(i) for i in (0, 1, 254, 65_535)] == [
        "10.0.0.1", "10.0.0.2", "10.0.0.255", "10.1.0.0"]  # fmt: skip
    assert server_ip(0) == "10.255.0.1" and server_ip(1) == "10.255.0.2"
    # Nodes stop below the servers' range.
    assert node_ip(MAX_NODE_INDEX) == "10.254.255.255"
    for bad in (-1, MAX_NODE_INDEX + 1):
        with pytest.raises(ConfigError):
            node_ip(bad)
    with pytest.raises(ConfigError):
        server_ip(254)
    # A test world numbers its hosts the same way.
    world = SimWorld(1)
    assert [world.host(world.new_runtime(name)) for name in "abc"] == [
        node_ip(0), node_ip(1), node_ip(2)]  # fmt: skip


def test_the_scenario_networks_are_the_topology_builders(tiny: Path) -> None:
    """GnutellaNet is a GnutellaNetwork underneath: node i at node_ip(i) on
    its peer's link class, with its peer's files; Napster uses the same
    addresses for its peers and server_ip for its servers."""
    sc = load_scenario(str(tiny))
    pop = build_population(sc, 24, 1)
    sim = Simulator(1)
    net = GnutellaNet(sim, pop)
    assert isinstance(net.network, GnutellaNetwork)
    for peer, node in zip(pop.peers, net.network.nodes, strict=True):
        assert node.address == (node_ip(peer.index), topology.GNUTELLA_PORT)
        assert node.link_class is peer.link
        assert (node.host.up, node.host.down, node.host.latency) == (
            peer.link.up, peer.link.down, peer.link.latency)  # fmt: skip
        assert tuple(node.shares.files) == peer.files
    assert net.wait_connected()
    # Every overlay edge is open, seen from both ends.
    assert sorted(net.edges()) == sorted([*pop.edges, *((b, a) for a, b in pop.edges)])
    nap = NapsterNet(Simulator(1), pop, servers=2)
    assert [h.ip for h in nap.hosts] == [node_ip(i) for i in range(24)]
    assert [h.ip for h in nap.server_hosts] == [server_ip(0), server_ip(1)]


def test_catalog_files_are_sim_files_the_shares_find_by_title() -> None:
    f = catalog_file(12, 3)
    assert isinstance(f, topology.SimFile) and (f.rank, f.index) == (12, 3)
    assert sim_file(1, "w1.mp3").rank is None
    shares = MemoryShares([catalog_file(r, k + 1) for k, r in enumerate((5, 12, 40))])
    (found,) = shares.search(title_word(12))
    assert (found.rank, found.index, found.urn) == (12, 2, f.urn)
    assert shares.search(title_word(13)) == []
    assert shares.by_urn(f.urn) is found


def test_a_node_leaves_saying_bye_and_joins_again() -> None:
    sim = Simulator(3)
    # Node 1 keeps two connections itself: on its return it dials the
    # hosts it is told of.
    net = GnutellaNetwork(sim, 3, config_of=lambda i: {"target_degree": 2} if i == 1 else {})
    net.connect(line_edges(3))  # 0 - 1 - 2
    old = net.nodes[1].servent
    net.leave(1)
    sim.run(sim.now + 5)
    assert net.servent(1) is None and net.alive() == [0, 2]
    assert [net.nodes[i].servent.open_count for i in (0, 2)] == [0, 0]
    assert net.counter("rx.bye") == 2
    new = net.join(1, [net.nodes[0].address, net.nodes[2].address])
    sim.run(sim.now + 10)
    assert new is not old and net.servent(1) is new and net.alive() == [0, 1, 2]
    assert new.open_count == 2 and net.open_links() == 4
    assert new.config.target_degree == 2 and new.config.listen_host == node_ip(1)
    net.kill(2)
    with pytest.raises(ConfigError):
        net.join(2)
    net.close()


def test_dial_brings_nodes_in_one_after_the_other() -> None:
    """``dial``: node a dials its edges a * gap seconds on; a node that left
    by then dials nothing."""
    sim = Simulator(4)
    net = GnutellaNetwork(sim, 6)
    net.leave(5)
    net.dial(line_edges(6), gap=10.0)  # node i dials i - 1 at 10 i s
    sim.run(sim.now + 15)
    assert [node.servent.open_count for node in net.nodes[:3]] == [1, 1, 0]
    sim.run(sim.now + 60)
    assert [node.servent.open_count for node in net.nodes[:5]] == [1, 2, 2, 2, 1]
    assert net.open_links() == 8
    assert net.nodes[5].servent.counters["connections.opened"] == 0
    with pytest.raises(ConfigError):
        net.dial([(0, 6)], gap=1.0)
