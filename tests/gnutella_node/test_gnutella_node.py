"""Nodes on Gnutella end to end (issue 4, section 3), as ``peerlab node`` processes.

A is the first servent (``--gnutella-serve``); B, C (and the firewalled D)
join through A only.  C searches, finds the file A and B share grouped under
one urn:sha1 with both sources, and downloads it from both at once; then a
file only the firewalled D shares comes through Push/GIV.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gnodekit import GNode, file_urn, make_file, open_gnutella, result_for

SIZE = 1_500_000
RATE = "400K"  # slow enough that both sources take part


def test_three_nodes_search_and_swarm(
    tmp_path: Path, start_gnode: Callable[..., GNode]
) -> None:
    shared = make_file(tmp_path / "share_a", "The Big Lebowski.mp3", SIZE, seed=7)
    make_file(tmp_path / "share_b", "big lebowski (copy).mp3", SIZE, seed=7)
    urn = file_urn(shared)
    a = start_gnode("a", "--gnutella-serve", "--share", str(tmp_path / "share_a"),
                    "--upload-rate", RATE)  # fmt: skip
    addr_a = str(a.wait_ready(files=1)["listen"])
    b = start_gnode("b", "--gnutella", addr_a, "--share", str(tmp_path / "share_b"),
                    "--upload-rate", RATE)  # fmt: skip
    c = start_gnode("c", "--gnutella", addr_a)
    b.wait_ready(files=1)
    c.wait_ready()
    a.wait_for(lambda st: open_gnutella(st) >= 2)
    c.wait_for(lambda st: open_gnutella(st) >= 1)

    st_c = c.json("status")
    conn = st_c["gnutella"]["connections"][0]
    assert conn["direction"] == "out" and conn["role"] == "ultrapeer"
    assert conn["listen"] == addr_a

    results = c.json("search", "lebowski")
    r = result_for(results, urn)
    hosts = {h["host"]: h for h in r["hosts"]}
    addr_b = str(b.json("status")["listen"])
    assert set(hosts) == {addr_a, addr_b}
    assert all(h["push"] is False and h["vendor"] == "PLAB" for h in hosts.values())
    # C joined through A alone; B may have become its neighbour through A's X-Try.
    assert hosts[addr_a]["distance"] == 1 and hosts[addr_b]["distance"] in (1, 2)
    # The human table shows the Gnutella columns.
    table = c.cli("search", "lebowski").stdout
    assert addr_a in table and "Speed" in table

    out = c.json("download", str(r["id"]), "--wait")
    dl = out["download"]
    assert dl["status"] == "complete", dl
    got = Path(dl["path"])
    assert got.read_bytes() == shared.read_bytes()
    served = {s["address"]: s["bytes"] for s in dl["sources"]}
    assert served.get(addr_a, 0) > 0 and served.get(addr_b, 0) > 0, served
    assert sum(served.values()) >= SIZE
    for node in (a, b):
        assert node.json("status")["counters"].get("upload.bytes", 0) > 0
    # The servents counted what crossed them.
    counters_c = c.json("status")["gnutella"]["counters"]
    assert counters_c.get("searches.started", 0) >= 2, counters_c
    assert "gnutella" in c.cli("status").stdout


def test_download_from_a_firewalled_node_through_push(
    tmp_path: Path, start_gnode: Callable[..., GNode]
) -> None:
    shared = make_file(tmp_path / "share_d", "Dude abides.ogg", 600_000, seed=11)
    urn = file_urn(shared)
    a = start_gnode("a", "--gnutella-serve")
    addr_a = str(a.wait_ready()["listen"])
    d = start_gnode("d", "--gnutella", addr_a, "--gnutella-firewalled",
                    "--share", str(tmp_path / "share_d"))  # fmt: skip
    c = start_gnode("c", "--gnutella", addr_a)
    d.wait_ready(files=1)
    c.wait_ready()
    a.wait_for(lambda st: open_gnutella(st) >= 2)

    # A download named by urn alone: the node asks Gnutella by hash (HUGE).
    d2 = start_gnode("c2", "--gnutella", addr_a)
    d2.wait_ready()
    d2.wait_for(lambda st: open_gnutella(st) >= 1)
    by_urn = d2.json("download", urn, "--wait")["download"]
    assert by_urn["status"] == "complete", by_urn
    assert Path(by_urn["path"]).read_bytes() == shared.read_bytes()

    r = result_for(c.json("search", "abides"), urn)
    assert [h["push"] for h in r["hosts"]] == [True]
    dl = c.json("download", str(r["id"]), "--wait")["download"]
    assert dl["status"] == "complete", dl
    assert Path(dl["path"]).read_bytes() == shared.read_bytes()
    counters_d = d.json("status")["counters"]
    assert counters_d.get("upload.push_connected", 0) >= 2, counters_d
    # Both downloads (by urn, then by search id) came from D alone, pushed.
    assert counters_d.get("upload.bytes", 0) == 2 * shared.stat().st_size
    # D never accepted a connection: every one it has, it opened.
    assert all(c_["direction"] == "out" for c_ in d.json("status")["gnutella"]["connections"])
    assert c.json("status")["counters"].get("transfer.push_connected", 0) >= 1
