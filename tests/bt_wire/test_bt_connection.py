"""The peer connection machine, driven with explicit time: handshakes, the
order of the first messages, extension negotiation, choking and requests in
both directions with and without the fast extension, bounds, keep-alives and
timeouts, and garbage.  Two machines talk to each other through ``Pair``."""

from __future__ import annotations

import struct

import pytest
from btwirekit import INFO_HASH, PIECES, Pair, config, messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.proto.peer import (
    ConnectionClosed,
    ConnectionState,
    ExtensionMessage,
    PeerConnection,
    RequestsDropped,
)
from peerlab.wire import peer as pw

BLOCK = 16384


def _est(
    a_kw: dict[str, object] | None = None,
    b_kw: dict[str, object] | None = None,
    *,
    seed_has_all: bool = True,
) -> Pair:
    """An established pair; b (the incoming side) is a seed."""
    pair = Pair(config(b"a", **(a_kw or {})), config(b"b", **(b_kw or {})))
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    assert pair.b.state is ConnectionState.ESTABLISHED
    if seed_has_all:
        if pair.b.fast:
            pair.b.send_have_all()
        else:
            pair.b.send_bitfield(pw.bitfield_from_pieces(range(PIECES), PIECES))
    pair.pump()
    pair.take()
    return pair


def _messages(data: bytes) -> list[pw.Message]:
    return pw.MessageDecoder().feed(data)


# ------------------------------------------------------------------ handshake


def test_outgoing_sends_its_handshake_at_once() -> None:
    a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 0.0, piece_count=PIECES)
    data = a.data_to_send()
    h = pw.decode_handshake(data)
    assert h.info_hash == INFO_HASH and h.peer_id == config(b"a").peer_id
    assert h.extension_protocol and h.fast and not h.dht
    assert a.state is ConnectionState.HANDSHAKE


def test_incoming_answers_after_the_info_hash_byte_by_byte() -> None:
    pair = Pair()
    hs = pair.a.data_to_send()
    for i in range(pw.HANDSHAKE_PREFIX_LENGTH - 1):
        assert pair.b.receive_data(hs[i : i + 1], 0.0) == []
        assert pair.b.data_to_send() == b""
    pair.b.receive_data(hs[47:48], 0.0)
    answer = pair.b.data_to_send()
    # BEP 3: the recipient may answer once it has seen the info-hash.
    assert pw.decode_handshake(answer).info_hash == INFO_HASH
    events: list[object] = []
    for i in range(48, 68):
        events += pair.b.receive_data(hs[i : i + 1], 0.0)
    assert events == [pw.decode_handshake(hs)]
    assert pair.b.state is ConnectionState.ESTABLISHED
    a_events = pair.a.receive_data(answer, 0.0)
    assert a_events == [pw.decode_handshake(answer)]
    assert pair.a.remote is not None and pair.a.remote.peer_id == config(b"b").peer_id
    assert pair.a.fast and pair.a.extension_protocol and not pair.a.dht


def test_incoming_accepts_a_set_of_info_hashes() -> None:
    b = PeerConnection.incoming(config(b"b"), {INFO_HASH}, 0.0)
    a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 0.0)
    b.receive_data(a.data_to_send(), 0.0)
    assert b.state is ConnectionState.ESTABLISHED and b.info_hash == INFO_HASH
    assert b.piece_count == 0  # unknown: a set says nothing about pieces


def test_incoming_refuses_an_unknown_info_hash() -> None:
    b = PeerConnection.incoming(config(b"b"), {b"\x01" * 20}, 0.0)
    a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 0.0)
    with pytest.raises(RemoteProtocolError, match="info-hash"):
        b.receive_data(a.data_to_send(), 0.0)
    assert b.data_to_send() == b""  # we never said which torrents we have


