"""Fixtures every test directory may use.  pytest runs with
--import-mode=importlib, which puts no test folder on sys.path: the shared
kits in tests/kits/ go there (``import prockit``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_KITS = str(Path(__file__).resolve().parent / "kits")
if _KITS not in sys.path:
    sys.path.insert(0, _KITS)

from prockit import NodeProc, node_starter  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The per-user folders (XDG) of the node processes a test starts."""
    return tmp_path / "home"


@pytest.fixture
def start_node(tmp_path: Path, home: Path) -> Iterator[Callable[..., NodeProc]]:
    """``start_node(name, *args)`` starts a ``peerlab node`` process with data
    dir ``tmp_path/name``; every one is stopped at the end."""
    yield from node_starter(tmp_path, home)
