"""``peerlab status --gnutella`` and ``peerlab search --ttl`` (issue 4, section 4).

Two nodes: A serves, B joins through A.  B searches with TTL 1; the
per-message-type counters of both show the Query going B -> A and the Query
Hit coming back, and nothing forwarded past A (its TTL was spent).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gnodekit import GNode, make_file, open_gnutella

COLUMNS = {"sent", "received", "dropped_duplicate", "dropped_ttl", "routed"}


def test_status_gnutella_reports_per_type_counters(
    tmp_path: Path, gdemo_node: Callable[..., GNode]
) -> None:
    make_file(tmp_path / "share_a", "The Big Lebowski.mp3", 20_000, seed=3)
    a = gdemo_node("a", "--gnutella-serve", "--share", str(tmp_path / "share_a"))
    addr_a = str(a.wait_ready(files=1)["listen"])
    b = gdemo_node("b", "--gnutella", addr_a)
    b.wait_ready()
    b.wait_for(lambda st: open_gnutella(st) >= 1)
    a.wait_for(lambda st: open_gnutella(st) >= 1)

    before_a = a.json("status", "--gnutella")["messages"]
    before_b = b.json("status", "--gnutella")["messages"]
    results = b.json("search", "lebowski", "--ttl", "1")
    assert [r["name"] for r in results] == ["The Big Lebowski.mp3"]
    assert results[0]["hosts"][0]["host"] == addr_a

    st_a = a.json("status", "--gnutella")
    st_b = b.json("status", "--gnutella")
    # The gnutella object alone, with its connections and raw counters too.
    assert {"guid", "connections", "counters", "messages"} <= set(st_a)
    msgs_a, msgs_b = st_a["messages"], st_b["messages"]
    for kind in ("ping", "pong", "query", "query_hit", "push", "bye"):
        assert set(msgs_a[kind]) == COLUMNS and set(msgs_b[kind]) == COLUMNS

    def grew(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]],
             kind: str, col: str) -> int:  # fmt: skip
        return after[kind][col] - before[kind][col]

    assert grew(msgs_b, before_b, "query", "sent") == 1
    assert grew(msgs_a, before_a, "query", "received") == 1
    assert grew(msgs_a, before_a, "query", "routed") == 0  # TTL 1: A is as far as it goes
    assert grew(msgs_a, before_a, "query_hit", "sent") >= 1
    assert grew(msgs_b, before_b, "query_hit", "received") >= 1
    # The table agrees with the raw counters it is made of.
    assert msgs_a["query"]["received"] == st_a["counters"]["rx.query"]
    assert msgs_b["query"]["sent"] == st_b["counters"]["tx.query"]

    table = b.cli("status", "--gnutella").stdout
    assert "Messages" in table and "query_hit" in table and "TTL dropped" in table
    assert addr_a in table


def test_status_gnutella_off_gnutella_says_so(gdemo_node: Callable[..., GNode]) -> None:
    n = gdemo_node("plain")
    n.wait_ready()
    p = n.cli("status", "--gnutella", check=False)
    assert p.returncode != 0
    assert "not on Gnutella" in p.stderr and "Traceback" not in p.stderr