def test_outgoing_refuses_another_info_hash_and_a_wrong_peer_id() -> None:
    a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 0.0)
    other = pw.encode_handshake(pw.Handshake(b"\x02" * 20, config(b"b").peer_id))
    with pytest.raises(RemoteProtocolError):
        a.receive_data(other, 0.0)
    a = PeerConnection.outgoing(
        config(b"a"), INFO_HASH, 0.0, expected_peer_id=config(b"c").peer_id
    )
    with pytest.raises(RemoteProtocolError, match="peer id"):
        a.receive_data(pw.encode_handshake(pw.Handshake(INFO_HASH, config(b"b").peer_id)), 0.0)


def test_a_stranger_is_refused_before_a_whole_handshake() -> None:
    b = PeerConnection.incoming(config(b"b"), {INFO_HASH}, 0.0)
    with pytest.raises(RemoteProtocolError, match="not a BitTorrent handshake"):
        b.receive_data(b"GET /announce", 0.0)


def test_negotiated_features_need_both_ends() -> None:
    pair = _est({"fast": False, "extension_protocol": False, "dht": True}, {"dht": True})
    for m in (pair.a, pair.b):
        assert not m.fast and not m.extension_protocol and m.dht


# ------------------------------------------------------------------ first messages


def test_availability_goes_first_then_extended_handshake_and_port() -> None:
    pair = Pair(config(b"a"), config(b"b", dht=True, dht_port=7000, listen_port=6881))
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    # while handling the Handshake event, before the next data_to_send()
    pair.b.send_bitfield(pw.bitfield_from_pieces([0, 7], PIECES))
    data = pair.b.data_to_send()
    assert pw.decode_handshake(data[:68]).peer_id == config(b"b").peer_id
    msgs = _messages(data[68:])
    assert msgs[0] == pw.Bitfield(b"\x81")
    assert isinstance(msgs[1], pw.Extended) and msgs[1].extended_id == 0
    h = pw.decode_extended_handshake(msgs[1].payload)
    assert h == pw.ExtendedHandshake(
        m={"ut_metadata": 1, "ut_pex": 2}, p=6881, v="peerlab 0.1.0", reqq=250
    )
    assert len(msgs) == 2  # no port: a did not set the DHT bit


def test_without_availability_fast_sends_have_none_first() -> None:
    pair = Pair(config(b"a", dht=True, dht_port=7001), config(b"b", dht=True))
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    msgs = _messages(pair.a.data_to_send())
    assert msgs[0] == pw.HaveNone()  # BEP 6: one of the three must come first
    assert isinstance(msgs[1], pw.Extended) and msgs[1].extended_id == 0
    assert msgs[2] == pw.Port(7001)
    with pytest.raises(LocalProtocolError):
        pair.a.send_bitfield(b"\x00")  # too late now


def test_without_fast_nothing_is_claimed() -> None:
    pair = Pair(config(b"a", fast=False), config(b"b"))
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    pair.a.interested()
    msgs = _messages(pair.a.data_to_send())
    assert isinstance(msgs[0], pw.Extended) and msgs[1] == pw.Interested()
    with pytest.raises(LocalProtocolError):
        pair.a.send_have_all()


def test_extended_handshake_override_replaces_the_pending_one() -> None:
    pair = Pair()
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.b.send_have_all()
    pair.b.send_extended_handshake(metadata_size=31235, yourip="127.0.0.1")
    msgs = _messages(pair.b.data_to_send()[68:])
    assert msgs[0] == pw.HaveAll()
    exts = [m for m in msgs if isinstance(m, pw.Extended)]
    assert len(exts) == 1
    h = pw.decode_extended_handshake(exts[0].payload)
    assert h.metadata_size == 31235 and h.yourip == "127.0.0.1"
    with pytest.raises(LocalProtocolError):
        pair.b.send_extended_handshake(colour="blue")


