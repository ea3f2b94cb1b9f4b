"""The promotion policy (roles.py): a pure function of measured inputs."""

from __future__ import annotations

import pytest

from peerlab.errors import ConfigError
from peerlab.overlays.gnutella.roles import (
    LEAF,
    ULTRAPEER,
    RoleInputs,
    RolePolicy,
    RoleTracker,
    decide_role,
    ultrapeer_capable,
)

POLICY = RolePolicy(min_upload_bps=256_000, min_uptime=300, orphan_grace=30,
                    idle_grace=120, hold=60)  # fmt: skip
STRONG = 1_544_000.0  # T1
MODEM = 33_600.0


def leaf(**kw: object) -> RoleInputs:
    base: dict[str, object] = {"current": LEAF, "upload_bps": STRONG, "uptime": 600.0,
                               "reachable": True, "in_role_for": 600.0}  # fmt: skip
    base.update(kw)
    return RoleInputs(**base)  # type: ignore[arg-type]


def up(**kw: object) -> RoleInputs:
    return leaf(current=ULTRAPEER, **kw)


def test_capable_needs_every_measured_requirement() -> None:
    assert ultrapeer_capable(leaf(), POLICY)
    assert not ultrapeer_capable(leaf(upload_bps=MODEM), POLICY)
    assert not ultrapeer_capable(leaf(upload_bps=None), POLICY)  # unmeasured is not enough
    assert not ultrapeer_capable(leaf(uptime=299.0), POLICY)
    assert not ultrapeer_capable(leaf(reachable=None), POLICY)  # nobody reached us yet
    assert not ultrapeer_capable(leaf(reachable=False), POLICY)
    assert not ultrapeer_capable(leaf(firewalled=True), POLICY)


def test_a_capable_leaf_is_promoted_when_the_network_needs_it() -> None:
    assert decide_role(leaf(needed_votes=2, not_needed_votes=1), POLICY).role == ULTRAPEER
    assert decide_role(leaf(needed_votes=2, not_needed_votes=1), POLICY).reason == "needed"
    # told no ultrapeer is needed, and it has one: it stays a leaf
    d = decide_role(leaf(needed_votes=0, not_needed_votes=3, ultrapeer_links=1), POLICY)
    assert (d.role, d.changes) == (LEAF, False)


def test_an_orphan_leaf_is_promoted_only_after_the_grace_and_only_if_capable() -> None:
    assert decide_role(leaf(orphan_for=30.0), POLICY).reason == "orphan"
    assert decide_role(leaf(orphan_for=29.0), POLICY).role == LEAF
    assert decide_role(leaf(orphan_for=1e6, upload_bps=MODEM), POLICY).role == LEAF
    assert decide_role(leaf(orphan_for=1e6, uptime=10.0), POLICY).role == LEAF


def test_votes_for_a_weak_node_do_not_promote_it() -> None:
    """What peers say cannot replace what the node measured."""
    assert decide_role(leaf(upload_bps=MODEM, needed_votes=16), POLICY).role == LEAF
    assert decide_role(leaf(reachable=None, needed_votes=16), POLICY).role == LEAF


def test_demotion_for_bandwidth_has_hysteresis() -> None:
    assert decide_role(up(upload_bps=200_000.0), POLICY).role == ULTRAPEER  # 78% of 256k
    d = decide_role(up(upload_bps=150_000.0), POLICY)
    assert (d.role, d.reason) == (LEAF, "bandwidth")


def test_demotion_when_unreachable_or_not_needed() -> None:
    assert decide_role(up(firewalled=True), POLICY).reason == "unreachable"
    d = decide_role(up(leaves=0, not_needed_votes=3, needed_votes=1), POLICY)
    assert (d.role, d.reason) == (LEAF, "not_needed")
    # with leaves to serve it stays
    assert decide_role(up(leaves=1, not_needed_votes=3), POLICY).role == ULTRAPEER
    # not idle long enough
    assert decide_role(up(not_needed_votes=3, in_role_for=100.0), POLICY).role == ULTRAPEER


def test_nothing_changes_within_the_hold_or_without_measurement() -> None:
    assert decide_role(leaf(orphan_for=1e6, in_role_for=59.0), POLICY).role == LEAF
    assert decide_role(up(upload_bps=0.0, in_role_for=59.0), POLICY).role == ULTRAPEER
    assert decide_role(up(upload_bps=None), POLICY).role == ULTRAPEER


def test_tracker_counts_one_vote_per_ultrapeer_and_forgets_old_ones() -> None:
    t = RoleTracker(now=0.0, upload_bps=STRONG)
    for _ in range(10):
        t.vote(("10.0.0.1", 6346), True, now=1.0)  # one peer repeating itself
    t.vote(("10.0.0.2", 6346), False, now=1.0)
    t.vote(("10.0.0.3", 6346), False, now=2.0)
    assert t.votes(now=3.0) == (1, 2)
    assert t.votes(now=1e6) == (0, 0)
    assert t.orphan_for(False, 10.0) == 0.0
    assert t.orphan_for(False, 25.0) == 15.0
    assert t.orphan_for(True, 26.0) == 0.0
    t.role_changed(30.0)
    assert t.in_role_for(45.0) == 15.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigError):
        RolePolicy(demote_ratio=0.0)
    with pytest.raises(ConfigError):
        RolePolicy(min_uptime=-1.0)


def test_a_short_uptime_policy_shrinks_its_waits() -> None:
    p = RolePolicy.with_uptime(10.0)
    assert (p.min_uptime, p.hold, p.orphan_grace, p.idle_grace) == (10.0, 10.0, 10.0, 40.0)
    d = RolePolicy.with_uptime(300.0)
    assert (d.hold, d.orphan_grace, d.idle_grace) == (60.0, 30.0, 120.0)
