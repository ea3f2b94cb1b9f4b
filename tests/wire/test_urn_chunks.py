"""urn:sha1 (HUGE section 3) and chunk lists: vectors, round-trips, garbage."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerlab.errors import IntegrityError, RemoteProtocolError
from peerlab.wire.chunks import (
    DIGEST_SIZE,
    MIN_CHUNK_SIZE,
    TARGET_MAX_CHUNKS,
    ChunkList,
    chunk_size_for,
)
from peerlab.wire.urn import b32, parse_sha1_urn, sha1_urn, unb32

# SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d (FIPS 180-1, appendix A);
# its base32 form as HUGE writes it.
ABC_URN = "urn:sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE5"


def test_sha1_urn_vector() -> None:
    digest = hashlib.sha1(b"abc").digest()
    assert sha1_urn(digest) == ABC_URN
    assert parse_sha1_urn(ABC_URN) == digest
    assert parse_sha1_urn(ABC_URN.lower()) == digest
    assert parse_sha1_urn("URN:SHA1:" + ABC_URN[9:]) == digest
    assert parse_sha1_urn(ABC_URN[9:]) == digest


@pytest.mark.parametrize(
    "bad",
    ["", "urn:sha1:", "urn:sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE", "urn:sha1:" + "1" * 32,
     "urn:tree:tiger:" + "A" * 39, "urn:sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE5X"],
)
def test_bad_urns_raise_protocol_errors(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_sha1_urn(bad)


@given(st.binary(min_size=20, max_size=20))
def test_urn_round_trip(digest: bytes) -> None:
    assert parse_sha1_urn(sha1_urn(digest)) == digest


@given(st.binary(max_size=64))
def test_b32_round_trip(data: bytes) -> None:
    assert unb32(b32(data)) == data


def test_chunk_size_grows_to_bound_the_list() -> None:
    assert chunk_size_for(0) == MIN_CHUNK_SIZE
    assert chunk_size_for(1 << 30) == MIN_CHUNK_SIZE  # 4096 chunks
    big = 100 << 30
    size = chunk_size_for(big)
    assert -(-big // size) <= TARGET_MAX_CHUNKS
    assert -(-big // (size // 2)) > TARGET_MAX_CHUNKS


def test_chunk_list_digests_match_hashlib() -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: five chunks, short last
    cl = ChunkList.of_bytes(data)
    assert cl.count == 5
    for i in range(cl.count):
        off, length = cl.span(i)
        piece = data[off : off + length]
        assert cl.digest(i) == hashlib.sha256(piece).digest()
        assert cl.verify(i, piece)
    assert cl.span(4) == (4 * MIN_CHUNK_SIZE, 4)
    flipped = bytearray(data[:MIN_CHUNK_SIZE])
    flipped[1000] ^= 1
    assert not cl.verify(0, flipped)
    with pytest.raises(IntegrityError):
        cl.check(0, flipped)
    assert not cl.verify(4, b"tai")  # wrong length


def test_chunk_list_empty_and_boundary() -> None:
    assert ChunkList.of_bytes(b"").count == 0
    exact = ChunkList.of_bytes(b"x" * (2 * MIN_CHUNK_SIZE))
    assert exact.count == 2 and exact.span(1) == (MIN_CHUNK_SIZE, MIN_CHUNK_SIZE)


def test_chunk_list_wire_round_trip_and_root() -> None:
    cl = ChunkList.of_bytes(b"peerlab" * 100_000)
    wire = cl.encode()
    assert wire[:4] == b"PLCH" and wire[4] == 1
    assert len(wire) == 24 + DIGEST_SIZE * cl.count
    back = ChunkList.decode(wire, expect_size=cl.size)
    assert back == cl and back.root == cl.root == hashlib.sha256(wire).digest()
    with pytest.raises(RemoteProtocolError):
        ChunkList.decode(wire, expect_size=cl.size + 1)


def test_chunk_list_decoder_rejects_lies() -> None:
    cl = ChunkList.of_bytes(b"z" * 600_000)
    wire = bytearray(cl.encode())
    for mutate in (
        lambda w: w[:10],  # truncated header
        lambda w: w[:-1],  # truncated digests
        lambda w: w + b"\0",  # trailing garbage
        lambda w: b"XXXX" + w[4:],  # magic
        lambda w: w[:4] + b"\x02" + w[5:],  # version
        lambda w: w[:16] + (3 * 1024 * 1024 + 1).to_bytes(4, "big") + w[20:],  # not a power of 2
        lambda w: w[:20] + (99).to_bytes(4, "big") + w[24:],  # count disagrees with size
    ):
        with pytest.raises(RemoteProtocolError):
            ChunkList.decode(bytes(mutate(bytes(wire))))


@given(st.binary(max_size=300))
def test_chunk_list_garbage_raises_only_protocol_errors(data: bytes) -> None:
    try:
        ChunkList.decode(data)
    except RemoteProtocolError:
        pass