def test_extension_negotiation_both_ways() -> None:
    pair = Pair(config(b"a", extensions={"ut_metadata": 7}), config(b"b", reqq=4))
    pair.pump()
    a_events, b_events = pair.take()
    hs_a = [e for e in a_events if isinstance(e, pw.ExtendedHandshake)]
    hs_b = [e for e in b_events if isinstance(e, pw.ExtendedHandshake)]
    assert hs_a[0].reqq == 4 and hs_b[0].m == {"ut_metadata": 7}
    assert pair.a.remote_extensions == {"ut_metadata": 1, "ut_pex": 2}
    assert pair.b.remote_extensions == {"ut_metadata": 7}
    assert pair.a.peer_reqq == 4
    # b sends ut_metadata under a's id 7; a parses it as BEP 9.
    pair.b.send_metadata(pw.MetadataRequest(0))
    sent = _messages(pair.b.data_to_send())
    assert sent == [pw.Extended(7, b"d8:msg_typei0e5:piecei0ee")]
    assert pair.a.receive_data(pw.encode(sent[0]), 0.0) == [pw.MetadataRequest(0)]
    with pytest.raises(LocalProtocolError, match="ut_pex"):
        pair.b.send_pex(pw.PeerExchange())
    # a later handshake is additive; id 0 disables (BEP 10)
    pair.a.send_extended_handshake(m={"ut_metadata": 0})
    pair.pump()
    assert pair.b.remote_extensions == {}


def test_extension_names_are_bounded_across_handshakes() -> None:
    pair = _est()
    for round_ in range(3):
        m = {f"x{round_}_{i}": 1 + i % 200 for i in range(pw.MAX_EXTENSION_NAMES)}
        payload = pw.encode_extended_handshake(pw.ExtendedHandshake(m=m))
        pair.a.receive_data(pw.encode(pw.Extended(0, payload)), 0.0)
    assert len(pair.a.remote_extensions) == pw.MAX_EXTENSION_NAMES
    assert pair.a.counters["extensions_ignored"] == 3 * pw.MAX_EXTENSION_NAMES - (
        pw.MAX_EXTENSION_NAMES - 2)  # ut_metadata and ut_pex were known already


def test_metadata_and_pex_and_unknown_extension_messages() -> None:
    pair = _est()
    data = b"m" * 100
    pair.b.send_metadata(pw.MetadataData(0, 100, data))
    pair.b.send_pex(pw.PeerExchange((pw.PexPeer(("10.0.0.2", 6881)),)))
    pair.b.send_extended("ut_metadata", b"d8:msg_typei9e5:piecei0ee")  # unknown type
    pair.pump()
    a_events, _ = pair.take()
    assert a_events == [
        pw.MetadataData(0, 100, data),
        pw.PeerExchange((pw.PexPeer(("10.0.0.2", 6881)),)),
    ]
    assert pair.a.counters["metadata_unknown_type"] == 1
    # an id a never assigned
    assert pair.a.receive_data(pw.encode(pw.Extended(9, b"x")), 0.0) == [
        ExtensionMessage(None, 9, b"x")
    ]


# ------------------------------------------------------------------ choking and requests


def test_interest_unchoke_request_piece() -> None:
    pair = _est()
    assert pair.a.am_choking and pair.a.peer_choking and not pair.a.am_interested
    pair.a.interested()
    pair.a.interested()  # idempotent: sent once
    pair.pump()
    assert pair.take()[1] == [pw.Interested()] and pair.b.peer_interested
    with pytest.raises(LocalProtocolError, match="chokes"):
        pair.a.request(0, 0, BLOCK)
    pair.b.unchoke()
    pair.pump()
    assert pair.take()[0] == [pw.Unchoke()] and not pair.a.peer_choking
    assert pair.a.request(0, 0, BLOCK) == pw.Request(0, 0, BLOCK)
    pair.a.request(0, BLOCK, BLOCK)
    pair.pump()
    _, b_events = pair.take()
    assert b_events == [pw.Request(0, 0, BLOCK), pw.Request(0, BLOCK, BLOCK)]
    assert pair.b.peer_requests == b_events
    block = bytes(range(256)) * 64
    assert pair.b.send_piece(0, BLOCK, block)
    assert not pair.b.send_piece(0, BLOCK, block)  # answered already
    pair.pump()
    a_events, _ = pair.take()
    assert a_events == [pw.Piece(0, BLOCK, block)]
    assert pair.a.requests_outstanding == [pw.Request(0, 0, BLOCK)]
    assert pair.a.payload_received == pair.b.payload_sent == BLOCK


