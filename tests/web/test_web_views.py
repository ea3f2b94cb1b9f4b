"""What the page shows, computed from the node's JSON: transfer rows in the
lecture's words, network panels that light up when the node reports a network."""

from __future__ import annotations

from typing import Any

from peerlab.web.views import (
    counter_rates,
    download_row,
    network_views,
    transfer_rows,
    upload_row,
)


class _Node:
    peer_list = ["127.0.0.1:7", "127.0.0.1:8"]
    peer_state = {"127.0.0.1:7": {"ok": True, "at": 1.0, "detail": "answered with 3 file(s)"}}


def _views(status: dict[str, Any], now: dict[str, int], then: dict[str, int]) -> dict[str, Any]:
    views = network_views(_Node(), status, now, then, 2.0)  # type: ignore[arg-type]
    return {v["id"]: v for v in views}


def test_rows_speak_napster_s_transfer_window() -> None:
    d = download_row({"id": "NAP1", "network": "napster", "name": "Little Toot.mp3",
                      "size": 8_528_129, "done": 375_392, "status": "downloading",
                      "rate": 4140.0, "eta": 1970.0, "user": "F4phantom", "link": "DSL",
                      "sources": []})  # fmt: skip
    assert (d["key"], d["peer"], d["speed"], d["status_text"]) == (
        "d:NAP1", "F4phantom", "DSL", "Downloading..."
    )
    assert round(d["progress"], 3) == round(375_392 / 8_528_129, 3)
    many = download_row({"id": "X", "name": "a", "size": 10, "done": 10, "status": "complete",
                         "sources": [{"address": "127.0.0.1:1", "status": "idle"},
                                     {"address": "127.0.0.1:2", "status": "idle"}]})  # fmt: skip
    assert (many["peer"], many["progress"], many["status_text"]) == (
        "2 sources", 1.0, "File Complete!"
    )
    u = upload_row({"id": 3, "network": "napster", "peer": "cybermoose (56K)", "name": "Ohio",
                    "size": 3_709_496, "sent": 1000, "length": 2000, "status": "uploading",
                    "rate": 100.0})  # fmt: skip
    assert (u["peer"], u["speed"], u["eta"], u["progress"]) == ("cybermoose", "56K", 10.0, 0.5)
    rows = transfer_rows({"downloads": [{"id": "A", "sources": []}],
                          "uploads": [{"id": 1}, {"id": "N", "network": "napster"}]})
    assert list(rows) == ["d:A", "u:peers:1", "u:napster:N"]


def test_a_network_lights_up_when_the_node_reports_it() -> None:
    counters_then = {"gnutella.rx.query": 10, "gnutella.upload_bytes": 0}
    counters_now = {"gnutella.rx.query": 30, "gnutella.tx.ping": 4, "gnutella.upload_bytes": 9}
    dark = _views({"napster": None}, counters_now, counters_then)
    assert dark["gnutella"]["joined"] is False and dark["gnutella"]["rates"] == []
    assert dark["napster"]["joined"] is False
    lit = _views({"gnutella": {
        "state": "connected", "detail": "3 of 4 neighbours", "ultrapeer": True,
        "connections": [{"address": "192.0.2.1:6346", "role": "ultrapeer", "state": "open",
                         "messages_in": 12, "nested": {"x": 1}}],
    }}, counters_now, counters_then)  # fmt: skip
    g = lit["gnutella"]
    assert (g["joined"], g["state"], g["detail"]) == (True, "connected", "3 of 4 neighbours")
    assert ["Ultrapeer", True] in g["facts"]
    assert g["connections"] == [{"address": "192.0.2.1:6346", "role": "ultrapeer",
                                 "state": "open", "messages_in": 12}]  # fmt: skip
    # Messages per second over the window, by type; byte counters are the graph's.
    assert g["rates"] == [["rx.query", 10.0, 30], ["tx.ping", 2.0, 4]]
    peers = lit["peers"]
    assert [c["state"] for c in peers["connections"]] == ["answered", "not asked yet"]
    assert peers["monitor"] is True


def test_napster_panel_names_the_server_in_use() -> None:
    v = _views({"napster": {
        "state": "online", "detail": "127.0.0.1:8888", "server": "127.0.0.1:8888",
        "servers": ["127.0.0.1:8888", "127.0.0.1:8889", "127.0.0.1:8890"],
        "refusals": {"127.0.0.1:8890": "Invalid Password"}, "nick": "lefty", "link": "Cable",
        "data_port": 6699, "firewalled": False, "shared": 2, "shareable": 2, "logins": 3,
        "motd": ["Welcome"],
    }}, {}, {})["napster"]  # fmt: skip
    assert [(s["address"], s["in_use"], s["state"]) for s in v["servers"]] == [
        ("127.0.0.1:8888", True, "online"),
        ("127.0.0.1:8889", False, "standby"),
        ("127.0.0.1:8890", False, "refused: Invalid Password"),
    ]
    assert ["Nick", "lefty"] in v["facts"] and ["Logins", 3] in v["facts"]


def test_counter_rates_are_bounded_and_sorted() -> None:
    now = {f"napster.rx.t{i}": i for i in range(100)}
    rows = counter_rates(now, {}, 1.0, ("napster.",), "napster.")
    assert len(rows) == 24 and rows[0] == ["rx.t99", 99.0, 99]
