"""KRPC: the messages of the mainline DHT (BEP 5, "KRPC Protocol" and "DHT Queries").

A KRPC message is one bencoded dictionary in one UDP datagram.  Every message
has ``t`` (the transaction id, chosen by the querying node and echoed in the
answer) and ``y`` (``q`` query, ``r`` response, ``e`` error); a client may add
``v`` (its version, BEP 5 "KRPC Protocol").  Queries carry the method name in
``q`` and the arguments in ``a``; responses carry their values in ``r``;
errors carry ``[code, message]`` in ``e``.  Four queries exist (BEP 5 "DHT
Queries"): ``ping``, ``find_node``, ``get_peers`` and ``announce_peer``; every
query and every response carries the sender's 20-byte node ``id``.

Contacts travel in compact form (BEP 5 "Contact Encoding"): a peer is 6 bytes
(IPv4 address and port, network byte order), a node is 26 bytes (its id, then
the peer form).  Only IPv4 is modelled (BEP 32's ``nodes6`` and 18-byte
values are ignored).

Two extensions are read and written because libtorrent uses them: the
top-level ``ip`` of a response, which tells the querying node the address we
saw it from (BEP 42), and the top-level ``ro`` flag of a query from a
read-only node (BEP 43), which must not enter routing tables.

Messages from other clients are read with :data:`KRPC_LIMITS` (keys in any
order, as libtorrent does; tight bounds) and every rule below is checked, so
garbage raises :class:`MalformedMessage` (a
:class:`~peerlab.errors.RemoteProtocolError`) and nothing else.  When the
garbage was a query whose transaction id could be read, the exception carries
it, so the node can answer with error 203 as BEP 5 "Errors" asks.

Public API
==========

::

    NodeInfo(id: bytes, address: Address)          # one compact node
    Ping(id) | FindNode(id, target) | GetPeers(id, info_hash)
      | AnnouncePeer(id, info_hash, port, token, implied_port=False)
      | UnknownMethod(id, method)                    # a query we do not model
    Query(transaction_id, arguments, version=None, read_only=False)
        .method -> bytes
    Response(transaction_id, id, nodes=None, values=None, token=None,
             ip=None, version=None)
    KrpcError(transaction_id, code, message, version=None)
    Message = Query | Response | KrpcError
    ErrorCode: GENERIC 201, SERVER 202, PROTOCOL 203, METHOD_UNKNOWN 204
    encode(message) -> bytes                         # canonical bencoding
    decode(data) -> Message                          # raises MalformedMessage
    MalformedMessage(RemoteProtocolError): .transaction_id, .is_query
    encode_compact_peer(address) -> bytes; decode_compact_peer(data) -> Address
    encode_compact_nodes(nodes) -> bytes; decode_compact_nodes(data) -> tuple[NodeInfo, ...]
    distance(a, b) -> int                            # XOR metric, BEP 5 "Overview"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import TypeAlias

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.bencode import BencodeLimits, Value
from peerlab.wire.bencode import decode as bdecode

#: ``(host, port)``: the same shape as :data:`peerlab.runtime.base.Address`
#: (wire/ does not import the runtime).
Address: TypeAlias = tuple[str, int]

#: Node ids and info-hashes share one 160-bit space (BEP 5 "Overview").
NODE_ID_BYTES = 20
#: "Compact IP-address/port info" (BEP 5 "Contact Encoding").
COMPACT_PEER_BYTES = 6
#: "Compact node info": the id, then the compact peer form.
COMPACT_NODE_BYTES = NODE_ID_BYTES + COMPACT_PEER_BYTES

#: Largest datagram we decode.  A KRPC message is one UDP datagram (BEP 5
#: "KRPC Protocol"); the biggest BEP 5 answer, a get_peers reply with 8 nodes
#: and 100 peers, is about 1.1 kB, so 4 KiB leaves room for extension keys
#: while keeping what a stranger can make us parse small.
MAX_MESSAGE_BYTES = 4096
#: Longest transaction id.  BEP 5 says "typically 2 characters"; others use a
#: few more.  We echo it back, so it is bounded.
MAX_TRANSACTION_ID_BYTES = 16
#: Longest ``v`` (BEP 5: a client version, conventionally 4 bytes).
MAX_VERSION_BYTES = 16
#: Longest write token (BEP 5: "a short binary string"; libtorrent uses 4
#: bytes, SHA-1 based tokens are 20).
MAX_TOKEN_BYTES = 64
#: Longest method name of a query we do not model (kept for the 204 answer).
MAX_METHOD_BYTES = 32
#: Longest error text we keep from an error message (BEP 5 "Errors").
MAX_ERROR_TEXT_BYTES = 512
#: Most compact nodes in one ``nodes`` string.  BEP 5 answers K = 8; a few
#: clients send more, none sensibly more than this.
MAX_COMPACT_NODES = 64
#: Most peers in one ``values`` list (libtorrent answers at most 100).
MAX_VALUES = 256

#: The bencode bounds of one KRPC message from another client: any key order
#: (not every client sorts), the message's own size as the string bound,
#: nesting of message -> ``a``/``r`` -> ``values`` list -> string, with one
#: level to spare for extensions.
KRPC_LIMITS = BencodeLimits(
    max_depth=4,
    max_string_length=MAX_MESSAGE_BYTES,
    max_list_length=MAX_VALUES,
    max_tokens=1024,
    sorted_keys=False,
)

METHOD_PING = b"ping"
METHOD_FIND_NODE = b"find_node"
METHOD_GET_PEERS = b"get_peers"
METHOD_ANNOUNCE_PEER = b"announce_peer"


class ErrorCode(IntEnum):
    """Error codes of BEP 5 "Errors"."""

    GENERIC = 201
    SERVER = 202
    #: "Protocol Error, such as a malformed packet, invalid arguments, or bad token".
    PROTOCOL = 203
    METHOD_UNKNOWN = 204


class MalformedMessage(RemoteProtocolError):
    """A datagram that is not a valid KRPC message.

    ``transaction_id`` is the message's ``t`` when it could be read, and
    ``is_query`` tells whether it said ``y: q``: a node answers such garbage
    with error 203 (BEP 5 "Errors") and ignores the rest.
    """

    def __init__(
        self, message: str, transaction_id: bytes | None = None, is_query: bool = False
    ) -> None:
        super().__init__(f"krpc: {message}", code=int(ErrorCode.PROTOCOL))
        self.transaction_id = transaction_id
        self.is_query = is_query


# ------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node's id and UDP address: one "compact node info" (BEP 5)."""

    id: bytes
    address: Address


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping`` (BEP 5 "ping"): just the sender's id."""

    id: bytes


