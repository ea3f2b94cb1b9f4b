"""ClientSession and ServerSession: login state, framing faults, timers (napster.txt 2)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.proto.napster import (
    MAX_PENDING_SEARCHES,
    ClientSession,
    ConnectionClosed,
    InvalidMessage,
    LoginRequired,
    LoginTimedOut,
    ServerSession,
    SessionConfig,
    SessionState,
)
from peerlab.wire import napster as nap
from peerlab.wire.napster import LinkType, SearchQuery, encode

LOGIN = nap.Login("foo", "badpass", 6699, "nap v0.8", LinkType.K33_6)
LOGIN_BYTES = b'\x1d\x00\x02\x00foo badpass 6699 "nap v0.8" 3'


def state(session: ClientSession | ServerSession) -> SessionState:
    """The session's state, read through a call (so mypy does not pin it)."""
    return session.state


def logged_in_pair(now: float = 0.0) -> tuple[ClientSession, ServerSession]:
    client, server = ClientSession(), ServerSession(now=now)
    client.login(LOGIN, now)
    assert server.receive_data(client.data_to_send(), now) == [LOGIN]
    server.accept_login("foo@example.com")
    assert client.receive_data(server.data_to_send(), now) == [nap.LoginAck("foo@example.com")]
    return client, server


def test_login_bytes_and_states() -> None:
    client, server = ClientSession(), ServerSession()
    assert state(client) is SessionState.AWAITING_LOGIN
    client.login(LOGIN, 0.0)
    assert state(client) is SessionState.LOGGING_IN
    assert client.nick == "foo"
    assert client.data_to_send() == LOGIN_BYTES
    assert client.data_to_send() == b""

    assert server.receive_data(LOGIN_BYTES, 0.0) == [LOGIN]
    assert state(server) is SessionState.LOGGING_IN
    assert server.login == LOGIN
    assert server.nick is None  # not until the login is accepted
    server.accept_login("anon@napster.com")
    server.send(nap.Motd("Welcome"))
    out = server.data_to_send()
    assert out == b"\x10\x00\x03\x00anon@napster.com" + b"\x07\x00\x6d\x02Welcome"
    assert state(server) is SessionState.LOGGED_IN and server.nick == "foo"

    events = client.receive_data(out, 0.0)
    assert events == [nap.LoginAck("anon@napster.com"), nap.Motd("Welcome")]
    assert state(client) is SessionState.LOGGED_IN
    assert client.next_deadline() is None and server.next_deadline() is None


def test_new_user_login() -> None:
    client, server = ClientSession(), ServerSession()
    new = nap.NewUserLogin("newbie", "pw", 0, "peerlab", LinkType.DSL, "n@example.com")
    client.send(nap.NickCheck("newbie"))  # allowed before login
    assert server.receive_data(client.data_to_send(), 0.0) == [nap.NickCheck("newbie")]
    server.send(nap.NickNotRegistered())
    assert client.receive_data(server.data_to_send(), 0.0) == [nap.NickNotRegistered()]
    client.login(new, 0.0)
    assert server.receive_data(client.data_to_send(), 0.0) == [new]
    server.accept_login("n@example.com")
    assert server.nick == "newbie"


def test_refused_login_closes_both_sides() -> None:
    client, server = ClientSession(), ServerSession()
    client.login(LOGIN, 0.0)
    server.receive_data(client.data_to_send(), 0.0)
    server.refuse_login("Invalid Password")
    assert state(server) is SessionState.CLOSED
    out = server.data_to_send()
    assert out == b"\x10\x00\x00\x00Invalid Password"
    assert client.receive_data(out + encode(nap.Motd("late")), 0.0) == [
        nap.LoginError("Invalid Password")
    ]
    assert state(client) is SessionState.CLOSED
    with pytest.raises(LocalProtocolError):
        client.send(nap.BrowseRequest("x"))
    # A closed server ignores whatever still arrives.
    assert server.receive_data(encode(nap.BrowseRequest("x")), 0.0) == []
    with pytest.raises(LocalProtocolError):
        server.accept_login("x")


def test_client_may_not_send_commands_before_login() -> None:
    client = ClientSession()
    with pytest.raises(LocalProtocolError):
        client.send(nap.SearchRequest(SearchQuery(("x",))))
    with pytest.raises(LocalProtocolError):
        client.send(LOGIN)  # logins go through login()
    client.send(nap.Unknown(4, b"2.0"))  # version check: a pre-login message
    client.login(LOGIN, 0.0)
    with pytest.raises(LocalProtocolError):
        client.login(LOGIN, 0.0)
    assert client.data_to_send() == b"\x03\x00\x04\x002.0" + LOGIN_BYTES


def test_server_wraps_commands_sent_before_login() -> None:
    server = ServerSession()
    search = nap.SearchRequest(SearchQuery(("x",)))
    events = server.receive_data(encode(search) + encode(nap.NickCheck("a")), 0.0)
    assert events == [LoginRequired(search), nap.NickCheck("a")]
    assert state(server) is SessionState.AWAITING_LOGIN
    with pytest.raises(LocalProtocolError):
        server.accept_login("x")  # nothing to accept yet
    server.refuse_login("You must log in first")
    assert state(server) is SessionState.CLOSED


