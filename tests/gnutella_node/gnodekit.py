"""Helpers for the Gnutella node tests: ``peerlab node`` processes on 127.0.0.1
(the shared kit, tests/kits/prockit.py, under the name these tests know) and
files to share."""

from __future__ import annotations

import random
from pathlib import Path

from prockit import NodeProc as GNode
from prockit import open_gnutella

__all__ = ["GNode", "make_file", "open_gnutella"]


def make_file(folder: Path, name: str, size: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path
