"""The search experiment's networks measure what the architectures do."""

from __future__ import annotations

from pathlib import Path

from peerlab.sim import Simulator
from peerlab.simulate.engine import run_scenario
from peerlab.simulate.measure import run_queries
from peerlab.simulate.nets import GnutellaNet, NapsterNet
from peerlab.simulate.population import build_population, build_queries
from peerlab.simulate.scenario import load_scenario


def rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


def test_search_rows_and_report(tiny: Path, tmp_path: Path) -> None:
    run = run_scenario(str(tiny), out=tmp_path)
    (report,) = run.reports
    got = rows(tmp_path / "search.csv")
    big = {(r["architecture"], r["ttl"]): r for r in got if r["nodes"] == "40"}
    nap, farm = big[("napster", "0")], big[("napster-farm", "0")]
    g1, g3 = big[("gnutella", "1")], big[("gnutella", "3")]
    # The index answers every query whose file another peer shares.
    assert float(nap["answered_fraction"]) == 1.0
    # Napster: the request, one frame per result, the end.
    assert float(nap["messages_per_query"]) == 2 + float(nap["results_per_query"])
    # The farm spreads the load: each server sees part of it.
    assert float(farm["busiest_msgs_per_s"]) < float(nap["busiest_msgs_per_s"])
    assert farm["results_per_query"] == nap["results_per_query"]
    # Flooding: more TTL, more answered, many more messages.
    assert float(g3["answered_fraction"]) > float(g1["answered_fraction"])
    assert float(g3["messages_per_query"]) > 3 * float(g1["messages_per_query"])
    assert float(g3["messages_per_query"]) > float(nap["messages_per_query"])
    assert [f.path.name for f in report.figures][:1] == ["search_cost.png"]
    for fig in report.figures:
        assert fig.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig.command == f"peerlab simulate {tiny} --seed 5 --out {tmp_path}"
    md = (tmp_path / "search.md").read_text()
    assert "![" in md and "Reproduce: `peerlab simulate" in md
    labels = [r["architecture"] for r in report.rows]
    assert labels == ["napster", "napster-farm", "gnutella TTL 3"]


def test_gnutella_counts_match_the_servents(tiny: Path) -> None:
    """Messages per query are the servents' own Query + Query Hit counters."""
    sc = load_scenario(str(tiny))
    pop = build_population(sc, 24, 1)
    sim = Simulator(1)
    net = GnutellaNet(sim, pop)
    assert net.wait_connected()
    sim.run(sim.now + 2)
    before = sum(s.counters["tx.query"] + s.counters["tx.query_hit"] for s in net.servents if s)
    queries = build_queries(sc, pop, 1, count=5)
    m = run_queries(net, queries, ttl=2, interval=0.1, wait=3)
    after = sum(s.counters["tx.query"] + s.counters["tx.query_hit"] for s in net.servents if s)
    assert m.messages_per_query * m.queries == after - before > 0
    assert sum(s.counters["internal_errors"] for s in net.servents if s) == 0


def test_napster_farm_fails_over(tiny: Path) -> None:
    """Kill one server of the farm: its users log in to the other, and the
    index answers again; kill the only server: nothing answers."""
    sc = load_scenario(str(tiny))
    pop = build_population(sc, 24, 1)
    for servers in (2, 1):
        sim = Simulator(2)
        net = NapsterNet(sim, pop, servers=servers)
        assert net.wait_connected()
        assert {net.server_of(i) for i in range(24)} == set(range(servers))
        net.kill_server(0)
        sim.run(sim.now + 10)
        queries = build_queries(sc, pop, 1, count=8)
        m = run_queries(net, queries, ttl=0, interval=0.1, wait=5)
        if servers == 2:
            assert {net.server_of(i) for i in range(24)} == {1}
            assert m.answered_fraction == 1.0 and m.answerable > 0
        else:
            assert {net.server_of(i) for i in range(24)} == {None}
            assert m.answered == 0
