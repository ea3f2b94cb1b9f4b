"""The DHT inside ``peerlab node`` (issue 6, items 5 and 6): a node process
runs a DHT node beside its BitTorrent session; a libtorrent seed with no
tracker, bootstrapped to that DHT node, is found by the node and its file
downloaded byte for byte; ``peerlab status`` shows the DHT's node count; the
routing table and the node id survive a restart.  Everything on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dhtswarmkit import LtDhtPeer
from nodekit import NodeProc, content, wait_for
from swarmkit import metainfo, single_file, write_files

from peerlab.apps.bt_dht import STATE_FILE

Start = Callable[..., NodeProc]
#: Bound of each wait (never asserted as a timing).
WAIT = 60.0


def _dht(node: NodeProc) -> dict[str, Any]:
    st = node.json("status")["dht"]
    assert st is not None
    return st  # type: ignore[no-any-return]


def _until(pred: Callable[[], bool], what: str, poke: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if pred():
            return
        if poke is not None:
            poke()
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached in {WAIT} s")


@pytest.mark.slow
def test_a_node_finds_a_trackerless_libtorrent_seed_through_its_dht(
    start_node: Start, tmp_path: Path
) -> None:
    pytest.importorskip("libtorrent", reason="libtorrent (PyPI) is a test dependency")
    node = start_node("node", "--bittorrent-port", "0", "--dht-port", "0")
    node.wait_ready()
    st = _dht(node)
    assert st["nodes"] == 0 and st["address"].startswith("127.0.0.1:")
    host, port = st["address"].rsplit(":", 1)

    data = content(500_000, b"node-dht")
    info = single_file(data, 32768, name="found-in-the-dht.bin")
    meta = metainfo(info)  # no tracker
    seed_dir = tmp_path / "lt-seed"
    write_files(seed_dir, info, data)
    lt_peer = LtDhtPeer((host, int(port)))
    try:
        lt_peer.add(meta.to_bytes(), seed_dir, seed=True)
        # libtorrent joins through the node's DHT node and announces there
        _until(lambda: _dht(node)["stored_peers"] >= 1, "libtorrent announced",
               poke=lt_peer.handle.force_dht_announce)  # fmt: skip
        assert _dht(node)["nodes"] >= 1  # libtorrent's DHT node, in our table
        text = node.cli("status").stdout
        assert "dht:" in text and "node(s) in the routing table" in text

        tfile = tmp_path / "found.torrent"
        tfile.write_bytes(meta.to_bytes())
        node.cli("torrent", "add", str(tfile))
        ih = info.info_hash.hex()
        row = wait_for(node, ih, lambda r: r["status"] == "seeding", "downloaded via the DHT")
        assert Path(row["path"]).read_bytes() == data
    finally:
        lt_peer.close()

    # the routing table and the node id survive a restart
    node_id = _dht(node)["node_id"]
    node.stop()
    state = node.data_dir / "bittorrent" / STATE_FILE
    assert state.exists()
    node.start()  # the same data dir
    node.wait_ready()
    again = _dht(node)
    assert again["node_id"] == node_id


def test_dht_settings_and_the_switch(start_node: Start) -> None:
    node = start_node("off", "--bittorrent-port", "0", "--no-dht")
    node.wait_ready()
    status = node.json("status")
    assert status["dht"] is None
    assert status["bittorrent"]["dht_nodes"] is None
    bad = start_node("bad", "--bittorrent-port", "0", "--dht-bootstrap", "nonsense")
    assert bad.proc is not None and bad.wait(30) != 0
    assert "dht_bootstrap" in bad.output() or "HOST:PORT" in bad.output()
