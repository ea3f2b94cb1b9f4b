"""Peer wire codec: byte vectors from the BEP texts, round-trips, byte-by-byte
feeding, bounds, and "garbage raises only RemoteProtocolError".

Vectors: BEP 3 "peer protocol" message layouts, BEP 5 "port", BEP 6 message
layouts and its allowed-fast example sets, BEP 10's example handshake, BEP 9's
example messages.
"""

from __future__ import annotations

import struct

import pytest
from btwirekit import (
    extended_handshakes,
    feed_bytewise,
    messages,
    metadata_messages,
    pex_messages,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire import bencode
from peerlab.wire import peer as pw

INFO_HASH = bytes.fromhex("aa" * 20)
PEER_ID = b"-PL0100-abcdefghijkl"


# ------------------------------------------------------------------ handshake


def test_handshake_bytes_bep3() -> None:
    # BEP 3: "the character nineteen (decimal) followed by the string
    # 'BitTorrent protocol'", eight reserved bytes, info_hash, peer_id.
    h = pw.Handshake(INFO_HASH, PEER_ID)
    data = pw.encode_handshake(h)
    assert data == b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + PEER_ID
    assert len(data) == pw.HANDSHAKE_LENGTH == 68
    assert pw.decode_handshake(data) == h
    assert pw.decode_handshake_prefix(data[:48]) == (bytes(8), INFO_HASH)


def test_reserved_bits_bep10_bep6_bep5() -> None:
    # BEP 10: reserved_byte[5] & 0x10; BEP 6: reserved[7] |= 0x04;
    # BEP 5: the last bit of the reserved bytes (reserved[7] |= 0x01).
    assert pw.reserved_bytes(extension_protocol=True) == bytes([0, 0, 0, 0, 0, 0x10, 0, 0])
    assert pw.reserved_bytes(fast=True) == bytes([0, 0, 0, 0, 0, 0, 0, 0x04])
    assert pw.reserved_bytes(dht=True) == bytes([0, 0, 0, 0, 0, 0, 0, 0x01])
    both = pw.reserved_bytes(extension_protocol=True, fast=True, dht=True)
    assert both == bytes.fromhex("0000000000100005")
    h = pw.decode_handshake(pw.encode_handshake(pw.Handshake(INFO_HASH, PEER_ID, both)))
    assert h.extension_protocol and h.fast and h.dht
    plain = pw.Handshake(INFO_HASH, PEER_ID)
    assert not (plain.extension_protocol or plain.fast or plain.dht)


@pytest.mark.parametrize(
    "data",
    [
        b"\x12BitTorrent protoco" + bytes(48),
        b"\x13BitTorrent Protocol" + bytes(48),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(41),
        bytes(68),
    ],
)
def test_foreign_handshakes_are_refused(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        pw.decode_handshake(data)


def test_handshake_length_is_checked() -> None:
    good = pw.encode_handshake(pw.Handshake(INFO_HASH, PEER_ID))
    with pytest.raises(RemoteProtocolError):
        pw.decode_handshake(good[:67])
    with pytest.raises(RemoteProtocolError):
        pw.decode_handshake_prefix(good[:47])
    with pytest.raises(LocalProtocolError):
        pw.encode_handshake(pw.Handshake(INFO_HASH[:19], PEER_ID))


# ------------------------------------------------------------------ BEP 3 / 5 / 6 vectors

VECTORS: list[tuple[pw.Message, bytes]] = [
    # BEP 3: "keep-alives, which are a length prefix of zero"
    (pw.KeepAlive(), b"\x00\x00\x00\x00"),
    # BEP 3: "'choke', 'unchoke', 'interested', and 'not interested' have no payload"
    (pw.Choke(), b"\x00\x00\x00\x01\x00"),
    (pw.Unchoke(), b"\x00\x00\x00\x01\x01"),
    (pw.Interested(), b"\x00\x00\x00\x01\x02"),
    (pw.NotInterested(), b"\x00\x00\x00\x01\x03"),
    # BEP 3 "have": a single number, the index
    (pw.Have(0x01020304), b"\x00\x00\x00\x05\x04\x01\x02\x03\x04"),
    # BEP 3 "bitfield": high bit of the first byte is index 0
    (pw.Bitfield(b"\xa0"), b"\x00\x00\x00\x02\x05\xa0"),
    # BEP 3 "request": index, begin, length
    (pw.Request(1, 0x4000, 0x4000), b"\x00\x00\x00\x0d\x06" + struct.pack(">III", 1, 16384, 16384)),
    # BEP 3 "piece": index, begin, piece
    (pw.Piece(2, 16, b"abc"), b"\x00\x00\x00\x0c\x07\x00\x00\x00\x02\x00\x00\x00\x10abc"),
    # BEP 3 "cancel": the same payload as request
    (pw.Cancel(1, 0x4000, 0x4000), b"\x00\x00\x00\x0d\x08" + struct.pack(">III", 1, 16384, 16384)),
    # BEP 5 "port": <len=0003><id=9><listen-port>
    (pw.Port(6881), b"\x00\x00\x00\x03\x09\x1a\xe1"),
    # BEP 6: Suggest Piece <len=0x0005><op=0x0D><index>
    (pw.SuggestPiece(7), b"\x00\x00\x00\x05\x0d\x00\x00\x00\x07"),
    # BEP 6: Have All <len=0x0001><op=0x0E>, Have None <len=0x0001><op=0x0F>
    (pw.HaveAll(), b"\x00\x00\x00\x01\x0e"),
    (pw.HaveNone(), b"\x00\x00\x00\x01\x0f"),
    # BEP 6: Reject Request <len=0x000D><op=0x10><index><offset><length>
    (pw.RejectRequest(3, 0, 16384), b"\x00\x00\x00\x0d\x10" + struct.pack(">III", 3, 0, 16384)),
    # BEP 6: Allowed Fast <len=0x0005><op=0x11><index>
    (pw.AllowedFast(1059), b"\x00\x00\x00\x05\x11\x00\x00\x04\x23"),
    # BEP 10: <len><id=20><extended id><payload>
    (pw.Extended(0, b"de"), b"\x00\x00\x00\x04\x14\x00de"),
    (pw.Unknown(21, b"xyz"), b"\x00\x00\x00\x04\x15xyz"),
]


@pytest.mark.parametrize(("msg", "data"), VECTORS, ids=[type(m).__name__ for m, _ in VECTORS])
def test_message_vectors(msg: pw.Message, data: bytes) -> None:
    assert pw.encode(msg) == data
    assert pw.MessageDecoder().feed(data) == [msg]
    assert feed_bytewise(pw.MessageDecoder(), data) == [msg]
    assert pw.decode_message(data[4:]) == msg


def test_whole_vector_stream_whole_and_bytewise() -> None:
    stream = b"".join(d for _, d in VECTORS)
    want = [m for m, _ in VECTORS]
    assert pw.MessageDecoder().feed(stream) == want
    decoder = pw.MessageDecoder()
    assert feed_bytewise(decoder, stream) == want
    assert decoder.buffered == 0
    decoder.check_eof()


def test_message_ids_match_the_beps() -> None:
    assert [int(m) for m in pw.MessageId] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20]
    assert pw.Piece.MESSAGE_ID == 7 and pw.AllowedFast.MESSAGE_ID == 0x11


def test_piece_block_is_a_view_of_the_fed_bytes() -> None:
    block = bytes(range(256)) * 64  # 16 KiB
    data = pw.encode(pw.Piece(5, 32768, block)) * 3
    msgs = pw.MessageDecoder().feed(data)
    assert len(msgs) == 3
    for msg in msgs:
        assert isinstance(msg, pw.Piece)
        assert isinstance(msg.block, memoryview)
        assert msg.block.obj is data  # no copy: a view into what was fed
        assert msg.block.readonly
        assert msg.block == block


def test_piece_split_across_feeds_is_assembled_once() -> None:
    block = b"\x5a" * pw.BLOCK_SIZE
    data = pw.encode(pw.Piece(1, 0, block)) + pw.encode(pw.Have(3))
    decoder = pw.MessageDecoder()
    assert decoder.feed(data[:1000]) == []
    assert decoder.buffered == 1000
    msgs = decoder.feed(data[1000:])
    assert msgs == [pw.Piece(1, 0, block), pw.Have(3)]
    piece = msgs[0]
    assert isinstance(piece, pw.Piece) and isinstance(piece.block, memoryview)
    assert hash(piece.block) == hash(block)  # read-only, so hashable
    assert decoder.buffered == 0


def test_partial_id_names_the_message_coming_in() -> None:
    data = pw.encode(pw.Have(3)) + pw.encode(pw.Piece(1, 0, b"\x5a" * 100))
    decoder = pw.MessageDecoder()
    assert decoder.partial_id is None
    decoder.feed(data[:4])  # a length, no id yet
    assert decoder.partial_id is None
    decoder.feed(data[4:9])  # the whole HAVE
    assert decoder.partial_id is None and decoder.buffered == 0
    decoder.feed(data[9:13])
    assert decoder.partial_id is None
    decoder.feed(data[13:14])  # the PIECE's id byte
    assert decoder.partial_id == pw.MessageId.PIECE
    decoder.feed(data[14:60])
    assert decoder.partial_id == pw.MessageId.PIECE
    assert decoder.feed(data[60:]) == [pw.Piece(1, 0, b"\x5a" * 100)]
    assert decoder.partial_id is None


def test_decoder_accepts_bytearray_and_memoryview_input() -> None:
    data = bytearray(pw.encode(pw.Piece(0, 0, b"xyz")))
    msgs = pw.MessageDecoder().feed(memoryview(data))
    data[-1] = 0  # the caller may reuse its buffer: messages hold a copy
    assert msgs == [pw.Piece(0, 0, b"xyz")]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=12), st.lists(st.integers(1, 40), max_size=30))
