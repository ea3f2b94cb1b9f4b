"""Helpers of the bt_node tests: a shared file made into a torrent, a node
seeding it; node processes are the shared kit's (tests/kits/prockit.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bt_swarm"))
import swarmkit  # noqa: E402
from prockit import NodeProc as NodeProc  # noqa: E402  (re-exported for the tests)

content = swarmkit.content  # deterministic, incompressible bytes

KIB = 1024
#: Bound of every wait here (never asserted as a timing).
WAIT = 120.0
POLL = 0.2


def torrents(node: Any) -> list[dict[str, Any]]:
    return json.loads(node.cli("torrent", "list", "--json").stdout)["torrents"]  # type: ignore[no-any-return]


def torrent_row(node: Any, ih: str) -> dict[str, Any] | None:
    for t in torrents(node):
        if t["info_hash"] == ih:
            return t  # type: ignore[no-any-return]
    return None


def wait_for(node: Any, ih: str, pred: Any, what: str, limit: float = WAIT) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    row = None
    while time.monotonic() < deadline:
        row = torrent_row(node, ih)
        if row is not None and pred(row):
            return row
        time.sleep(POLL)
    raise AssertionError(f"{what}: not reached in {limit} s; last row {row}\n{node.output()}")


def bt_listen(node: Any) -> str:
    return str(node.json("status")["bittorrent"]["listen"])
