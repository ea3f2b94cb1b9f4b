"""Fixtures for the Gnutella node tests (node processes: tests/kits/prockit.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from prockit import NodeProc, node_starter  # noqa: E402


@pytest.fixture
def start_gnode(tmp_path: Path) -> Iterator[Callable[..., NodeProc]]:
    """``start_gnode(name, *args)`` starts a node; every one is stopped at the end."""
    yield from node_starter(tmp_path, tmp_path / "home")
