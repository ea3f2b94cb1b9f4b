"""Helpers for the Gnutella node tests: ``peerlab node`` processes on 127.0.0.1
(the shared kit, tests/kits/prockit.py, under the name these tests know),
files to share, and finding one file among a search's results."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from prockit import NodeProc as GNode
from prockit import open_gnutella

from peerlab.wire.urn import sha1_urn

__all__ = ["GNode", "file_urn", "make_file", "open_gnutella", "result_for"]


def make_file(folder: Path, name: str, size: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def file_urn(path: Path) -> str:
    """The ``urn:sha1`` (HUGE) of a file on disk."""
    return sha1_urn(hashlib.sha1(path.read_bytes()).digest())


def result_for(results: list[dict[str, Any]], urn: str) -> dict[str, Any]:
    """The row of ``peerlab search --json`` for ``urn``."""
    for r in results:
        if r["urn"] == urn:
            return r
    raise AssertionError(f"{urn} not among {results}")