def test_block_data_at_moves_with_every_fragment_of_a_block() -> None:
    # libtorrent's m_last_piece: part of a block is progress; other messages are not
    pair = _est()
    pair.a.interested()
    pair.pump()
    pair.b.unchoke()
    pair.pump()
    pair.a.request(0, 0, BLOCK)
    pair.pump()
    assert pair.a.block_data_at is None
    pair.b.have(1)
    pair.a.receive_data(pair.b.data_to_send(), 1.0)
    assert pair.a.block_data_at is None
    assert pair.b.send_piece(0, 0, b"z" * BLOCK)
    stream = pair.b.data_to_send()
    assert pair.a.receive_data(stream[:5], 2.0) == []  # length and id
    assert pair.a.block_data_at == 2.0
    assert pair.a.receive_data(stream[5:1000], 3.0) == []
    assert pair.a.block_data_at == 3.0
    assert pair.a.receive_data(stream[1000:], 4.0) == [pw.Piece(0, 0, b"z" * BLOCK)]
    assert pair.a.block_data_at == 4.0
    pair.b.have(2)
    pair.a.receive_data(pair.b.data_to_send(), 5.0)
    assert pair.a.block_data_at == 4.0


def test_request_pipeline_is_bounded_by_the_peers_reqq() -> None:
    pair = _est(b_kw={"reqq": 3}, a_kw={"max_requests": 10})
    pair.b.unchoke()
    pair.pump()
    assert pair.a.request_slots == 3
    for i in range(3):
        pair.a.request(i, 0, BLOCK)
    assert pair.a.request_slots == 0
    with pytest.raises(LocalProtocolError, match="full"):
        pair.a.request(3, 0, BLOCK)
    with pytest.raises(LocalProtocolError, match="already"):
        pair.a.request(0, 0, BLOCK)
    with pytest.raises(LocalProtocolError):
        pair.a.request(PIECES, 0, BLOCK)
    with pytest.raises(LocalProtocolError):
        pair.a.request(0, 0, BLOCK + 1)


def test_choke_without_fast_drops_requests_and_tolerates_late_pieces() -> None:
    pair = _est({"fast": False}, {"fast": False})
    pair.b.unchoke()
    pair.pump()
    pair.a.request(1, 0, BLOCK)
    pair.a.request(2, 0, BLOCK)
    pair.pump()
    pair.take()
    pair.b.choke()
    assert pair.b.peer_requests == []  # BEP 3: a choke voids the queue
    assert not pair.b.send_piece(1, 0, b"x" * BLOCK)
    pair.pump()
    a_events, _ = pair.take()
    dropped = (pw.Request(1, 0, BLOCK), pw.Request(2, 0, BLOCK))
    assert a_events == [pw.Choke(), RequestsDropped(dropped)]
    assert pair.a.requests_outstanding == []
    # a piece for a voided request still arriving is accepted once
    late = pw.encode(pw.Piece(2, 0, b"y" * BLOCK))
    assert pair.a.receive_data(late, 0.0) == [pw.Piece(2, 0, b"y" * BLOCK)]
    assert pair.a.counters["pieces_after_cancel"] == 1
    with pytest.raises(RemoteProtocolError, match="never requested"):
        pair.a.receive_data(late, 0.0)


def test_cancel_without_fast() -> None:
    pair = _est({"fast": False}, {"fast": False})
    pair.b.unchoke()
    pair.pump()
    pair.a.request(1, 0, BLOCK)
    pair.pump()
    pair.a.cancel(1, 0, BLOCK)
    assert pair.a.requests_outstanding == []
    pair.pump()
    _, b_events = pair.take()
    assert b_events == [pw.Request(1, 0, BLOCK), pw.Cancel(1, 0, BLOCK)]
    assert pair.b.peer_requests == [] and not pair.b.send_piece(1, 0, b"z" * BLOCK)


