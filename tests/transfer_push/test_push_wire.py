"""The GIV line (RFC-Gnutella 0.6 draft 2.2.8) and the mesh headers
(gtk-gnutella doc/gnutella/x-alt, HUGE alternate locations): byte vectors,
byte-by-byte feeding, garbage raising only RemoteProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.overlays.transfer.push import (
    MAX_ALT_PARSE,
    MAX_GIV_BYTES,
    Giv,
    GivReader,
    encode_giv,
    format_x_alt,
    parse_alternate_location,
    parse_giv,
    parse_x_alt,
    usable_address,
)
from peerlab.wire.urn import sha1_urn

GUID = bytes.fromhex("0123456789abcdef00ff112233445566")


def test_giv_bytes_on_the_wire() -> None:
    giv = Giv(5, GUID, "Little Toot (1948).mp3")
    assert encode_giv(giv) == (
        b"GIV 5:0123456789ABCDEF00FF112233445566/Little%20Toot%20%281948%29.mp3\n\n"
    )
    assert parse_giv(encode_giv(giv)[:-2]) == giv
    assert encode_giv(Giv(0, GUID, "")) == b"GIV 0:0123456789ABCDEF00FF112233445566/\n\n"
    # A name with a slash or non-ASCII stays one ASCII line.
    line = encode_giv(Giv(1, GUID, "a/b ü.ogg"))
    assert line.isascii() and line.count(b"/") == 1
    assert parse_giv(line[:-2]).name == "a/b ü.ogg"
    # Names the file system could not decode go out as their bytes.
    assert encode_giv(Giv(1, GUID, "x\udcff")).endswith(b"/x%FF\n\n")
    assert encode_giv(Giv(1, GUID, "x\ud800")).endswith(b"/x%3F\n\n")


def test_giv_lenient_where_servents_differ() -> None:
    # Lower-case hex, a raw name, CR LF line ends, no name at all.
    assert parse_giv(b"GIV 7:0123456789abcdef00ff112233445566/raw name.mp3") == Giv(
        7, GUID, "raw name.mp3"
    )
    assert parse_giv(b"GIV 7:0123456789ABCDEF00FF112233445566") == Giv(7, GUID, "")
    reader = GivReader()
    assert reader.feed(b"GIV 3:0123456789ABCDEF00FF112233445566/x\r\n\r\n") == (
        Giv(3, GUID, "x"),
        b"",
    )


def test_giv_reader_byte_by_byte_and_whole() -> None:
    wire = encode_giv(Giv(42, GUID, "song.mp3")) + b"after"
    whole = GivReader().feed(wire)
    assert whole == (Giv(42, GUID, "song.mp3"), b"after")
    reader = GivReader()
    got = None
    for i in range(len(wire)):
        got = reader.feed(wire[i : i + 1])
        if got is not None:
            break
    assert got == (Giv(42, GUID, "song.mp3"), b"")  # stops at the blank line


@pytest.mark.parametrize(
    "wire",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GIV x:0123456789ABCDEF00FF112233445566/a\n\n",
        b"GIV 1:0123456789ABCDEF00FF11223344556/a\n\n",  # 31 hex digits
        b"GIV 1:0123456789ABCDEF00FF1122334455667/a\n\n",  # 33
        b"GIV 1:0123456789ABCDEFGHFF112233445566/a\n\n",
        b"GIV 99999999999:0123456789ABCDEF00FF112233445566/a\n\n",
        b"GIV 4294967296:0123456789ABCDEF00FF112233445566/a\n\n",
        b"GIV 1;0123456789ABCDEF00FF112233445566/a\n\n",
        b"GIV 1:0123456789ABCDEF00FF112233445566/a\nsecond line\n\n",
        b"GIV \xff\xfe:\x00\n\n",
    ],
)
def test_giv_garbage_is_a_remote_error(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        GivReader().feed(wire)


def test_giv_without_end_is_bounded() -> None:
    reader = GivReader()
    assert reader.feed(b"GIV 1:0123456789ABCDEF00FF112233445566/") is None
    with pytest.raises(RemoteProtocolError):
        for _ in range(MAX_GIV_BYTES // 100 + 2):
            reader.feed(b"a" * 100)


def test_giv_we_refuse_to_write() -> None:
    with pytest.raises(LocalProtocolError):
        encode_giv(Giv(1, b"short", "a"))
    with pytest.raises(LocalProtocolError):
        encode_giv(Giv(1 << 32, GUID, "a"))
    with pytest.raises(LocalProtocolError):
        encode_giv(Giv(1, GUID, "x" * MAX_GIV_BYTES))


@settings(deadline=None, max_examples=200)
@given(st.integers(0, 0xFFFFFFFF), st.binary(min_size=16, max_size=16), st.text(max_size=80))
def test_giv_round_trip(index: int, guid: bytes, name: str) -> None:
    wire = encode_giv(Giv(index, guid, name))
    name_out = name.encode("utf-8", errors="replace").decode("utf-8", errors="replace")
    assert GivReader().feed(wire) == (Giv(index, guid, name_out), b"")


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_giv_garbage_raises_only_remote_errors(data: bytes) -> None:
    try:
        GivReader().feed(data)
    except RemoteProtocolError:
        pass


def test_x_alt_spec_example() -> None:
    # doc/gnutella/x-alt: IP[:PORT] (6346 when absent), GUID;proxy;proxy push entries.
    value = (
        "1.2.3.4:6347, 5.6.7.8,ABCDEFGHIJKLMNOPQRSTUVWXYZ234567;9.9.9.9:1;8.8.8.8:2,"
        "tls=3C, 10.0.0.1:6348 ,1.2.3.4:6347"
    )
    assert parse_x_alt(value) == [("1.2.3.4", 6347), ("5.6.7.8", 6346), ("10.0.0.1", 6348)]
    assert format_x_alt([("1.2.3.4", 6347), ("5.6.7.8", 6346)]) == "1.2.3.4:6347,5.6.7.8:6346"
    assert parse_x_alt(format_x_alt([("1.2.3.4", 6347)])) == [("1.2.3.4", 6347)]


def test_x_alt_skips_what_nobody_listens_on() -> None:
    value = (
        "0.0.0.0:6346,1.2.3.4:0,1.2.3.4:70000,224.0.0.1:6346,255.255.255.255:1,"
        "300.1.1.1:5,[::1]:6346,host.example:6346,1.2.3,1.2.3.4:x,001.002.003.004:9"
    )
    assert parse_x_alt(value) == [("1.2.3.4", 9)]
    assert not usable_address("0.1.2.3", 1) and usable_address("127.0.0.1", 1)
    assert parse_x_alt(None) == [] and parse_x_alt("") == []


def test_x_alt_reads_a_bounded_number_of_entries() -> None:
    value = ",".join(f"10.0.{i // 250}.{i % 250 + 1}:6346" for i in range(1000))
    assert len(parse_x_alt(value)) == MAX_ALT_PARSE
    assert len(parse_x_alt(value, limit=3)) == 3


def test_legacy_alternate_location() -> None:
    ours = bytes(range(20))
    other = bytes(20)
    value = (
        f"http://1.2.3.4:6346/uri-res/N2R?{sha1_urn(ours)} 2002-04-30T08:30Z, "
        f"http://5.6.7.8:6349/uri-res/N2R?{sha1_urn(other)},"
        "http://9.9.9.9/get/4/song.mp3,"
        "ftp://1.1.1.1:21/x, http://not-an-ip:80/x, garbage"
    )
    assert parse_alternate_location(value, ours) == [("1.2.3.4", 6346), ("9.9.9.9", 80)]
    assert parse_alternate_location(value) == [
        ("1.2.3.4", 6346),
        ("5.6.7.8", 6349),
        ("9.9.9.9", 80),
    ]