def test_round_trip_any_split(msgs: list[pw.Message], cuts: list[int]) -> None:
    stream = b"".join(pw.encode(m) for m in msgs)
    decoder = pw.MessageDecoder()
    out: list[pw.Message] = []
    pos = 0
    for cut in cuts:
        out += decoder.feed(stream[pos : pos + cut])
        pos += cut
    out += decoder.feed(stream[pos:])
    assert out == msgs
    assert decoder.buffered == 0


@given(messages)
def test_round_trip_decode_message(msg: pw.Message) -> None:
    assert pw.decode_message(pw.encode(msg)[4:]) == msg


# ------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    ("length", "mid"),
    [
        (2, pw.MessageId.CHOKE),  # fixed-size messages must be exactly their size
        (4, pw.MessageId.HAVE),
        (14, pw.MessageId.REQUEST),
        (12, pw.MessageId.CANCEL),
        (2, pw.MessageId.PORT),
        (2, pw.MessageId.HAVE_ALL),
        (1, pw.MessageId.PIECE),
        (9 + pw.MAX_BLOCK_LENGTH + 1, pw.MessageId.PIECE),
        (2 + pw.MAX_BITFIELD_LENGTH, pw.MessageId.BITFIELD),
        (1, pw.MessageId.BITFIELD),
        (1, pw.MessageId.EXTENDED),
        (2 + pw.MAX_EXTENDED_PAYLOAD, pw.MessageId.EXTENDED),
        (2 + pw.MAX_UNKNOWN_PAYLOAD, 99),
        (0xFFFFFFFF, pw.MessageId.PIECE),
    ],
)
def test_lengths_outside_the_bounds_of_the_id_are_refused_at_once(length: int, mid: int) -> None:
    header = struct.pack(">IB", length, mid)
    with pytest.raises(RemoteProtocolError):
        pw.MessageDecoder().feed(header)  # nothing else needed: refused before buffering
    decoder = pw.MessageDecoder()
    with pytest.raises(RemoteProtocolError):
        feed_bytewise(decoder, header)
    assert decoder.buffered == 0
    with pytest.raises(RemoteProtocolError):  # poisoned: the framing is lost
        decoder.feed(pw.encode(pw.Choke()))


