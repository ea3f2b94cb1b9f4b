"""Peer-to-peer transfers: the "1", GET/SEND lines, size/offset replies (napster.txt 5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.proto.napster import (
    ConnectionClosed,
    Data,
    Event,
    FileSize,
    GetRequested,
    IncomingTransfer,
    OffsetRequested,
    OutgoingGet,
    OutgoingSend,
    SendOffered,
    TransferComplete,
    TransferConfig,
    TransferRefused,
)
from peerlab.wire import napster as nap

NAME = "C:\\Program Files\\Napster\\generic cowboy song.mp3"
FILE = b"\xff\xfb\x90\x64" + bytes(range(256)) * 4  # frame sync first, as the spec notes


def test_transfer_line_codec() -> None:
    line = nap.TransferLine("mred", NAME, 0)
    assert line.to_bytes() == b'mred "C:\\Program Files\\Napster\\generic cowboy song.mp3" 0'
    assert nap.parse_transfer_line(line.to_bytes()) == line
    assert nap.parse_transfer_line(b'mred "C:\\Prog') is None
    assert nap.parse_transfer_line(b'mred "a" 12\r\n') == nap.TransferLine("mred", "a", 12)
    for bad in (b'"x', b"a b", b'a "b" x', b'a "b"c', b"a" * 70, b"a\x00"):
        with pytest.raises(RemoteProtocolError):
            nap.parse_transfer_line(bad)
    with pytest.raises(RemoteProtocolError):
        nap.parse_transfer_line(b'a "b" 9999999999999999999')
    with pytest.raises(LocalProtocolError):
        nap.TransferLine("a b", "x", 0).to_bytes()


def _pump(a: IncomingTransfer | OutgoingGet | OutgoingSend,
          b: IncomingTransfer | OutgoingGet | OutgoingSend,
          now: float = 0.0) -> tuple[list[Event], list[Event]]:
    """Exchange bytes (and zero-delay timers) until both sides are quiet."""
    ea: list[Event] = []
    eb: list[Event] = []
    for _ in range(20):
        moved = False
        for src, dst, sink in ((a, b, eb), (b, a, ea)):
            if src.next_deadline() == now:
                (ea if src is a else eb).extend(src.handle_timeout(now))
            out = src.data_to_send()
            if out:
                moved = True
                sink.extend(dst.receive_data(out, now))
        if not moved and a.next_deadline() != now and b.next_deadline() != now:
            break
    return ea, eb


def test_get_download_vectors() -> None:
    sharer = IncomingTransfer()
    assert sharer.data_to_send() == b"1"  # sent as soon as the connection is accepted
    down = OutgoingGet("mynick", NAME, 0, expected_size=len(FILE))
    assert down.receive_data(b"1", 0.0) == []
    assert down.data_to_send() == b"GET"  # "GET" in a single packet ...
    assert down.next_deadline() == 0.0
    assert down.handle_timeout(0.0) == []
    line = down.data_to_send()  # ... then the request line
    assert line == b'mynick "' + NAME.encode() + b'" 0'
    assert sharer.receive_data(b"GET", 0.0) == []
    assert sharer.receive_data(line, 0.0) == [GetRequested("mynick", NAME, 0)]
    sharer.accept_get(len(FILE))
    sharer.send_data(FILE)
    reply = sharer.data_to_send()
    assert reply == str(len(FILE)).encode() + FILE
    events = down.receive_data(reply, 0.0)
    assert events == [FileSize(len(FILE)), Data(FILE), TransferComplete()]
    assert down.size == len(FILE)
    assert down.receive_eof(0.0) == [ConnectionClosed()]


def test_get_resume_from_an_offset_in_pieces() -> None:
    sharer = IncomingTransfer()
    down = OutgoingGet("me", "a.mp3", 1000, expected_size=len(FILE))
    _, ev_sharer = _pump(down, sharer)
    assert ev_sharer == [GetRequested("me", "a.mp3", 1000)]
    sharer.accept_get(len(FILE))
    rest = FILE[1000:]
    sharer.send_data(rest[:10])
    sharer.send_data(rest[10:])
    data = sharer.data_to_send()
    got: list[Event] = []
    for i in range(len(data)):
        got.extend(down.receive_data(data[i : i + 1], 0.0))
    assert got[0] == FileSize(len(FILE))
    assert b"".join(e.data for e in got if isinstance(e, Data)) == rest
    assert got[-1] == TransferComplete()


def test_size_reply_fed_byte_by_byte_without_expected_size() -> None:
    down = OutgoingGet("me", "a.mp3", 0)
    down.receive_data(b"1", 0.0)
    events: list[Event] = []
    for b in b"1028" + FILE:
        events.extend(down.receive_data(bytes([b]), 0.0))
    assert events[0] == FileSize(1028)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == FILE
    assert events[-1] == TransferComplete()


def test_a_file_starting_with_digits_needs_the_expected_size() -> None:
    body = b"12345 is how this text file starts"
    down = OutgoingGet("me", "n.txt", 0, expected_size=len(body))
    down.receive_data(b"1", 0.0)
    events = down.receive_data(str(len(body)).encode() + body, 0.0)
    assert events == [FileSize(len(body)), Data(body), TransferComplete()]


def test_more_data_than_the_file_holds_is_an_error() -> None:
    down = OutgoingGet("me", "a.mp3", 0, expected_size=3)
    down.receive_data(b"1", 0.0)
    with pytest.raises(RemoteProtocolError):
        down.receive_data(b"3abcd", 0.0)


@pytest.mark.parametrize("reason", [nap.FILE_NOT_SHARED, nap.INVALID_REQUEST])
def test_get_refused(reason: str) -> None:
    sharer = IncomingTransfer()
    down = OutgoingGet("me", "nothere.mp3", 0, expected_size=10)
    _pump(down, sharer)
    sharer.refuse(reason)
    assert sharer.data_to_send() == reason.encode()
    assert down.receive_data(reason.encode(), 0.0) == [TransferRefused(reason)]
    assert down.receive_eof(0.0) == [ConnectionClosed()]


def test_refusal_taken_at_eof_and_after_settling() -> None:
    down = OutgoingGet("me", "x.mp3", 0, TransferConfig(line_settle=0.5))
    down.receive_data(b"1", 0.0)
    down.handle_timeout(0.0)
    assert down.data_to_send() == b'GETme "x.mp3" 0'
    assert down.receive_data(b"FILE NOT", 1.0) == []
    assert down.receive_data(b" SHARED", 1.1) == []
    assert down.next_deadline() == pytest.approx(1.6)
    assert down.handle_timeout(1.6) == [TransferRefused("FILE NOT SHARED")]

    other = OutgoingGet("me", "x.mp3", 0, TransferConfig(line_settle=0.5))
    other.receive_data(b"1", 0.0)
    other.receive_data(b"INVALID", 0.1)
    assert other.receive_eof(0.2) == [TransferRefused("INVALID"), ConnectionClosed()]


def test_firewalled_send_vectors() -> None:
    # 5.2: the downloader accepted the sharer's connection and sends "1".
    downloader = IncomingTransfer()
    sharer = OutgoingSend("uploader", "generic band - generic song.mp3", len(FILE))
    assert downloader.data_to_send() == b"1"
    assert sharer.receive_data(b"1", 0.0) == []
    assert sharer.data_to_send() == b"SEND"
    sharer.handle_timeout(0.0)
    offer = sharer.data_to_send()
    assert offer == b'uploader "generic band - generic song.mp3" ' + str(len(FILE)).encode()
    assert downloader.receive_data(b"SEND" + offer, 0.0) == [
        SendOffered("uploader", "generic band - generic song.mp3", len(FILE))
    ]
    with pytest.raises(LocalProtocolError):
        sharer.send_data(b"too early")
    assert downloader.accept_send(100) == []
    assert downloader.data_to_send() == b"100"
    assert sharer.receive_data(b"100", 0.0) == [OffsetRequested(100)]
    assert sharer.offset == 100
    sharer.send_data(FILE[100:])
    events = downloader.receive_data(sharer.data_to_send(), 0.0)
    assert events == [Data(FILE[100:]), TransferComplete()]


def test_send_of_a_file_we_already_have_completes_at_once() -> None:
    downloader = IncomingTransfer()
    sharer = OutgoingSend("up", "a.mp3", 5)
    ev_sharer, ev_down = _pump(sharer, downloader)
    assert ev_down == [SendOffered("up", "a.mp3", 5)]
    assert downloader.accept_send(5) == [TransferComplete()]
    with pytest.raises(LocalProtocolError):
        IncomingTransfer().accept_send(0)


def test_send_refused() -> None:
    downloader = IncomingTransfer()
    sharer = OutgoingSend("up", "a.mp3", 5)
    _pump(sharer, downloader)
    downloader.refuse(nap.INVALID_REQUEST)
    assert sharer.receive_data(downloader.data_to_send(), 0.0) == [
        TransferRefused(nap.INVALID_REQUEST)
    ]


def test_byte_by_byte_with_line_settle() -> None:
    config = TransferConfig(line_settle=0.25)
    sharer = IncomingTransfer(config)
    request = b'GETmynick "a b.mp3" 123'
    events: list[Event] = []
    now = 0.0
    for b in request:
        now += 0.01
        events.extend(sharer.receive_data(bytes([b]), now))
    assert events == []  # the offset's digits may go on
    assert sharer.next_deadline() == pytest.approx(now + 0.25)
    assert sharer.handle_timeout(now + 0.25) == [GetRequested("mynick", "a b.mp3", 123)]

    # The firewalled sharer waits for the offset to settle the same way.
    sharer2 = OutgoingSend("up", "a.mp3", 1000, config)
    sharer2.receive_data(b"1", 0.0)
    assert sharer2.receive_data(b"4", 1.0) == []
    assert sharer2.receive_data(b"2", 1.1) == []
    assert sharer2.handle_timeout(1.35) == [OffsetRequested(42)]


@pytest.mark.parametrize(
    "data",
    [b"HELLO", b"GETmynick a.mp3 0", b"GET" + b"x" * 700, b"PUT", b"GET\x00"],
)
def test_incoming_garbage_raises(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        IncomingTransfer().receive_data(data, 0.0)


def test_outgoing_garbage_raises() -> None:
    with pytest.raises(RemoteProtocolError):
        OutgoingGet("me", "a.mp3", 0).receive_data(b"2", 0.0)
    with pytest.raises(RemoteProtocolError):
        OutgoingSend("me", "a.mp3", 10).receive_data(b"x", 0.0)
    sender = OutgoingSend("me", "a.mp3", 10)
    sender.receive_data(b"1", 0.0)
    with pytest.raises(RemoteProtocolError):
        sender.receive_data(b"11", 0.0)  # beyond the file
    sender = OutgoingSend("me", "a.mp3", 10)
    sender.receive_data(b"1", 0.0)
    with pytest.raises(RemoteProtocolError):
        sender.receive_data(b"5 and more", 0.0)
    getter = OutgoingGet("me", "a.mp3", 50)
    getter.receive_data(b"1", 0.0)
    with pytest.raises(RemoteProtocolError):
        getter.receive_data(b"10\xff", 0.0)  # a file smaller than the offset asked
    getter = OutgoingGet("me", "a.mp3", 0)
    getter.receive_data(b"1", 0.0)
    with pytest.raises(RemoteProtocolError):
        getter.receive_data(b"9" * 25, 0.0)
    getter = OutgoingGet("me", "a.mp3", 0, TransferConfig(line_settle=1.0))
    getter.receive_data(b"1", 0.0)
    with pytest.raises(RemoteProtocolError):
        getter.receive_data(b"E" * (400), 0.0)


def test_downloader_sending_data_is_an_error() -> None:
    sharer = IncomingTransfer()
    sharer.receive_data(b'GETme "a.mp3" 0', 0.0)
    with pytest.raises(RemoteProtocolError):
        sharer.receive_data(b"chatter", 0.0)


def test_handshake_timeout() -> None:
    sharer = IncomingTransfer(TransferConfig(handshake_timeout=10.0), now=5.0)
    assert sharer.next_deadline() == 15.0
    assert sharer.handle_timeout(14.0) == []
    with pytest.raises(RemoteProtocolError):
        sharer.handle_timeout(15.0)
    down = OutgoingGet("me", "a.mp3", 0, TransferConfig(handshake_timeout=3.0), now=1.0)
    assert down.next_deadline() == 4.0


def test_misuse_is_a_local_error() -> None:
    sharer = IncomingTransfer()
    with pytest.raises(LocalProtocolError):
        sharer.accept_get(1)
    with pytest.raises(LocalProtocolError):
        sharer.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        sharer.refuse("no")
    sharer.receive_data(b'GETme "a.mp3" 0', 0.0)
    with pytest.raises(LocalProtocolError):
        sharer.accept_send(0)
    with pytest.raises(LocalProtocolError):
        sharer.accept_get(-1)
    with pytest.raises(LocalProtocolError):
        sharer.refuse("")


@settings(max_examples=300)
@given(st.binary(max_size=200), st.sampled_from(["in", "get", "send"]))
def test_arbitrary_bytes_raise_only_remote_protocol_error(data: bytes, kind: str) -> None:
    machine: IncomingTransfer | OutgoingGet | OutgoingSend
    if kind == "in":
        machine = IncomingTransfer()
    elif kind == "get":
        machine = OutgoingGet("me", "a.mp3", 0)
    else:
        machine = OutgoingSend("me", "a.mp3", 100)
    try:
        machine.receive_data(data, 0.0)
        machine.handle_timeout(0.0)
        machine.receive_eof(0.0)
    except RemoteProtocolError:
        pass