@dataclass(frozen=True, slots=True)
class FindNode:
    """``find_node`` (BEP 5 "find_node"): the K closest nodes to ``target``."""

    id: bytes
    target: bytes


@dataclass(frozen=True, slots=True)
class GetPeers:
    """``get_peers`` (BEP 5 "get_peers"): peers of ``info_hash``, else closest nodes."""

    id: bytes
    info_hash: bytes


@dataclass(frozen=True, slots=True)
class AnnouncePeer:
    """``announce_peer`` (BEP 5 "announce_peer").

    With ``implied_port`` the receiver ignores ``port`` and stores the UDP
    source port instead (NAT-friendly, BEP 5 post-history 2013).
    """

    id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False


@dataclass(frozen=True, slots=True)
class UnknownMethod:
    """A well-formed query of a method BEP 5 does not define (answered with 204)."""

    id: bytes
    method: bytes


Arguments: TypeAlias = Ping | FindNode | GetPeers | AnnouncePeer | UnknownMethod

_METHODS: dict[type, bytes] = {
    Ping: METHOD_PING,
    FindNode: METHOD_FIND_NODE,
    GetPeers: METHOD_GET_PEERS,
    AnnouncePeer: METHOD_ANNOUNCE_PEER,
}


@dataclass(frozen=True, slots=True)
class Query:
    """A query (``y: q``).  ``read_only`` is BEP 43's ``ro`` flag."""

    transaction_id: bytes
    arguments: Arguments
    version: bytes | None = None
    read_only: bool = False

    @property
    def method(self) -> bytes:
        args = self.arguments
        if isinstance(args, UnknownMethod):
            return args.method
        return _METHODS[type(args)]


