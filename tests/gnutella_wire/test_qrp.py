"""The Query Routing Protocol (peerlab.wire.qrp).

Vectors: the hash unit tests of the QRP spec's Appendix A, and the complete
messages (23-byte header and payload) of its Appendix B, "Patch Message
Examples", in all five encodings.  One quirk of Appendix B: its text says
"qrp" hashes to 7 in the 8-entry table, but every byte sequence it shows puts
that entry in slot 6.  Appendix A's vectors (which our hash passes) settle
the hash; the Appendix B bytes are used as the codec vectors they are.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.qrp import (
    COMPRESSOR_NONE,
    COMPRESSOR_ZLIB,
    MAX_TABLE_LENGTH,
    ROUTE_TABLE_UPDATE,
    PatchTable,
    PresenceTable,
    QrpReceiver,
    QueryRouteTable,
    ResetTable,
    decode_route_table_update,
    encode_route_table_update,
    make_update,
    qrp_hash,
    split_keywords,
)

# Appendix A, "1. Basic hash tests" and "2. Case tests".
HASH_VECTORS = [
    ("", 13, 0),
    ("eb", 13, 6791),
    ("ebc", 13, 7082),
    ("ebck", 13, 6698),
    ("ebckl", 13, 3179),
    ("ebcklm", 13, 3235),
    ("ebcklme", 13, 6438),
    ("ebcklmen", 13, 1062),
    ("ebcklmenq", 13, 3527),
    ("", 16, 0),
    ("n", 16, 65003),
    ("nd", 16, 54193),
    ("ndf", 16, 4953),
    ("ndfl", 16, 58201),
    ("ndfla", 16, 34830),
    ("ndflal", 16, 36910),
    ("ndflale", 16, 34586),
    ("ndflalem", 16, 37658),
    ("ndflaleme", 16, 45559),
    ("ol2j34lj", 10, 318),
    ("asdfas23", 10, 503),
    ("9um3o34fd", 10, 758),
    ("a234d", 10, 281),
    ("a3f", 10, 767),
    ("3nja9", 10, 581),
    ("2459345938032343", 10, 146),
    ("7777a88a8a8a8", 10, 342),
    ("asdfjklkj3k", 10, 861),
    ("adfk32l", 10, 1011),
    ("zzzzzzzzzzz", 10, 944),
    ("3nja9", 10, 581),
    ("3NJA9", 10, 581),
    ("3nJa9", 10, 581),
]


@pytest.mark.parametrize(("word", "bits", "expected"), HASH_VECTORS)
def test_hash_vectors(word: str, bits: int, expected: int) -> None:
    assert qrp_hash(word, bits) == expected
    assert qrp_hash(word.encode(), bits) == expected


@given(st.text(max_size=40), st.integers(1, 24), st.integers(0, 8))
def test_hash_interpolates_between_table_sizes(word: str, bits: int, more: int) -> None:
    # Appendix A: k*hash(x,n) <= hash(x,kn) <= k*hash(x,n)+(k-1).
    assert qrp_hash(word, bits + more) >> more == qrp_hash(word, bits)


def _hex(text: str) -> bytes:
    return bytes(int(t, 16) for t in text.split())


# Appendix B: (header, payload) of each message, "|" marking the header's end.
EX_RESET = [
    "85 d9 76 4d bf 2 1d 9a ff 72 e7 21 c3 40 dd 0 30 1 0 6 0 0 0 | 0 8 0 0 0 7",
    "3f 7c 5a 8c 14 8a 38 22 ff bf 3b 76 5e 86 c6 0 30 1 0 6 0 0 0 | 0 8 0 0 0 7",
    "7e a1 67 2f 86 3b 9 8b ff a2 cd 26 88 4d 84 0 30 1 0 6 0 0 0 | 0 8 0 0 0 7",
    "71 9f 38 68 49 c0 96 45 ff 23 ae 12 2 cd b3 0 30 1 0 6 0 0 0 | 0 8 0 0 0 7",
    "2a c8 2f 10 90 1c a7 1e ff 14 6c 12 71 9f b7 0 30 1 0 6 0 0 0 | 0 8 0 0 0 7",
]
# Per example: the three updates (add "test", add "qrp", remove "test").
EX_PATCHES = [
    [  # Example 1: BITS=8, no splitting or compression
        [
            "a9 ab 9b 14 c1 1e 52 aa ff b4 b4 41 75 6d 29 0 30 1 0 d 0 0 0 | "
            "1 1 1 0 8 0 0 fa 0 0 0 0 0"
        ],
        [
            "d6 c4 b4 21 36 d0 ae 94 ff 56 7 e9 58 dd 72 0 30 1 0 d 0 0 0 | "
            "1 1 1 0 8 0 0 0 0 0 0 fa 0"
        ],
        [
            "3a e4 59 89 ae 3b 67 8a ff 96 95 66 e8 b2 b9 0 30 1 0 d 0 0 0 | "
            "1 1 1 0 8 0 0 6 0 0 0 0 0"
        ],
    ],
    [  # Example 2: BITS=4, no splitting or compression
        ["50 4a bb d7 c0 ea 68 68 ff ef 55 65 31 2f 39 0 30 1 0 9 0 0 0 | 1 1 1 0 4 0 a0 0 0"],
        ["5d 34 5b 67 f3 60 e 9c ff bc 26 79 5a 31 d2 0 30 1 0 9 0 0 0 | 1 1 1 0 4 0 0 0 a0"],
        ["f4 26 fa 2d b6 cc 23 7f ff ab 87 ef 6f 3a 93 0 30 1 0 9 0 0 0 | 1 1 1 0 4 0 60 0 0"],
    ],
    [  # Example 3: BITS=4, splitting, no compression
        [
            "a0 71 1 1f b1 e7 9e 63 ff f0 8a 60 c0 5a c 0 30 1 0 7 0 0 0 | 1 1 2 0 4 0 a0",
            "d 1b e6 71 eb 26 9c f ff 10 60 7f 31 72 41 0 30 1 0 7 0 0 0 | 1 2 2 0 4 0 0",
        ],
        [
            "c7 ed 3d ca 3e ab 1d 5e ff e8 d6 5 1b 71 f6 0 30 1 0 7 0 0 0 | 1 1 2 0 4 0 0",
            "10 28 ad 5c fb 37 ba 4e ff 6b 38 a0 e2 1d d4 0 30 1 0 7 0 0 0 | 1 2 2 0 4 0 a0",
        ],
        [
            "40 11 74 1d ff 85 b8 b3 ff 95 58 0 ee 6f de 0 30 1 0 7 0 0 0 | 1 1 2 0 4 0 60",
            "d8 6d f5 d1 38 a8 8 cf ff 20 c9 eb d2 f1 2b 0 30 1 0 7 0 0 0 | 1 2 2 0 4 0 0",
        ],
    ],
    [  # Example 4: BITS=4, no splitting, compression
        [
            "f1 a9 21 cf 47 75 9f 50 ff 8 f1 f3 57 d9 c3 0 30 1 0 11 0 0 0 | "
            "1 1 1 1 4 78 9c 63 58 c0 c0 0 0 1 e4 0 a1"
        ],
        [
            "fe 8 b5 ed a fb e7 88 ff d8 4d 6 af b 11 0 30 1 0 11 0 0 0 | "
            "1 1 1 1 4 78 9c 63 60 60 58 0 0 0 a4 0 a1"
        ],
        [
            "5a 23 fc 3d 27 d0 b1 17 ff b 92 c6 a2 af 1f 0 30 1 0 11 0 0 0 | "
            "1 1 1 1 4 78 9c 63 48 60 60 0 0 1 24 0 61"
        ],
    ],
    [  # Example 5: BITS=4, splitting and compression
        [
            "1f 6c dc 54 ac 1f 42 cc ff 31 99 15 a0 e0 36 0 30 1 0 f 0 0 0 | "
            "1 1 2 1 4 78 9c 63 58 c0 c0 0 0 1 e4",
            "c1 c0 1a 79 2e 32 6e 54 ff e7 8d 21 de 4 3c 0 30 1 0 7 0 0 0 | 1 2 2 1 4 0 a1",
        ],
        [
            "63 79 60 3 36 4f dd 86 ff a1 84 c4 dd d6 c7 0 30 1 0 f 0 0 0 | "
            "1 1 2 1 4 78 9c 63 60 60 58 0 0 0 a4",
            "6d 93 7 a0 73 14 1b 69 ff 62 66 ba 56 47 10 0 30 1 0 7 0 0 0 | 1 2 2 1 4 0 a1",
        ],
        [
            "70 da 77 93 a2 f6 53 39 ff 5f e7 fa 2c 1f c2 0 30 1 0 f 0 0 0 | "
            "1 1 2 1 4 78 9c 63 48 60 60 0 0 1 24",
            "7a 19 5c b6 54 ba bc ec ff 4e 3d c5 d1 2f a9 0 30 1 0 7 0 0 0 | 1 2 2 1 4 0 61",
        ],
    ],
]
# Encoding options of each example: (entry bits, compressor, chunk size).
EX_OPTIONS = [(8, 0, 100), (4, 0, 100), (4, 0, 2), (4, 1, 100), (4, 1, 10)]
# The tables after each update: slot 2 is "test", slot 6 the appendix's "qrp".
TABLES = [{2}, {2, 6}, {6}]


def split_message(text: str) -> tuple[bytes, bytes]:
    head, payload = text.split("|")
    return _hex(head), _hex(payload)


def check_header(header: bytes, payload: bytes) -> None:
    # Descriptor header: 16-byte GUID (a marked one: byte 8 is 0xff, the last
    # byte 0), function 0x30, TTL 1, hops 0, little-endian payload length.
    assert len(header) == 23 and header[8] == 0xFF and header[15] == 0
    assert header[16] == ROUTE_TABLE_UPDATE and header[17:19] == b"\x01\x00"
    assert int.from_bytes(header[19:23], "little") == len(payload)


def table_with(slots: set[int]) -> QueryRouteTable:
    t = QueryRouteTable(8, 7)
    for s in slots:
        t.entries[s] = 1
    return t


def test_appendix_b_reset_messages() -> None:
    for text in EX_RESET:
        header, payload = split_message(text)
        check_header(header, payload)
        msg = decode_route_table_update(payload)
        assert msg == ResetTable(8, 7)
        assert encode_route_table_update(msg) == payload


@pytest.mark.parametrize("example", range(5))
def test_appendix_b_patches_decode_apply_and_encode(example: int) -> None:
    bits, compressor, chunk = EX_OPTIONS[example]
    receiver = QrpReceiver()
    assert receiver.receive(decode_route_table_update(split_message(EX_RESET[example])[1])) is None
    assert receiver.table is None
    previous: QueryRouteTable | None = None
    for update, slots in zip(EX_PATCHES[example], TABLES, strict=True):
        payloads = []
        for text in update:
            header, payload = split_message(text)
            check_header(header, payload)
            payloads.append(payload)
        table = None
        for i, payload in enumerate(payloads):
            msg = decode_route_table_update(payload)
            assert isinstance(msg, PatchTable)
            assert (msg.seq_no, msg.seq_size, msg.entry_bits, msg.compressor) == (
                i + 1,
                len(payloads),
                bits,
                compressor,
            )
            assert encode_route_table_update(msg) == payload
            table = receiver.receive(msg)
            assert (table is None) == (i + 1 < len(payloads))
        assert table == table_with(slots) == receiver.table
        # Our encoder writes the very same messages.
        wanted = table_with(slots)
        ours = make_update(
            wanted, previous, entry_bits=bits, compressor=compressor, chunk_size=chunk
        )
        if previous is None:
            assert ours[0] == ResetTable(8, 7)
            ours = ours[1:]
        assert [encode_route_table_update(m) for m in ours] == payloads
        previous = wanted


def test_leaf_table_lookup_and_match() -> None:
    words = split_keywords("The_Big-Lebowski (1998) - Intro.MP3")
    assert words == ["the", "big", "lebowski", "1998", "intro", "mp3"]
    table = QueryRouteTable.from_keywords(words)
    assert table.contains("LEBOWSKI") and table.contains(b"intro")
    assert table.matches(split_keywords("big lebowski"))
    assert not table.matches(["lebowski", "zzzz-not-there-zzzz"])
    assert not table.matches([])
    assert table.present == len({qrp_hash(w, 16) for w in words})
    assert split_keywords("a bb ccc a", min_length=2) == ["bb", "ccc"]


def test_fill_ratio_flags_a_table_claiming_everything() -> None:
    full = QueryRouteTable(1024, 7, bytes([1]) * 1024)
    assert full.fill_ratio() == 1.0
    assert QueryRouteTable(1024).fill_ratio() == 0.0


def test_scaling_and_merging() -> None:
    small = QueryRouteTable(8, 7)
    small.entries[3] = 2
    big = small.scaled(32)
    assert [i for i, v in enumerate(big.entries) if v < 7] == [12, 13, 14, 15]
    back = big.scaled(8)
    assert back == small
    # Shrinking keeps the minimum of the overlapped entries.
    big.entries[0] = 1
    assert big.scaled(8).entries[0] == 1
    # A word keeps hitting its scaled slot (the hash's interpolation property).
    leaf = QueryRouteTable.from_keywords(["lebowski"], length=1 << 10)
    assert leaf.scaled(1 << 16).contains("lebowski") and leaf.scaled(1 << 8).contains("lebowski")
    merged = QueryRouteTable(1 << 12, 2)
    merged.merge(leaf)
    merged.merge(QueryRouteTable.from_keywords(["dude"], length=1 << 14, infinity=7))
    assert merged.contains("lebowski") and merged.contains("dude")
    assert set(merged.entries) == {1, 2}


def test_unchanged_table_needs_no_update_and_incremental_patch() -> None:
    a = QueryRouteTable.from_keywords(["abide"], length=64)
    assert make_update(a, a.copy()) == []
    b = a.copy()
    b.add("rug")
    msgs = make_update(b, a, compressor=COMPRESSOR_NONE)
    assert len(msgs) == 1 and isinstance(msgs[0], PatchTable)
    rx = QrpReceiver()
    for m in make_update(a):
        rx.receive(m)
    assert rx.receive(msgs[0]) == b and rx.updates == 2


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        QueryRouteTable(100)
    with pytest.raises(LocalProtocolError):
        QueryRouteTable(64, 0)
    t = QueryRouteTable(64, 20)
    t.entries[0] = 1
    with pytest.raises(LocalProtocolError, match="4 bits"):
        make_update(t, entry_bits=4)
    assert len(make_update(t, entry_bits=8)) == 2
    with pytest.raises(LocalProtocolError):
        make_update(t, entry_bits=5)
    with pytest.raises(LocalProtocolError):
        t.add("x", distance=20)
    with pytest.raises(LocalProtocolError, match="messages"):
        make_update(QueryRouteTable(1 << 12), compressor=COMPRESSOR_NONE, chunk_size=4)


def _patch(
    seq: int, size: int, data: bytes, bits: int = 8, comp: int = COMPRESSOR_NONE
) -> PatchTable:
    return PatchTable(seq, size, comp, bits, data)


@pytest.mark.parametrize(
    ("msgs", "match"),
    [
        ([_patch(1, 1, bytes(8))], "before any RESET"),
        ([ResetTable(12, 7)], "power of two"),
        ([ResetTable(4, 7)], "power of two"),
        ([ResetTable(MAX_TABLE_LENGTH * 2, 7)], "power of two"),
        ([ResetTable(8, 0)], "infinity"),
        ([ResetTable(8, 7), _patch(2, 2, bytes(4))], "starts at"),
        ([ResetTable(8, 7), _patch(1, 2, bytes(4)), _patch(3, 2, bytes(4))], "out of sequence"),
        ([ResetTable(8, 7), _patch(1, 2, bytes(4)), _patch(2, 3, bytes(4))], "out of sequence"),
        ([ResetTable(8, 7), _patch(1, 2, bytes(4)), _patch(2, 2, bytes(2), 4)], "out of sequence"),
        ([ResetTable(8, 7), _patch(1, 1, bytes(4), 5)], "entry bits"),
        ([ResetTable(8, 7), _patch(1, 1, bytes(8), 8, 2)], "compressor"),
        ([ResetTable(8, 7), _patch(1, 1, bytes(9))], "larger than the table"),
        ([ResetTable(8, 7), _patch(1, 1, bytes(7))], "the table needs"),
        ([ResetTable(8, 7), _patch(1, 1, b"not zlib", 8, 1)], "zlib"),
        ([ResetTable(8, 7), _patch(1, 1, zlib.compress(bytes(8))[:-3], 8, 1)], "the table needs"),
    ],
)
def test_receiver_refuses_broken_exchanges(msgs: list, match: str) -> None:
    rx = QrpReceiver()
    with pytest.raises(RemoteProtocolError, match=match):
        for m in msgs:
            rx.receive(m)


def test_receiver_bounds_table_length() -> None:
    rx = QrpReceiver(max_table_length=1 << 16)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        rx.receive(ResetTable(1 << 17, 7))


def test_patch_zip_bomb_is_refused() -> None:
    rx = QrpReceiver()
    rx.receive(ResetTable(1 << 16, 7))
    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)
    chunks = [bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]
    with pytest.raises(RemoteProtocolError, match="larger than the table"):
        for n, c in enumerate(chunks, 1):
            rx.receive(PatchTable(n, len(chunks), COMPRESSOR_ZLIB, 8, c))


def test_patch_values_are_clamped() -> None:
    rx = QrpReceiver()
    rx.receive(ResetTable(8, 7))
    # +100 above infinity and -100 below zero are clamped, not trusted.
    table = rx.receive(_patch(1, 1, bytes([100, 156, 0, 0, 0, 0, 0, 0])))
    assert table is not None and list(table.entries[:2]) == [7, 0]


def test_decode_structure() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_route_table_update(b"")
    with pytest.raises(RemoteProtocolError):
        decode_route_table_update(b"\x00\x08\x00\x00\x00")
    with pytest.raises(RemoteProtocolError):
        decode_route_table_update(b"\x01\x01\x01\x00")
    with pytest.raises(RemoteProtocolError, match="variant"):
        decode_route_table_update(b"\x02")


@st.composite
def tables(draw: st.DrawFn) -> QueryRouteTable:
    bits = draw(st.integers(3, 10))
    inf = draw(st.sampled_from([2, 3, 7, 8, 15, 16, 40]))
    length = 1 << bits
    present = draw(
        st.dictionaries(st.integers(0, length - 1), st.integers(1, inf - 1), max_size=40)
    )
    t = QueryRouteTable(length, inf)
    for slot, dist in present.items():
        t.entries[slot] = dist
    return t


@settings(max_examples=60, deadline=None)
@given(tables(), st.sampled_from([4, 8]), st.booleans(), st.integers(1, 64), st.data())
def test_update_round_trip(
    table: QueryRouteTable, bits: int, compress: bool, chunk: int, data: st.DataObject
) -> None:
    comp = COMPRESSOR_ZLIB if compress else COMPRESSOR_NONE
    bits = 8 if table.infinity > 8 else bits
    chunk = max(chunk, table.length // 250 + 1)  # a sequence holds 255 messages at most
    rx = QrpReceiver()
    got = None
    for msg in make_update(table, entry_bits=bits, compressor=comp, chunk_size=chunk):
        got = rx.receive(decode_route_table_update(encode_route_table_update(msg)))
    assert got == table
    # Then an incremental update to another table of the same shape.
    nxt = table.copy()
    for slot in data.draw(st.lists(st.integers(0, table.length - 1), max_size=10)):
        nxt.entries[slot] = nxt.infinity if nxt.entries[slot] < nxt.infinity else 1
    for msg in make_update(nxt, table, entry_bits=bits, compressor=comp, chunk_size=chunk):
        got = rx.receive(decode_route_table_update(encode_route_table_update(msg)))
    assert got == nxt == rx.table


@given(st.lists(st.binary(max_size=40), max_size=6), st.booleans())
def test_arbitrary_payloads_raise_only_remote_protocol_error(
    payloads: list[bytes], presence_only: bool
) -> None:
    rx = QrpReceiver(presence_only=presence_only)
    for p in payloads:
        try:
            rx.receive(decode_route_table_update(p))
        except RemoteProtocolError:
            pass


def reference_patch(entries: bytes, patch: bytes, bits: int, inf: int) -> bytes:
    if bits == 8:
        deltas = [b - 256 if b > 127 else b for b in patch]
    else:
        deltas = [n - 16 if n > 7 else n for b in patch for n in (b >> 4, b & 0xF)]
    return bytes(max(0, min(inf, v + d)) for v, d in zip(entries, deltas, strict=True))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([1, 2, 7, 8, 15, 16, 100]), st.sampled_from([4, 8]), st.data())
def test_patch_arithmetic_matches_the_spec_model(inf: int, bits: int, data: st.DataObject) -> None:
    # "adds it to the route table": entry + signed patch entry, here clamped
    # to [0, infinity]; checked on arbitrary start tables and patch bytes.
    length = 64
    start = data.draw(st.binary(min_size=length, max_size=length))
    start = bytes(min(b, inf) for b in start)
    patch = data.draw(st.binary(min_size=length * bits // 8, max_size=length * bits // 8))
    rx = QrpReceiver()
    rx.receive(ResetTable(length, inf))
    first = make_update(QueryRouteTable(length, inf, start), entry_bits=8)[1:]
    for m in first:
        rx.receive(m)
    assert rx.table == QueryRouteTable(length, inf, start)
    got = rx.receive(PatchTable(1, 1, COMPRESSOR_NONE, bits, patch))
    assert got is not None and bytes(got.entries) == reference_patch(start, patch, bits, inf)


def reference_presence(present: bytes, patch: bytes, bits: int) -> bytes:
    """LimeWire's rule, one entry at a time: a negative patch entry makes the
    entry present, a positive one absent, zero leaves it."""
    if bits == 8:
        deltas = [b - 256 if b > 127 else b for b in patch]
    else:
        deltas = [n - 16 if n > 7 else n for b in patch for n in (b >> 4, b & 0xF)]
    return bytes(1 if d < 0 else 0 if d > 0 else p for p, d in zip(present, deltas, strict=True))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([2, 7, 15]), st.sampled_from([4, 8]), st.integers(1, 40), st.data())
def test_presence_receiver_follows_the_signs_of_the_patch(
    inf: int, bits: int, chunk: int, data: st.DataObject
) -> None:
    # Patches cut at arbitrary entries (odd chunk sizes, uncompressed) so the
    # bit packing meets runs that start and end inside a bitmap byte.
    length = 128
    start = data.draw(st.binary(min_size=length, max_size=length).map(
        lambda b: bytes(v & 1 for v in b)))  # fmt: skip
    patch = data.draw(st.binary(min_size=length * bits // 8, max_size=length * bits // 8))
    rx = QrpReceiver(presence_only=True)
    rx.receive(ResetTable(length, inf))
    table = QueryRouteTable(length, inf, bytes(1 if p else inf for p in start))
    for m in make_update(table, entry_bits=8)[1:]:
        rx.receive(m)
    assert isinstance(rx.table, PresenceTable) and rx.table.presence() == start
    pieces = [patch[i : i + chunk] for i in range(0, len(patch), chunk)]
    got = None
    for n, piece in enumerate(pieces, 1):
        got = rx.receive(PatchTable(n, len(pieces), COMPRESSOR_NONE, bits, piece))
    assert got is not None and got.presence() == reference_presence(start, patch, bits)
    assert got.present == sum(got.presence())


@settings(max_examples=40, deadline=None)
@given(tables(), st.sampled_from([4, 8]), st.data())
def test_presence_receiver_agrees_with_distances_on_what_servents_send(
    table: QueryRouteTable, bits: int, data: st.DataObject
) -> None:
    # make_update's tables, and any next table of distances 1 / infinity
    # (what a leaf sends): the bitmap claims exactly the keywords the
    # distance table does, and looks up the same.
    bits = 8 if table.infinity > 8 else bits
    chunk = table.length // 250 + 1
    exact, presence = QrpReceiver(), QrpReceiver(presence_only=True)
    nxt = QueryRouteTable(table.length, table.infinity, table.presence().translate(
        bytes((table.infinity, 1)) + bytes(254)))  # fmt: skip
    for slot in data.draw(st.lists(st.integers(0, table.length - 1), max_size=10)):
        nxt.entries[slot] = nxt.infinity if nxt.entries[slot] < nxt.infinity else 1
    for target, prev in ((table, None), (nxt, table)):
        for msg in make_update(target, prev, entry_bits=bits, chunk_size=chunk):
            wire = decode_route_table_update(encode_route_table_update(msg))
            a, b = exact.receive(wire), presence.receive(wire)
        assert a is not None and b is not None
        assert b.presence() == a.presence() == target.presence()
        assert b.present == target.present
    words = [f"w{i}" for i in range(50)]
    assert [b.contains(w) for w in words] == [nxt.contains(w) for w in words]


def test_presence_table_round_trips_to_distances_and_merges() -> None:
    t = PresenceTable(1 << 6)
    t.apply_patch(0, bytes([0xA0, 0x0A, 0x00, 0x60]), 4)  # entries 0 and 3 set, 6 cleared
    assert t.presence()[:8] == bytes([1, 0, 0, 1, 0, 0, 0, 0]) and t.present == 2
    assert t.to_table().entries[:4] == bytes([1, 7, 7, 1])
    assert t.scaled(1 << 5).entries[:2] == bytes([1, 1])  # min over each pair
    assert t.copy() == t and t.copy() is not t
    with pytest.raises(LocalProtocolError):
        t.apply_patch(63, bytes([0xAA]), 4)  # two entries from 63: past the end


@st.composite
def presence_tables(draw: st.DrawFn, length: int, inf: int) -> PresenceTable:
    t = PresenceTable(length, inf)
    for slot in draw(st.lists(st.integers(0, length - 1), max_size=length)):
        t.apply_patch(slot & ~1, bytes([0xA0 if slot % 2 == 0 else 0x0A]), 4)
    return t


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 12), st.sampled_from([2, 3, 7, 8]), st.data())
def test_presence_tables_update_exactly_as_their_distances_do(
    bits: int, inf: int, data: st.DataObject
) -> None:
    # make_update patches presence tables from their bitmaps; the messages
    # must be the very bytes the same tables as distances give.
    length = 1 << bits
    old = data.draw(presence_tables(length, inf))
    new = data.draw(presence_tables(length, inf))
    for prev in (None, old):
        got = make_update(new, prev)
        want = make_update(new.to_table(), prev.to_table() if prev is not None else None)
        assert [encode_route_table_update(m) for m in got] == [
            encode_route_table_update(m) for m in want
        ]
    assert (make_update(new, old) == []) == (new == old)
