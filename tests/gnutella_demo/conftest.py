"""Fixtures for the Gnutella demo tests: ``peerlab node`` processes on 127.0.0.1.

The node process helpers are the Gnutella node tests' kit
(``tests/gnutella_node/gnodekit.py``), shared rather than copied.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "gnutella_node"))

from gnodekit import GNode  # noqa: E402
from prockit import node_starter  # noqa: E402


@pytest.fixture
def gdemo_node(tmp_path: Path) -> Iterator[Callable[..., GNode]]:
    """``gdemo_node(name, *args)`` starts a node; every one is stopped at the end."""
    yield from node_starter(tmp_path, tmp_path / "home")