@dataclass(frozen=True, slots=True)
class Response:
    """A response (``y: r``).

    The method is not on the wire: the querying node knows it from the
    transaction id.  ``nodes``/``values``/``token`` are None when absent
    (``nodes=()`` is an empty ``nodes`` string).  ``ip`` is BEP 42's
    top-level ``ip``: the address the responder saw the query come from.
    """

    transaction_id: bytes
    id: bytes
    nodes: tuple[NodeInfo, ...] | None = None
    values: tuple[Address, ...] | None = None
    token: bytes | None = None
    ip: Address | None = None
    version: bytes | None = None


@dataclass(frozen=True, slots=True)
class KrpcError:
    """An error (``y: e``) with its BEP 5 code and text."""

    transaction_id: bytes
    code: int
    message: str
    version: bytes | None = None


Message: TypeAlias = Query | Response | KrpcError


def distance(a: bytes, b: bytes) -> int:
    """The XOR metric of BEP 5 "Overview", as an unsigned integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


# ------------------------------------------------------------------ contacts


@lru_cache(maxsize=4096)
def _ipv4_bytes(host: str) -> bytes:
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        raise LocalProtocolError(f"krpc: {host!r} is not an IPv4 address")
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        raise LocalProtocolError(f"krpc: {host!r} is not an IPv4 address")
    return bytes(octets)


def encode_compact_peer(address: Address) -> bytes:
    """6 bytes: the IPv4 address and the port, network byte order (BEP 5)."""
    host, port = address
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"krpc: port {port} out of range")
    return _ipv4_bytes(host) + port.to_bytes(2, "big")


def decode_compact_peer(data: bytes) -> Address:
    """The address in 6 bytes of "Compact IP-address/port info"."""
    if len(data) != COMPACT_PEER_BYTES:
        raise MalformedMessage(f"compact peer of {len(data)} bytes (expected 6)")
    return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}", (data[4] << 8) | data[5]


def encode_compact_nodes(nodes: Iterable[NodeInfo]) -> bytes:
    """Concatenated 26-byte "Compact node info" entries (BEP 5)."""
    out: list[bytes] = []
    for n in nodes:
        if len(n.id) != NODE_ID_BYTES:
            raise LocalProtocolError(f"krpc: node id of {len(n.id)} bytes")
        out.append(n.id)
        out.append(encode_compact_peer(n.address))
    return b"".join(out)


def decode_compact_nodes(data: bytes) -> tuple[NodeInfo, ...]:
    """The nodes of a ``nodes`` string: a whole number of 26-byte entries."""
    if len(data) % COMPACT_NODE_BYTES:
        raise MalformedMessage(f"'nodes' of {len(data)} bytes is not a multiple of 26")
    count = len(data) // COMPACT_NODE_BYTES
    if count > MAX_COMPACT_NODES:
        raise MalformedMessage(f"{count} nodes in one message (limit {MAX_COMPACT_NODES})")
    out = []
    for i in range(0, len(data), COMPACT_NODE_BYTES):
        entry = data[i : i + COMPACT_NODE_BYTES]
        out.append(NodeInfo(entry[:NODE_ID_BYTES], decode_compact_peer(entry[NODE_ID_BYTES:])))
    return tuple(out)


# ------------------------------------------------------------------ encoding


def _check_out(name: str, value: bytes | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise LocalProtocolError(f"krpc: {name} of {len(value)} bytes (limit {limit})")


def _check_id(name: str, value: bytes) -> None:
    if len(value) != NODE_ID_BYTES:
        raise LocalProtocolError(f"krpc: {name} of {len(value)} bytes (must be 20)")


def _s(value: bytes) -> bytes:
    """One bencoded byte string."""
    return b"%d:%s" % (len(value), value)


def encode(message: Message) -> bytes:
    """The canonical bencoding of ``message`` (keys sorted, BEP 3).

    Written out key by key in sorted order rather than through the generic
    bencoder: a simulated DHT encodes hundreds of thousands of messages, and
    this is several times faster.  The tests check that it equals
    :func:`peerlab.wire.bencode.encode` of the same dictionary.

    Our own mistakes (an id that is not 20 bytes, a port out of range, a
    transaction id too long) raise :class:`~peerlab.errors.LocalProtocolError`.
    """
    _check_out("transaction id", message.transaction_id, MAX_TRANSACTION_ID_BYTES)
    _check_out("version", message.version, MAX_VERSION_BYTES)
    # Top-level keys in sorted order: a e ip q r ro t v y.
    out: list[bytes] = [b"d"]
    if isinstance(message, Query):
        args = message.arguments
        _check_id("node id", args.id)
        # Argument keys in sorted order: id implied_port info_hash port target token.
        out.append(b"1:ad2:id20:")
        out.append(args.id)
        if isinstance(args, FindNode):
            _check_id("target", args.target)
            out.append(b"6:target20:")
            out.append(args.target)
        elif isinstance(args, GetPeers):
            _check_id("info_hash", args.info_hash)
            out.append(b"9:info_hash20:")
            out.append(args.info_hash)
        elif isinstance(args, AnnouncePeer):
            _check_id("info_hash", args.info_hash)
            _check_out("token", args.token, MAX_TOKEN_BYTES)
            if not 0 <= args.port <= 0xFFFF:
                raise LocalProtocolError(f"krpc: port {args.port} out of range")
            if args.implied_port:
                out.append(b"12:implied_porti1e")
            out.append(b"9:info_hash20:")
            out.append(args.info_hash)
            out.append(b"4:porti%de5:token" % args.port)
            out.append(_s(args.token))
        elif isinstance(args, UnknownMethod):
            _check_out("method", args.method, MAX_METHOD_BYTES)
        out.append(b"e1:q")
        out.append(_s(message.method))
        if message.read_only:
            out.append(b"2:roi1e")
        kind = b"q"
    elif isinstance(message, Response):
        _check_id("node id", message.id)
        if message.ip is not None:
            out.append(b"2:ip6:")
            out.append(encode_compact_peer(message.ip))
        # Response keys in sorted order: id nodes token values.
        out.append(b"1:rd2:id20:")
        out.append(message.id)
        if message.nodes is not None:
            if len(message.nodes) > MAX_COMPACT_NODES:
                raise LocalProtocolError(f"krpc: {len(message.nodes)} nodes in one response")
            out.append(b"5:nodes")
            out.append(_s(encode_compact_nodes(message.nodes)))
        if message.token is not None:
            _check_out("token", message.token, MAX_TOKEN_BYTES)
            out.append(b"5:token")
            out.append(_s(message.token))
        if message.values is not None:
            if len(message.values) > MAX_VALUES:
                raise LocalProtocolError(f"krpc: {len(message.values)} values in one response")
            out.append(b"6:valuesl")
            out.extend(b"6:" + encode_compact_peer(v) for v in message.values)
            out.append(b"e")
        out.append(b"e")
        kind = b"r"
    else:
        text = message.message.encode("utf-8")[:MAX_ERROR_TEXT_BYTES]
        out.append(b"1:eli%de" % int(message.code))
        out.append(_s(text))
        out.append(b"e")
        kind = b"e"
    out.append(b"1:t")
    out.append(_s(message.transaction_id))
    if message.version is not None:
        out.append(b"1:v")
        out.append(_s(message.version))
    out.append(b"1:y1:%se" % kind)
    data = b"".join(out)
    if len(data) > MAX_MESSAGE_BYTES:
        raise LocalProtocolError(f"krpc: message of {len(data)} bytes (limit {MAX_MESSAGE_BYTES})")
    return data


# ------------------------------------------------------------------ decoding


class _Reader:
    """Typed access to a decoded dictionary; every miss is MalformedMessage."""

    __slots__ = ("d", "where", "tid", "is_query")

    def __init__(
        self, d: dict[bytes, Value], where: str, tid: bytes | None, is_query: bool
    ) -> None:
        self.d = d
        self.where = where
        self.tid = tid
        self.is_query = is_query

    def fail(self, what: str) -> MalformedMessage:
        return MalformedMessage(f"{self.where}: {what}", self.tid, self.is_query)

    def bytes_(self, key: bytes, limit: int, *, required: bool = True) -> bytes | None:
        v = self.d.get(key)
        if v is None:
            if required:
                raise self.fail(f"missing {key.decode()!r}")
            return None
        if not isinstance(v, bytes):
            raise self.fail(f"{key.decode()!r} is not a string")
        if len(v) > limit:
            raise self.fail(f"{key.decode()!r} of {len(v)} bytes (limit {limit})")
        return v

    def node_id(self, key: bytes) -> bytes:
        v = self.bytes_(key, NODE_ID_BYTES)
        assert v is not None
        if len(v) != NODE_ID_BYTES:
            raise self.fail(f"{key.decode()!r} of {len(v)} bytes (must be 20)")
        return v

    def int_(self, key: bytes, lo: int, hi: int, *, required: bool = True) -> int | None:
        v = self.d.get(key)
        if v is None:
            if required:
                raise self.fail(f"missing {key.decode()!r}")
            return None
        if not isinstance(v, int):
            raise self.fail(f"{key.decode()!r} is not an integer")
        if not lo <= v <= hi:
            raise self.fail(f"{key.decode()!r} = {v} out of range {lo}..{hi}")
        return v

    def dict_(self, key: bytes) -> dict[bytes, Value]:
        v = self.d.get(key)
        if not isinstance(v, dict):
            raise self.fail(f"{key.decode()!r} is missing or not a dictionary")
        return v


def _decode_query(top: _Reader, tid: bytes) -> Query:
    method = top.bytes_(b"q", MAX_METHOD_BYTES)
    assert method is not None
    a = _Reader(top.dict_(b"a"), f"{method.decode('ascii', 'replace')} arguments", tid, True)
    node_id = a.node_id(b"id")
    args: Arguments
    if method == METHOD_PING:
        args = Ping(node_id)
    elif method == METHOD_FIND_NODE:
        args = FindNode(node_id, a.node_id(b"target"))
    elif method == METHOD_GET_PEERS:
        args = GetPeers(node_id, a.node_id(b"info_hash"))
    elif method == METHOD_ANNOUNCE_PEER:
        implied = bool(a.int_(b"implied_port", 0, 1, required=False))
        port = a.int_(b"port", 0 if implied else 1, 0xFFFF, required=not implied)
        token = a.bytes_(b"token", MAX_TOKEN_BYTES)
        assert token is not None
        args = AnnouncePeer(node_id, a.node_id(b"info_hash"), port or 0, token, implied)
    else:
        args = UnknownMethod(node_id, method)
    ro = top.int_(b"ro", 0, 1, required=False)
    version = top.bytes_(b"v", MAX_VERSION_BYTES, required=False)
    return Query(tid, args, version, bool(ro))


def _decode_response(top: _Reader, tid: bytes) -> Response:
    r = _Reader(top.dict_(b"r"), "response", tid, False)
    node_id = r.node_id(b"id")
    nodes = None
    raw_nodes = r.bytes_(b"nodes", MAX_COMPACT_NODES * COMPACT_NODE_BYTES, required=False)
    if raw_nodes is not None:
        nodes = decode_compact_nodes(raw_nodes)
    values = None
    raw_values = r.d.get(b"values")
    if raw_values is not None:
        if not isinstance(raw_values, list):
            raise r.fail("'values' is not a list")
        peers = []
        for item in raw_values:
            if not isinstance(item, bytes) or len(item) != COMPACT_PEER_BYTES:
                raise r.fail("a 'values' entry is not a 6-byte compact peer")
            peers.append(decode_compact_peer(item))
        values = tuple(peers)
    token = r.bytes_(b"token", MAX_TOKEN_BYTES, required=False)
    ip = None
    raw_ip = top.d.get(b"ip")
    # BEP 42's 'ip' may be 18 bytes (IPv6); only the IPv4 form is kept.
    if isinstance(raw_ip, bytes) and len(raw_ip) == COMPACT_PEER_BYTES:
        ip = decode_compact_peer(raw_ip)
    elif raw_ip is not None and not isinstance(raw_ip, bytes):
        raise top.fail("'ip' is not a string")
    version = top.bytes_(b"v", MAX_VERSION_BYTES, required=False)
    return Response(tid, node_id, nodes, values, token, ip, version)


def _decode_error(top: _Reader, tid: bytes) -> KrpcError:
    e = top.d.get(b"e")
    if not isinstance(e, list) or len(e) < 2:
        raise top.fail("'e' is not a [code, message] list")
    code, text = e[0], e[1]
    if not isinstance(code, int) or not isinstance(text, bytes):
        raise top.fail("'e' is not a [code, message] list")
    if not 0 <= code <= 0xFFFF:
        raise top.fail(f"error code {code} out of range")
    version = top.bytes_(b"v", MAX_VERSION_BYTES, required=False)
    message = text[:MAX_ERROR_TEXT_BYTES].decode("utf-8", "replace")
    return KrpcError(tid, code, message, version)


def decode(data: bytes) -> Message:
    """One KRPC message from one datagram (BEP 5 "KRPC Protocol").

    Raises :class:`MalformedMessage` for anything else: bad bencoding, a
    datagram over :data:`MAX_MESSAGE_BYTES`, missing or mistyped keys, ids
    that are not 20 bytes, compact contacts of the wrong size, bounds broken.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"datagram of {len(data)} bytes (limit {MAX_MESSAGE_BYTES})")
    try:
        doc = bdecode(data, KRPC_LIMITS)
    except RemoteProtocolError as exc:
        raise MalformedMessage(str(exc)) from None
    if not isinstance(doc, dict):
        raise MalformedMessage("message is not a dictionary")
    raw_t = doc.get(b"t")
    y = doc.get(b"y")
    tid = raw_t if isinstance(raw_t, bytes) and len(raw_t) <= MAX_TRANSACTION_ID_BYTES else None
    top = _Reader(doc, "message", tid, y == b"q")
    if tid is None:
        raise top.fail("missing or bad transaction id 't'")
    if y == b"q":
        return _decode_query(top, tid)
    if y == b"r":
        return _decode_response(top, tid)
    if y == b"e":
        return _decode_error(top, tid)
    raise top.fail(f"'y' is {y!r}, not q, r or e")


__all__ = [
    "COMPACT_NODE_BYTES",
    "COMPACT_PEER_BYTES",
    "KRPC_LIMITS",
    "MAX_COMPACT_NODES",
    "MAX_MESSAGE_BYTES",
    "MAX_TOKEN_BYTES",
    "MAX_TRANSACTION_ID_BYTES",
    "MAX_VALUES",
    "MAX_VERSION_BYTES",
    "METHOD_ANNOUNCE_PEER",
    "METHOD_FIND_NODE",
    "METHOD_GET_PEERS",
    "METHOD_PING",
    "NODE_ID_BYTES",
    "Address",
    "AnnouncePeer",
    "Arguments",
    "ErrorCode",
    "FindNode",
    "GetPeers",
    "KrpcError",
    "MalformedMessage",
    "Message",
    "NodeInfo",
    "Ping",
    "Query",
    "Response",
    "UnknownMethod",
    "decode",
    "decode_compact_nodes",
    "decode_compact_peer",
    "distance",
    "encode",
    "encode_compact_nodes",
    "encode_compact_peer",
]
