"""KRPC codec: the example packets of BEP 5, round-trips, and garbage.

Each BEP 5 example ("Example Packets" under ping, find_node, get_peers,
announce_peer and "Errors") is decoded to the message it describes and
encoded back to the same bytes.  Where the BEP's example is a placeholder
(``"def456..."`` as a ``nodes`` string is 9 bytes, not whole 26-byte
entries), the decoder must refuse it, and the same packet with one real
compact node goes through.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire import krpc
from peerlab.wire.bencode import encode as bencode
from peerlab.wire.krpc import (
    AnnouncePeer,
    ErrorCode,
    FindNode,
    GetPeers,
    KrpcError,
    MalformedMessage,
    NodeInfo,
    Ping,
    Query,
    Response,
    UnknownMethod,
    decode,
    encode,
)

A = b"abcdefghij0123456789"
M = b"mnopqrstuvwxyz123456"
Z = b"0123456789abcdefghij"

#: (BEP 5 bencoded example, the message it describes)
BEP5_VECTORS = [
    (b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
     KrpcError(b"aa", 201, "A Generic Error Ocurred")),
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
     Query(b"aa", Ping(A))),
    (b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
     Response(b"aa", M)),
    (b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
     Query(b"aa", FindNode(A, M))),
    (b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
     Query(b"aa", GetPeers(A, M))),
    # "axje.u" and "idhtnm" are two 6-byte compact peers.
    (b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
     Response(b"aa", A, values=(("97.120.106.101", 0x2E75), ("105.100.104.116", 0x6E6D)),
              token=b"aoeusnth")),
    # The BEP prints this one with an HTML line break inside; without it:
    (b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e"
     b"5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
     Query(b"aa", AnnouncePeer(A, M, 6881, b"aoeusnth"))),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), BEP5_VECTORS)
def test_bep5_examples_decode_and_encode(data: bytes, message: krpc.Message) -> None:
    assert decode(data) == message
    assert encode(message) == data


def test_bep5_announce_with_implied_port() -> None:
    """The BEP's announce_peer dictionary says implied_port 1; encoded, it
    sits between 'id' and 'info_hash' in key order."""
    msg = Query(b"aa", AnnouncePeer(A, M, 6881, b"aoeusnth", implied_port=True))
    data = encode(msg)
    assert data == (b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:"
                    b"mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer"
                    b"1:t2:aa1:y1:qe")  # fmt: skip
    assert decode(data) == msg


def test_bep5_nodes_placeholders_are_refused_and_real_nodes_decode() -> None:
    find_node_reply = b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re"
    get_peers_reply = (b"d1:rd2:id20:abcdefghij01234567895:nodes9:def456...5:token8:aoeusnthe"
                       b"1:t2:aa1:y1:re")  # fmt: skip
    for data in (find_node_reply, get_peers_reply):
        with pytest.raises(MalformedMessage, match="multiple of 26"):
            decode(data)
    node = NodeInfo(M, ("192.0.2.7", 6881))
    compact = M + bytes([192, 0, 2, 7]) + (6881).to_bytes(2, "big")
    assert krpc.encode_compact_nodes([node]) == compact
    real = find_node_reply.replace(b"9:def456...", b"26:" + compact)
    assert decode(real) == Response(b"aa", Z, nodes=(node,))
    assert encode(decode(real)) == real
    real2 = get_peers_reply.replace(b"9:def456...", b"26:" + compact)
    assert decode(real2) == Response(b"aa", A, nodes=(node,), token=b"aoeusnth")


def test_extensions_version_ip_and_read_only() -> None:
    msg = Response(b"\x01\x02", A, nodes=(), token=b"tk", ip=("127.0.0.1", 6881), version=b"PL01")
    data = encode(msg)
    assert b"2:ip6:\x7f\x00\x00\x01\x1a\xe1" in data and b"1:v4:PL01" in data
    assert b"5:nodes0:" in data
    assert decode(data) == msg
    q = Query(b"x", Ping(A), version=b"LT\x02\x01", read_only=True)
    assert b"2:roi1e" in encode(q)
    assert decode(encode(q)) == q


def test_unsorted_keys_from_other_clients_are_read() -> None:
    data = b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee"
    assert decode(data) == Query(b"aa", Ping(A))


def test_unknown_method_and_unknown_keys() -> None:
    data = bencode({b"t": b"zz", b"y": b"q", b"q": b"sample_infohashes",
                    b"a": {b"id": A, b"target": M, b"want": [b"n4"]}})  # fmt: skip
    msg = decode(data)
    assert msg == Query(b"zz", UnknownMethod(A, b"sample_infohashes"))
    assert isinstance(msg, Query) and msg.method == b"sample_infohashes"


def test_error_codes() -> None:
    assert [int(c) for c in ErrorCode] == [201, 202, 203, 204]
    e = KrpcError(b"aa", ErrorCode.METHOD_UNKNOWN, "Method Unknown")
    assert encode(e) == b"d1:eli204e14:Method Unknowne1:t2:aa1:y1:ee"


@pytest.mark.parametrize(
    ("data", "tid", "is_query"),
    [
        (b"", None, False),
        (b"de", None, False),
        (b"li1ee", None, False),
        (b"d1:t2:aa1:y1:xe", b"aa", False),
        (b"d1:t2:aa1:y1:qe", b"aa", True),  # no q, no a
        (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", b"aa", True),  # short id
        (b"d1:ade1:q4:ping1:t2:aa1:y1:qe", b"aa", True),  # no id
        (b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe", b"aa", True),
        (b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti0e"
         b"5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe", b"aa", True),  # port 0
        (b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e"
         b"5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe", b"aa", True),
        (b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl3:abcee1:t2:aa1:y1:re", b"aa", False),
        (b"d1:rd2:id20:mnopqrstuvwxyz1234566:values3:abce1:t2:aa1:y1:re", b"aa", False),
        (b"d1:ei201e1:t2:aa1:y1:ee", b"aa", False),
        (b"d1:t17:aaaaaaaaaaaaaaaaa1:y1:qe", None, True),  # transaction id too long
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q1:y1:qe", None, False),
    ],
)
def test_garbage_raises_malformed_with_what_could_be_read(
    data: bytes, tid: bytes | None, is_query: bool
) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(data)
    assert info.value.transaction_id == tid
    assert info.value.is_query == is_query
    assert info.value.code == ErrorCode.PROTOCOL


def test_oversized_datagram_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedMessage, match="limit"):
        decode(b"d1:t2:aa" + b"x" * krpc.MAX_MESSAGE_BYTES + b"e")


def test_our_own_mistakes_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Query(b"aa", Ping(b"short")))
    with pytest.raises(LocalProtocolError):
        encode(Query(b"aa", AnnouncePeer(A, M, 70000, b"t")))
    with pytest.raises(LocalProtocolError):
        encode(Response(b"aa", A, values=(("::1", 5),)))
    with pytest.raises(LocalProtocolError):
        krpc.encode_compact_peer(("256.0.0.1", 1))
    with pytest.raises(LocalProtocolError):
        encode(Query(b"a" * 17, Ping(A)))


def test_distance_is_xor() -> None:
    assert krpc.distance(b"\x00" * 20, b"\x00" * 19 + b"\x05") == 5
    assert krpc.distance(A, A) == 0
    assert krpc.distance(b"\xff" + b"\x00" * 19, b"\x00" * 20) == 0xFF << 152


# ------------------------------------------------------------------ properties

ids = st.binary(min_size=20, max_size=20)
tids = st.binary(min_size=0, max_size=krpc.MAX_TRANSACTION_ID_BYTES)
versions = st.none() | st.binary(max_size=krpc.MAX_VERSION_BYTES)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
addresses = st.tuples(ipv4, st.integers(0, 0xFFFF))
nodes = st.builds(NodeInfo, ids, addresses)
tokens = st.binary(max_size=krpc.MAX_TOKEN_BYTES)

arguments = st.one_of(
    st.builds(Ping, ids),
    st.builds(FindNode, ids, ids),
    st.builds(GetPeers, ids, ids),
    st.builds(AnnouncePeer, ids, ids, st.integers(1, 0xFFFF), tokens, st.booleans()),
    st.builds(UnknownMethod, ids, st.sampled_from([b"get", b"put", b"sample_infohashes"])),
)
messages = st.one_of(
    st.builds(Query, tids, arguments, versions, st.booleans()),
    st.builds(
        Response,
        tids,
        ids,
        st.none() | st.lists(nodes, max_size=8).map(tuple),
        st.none() | st.lists(addresses, max_size=50).map(tuple),
        st.none() | tokens,
        st.none() | addresses,
        versions,
    ),
    st.builds(KrpcError, tids, st.sampled_from(list(ErrorCode)),
              st.text(max_size=40), versions),  # fmt: skip
)


@settings(deadline=None, max_examples=300)
@given(messages)
def test_round_trip(message: krpc.Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except RemoteProtocolError:
        pass


@settings(deadline=None, max_examples=400)
@given(messages, st.data())
def test_mutated_messages_raise_only_remote_protocol_error(
    message: krpc.Message, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode(bytes(raw[:cut]))
    except RemoteProtocolError:
        pass


def reference_dict(m: krpc.Message) -> dict[bytes, object]:
    """The message as a plain dictionary, for the generic bencoder."""
    doc: dict[bytes, object] = {b"t": m.transaction_id}
    if m.version is not None:
        doc[b"v"] = m.version
    if isinstance(m, Query):
        args = m.arguments
        a: dict[bytes, object] = {b"id": args.id}
        if isinstance(args, FindNode):
            a[b"target"] = args.target
        elif isinstance(args, GetPeers):
            a[b"info_hash"] = args.info_hash
        elif isinstance(args, AnnouncePeer):
            a.update({b"info_hash": args.info_hash, b"port": args.port, b"token": args.token})
            if args.implied_port:
                a[b"implied_port"] = 1
        doc.update({b"y": b"q", b"q": m.method, b"a": a})
        if m.read_only:
            doc[b"ro"] = 1
    elif isinstance(m, Response):
        r: dict[bytes, object] = {b"id": m.id}
        if m.nodes is not None:
            r[b"nodes"] = krpc.encode_compact_nodes(m.nodes)
        if m.values is not None:
            r[b"values"] = [krpc.encode_compact_peer(v) for v in m.values]
        if m.token is not None:
            r[b"token"] = m.token
        doc.update({b"y": b"r", b"r": r})
        if m.ip is not None:
            doc[b"ip"] = krpc.encode_compact_peer(m.ip)
    else:
        doc.update({b"y": b"e", b"e": [int(m.code), m.message.encode()]})
    return doc


@settings(deadline=None, max_examples=300)
@given(messages)
def test_fast_encoder_equals_the_generic_bencoder(message: krpc.Message) -> None:
    assert encode(message) == bencode(reference_dict(message))  # type: ignore[arg-type]
