"""Strict bencode (BEP 3 "bencoding"): the spec's vectors, every non-canonical
form refused, the bounds, the info spans, round-trips and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.bencode import (
    INTEGER_MAX,
    INTEGER_MIN,
    MAX_DEPTH,
    BencodeLimits,
    Raw,
    Value,
    decode,
    decode_prefix,
    decode_with_spans,
    encode,
)

# BEP 3's own examples, both directions.
BEP3_VECTORS: list[tuple[bytes, Value]] = [
    (b"4:spam", b"spam"),
    (b"0:", b""),
    (b"i3e", 3),
    (b"i-3e", -3),
    (b"i0e", 0),
    (b"l4:spam4:eggse", [b"spam", b"eggs"]),
    (b"le", []),
    (b"d3:cow3:moo4:spam4:eggse", {b"cow": b"moo", b"spam": b"eggs"}),
    (b"d4:spaml1:a1:bee", {b"spam": [b"a", b"b"]}),
    (b"d9:publisher3:bob17:publisher-webpage15:www.example.com18:publisher.location4:homee",
     {b"publisher": b"bob", b"publisher-webpage": b"www.example.com",
      b"publisher.location": b"home"}),
    (b"de", {}),
]


@pytest.mark.parametrize(("data", "value"), BEP3_VECTORS)
def test_bep3_vectors(data: bytes, value: Value) -> None:
    assert decode(data) == value
    assert encode(value) == data


@pytest.mark.parametrize(("data", "value"), BEP3_VECTORS)
def test_bep3_vectors_from_bytearray_and_memoryview(data: bytes, value: Value) -> None:
    assert decode(bytearray(data)) == value
    assert decode(memoryview(data)) == value


def test_encode_accepts_str_tuples_and_str_keys_and_sorts_as_raw_bytes() -> None:
    # "sorted as raw strings, not alphanumerics": 'Z' (0x5a) before 'a' (0x61).
    assert encode({"a": 1, "Z": (b"x", "é")}) == b"d1:Zl1:x2:\xc3\xa9e1:ai1ee"
    assert encode({b"b": 1, b"a": 2}) == b"d1:ai2e1:bi1ee"
    assert encode(bytearray(b"ab")) == b"2:ab"
    assert encode(Raw(b"d1:ai1ee")) == b"d1:ai1ee"
    assert encode({"info": Raw(b"i7e")}) == b"d4:infoi7ee"


@pytest.mark.parametrize(
    "data",
    [
        b"i03e",  # leading zero
        b"i-0e",  # minus zero
        b"i00e",
        b"i-03e",
        b"ie",  # no digits
        b"i-e",
        b"i+3e",  # a sign BEP 3 does not have
        b"i 3e",
        b"i3 e",
        b"i1_000e",  # int() would take it
        b"i3.0e",
        b"i3",  # unterminated
        b"i9223372036854775808e",  # 2**63: outside int64
        b"i-9223372036854775809e",
        b"i12345678901234567890123e",
        b"04:spam",  # length with a leading zero
        b"00:",
        b"-1:a",
        b"4spam",  # no colon
        b"4:spa",  # short
        b" 4:spam",
        b"l",  # unterminated list
        b"l4:spam",
        b"d",
        b"d3:cow3:moo",
        b"d3:cowe",  # key without a value
        b"di1ei2ee",  # integer key
        b"dle1:ae",  # list key
        b"d4:spam4:eggs3:cow3:mooe",  # keys out of order
        b"d3:cow3:moo3:cow3:mooe",  # repeated key
        b"d1:b0:1:a0:e",
        b"e",
        b"",
        b"x",
        b"i3ei4e",  # two values
        b"4:spamx",  # trailing garbage
        b"lee",
    ],
)
def test_non_canonical_and_broken_forms_are_refused(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(data)


def test_integer_range_edges() -> None:
    assert decode(b"i9223372036854775807e") == INTEGER_MAX
    assert decode(b"i-9223372036854775808e") == INTEGER_MIN
    assert encode(INTEGER_MAX) == b"i9223372036854775807e"
    with pytest.raises(LocalProtocolError):
        encode(INTEGER_MAX + 1)
    with pytest.raises(LocalProtocolError):
        encode(INTEGER_MIN - 1)


def test_error_names_the_offset() -> None:
    with pytest.raises(RemoteProtocolError, match="offset 13"):
        decode(b"d4:spam4:eggs3:cow3:mooe")
    with pytest.raises(RemoteProtocolError, match="repeated"):
        decode(b"d3:cow3:moo3:cow3:mooe")


@pytest.mark.parametrize(
    "value",
    [True, 1.5, None, {1: 2}, {"a": 1, b"a": 2}, object(), {b"k": {b"x": 3.0}}],
)
def test_encoding_what_bencode_cannot_say_is_our_bug(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode(value)  # type: ignore[arg-type]


def test_nesting_bound() -> None:
    ok = b"l" * MAX_DEPTH + b"e" * MAX_DEPTH
    assert encode(decode(ok)) == ok
    too_deep = b"l" * (MAX_DEPTH + 1) + b"e" * (MAX_DEPTH + 1)
    with pytest.raises(RemoteProtocolError, match="deeper"):
        decode(too_deep)
    nested: list[object] = []
    for _ in range(MAX_DEPTH):
        nested = [nested]
    with pytest.raises(LocalProtocolError):
        encode(nested)  # type: ignore[arg-type]
    dicts = b"d1:a" * (MAX_DEPTH + 1) + b"i0e" + b"e" * (MAX_DEPTH + 1)
    with pytest.raises(RemoteProtocolError, match="deeper"):
        decode(dicts)


def test_custom_limits() -> None:
    limits = BencodeLimits(max_depth=2, max_string_length=4, max_list_length=3, max_tokens=6)
    assert decode(b"ll4:spamee", limits) == [[b"spam"]]
    with pytest.raises(RemoteProtocolError, match="deeper"):
        decode(b"llleee", limits)
    with pytest.raises(RemoteProtocolError, match="string of 5 bytes"):
        decode(b"5:spams", limits)
    with pytest.raises(RemoteProtocolError, match="list of more than 3"):
        decode(b"li1ei2ei3ei4ee", limits)
    wide = BencodeLimits(max_list_length=3)
    assert decode(b"d1:ai1e1:bi1e1:ci1ee", wide) == {b"a": 1, b"b": 1, b"c": 1}
    with pytest.raises(RemoteProtocolError, match="dictionary of more than 3"):
        decode(b"d1:ai1e1:bi1e1:ci1e1:di1ee", wide)
    few = BencodeLimits(max_tokens=6)
    assert decode(b"l" + b"le" * 5 + b"e", few) == [[]] * 5
    with pytest.raises(RemoteProtocolError, match="more than 6 values"):
        decode(b"l" + b"le" * 6 + b"e", few)


def test_a_huge_declared_length_costs_nothing() -> None:
    with pytest.raises(RemoteProtocolError):
        decode(b"999999999999:x")
    with pytest.raises(RemoteProtocolError, match="runs past the end"):
        decode(b"1000:x")


def test_decode_prefix_leaves_the_rest() -> None:
    # BEP 9 data message: a dictionary, then the raw piece of metadata.
    data = b"d8:msg_typei1e5:piecei0ee" + b"\x00RAW"
    value, end = decode_prefix(data)
    assert value == {b"msg_type": 1, b"piece": 0}
    assert data[end:] == b"\x00RAW"
    value, end = decode_prefix(b"xxi42eyy", 2)
    assert (value, end) == (42, 6)


def test_spans_give_the_original_bytes_of_each_value() -> None:
    data = b"d8:announce3:url4:infod6:lengthi5e4:name1:xe5:otherli1eee"
    decoded = decode_with_spans(data)
    assert decoded.raw(b"info") == b"d6:lengthi5e4:name1:xe"
    assert decoded.raw(b"announce") == b"3:url"
    assert decoded.raw(b"other") == b"li1ee"
    assert decoded.value[b"info"] == {b"length": 5, b"name": b"x"}
    assert set(decoded.spans) == {b"announce", b"info", b"other"}
    with pytest.raises(RemoteProtocolError):
        decode_with_spans(b"li1ee")
    with pytest.raises(RemoteProtocolError):
        decode_with_spans(b"d1:ai1eextra")


def test_hundred_thousand_pieces_decode() -> None:
    pieces = bytes(range(256)) * (100_000 * 20 // 256) + b"\x01" * (100_000 * 20 % 256)
    torrent = encode({"announce": "http://t/a", "info": {
        "length": 100_000 * 262144, "name": "big", "piece length": 262144, "pieces": pieces}})
    decoded = decode_with_spans(torrent)
    info = decoded.value[b"info"]
    assert isinstance(info, dict) and info[b"pieces"] == pieces
    assert encode(decoded.value) == torrent


# ------------------------------------------------------------------ properties

keys = st.binary(max_size=12)
values: st.SearchStrategy[Value] = st.recursive(
    st.integers(min_value=INTEGER_MIN, max_value=INTEGER_MAX) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children,
                                                                       max_size=6),
    max_leaves=40,
)


@settings(deadline=None)
@given(values)
def test_round_trip(value: Value) -> None:
    data = encode(value)
    assert decode(data) == value
    assert decode_prefix(data + b"tail") == (value, len(data))


@settings(deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_spans_cover_exactly_each_value(value: dict[bytes, Value]) -> None:
    data = encode(value)
    decoded = decode_with_spans(data)
    assert decoded.value == value
    for key, item in value.items():
        assert decoded.raw(key) == encode(item)


def _decode_or_refuse(data: bytes) -> None:
    try:
        value = decode(data)
    except RemoteProtocolError:
        return
    # Strictness: anything accepted has exactly this one encoding.
    assert encode(value) == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    _decode_or_refuse(data)


@settings(max_examples=500, deadline=None)
@given(st.lists(
    st.sampled_from([b"i", b"e", b"l", b"d", b"0", b"1", b"3", b"-", b":", b"a", b"4:spam"]),
    max_size=24).map(b"".join))
def test_bencode_shaped_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    _decode_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_mutated_encodings_raise_only_remote_protocol_error(value: Value, data: st.DataObject
                                                            ) -> None:
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(raw)))
        if op == "flip" and pos < len(raw):
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
    _decode_or_refuse(bytes(raw))
