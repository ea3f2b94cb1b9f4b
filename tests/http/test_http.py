"""HTTP/1.1 codec and connection state machines (peerlab.wire.http, peerlab.proto.http).

As h11's tests do, every vector is fed whole and then one byte at a time, and
both feedings must give the same events (body pieces joined).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.proto.http import (
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    Request,
    Response,
    ServerConnection,
)
from peerlab.wire.http import MAX_HEADERS, parse_content_length

Conn = ClientConnection | ServerConnection


def normalise(events: list) -> list:
    """Join adjacent Data events so whole and byte-wise feeding compare equal."""
    out: list = []
    for ev in events:
        if isinstance(ev, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def client_waiting(method: str = "GET", version: str = "1.1") -> ClientConnection:
    c = ClientConnection()
    c.send_request(Request(method, "/x", Headers([("Host", "h")]), version))
    c.data_to_send()
    return c


def feed(conn: Conn, data: bytes, *, bytewise: bool, eof: bool = False) -> list:
    events: list = []
    if bytewise:
        for i in range(len(data)):
            events += conn.receive_data(data[i : i + 1])
    else:
        events += conn.receive_data(data)
    if eof:
        events += conn.receive_eof()
    return normalise(events)


def both_ways(make: object, data: bytes, *, eof: bool = False) -> list:
    whole = feed(make(), data, bytewise=False, eof=eof)  # type: ignore[operator]
    single = feed(make(), data, bytewise=True, eof=eof)  # type: ignore[operator]
    assert whole == single
    return whole


def raises_both_ways(make: object, data: bytes, *, eof: bool = False) -> RemoteProtocolError:
    errors = []
    for bytewise in (False, True):
        with pytest.raises(RemoteProtocolError) as info:
            feed(make(), data, bytewise=bytewise, eof=eof)  # type: ignore[operator]
        errors.append(info.value)
    assert errors[0].code == errors[1].code
    return errors[0]


# ---------------------------------------------------------------- responses


def test_content_length_response() -> None:
    ev = both_ways(client_waiting, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
    assert ev == [
        Response(200, "OK", Headers([("Content-Length", "5"), ("X-A", "b")]), "1.1"),
        Data(b"hello"),
        EndOfMessage(),
    ]


def test_chunked_response_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"A\r\n, world!!!\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    ev = both_ways(client_waiting, raw)
    assert ev[1:] == [Data(b"hello, world!!!"), EndOfMessage()]


def test_close_delimited_response_ends_at_eof() -> None:
    def make() -> ClientConnection:
        return client_waiting()

    ev = both_ways(make, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody bytes", eof=True)
    assert ev[1:] == [Data(b"body bytes"), EndOfMessage(), ConnectionClosed()]
    c = client_waiting()
    c.receive_data(b"HTTP/1.1 200 OK\r\n\r\nabc")
    assert not c.keep_alive


def test_head_response_has_no_body_despite_content_length() -> None:
    ev = both_ways(
        lambda: client_waiting("HEAD"), b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"
    )
    assert ev[1:] == [EndOfMessage()]


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    raw = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status
    ev = both_ways(client_waiting, raw)
    assert ev[0].status == status and ev[1:] == [EndOfMessage()]


def test_informational_responses_are_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    ev = both_ways(client_waiting, raw)
    assert ev[0].status == 200 and ev[1:] == [Data(b"ok"), EndOfMessage()]


def test_status_line_without_reason_and_bare_lf() -> None:
    ev = both_ways(client_waiting, b"HTTP/1.1 404\nContent-Length: 0\n\n")
    assert ev == [Response(404, "", Headers([("Content-Length", "0")]), "1.1"), EndOfMessage()]


def test_keep_alive_cycles_on_one_connection() -> None:
    c = client_waiting()
    for i in range(3):
        ev = c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + bytes([65 + i]))
        assert ev[1:] == [Data(bytes([65 + i])), EndOfMessage()]
        assert c.keep_alive
        c.start_next_cycle()
        c.send_request(Request("GET", f"/{i}", Headers([("Host", "h")])))
        assert c.data_to_send() == f"GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("req_version", "req_conn", "resp", "keep"),
    [
        ("1.1", None, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        ("1.1", "close", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        ("1.1", None, b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", False),
        ("1.1", None, b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        ("1.0", None, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (
            "1.0",
            "keep-alive",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            True,
        ),
    ],
)
def test_keep_alive_rules(req_version: str, req_conn: str | None, resp: bytes, keep: bool) -> None:
    c = ClientConnection()
    headers = [("Host", "h")] + ([("Connection", req_conn)] if req_conn else [])
    c.send_request(Request("GET", "/", Headers(headers), req_version))
    assert c.receive_data(resp)[-1] == EndOfMessage()
    assert c.keep_alive is keep
    if not keep:
        with pytest.raises(LocalProtocolError):
            c.start_next_cycle()


def test_eof_inside_body_or_before_response_is_an_error() -> None:
    c = client_waiting()
    c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(RemoteProtocolError):
        c.receive_eof()
    with pytest.raises(RemoteProtocolError):
        client_waiting().receive_eof()
    c = client_waiting()
    c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert c.receive_eof() == [ConnectionClosed()]
    assert not c.keep_alive


def test_bulk_body_buffers_are_passed_through_without_copy() -> None:
    c = client_waiting()
    total = 8 * 65536
    c.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
    pieces = [bytes([i]) * 65536 for i in range(8)]
    for i, piece in enumerate(pieces):
        ev = c.receive_data(piece)
        assert ev[0].data is piece
        assert ev[1:] == ([EndOfMessage()] if i == 7 else [])


def test_chunked_bulk_data_inside_one_chunk_is_not_copied() -> None:
    c = client_waiting()
    c.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40000\r\n")
    piece = b"z" * 65536
    for _ in range(4):
        assert c.receive_data(piece)[0].data is piece
    assert c.receive_data(b"\r\n0\r\n\r\n") == [EndOfMessage()]


# ------------------------------------------------------------- bad responses


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 20 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"x" * 2000 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ],
)
def test_bad_responses_raise_remote_protocol_error(raw: bytes) -> None:
    raises_both_ways(client_waiting, raw)


def test_identical_duplicate_content_lengths_are_accepted() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"
    assert both_ways(client_waiting, raw)[1:] == [Data(b"ok"), EndOfMessage()]
    assert parse_content_length(Headers([("content-length", "007")])) == 7


def test_error_state_is_sticky() -> None:
    c = client_waiting()
    with pytest.raises(RemoteProtocolError):
        c.receive_data(b"garbage\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        c.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    assert not c.keep_alive


# ------------------------------------------------------------------- server


def test_request_parse_and_leading_blank_lines() -> None:
    raw = b"\r\n\r\nGET /uri-res/N2R?urn:sha1:ABC HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\n"
    ev = both_ways(ServerConnection, raw)
    assert ev == [
        Request(
            "GET",
            "/uri-res/N2R?urn:sha1:ABC",
            Headers([("Host", "a"), ("Range", "bytes=0-9")]),
            "1.1",
        ),
        EndOfMessage(),
    ]
    assert ev[0].headers.get("RANGE") == "bytes=0-9"
    assert "host" in ev[0].headers and "nope" not in ev[0].headers


def test_request_bodies_content_length_and_chunked() -> None:
    ev = both_ways(ServerConnection, b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert ev[1:] == [Data(b"abc"), EndOfMessage()]
    raw = b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert both_ways(ServerConnection, raw)[1:] == [Data(b"abc"), EndOfMessage()]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Pad: aaaaaaaaaaaa\r\n" * 2000, 431),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET / HTTP/3.0\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET /a b HTTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET /\x00 HTTP/1.1\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ],
)
def test_bad_requests_carry_their_status(raw: bytes, code: int) -> None:
    assert raises_both_ways(ServerConnection, raw).code == code


def test_server_can_answer_a_protocol_error_then_must_close() -> None:
    s = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        s.receive_data(b"BAD REQUEST LINE\r\n\r\n")
    s.send_response(Response(400, "Bad Request", Headers([("Content-Length", "0")])))
    s.send_end()
    out = s.data_to_send()
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in out
    assert not s.keep_alive


def _serve(req: bytes, resp: Response, body: bytes) -> tuple[ServerConnection, bytes]:
    s = ServerConnection()
    s.receive_data(req)
    s.send_response(resp)
    s.send_data(body)
    s.send_end()
    return s, s.data_to_send()


def test_server_frames_bodies_by_client_version() -> None:
    s, out = _serve(b"GET / HTTP/1.1\r\n\r\n", Response(200, "OK", Headers()), b"abc")
    assert out == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert s.keep_alive
    s, out = _serve(b"GET / HTTP/1.0\r\n\r\n", Response(200, "OK", Headers()), b"abc")
    assert out == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc"
    assert not s.keep_alive
    s, out = _serve(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        Response(200, "OK", Headers([("Content-Length", "3")])),
        b"abc",
    )
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc"
    assert s.keep_alive
    s, out = _serve(
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        Response(200, "OK", Headers([("Content-Length", "3")])),
        b"abc",
    )
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    assert not s.keep_alive


def test_server_head_response_refuses_body_bytes() -> None:
    s = ServerConnection()
    s.receive_data(b"HEAD /f HTTP/1.1\r\n\r\n")
    s.send_response(Response(200, "OK", Headers([("Content-Length", "100")])))
    with pytest.raises(LocalProtocolError):
        s.send_data(b"x")
    s.send_end()
    assert s.data_to_send() == b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    assert s.keep_alive


def test_server_refuses_misuse() -> None:
    s = ServerConnection()
    with pytest.raises(LocalProtocolError):
        s.send_response(Response(200, "OK", Headers()))
    s.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        s.send_response(Response(200, "OK", Headers([("X", "a\r\nInjected: 1")])))
    s.send_response(Response(200, "OK", Headers([("Content-Length", "2")])))
    with pytest.raises(LocalProtocolError):
        s.send_data(b"abc")
    s.send_data(b"a")
    with pytest.raises(LocalProtocolError):
        s.send_end()


def test_body_bytes_handed_to_send_data_go_out_uncopied() -> None:
    s = ServerConnection()
    s.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    s.send_response(Response(200, "OK", Headers([("Content-Length", str(1 << 20))])))
    s.data_to_send()
    block = b"q" * (1 << 20)
    s.send_data(block)
    assert s.data_to_send() is block


def test_pipelined_requests_wait_for_the_next_cycle() -> None:
    s = ServerConnection()
    ev = s.receive_data(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    assert [e.target for e in ev if isinstance(e, Request)] == ["/1"]
    s.send_response(Response(200, "OK", Headers([("Content-Length", "0")])))
    s.send_end()
    s.start_next_cycle()
    ev = s.receive_data(b"")
    assert ev == [Request("GET", "/2", Headers(), "1.1"), EndOfMessage()]


def test_server_eof_between_requests_and_inside_one() -> None:
    s = ServerConnection()
    assert s.receive_eof() == [ConnectionClosed()]
    s = ServerConnection()
    s.receive_data(b"GET / HTT")
    with pytest.raises(RemoteProtocolError):
        s.receive_eof()


# --------------------------------------------------------------- hypothesis

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!",
    min_size=1,
    max_size=20,
)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(lambda s: s.strip(" \t"))
_reserved = {"content-length", "transfer-encoding", "connection"}
_headers = st.lists(
    st.tuples(_token, _value).filter(lambda p: p[0].lower() not in _reserved), max_size=12
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=_token,
    target=st.text(alphabet="/abc%?=&.:~", min_size=1, max_size=40),
    headers=_headers,
    body=st.binary(max_size=3000),
    chunked=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_round_trip_request_and_response(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    chunked: bool,
    cuts: list[int],
) -> None:
    client = ClientConnection()
    req = Request(method, target, Headers(headers))
    client.send_request(req, body)
    server = ServerConnection()
    got: list = []
    for piece in _split(client.data_to_send(), cuts):
        got += server.receive_data(piece)
    got = normalise(got)
    assert got[0].method == method and got[0].target == target
    assert [p for p in got[0].headers if p[0].lower() != "content-length"] == headers
    assert got[1:] == ([Data(body)] if body else []) + [EndOfMessage()]

    resp_headers = headers if chunked else [*headers, ("Content-Length", str(len(body)))]
    server.send_response(Response(200, "OK", Headers(resp_headers)))
    for i in range(0, len(body), 700):
        server.send_data(body[i : i + 700])
    server.send_end()
    back: list = []
    for piece in _split(server.data_to_send(), cuts):
        back += client.receive_data(piece)
    back = normalise(back)
    assert back[0].status == 200
    assert [
        p for p in back[0].headers if p[0].lower() in {n.lower() for n, _ in headers}
    ] == headers
    assert back[1:] == ([Data(body)] if body else []) + [EndOfMessage()]
    assert client.keep_alive and server.keep_alive


def _only_remote_errors(conn: Conn, pieces: list[bytes], eof: bool) -> None:
    try:
        for piece in pieces:
            conn.receive_data(piece)
        if eof:
            conn.receive_eof()
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
    eof=st.booleans(),
)
def test_garbage_raises_only_remote_protocol_error(data: bytes, cuts: list[int], eof: bool) -> None:
    _only_remote_errors(ServerConnection(), _split(data, cuts), eof)
    _only_remote_errors(client_waiting(), _split(data, cuts), eof)
    _only_remote_errors(client_waiting("HEAD"), _split(data, cuts), eof)


_PREFIXES = [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 206 Partial Content\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n",
    b"GET / HTTP/1.1\r\n",
]


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(_PREFIXES),
    tail=st.binary(max_size=400)
    | st.lists(
        st.sampled_from([b"\r\n", b"0", b"a", b";", b":", b" ", b"\n", b"5", b"F"]), max_size=60
    ).map(b"".join),
    cuts=st.lists(st.integers(0, 1000), max_size=5),
    eof=st.booleans(),
)
def test_garbage_after_a_valid_head_raises_only_remote_protocol_error(
    prefix: bytes, tail: bytes, cuts: list[int], eof: bool
) -> None:
    pieces = _split(prefix + tail, cuts)
    conn: Conn = ServerConnection() if not prefix.startswith(b"HTTP") else client_waiting()
    _only_remote_errors(conn, pieces, eof)


def test_headers_share_their_strings_across_blocks() -> None:
    """Two handshakes with the same fields keep one copy of each string
    (interned: a link keeps both ends' headers as long as it lives)."""
    # Strings built at run time, so they start as distinct objects.
    a = Headers([("".join(["X-Ultra", "peer"]), "".join(["Tr", "ue"])), ("X-Try", "a,b")])
    b = Headers([("".join(["X-Ultr", "apeer"]), "".join(["T", "rue"])), ("x-try", "c")])
    (name_a, value_a), (name_b, value_b) = a.pairs[0], b.pairs[0]
    assert name_a is name_b and value_a is value_b
    assert a.get("x-ultrapeer") == "True" and b.get("X-TRY") == "c"
    dup = Headers([("Via", "1"), ("via", "2")])
    assert dup.get_all("VIA") == ["1", "2"] and dup.get("via") == "1"
    assert dup.tokens("via") == ["1", "2"] and "Via" in dup and "X" not in dup
