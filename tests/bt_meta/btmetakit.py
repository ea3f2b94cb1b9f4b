"""Helpers for the metainfo tests: torrents built by hand, byte for byte,
so that the parser sees exactly what a hostile or broken creator would write."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peerlab.wire.bencode import encode

PIECE = 16384


def piece_count(total: int, piece_length: int = PIECE) -> int:
    return -(-total // piece_length)


def pieces_of(data: bytes, piece_length: int = PIECE) -> bytes:
    """BEP 3 ``pieces`` of ``data``: SHA-1 of each piece, concatenated."""
    return b"".join(
        hashlib.sha1(data[i : i + piece_length]).digest()
        for i in range(0, len(data), piece_length)
    )


def single_info(name: Any = "file.bin", length: int = 40000, piece_length: int = PIECE,
                **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"name": name, "length": length, "piece length": piece_length,
                            "pieces": bytes(20 * piece_count(length, piece_length))}
    info.update(extra)
    return info


def multi_info(files: Sequence[tuple[Sequence[Any], int]], name: Any = "folder",
               piece_length: int = PIECE, **extra: Any) -> dict[str, Any]:
    total = sum(n for _, n in files)
    info: dict[str, Any] = {
        "name": name,
        "files": [{"length": n, "path": list(p)} for p, n in files],
        "piece length": piece_length,
        "pieces": bytes(20 * piece_count(total, piece_length)),
    }
    info.update(extra)
    return info


def torrent(info: dict[str, Any], top: dict[str, Any] | None = None) -> bytes:
    """A .torrent file holding ``info`` and the top-level entries ``top``."""
    return encode({"info": info, **(top or {})})


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``files`` ({"a/b.bin": data}) under ``root``; return ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def pseudo_random(n: int, seed: int = 1) -> bytes:
    """``n`` reproducible bytes that do not repeat within a piece."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])