def test_largest_allowed_messages_decode() -> None:
    big: list[pw.Message] = [
        pw.Piece(0, 0, b"\x01" * pw.MAX_BLOCK_LENGTH),
        pw.Bitfield(b"\xff" * pw.MAX_BITFIELD_LENGTH),
        pw.Extended(3, b"\x02" * (pw.MAX_EXTENDED_PAYLOAD - 1)),
    ]
    stream = b"".join(pw.encode(m) for m in big)
    assert pw.MessageDecoder().feed(stream) == big
    assert max(len(pw.encode(m)) - 4 for m in big) == pw.MAX_MESSAGE_LENGTH


def test_eof_inside_a_message_raises() -> None:
    decoder = pw.MessageDecoder()
    decoder.feed(pw.encode(pw.Have(1))[:6])
    with pytest.raises(RemoteProtocolError):
        decoder.check_eof()


def test_encoding_what_the_wire_cannot_carry_is_our_error() -> None:
    bad: list[pw.Message] = [
        pw.Have(-1),
        pw.Have(1 << 32),
        pw.Request(0, 0, 1 << 32),
        pw.Piece(0, 0, b"x" * (pw.MAX_BLOCK_LENGTH + 1)),
        pw.Port(70000),
        pw.Extended(256, b""),
        pw.Bitfield(b""),
    ]
    for msg in bad:
        with pytest.raises(LocalProtocolError):
            pw.encode(msg)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        pw.MessageDecoder().feed(data)
    except RemoteProtocolError:
        pass
    try:
        feed_bytewise(pw.MessageDecoder(), data)
    except RemoteProtocolError:
        pass
    for fn in (
        pw.decode_message,
        pw.decode_extended_handshake,
        pw.decode_metadata_message,
        pw.decode_pex,
    ):
        try:
            fn(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=60), st.integers(0, 255))
