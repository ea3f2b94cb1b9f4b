"""BitTorrent tracker messages: HTTP announce and scrape, and the UDP tracker protocol.

Codecs only (no I/O, no clock, no randomness).  Specs: BEP 3 ("Trackers"),
BEP 7 (``peers6``), BEP 15 (UDP tracker protocol), BEP 21 (``event=paused``),
BEP 23 (compact peer lists), BEP 41 (UDP option trailer, kept raw), BEP 48
(HTTP scrape).  The tracker that serves them lives in
:mod:`peerlab.overlays.tracker.server`, the clients that send them in
:mod:`peerlab.overlays.tracker.client`.

Every parser here raises only :class:`~peerlab.errors.RemoteProtocolError` on
garbage; encoders raise :class:`~peerlab.errors.LocalProtocolError` when asked
to put something on the wire that the protocol cannot carry.

Public API (stable)
===================

Shared values::

    AnnounceEvent: NONE COMPLETED STARTED STOPPED PAUSED   (IntEnum: the BEP 15
                   event codes 0-4; ``.http`` is the BEP 3 ``event=`` word)
    Peer(ip: str, port: int, peer_id: bytes | None = None)
    ScrapeStats(complete: int, downloaded: int, incomplete: int)
    TrackerFailure(reason: str, retry_in: int | None = None)   # a "failure reason" reply

Compact peer lists (BEP 23, BEP 7)::

    encode_compact_peers(peers) -> bytes           # 6 bytes per IPv4 peer
    decode_compact_peers(data) -> tuple[Peer, ...]
    encode_compact_peers6(peers) -> bytes          # 18 bytes per IPv6 peer
    decode_compact_peers6(data) -> tuple[Peer, ...]

HTTP announce (BEP 3, BEP 23)::

    AnnounceRequest(info_hash, peer_id, port, uploaded, downloaded, left,
                    event=AnnounceEvent.NONE, compact=False, no_peer_id=False,
                    numwant=None, key=None, ip=None, tracker_id=None)
    parse_announce_query(query: str | bytes) -> AnnounceRequest
    encode_announce_query(req) -> str               # the query string, no "?"
    AnnounceResponse(interval, peers=(), min_interval=None, complete=None,
                     incomplete=None, tracker_id=None, warning=None)
    encode_announce_response(resp, *, compact: bool, no_peer_id=False) -> bytes
    decode_announce_response(body: bytes) -> AnnounceResponse | TrackerFailure
    encode_failure(reason, retry_in=None) -> bytes

HTTP scrape (BEP 48)::

    ScrapeRequest(info_hashes: tuple[bytes, ...])   # empty: a full scrape
    parse_scrape_query(query) -> ScrapeRequest
    encode_scrape_query(req) -> str
    ScrapeResponse(files: tuple[tuple[bytes, ScrapeStats], ...],
                   min_request_interval=None)
    encode_scrape_response(resp) -> bytes
    decode_scrape_response(body) -> ScrapeResponse | TrackerFailure
    scrape_url(announce_url) -> str | None          # "announce" -> "scrape"

UDP tracker (BEP 15), one frozen dataclass per packet::

    ConnectRequest(transaction_id)
    ConnectResponse(transaction_id, connection_id)
    UdpAnnounceRequest(connection_id, transaction_id, info_hash, peer_id,
                       downloaded, left, uploaded, event, ip, key, num_want,
                       port, options=b"")
    UdpAnnounceResponse(transaction_id, interval, leechers, seeders, peers)
    UdpScrapeRequest(connection_id, transaction_id, info_hashes)
    UdpScrapeResponse(transaction_id, stats: tuple[ScrapeStats, ...])
    UdpError(transaction_id, message)
    encode_udp(packet, *, ipv6=False) -> bytes      # ipv6: 18-byte peers
    decode_udp_request(data) -> ConnectRequest | UdpAnnounceRequest | UdpScrapeRequest
    decode_udp_response(data, *, ipv6=False) -> ConnectResponse | UdpAnnounceResponse
                                                  | UdpScrapeResponse | UdpError
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit, urlunsplit

from peerlab.errors import LocalProtocolError, PeerlabError, RemoteProtocolError
from peerlab.wire import bencode

__all__ = [
    "ACTION_ANNOUNCE",
    "ACTION_CONNECT",
    "ACTION_ERROR",
    "ACTION_SCRAPE",
    "AnnounceEvent",
    "AnnounceRequest",
    "AnnounceResponse",
    "ConnectRequest",
    "ConnectResponse",
    "Peer",
    "ScrapeRequest",
    "ScrapeResponse",
    "ScrapeStats",
    "TrackerFailure",
    "UDP_PROTOCOL_ID",
    "UdpAnnounceRequest",
    "UdpAnnounceResponse",
    "UdpError",
    "UdpScrapeRequest",
    "UdpScrapeResponse",
    "decode_announce_response",
    "decode_compact_peers",
    "decode_compact_peers6",
    "decode_scrape_response",
    "decode_udp_request",
    "decode_udp_response",
    "encode_announce_query",
    "encode_announce_response",
    "encode_compact_peers",
    "encode_compact_peers6",
    "encode_failure",
    "encode_scrape_query",
    "encode_scrape_response",
    "encode_udp",
    "parse_announce_query",
    "parse_scrape_query",
    "scrape_url",
]

# ---------------------------------------------------------------- limits

#: Length of an info-hash and of a peer id (BEP 3: 20-byte SHA-1 / 20-byte id).
INFO_HASH_BYTES = 20
PEER_ID_BYTES = 20
#: Longest announce or scrape query string parsed: a BEP 48 scrape of
#: :data:`MAX_SCRAPE_HASHES` hashes fully escaped is about 4.6 kB; a real
#: announce is under 400 bytes.
MAX_QUERY_BYTES = 8192
#: Fields in one query string: BEP 3 names about a dozen, clients add a few
#: of their own (``supportcrypto``, ``redundant``, ``corrupt``...).
MAX_QUERY_FIELDS = 100
#: Info-hashes in one HTTP scrape (BEP 48 sets none; this matches the UDP
#: bound so both transports answer the same question).
MAX_SCRAPE_HASHES = 74
#: Digits of a byte count, port or numwant: 19 digits hold any signed 64-bit
#: value, which is also what the UDP packets carry (BEP 15 int64).
MAX_INT_DIGITS = 19
MAX_INT64 = (1 << 63) - 1
#: Longest ``key`` / ``trackerid`` accepted (BEP 3 leaves them opaque;
#: clients send 8 hex digits, trackers a short token).
MAX_TOKEN_CHARS = 64
#: Longest failure reason or warning we put on the wire or accept from one.
MAX_REASON_CHARS = 1024
#: Peers accepted from one announce reply: a tracker's numwant cap is a few
#: hundred; more is a hostile or broken tracker.
MAX_REPLY_PEERS = 10_000
#: Largest UDP tracker packet parsed (BEP 15 packets are under 1.5 kB; a
#: request carries at most 74 hashes, a reply a few hundred peers).
MAX_UDP_PACKET = 65507
#: Info-hashes in one UDP scrape (BEP 15: "Up to about 74 torrents can be
#: scraped at once", which keeps the request inside one unfragmented packet).
MAX_UDP_SCRAPE_HASHES = 74

#: BEP 15 magic constant sent as the connection id of a connect request.
UDP_PROTOCOL_ID = 0x41727101980
#: BEP 15 actions.
ACTION_CONNECT = 0
ACTION_ANNOUNCE = 1
ACTION_SCRAPE = 2
ACTION_ERROR = 3


class AnnounceEvent(IntEnum):
    """The announce ``event`` (BEP 3), numbered as BEP 15 sends it.

    ``PAUSED`` is BEP 21's partial seed; libtorrent sends it as UDP event 4.
    """

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3
    PAUSED = 4

    @property
    def http(self) -> str:
        """The ``event=`` word of an HTTP announce (empty for ``NONE``)."""
        return "" if self is AnnounceEvent.NONE else self.name.lower()

    @classmethod
    def from_http(cls, word: str) -> AnnounceEvent:
        """The event named by an ``event=`` value; "empty" counts as none."""
        if word == "empty":
            return cls.NONE
        for event in cls:
            if event.http == word:
                return event
        raise RemoteProtocolError(f"unknown announce event {word[:40]!r}")


@dataclass(frozen=True, slots=True)
class Peer:
    """One peer of a peer list: address, and the id where the list carries one."""

    ip: str
    port: int
    peer_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    """One swarm's scrape figures (BEP 48 ``complete``/``downloaded``/``incomplete``;
    BEP 15 seeders/completed/leechers)."""

    complete: int
    downloaded: int
    incomplete: int


@dataclass(frozen=True, slots=True)
class TrackerFailure:
    """A tracker's refusal: BEP 3 ``failure reason``, BEP 31 ``retry in`` (minutes)."""

    reason: str
    retry_in: int | None = None


