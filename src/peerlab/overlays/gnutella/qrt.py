"""Query routing tables between leaves and ultrapeers (issue 5, item 3).

gtk-gnutella ``doc/gnutella/QRP`` (the protocol; codec in
:mod:`peerlab.wire.qrp`), ``ultra-peers`` section 2 ("leaf nodes
periodically send ultrapeers query routing tables ... Ultrapeers then
forward queries only to those leaf nodes whose QRP table has a corresponding
entry") and ``ultrapeer_qrp`` (an ultrapeer sends the merged table of its
leaves and itself to its ultrapeer neighbours, which use it for the last hop:
a query that would arrive with TTL 1 goes only to an ultrapeer whose table
matches).

* :func:`share_keywords`, :func:`shares_table` -- a servent's table: the
  keywords of its shared files' names and audio tags, and their
  ``urn:sha1`` (LimeWire hashes URNs as keywords so queries by hash route).
  Our own and merged tables say only "present" (distance 1) or not, so we
  keep them as :class:`~peerlab.wire.qrp.PresenceTable`, a bit per entry,
  and write distances only into the patches we send.
* :func:`query_keywords`, :func:`table_matches` -- does a table match a
  query ("Queries are interpreted as logical AND's of keywords"; a query by
  URN matches when any URN is present).
* :class:`QrpSender` -- what one link was last sent: RESET + PATCHes for a
  new table, PATCHes for a change, nothing when unchanged.
* :class:`QrpInbound` -- one link's incoming tables with our limits: a table
  longer than ``max_length`` (``too_large``), a PATCH out of sequence or
  before a RESET (``sequence``), one that fills more than ``max_fill`` of
  its entries, i.e. claims (nearly) every keyword and would draw every query
  (``full``), or otherwise broken (``bad``) is refused: :class:`QrpRefused`
  names the reason, the link keeps no table until its next RESET.
* :func:`merge_presence` -- the merged last-hop table (presence only: every
  entry 1 or infinity, ``ultra-peers`` footnote 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from peerlab.errors import RemoteProtocolError
from peerlab.wire.gnutella import Query
from peerlab.wire.qrp import (
    DEFAULT_INFINITY,
    DEFAULT_TABLE_LENGTH,
    PatchTable,
    PresenceTable,
    QrpReceiver,
    QrpTable,
    ResetTable,
    make_update,
    split_keywords,
)
from peerlab.wire.urn import sha1_urn

__all__ = [
    "MAX_FILL",
    "MAX_LEAF_TABLE_LENGTH",
    "QrpInbound",
    "QrpRefused",
    "QrpSender",
    "merge_presence",
    "query_keywords",
    "share_keywords",
    "shares_table",
    "table_matches",
]

#: Largest table a leaf may make us keep.  LimeWire sends 2**16 entries,
#: gtk-gnutella 2**16 to 2**21 (its MAX_TABLE_BITS); we take gtk-gnutella's
#: largest so its leaves can sit under us: at most 256 KiB per leaf (a bit
#: per entry), twice that while a patch is applied (30 leaves: 15 MiB at the
#: very worst).
MAX_LEAF_TABLE_LENGTH = 1 << 21
#: A table with more than this share of its entries present claims nearly
#: every keyword: a leaf sharing 90,000 distinct keywords fills 75% of
#: LimeWire's 65,536 entries; beyond that the table is a query sink (or a
#: spammer's) and is refused.
MAX_FILL = 0.75
#: Audio tags whose words enter the table as keywords (field searches by
#: artist or title must route to the leaf holding them).
TAG_FIELDS = ("title", "artist", "album")
#: Files read from the shares for one table at most (bounds the work of one
#: rebuild; a catalog larger than this routes on its first files only).
MAX_TABLE_FILES = 100_000
#: Attribute values of rich-query XML, used as keywords when a query has no
#: plain criteria.
_XML_VALUE = re.compile(r'="([^"]{1,200})"')


class QrpRefused(RemoteProtocolError):
    """A peer's table broke one of our limits; ``reason`` is the counter suffix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------- tables


def _files_of(shares: Any) -> Iterable[Any]:
    files = getattr(shares, "files", None)
    if callable(files):
        files = files()
    return files if files is not None else ()


