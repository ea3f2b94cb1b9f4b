"""GGEP blocks, the compact length field and COBS (peerlab.wire.ggep).

Vectors: the GGEP spec's "Boundary Cases" of the length encoding, the COBS
examples of Cheshire & Baker's paper (as the reference encoder produces
them), and blocks laid out by hand from the spec's "GGEP Block" tables.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.ggep import (
    GGEP,
    MAX_EXTENSIONS,
    MAX_INFLATED_BYTES,
    Extension,
    cobs_decode,
    cobs_encode,
    decode_block,
    decode_int,
    decode_length,
    encode_block,
    encode_int,
    encode_length,
    pack_ip_ports,
    unpack_ip_ports,
)

# GGEP spec, "Boundary Cases".
LENGTH_VECTORS = [
    (0, "40"),
    (63, "7f"),
    (64, "8140"),
    (4095, "bf7f"),
    (4096, "818040"),
    (262143, "bfbf7f"),
]


@pytest.mark.parametrize(("value", "wire"), LENGTH_VECTORS)
def test_length_encoding_boundary_cases(value: int, wire: str) -> None:
    assert encode_length(value).hex() == wire
    assert decode_length(bytes.fromhex(wire) + b"tail", 0) == (value, len(wire) // 2)


@pytest.mark.parametrize("bad", ["", "80", "8080", "808080", "c0", "00", "818181"])
def test_bad_length_fields(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_length(bytes.fromhex(bad), 0)


def test_length_out_of_range_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_length(262144)


def _seq(a: int, b: int) -> bytes:
    return bytes(range(a, b + 1))


# The COBS paper's examples (the vectors every COBS implementation quotes).
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (_seq(0x01, 0xFE), b"\xff" + _seq(0x01, 0xFE)),
    (b"\x00" + _seq(0x01, 0xFE), b"\x01\xff" + _seq(0x01, 0xFE)),
    (_seq(0x01, 0xFF), b"\xff" + _seq(0x01, 0xFE) + b"\x02\xff"),
    (_seq(0x02, 0xFF) + b"\x00", b"\xff" + _seq(0x02, 0xFF) + b"\x01\x01"),
    (_seq(0x03, 0xFF) + b"\x00\x01", b"\xfe" + _seq(0x03, 0xFF) + b"\x02\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS)
def test_cobs_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


def test_cobs_accepts_the_trailing_empty_block_other_encoders_write() -> None:
    assert cobs_decode(b"\xff" + _seq(0x01, 0xFE) + b"\x01") == _seq(0x01, 0xFE)


@pytest.mark.parametrize("bad", [b"\x00", b"\x03\x11", b"\x02\x00", b"\x05\x11\x00\x33\x44"])
def test_cobs_garbage(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        cobs_decode(bad)


@given(st.binary(max_size=2000))
def test_cobs_round_trip_never_emits_zero(data: bytes) -> None:
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


def test_block_laid_out_by_hand() -> None:
    # "GGEP Block": magic, then per extension flags | id | length | data.
    # BH: flags 0x02 (id length 2), length 0x40 (0).  DU: flags 0x82 (last,
    # id length 2), length 0x41 (1), data 0x2a.
    wire = bytes.fromhex("c3") + b"\x02BH\x40" + b"\x82DU\x41\x2a"
    block, end = decode_block(wire + b"rest")
    assert end == len(wire)
    assert block == GGEP.of(("BH", b""), ("DU", b"\x2a"))
    assert block.get("DU") == b"\x2a" and "BH" in block and block.get("XX") is None
    assert encode_block(block) == wire


def test_hash_extension_from_huge_in_ggep() -> None:
    digest = bytes(range(20))
    wire = b"\xc3\x81H\x55\x01" + digest  # flags: last | idlen 1; length 21
    block, _ = decode_block(wire)
    assert block.get("H") == b"\x01" + digest
    assert encode_block(block) == wire


def test_cobs_flagged_extension() -> None:
    data = b"\x00ab\x00"
    wire = b"\xc3" + bytes([0x80 | 0x40 | 3]) + b"ALT" + encode_length(5) + cobs_encode(data)
    assert cobs_encode(data) == b"\x01\x03ab\x01"
    block, _ = decode_block(wire)
    assert block.get("ALT") == data
    assert block.extensions[0].cobs
    assert encode_block(block) == wire


def test_avoid_nul_cobs_encodes_only_extensions_holding_nul() -> None:
    block = GGEP.of(("A", b"x\x00y"), ("B", b"plain"))
    wire = encode_block(block, avoid_nul=True)
    assert 0 not in wire
    decoded, _ = decode_block(wire)
    assert decoded == block
    assert decoded.extensions[0].cobs and not decoded.extensions[1].cobs
    assert 0 in encode_block(block)  # without the option NUL stays raw


def test_deflate_extension_zlib_and_raw() -> None:
    text = b"gtk-gnutella " * 40
    block = GGEP((Extension("XQ", text, deflate=True),))
    wire = encode_block(block)
    assert wire[1] & 0x20 and len(wire) < len(text)
    assert decode_block(wire)[0].get("XQ") == text
    # A raw RFC 1951 stream is accepted too.
    co = zlib.compressobj(wbits=-15)
    raw = co.compress(text) + co.flush()
    wire2 = b"\xc3" + bytes([0x80 | 0x20 | 2]) + b"XQ" + encode_length(len(raw)) + raw
    assert decode_block(wire2)[0].get("XQ") == text


def test_deflate_and_cobs_together() -> None:
    block = GGEP((Extension("Z", bytes(300), cobs=True, deflate=True),))
    wire = encode_block(block)
    assert wire[1] & 0x60 == 0x60 and 0 not in wire
    assert decode_block(wire)[0].get("Z") == bytes(300)


def test_zip_bomb_is_refused() -> None:
    bomb = zlib.compress(bytes(50 * 1024 * 1024), 9)
    assert len(bomb) < 262143
    wire = b"\xc3" + bytes([0x80 | 0x20 | 1]) + b"Z" + encode_length(len(bomb)) + bomb
    with pytest.raises(RemoteProtocolError, match="inflates beyond"):
        decode_block(wire)
    # Exactly at the bound is fine.
    ok = zlib.compress(bytes(MAX_INFLATED_BYTES))
    wire = b"\xc3" + bytes([0x80 | 0x20 | 1]) + b"Z" + encode_length(len(ok)) + ok
    assert decode_block(wire)[0].get("Z") == bytes(MAX_INFLATED_BYTES)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\xc2\x81H\x40",  # wrong magic
        b"\xc3",  # no extension
        b"\xc3\x80\x40",  # empty id
        b"\xc3\x91H\x40",  # reserved bit
        b"\xc3\x82H",  # id truncated
        b"\xc3\x82H\x00\x40",  # NUL in id
        b"\xc3\x81H\x45ab",  # data truncated
        b"\xc3\x01H\x40",  # no last-extension bit, block ends
        b"\xc3\xa1Z\x42xx",  # deflate flag on garbage
        b"\xc3\xc1Z\x42\x00x",  # COBS flag on data holding NUL
    ],
)
def test_block_garbage(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_block(bad)


def test_extension_count_is_bounded() -> None:
    many = b"\xc3" + b"\x01A\x40" * MAX_EXTENSIONS + b"\x81A\x40"
    with pytest.raises(RemoteProtocolError, match="more than"):
        decode_block(many)
    ok = b"\xc3" + b"\x01A\x40" * (MAX_EXTENSIONS - 1) + b"\x81A\x40"
    assert len(decode_block(ok)[0]) == MAX_EXTENSIONS


def test_bad_ids_are_our_bug() -> None:
    for bad in ("", "x" * 16, "a\x00", "\u20ac"):
        with pytest.raises(LocalProtocolError):
            Extension(bad)


def test_block_helpers() -> None:
    b = GGEP.of(("A", b"1"), ("B", b"2"), ("A", b"3"))
    assert b.get("A") == b"1" and b.ids == ("A", "B", "A") and len(b) == 3
    assert b.with_extension(Extension("A", b"9")).ids == ("B", "A")
    assert b.without("A") == GGEP.of(("B", b"2"))
    assert encode_block(GGEP()) == b""


def test_ints_and_ip_ports() -> None:
    assert encode_int(0) == b"\x00"
    assert encode_int(0x1234) == b"\x34\x12"
    assert decode_int(b"\x34\x12\x00") == 0x1234
    assert encode_int(2**64 - 1) == b"\xff" * 8
    with pytest.raises(RemoteProtocolError):
        decode_int(b"")
    with pytest.raises(RemoteProtocolError):
        decode_int(b"\x01" * 9)
    packed = pack_ip_ports([("1.2.3.4", 6346), ("255.0.0.1", 1)])
    assert packed == bytes([1, 2, 3, 4, 0xCA, 0x18, 255, 0, 0, 1, 1, 0])
    assert unpack_ip_ports(packed) == [("1.2.3.4", 6346), ("255.0.0.1", 1)]
    with pytest.raises(RemoteProtocolError):
        unpack_ip_ports(b"\x01" * 7)
    with pytest.raises(LocalProtocolError):
        pack_ip_ports([("1.2.3", 1)])


ids = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), min_size=1, max_size=15)
extensions = st.builds(
    Extension, ids, st.binary(max_size=600), cobs=st.booleans(), deflate=st.booleans()
)


@given(st.lists(extensions, min_size=1, max_size=8), st.booleans())
def test_block_round_trip(exts: list[Extension], avoid_nul: bool) -> None:
    block = GGEP(tuple(exts))
    wire = encode_block(block, avoid_nul=avoid_nul)
    if avoid_nul:
        assert 0 not in wire
    decoded, end = decode_block(wire + b"\x1cmore")
    assert decoded == block and end == len(wire)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    for blob in (data, b"\xc3" + data):
        try:
            decode_block(blob)
        except RemoteProtocolError:
            pass
    try:
        cobs_decode(data)
    except RemoteProtocolError:
        pass
