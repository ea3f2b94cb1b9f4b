"""The 0.6 handshake codec and header negotiation (peerlab.wire.handshake).

Vectors: the sample interaction of ``handshaking_0.6`` section 3, the
``ultra-peers`` section 3 exchanges (one with a folded X-Try-Ultrapeers and a
three-octet address in X-Try, as printed), and the ``compression`` section 3
negotiation.  Every block is read whole and one byte at a time.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.handshake import (
    MAX_HANDSHAKE_BYTES,
    MAX_HANDSHAKE_HEADERS,
    MAX_TRY_HOSTS,
    HandshakeBlock,
    HandshakeReader,
    Headers,
    accept_encodings,
    capability_headers,
    classify_first_bytes,
    content_encoding,
    degree,
    dynamic_querying,
    encode_connect,
    encode_status,
    format_hosts,
    is_ultrapeer,
    listen_address,
    max_ttl,
    parse_host_port,
    query_routing,
    remote_ip,
    try_hosts,
    try_ultrapeers,
    ultrapeer_needed,
    ultrapeer_query_routing,
    user_agent,
)


def read_block(data: bytes) -> tuple[HandshakeBlock, bytes]:
    """Read ``data`` whole, then one byte at a time: same block, same rest."""
    block, rest = HandshakeReader().feed(data)
    assert block is not None
    reader = HandshakeReader()
    got: HandshakeBlock | None = None
    tail = b""
    for i in range(len(data)):
        if got is None:
            got, tail = reader.feed(data[i : i + 1])
        else:
            tail += data[i : i + 1]
    assert got == block and tail == rest
    return block, rest


# handshaking_0.6 section 3, "a sample interaction".
CLIENT_CONNECT = b"GNUTELLA CONNECT/0.6\r\nUser-Agent: BearShare\r\nQuery-Routing: 0.2\r\n\r\n"
SERVER_OK = (
    b"GNUTELLA/0.6 200 OK\r\nUser-Agent: BearShare\r\nQuery-Routing: 0.1\r\n"
    b"BearShare-Data: 5ef89a\r\n\r\n"
)
CLIENT_OK = b"GNUTELLA/0.6 200 OK\r\nBearShare-Data: a04fce\r\n\r\n"


def test_sample_interaction() -> None:
    connect, rest = read_block(CLIENT_CONNECT + b"\x00binary")
    assert connect.is_connect and connect.version == "0.6" and rest == b"\x00binary"
    assert connect.headers == Headers([("User-Agent", "BearShare"), ("Query-Routing", "0.2")])
    assert encode_connect(connect.headers) == CLIENT_CONNECT
    ok, _ = read_block(SERVER_OK)
    assert (ok.code, ok.reason, ok.version) == (200, "OK", "0.6") and not ok.is_connect
    assert ok.headers.get("bearshare-data") == "5ef89a"
    assert encode_status(200, "OK", ok.headers) == SERVER_OK
    final, _ = read_block(CLIENT_OK)
    assert encode_status(200, "OK", final.headers) == CLIENT_OK


def test_leaf_to_ultrapeer_example_with_folded_header() -> None:
    # ultra-peers 3.1, printed with a folded X-Try-Ultrapeers and an X-Try
    # holding "24.37.144:6346" (three octets: skipped, not trusted).
    server = (
        b"GNUTELLA/0.6 200 OK\r\n"
        b"X-Ultrapeer: True\r\n"
        b"X-Ultrapeer-Needed: false\r\n"
        b"User-Agent: LimeWire 1.9\r\n"
        b"X-Try-Ultrapeers: 23.35.1.146:6346,\r\n"
        b"    18.207.63.25:6347\r\n"
        b"X-Try: 24.37.144:6346, 193.205.63.22:6346\r\n"
        b"X-My-Address: 10.254.0.16:6346\r\n"
        b"X-Query-Routing: 0.1\r\n\r\n"
    )
    block, _ = read_block(server)
    h = block.headers
    assert is_ultrapeer(h) is True and ultrapeer_needed(h) is False
    assert try_ultrapeers(h) == [("23.35.1.146", 6346), ("18.207.63.25", 6347)]
    assert try_hosts(h) == [("193.205.63.22", 6346)]
    assert listen_address(h) == ("10.254.0.16", 6346)
    assert query_routing(h) == "0.1" and user_agent(h) == "LimeWire 1.9"


def test_shielded_leaf_refusal() -> None:
    # ultra-peers 3.2: a refusal carries a code other than 200 and redirects.
    block, _ = read_block(
        b"GNUTELLA/0.6 503 I am a shielded leaf node\r\n"
        b"X-Ultrapeer: False\r\nX-Try-Ultrapeers: 18.2.3.14:6346,18.1.17.2:6346\r\n\r\n"
    )
    assert (block.code, block.reason) == (503, "I am a shielded leaf node")
    assert is_ultrapeer(block.headers) is False and len(try_ultrapeers(block.headers)) == 2


def test_compression_negotiation_headers() -> None:
    # compression section 3: both sides accept, the server also compresses.
    block, _ = read_block(
        b"GNUTELLA/0.6 200 OK\r\nAccept-Encoding: deflate\r\nContent-Encoding: deflate\r\n\r\n"
    )
    assert accept_encodings(block.headers) == ["deflate"]
    assert content_encoding(block.headers) == "deflate"
    assert content_encoding(Headers([("Content-Encoding", "identity")])) is None
    assert accept_encodings(Headers([("Accept-Encoding", "gzip, Deflate")])) == ["gzip", "deflate"]
    with pytest.raises(RemoteProtocolError):
        content_encoding(Headers([("Content-Encoding", "deflate, gzip")]))


def test_ultrapeer_headers_round_trip_through_capabilities() -> None:
    hdrs = capability_headers(
        user_agent="peerlab/0.1",
        ultrapeer=True,
        listen=("192.0.2.1", 6346),
        remote="198.51.100.7",
        ultrapeer_needed=False,
        try_hosts=[("192.0.2.2", 6346)],
        try_ultrapeers=[("192.0.2.3", 6347), ("2001:db8::1", 6346)],
    )
    block, _ = read_block(encode_status(200, "OK", hdrs))
    h = block.headers
    assert is_ultrapeer(h) and ultrapeer_needed(h) is False
    assert (degree(h), max_ttl(h), dynamic_querying(h)) == (32, 4, "0.1")
    assert ultrapeer_query_routing(h) == "0.1" and query_routing(h) == "0.2"
    assert listen_address(h) == ("192.0.2.1", 6346) and remote_ip(h) == "198.51.100.7"
    assert try_hosts(h) == [("192.0.2.2", 6346)]
    assert try_ultrapeers(h) == [("192.0.2.3", 6347), ("2001:db8::1", 6346)]
    assert accept_encodings(h) == ["deflate"] and h.get("Bye-Packet") == "0.1"
    leaf = Headers(capability_headers(user_agent="x", ultrapeer=False, accept_deflate=False))
    assert is_ultrapeer(leaf) is False and degree(leaf) is None and accept_encodings(leaf) == []


def test_negotiation_helpers_are_lenient_about_values() -> None:
    h = Headers(
        [
            ("X-Ultrapeer", "TRUE"),
            ("X-Degree", "lots"),
            ("X-Max-TTL", "999"),
            ("Remote-IP", "300.1.1.1"),
            ("Listen-IP", "not an address"),
            ("X-My-Address", "192.0.2.9:6346"),
            ("X-Try", "1.2.3.4:6346 2003-01-01T00:00Z, bad, 1.2.3.4:6346, 5.6.7.8:0"),
        ]
    )
    assert is_ultrapeer(h) is True and degree(h) is None and max_ttl(h) is None
    assert remote_ip(h) is None and listen_address(h) == ("192.0.2.9", 6346)
    assert try_hosts(h) == [("1.2.3.4", 6346)]
    assert is_ultrapeer(Headers([("X-Ultrapeer", "maybe")])) is None
    many = ",".join(f"10.0.{i // 250}.{i % 250}:6346" for i in range(300))
    assert len(try_hosts(Headers([("X-Try", many)]))) == MAX_TRY_HOSTS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4:6346", ("1.2.3.4", 6346)),
        ("[::1]:6346", ("::1", 6346)),
        ("gwc.example.org:80", ("gwc.example.org", 80)),
        ("1.2.3.4", None),
        ("1.2.3:6346", None),
        ("256.1.1.1:1", None),
        ("1.2.3.4:65536", None),
        ("[zz]:1", None),
        ("bad host:1", None),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_host_port(text) == expected
    if expected is not None:
        assert parse_host_port(format_hosts([expected])) == expected


def test_versions() -> None:
    block, _ = read_block(b"GNUTELLA CONNECT/0.7\r\n\r\n")
    assert block.version == "0.7"  # "servents should ignore higher version numbers"
    with pytest.raises(RemoteProtocolError) as info:
        HandshakeReader().feed(b"GNUTELLA CONNECT/0.4\n\n")
    assert info.value.code == 505
    # Bare LF line ends are tolerated.
    block, rest = HandshakeReader().feed(b"GNUTELLA/0.6 200 OK\nX-A: 1\n\nrest")
    assert block is not None and block.headers.get("x-a") == "1" and rest == b"rest"


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GNUTELLA CONNECT\r\n\r\n",
        b"GNUTELLA/0.6 OK\r\n\r\n",
        b"GNUTELLA CONNECT/0.6\r\n  folded-first\r\n\r\n",
        b"GNUTELLA CONNECT/0.6\r\nno colon here\r\n\r\n",
        b"GNUTELLA CONNECT/0.6\r\nBad Name: x\r\n\r\n",
        b"GNUTELLA CONNECT/0.6\r\nX: a\x01b\r\n\r\n",
    ],
)
def test_malformed_blocks(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        HandshakeReader().feed(bad)
    assert info.value.code == 400


def test_bounds() -> None:
    reader = HandshakeReader()
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(2 * MAX_HANDSHAKE_BYTES // 15):
            reader.feed(b"X-Slow: loris\r\n")  # never ends the block
    assert info.value.code == 431 and reader.buffered <= MAX_HANDSHAKE_BYTES + 16
    many = b"GNUTELLA CONNECT/0.6\r\n" + b"X-A: 1\r\n" * (MAX_HANDSHAKE_HEADERS + 1) + b"\r\n"
    with pytest.raises(RemoteProtocolError, match="headers"):
        HandshakeReader().feed(many)
    long_line = b"GNUTELLA CONNECT/0.6\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n"
    with pytest.raises(RemoteProtocolError, match="too long"):
        HandshakeReader().feed(long_line)
    folded = b"GNUTELLA CONNECT/0.6\r\nX-A: a\r\n" + b" " + b"b" * 3000 + b"\r\n " + b"c" * 3000
    with pytest.raises(RemoteProtocolError, match="too long"):
        HandshakeReader().feed(folded + b"\r\n\r\n")


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        encode_connect([("Bad Name", "x")])
    with pytest.raises(LocalProtocolError):
        encode_connect([("X-A", "line\r\nX-Injected: 1")])
    with pytest.raises(LocalProtocolError):
        encode_status(200, "O\r\nK")
    assert encode_status(503, "") == b"GNUTELLA/0.6 503\r\n\r\n"


def test_classify_first_bytes() -> None:
    assert classify_first_bytes(b"GNUTELLA CONNECT/0.6\r\n") == "gnutella"
    assert classify_first_bytes(b"GET /uri-res/N2R?urn:sha1:X HTTP/1.1") == "http"
    assert classify_first_bytes(b"HEAD / HTTP/1.1") == "http"
    assert classify_first_bytes(b"GIV 12:0011/a.mp3\n\n") == "giv"
    assert classify_first_bytes(b"GNUT") is None and classify_first_bytes(b"") is None
    assert classify_first_bytes(b"\x16\x03\x01 TLS hello") == "unknown"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    for prefix in (b"", b"GNUTELLA CONNECT/0.6\r\n", b"GNUTELLA/0.6 200 OK\r\n"):
        try:
            HandshakeReader().feed(prefix + data + b"\r\n\r\n")
        except RemoteProtocolError:
            pass


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGH-_", min_size=1, max_size=12)
values = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)


@given(st.lists(st.tuples(names, values), max_size=10), st.integers(100, 599), names)
def test_blocks_round_trip(fields: list[tuple[str, str]], code: int, reason: str) -> None:
    block, rest = HandshakeReader().feed(encode_connect(fields) + b"tail")
    assert block is not None and block.headers == Headers(fields) and rest == b"tail"
    block, _ = HandshakeReader().feed(encode_status(code, reason, fields))
    assert block is not None and (block.code, block.reason) == (code, reason)
    assert block.headers == Headers(fields)
