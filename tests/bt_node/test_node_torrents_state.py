"""The node's torrent list (``<data_dir>/bittorrent/torrents.json``): a list
written by hand, or left with a missing ``.torrent`` copy, costs only the
entries that are wrong; a good one comes back stopped as it was left, with
its goals, limits and totals (issue 6, item 6).  The listening port picked
at the first start is used again at the next."""

from __future__ import annotations

import json
from pathlib import Path

from swarmkit import content, metainfo, single_file

from peerlab.apps.torrents import LIST_FILE, PORT_FILE, STATE_DIR, NodeTorrents
from peerlab.runtime.aio import AsyncioRuntime


def _node(rt: AsyncioRuntime, data_dir: Path) -> NodeTorrents:
    return NodeTorrents(rt, data_dir, download_dir=data_dir / "dl", listen_host="127.0.0.1",
                        listen_port=None)


async def test_bad_entries_cost_only_themselves_and_good_ones_come_back(tmp_path: Path) -> None:
    rt = AsyncioRuntime()
    data = content(64 * 1024, b"state")
    torrent = metainfo(single_file(data, 16 * 1024)).to_bytes()
    first = _node(rt, tmp_path)
    first.start()
    row = first.add(torrent=torrent, seed_ratio=2, up_limit="100K", paused=True)["torrent"]
    ih = row["info_hash"]
    assert row["status"] == "stopped" and row["seed_ratio"] == 2.0
    assert first.session is not None
    port = first.session.listen_port
    assert (tmp_path / STATE_DIR / PORT_FILE).read_text().strip() == str(port)
    await first.close()

    state = tmp_path / STATE_DIR
    listing = json.loads((state / LIST_FILE).read_text())
    listing["torrents"] += [
        {"info_hash": "zz" * 20, "save_path": "/x"},  # not hex
        {"info_hash": "ab" * 20, "save_path": "/x"},  # no .torrent copy
        {"info_hash": "cd" * 20, "save_path": 7, "magnet": 3},  # wrong types
        "garbage",
    ]
    (state / LIST_FILE).write_text(json.dumps(listing))
    again = _node(rt, tmp_path)
    again.start()
    try:
        # the remembered port again (it was free: the first node closed it)
        assert again.session is not None and again.session.listen_port == port
        rows = again.torrents()
        assert [r["info_hash"] for r in rows] == [ih]
        (r,) = rows
        assert r["status"] == "stopped" and r["seed_ratio"] == 2.0
        assert r["up_limit"] == 100 * 1024
        assert set(again.entries) == {ih}
    finally:
        await again.close()
    # a list of another version is not read (and not fatal)
    (state / LIST_FILE).write_text(json.dumps({"version": 99, "torrents": []}))
    third = _node(rt, tmp_path)
    third.start()
    assert third.torrents() == []
    await third.close()
