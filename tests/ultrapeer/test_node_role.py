"""``peerlab node --gnutella-role``: an ultrapeer node with leaf nodes under
it, routed to by QRP; ``status --gnutella`` shows the roles."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gnutella_node"))

from gnodekit import GNode, make_file, open_gnutella  # noqa: E402

SIZE = 40_000
#: Searches a test repeats at most while the leaf's table reaches its ultrapeer.
SEARCH_TRIES = 10


def _search(node: GNode, text: str) -> list[dict[str, Any]]:
    for _ in range(SEARCH_TRIES):
        results: list[dict[str, Any]] = node.json("search", text)
        if results:
            return results
        time.sleep(0.5)
    return []


@pytest.mark.slow
def test_leaf_nodes_under_an_ultrapeer_node(
    tmp_path: Path, start_node: Callable[..., GNode]
) -> None:
    make_file(tmp_path / "share_b", "Linkin Park - Numb.mp3", SIZE, seed=3)
    a = start_node("a", "--gnutella-serve", "--gnutella-role", "ultrapeer")
    addr_a = str(a.wait_ready()["listen"])
    b = start_node("b", "--gnutella", addr_a, "--gnutella-role", "leaf",
                    "--share", str(tmp_path / "share_b"))  # fmt: skip
    c = start_node("c", "--gnutella", addr_a, "--gnutella-role", "leaf")
    b.wait_ready(files=1)
    c.wait_ready()
    a.wait_for(lambda st: open_gnutella(st) >= 2)

    g = a.json("status", "--gnutella")
    assert g["role"] == "ultrapeer" and g["leaves"] == 2
    assert {c_["role"] for c_ in g["connections"] if c_["state"] == "open"} == {"leaf"}
    assert all(c_["deflate"] for c_ in g["connections"] if c_["state"] == "open")
    gc = c.json("status", "--gnutella")
    assert gc["role"] == "leaf" and gc["connections"][0]["role"] == "ultrapeer"
    assert "leaf" in c.cli("status", "--gnutella").stdout

    results = _search(c, "linkin park")
    assert results and any("Numb" in r["name"] for r in results), results
    counters = a.json("status", "--gnutella")["counters"]
    assert counters.get("queries.to_leaves", 0) >= 1
    assert counters.get("qrp.tables_received", 0) >= 1
    # C shares nothing: its table is empty, so no query is routed to it
    assert c.json("status", "--gnutella")["counters"].get("rx.query", 0) == 0


@pytest.mark.slow
def test_an_auto_node_with_a_fast_line_promotes_itself(
    tmp_path: Path, start_node: Callable[..., GNode]
) -> None:
    a = start_node("a", "--gnutella-serve", "--gnutella-upload-kbps", "1544",
                    "--gnutella-min-uptime", "1")  # fmt: skip
    addr_a = str(a.wait_ready()["listen"])
    assert a.json("status", "--gnutella")["role"] == "leaf"  # measured: starts low
    c = start_node("c", "--gnutella", addr_a, "--gnutella-role", "leaf")
    c.wait_ready()
    # c's knock proves a reachable; with a T1 line and no ultrapeer around, a promotes
    a.wait_for(lambda st: st["gnutella"]["role"] == "ultrapeer", timeout=60.0)
    assert a.json("status", "--gnutella")["counters"].get("roles.promoted") == 1
