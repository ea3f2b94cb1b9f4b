"""Ultrapeer or leaf: the promotion policy (issue 5, item 2).

gtk-gnutella ``doc/gnutella/ultra-peers`` section 3 ("Ultrapeer Election"):
"Hosts regularly determine whether they are eligible to be ultrapeers ... by
looking at uptime, operating system, bandwidth, etc." and recommends: not
firewalled ("approximated by looking at whether the host has received
incoming connections"), sufficient bandwidth ("approximated by looking at the
maximum upload ... throughput"), sufficient uptime ("nodes should not become
ultrapeers until they have been running for several minutes").  Section 3.5
adds the network's voice: an ultrapeer answers a candidate with
``X-Ultrapeer-Needed: false`` when it has ultrapeers enough ("leaf
guidance"), ``true`` when it wants more.

:func:`decide_role` is the whole policy: a pure function of
:class:`RoleInputs` (what this node measured) and :class:`RolePolicy` (the
thresholds), returning a :class:`RoleDecision` (role and the reason).  It
reads nothing else, so tests drive it with plain values.  Every input is
measured by this node, never taken from what a peer says about itself:

* ``upload_bps`` -- the upload throughput the owner measured (the node's
  transfer counters, or the link class of a simulated host), in bits/s;
  ``None`` when nothing was measured;
* ``uptime`` -- seconds since the servent started, from the runtime's clock;
* ``reachable`` -- whether incoming connections actually reached us (a node
  that only claims to be reachable, as in a ``Listen-IP`` header, is not:
  only an accepted incoming connection counts); ``firewalled`` -- the owner
  knows we cannot accept (then reachability is settled);
* ``needed_votes`` / ``not_needed_votes`` -- the ``X-Ultrapeer-Needed`` answers
  of distinct ultrapeers we reached (the network's count of how many
  ultrapeers it needs; one vote per ultrapeer address, so one peer repeating
  itself weighs once);
* ``leaves``, ``ultrapeer_links`` -- our own open links of each kind;
* ``orphan_for`` -- seconds a leaf has been without any ultrapeer link
  (measured: the network gave us none to attach to).

Hysteresis keeps a node from flapping: a demotion for bandwidth needs the
measurement to fall below ``demote_ratio`` of the promotion threshold, and
the servent holds a new role at least ``hold`` seconds (:class:`RoleTracker`).

A servent set to ``auto`` that has measured nothing (no capacity given)
keeps the role it started in, an ultrapeer without leaves: that is what a
flat 0.6 servent is ("old clients are simply ultrapeers that do not
maintain any shielded leaf connections", section 2), so a network of
servents without measurements stays the flat Gnutella network of issue 4.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerlab.errors import ConfigError

__all__ = [
    "AUTO",
    "LEAF",
    "ROLES",
    "ULTRAPEER",
    "RoleDecision",
    "RoleInputs",
    "RolePolicy",
    "RoleTracker",
    "decide_role",
    "ultrapeer_capable",
]

ULTRAPEER = "ultrapeer"
LEAF = "leaf"
AUTO = "auto"
#: The values of ``ServentConfig.role``.
ROLES = (AUTO, ULTRAPEER, LEAF)

#: ``ultra-peers`` section 3 recommends 10 KB/s upstream (80 kbit/s) for an
#: ultrapeer of 2001 with ~6 ultrapeer links.  We keep up to 30 leaves and
#: 32 ultrapeer links and relay their queries and hits, so we ask for about
#: three times that: 256 kbit/s (a cable or T1 line, not a modem or a
#: 128 kbit/s DSL upstream).
MIN_UPLOAD_BPS = 256_000.0
#: "nodes should not become ultrapeers until they have been running for
#: several minutes": five.
MIN_UPTIME = 300.0
#: A measurement must fall below this share of MIN_UPLOAD_BPS to demote (a
#: throughput that wobbles around the threshold does not flip the role).
DEMOTE_RATIO = 0.75
#: A leaf without any ultrapeer this long, and capable, becomes one: the
#: network offers none to attach to.
ORPHAN_GRACE = 30.0
#: An ultrapeer with no leaf this long, told by a majority of the ultrapeers
#: it reached that none is needed, becomes a leaf.
IDLE_GRACE = 120.0
#: Seconds a node keeps a role it just took before the policy may change it.
ROLE_HOLD = 60.0
#: Distinct ultrapeers' X-Ultrapeer-Needed votes remembered (the newest).
MAX_VOTES = 16
#: Votes older than this are forgotten (the network changed since).
VOTE_LIFETIME = 600.0


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """The thresholds of :func:`decide_role` (defaults: module constants)."""

    min_upload_bps: float = MIN_UPLOAD_BPS
    min_uptime: float = MIN_UPTIME
    demote_ratio: float = DEMOTE_RATIO
    orphan_grace: float = ORPHAN_GRACE
    idle_grace: float = IDLE_GRACE
    hold: float = ROLE_HOLD

    @classmethod
    def with_uptime(cls, min_uptime: float) -> RolePolicy:
        """The default policy asking ``min_uptime`` s before a promotion; the
        hold and grace periods shrink with it (a demo or a test network that
        promotes after 10 s should not wait a minute for anything else)."""
        return cls(
            min_uptime=min_uptime,
            orphan_grace=min(ORPHAN_GRACE, min_uptime),
            idle_grace=min(IDLE_GRACE, 4 * min_uptime),
            hold=min(ROLE_HOLD, min_uptime),
        )

    def __post_init__(self) -> None:
        if self.min_upload_bps < 0 or self.min_uptime < 0:
            raise ConfigError("role thresholds must not be negative")
        if not 0 < self.demote_ratio <= 1:
            raise ConfigError("demote_ratio must be in (0, 1]")
        if self.orphan_grace < 0 or self.idle_grace < 0 or self.hold < 0:
            raise ConfigError("role grace periods must not be negative")


@dataclass(frozen=True, slots=True)
class RoleInputs:
    """What a node measured about itself and heard from the network."""

    current: str
    upload_bps: float | None
    uptime: float
    reachable: bool | None = None
    firewalled: bool = False
    leaves: int = 0
    ultrapeer_links: int = 0
    needed_votes: int = 0
    not_needed_votes: int = 0
    orphan_for: float = 0.0
    #: Seconds since the node took its current role.
    in_role_for: float = 0.0


@dataclass(frozen=True, slots=True)
class RoleDecision:
    role: str
    reason: str

    @property
    def changes(self) -> bool:
        return self.reason != "keep"


def ultrapeer_capable(inp: RoleInputs, policy: RolePolicy) -> bool:
    """Section 3's requirements: measured bandwidth, uptime, reachable.

    Unknown is not enough: a bandwidth nobody measured, or a reachability no
    incoming connection proved, cannot make a node an ultrapeer."""
    if inp.firewalled or inp.reachable is not True:
        return False
    if inp.upload_bps is None or inp.upload_bps < policy.min_upload_bps:
        return False
    return inp.uptime >= policy.min_uptime


def decide_role(inp: RoleInputs, policy: RolePolicy) -> RoleDecision:
    """The role this node should have now, and why.

    An ultrapeer becomes a leaf when its measured upload fell below
    ``demote_ratio * min_upload_bps`` (``bandwidth``), when it is firewalled or
    nobody could reach it (``unreachable``), or when it served no leaf for
    ``idle_grace`` seconds and most ultrapeers it reached said no ultrapeer is
    needed (``not_needed``).  A leaf becomes an ultrapeer when it is capable
    (:func:`ultrapeer_capable`) and either found no ultrapeer for
    ``orphan_grace`` seconds (``orphan``) or most ultrapeers it reached said
    more are needed (``needed``).  Nothing changes within ``hold`` seconds of
    the last change, nor without a bandwidth measurement."""
    keep = RoleDecision(inp.current, "keep")
    if inp.upload_bps is None or inp.in_role_for < policy.hold:
        return keep
    if inp.current == ULTRAPEER:
        if inp.upload_bps < policy.min_upload_bps * policy.demote_ratio:
            return RoleDecision(LEAF, "bandwidth")
        if inp.firewalled or inp.reachable is False:
            return RoleDecision(LEAF, "unreachable")
        if (
            inp.leaves == 0
            and inp.in_role_for >= policy.idle_grace
            and inp.not_needed_votes > inp.needed_votes
        ):
            return RoleDecision(LEAF, "not_needed")
        return keep
    if not ultrapeer_capable(inp, policy):
        return keep
    if inp.ultrapeer_links == 0 and inp.orphan_for >= policy.orphan_grace:
        return RoleDecision(ULTRAPEER, "orphan")
    if inp.needed_votes > inp.not_needed_votes:
        return RoleDecision(ULTRAPEER, "needed")
    return keep


class RoleTracker:
    """The measured inputs of :func:`decide_role` as a servent collects them:
    votes per ultrapeer address, when it last had an ultrapeer, when the role
    changed, what the owner measured.  Time comes in as arguments (no clock
    here)."""

    __slots__ = ("upload_bps", "reachable", "_votes", "_role_since", "_orphan_since")

    def __init__(self, now: float, upload_bps: float | None = None) -> None:
        self.upload_bps = upload_bps
        #: Set once a peer's handshake reached us on an incoming connection.
        self.reachable: bool | None = None
        self._votes: dict[tuple[str, int], tuple[bool, float]] = {}
        self._role_since = now
        self._orphan_since: float | None = None

    def vote(self, ultrapeer: tuple[str, int], needed: bool, now: float) -> None:
        """An ultrapeer answered ``X-Ultrapeer-Needed: needed``."""
        self._votes.pop(ultrapeer, None)
        self._votes[ultrapeer] = (needed, now)
        while len(self._votes) > MAX_VOTES:
            del self._votes[next(iter(self._votes))]

    def votes(self, now: float) -> tuple[int, int]:
        """``(needed, not_needed)`` among the fresh votes."""
        fresh = [v for v, at in self._votes.values() if now - at < VOTE_LIFETIME]
        return sum(fresh), len(fresh) - sum(fresh)

    def role_changed(self, now: float) -> None:
        self._role_since = now
        self._orphan_since = None

    def in_role_for(self, now: float) -> float:
        return now - self._role_since

    def orphan_for(self, has_ultrapeer: bool, now: float) -> float:
        """Seconds without an ultrapeer link (0 while we have one)."""
        if has_ultrapeer:
            self._orphan_since = None
            return 0.0
        if self._orphan_since is None:
            self._orphan_since = now
        return now - self._orphan_since
