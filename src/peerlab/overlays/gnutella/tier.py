"""The two-tier network inside a servent: ultrapeer and leaf (issue 5, items 1-3).

gtk-gnutella ``doc/gnutella/ultra-peers`` (roles and handshakes, section 3),
``QRP`` and ``ultrapeer_qrp`` (query routing).  :class:`Tier` is the part of
a :class:`~peerlab.overlays.gnutella.servent.Servent` that knows roles; the
servent calls it at each step (handshake, open, close, QRP message, query,
housekeeping).

**Tiered or flat.**  A servent whose role is set (``ultrapeer``/``leaf``), or
set to ``auto`` and given a capacity measurement (:meth:`Servent.set_capacity`
or ``ServentConfig.upload_bps``), is *tiered*: it speaks the roles' headers
and routes with QRP.  An ``auto`` servent without measurements stays the flat
0.6 servent of issue 4 (an ultrapeer without leaves, no QRP): see
:mod:`.roles`.

**Handshakes** (section 3).  We announce ``X-Ultrapeer`` with our role; an
ultrapeer adds ``X-Query-Routing``, ``X-Ultrapeer-Query-Routing``,
``X-Degree`` (its ultrapeer links at most), ``X-Max-TTL`` and, when dynamic
querying is on, ``X-Dynamic-Querying``; a leaf ``X-Query-Routing``.  In
every answer an ultrapeer states ``X-Ultrapeer-Needed``: ``true`` while it has
fewer ultrapeer links than it dials for, else ``false`` (leaf guidance, 3.5).
An ultrapeer refuses a leaf with ``503`` when its ``max_leaves`` are taken
and an ultrapeer beyond ``max_ultrapeer_links``; a leaf refuses leaves
("503 I am a shielded leaf node", 3.2) and ultrapeers beyond
``ultrapeers_per_leaf``; refusals carry ``X-Try-Ultrapeers``.  An ``auto``
candidate told ``X-Ultrapeer-Needed: false`` while it has no leaf obeys: its
final block says ``X-Ultrapeer: False`` and it becomes that ultrapeer's leaf.

**Limits.**  ``max_leaves`` (leaves per ultrapeer, LimeWire's 30),
``max_ultrapeer_links`` (32, gtk-gnutella's), ``ultrapeers_per_leaf`` (3:
LimeWire leaves keep three so that losing one leaves two).  Links are
compressed (``deflate``) both ways whenever the peer accepts it, leaf links
included.

**Query routing.**  A leaf sends each ultrapeer its table (RESET + PATCH,
4-bit entries, zlib; :mod:`.qrt`) when the link opens and when its shares
change.  An ultrapeer keeps one table per leaf (bounded and checked:
:class:`~.qrt.QrpInbound`) and the merged table of its leaves and itself,
which it sends to ultrapeer neighbours announcing
``X-Ultrapeer-Query-Routing`` (``ultrapeer_qrp``).  A query reaching an
ultrapeer goes to each leaf only when the leaf's table matches
(``queries.to_leaves``, else ``queries.leaf_blocked``; a leaf without a
table yet: ``queries.leaf_no_table``; a leaf announcing no
``X-Query-Routing`` gets every query: ``queries.to_unrouted_leaves``), to
ultrapeers by flooding, except on
the last hop (arriving TTL 1) where an ultrapeer whose merged table does not
match is skipped (``queries.last_hop_blocked``).  The ultrapeer answers for
its leaves in the sense that they are reached through it alone: their hits
route back through it, and a leaf never forwards a query.

**Promotion** (:mod:`.roles`): every ``maintain_interval`` an ``auto``
servent with measurements runs :func:`~.roles.decide_role`; a change closes
the links (Bye 200, they were negotiated for the old role) and the servent
dials anew in its new role, without restarting: counters
``roles.promoted``/``roles.demoted``, event ``gnutella.role``, callback
``Servent.on_role_change(role)``.  A leaf that loses an ultrapeer dials
another from the host cache (ultrapeers first, learnt from
``X-Try-Ultrapeers``) at the next housekeeping round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peerlab.overlays.gnutella.flow import Queued
from peerlab.overlays.gnutella.qrt import (
    QrpInbound,
    QrpRefused,
    QrpSender,
    merge_presence,
    shares_table,
    table_matches,
)
from peerlab.overlays.gnutella.roles import (
    AUTO,
    LEAF,
    ULTRAPEER,
    RoleInputs,
    RoleTracker,
    decide_role,
)
from peerlab.overlays.gnutella.router import forward_fields
from peerlab.runtime.base import Address, BaseStreamHandler, Stream
from peerlab.wire.gnutella import (
    QUERY,
    ROUTE_TABLE_UPDATE,
    Query,
    TcpConnectBack,
    encode_payload,
    encode_vendor,
)
from peerlab.wire.handshake import (
    Headers,
    format_hosts,
    is_ultrapeer,
    query_routing,
    ultrapeer_needed,
    ultrapeer_query_routing,
)
from peerlab.wire.qrp import (
    DEFAULT_INFINITY,
    DEFAULT_TABLE_LENGTH,
    PatchTable,
    PresenceTable,
    QrpTable,
    ResetTable,
)

if TYPE_CHECKING:
    from peerlab.overlays.gnutella.servent import Link, Servent

__all__ = ["Tier"]

#: The QRP version we speak leaf to ultrapeer (``X-Query-Routing``; 0.2 is
#: what LimeWire and gtk-gnutella announce for compressed 4/8-bit patches).
QRP_VERSION = "0.2"
#: ``ultrapeer_qrp``'s version (``X-Ultrapeer-Query-Routing``).
UP_QRP_VERSION = "0.1"
#: Bye code and reasons when a role change drops the links of the old role.
BYE_ROLE_CHANGE = 200
#: Hosts of any role a refusal names in X-Try (gtk-gnutella sends about 10).
TRY_HOSTS = 10
#: Seconds a connect-back attempt may take.
CONNECT_BACK_TIMEOUT = 10.0
#: Connect-backs one link may ask of us (one proves reachability; a peer
#: asking more would use us to knock on ports).
CONNECT_BACKS_PER_LINK = 1


class _ConnectBack(BaseStreamHandler):
    """A TCP connect-back (``BEAR/7``): connect, then hang up at once."""

    def connection_made(self, stream: Stream) -> None:
        stream.close()


class Tier:
    """Roles and QRP of one servent (see the module docstring)."""

    def __init__(self, servent: Servent) -> None:
        self.servent = servent
        cfg = servent.config
        now = servent.runtime.now()
        self.tracker = RoleTracker(now, cfg.upload_bps)
        if cfg.role == AUTO:
            # Measured nodes start low, as gtk-gnutella and LimeWire do, and
            # earn promotion; unmeasured ones are flat servents (roles.py).
            self.role = LEAF if cfg.upload_bps is not None else ULTRAPEER
        else:
            self.role = cfg.role
        #: Set by up-dq when this servent runs dynamic queries (announced as
        #: ``X-Dynamic-Querying``); ``None``: not announced.
        self.dynamic_querying: str | None = None
        self.inbound: dict[int, QrpInbound] = {}
        self.leaf_tables: dict[int, QrpTable] = {}
        self.up_tables: dict[int, QrpTable] = {}
        self.senders: dict[int, QrpSender] = {}
        self._own: PresenceTable | None = None
        self._own_stat: tuple[int, int] | None = None
        self._merged: PresenceTable | None = None
        self._merged_dirty = True
        self._next_qrp = 0.0
        self._connect_backs: dict[int, int] = {}

    # ------------------------------------------------------------ state

    @property
    def tiered(self) -> bool:
        return self.servent.config.role != AUTO or self.tracker.upload_bps is not None

    def is_leaf_link(self, link: Link) -> bool:
        """Is ``link`` one of our leaves (we are an ultrapeer, it a leaf)?"""
        return self.role == ULTRAPEER and link.role == LEAF and self.tiered

    def is_up_link(self, link: Link) -> bool:
        return not self.is_leaf_link(link)

    def counts(self) -> tuple[int, int]:
        """``(leaves, ultrapeer links)`` among open links."""
        leaves = ups = 0
        for link in self.servent._open_links():
            if self.is_leaf_link(link):
                leaves += 1
            else:
                ups += 1
        return leaves, ups

    def free_slots(self) -> tuple[int, int]:
        """``(leaf slots, ultrapeer slots)`` free now (the Pong's GGEP ``UP``);
        a flat servent or a leaf has no leaf slot."""
        if not self.tiered or self.role != ULTRAPEER:
            return 0, 0
        cfg = self.servent.config
        leaves, ups = self.counts()
        return max(0, cfg.max_leaves - leaves), max(0, cfg.max_ultrapeer_links - ups)

    def up_target(self) -> int:
        """Ultrapeer links an ultrapeer dials for (and wants before it says
        it needs no more ultrapeers)."""
        cfg = self.servent.config
        return max(1, min(cfg.target_degree, cfg.max_ultrapeer_links))

    def ultrapeer_needed(self) -> bool:
        """What we answer in ``X-Ultrapeer-Needed``: more ultrapeers are
        needed while we have fewer ultrapeer links than we dial for, or no
        room for another leaf (3.5: guidance is for an ultrapeer that "doesn't
        have enough leaves")."""
        leaves, ups = self.counts()
        return ups < self.up_target() or leaves >= self.servent.config.max_leaves

    # ------------------------------------------------------------ handshake

    def headers(self, response: bool) -> dict[str, object]:
        """``capability_headers`` keyword arguments for our role."""
        cfg = self.servent.config
        if not self.tiered:
            return {"ultrapeer": True, "query_routing": None, "ultrapeer_query_routing": None,
                    "degree": cfg.max_connections, "dynamic_querying": None}  # fmt: skip
        up = self.role == ULTRAPEER
        out: dict[str, object] = {
            "ultrapeer": up,
            "query_routing": QRP_VERSION,
            "ultrapeer_query_routing": UP_QRP_VERSION if up else None,
            "degree": cfg.max_ultrapeer_links,
            "dynamic_querying": self.dynamic_querying if up else None,
        }
        if up and response:
            out["ultrapeer_needed"] = self.ultrapeer_needed()
        return out

    def admission(self, link: Link, headers: Headers) -> tuple[int, str] | None:
        """Refuse an incoming handshake (``(code, reason)``) or ``None``."""
        self.tracker.reachable = True
        if not self.tiered:
            return None
        s = self.servent
        cfg = s.config
        leaves, ups = self.counts()
        peer_up = is_ultrapeer(headers)
        if link.listen_address is not None and link.listen_address != s.address:
            # Remember whoever knocked, refused or not: the next newcomer's
            # X-Try then names it (a network of leaves must meet somehow).
            s.host_cache.add(link.listen_address, seen=s.runtime.wall_time(),
                             ultrapeer=peer_up is True, source="handshake")  # fmt: skip
        if self.role == LEAF:
            if peer_up is not True:
                return 503, "I am a shielded leaf node"
            if ups >= cfg.ultrapeers_per_leaf:
                return 503, "Too many ultrapeers"
            return None
        if peer_up is False:
            return (503, "Too many leaves") if leaves >= cfg.max_leaves else None
        if ups >= cfg.max_ultrapeer_links and (peer_up is None or leaves >= cfg.max_leaves):
            return 503, "Too many ultrapeer connections"
        return None

    def refusal_headers(self, exclude: list[Address]) -> list[tuple[str, str]]:
        """Extra headers of a refusal: our role, and (``X-Try``) hosts of any
        role, so that newcomers meeting only leaves still find each other."""
        if not self.tiered:
            return []
        s = self.servent
        out = [("X-Ultrapeer", "True" if self.role == ULTRAPEER else "False")]
        hosts = s.host_cache.freshest(TRY_HOSTS, exclude)
        if hosts:
            out.append(("X-Try", format_hosts(hosts)))
        return out

    def response_done(self, link: Link, headers: Headers) -> tuple[list[tuple[str, str]], bool]:
        """Outgoing: the peer accepted.  Our final headers, and whether to
        go on (``False``: refuse the connection)."""
        if not self.tiered:
            return [], True
        cfg = self.servent.config
        now = self.servent.runtime.now()
        peer_up = is_ultrapeer(headers)
        needed = ultrapeer_needed(headers)
        target = link.listen_address or link.address
        if peer_up is True and needed is not None:
            self.tracker.vote(target, needed, now)
        leaves, ups = self.counts()
        if self.role == LEAF:
            return [], peer_up is True and ups < cfg.ultrapeers_per_leaf
        if peer_up is False:
            return [], leaves < cfg.max_leaves
        if needed is False and cfg.role == AUTO and leaves == 0:
            # Leaf guidance (3.5): become this ultrapeer's leaf.
            self.set_role(LEAF, "guidance", keep=link)
            return [("X-Ultrapeer", "False"), ("X-Query-Routing", QRP_VERSION)], True
        return [], ups < cfg.max_ultrapeer_links

    def opened(self, link: Link) -> None:
        """A link opened: send it our table when it routes by QRP."""
        if not self.tiered:
            return
        neg = link.negotiation
        if neg is None:
            return
        remote = neg.remote_headers
        cfg = self.servent.config
        if self._duplicate(link):
            return
        leaves, ups = self.counts()
        if self.is_leaf_link(link) and leaves > cfg.max_leaves:
            link.close(BYE_ROLE_CHANGE, "Too many leaves")
            return
        if not self.is_leaf_link(link) and ups > (
            cfg.ultrapeers_per_leaf if self.role == LEAF else cfg.max_ultrapeer_links
        ):
            # A candidate that did not follow our guidance, or a race of two dials.
            link.close(BYE_ROLE_CHANGE, "Too many ultrapeer connections")
            return
        if self.role == LEAF and link.role == ULTRAPEER and query_routing(remote):
            self._send_table(link, self._own_table())
            self._ask_connect_back(link)
        elif self.role == ULTRAPEER and link.role != LEAF and ultrapeer_query_routing(remote):
            self._send_merged(link)

    def _duplicate(self, link: Link) -> bool:
        """Two servents that dialled each other at once hold two links: both
        keep the one dialled by the lower address (the same choice on both
        sides) and close the other.  ``True`` when ``link`` was closed."""
        s = self.servent
        peer = link.listen_address
        if peer is None:
            return False
        for other in s._open_links():
            if other is not link and other.listen_address == peer:
                keep_outgoing = s.address < peer
                loser = link if link.outgoing != keep_outgoing else other
                loser.close(BYE_ROLE_CHANGE, "Duplicate connection")
                s.counters.count("connections.duplicate")
                return loser is link
        return False

    # ------------------------------------------------------------ reachability

    def reached(self) -> None:
        """An incoming TCP connection reached us: we are reachable (measured)."""
        self.tracker.reachable = True

    def _ask_connect_back(self, link: Link) -> None:
        """A leaf that may be promoted but was never reached asks its
        ultrapeer to connect back (``BEAR/7v1``, as LimeWire and gtk-gnutella
        do): reachability measured, not claimed."""
        s = self.servent
        if (
            s.config.role != AUTO
            or s.config.firewalled
            or self.tracker.reachable is True
            or s.listening_address is None
        ):
            return
        vm = encode_vendor(TcpConnectBack(s.address[1]))
        link.enqueue(Queued(s._new_guid(), vm.TYPE, 1, 0, encode_payload(vm)))
        s.counters.count("connect_back.asked")

    def on_vendor(self, link: Link, body: object) -> bool:
        """Vendor messages of the roles; ``True`` when handled."""
        if not isinstance(body, TcpConnectBack):
            return False
        s = self.servent
        done = self._connect_backs.get(link.id, 0)
        if done >= CONNECT_BACKS_PER_LINK or not 1 <= body.port <= 0xFFFF:
            s._drop(link, "connect_back_refused")
            return True
        self._connect_backs[link.id] = done + 1
        s.counters.count("connect_back.sent")
        s.runtime.connect((link.address[0], body.port), _ConnectBack(),
                          timeout=CONNECT_BACK_TIMEOUT)  # fmt: skip
        return True

    def closed(self, link: Link) -> None:
        self._connect_backs.pop(link.id, None)
        self.inbound.pop(link.id, None)
        self.senders.pop(link.id, None)
        self.up_tables.pop(link.id, None)
        if self.leaf_tables.pop(link.id, None) is not None:
            self._merged_dirty = True

    # ------------------------------------------------------------ QRP

    def on_route_table(self, link: Link, msg: ResetTable | PatchTable) -> None:
        """A ROUTE_TABLE_UPDATE from ``link``: kept when we route by it."""
        s = self.servent
        leaf = self.is_leaf_link(link)
        if not self.tiered or self.role != ULTRAPEER:
            s._drop(link, "ignored_qrp")
            return
        inbound = self.inbound.get(link.id)
        if inbound is None:
            cfg = s.config
            inbound = self.inbound[link.id] = QrpInbound(cfg.max_qrp_table_length, cfg.max_qrp_fill)
        s.counters.count("qrp.resets_received" if isinstance(msg, ResetTable)
                         else "qrp.patches_received")  # fmt: skip
        try:
            table = inbound.receive(msg)
        except QrpRefused as exc:
            s.counters.count("qrp.refused." + exc.reason)
            s.runtime.observer.event("gnutella.qrp_refused", link=link.id, reason=exc.reason,
                                     error=str(exc)[:200])  # fmt: skip
            if leaf:
                if self.leaf_tables.pop(link.id, None) is not None:
                    self._merged_dirty = True
            else:
                self.up_tables.pop(link.id, None)
            s._bad(link, str(exc), ROUTE_TABLE_UPDATE)
            return
        if isinstance(msg, ResetTable):
            if leaf and self.leaf_tables.pop(link.id, None) is not None:
                self._merged_dirty = True
            if not leaf:
                self.up_tables.pop(link.id, None)
            return
        if table is None:
            return
        s.counters.count("qrp.tables_received")
        if leaf:
            self.leaf_tables[link.id] = table
            self._merged_dirty = True
        else:
            self.up_tables[link.id] = table

    @staticmethod
    def _routes_by_qrp(link: Link) -> bool:
        neg = link.negotiation
        return neg is not None and query_routing(neg.remote_headers) is not None

    def matches(self, link_id: int, query: Query) -> bool:
        """Does leaf ``link_id``'s table match ``query``?  No table: no."""
        table = self.leaf_tables.get(link_id)
        return table is not None and table_matches(table, query)

    def _send_table(self, link: Link, table: QrpTable) -> None:
        s = self.servent
        sender = self.senders.setdefault(link.id, QrpSender())
        if sender.sent is table:
            # The very table sent last: ours and the merged one are built
            # anew when they change, never changed in place, so this one
            # needs no message (and no comparison of 64K entries, per link
            # every qrp_interval).
            return
        msgs = sender.update(table)
        if not msgs:
            return
        guid = s._new_guid()
        for msg in msgs:
            link.enqueue(Queued(guid, ROUTE_TABLE_UPDATE, 1, 0, encode_payload(msg)))
        s.counters.count("qrp.messages_sent", len(msgs))
        s.counters.count("qrp.tables_sent")

    def _own_table(self) -> PresenceTable:
        s = self.servent
        stat = s._share_stat()
        if self._own is None or stat != self._own_stat:
            try:
                self._own = shares_table(s.shares)
            except Exception as exc:  # the node's shares: route as sharing nothing
                s.runtime.observer.event("gnutella.qrp_table_failed", error=repr(exc))
                self._own = PresenceTable()
            self._own_stat = stat
            self._merged_dirty = True
            s.counters.count("qrp.own_rebuilds")
        return self._own

    def _merged_table(self) -> PresenceTable:
        own = self._own_table()
        if self._merged is None or self._merged_dirty:
            self._merged = merge_presence([own, *self.leaf_tables.values()])
            self._merged_dirty = False
            self.servent.counters.count("qrp.merged_rebuilds")
        return self._merged

    def _unrouted_leaf(self) -> bool:
        """Does a leaf that speaks no QRP hang off us?"""
        return any(
            self.is_leaf_link(lk) and not self._routes_by_qrp(lk)
            for lk in self.servent._open_links()
        )

    def _send_merged(self, link: Link, unrouted_leaf: bool | None = None) -> None:
        """Our merged table to ultrapeer ``link``; none while a leaf that
        speaks no QRP hangs off us (it answers queries no table can show:
        a RESET alone leaves the neighbour with no table, so it withholds
        nothing from us on the last hop).  ``unrouted_leaf``: whether one
        does, when the caller knows."""
        if unrouted_leaf is None:
            unrouted_leaf = self._unrouted_leaf()
        if unrouted_leaf:
            sender = self.senders.setdefault(link.id, QrpSender())
            if sender.sent is not None:
                sender.sent = None
                s = self.servent
                reset = ResetTable(DEFAULT_TABLE_LENGTH, DEFAULT_INFINITY)
                link.enqueue(Queued(s._new_guid(), ROUTE_TABLE_UPDATE, 1, 0,
                                    encode_payload(reset)))  # fmt: skip
                s.counters.count("qrp.messages_sent")
            return
        self._send_table(link, self._merged_table())

    def refresh_tables(self, now: float) -> None:
        """Every ``qrp_interval``: send changed tables (leaf: ours; ultrapeer:
        the merged one to ultrapeers routing by it)."""
        s = self.servent
        if not self.tiered or now < self._next_qrp:
            return
        self._next_qrp = now + s.config.qrp_interval
        # Asked once a round, not once per ultrapeer link (an ultrapeer has
        # tens of leaves to look through).
        unrouted_leaf = self.role == ULTRAPEER and self._unrouted_leaf()
        for link in s._open_links():
            neg = link.negotiation
            if neg is None:
                continue
            if self.role == LEAF and link.role == ULTRAPEER and query_routing(neg.remote_headers):
                self._send_table(link, self._own_table())
            elif (
                self.role == ULTRAPEER
                and not self.is_leaf_link(link)
                and ultrapeer_query_routing(neg.remote_headers)
            ):
                self._send_merged(link, unrouted_leaf)

    # ------------------------------------------------------------ queries

    def route_query(
        self, source: Link, guid: bytes, ttl: int, hops: int, payload: bytes, query: Query
    ) -> None:
        """Pass on a query we admitted (``ttl`` after trimming); see the
        module docstring for the rules and counters."""
        s = self.servent
        counters = s.counters
        if self.role == LEAF:
            return  # shielded: a leaf never forwards
        fwd = forward_fields(ttl, hops)
        leaf_fields = fwd if fwd is not None else (1, min(hops + 1, 255))
        for link in list(s._links.values()):
            if link is source or not link.is_open:
                continue
            if self.is_leaf_link(link):
                table = self.leaf_tables.get(link.id)
                if table is None and not self._routes_by_qrp(link):
                    # A leaf that speaks no QRP cannot be routed to: it gets
                    # every query, as ultrapeers treat old leaves.
                    counters.count("queries.to_unrouted_leaves")
                elif table is None:
                    counters.count("queries.leaf_no_table")
                    continue
                elif not table_matches(table, query):
                    counters.count("queries.leaf_blocked")
                    continue
                else:
                    counters.count("queries.to_leaves")
                link.enqueue(Queued(guid, QUERY, leaf_fields[0], leaf_fields[1], payload,
                                    routed=True))  # fmt: skip
                continue
            if fwd is None:
                continue
            ttl2, hops2 = fwd
            if hops2 >= link.hops_flow:
                s._drop(link, "hops_flow")
                continue
            if ttl2 == 1:
                table = self.up_tables.get(link.id)
                if table is not None and not table_matches(table, query):
                    counters.count("queries.last_hop_blocked")
                    continue
            link.enqueue(Queued(guid, QUERY, ttl2, hops2, payload, routed=True))

    # ------------------------------------------------------------ roles

    def tick(self, now: float) -> None:
        """Housekeeping: the role policy, then tables."""
        s = self.servent
        cfg = s.config
        if cfg.role == AUTO and self.tracker.upload_bps is not None:
            leaves, ups = self.counts()
            needed, not_needed = self.tracker.votes(now)
            inp = RoleInputs(
                current=self.role,
                upload_bps=self.tracker.upload_bps,
                uptime=now - s._started_at,
                reachable=self.tracker.reachable,
                firewalled=cfg.firewalled,
                leaves=leaves,
                ultrapeer_links=ups,
                needed_votes=needed,
                not_needed_votes=not_needed,
                orphan_for=self.tracker.orphan_for(self.role != LEAF or ups > 0, now),
                in_role_for=self.tracker.in_role_for(now),
            )
            decision = decide_role(inp, cfg.role_policy)
            if decision.role != self.role:
                self.set_role(decision.role, decision.reason)
        self.refresh_tables(now)

    def set_role(self, role: str, reason: str, *, keep: Link | None = None) -> None:
        """Take ``role`` now: links of the old role close (Bye 200), the
        servent dials anew at its next round."""
        s = self.servent
        if role == self.role:
            return
        old, self.role = self.role, role
        now = s.runtime.now()
        self.tracker.role_changed(now)
        s.counters.count("roles.promoted" if role == ULTRAPEER else "roles.demoted")
        s.runtime.observer.event("gnutella.role", role=role, previous=old, reason=reason)
        for link in list(s._links.values()):
            if link is not keep:
                link.close(BYE_ROLE_CHANGE, f"Becoming {role}")
        self.inbound.clear()
        self.leaf_tables.clear()
        self.up_tables.clear()
        self.senders.clear()
        self._merged_dirty = True
        if s.on_role_change is not None:
            s._callback(s.on_role_change, role)
