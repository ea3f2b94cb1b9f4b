"""The dynamic query algorithm alone (``dynamic_query`` section 2.5), driven
with explicit ``now``: probe, TTL choice, waits, termination."""

from __future__ import annotations

from peerlab.overlays.gnutella.dynquery import (
    MAX_DQ_TTL,
    STATUS_STOP,
    Candidate,
    DqSettings,
    DynamicQuery,
    horizon,
    next_ttl,
)


def cands(n: int, degree: int = 32, max_ttl: int = 4) -> list[Candidate]:
    return [Candidate(i, degree, max_ttl) for i in range(1, n + 1)]


def test_horizon_is_the_specs_sum() -> None:
    # hosts(degree, ttl) = Sum[(degree-1)^i, 0 <= i <= ttl-1] (2.5.2.2)
    assert horizon(32, 1) == 1
    assert horizon(32, 2) == 1 + 31
    assert horizon(32, 3) == 1 + 31 + 31**2
    assert horizon(6, 7) == sum(5**i for i in range(7))  # the spec's degree-6 example
    # A degree stated beyond 32 counts as 32 (the peer's word, bounded).
    assert horizon(10_000, 3) == horizon(32, 3)


def test_next_ttl_follows_results_per_ultrapeer() -> None:
    # No result yet: rare content, the highest TTL allowed.
    assert next_ttl(wanted=150, results=0, queried=100, remaining=10, degree=32,
                    max_ttl=3) == 3  # fmt: skip
    # Popular: 100 results from 3 ultrapeers, 50 more from 10 connections:
    # 1.5 ultrapeers per connection -> TTL 1.
    assert next_ttl(wanted=150, results=100, queried=3, remaining=10, degree=32,
                    max_ttl=4) == 1  # fmt: skip
    # 1 result per 100 ultrapeers, 149 needed over 5 connections: ~2980 each
    # -> TTL 3 reaches 993 (not enough), TTL 4 reaches 30,784; TTL 3 takes
    # over half? no: 993 < 1490, so TTL 4 (capped by max_ttl).
    assert next_ttl(wanted=150, results=1, queried=100, remaining=5, degree=32,
                    max_ttl=4) == 4  # fmt: skip
    assert next_ttl(wanted=150, results=1, queried=100, remaining=5, degree=32,
                    max_ttl=2) == 2  # fmt: skip
    # Weighted toward the lower TTL: 20 hosts per connection, TTL 2 gives 32,
    # TTL 1 gives 1 (< half of 20), so TTL 2; 1.8 hosts: TTL 1 covers half.
    assert next_ttl(wanted=21, results=1, queried=1, remaining=1, degree=32, max_ttl=4) == 2
    assert next_ttl(wanted=20, results=10, queried=10, remaining=5, degree=32, max_ttl=4) == 1


def test_probe_goes_to_three_connections_at_ttl_2_then_waits() -> None:
    q = DynamicQuery(150, started=0.0)
    probe = q.start(0.0, cands(10))
    assert probe == [(1, 2), (2, 2), (3, 2)]
    # 2.4 s per hop of the probe, plus a second per extra probed connection.
    assert q.next_at == 2.4 * 2 + 1.0 * 2
    assert q.queried == 3 * horizon(32, 2)
    # Before the wait is over, nothing more goes out.
    assert q.step(1.0, cands(10)) == []
    assert q.finished is None


def test_probe_respects_a_peers_max_ttl() -> None:
    q = DynamicQuery(150, started=0.0)
    assert q.start(0.0, [Candidate(7, 32, 1)]) == [(7, 1)]


def test_widening_one_connection_at_a_time_until_enough_results() -> None:
    q = DynamicQuery(50, started=0.0, settings=DqSettings(wait_per_hop=1.0,
                                                          probe_extra_per_connection=0.0))
    c = cands(8)
    q.start(0.0, c)
    now = q.next_at
    sent: list[tuple[int, int]] = []
    for _ in range(8):
        out = q.step(now, c)
        if not out:
            break
        assert len(out) == 1  # one connection per iteration (2.5.2)
        sent += out
        q.add_results(10)
        now = q.next_at
    # 10 results per iteration, 50 wanted: 5 iterations after the probe
    # (whose results were 0), then done.
    assert [lid for lid, _ in sent] == [4, 5, 6, 7, 8]
    assert sent[0][1] == MAX_DQ_TTL  # the probe found nothing: rare, highest TTL
    assert q.finished == "enough_results"


def test_enough_results_stops_the_query() -> None:
    q = DynamicQuery(50, started=0.0)
    c = cands(10)
    q.start(0.0, c)
    q.add_results(60)
    assert q.step(q.next_at, c) == []
    assert q.finished == "enough_results"
    assert len(q.sent_to) == 3  # only the probe went out


def test_other_ends() -> None:
    c = cands(4)
    q = DynamicQuery(150, started=0.0)
    q.start(0.0, c)
    for _ in range(10):
        q.step(q.next_at, c)
    assert q.finished == "no_connections" and len(q.sent_to) == 4

    q = DynamicQuery(150, started=0.0, settings=DqSettings(max_horizon=90))
    q.start(0.0, cands(20))
    assert q.step(q.next_at, cands(20)) == [] and q.finished == "horizon"

    q = DynamicQuery(150, started=0.0, settings=DqSettings(lifetime=5.0))
    q.start(0.0, cands(20, degree=2))
    assert q.step(10.0, cands(20, degree=2)) == [] and q.finished == "lifetime"

    q = DynamicQuery(150, started=0.0)
    assert q.start(0.0, []) == [] and q.finished == "no_connections"


def test_leaf_status_guides_the_query() -> None:
    c = cands(10)
    q = DynamicQuery(50, started=0.0)
    q.start(0.0, c)
    q.add_results(80)  # hits routed through us, but the leaf kept only 5
    q.leaf_status(5)
    assert q.counted == 5
    assert q.step(q.next_at, c) != []  # still searching
    q.leaf_status(STATUS_STOP)  # the leaf has enough
    assert q.step(q.next_at, c) == [] and q.finished == "leaf_stopped"


def test_a_connection_that_appears_mid_query_is_used() -> None:
    q = DynamicQuery(150, started=0.0)
    q.start(0.0, cands(3))
    assert q.step(q.next_at, cands(3)) == [] and q.finished == "no_connections"
    q = DynamicQuery(150, started=0.0)
    q.start(0.0, cands(3))
    out = q.step(q.next_at, [*cands(3), Candidate(99, 10, 3)])
    assert out == [(99, 3)]
