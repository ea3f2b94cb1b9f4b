"""Fixtures for the Gnutella node tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gnodekit import GNode  # noqa: E402


@pytest.fixture
def start_gnode(tmp_path: Path) -> Iterator[Callable[..., GNode]]:
    """``start_gnode(name, *args)`` starts a node; every one is stopped at the end."""
    started: list[GNode] = []

    def start(name: str, *args: str) -> GNode:
        n = GNode(tmp_path / "home", tmp_path / name, list(args)).start()
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()
