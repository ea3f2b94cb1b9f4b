"""Helpers of the bt_node tests: a shared file made into a torrent, a node
seeding it, and the node-process kit of tests/node."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bt_swarm"))
import swarmkit  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "node_conftest", Path(__file__).resolve().parent.parent / "node" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
node_conftest = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("node_conftest", node_conftest)
_spec.loader.exec_module(node_conftest)
NodeProc = node_conftest.NodeProc
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