# ------------------------------------------------------- compact peer lists


def _ipv4_bytes(ip: str) -> bytes:
    try:
        return ipaddress.IPv4Address(ip).packed
    except ValueError:
        raise LocalProtocolError(f"not an IPv4 address: {ip!r}") from None


def _ipv6_bytes(ip: str) -> bytes:
    try:
        return ipaddress.IPv6Address(ip).packed
    except ValueError:
        raise LocalProtocolError(f"not an IPv6 address: {ip!r}") from None


def _check_port(port: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port out of range: {port}")


def encode_compact_peers(peers: Iterable[Peer]) -> bytes:
    """BEP 23: 4 bytes of IPv4 address and 2 bytes of port per peer, network order."""
    out = bytearray()
    for p in peers:
        _check_port(p.port)
        out += _ipv4_bytes(p.ip)
        out += p.port.to_bytes(2, "big")
    return bytes(out)


def decode_compact_peers(data: bytes) -> tuple[Peer, ...]:
    """The peers of a BEP 23 compact string (a length not a multiple of 6 is garbage)."""
    return _decode_compact(data, 4)


def encode_compact_peers6(peers: Iterable[Peer]) -> bytes:
    """BEP 7 ``peers6``: 16 bytes of IPv6 address and 2 bytes of port per peer."""
    out = bytearray()
    for p in peers:
        _check_port(p.port)
        out += _ipv6_bytes(p.ip)
        out += p.port.to_bytes(2, "big")
    return bytes(out)


def decode_compact_peers6(data: bytes) -> tuple[Peer, ...]:
    """The peers of a BEP 7 ``peers6`` string (18 bytes each)."""
    return _decode_compact(data, 16)


def _decode_compact(data: bytes, addr_len: int) -> tuple[Peer, ...]:
    step = addr_len + 2
    if len(data) % step:
        raise RemoteProtocolError(
            f"compact peer list length {len(data)} is not a multiple of {step}"
        )
    if len(data) // step > MAX_REPLY_PEERS:
        raise RemoteProtocolError("compact peer list too long")
    make = ipaddress.IPv4Address if addr_len == 4 else ipaddress.IPv6Address
    return tuple(
        Peer(
            str(make(bytes(data[i : i + addr_len]))),
            int.from_bytes(data[i + addr_len : i + step], "big"),
        )
        for i in range(0, len(data), step)
    )


# ------------------------------------------------------------ query strings

# A '%' not followed by two hex digits: RFC 3986 section 2.1 malformed escape.
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Octets allowed raw in a query (RFC 3986 section 3.4) plus '%' escapes.
_QUERY_CHARS_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_DIGITS_RE = re.compile(r"[0-9]+")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


def _query_fields(query: str | bytes) -> list[tuple[str, bytes]]:
    """``name=value`` pairs of an application/x-www-form-urlencoded query.

    Names are decoded to ASCII text, values kept as raw bytes (``info_hash``
    and ``peer_id`` are binary).  '+' stands for a space, as in the form
    encoding BEP 3 trackers were written against.  Strict: raw bytes outside
    RFC 3986's query set, a malformed ``%`` escape, a non-ASCII name or too
    many fields are garbage.
    """
    if isinstance(query, bytes):
        try:
            query = query.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError("non-ASCII octet in the query string") from None
    if len(query) > MAX_QUERY_BYTES:
        raise RemoteProtocolError("query string too long")
    if _QUERY_CHARS_RE.fullmatch(query) is None:
        raise RemoteProtocolError("illegal character in the query string")
    if _BAD_ESCAPE_RE.search(query) is not None:
        raise RemoteProtocolError("malformed %-escape in the query string")
    if not query:
        return []
    parts = query.split("&")
    if len(parts) > MAX_QUERY_FIELDS:
        raise RemoteProtocolError(f"more than {MAX_QUERY_FIELDS} query fields")
    fields: list[tuple[str, bytes]] = []
    for part in parts:
        if not part:
            continue  # "a=1&&b=2": an empty field carries nothing
        raw_name, _, raw_value = part.partition("=")
        name_bytes = unquote_to_bytes(raw_name.replace("+", " "))
        try:
            name = name_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError("non-ASCII query field name") from None
        fields.append((name, unquote_to_bytes(raw_value.replace("+", " "))))
    return fields


def _ascii(value: bytes, name: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{name} is not ASCII") from None


def _uint(value: bytes, name: str, maximum: int = MAX_INT64) -> int:
    text = _ascii(value, name)
    if _DIGITS_RE.fullmatch(text) is None or len(text) > MAX_INT_DIGITS:
        raise RemoteProtocolError(f"{name} is not a decimal number: {text[:40]!r}")
    n = int(text)
    if n > maximum:
        raise RemoteProtocolError(f"{name} out of range: {n}")
    return n


def _flag(value: bytes, name: str) -> bool:
    if value not in (b"0", b"1"):
        raise RemoteProtocolError(f"{name} must be 0 or 1")
    return value == b"1"


def _token(value: bytes, name: str) -> str:
    text = _ascii(value, name)
    if len(text) > MAX_TOKEN_CHARS or _TOKEN_RE.fullmatch(text) is None:
        raise RemoteProtocolError(f"bad {name}")
    return text


def parse_ip_literal(text: str) -> str:
    """An IPv4 or IPv6 address literal in its normal form.

    Strict (BEP 3 allows a DNS name in ``ip=``; a tracker that resolved
    names for peers would be a lookup amplifier, so names are refused):
    no zone ids, no leading zeros, nothing but the address.
    """
    if not text.isascii() or "%" in text or len(text) > 45:
        raise RemoteProtocolError(f"not an IP address: {text[:60]!r}")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RemoteProtocolError(f"not an IP address: {text[:60]!r}") from None


# ------------------------------------------------------------ HTTP announce


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """An announce (BEP 3 "Trackers" request parameters, BEP 23 ``compact``).

    ``numwant`` ``None`` lets the tracker choose; ``ip`` is the optional
    address the peer asks to be listed at (validated, never a DNS name).
    """

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: AnnounceEvent = AnnounceEvent.NONE
    compact: bool = False
    no_peer_id: bool = False
    numwant: int | None = None
    key: str | None = None
    ip: str | None = None
    tracker_id: str | None = None


_REQUIRED_ANNOUNCE = ("info_hash", "peer_id", "port", "uploaded", "downloaded", "left")
_KNOWN_ANNOUNCE = frozenset(
    {*_REQUIRED_ANNOUNCE, "event", "compact", "no_peer_id", "numwant", "key", "ip", "trackerid"}
)


def parse_announce_query(query: str | bytes) -> AnnounceRequest:
    """The announce in the query string of ``GET /announce?...`` (BEP 3).

    ``info_hash`` and ``peer_id`` must decode to exactly 20 bytes; ``port``
    to 1-65535; the byte counts to non-negative decimal numbers that fit a
    signed 64-bit integer (what BEP 15 can carry).  A repeated known field is
    garbage; unknown fields are ignored (clients add their own).
    """
    seen: dict[str, bytes] = {}
    for name, value in _query_fields(query):
        if name not in _KNOWN_ANNOUNCE:
            continue
        if name in seen:
            raise RemoteProtocolError(f"repeated announce field {name!r}")
        seen[name] = value
    for name in _REQUIRED_ANNOUNCE:
        if name not in seen:
            raise RemoteProtocolError(f"announce without {name}")
    info_hash = seen["info_hash"]
    if len(info_hash) != INFO_HASH_BYTES:
        raise RemoteProtocolError(f"info_hash is {len(info_hash)} bytes, not 20")
    peer_id = seen["peer_id"]
    if len(peer_id) != PEER_ID_BYTES:
        raise RemoteProtocolError(f"peer_id is {len(peer_id)} bytes, not 20")
    port = _uint(seen["port"], "port", 0xFFFF)
    if port == 0:
        raise RemoteProtocolError("port 0 cannot be connected to")
    event = AnnounceEvent.from_http(_ascii(seen.get("event", b""), "event"))
    ip = seen.get("ip")
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=_uint(seen["uploaded"], "uploaded"),
        downloaded=_uint(seen["downloaded"], "downloaded"),
        left=_uint(seen["left"], "left"),
        event=event,
        compact=_flag(seen["compact"], "compact") if "compact" in seen else False,
        no_peer_id=_flag(seen["no_peer_id"], "no_peer_id") if "no_peer_id" in seen else False,
        numwant=_uint(seen["numwant"], "numwant") if "numwant" in seen else None,
        key=_token(seen["key"], "key") if "key" in seen else None,
        ip=parse_ip_literal(_ascii(ip, "ip")) if ip is not None else None,
        tracker_id=_token(seen["trackerid"], "trackerid") if "trackerid" in seen else None,
    )


def _q(value: bytes | str) -> str:
    """Percent-encode everything but RFC 3986 unreserved characters (BEP 3)."""
    data = value.encode("ascii") if isinstance(value, str) else value
    return quote_from_bytes(data, safe="")


def encode_announce_query(req: AnnounceRequest) -> str:
    """The query string (without ``?``) of an HTTP announce."""
    if len(req.info_hash) != INFO_HASH_BYTES or len(req.peer_id) != PEER_ID_BYTES:
        raise LocalProtocolError("info_hash and peer_id must be 20 bytes")
    if not 1 <= req.port <= 0xFFFF:
        raise LocalProtocolError(f"port out of range: {req.port}")
    for name in ("uploaded", "downloaded", "left"):
        if not 0 <= getattr(req, name) <= MAX_INT64:
            raise LocalProtocolError(f"{name} out of range")
    parts = [
        f"info_hash={_q(req.info_hash)}",
        f"peer_id={_q(req.peer_id)}",
        f"port={req.port}",
        f"uploaded={req.uploaded}",
        f"downloaded={req.downloaded}",
        f"left={req.left}",
    ]
    if req.event is not AnnounceEvent.NONE:
        parts.append(f"event={req.event.http}")
    parts.append(f"compact={int(req.compact)}")
    if req.no_peer_id:
        parts.append("no_peer_id=1")
    if req.numwant is not None:
        if not 0 <= req.numwant <= MAX_INT64:
            raise LocalProtocolError("numwant out of range")
        parts.append(f"numwant={req.numwant}")
    for name, token in (("key", req.key), ("trackerid", req.tracker_id)):
        if token is not None:
            if len(token) > MAX_TOKEN_CHARS or _TOKEN_RE.fullmatch(token) is None:
                raise LocalProtocolError(f"bad {name} {token!r}")
            parts.append(f"{name}={_q(token)}")
    if req.ip is not None:
        try:
            parts.append(f"ip={_q(parse_ip_literal(req.ip))}")
        except RemoteProtocolError as exc:
            raise LocalProtocolError(str(exc)) from None
    return "&".join(parts)


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """A successful announce reply (BEP 3; ``peers`` holds IPv4 and IPv6 peers)."""

    interval: int
    peers: tuple[Peer, ...] = ()
    min_interval: int | None = None
    complete: int | None = None
    incomplete: int | None = None
    tracker_id: str | None = None
    warning: str | None = None


def _reason(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(text) > MAX_REASON_CHARS:
        raise LocalProtocolError("failure reason / warning too long")
    return data


def _nonneg(n: int, name: str) -> int:
    if not 0 <= n <= MAX_INT64:
        raise LocalProtocolError(f"{name} out of range: {n}")
    return n


def encode_announce_response(
    resp: AnnounceResponse, *, compact: bool, no_peer_id: bool = False
) -> bytes:
    """The bencoded reply to an announce.

    ``compact``: IPv4 peers as a BEP 23 ``peers`` string and IPv6 peers as a
    BEP 7 ``peers6`` string; otherwise one ``peers`` list of dictionaries
    (``peer id`` left out when the peer has none or ``no_peer_id`` is set).
    """
    out: dict[bytes, Any] = {b"interval": _nonneg(resp.interval, "interval")}
    if resp.min_interval is not None:
        out[b"min interval"] = _nonneg(resp.min_interval, "min interval")
    if resp.complete is not None:
        out[b"complete"] = _nonneg(resp.complete, "complete")
    if resp.incomplete is not None:
        out[b"incomplete"] = _nonneg(resp.incomplete, "incomplete")
    if resp.tracker_id is not None:
        if len(resp.tracker_id) > MAX_TOKEN_CHARS or _TOKEN_RE.fullmatch(resp.tracker_id) is None:
            raise LocalProtocolError(f"bad tracker id {resp.tracker_id!r}")
        out[b"tracker id"] = resp.tracker_id.encode("ascii")
    if resp.warning is not None:
        out[b"warning message"] = _reason(resp.warning)
    if compact:
        v4 = [p for p in resp.peers if ":" not in p.ip]
        v6 = [p for p in resp.peers if ":" in p.ip]
        out[b"peers"] = encode_compact_peers(v4)
        if v6:
            out[b"peers6"] = encode_compact_peers6(v6)
    else:
        entries: list[dict[bytes, Any]] = []
        for p in resp.peers:
            _check_port(p.port)
            entry: dict[bytes, Any] = {b"ip": p.ip.encode("ascii"), b"port": p.port}
            if p.peer_id is not None and not no_peer_id:
                entry[b"peer id"] = p.peer_id
            entries.append(entry)
        out[b"peers"] = entries
    return bencode.encode(out)


def encode_failure(reason: str, retry_in: int | None = None) -> bytes:
    """A ``failure reason`` reply (BEP 3), with BEP 31's ``retry in`` minutes."""
    out: dict[bytes, Any] = {b"failure reason": _reason(reason)}
    if retry_in is not None:
        out[b"retry in"] = _nonneg(retry_in, "retry in")
    return bencode.encode(out)


def _decode_dict(body: bytes, what: str) -> dict[bytes, Any]:
    try:
        doc = bencode.decode(body)
    except RemoteProtocolError:
        raise
    except PeerlabError as exc:
        raise RemoteProtocolError(f"{what} is not bencode: {exc}") from None
    if not isinstance(doc, dict):
        raise RemoteProtocolError(f"{what} is not a dictionary")
    return doc


def _text(doc: dict[bytes, Any], key: bytes) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) > MAX_REASON_CHARS * 4:
        raise RemoteProtocolError(f"bad {key.decode()!r} in the tracker reply")
    return value.decode("utf-8", "replace")[:MAX_REASON_CHARS]


def _count(doc: dict[bytes, Any], key: bytes, *, required: bool = False) -> int | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise RemoteProtocolError(f"tracker reply without {key.decode()!r}")
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT64:
        raise RemoteProtocolError(f"bad {key.decode()!r} in the tracker reply")
    return value


def _failure(doc: dict[bytes, Any]) -> TrackerFailure | None:
    if b"failure reason" not in doc:
        return None
    reason = _text(doc, b"failure reason")
    assert reason is not None
    retry = doc.get(b"retry in")
    retry_in = (
        retry if isinstance(retry, int) and not isinstance(retry, bool) and retry >= 0 else None
    )
    return TrackerFailure(reason, retry_in)


def _dict_peers(entries: list[Any]) -> list[Peer]:
    if len(entries) > MAX_REPLY_PEERS:
        raise RemoteProtocolError("peer list too long")
    peers: list[Peer] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise RemoteProtocolError("peer list entry is not a dictionary")
        ip = entry.get(b"ip")
        port = entry.get(b"port")
        pid = entry.get(b"peer id")
        if not isinstance(ip, bytes) or not isinstance(port, int) or isinstance(port, bool):
            raise RemoteProtocolError("peer list entry without ip and port")
        if not 0 < port <= 0xFFFF:
            raise RemoteProtocolError(f"peer port out of range: {port}")
        if pid is not None and (not isinstance(pid, bytes) or len(pid) != PEER_ID_BYTES):
            raise RemoteProtocolError("peer list entry with a bad peer id")
        peers.append(Peer(parse_ip_literal(_ascii(ip, "peer ip")), port, pid))
    return peers


def decode_announce_response(body: bytes) -> AnnounceResponse | TrackerFailure:
    """A tracker's announce reply: peers from ``peers`` (compact string or
    dictionary list) and ``peers6``, or the :class:`TrackerFailure` it sent."""
    doc = _decode_dict(body, "announce reply")
    failure = _failure(doc)
    if failure is not None:
        return failure
    interval = _count(doc, b"interval", required=True)
    assert interval is not None
    raw = doc.get(b"peers", b"")
    peers: list[Peer]
    if isinstance(raw, bytes):
        peers = list(decode_compact_peers(raw))
    elif isinstance(raw, list):
        peers = _dict_peers(raw)
    else:
        raise RemoteProtocolError("peers is neither a string nor a list")
    raw6 = doc.get(b"peers6")
    if raw6 is not None:
        if not isinstance(raw6, bytes):
            raise RemoteProtocolError("peers6 is not a string")
        peers.extend(decode_compact_peers6(raw6))
    if len(peers) > MAX_REPLY_PEERS:
        raise RemoteProtocolError("peer list too long")
    tracker_id = doc.get(b"tracker id")
    if tracker_id is not None and (
        not isinstance(tracker_id, bytes)
        or len(tracker_id) > MAX_TOKEN_CHARS
        or _TOKEN_RE.fullmatch(tracker_id.decode("latin-1")) is None
    ):
        raise RemoteProtocolError("bad tracker id")
    return AnnounceResponse(
        interval=interval,
        peers=tuple(peers),
        min_interval=_count(doc, b"min interval"),
        complete=_count(doc, b"complete"),
        incomplete=_count(doc, b"incomplete"),
        tracker_id=tracker_id.decode("ascii") if tracker_id is not None else None,
        warning=_text(doc, b"warning message"),
    )


# -------------------------------------------------------------- HTTP scrape


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    """A BEP 48 scrape: the info-hashes asked about (none: every swarm)."""

    info_hashes: tuple[bytes, ...] = ()


def parse_scrape_query(query: str | bytes) -> ScrapeRequest:
    """The info-hashes of ``GET /scrape?info_hash=...&info_hash=...`` (BEP 48).

    Each must decode to 20 bytes; at most :data:`MAX_SCRAPE_HASHES`;
    duplicates are folded; other fields are ignored.
    """
    hashes: list[bytes] = []
    for name, value in _query_fields(query):
        if name != "info_hash":
            continue
        if len(value) != INFO_HASH_BYTES:
            raise RemoteProtocolError(f"info_hash is {len(value)} bytes, not 20")
        if value not in hashes:
            hashes.append(value)
            if len(hashes) > MAX_SCRAPE_HASHES:
                raise RemoteProtocolError(f"more than {MAX_SCRAPE_HASHES} info_hashes")
    return ScrapeRequest(tuple(hashes))


def encode_scrape_query(req: ScrapeRequest) -> str:
    """The query string (without ``?``) of a BEP 48 scrape."""
    if len(req.info_hashes) > MAX_SCRAPE_HASHES:
        raise LocalProtocolError(f"more than {MAX_SCRAPE_HASHES} info_hashes")
    for h in req.info_hashes:
        if len(h) != INFO_HASH_BYTES:
            raise LocalProtocolError("info_hash must be 20 bytes")
    return "&".join(f"info_hash={_q(h)}" for h in req.info_hashes)


@dataclass(frozen=True, slots=True)
class ScrapeResponse:
    """A BEP 48 scrape reply: figures per info-hash, in the order given."""

    files: tuple[tuple[bytes, ScrapeStats], ...] = ()
    min_request_interval: int | None = None

    def get(self, info_hash: bytes) -> ScrapeStats | None:
        """The figures of one swarm, or ``None`` when the reply left it out."""
        for h, stats in self.files:
            if h == info_hash:
                return stats
        return None


def encode_scrape_response(resp: ScrapeResponse) -> bytes:
    """``d5:filesd<hash>d8:completei..e10:downloadedi..e10:incompletei..eee...e`` (BEP 48)."""
    files: dict[bytes, Any] = {}
    for h, s in resp.files:
        if len(h) != INFO_HASH_BYTES:
            raise LocalProtocolError("info_hash must be 20 bytes")
        files[h] = {
            b"complete": _nonneg(s.complete, "complete"),
            b"downloaded": _nonneg(s.downloaded, "downloaded"),
            b"incomplete": _nonneg(s.incomplete, "incomplete"),
        }
    out: dict[bytes, Any] = {b"files": files}
    if resp.min_request_interval is not None:
        out[b"flags"] = {b"min_request_interval": _nonneg(resp.min_request_interval, "interval")}
    return bencode.encode(out)


def decode_scrape_response(body: bytes) -> ScrapeResponse | TrackerFailure:
    """A BEP 48 scrape reply, or the :class:`TrackerFailure` the tracker sent."""
    doc = _decode_dict(body, "scrape reply")
    failure = _failure(doc)
    if failure is not None:
        return failure
    files = doc.get(b"files")
    if not isinstance(files, dict):
        raise RemoteProtocolError("scrape reply without a files dictionary")
    if len(files) > MAX_REPLY_PEERS:
        raise RemoteProtocolError("scrape reply too long")
    out: list[tuple[bytes, ScrapeStats]] = []
    for h, entry in files.items():
        if not isinstance(h, bytes) or len(h) != INFO_HASH_BYTES or not isinstance(entry, dict):
            raise RemoteProtocolError("bad files entry in the scrape reply")
        complete = _count(entry, b"complete", required=True)
        downloaded = _count(entry, b"downloaded", required=True)
        incomplete = _count(entry, b"incomplete", required=True)
        assert complete is not None and downloaded is not None and incomplete is not None
        out.append((h, ScrapeStats(complete, downloaded, incomplete)))
    interval: int | None = None
    flags = doc.get(b"flags")
    if isinstance(flags, dict):
        interval = _count(flags, b"min_request_interval")
    return ScrapeResponse(tuple(out), interval)


def scrape_url(announce_url: str) -> str | None:
    """BEP 48: the scrape URL of an HTTP announce URL, or ``None`` when the
    last path component does not start with ``announce`` (no scrape then)."""
    parts = urlsplit(announce_url)
    head, slash, last = parts.path.rpartition("/")
    if not slash or not last.startswith("announce"):
        return None
    path = f"{head}/scrape{last[len('announce') :]}"
    return urlunsplit(parts._replace(path=path))


# ------------------------------------------------------------- UDP (BEP 15)


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """BEP 15 connect: ``protocol_id`` (the magic), action 0, transaction id."""

    transaction_id: int


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    """BEP 15 connect reply: action 0, transaction id, connection id."""

    transaction_id: int
    connection_id: int


@dataclass(frozen=True, slots=True)
class UdpAnnounceRequest:
    """BEP 15 announce (98 bytes), with any BEP 41 option bytes after it kept raw.

    ``ip`` 0 means "the packet's source address"; ``num_want`` -1 lets the
    tracker choose.
    """

    connection_id: int
    transaction_id: int
    info_hash: bytes
    peer_id: bytes
    downloaded: int
    left: int
    uploaded: int
    event: AnnounceEvent
    ip: int
    key: int
    num_want: int
    port: int
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class UdpAnnounceResponse:
    """BEP 15 announce reply; peers are 6 (IPv4) or 18 (IPv6) bytes each,
    by the address family of the request."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: tuple[Peer, ...] = ()


@dataclass(frozen=True, slots=True)
class UdpScrapeRequest:
    """BEP 15 scrape: up to :data:`MAX_UDP_SCRAPE_HASHES` info-hashes."""

    connection_id: int
    transaction_id: int
    info_hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class UdpScrapeResponse:
    """BEP 15 scrape reply: seeders, completed, leechers per hash, in request order
    (carried here as :class:`ScrapeStats` complete/downloaded/incomplete)."""

    transaction_id: int
    stats: tuple[ScrapeStats, ...] = ()


@dataclass(frozen=True, slots=True)
class UdpError:
    """BEP 15 error: action 3, transaction id, a message (the rest of the packet)."""

    transaction_id: int
    message: str


UdpRequest = ConnectRequest | UdpAnnounceRequest | UdpScrapeRequest
UdpResponse = ConnectResponse | UdpAnnounceResponse | UdpScrapeResponse | UdpError
UdpPacket = UdpRequest | UdpResponse

_HEAD = struct.Struct(">QII")  # connection_id, action, transaction_id
_REPLY_HEAD = struct.Struct(">II")  # action, transaction_id
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_SCRAPE_ENTRY = struct.Struct(">III")
_CONNECT_REPLY = struct.Struct(">IIQ")

#: Size of a BEP 15 announce request without options.
UDP_ANNOUNCE_BYTES = _ANNOUNCE.size  # 98


def _u32(n: int, name: str) -> int:
    if not 0 <= n <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{name} out of range: {n}")
    return n


def _i32_count(n: int, name: str) -> int:
    if not 0 <= n <= 0x7FFFFFFF:
        raise LocalProtocolError(f"{name} out of range: {n}")
    return n


def _u64(n: int, name: str) -> int:
    if not 0 <= n <= 0xFFFFFFFFFFFFFFFF:
        raise LocalProtocolError(f"{name} out of range: {n}")
    return n


def encode_udp(packet: UdpPacket, *, ipv6: bool = False) -> bytes:
    """One BEP 15 packet.  ``ipv6`` selects 18-byte peers in an announce reply."""
    if isinstance(packet, ConnectRequest):
        return _HEAD.pack(UDP_PROTOCOL_ID, ACTION_CONNECT, _u32(packet.transaction_id, "tid"))
    if isinstance(packet, ConnectResponse):
        return _CONNECT_REPLY.pack(
            ACTION_CONNECT,
            _u32(packet.transaction_id, "tid"),
            _u64(packet.connection_id, "connection_id"),
        )
    if isinstance(packet, UdpAnnounceRequest):
        if len(packet.info_hash) != INFO_HASH_BYTES or len(packet.peer_id) != PEER_ID_BYTES:
            raise LocalProtocolError("info_hash and peer_id must be 20 bytes")
        if not -0x80000000 <= packet.num_want <= 0x7FFFFFFF:
            raise LocalProtocolError(f"num_want out of range: {packet.num_want}")
        _check_port(packet.port)
        for name in ("downloaded", "left", "uploaded"):
            if not 0 <= getattr(packet, name) <= MAX_INT64:
                raise LocalProtocolError(f"{name} out of range")
        return (
            _ANNOUNCE.pack(
                _u64(packet.connection_id, "connection_id"),
                ACTION_ANNOUNCE,
                _u32(packet.transaction_id, "tid"),
                packet.info_hash,
                packet.peer_id,
                packet.downloaded,
                packet.left,
                packet.uploaded,
                int(packet.event),
                _u32(packet.ip, "ip"),
                _u32(packet.key, "key"),
                packet.num_want,
                packet.port,
            )
            + packet.options
        )
    if isinstance(packet, UdpAnnounceResponse):
        head = _ANNOUNCE_REPLY.pack(
            ACTION_ANNOUNCE,
            _u32(packet.transaction_id, "tid"),
            _i32_count(packet.interval, "interval"),
            _i32_count(packet.leechers, "leechers"),
            _i32_count(packet.seeders, "seeders"),
        )
        peers = encode_compact_peers6(packet.peers) if ipv6 else encode_compact_peers(packet.peers)
        return head + peers
    if isinstance(packet, UdpScrapeRequest):
        if len(packet.info_hashes) > MAX_UDP_SCRAPE_HASHES:
            raise LocalProtocolError(f"more than {MAX_UDP_SCRAPE_HASHES} info_hashes")
        if any(len(h) != INFO_HASH_BYTES for h in packet.info_hashes):
            raise LocalProtocolError("info_hash must be 20 bytes")
        head = _HEAD.pack(
            _u64(packet.connection_id, "connection_id"),
            ACTION_SCRAPE,
            _u32(packet.transaction_id, "tid"),
        )
        return head + b"".join(packet.info_hashes)
    if isinstance(packet, UdpScrapeResponse):
        out = [_REPLY_HEAD.pack(ACTION_SCRAPE, _u32(packet.transaction_id, "tid"))]
        for s in packet.stats:
            out.append(
                _SCRAPE_ENTRY.pack(
                    _i32_count(s.complete, "seeders"),
                    _i32_count(s.downloaded, "completed"),
                    _i32_count(s.incomplete, "leechers"),
                )
            )
        return b"".join(out)
    if isinstance(packet, UdpError):
        msg = packet.message.encode("utf-8")
        if len(packet.message) > MAX_REASON_CHARS:
            raise LocalProtocolError("error message too long")
        return _REPLY_HEAD.pack(ACTION_ERROR, _u32(packet.transaction_id, "tid")) + msg
    raise LocalProtocolError(f"not a UDP tracker packet: {packet!r}")


def decode_udp_request(data: bytes) -> UdpRequest:
    """A packet a UDP tracker receives (BEP 15: connect, announce, scrape).

    Trailing bytes after an announce are BEP 41 options, kept raw; a connect
    must carry the protocol magic; a scrape carries 1-74 whole hashes.
    """
    if len(data) < _HEAD.size:
        raise RemoteProtocolError(f"UDP tracker request of {len(data)} bytes is too short")
    if len(data) > MAX_UDP_PACKET:
        raise RemoteProtocolError("UDP tracker request too long")
    connection_id, action, tid = _HEAD.unpack_from(data)
    if action == ACTION_CONNECT:
        if connection_id != UDP_PROTOCOL_ID:
            raise RemoteProtocolError("connect request without the BEP 15 protocol id")
        return ConnectRequest(tid)
    if action == ACTION_ANNOUNCE:
        if len(data) < _ANNOUNCE.size:
            raise RemoteProtocolError(f"UDP announce of {len(data)} bytes is too short")
        (cid, _, tid, info_hash, peer_id, downloaded, left, uploaded,
         event, ip, key, num_want, port) = _ANNOUNCE.unpack_from(data)  # fmt: skip
        if downloaded > MAX_INT64 or left > MAX_INT64 or uploaded > MAX_INT64:
            raise RemoteProtocolError("negative byte count in a UDP announce")
        try:
            ev = AnnounceEvent(event)
        except ValueError:
            raise RemoteProtocolError(f"unknown UDP announce event {event}") from None
        return UdpAnnounceRequest(
            cid, tid, info_hash, peer_id, downloaded, left, uploaded,
            ev, ip, key, num_want, port, bytes(data[_ANNOUNCE.size :]),
        )  # fmt: skip
    if action == ACTION_SCRAPE:
        body = data[_HEAD.size :]
        if not body or len(body) % INFO_HASH_BYTES:
            raise RemoteProtocolError("UDP scrape is not a whole number of info-hashes")
        n = len(body) // INFO_HASH_BYTES
        if n > MAX_UDP_SCRAPE_HASHES:
            raise RemoteProtocolError(f"UDP scrape of more than {MAX_UDP_SCRAPE_HASHES} hashes")
        hashes = tuple(bytes(body[i : i + INFO_HASH_BYTES]) for i in range(0, len(body), 20))
        return UdpScrapeRequest(connection_id, tid, hashes)
    raise RemoteProtocolError(f"unknown UDP tracker action {action}")


def decode_udp_response(data: bytes, *, ipv6: bool = False) -> UdpResponse:
    """A packet a UDP tracker sends back (BEP 15).  ``ipv6``: the request
    went over IPv6, so an announce reply carries 18-byte peers."""
    if len(data) < _REPLY_HEAD.size:
        raise RemoteProtocolError(f"UDP tracker reply of {len(data)} bytes is too short")
    if len(data) > MAX_UDP_PACKET:
        raise RemoteProtocolError("UDP tracker reply too long")
    action, tid = _REPLY_HEAD.unpack_from(data)
    if action == ACTION_CONNECT:
        if len(data) < _CONNECT_REPLY.size:
            raise RemoteProtocolError("UDP connect reply too short")
        _, _, cid = _CONNECT_REPLY.unpack_from(data)
        return ConnectResponse(tid, cid)
    if action == ACTION_ANNOUNCE:
        if len(data) < _ANNOUNCE_REPLY.size:
            raise RemoteProtocolError("UDP announce reply too short")
        _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
        if max(interval, leechers, seeders) > 0x7FFFFFFF:
            raise RemoteProtocolError("negative figure in a UDP announce reply")
        rest = bytes(data[_ANNOUNCE_REPLY.size :])
        peers = decode_compact_peers6(rest) if ipv6 else decode_compact_peers(rest)
        return UdpAnnounceResponse(tid, interval, leechers, seeders, peers)
    if action == ACTION_SCRAPE:
        body = data[_REPLY_HEAD.size :]
        if len(body) % _SCRAPE_ENTRY.size:
            raise RemoteProtocolError("UDP scrape reply is not a whole number of entries")
        stats = []
        for off in range(0, len(body), _SCRAPE_ENTRY.size):
            seeders, completed, leechers = _SCRAPE_ENTRY.unpack_from(body, off)
            if max(seeders, completed, leechers) > 0x7FFFFFFF:
                raise RemoteProtocolError("negative figure in a UDP scrape reply")
            stats.append(ScrapeStats(seeders, completed, leechers))
        if len(stats) > MAX_UDP_SCRAPE_HASHES:
            raise RemoteProtocolError("UDP scrape reply too long")
        return UdpScrapeResponse(tid, tuple(stats))
    if action == ACTION_ERROR:
        message = bytes(data[_REPLY_HEAD.size :]).decode("utf-8", "replace")
        return UdpError(tid, message[:MAX_REASON_CHARS])
    raise RemoteProtocolError(f"unknown UDP tracker action {action}")