def test_fast_choke_rejects_queued_requests_but_allowed_fast() -> None:
    pair = _est()
    pair.b.allow_fast(5)
    pair.b.unchoke()
    pair.pump()
    pair.take()
    assert pair.a.peer_allowed_fast == {5}
    pair.a.request(1, 0, BLOCK)
    pair.a.request(5, 0, BLOCK)
    pair.pump()
    pair.take()
    pair.b.choke()
    pair.pump()
    a_events, _ = pair.take()
    # BEP 6: a choke no longer voids requests; each gets exactly one answer.
    assert a_events == [pw.Choke(), pw.RejectRequest(1, 0, BLOCK)]
    assert pair.a.requests_outstanding == [pw.Request(5, 0, BLOCK)]
    assert pair.b.send_piece(5, 0, b"f" * BLOCK)  # allowed fast survives the choke
    # choked, a may still ask for allowed-fast pieces, and b serves them
    pair.a.request(5, BLOCK, BLOCK)
    with pytest.raises(LocalProtocolError):
        pair.a.request(1, 0, BLOCK)
    pair.pump()
    a_events, b_events = pair.take()
    assert a_events == [pw.Piece(5, 0, b"f" * BLOCK)]
    assert b_events == [pw.Request(5, BLOCK, BLOCK)]


def test_fast_cancel_is_answered_by_a_reject() -> None:
    pair = _est()
    pair.b.unchoke()
    pair.pump()
    pair.take()
    pair.a.request(3, 0, BLOCK)
    pair.pump()
    pair.a.cancel(3, 0, BLOCK)
    # under BEP 6 the request counts until its answer arrives
    assert pair.a.requests_outstanding == [pw.Request(3, 0, BLOCK)]
    pair.pump()
    a_events, b_events = pair.take()
    assert b_events == [pw.Request(3, 0, BLOCK), pw.Cancel(3, 0, BLOCK)]
    assert a_events == [pw.RejectRequest(3, 0, BLOCK)]
    assert pair.a.requests_outstanding == []


def test_reject_for_a_request_never_made_ends_the_connection() -> None:
    pair = _est()
    with pytest.raises(RemoteProtocolError, match="never requested"):
        pair.a.receive_data(pw.encode(pw.RejectRequest(1, 0, BLOCK)), 0.0)


