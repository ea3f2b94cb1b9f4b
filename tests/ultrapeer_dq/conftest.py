"""Fixtures for the dynamic-query and push-proxy tests: the servent kit of
tests/gnutella (gnetkit) and the node-process kit of tests/gnutella_node
(gnodekit) are importable from here (importlib mode puts no test folder on
sys.path)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent.parent
for _sub in ("gnutella", "gnutella_node", "serve"):
    _dir = str(_TESTS / _sub)
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

from gnetkit import make_world  # noqa: E402
from gnodekit import GNode  # noqa: E402
from prockit import node_starter  # noqa: E402

from peerlab.runtime.worlds import World  # noqa: E402


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test body on 127.0.0.1 and in the simulator."""
    w: World = make_world(request.param)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def start_gnode(tmp_path: Path) -> Iterator[Callable[..., GNode]]:
    """``start_gnode(name, *args)`` starts a node; every one is stopped at the end."""
    yield from node_starter(tmp_path, tmp_path / "home")
