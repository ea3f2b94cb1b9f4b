"""Helpers of the bt_node tests: the bt_swarm helpers (swarmkit) and the
node-process kit of tests/node, importable from here (pytest runs with
--import-mode=importlib, which puts no test folder on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _dir in (_TESTS / "bt_swarm", Path(__file__).resolve().parent):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

from nodekit import node_conftest  # noqa: E402

#: The node-process fixtures of tests/node (``start_node``, ``home``).
home = node_conftest.home
start_node = node_conftest.start_node