def test_request_flood_is_rejected_and_counted() -> None:
    pair = _est(b_kw={"reqq": 5})
    pair.b.unchoke()
    pair.pump()
    pair.b.data_to_send()
    flood = b"".join(pw.encode(pw.Request(i % PIECES, (i // PIECES) * BLOCK, BLOCK))
                     for i in range(40))
    events = pair.b.receive_data(flood, 0.0)
    assert len(events) == 5 and len(pair.b.peer_requests) == 5
    assert pair.b.counters["requests_over_queue"] == 35
    rejects = _messages(pair.b.data_to_send())
    assert len(rejects) == 35 and all(isinstance(m, pw.RejectRequest) for m in rejects)
    dup = pair.b.receive_data(pw.encode(pw.Request(0, 0, BLOCK)), 0.0)
    assert dup == [] and pair.b.counters["duplicate_requests"] == 1


def test_requests_while_choked() -> None:
    pair = _est()
    assert pair.b.receive_data(pw.encode(pw.Request(0, 0, BLOCK)), 0.0) == []
    assert pair.b.counters["requests_while_choked"] == 1
    assert _messages(pair.b.data_to_send()) == [pw.RejectRequest(0, 0, BLOCK)]
    slow = _est({"fast": False}, {"fast": False})
    assert slow.b.receive_data(pw.encode(pw.Request(0, 0, BLOCK)), 0.0) == []
    assert slow.b.data_to_send() == b""  # dropped silently without BEP 6


@pytest.mark.parametrize(
    "msg",
    [
        pw.Request(0, 0, BLOCK + 1),  # BEP 3: close on requests over 16 KiB
        pw.Request(0, 0, 0),
        pw.Request(PIECES, 0, BLOCK),  # outside the torrent
        pw.Have(PIECES),
        pw.AllowedFast(PIECES),
        pw.Piece(0, 0, b"unasked"),  # BEP 6: MUST close
        pw.Bitfield(b"\xff"),  # a second availability message
    ],
)
def test_rule_breakers_end_the_connection(msg: pw.Message) -> None:
    pair = _est()
    pair.b.unchoke()
    pair.pump()
    with pytest.raises(RemoteProtocolError):
        pair.a.receive_data(pw.encode(msg), 0.0)


def test_bitfield_is_checked_against_the_piece_count() -> None:
    pair = Pair(config(b"a"), config(b"b", fast=False), piece_count=10)
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    with pytest.raises(RemoteProtocolError, match="spare"):
        pair.a.receive_data(pw.encode(pw.Bitfield(b"\xff\x01")), 0.0)


def test_bitfield_after_have_is_refused() -> None:
    pair = Pair(config(b"a"), config(b"b", fast=False))
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    pair.a.receive_data(pw.encode(pw.Have(1)), 0.0)
    with pytest.raises(RemoteProtocolError, match="after a have"):
        pair.a.receive_data(pw.encode(pw.Bitfield(b"\xff")), 0.0)


@pytest.mark.parametrize(
    "msg", [pw.HaveAll(), pw.HaveNone(), pw.SuggestPiece(1), pw.AllowedFast(1),
            pw.RejectRequest(0, 0, 1)],
)
def test_fast_messages_without_fast_end_the_connection(msg: pw.Message) -> None:
    pair = _est({"fast": False}, {"fast": True})
    with pytest.raises(RemoteProtocolError, match="fast"):
        pair.a.receive_data(pw.encode(msg), 0.0)


def test_extended_without_bep10_ends_the_connection() -> None:
    pair = _est({"extension_protocol": False})
    with pytest.raises(RemoteProtocolError, match="BEP 10"):
        pair.a.receive_data(pw.encode(pw.Extended(0, b"de")), 0.0)


def test_allowed_fast_set_is_bounded() -> None:
    from peerlab.proto.peer import MAX_ALLOWED_FAST

    pair = Pair(piece_count=1000)
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    data = b"".join(pw.encode(pw.AllowedFast(i)) for i in range(MAX_ALLOWED_FAST + 30))
    pair.a.receive_data(data, 0.0)
    assert len(pair.a.peer_allowed_fast) == MAX_ALLOWED_FAST
    assert pair.a.counters["allowed_fast_ignored"] == 30


# ------------------------------------------------------------------ time


def test_keepalive_idle_and_deadlines() -> None:
    pair = _est()
    a = pair.a
    assert a.next_deadline() == 60.0  # keep-alive after 60 s without sending
    assert a.handle_timeout(59.0) == [] and a.data_to_send() == b""
    a.handle_timeout(60.0)
    assert a.data_to_send() == b"\x00\x00\x00\x00"
    assert a.next_deadline() == 120.0
    a.receive_data(b"\x00\x00\x00\x00", 100.0)  # a keep-alive from the peer
    assert a.counters["keepalives_received"] == 1
    a.handle_timeout(120.0)
    a.handle_timeout(180.0)
    assert a.next_deadline() == 240.0
    a.handle_timeout(240.0)
    assert a.next_deadline() == 280.0  # idle: 180 s after the last byte at 100
    with pytest.raises(RemoteProtocolError, match="silent"):
        a.handle_timeout(280.0)


def test_handshake_timeout() -> None:
    a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 5.0)
    assert a.next_deadline() == 35.0
    assert a.handle_timeout(34.0) == []
    with pytest.raises(RemoteProtocolError, match="handshake"):
        a.handle_timeout(35.0)


def test_eof() -> None:
    pair = _est()
    assert pair.a.receive_eof(1.0) == [ConnectionClosed()]
    assert pair.a.state is ConnectionState.CLOSED
    assert pair.a.next_deadline() is None
    assert pair.a.receive_data(pw.encode(pw.Choke()), 2.0) == []


# ------------------------------------------------------------------ whole sessions


def _session_bytes() -> bytes:
    """What a seed (b) sends to a in a short session, as bytes."""
    hs = pw.encode_handshake(pw.Handshake(INFO_HASH, config(b"b").peer_id,
                                          pw.reserved_bytes(extension_protocol=True, fast=True)))
    ext = pw.encode(pw.Extended(0, pw.encode_extended_handshake(
        pw.ExtendedHandshake(m={"ut_metadata": 1, "ut_pex": 2}, reqq=250))))
    return b"".join([
        hs,
        pw.encode(pw.HaveAll()),
        ext,
        pw.encode(pw.AllowedFast(2)),
        pw.encode(pw.Unchoke()),
        pw.encode(pw.Extended(2, pw.encode_pex(pw.PeerExchange(
            (pw.PexPeer(("10.1.2.3", 6881)),))))),
        pw.encode(pw.Extended(1, pw.encode_metadata_message(pw.MetadataReject(0)))),
        pw.encode(pw.Piece(2, 0, b"q" * BLOCK)),
    ])


def test_session_whole_and_byte_by_byte_give_the_same_events() -> None:
    stream = _session_bytes()

    whole_a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 0.0, piece_count=PIECES)
    cut = len(stream) - len(pw.encode(pw.Piece(2, 0, b"q" * BLOCK)))
    events = whole_a.receive_data(stream[:cut], 0.0)
    whole_a.request(2, 0, BLOCK)
    events += whole_a.receive_data(stream[cut:], 0.0)

    byte_a = PeerConnection.outgoing(config(b"a"), INFO_HASH, 0.0, piece_count=PIECES)
    byte_events: list[object] = []
    for i in range(len(stream)):
        if i == cut:
            byte_a.request(2, 0, BLOCK)
        byte_events += byte_a.receive_data(stream[i : i + 1], 0.0)
    assert byte_events == events
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "Handshake", "HaveAll", "ExtendedHandshake", "AllowedFast", "Unchoke",
        "PeerExchange", "MetadataReject", "Piece",
    ]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=15), st.booleans())