def share_keywords(shares: Any) -> list[str]:
    """The keywords a servent's table holds: words of file names and audio
    tags, and each file's ``urn:sha1`` (in the shares' order, no repeats)."""
    seen: dict[str, None] = {}
    for n, f in enumerate(_files_of(shares)):
        if n >= MAX_TABLE_FILES:
            break
        texts = [str(getattr(f, "name", ""))]
        texts += [str(v) for v in (getattr(f, k, None) for k in TAG_FIELDS) if v]
        for text in texts:
            for word in split_keywords(text):
                seen.setdefault(word, None)
        sha1 = getattr(f, "sha1", None)
        urn = sha1_urn(sha1) if isinstance(sha1, bytes) and len(sha1) == 20 else None
        if urn is None:
            u = getattr(f, "urn", None)
            urn = u if isinstance(u, str) else None
        if urn is not None:
            seen.setdefault(urn.lower(), None)
    return list(seen)


def shares_table(
    shares: Any, length: int = DEFAULT_TABLE_LENGTH, infinity: int = DEFAULT_INFINITY
) -> PresenceTable:
    """The table a leaf sends: every keyword of :func:`share_keywords` at
    distance 1, kept as presence (a bit per entry: distance 1 is all it
    says); :func:`~peerlab.wire.qrp.make_update` sends it as distances."""
    return PresenceTable.from_keywords(share_keywords(shares), length, infinity)


def query_keywords(query: Query) -> tuple[list[str], list[str]]:
    """``(keywords, urns)`` a query is routed by: the words of its criteria
    (or, without any, of its rich-query XML values) and its URNs."""
    words = split_keywords(query.criteria)
    if not words and query.xml:
        for value in _XML_VALUE.findall(query.xml):
            words.extend(w for w in split_keywords(value) if w not in words)
    return words, [u.lower() for u in query.urns]


def table_matches(table: QrpTable, query: Query) -> bool:
    """Does ``table`` match ``query``?  Any URN present, or every keyword.
    A query with nothing to route by matches (we cannot tell, so we do not
    withhold it)."""
    words, urns = query_keywords(query)
    if any(table.contains(u) for u in urns):
        return True
    if not words:
        return not urns
    return table.matches(words)


def merge_presence(
    tables: Iterable[QrpTable],
    length: int = DEFAULT_TABLE_LENGTH,
    infinity: int = DEFAULT_INFINITY,
) -> PresenceTable:
    """One table of ``length`` entries where every keyword present in any of
    ``tables`` is present, that is at distance 1 (each scaled to ``length``
    first): the merged table of ``ultrapeer_qrp``."""
    return PresenceTable.union(tables, length, infinity)


# ------------------------------------------------------------------ links


class QrpSender:
    """The table one link holds from us; :meth:`update` gives the messages
    that bring it to a new table (4-bit entries, zlib, 1 KiB chunks)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent: QrpTable | None = None

    def update(self, table: QrpTable) -> list[ResetTable | PatchTable]:
        msgs = make_update(table, self.sent)
        self.sent = table
        return msgs


class QrpInbound:
    """The tables one peer sends us, under our limits (see the module doc).
    :attr:`table` is the last complete, accepted table or ``None``, kept as a
    :class:`~peerlab.wire.qrp.PresenceTable` (a bit per entry): an ultrapeer
    holds one per leaf, and routing asks only what is present."""

    __slots__ = ("max_length", "max_fill", "table", "_receiver")

    def __init__(self, max_length: int = MAX_LEAF_TABLE_LENGTH, max_fill: float = MAX_FILL) -> None:
        self.max_length = max_length
        self.max_fill = max_fill
        self.table: QrpTable | None = None
        self._receiver = self._new_receiver()

    def _new_receiver(self) -> QrpReceiver:
        return QrpReceiver(max_table_length=self.max_length, presence_only=True)

    def receive(self, msg: ResetTable | PatchTable) -> QrpTable | None:
        """Feed one message; the new table when a sequence completed.

        Raises :class:`QrpRefused`; the link then has no table (it is sent
        no query) until it starts over with a RESET."""
        if isinstance(msg, ResetTable) and msg.table_length > self.max_length:
            self._fail()
            raise QrpRefused(
                "too_large", f"QRP table of {msg.table_length} entries over {self.max_length}"
            )
        try:
            table = self._receiver.receive(msg)
        except RemoteProtocolError as exc:
            self._fail()
            text = str(exc)
            if "sequence" in text or "before any RESET" in text:
                reason = "sequence"
            elif "larger than the table" in text or "exceeds" in text:
                reason = "too_large"
            else:
                reason = "bad"
            raise QrpRefused(reason, text) from None
        if isinstance(msg, ResetTable):
            self.table = None
            return None
        if table is None:
            return None
        if table.fill_ratio() > self.max_fill:
            self._fail()
            raise QrpRefused("full", f"QRP table claims {table.fill_ratio():.0%} of all keywords")
        self.table = table
        return table

    def _fail(self) -> None:
        self.table = None
        self._receiver = self._new_receiver()