def test_second_login_is_an_invalid_message() -> None:
    server = ServerSession()
    events = server.receive_data(LOGIN_BYTES + LOGIN_BYTES, 0.0)
    assert events[0] == LOGIN
    assert events[1] == InvalidMessage(2, LOGIN_BYTES[4:], "napster login already sent")
    server.accept_login("x")
    events = server.receive_data(LOGIN_BYTES, 0.0)
    assert isinstance(events[0], InvalidMessage)


def test_garbage_payload_costs_only_that_message() -> None:
    client, server = logged_in_pair()
    bad_share = struct.pack("<HH", 5, 100) + b"oops!"
    good = encode(nap.BrowseRequest("lefty"))
    events = server.receive_data(bad_share + good, 0.0)
    assert len(events) == 2
    assert isinstance(events[0], InvalidMessage)
    assert events[0].type == 100 and events[0].payload == b"oops!"
    assert events[1] == nap.BrowseRequest("lefty")
    assert state(server) is SessionState.LOGGED_IN
    # Unknown types arrive as Unknown, for the server's 404.
    assert server.receive_data(struct.pack("<HH", 2, 9999) + b"hi", 0.0) == [
        nap.Unknown(9999, b"hi")
    ]


def test_oversized_frame_raises() -> None:
    _, server = logged_in_pair()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(struct.pack("<HH", 65535, 200), 0.0)


def test_eof_clean_and_truncated() -> None:
    client, server = logged_in_pair()
    assert server.receive_eof(1.0) == [ConnectionClosed()]
    assert state(server) is SessionState.CLOSED
    client.receive_data(encode(nap.Motd("cut short"))[:-3], 1.0)
    with pytest.raises(RemoteProtocolError):
        client.receive_eof(1.0)


def test_login_timeouts() -> None:
    config = SessionConfig(login_timeout=5.0)
    server = ServerSession(config, now=100.0)
    assert server.next_deadline() == 105.0
    assert server.handle_timeout(104.9) == []
    assert server.handle_timeout(105.0) == [LoginTimedOut()]
    assert state(server) is SessionState.CLOSED
    assert server.next_deadline() is None

    client = ClientSession(config)
    assert client.next_deadline() is None
    client.login(LOGIN, 10.0)
    assert client.next_deadline() == 15.0
    assert client.handle_timeout(15.0) == [LoginTimedOut()]
    assert state(client) is SessionState.CLOSED


def test_pending_searches_are_counted_and_bounded() -> None:
    client, server = logged_in_pair()
    query = nap.SearchRequest(SearchQuery(("little toot",), 100))
    client.send(query)
    client.send(query)
    assert client.pending_searches == 2
    assert server.receive_data(client.data_to_send(), 0.0) == [query, query]
    result = nap.SearchResult(
        "Andrews Sisters - Little Toot.mp3", "0" * 32, 8528129, 128, 44100, 180,
        "F4phantom", nap.ip_to_napster("127.0.0.1"), LinkType.DSL,
    )
    server.send_many([result, nap.SearchEnd()])
    assert client.receive_data(server.data_to_send(), 0.0) == [result, nap.SearchEnd()]
    assert client.pending_searches == 1
    for _ in range(MAX_PENDING_SEARCHES - 1):
        client.send(query)
    with pytest.raises(LocalProtocolError):
        client.send(query)


def test_server_stream_fed_byte_by_byte() -> None:
    client, server = logged_in_pair()
    msgs: list[nap.Message] = [
        nap.Motd("line 1"),
        nap.ServerStats(553, 64692, 254),
        nap.SearchResult("a.mp3", "0" * 32, 1, 128, 44100, 1, "x", 1, LinkType.T1),
        nap.SearchEnd(),
        nap.ErrorMessage("User nosuchuser is not currently online."),
    ]
    server.send_many(msgs)
    data = server.data_to_send()
    events = []
    for i in range(len(data)):
        events.extend(client.receive_data(data[i : i + 1], 0.0))
    assert events == msgs


@settings(max_examples=300)
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes_to_a_server_raise_only_remote_protocol_error(
    data: bytes, logged_in: bool
) -> None:
    server = ServerSession()
    if logged_in:
        server.receive_data(LOGIN_BYTES, 0.0)
        server.accept_login("x")
    try:
        server.receive_data(data, 0.0)
        server.receive_eof(0.0)
    except RemoteProtocolError:
        pass


def test_a_search_that_cannot_be_encoded_is_not_counted() -> None:
    client, _ = logged_in_pair()
    with pytest.raises(LocalProtocolError):
        client.send(nap.SearchRequest(SearchQuery(('say "hi"',))))
    assert client.pending_searches == 0
    assert client.data_to_send() == b""
