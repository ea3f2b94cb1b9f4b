"""The ultrapeer tests reuse the servent tests' kit (tests/gnutella/gnetkit.py)
and add upkit.py beside this file; pytest runs with --import-mode=importlib,
which puts no test folder on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _dir in (_HERE, _HERE.parent / "gnutella"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

import pytest  # noqa: E402

from peerlab.runtime.worlds import World  # noqa: E402


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The same test body on 127.0.0.1 and in the simulator."""
    from gnetkit import make_world

    w: World = make_world(request.param)
    try:
        yield w
    finally:
        w.close()