def test_garbage_after_a_valid_header_raises_only_remote_protocol_error(
    body: bytes, mid: int
) -> None:
    data = struct.pack(">IB", len(body) + 1, mid) + body
    try:
        pw.MessageDecoder().feed(data)
    except RemoteProtocolError:
        pass


# ------------------------------------------------------------------ bitfields


def test_bitfield_helpers() -> None:
    bf = pw.bitfield_from_pieces([0, 2, 9], 10)
    assert bf == b"\xa0\x40"
    assert pw.pieces_in_bitfield(bf, 10) == [0, 2, 9]
    with pytest.raises(RemoteProtocolError):
        pw.check_bitfield(b"\xa0\x40\x00", 10)  # wrong size
    with pytest.raises(RemoteProtocolError):
        pw.check_bitfield(b"\xa0\x60", 10)  # spare bit set (BEP 3)
    with pytest.raises(LocalProtocolError):
        pw.bitfield_from_pieces([10], 10)


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_bitfield_round_trip(case: tuple[int, set[int]]) -> None:
    count, pieces = case
    assert pw.pieces_in_bitfield(pw.bitfield_from_pieces(pieces, count), count) == sorted(pieces)


# ------------------------------------------------------------------ BEP 6 allowed fast


def test_allowed_fast_set_bep6_vectors() -> None:
    # BEP 6 "Allowed Fast", the example results: torrent of 1313 pieces,
    # info-hash aaaa...aa, node at 80.4.4.200.
    assert pw.allowed_fast_set(INFO_HASH, "80.4.4.200", 1313, 7) == [
        1059, 431, 808, 1217, 287, 376, 1188,
    ]
    assert pw.allowed_fast_set(INFO_HASH, "80.4.4.200", 1313, 9) == [
        1059, 431, 808, 1217, 287, 376, 1188, 353, 508,
    ]


def test_allowed_fast_set_depends_on_the_slash_24_only() -> None:
    a = pw.allowed_fast_set(INFO_HASH, "80.4.4.1", 1313)
    assert a == pw.allowed_fast_set(INFO_HASH, "80.4.4.254", 1313)
    assert a != pw.allowed_fast_set(INFO_HASH, "80.4.5.1", 1313)
    assert len(a) == pw.ALLOWED_FAST_SET_SIZE == len(set(a))


def test_allowed_fast_set_is_capped_by_the_piece_count() -> None:
    assert sorted(pw.allowed_fast_set(INFO_HASH, "10.0.0.1", 3, 10)) == [0, 1, 2]
    with pytest.raises(LocalProtocolError):
        pw.allowed_fast_set(INFO_HASH, "::1", 100)


