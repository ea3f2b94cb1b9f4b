"""Helpers for the two-tier tests (on top of tests/gnutella/gnetkit.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gnetkit import WAIT, File, Node, link, make_file, new_node

from peerlab.overlays.gnutella.roles import RolePolicy
from peerlab.runtime.worlds import World

#: Fast thresholds so that promotion happens within seconds of (virtual) time.
FAST_POLICY = RolePolicy(min_upload_bps=256_000, min_uptime=2.0, orphan_grace=2.0,
                         idle_grace=5.0, hold=1.0)  # fmt: skip
#: Link classes of the lecture (upload, bits/s).
MODEM = 33_600.0
DSL = 128_000.0
CABLE = 384_000.0
T1 = 1_544_000.0


def files_for(name: str, words: Sequence[str]) -> list[File]:
    return [make_file(i + 1, f"{name} {w}.mp3") for i, w in enumerate(words)]


def ultrapeer(world: World, name: str, files: Sequence[File] = (), **cfg: Any) -> Node:
    cfg.setdefault("qrp_interval", 0.5)
    return new_node(world, name, files, role="ultrapeer", **cfg)


def leaf(world: World, name: str, files: Sequence[File] = (), **cfg: Any) -> Node:
    cfg.setdefault("qrp_interval", 0.5)
    return new_node(world, name, files, role="leaf", **cfg)


def auto(world: World, name: str, upload: float, files: Any = (), **cfg: Any) -> Node:
    cfg.setdefault("qrp_interval", 0.5)
    cfg.setdefault("role_policy", FAST_POLICY)
    cfg.setdefault("maintain_interval", 0.25)
    cfg.setdefault("busy_retry", 2.0)
    return new_node(world, name, files, role="auto", upload_bps=upload, **cfg)


def attach(world: World, lf: Node, up: Node) -> None:
    """Connect leaf ``lf`` to ultrapeer ``up`` and wait until ``up`` holds its table."""
    link(world, lf, up)
    assert world.run_until(lambda: len(up.servent.tier.leaf_tables) >= _leaves(up), WAIT), (
        f"{up.name} has no QRP table of {lf.name}"
    )


def _leaves(up: Node) -> int:
    return len(up.servent.leaf_links())


def count(node: Node, name: str) -> int:
    return node.servent.counters[name]


__all__ = ["FAST_POLICY", "attach", "count", "files_for", "leaf", "make_file", "ultrapeer"]
