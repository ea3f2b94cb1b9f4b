"""Fixtures of the upload service tests; helpers live in servekit.py beside this
file, which pytest's importlib mode does not put on sys.path by itself."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from servekit import Server, Shares, make_shares, start_server, stop_server  # noqa: E402


@pytest.fixture
def shares(tmp_path: Path) -> Iterator[Shares]:
    s = make_shares(tmp_path)
    yield s
    s.catalog.close()


@pytest.fixture
async def server(shares: Shares) -> AsyncIterator[Server]:
    srv = await start_server(shares)
    yield srv
    stop_server(srv)
