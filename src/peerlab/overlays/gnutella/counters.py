"""Message counters of a servent (issue 4, section 4).

Every count goes two ways: into the servent's own :class:`Counters` (what
``peerlab status --gnutella`` and tests read) and to ``runtime.observer``
under ``gnutella.<name>`` (what the simulator and the node log record).

Names, ``<type>`` being one of :data:`TYPE_NAMES`' values:

==============================  ==============================================
``rx.<type>``                   descriptors received
``tx.<type>``                   descriptors handed to a connection (sent)
``routed.<type>``               copies forwarded on behalf of another servent
``dup.<type>``                  dropped as duplicates (GUID already routed)
``dropped_ttl.<type>``          dropped because their TTL ran out
``ttl_trimmed.<type>``          TTL cut so that hops + TTL stays within the cap
``flow_dropped.<type>``         dropped by a full outgoing queue (flow control)
``dropped.<reason>``            dropped for another reason (``unrouted_hit``,
                                ``unrouted_pong``, ``unrouted_push``,
                                ``route_lost``, ``query_rate``,
                                ``ping_throttled``, ``hops_flow``,
                                ``bad_descriptor``, ``ignored_vendor`` ...)
``connections.<what>``          ``opened``, ``closed``, ``refused``, ``failed``
``bye_sent.<code>``             Bye codes we sent
``bye_received.<code>``         Bye codes we received
``queries.answered``            queries we answered with at least one hit
``hits.delivered``              hits delivered to our own searches
``queries.to_leaves``           queries an ultrapeer passed to a leaf whose QRP table matched
``queries.leaf_blocked``        queries withheld from a leaf whose table did not match
``queries.leaf_no_table``       queries withheld from a leaf that sent no valid table yet
``queries.to_unrouted_leaves``  queries passed to a leaf that speaks no QRP (all of them)
``queries.last_hop_blocked``    TTL-1 queries withheld from an ultrapeer whose merged
                                table did not match
``qrp.<what>``                  ``resets_received``, ``patches_received``, ``tables_received``,
                                ``tables_sent``, ``messages_sent``, ``merged_rebuilds``,
                                ``own_rebuilds``, ``refused.<reason>`` (``too_large``,
                                ``sequence``, ``full``, ``bad``)
``roles.promoted``              leaf -> ultrapeer; ``roles.demoted``: ultrapeer -> leaf
``connect_back.<what>``         ``asked`` (a leaf proving its reachability), ``sent``
==============================  ==============================================
"""

from __future__ import annotations

from collections import Counter

from peerlab.runtime.base import NullObserver, Observer
from peerlab.wire.gnutella import (
    BYE,
    PING,
    PONG,
    PUSH,
    QUERY,
    QUERY_HIT,
    ROUTE_TABLE_UPDATE,
    STANDARD_VENDOR,
    VENDOR,
)

#: Payload type -> the name used in counters.
TYPE_NAMES: dict[int, str] = {
    PING: "ping",
    PONG: "pong",
    BYE: "bye",
    PUSH: "push",
    QUERY: "query",
    QUERY_HIT: "query_hit",
    VENDOR: "vendor",
    STANDARD_VENDOR: "vendor",
    ROUTE_TABLE_UPDATE: "qrp",
}


def type_name(payload_type: int) -> str:
    """The counter name of a payload type (``unknown`` for types we do not model)."""
    return TYPE_NAMES.get(payload_type, "unknown")


class Counters:
    """A servent's counters, mirrored to its observer as ``gnutella.<name>``."""

    __slots__ = ("values", "_observer", "_mirror")

    def __init__(self, observer: Observer) -> None:
        self.values: Counter[str] = Counter()
        self._observer = observer
        # A NullObserver discards counts: skip the call and the name it would
        # build, once per message (the simulator's hosts mostly have none).
        self._mirror = type(observer) is not NullObserver

    def count(self, name: str, n: int = 1) -> None:
        self.values[name] += n
        if self._mirror:
            self._observer.count("gnutella." + name, n)

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def total(self, prefix: str) -> int:
        """The sum of every counter whose name starts with ``prefix``."""
        return sum(v for k, v in self.values.items() if k.startswith(prefix))

    def snapshot(self) -> dict[str, int]:
        """A sorted copy, for status output and comparisons."""
        return dict(sorted(self.values.items()))


__all__ = ["TYPE_NAMES", "Counters", "type_name"]