# ------------------------------------------------------------------ BEP 10


# BEP 10's example handshake, encoded.  The text prints "6:µT_PEX", but "µ" is
# two bytes in UTF-8, so the name's length is 7: corrected here.
BEP10_EXAMPLE = b"d1:md11:LT_metadatai1e7:\xc2\xb5T_PEXi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e"


def test_extended_handshake_bep10_example() -> None:
    h = pw.decode_extended_handshake(BEP10_EXAMPLE)
    assert h == pw.ExtendedHandshake(
        m={"LT_metadata": 1, "µT_PEX": 2}, p=6881, v="µTorrent 1.2"
    )
    assert pw.encode_extended_handshake(h) == BEP10_EXAMPLE


def test_extended_handshake_all_keys() -> None:
    h = pw.ExtendedHandshake(
        m={"ut_metadata": 3, "ut_pex": 1}, p=51413, v="peerlab", reqq=250,
        metadata_size=31235, yourip="192.0.2.7",
    )
    payload = pw.encode_extended_handshake(h)
    assert payload == (
        b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi51413e"
        b"4:reqqi250e1:v7:peerlab6:yourip4:\xc0\x00\x02\x07e"
    )
    assert pw.decode_extended_handshake(payload) == h
    v6 = pw.ExtendedHandshake(yourip="2001:db8::1")
    assert pw.decode_extended_handshake(pw.encode_extended_handshake(v6)) == v6


def test_extended_handshake_disabling_entry_and_odd_values() -> None:
    # BEP 10: "d11:LT_metadatai0ee" inside m turns LT_metadata off.
    assert pw.decode_extended_handshake(b"d1:md11:LT_metadatai0eee").m == {"LT_metadata": 0}
    # Keys of the wrong type are ignored (BEP 10: ignore what you do not know).
    odd = bencode.encode({"m": {}, "p": b"x", "reqq": -5, "v": 7, "yourip": b"abc"})
    assert pw.decode_extended_handshake(odd) == pw.ExtendedHandshake()


