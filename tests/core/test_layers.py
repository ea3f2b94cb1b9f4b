"""DESIGN.md's one property: wire/ and proto/ touch no sockets, clock, randomness or OS;
overlays/ and storage/ never import asyncio. Checked on the source, module by module."""

from __future__ import annotations

import ast
from pathlib import Path

import peerlab

SRC = Path(peerlab.__file__).resolve().parent
PURE_FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "selectors"}
CORE_FORBIDDEN = {"asyncio"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def offenders(layer: str, forbidden: set[str]) -> dict[str, set[str]]:
    found = {}
    for path in sorted((SRC / layer).rglob("*.py")):
        bad = imported_roots(path) & forbidden
        if bad:
            found[str(path.relative_to(SRC))] = bad
    return found


def test_wire_and_proto_are_pure() -> None:
    assert (SRC / "wire").is_dir() and (SRC / "proto").is_dir()
    assert offenders("wire", PURE_FORBIDDEN) == {}
    assert offenders("proto", PURE_FORBIDDEN) == {}


def test_overlays_and_storage_never_import_asyncio() -> None:
    assert offenders("overlays", CORE_FORBIDDEN) == {}
    assert offenders("storage", CORE_FORBIDDEN) == {}


def test_lower_layers_never_import_upper_ones() -> None:
    order = ["wire", "proto", "overlays", "apps"]
    for i, layer in enumerate(order[:-1]):
        upper = {f"peerlab.{u}" for u in order[i + 1 :]} | {"peerlab.cli", "peerlab.web"}
        for path in (SRC / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not any(node.module.startswith(u) for u in upper), (path, node.module)
