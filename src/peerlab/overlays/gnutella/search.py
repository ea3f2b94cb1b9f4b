"""Searching: answering Queries from our shares, and collecting the hits of ours.

Answering (RFC-Gnutella 0.6 section 2.2.6, ``huge``, ``min_speed``, the QHD
of LimeWire/BearShare): :func:`build_query_hits` turns the files that match
a Query into Query Hits: one result per file with its index, size, name and
HUGE ``urn:sha1``, at most :data:`RESULTS_PER_HIT` results a descriptor, the
LimeWire XML audio records when the query asked for XML (query flag 0x2000)
and files have tags, and the QHD trailer: our vendor code (:data:`VENDOR_CODE`,
``PLAB``), the open-data flags (push = we are firewalled, busy = no upload
slot free, stable = we have completed an upload, speed measured), and our
servent GUID last.

Collecting (the lecture's gtk-gnutella search screenshot): a :class:`Search`
groups the results of every hit by ``urn:sha1`` (by name and size when a
servent gives no URN) into :class:`SearchResult` rows, each with every
:class:`HitSource` that offers the file: host, port, speed, the busy /
stable / push flags, the servent GUID, its file index and name, and how
many hops away it answered.  Results reach ``on_hit(result, source)`` as
they arrive.  Every table is bounded (:data:`MAX_RESULTS_PER_SEARCH`,
:data:`MAX_SOURCES_PER_RESULT`).

The shares are duck-typed (:class:`Shares`): the node passes its
:class:`~peerlab.storage.catalog.Catalog`; tests pass a list in memory.

Public API: :class:`Shares`, :class:`SharedLike`, :func:`build_query_hits`,
:func:`matching_files`, :class:`Search`, :class:`SearchResult`,
:class:`HitSource`, :data:`VENDOR_CODE`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from peerlab.errors import LocalProtocolError, PeerlabError
from peerlab.wire.ggep import GGEP, ID_PUSH, pack_ip_ports
from peerlab.wire.gnutella import (
    DEFAULT_MAX_PAYLOAD,
    MAX_HITS,
    Query,
    QueryHit,
    QueryHitResult,
    build_xml_records,
    encode_payload,
    parse_xml_records,
)
from peerlab.wire.urn import sha1_urn

#: Our vendor code in Query Hits and GWebCache requests (the 4 letters of
#: the QHD, ``vendor_msg`` section 2: "PLAB" is not taken by any servent).
VENDOR_CODE = "PLAB"
#: Results in one Query Hit.  The field allows 255; servents send a handful
#: per descriptor so that one lost or dropped packet loses few.
RESULTS_PER_HIT = 10
#: Results we send for one Query at most (gtk-gnutella's default
#: "search_max_results" is of this order).
MAX_RESULTS_PER_QUERY = 50
#: Criteria shorter than this are not answered: a single letter matches
#: everything and is how crawlers list shares.
MIN_QUERY_CHARS = 2
#: Files one search keeps (a popular word draws thousands of hits).
MAX_RESULTS_PER_SEARCH = 1000
#: Sources kept per file in one search.
MAX_SOURCES_PER_RESULT = 100
#: Metadata attributes kept per result (from the XML records).
MAX_METADATA_ATTRIBUTES = 16


class SharedLike(Protocol):
    """What a shared file must offer (the catalog's ``SharedFile`` does)."""

    @property
    def index(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...


class Shares(Protocol):
    """What the servent asks of the shares: ``search(text, limit=...)``.

    Optional, used when present: ``by_urn(urn)`` (queries by hash),
    ``count()`` and ``total_size()`` (our Pong's files and kilobytes)."""

    def search(self, text: str, *, limit: int = ...) -> Sequence[Any]: ...


def _sha1_of(f: Any) -> bytes | None:
    sha1 = getattr(f, "sha1", None)
    if isinstance(sha1, bytes) and len(sha1) == 20:
        return sha1
    return None


def _urn_of(f: Any) -> str | None:
    sha1 = _sha1_of(f)
    if sha1 is not None:
        return sha1_urn(sha1)
    urn = getattr(f, "urn", None)
    return urn if isinstance(urn, str) and urn.lower().startswith("urn:sha1:") else None


def matching_files(shares: Shares, query: Query, limit: int = MAX_RESULTS_PER_QUERY) -> list[Any]:
    """The files answering ``query``: the one its ``urn:sha1`` names (HUGE
    section 4, when the shares can look files up by hash), else those
    matching every word of its criteria."""
    sha1 = query.sha1
    if sha1 is not None:
        by_urn = getattr(shares, "by_urn", None)
        if by_urn is not None:
            f = by_urn(sha1_urn(sha1))
            return [f] if f is not None else []
    text = query.criteria.strip()
    if len(text) < MIN_QUERY_CHARS:
        return []
    return list(shares.search(text, limit=limit))[:limit]


def _audio_attributes(f: Any) -> dict[str, str]:
    """LimeWire audio schema attributes of ``f`` (title, artist, album,
    genre, bitrate, seconds), those it has."""
    attrs: dict[str, str] = {}
    for name in ("title", "artist", "album", "genre"):
        v = getattr(f, name, None)
        if isinstance(v, str) and v:
            attrs[name] = v
    bitrate = getattr(f, "bitrate", None)
    if isinstance(bitrate, int) and bitrate > 0:
        attrs["bitrate"] = str(bitrate)
    duration = getattr(f, "duration", None)
    if isinstance(duration, int | float) and duration > 0:
        attrs["seconds"] = str(int(duration))
    return attrs


@dataclass(frozen=True, slots=True)
class HitIdentity:
    """How we describe ourselves in a Query Hit."""

    ip: str
    port: int
    speed: int
    servent_guid: bytes
    push: bool
    busy: bool
    stable: bool
    speed_measured: bool = False
    vendor: str = VENDOR_CODE
    #: Our push proxies, listed in GGEP ``PUSH`` (``push_proxy`` section 4.1).
    push_proxies: tuple[tuple[str, int], ...] = ()


def build_query_hits(
    query: Query,
    files: Sequence[Any],
    me: HitIdentity,
    *,
    results_per_hit: int = RESULTS_PER_HIT,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> list[QueryHit]:
    """Query Hits answering ``query`` with ``files`` (section 2.2.6), split
    so that none holds more than ``results_per_hit`` results or more than
    ``max_payload`` bytes.  A file whose name cannot travel is left out."""
    limit = query.max_hits
    chosen = list(files[:limit] if limit else files)
    per_hit = max(1, min(results_per_hit, MAX_HITS))
    hits: list[QueryHit] = []
    i = 0
    while i < len(chosen):
        n = min(per_hit, len(chosen) - i)
        while True:
            hit = _one_hit(query, chosen[i : i + n], me)
            if hit is None or len(encode_payload(hit)) <= max_payload or n == 1:
                break
            n = max(1, n // 2)
        if hit is not None and len(encode_payload(hit)) <= max_payload:
            hits.append(hit)
        i += n
    return hits


def _one_hit(query: Query, files: Sequence[Any], me: HitIdentity) -> QueryHit | None:
    results: list[QueryHitResult] = []
    records: list[tuple[int, dict[str, str]]] = []
    for f in files:
        urn = _urn_of(f)
        name = str(getattr(f, "name", ""))
        if not name or "\x00" in name:
            continue
        results.append(
            QueryHitResult(int(f.index), int(f.size), name, (urn,) if urn is not None else ())
        )
        if query.wants_xml:
            attrs = _audio_attributes(f)
            if attrs:
                records.append((len(results) - 1, attrs))
    if not results:
        return None
    xml = build_xml_records(records) if records else None
    hit = QueryHit(
        port=me.port,
        ip=me.ip,
        speed=me.speed,
        results=tuple(results),
        servent_guid=me.servent_guid,
        vendor=me.vendor,
        push=me.push,
        busy=me.busy,
        stable=me.stable,
        speed_measured=me.speed_measured,
        ggep=GGEP.of((ID_PUSH, pack_ip_ports(me.push_proxies))) if me.push_proxies else None,
        xml=xml,
    )
    try:
        encode_payload(hit)
    except LocalProtocolError:
        # A name with characters the wire cannot carry: drop the XML, then the hit.
        try:
            hit = QueryHit(**{**_fields(hit), "xml": None})
            encode_payload(hit)
        except (LocalProtocolError, PeerlabError):
            return None
    return hit


def _fields(hit: QueryHit) -> dict[str, Any]:
    return {name: getattr(hit, name) for name in hit.__dataclass_fields__}


# ------------------------------------------------------------- collecting


@dataclass(frozen=True, slots=True)
class HitSource:
    """One servent offering a file, as its Query Hit described it."""

    host: str
    port: int
    speed: int
    servent_guid: bytes
    index: int
    name: str
    vendor: str | None
    #: Open-data flags (``None``: not stated).
    push: bool | None
    busy: bool | None
    stable: bool | None
    speed_measured: bool | None
    #: Hops the hit travelled: 1 for a neighbour, 2 for one behind it ...
    distance: int
    push_proxies: tuple[tuple[str, int], ...] = ()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(slots=True)
class SearchResult:
    """One file found, with every source offering it."""

    urn: str | None
    name: str
    size: int
    sources: list[HitSource] = field(default_factory=list)
    #: Audio metadata from the XML records (title, artist, bitrate ...).
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.urn if self.urn is not None else f"{self.name.lower()}\x00{self.size}"


class Search:
    """A search we started: its GUID, and the results grouped by file.

    ``on_hit(result, source)`` is called for every new source of a file (a
    new file arrives with its first source)."""

    def __init__(
        self,
        guid: bytes,
        text: str,
        ttl: int,
        started: float,
        on_hit: Callable[[SearchResult, HitSource], None] | None,
        urn: str | None = None,
    ) -> None:
        self.guid = guid
        self.text = text
        self.urn = urn
        self.ttl = ttl
        self.started = started
        self.on_hit = on_hit
        self.results: dict[str, SearchResult] = {}
        #: Query Hit descriptors received for this search.
        self.hits = 0
        #: Sources by distance (how far the search reached).
        self.by_distance: dict[int, int] = {}
        self.finished = False
        #: ``on_hit`` calls that raised (each is reported to ``on_error``).
        self.callback_errors = 0
        self.on_error: Callable[[Exception], None] | None = None
        self._cancel: Callable[[Search], None] | None = None

    def cancel(self) -> None:
        """Stop delivering results (the GUID is forgotten)."""
        if not self.finished:
            self.finished = True
            if self._cancel is not None:
                self._cancel(self)

    @property
    def sources(self) -> int:
        return sum(len(r.sources) for r in self.results.values())

    def add_hit(self, hit: QueryHit, hops: int) -> int:
        """Record one Query Hit that arrived with ``hops``; returns new sources."""
        if self.finished:
            return 0
        self.hits += 1
        meta = _metadata_by_position(hit)
        new = 0
        for pos, r in enumerate(hit.results):
            sha1 = r.sha1
            urn = sha1_urn(sha1) if sha1 is not None else None
            if self.urn is not None and urn is not None and urn.lower() != self.urn.lower():
                continue
            key = urn if urn is not None else f"{r.name.lower()}\x00{r.size}"
            result = self.results.get(key)
            if result is None:
                if len(self.results) >= MAX_RESULTS_PER_SEARCH:
                    continue
                result = self.results[key] = SearchResult(urn, r.name, r.size)
            if len(result.sources) >= MAX_SOURCES_PER_RESULT:
                continue
            source = HitSource(
                host=hit.ip,
                port=hit.port,
                speed=hit.speed,
                servent_guid=hit.servent_guid,
                index=r.index,
                name=r.name,
                vendor=hit.vendor,
                push=hit.push,
                busy=hit.busy,
                stable=hit.stable,
                speed_measured=hit.speed_measured,
                distance=hops + 1,
                push_proxies=tuple(hit.push_proxies),
            )
            if any(
                s.address == source.address
                and s.servent_guid == source.servent_guid
                and s.index == source.index
                for s in result.sources
            ):
                continue
            result.sources.append(source)
            attrs = meta.get(pos) or _own_metadata(r)
            for k, v in attrs.items():
                if len(result.metadata) >= MAX_METADATA_ATTRIBUTES:
                    break
                result.metadata.setdefault(k, v)
            self.by_distance[source.distance] = self.by_distance.get(source.distance, 0) + 1
            new += 1
            if self.on_hit is not None:
                try:
                    self.on_hit(result, source)
                except Exception as exc:  # the owner's bug costs that call only
                    self.callback_errors += 1
                    if self.on_error is not None:
                        self.on_error(exc)
        return new


def _metadata_by_position(hit: QueryHit) -> dict[int, dict[str, str]]:
    if not hit.xml:
        return {}
    out: dict[int, dict[str, str]] = {}
    for rec in parse_xml_records(hit.xml):
        idx = rec.index
        if idx is not None and 0 <= idx < len(hit.results):
            out[idx] = {k: v for k, v in rec.attributes if k != "index"}
    return out


def _own_metadata(r: QueryHitResult) -> dict[str, str]:
    if not r.xml:
        return {}
    records = parse_xml_records(r.xml)
    return {k: v for k, v in records[0].attributes if k != "index"} if records else {}


__all__ = [
    "MAX_RESULTS_PER_QUERY",
    "MAX_RESULTS_PER_SEARCH",
    "MAX_SOURCES_PER_RESULT",
    "MIN_QUERY_CHARS",
    "RESULTS_PER_HIT",
    "VENDOR_CODE",
    "HitIdentity",
    "HitSource",
    "Search",
    "SearchResult",
    "SharedLike",
    "Shares",
    "build_query_hits",
    "matching_files",
]