@pytest.mark.parametrize(
    "payload",
    [
        b"le",  # not a dictionary
        b"d1:mi1ee",  # m not a dictionary
        b"d1:md3:fooi256eee",  # id is not a byte
        b"d1:md3:foo3:baree",  # id is not an integer
        b"d1:m",  # cut short
        b"d1:md3:fooi1eee" + b"x",  # trailing bytes
    ],
)
def test_bad_extended_handshakes(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        pw.decode_extended_handshake(payload)


@given(extended_handshakes)
def test_extended_handshake_round_trip(h: pw.ExtendedHandshake) -> None:
    assert pw.decode_extended_handshake(pw.encode_extended_handshake(h)) == h


# ------------------------------------------------------------------ BEP 9


def test_ut_metadata_bep9_examples() -> None:
    # BEP 9 "request": {'msg_type': 0, 'piece': 0}
    assert pw.encode_metadata_message(pw.MetadataRequest(0)) == b"d8:msg_typei0e5:piecei0ee"
    # BEP 9 "reject": {'msg_type': 2, 'piece': 0}
    assert pw.encode_metadata_message(pw.MetadataReject(0)) == b"d8:msg_typei2e5:piecei0ee"
    # BEP 9 "data": d8:msg_typei1e5:piecei0e10:total_sizei34256eexxxxxxxx...
    piece = b"x" * pw.METADATA_PIECE_SIZE
    data = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee" + piece
    msg = pw.decode_metadata_message(data)
    assert msg == pw.MetadataData(0, 34256, piece)
    assert isinstance(msg, pw.MetadataData) and isinstance(msg.data, memoryview)
    assert pw.encode_metadata_message(pw.MetadataData(0, 34256, piece)) == data
    assert pw.decode_metadata_message(b"d8:msg_typei0e5:piecei0ee") == pw.MetadataRequest(0)
    assert pw.decode_metadata_message(b"d8:msg_typei2e5:piecei0ee") == pw.MetadataReject(0)


def test_ut_metadata_last_piece_and_unknown_type() -> None:
    total = 2 * pw.METADATA_PIECE_SIZE + 100
    assert pw.metadata_piece_count(total) == 3
    assert pw.metadata_piece_length(2, total) == 100
    last = pw.MetadataData(2, total, b"z" * 100)
    assert pw.decode_metadata_message(pw.encode_metadata_message(last)) == last
    # BEP 9: "unrecognized message types should be ignored"
    assert pw.decode_metadata_message(b"d8:msg_typei7e5:piecei0ee") is None


@pytest.mark.parametrize(
    "payload",
    [
        b"d8:msg_typei1e5:piecei0e10:total_sizei100ee" + b"x" * 99,  # piece too short
        b"d8:msg_typei1e5:piecei0e10:total_sizei100ee" + b"x" * 101,  # too long
        b"d8:msg_typei1e5:piecei1e10:total_sizei100ee",  # piece beyond the size
        b"d8:msg_typei1e5:piecei0e10:total_sizei0ee",  # empty metadata
        b"d8:msg_typei1e5:piecei0e10:total_sizei999999999999ee",  # absurd size
        b"d8:msg_typei1e5:piecei0ee" + b"x",  # data without total_size
        b"d8:msg_typei0e5:piecei-1ee",  # negative piece
        b"d8:msg_typei0ee",  # no piece
        b"d8:msg_typei0e5:piecei0eeX",  # trailing bytes after a request
        b"i5e",  # not a dictionary
    ],
)
def test_bad_ut_metadata_messages(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        pw.decode_metadata_message(payload)


@given(metadata_messages())
def test_ut_metadata_round_trip(msg: pw.MetadataMessage) -> None:
    assert pw.decode_metadata_message(pw.encode_metadata_message(msg)) == msg


# ------------------------------------------------------------------ BEP 11


def test_ut_pex_layout() -> None:
    msg = pw.PeerExchange(
        added=(
            pw.PexPeer(("192.0.2.1", 6881), pw.PexFlags.SEED | pw.PexFlags.REACHABLE),
            pw.PexPeer(("2001:db8::2", 51413), pw.PexFlags.SUPPORTS_UTP),
        ),
        dropped=(("198.51.100.3", 80),),
    )
    payload = pw.encode_pex(msg)
    d = bencode.decode(payload)
    assert isinstance(d, dict)
    # BEP 11: compact IPv4 (4 + 2 bytes) and IPv6 (16 + 2), flags one byte each
    assert d[b"added"] == bytes([192, 0, 2, 1]) + b"\x1a\xe1"
    assert d[b"added.f"] == b"\x12"
    assert d[b"added6"] == bytes.fromhex("20010db8000000000000000000000002") + b"\xc8\xd5"
    assert d[b"added6.f"] == b"\x04"
    assert d[b"dropped"] == bytes([198, 51, 100, 3]) + b"\x00\x50"
    assert b"dropped6" not in d
    assert pw.decode_pex(payload) == msg


def test_ut_pex_flags_are_optional() -> None:
    payload = bencode.encode({"added": bytes([10, 0, 0, 1, 0, 80])})
    assert pw.decode_pex(payload) == pw.PeerExchange(added=(pw.PexPeer(("10.0.0.1", 80)),))


@pytest.mark.parametrize(
    "fields",
    [
        {"added": b"\x01\x02\x03\x04\x05"},  # not a multiple of 6
        {"added6": b"\x00" * 17},
        {"added": b"\x01" * 6, "added.f": b"\x00\x00"},  # flags do not match
        {"dropped": 5},
        {"added": b"\x01" * 6 * (pw.MAX_PEX_PEERS + 1)},  # over the bound
    ],
)
def test_bad_ut_pex(fields: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError):
        pw.decode_pex(bencode.encode(fields))  # type: ignore[arg-type]


@given(pex_messages)
def test_ut_pex_round_trip(msg: pw.PeerExchange) -> None:
    back = pw.decode_pex(pw.encode_pex(msg))
    # IPv4 peers travel before IPv6 ones; order within each family is kept.
    def key(a: tuple[str, int]) -> bool:
        return ":" in a[0]

    assert back.added == tuple(sorted(msg.added, key=lambda p: key(p.address)))
    assert back.dropped == tuple(sorted(msg.dropped, key=key))