def test_any_message_sequence_raises_only_remote_protocol_error(
    msgs: list[pw.Message], fast: bool
) -> None:
    pair = Pair(config(b"a", fast=fast), config(b"b", fast=fast))
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    try:
        for msg in msgs:
            pair.a.receive_data(pw.encode(msg), 1.0)
    except RemoteProtocolError:
        return
    pair.a.data_to_send()


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_garbage_after_the_handshake_raises_only_remote_protocol_error(data: bytes) -> None:
    pair = Pair()
    pair.b.receive_data(pair.a.data_to_send(), 0.0)
    pair.a.receive_data(pair.b.data_to_send(), 0.0)
    try:
        pair.a.receive_data(data, 1.0)
    except RemoteProtocolError:
        pass


@settings(max_examples=200)
@given(st.binary(max_size=120))
def test_garbage_handshakes_raise_only_remote_protocol_error(data: bytes) -> None:
    b = PeerConnection.incoming(config(b"b"), lambda h: 4, 0.0)
    try:
        b.receive_data(data, 0.0)
    except RemoteProtocolError:
        pass


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        config(b"a", reqq=0)
    with pytest.raises(ValueError):
        config(b"a", extensions={"ut_metadata": 1, "ut_pex": 1})
    with pytest.raises(ValueError):
        config(b"a", extensions={"ut_metadata": 0})


def test_port_message_and_unknown_ids_are_events() -> None:
    pair = _est({"dht": True}, {"dht": True})
    raw = pw.encode(pw.Port(6881)) + struct.pack(">IB", 3, 99) + b"ab"
    assert pair.a.receive_data(raw, 0.0) == [pw.Port(6881), pw.Unknown(99, b"ab")]
    assert pair.a.counters["unknown_messages"] == 1
