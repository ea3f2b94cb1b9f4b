"""Helpers of the bt_node tests: the bt_swarm helpers (swarmkit) and
nodekit.py beside this file, importable from here (pytest runs with
--import-mode=importlib, which puts no test folder on sys.path).  The
node-process fixtures ``home`` and ``start_node`` come from tests/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _dir in (_TESTS / "bt_swarm", Path(__file__).resolve().parent):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))
