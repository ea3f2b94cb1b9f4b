"""peerlab.wire.tracker: vectors from BEP 3/15/23/48 (and the BitTorrent
specification's escaping example), hypothesis round-trips, and garbage that
raises only RemoteProtocolError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire import bencode
from peerlab.wire.tracker import (
    UDP_PROTOCOL_ID,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    Peer,
    ScrapeRequest,
    ScrapeResponse,
    ScrapeStats,
    TrackerFailure,
    UdpAnnounceRequest,
    UdpAnnounceResponse,
    UdpError,
    UdpScrapeRequest,
    UdpScrapeResponse,
    decode_announce_response,
    decode_compact_peers,
    decode_compact_peers6,
    decode_scrape_response,
    decode_udp_request,
    decode_udp_response,
    encode_announce_query,
    encode_announce_response,
    encode_compact_peers,
    encode_compact_peers6,
    encode_failure,
    encode_scrape_query,
    encode_scrape_response,
    encode_udp,
    parse_announce_query,
    parse_scrape_query,
    scrape_url,
)

IH = bytes(range(1, 21))
PID = b"-PL0001-abcdefghijkl"
#: The BitTorrent specification's example of escaping a binary info_hash.
SPEC_HASH = bytes.fromhex("123456789abcdef123456789abcdef123456789a")
SPEC_ESCAPED = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"


# ------------------------------------------------------------- compact peers


def test_compact_peers_bep23_layout() -> None:
    peers = [Peer("10.10.10.5", 128), Peer("192.168.1.1", 6881)]
    data = encode_compact_peers(peers)
    assert data == bytes([10, 10, 10, 5, 0, 128, 192, 168, 1, 1, 0x1A, 0xE1])
    assert decode_compact_peers(data) == tuple(peers)


def test_compact_peers6_bep7_layout() -> None:
    data = encode_compact_peers6([Peer("2001:db8::1", 51413)])
    assert data == bytes.fromhex("20010db8000000000000000000000001") + b"\xc8\xd5"
    assert decode_compact_peers6(data) == (Peer("2001:db8::1", 51413),)


@pytest.mark.parametrize("n", [1, 5, 7, 13])
def test_compact_peers_bad_length(n: int) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_compact_peers(b"\x01" * n)
    with pytest.raises(RemoteProtocolError):
        decode_compact_peers6(b"\x01" * (n + 12))


def test_compact_refuses_wrong_family() -> None:
    with pytest.raises(LocalProtocolError):
        encode_compact_peers([Peer("::1", 1)])
    with pytest.raises(LocalProtocolError):
        encode_compact_peers6([Peer("127.0.0.1", 1)])


# ------------------------------------------------------------- HTTP announce


def libtorrent_query() -> str:
    """An announce as libtorrent 2.x sends it, its own extra fields included."""
    return (
        f"info_hash={SPEC_ESCAPED}&peer_id=-LT2110-%7e%28N%28.WHFV6tF&port=39243"
        "&uploaded=0&downloaded=0&left=300000&corrupt=0&key=6C4D21A3&event=started"
        "&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0"
    )


def test_parse_libtorrent_announce() -> None:
    req = parse_announce_query(libtorrent_query())
    assert req == AnnounceRequest(
        info_hash=SPEC_HASH,
        peer_id=b"-LT2110-~(N(.WHFV6tF",
        port=39243,
        uploaded=0,
        downloaded=0,
        left=300000,
        event=AnnounceEvent.STARTED,
        compact=True,
        no_peer_id=True,
        numwant=200,
        key="6C4D21A3",
    )


def test_encode_announce_query_escapes_as_the_spec_shows() -> None:
    req = AnnounceRequest(SPEC_HASH, PID, 6881, 1, 2, 3, AnnounceEvent.COMPLETED, compact=True)
    q = encode_announce_query(req)
    assert q.startswith(f"info_hash={SPEC_ESCAPED}&peer_id=-PL0001-abcdefghijkl&port=6881")
    assert "&uploaded=1&downloaded=2&left=3&event=completed&compact=1" in q
    assert parse_announce_query(q) == req


def test_announce_plus_means_space_and_bytes_stay_raw() -> None:
    q = libtorrent_query().replace(
        "peer_id=-LT2110-%7e%28N%28.WHFV6tF", "peer_id=a+b%00%FFcdefghijklmnopq"
    )
    assert parse_announce_query(q).peer_id == b"a b\x00\xffcdefghijklmnopq"


def test_announce_event_words() -> None:
    for word, ev in [("started", AnnounceEvent.STARTED), ("stopped", AnnounceEvent.STOPPED),
                     ("completed", AnnounceEvent.COMPLETED), ("paused", AnnounceEvent.PAUSED),
                     ("empty", AnnounceEvent.NONE), ("", AnnounceEvent.NONE)]:  # fmt: skip
        q = libtorrent_query().replace("event=started", f"event={word}")
        assert parse_announce_query(q).event is ev
    assert [int(e) for e in AnnounceEvent] == [0, 1, 2, 3, 4]  # BEP 15 codes


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("port=39243", "port=0"),
        ("port=39243", "port=65536"),
        ("port=39243", "port=-1"),
        ("port=39243", "port=0x10"),
        ("port=39243", "port=%2039243"),
        ("left=300000", "left=99999999999999999999"),
        ("left=300000", "left=1e5"),
        ("left=300000", "left="),
        ("event=started", "event=Started"),
        ("event=started", "event=finished"),
        ("compact=1", "compact=yes"),
        ("numwant=200", "numwant=-1"),
        ("key=6C4D21A3", "key=a%20b"),
        ("key=6C4D21A3", "key=" + "k" * 65),
        ("&uploaded=0", ""),
        ("&port=39243", ""),
        (f"info_hash={SPEC_ESCAPED}", "info_hash=short"),
        (f"info_hash={SPEC_ESCAPED}", f"info_hash={SPEC_ESCAPED}%00"),
        ("peer_id=", "peer_id=%zz"),
        ("&corrupt=0", "&port=1"),  # a repeated known field
        ("&corrupt=0", "&ip=example.org"),  # BEP 3 allows names; we do not
        ("&corrupt=0", "&ip=1.2.3"),
        ("&corrupt=0", "&ip=fe80::1%25eth0"),
        ("&corrupt=0", "&x=\u00e9"),
        ("&corrupt=0", "&x=a b"),
    ],
)
def test_announce_garbage_is_refused(old: str, new: str) -> None:
    q = libtorrent_query()
    assert old in q
    with pytest.raises(RemoteProtocolError):
        parse_announce_query(q.replace(old, new, 1))


def test_announce_ip_literals_are_normalised() -> None:
    q = libtorrent_query() + "&ip=2001:DB8:0:0::1"
    assert parse_announce_query(q).ip == "2001:db8::1"
    assert parse_announce_query(libtorrent_query() + "&ip=192.0.2.7").ip == "192.0.2.7"


def test_announce_query_bounds() -> None:
    many = libtorrent_query() + "&x=1" * 200
    with pytest.raises(RemoteProtocolError):
        parse_announce_query(many)
    with pytest.raises(RemoteProtocolError):
        parse_announce_query(libtorrent_query() + "&pad=" + "a" * 9000)


def test_announce_response_compact_vector() -> None:
    resp = AnnounceResponse(
        interval=1800,
        min_interval=60,
        complete=1,
        incomplete=2,
        peers=(Peer("10.10.10.5", 128), Peer("2001:db8::1", 6881)),
    )
    body = encode_announce_response(resp, compact=True)
    assert body == (
        b"d8:completei1e10:incompletei2e8:intervali1800e12:min intervali60e"
        b"5:peers6:\n\n\n\x05\x00\x80"
        b"6:peers618:" + bytes.fromhex("20010db8000000000000000000000001") + b"\x1a\xe1e"
    )
    assert decode_announce_response(body) == resp


def test_announce_response_dict_model_vector() -> None:
    resp = AnnounceResponse(interval=900, peers=(Peer("127.0.0.1", 6881, PID),))
    body = encode_announce_response(resp, compact=False)
    assert body == (
        b"d8:intervali900e5:peersld2:ip9:127.0.0.17:peer id20:-PL0001-abcdefghijkl"
        b"4:porti6881eeee"
    )
    assert decode_announce_response(body) == resp
    bare = encode_announce_response(resp, compact=False, no_peer_id=True)
    assert b"peer id" not in bare
    assert decode_announce_response(bare) == AnnounceResponse(900, (Peer("127.0.0.1", 6881),))


def test_failure_reply_vector() -> None:
    body = encode_failure("unregistered torrent", retry_in=5)
    assert body == b"d14:failure reason20:unregistered torrent8:retry ini5ee"
    assert decode_announce_response(body) == TrackerFailure("unregistered torrent", 5)
    assert decode_scrape_response(body) == TrackerFailure("unregistered torrent", 5)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"le",
        b"d5:peers0:e",  # no interval
        b"d8:intervali-1e5:peers0:e",
        b"d8:intervali10e5:peers5:abcdee",
        b"d8:intervali10e5:peersi3ee",
        b"d8:intervali10e5:peersl4:spamee",
        b"d8:intervali10e5:peersld2:ip9:127.0.0.14:porti0eeee",
        b"d8:intervali10e5:peersld2:ip11:example.org4:porti1eeee",
        b"d8:intervali10e5:peersld2:ip9:127.0.0.17:peer id3:abc4:porti1eeee",
        b"d8:intervali10e5:peers0:6:peers6i1ee",
        b"d8:intervali10e5:peers0:10:tracker id2:a ee",
        b"d8:intervali10e5:peers0:e trailing",
        b"d14:failure reasoni1ee",
    ],
)
def test_announce_reply_garbage(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_announce_response(body)


# ---------------------------------------------------------------- scrape


def test_scrape_request_bep48() -> None:
    a, b = b"a" * 20, b"b" * 20
    q = encode_scrape_query(ScrapeRequest((a, b)))
    assert q == "info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=bbbbbbbbbbbbbbbbbbbb"
    assert parse_scrape_query(q) == ScrapeRequest((a, b))
    assert parse_scrape_query(q + "&info_hash=" + "a" * 20) == ScrapeRequest((a, b))
    assert parse_scrape_query("") == ScrapeRequest(())
    with pytest.raises(RemoteProtocolError):
        parse_scrape_query("info_hash=abc")
    with pytest.raises(RemoteProtocolError):
        parse_scrape_query("&".join(f"info_hash={i:020d}" for i in range(75)))


def test_scrape_response_bep48_vector() -> None:
    resp = ScrapeResponse(((b"a" * 20, ScrapeStats(5, 50, 10)),))
    body = encode_scrape_response(resp)
    assert body == (
        b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei5e10:downloadedi50e10:incompletei10eeee"
    )
    assert decode_scrape_response(body) == resp
    with_flags = ScrapeResponse(resp.files, min_request_interval=900)
    assert decode_scrape_response(encode_scrape_response(with_flags)) == with_flags
    assert resp.get(b"a" * 20) == ScrapeStats(5, 50, 10) and resp.get(b"b" * 20) is None


@pytest.mark.parametrize(
    "body",
    [b"de", b"d5:filesle", b"d5:filesd3:abcd8:completei1eeee",
     b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1eeee",
     b"d5:filesd20:aaaaaaaaaaaaaaaaaaaai3eee"],
)  # fmt: skip
def test_scrape_reply_garbage(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_scrape_response(body)


@pytest.mark.parametrize(
    ("announce", "scrape"),
    [
        ("http://example.com/announce", "http://example.com/scrape"),
        ("http://example.com/x/announce", "http://example.com/x/scrape"),
        ("http://example.com/announce.php", "http://example.com/scrape.php"),
        ("http://example.com/announce?x2%0644", "http://example.com/scrape?x2%0644"),
        ("http://example.com:6969/announce", "http://example.com:6969/scrape"),
        ("http://example.com/a", None),
        ("http://example.com/announce?x=2/4", "http://example.com/scrape?x=2/4"),
        ("http://example.com/x%064announce", None),
        ("http://example.com/announce/x", None),
    ],
)
def test_scrape_url_bep48(announce: str, scrape: str | None) -> None:
    assert scrape_url(announce) == scrape


# ------------------------------------------------------------------ UDP


def test_udp_connect_vectors() -> None:
    assert encode_udp(ConnectRequest(0x12345678)) == bytes.fromhex(
        "0000041727101980" "00000000" "12345678"
    )
    assert UDP_PROTOCOL_ID == 0x41727101980
    assert decode_udp_request(bytes.fromhex("00000417271019800000000012345678")) == ConnectRequest(
        0x12345678
    )
    reply = bytes.fromhex("00000000" "12345678" "0102030405060708")
    assert decode_udp_response(reply) == ConnectResponse(0x12345678, 0x0102030405060708)
    assert encode_udp(ConnectResponse(0x12345678, 0x0102030405060708)) == reply


def test_udp_connect_needs_the_magic() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_udp_request(bytes.fromhex("00000417271019810000000012345678"))


def test_udp_announce_vector() -> None:
    pkt = UdpAnnounceRequest(
        connection_id=0x0102030405060708,
        transaction_id=0xCAFEBABE,
        info_hash=IH,
        peer_id=PID,
        downloaded=1,
        left=2,
        uploaded=3,
        event=AnnounceEvent.STARTED,
        ip=0,
        key=0xDEADBEEF,
        num_want=-1,
        port=6881,
    )
    data = encode_udp(pkt)
    assert len(data) == 98  # BEP 15: offsets 0..98
    assert data == (
        bytes.fromhex("0102030405060708" "00000001" "cafebabe")
        + IH + PID
        + bytes.fromhex("0000000000000001" "0000000000000002" "0000000000000003")
        + bytes.fromhex("00000002" "00000000" "deadbeef" "ffffffff" "1ae1")
    )  # fmt: skip
    assert decode_udp_request(data) == pkt
    # BEP 41: option bytes after the 98 are kept raw.
    with_opts = data + b"\x02\x09/announce"
    assert decode_udp_request(with_opts).options == b"\x02\x09/announce"  # type: ignore[union-attr]


def test_udp_announce_reply_vector() -> None:
    pkt = UdpAnnounceResponse(7, 1800, 2, 1, (Peer("127.0.0.1", 6881), Peer("127.0.0.2", 6882)))
    data = encode_udp(pkt)
    assert data == bytes.fromhex(
        "00000001" "00000007" "00000708" "00000002" "00000001" "7f0000011ae1" "7f0000021ae2"
    )
    assert decode_udp_response(data) == pkt
    v6 = UdpAnnounceResponse(7, 1800, 0, 1, (Peer("::1", 6881),))
    data6 = encode_udp(v6, ipv6=True)
    assert len(data6) == 20 + 18
    assert decode_udp_response(data6, ipv6=True) == v6
    # The family is the transport's: the same bytes read as IPv4 are 3 peers.
    assert len(decode_udp_response(data6, ipv6=False).peers) == 3  # type: ignore[union-attr]


def test_udp_scrape_vectors() -> None:
    req = UdpScrapeRequest(9, 10, (b"a" * 20, b"b" * 20))
    data = encode_udp(req)
    assert data == struct.pack(">QII", 9, 2, 10) + b"a" * 20 + b"b" * 20
    assert decode_udp_request(data) == req
    reply = UdpScrapeResponse(10, (ScrapeStats(1, 2, 3), ScrapeStats(4, 5, 6)))
    rdata = encode_udp(reply)
    assert rdata == struct.pack(">II", 2, 10) + struct.pack(">III", 1, 2, 3) + struct.pack(
        ">III", 4, 5, 6
    )
    assert decode_udp_response(rdata) == reply


def test_udp_error_vector() -> None:
    data = encode_udp(UdpError(5, "invalid connection id"))
    assert data == b"\x00\x00\x00\x03\x00\x00\x00\x05invalid connection id"
    assert decode_udp_response(data) == UdpError(5, "invalid connection id")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 15,
        struct.pack(">QII", 1, 7, 1),  # unknown action
        struct.pack(">QII", 1, 1, 1) + b"\x00" * 50,  # short announce
        struct.pack(">QII", 1, 2, 1),  # scrape of nothing
        struct.pack(">QII", 1, 2, 1) + b"a" * 21,  # not whole hashes
        struct.pack(">QII", 1, 2, 1) + b"a" * 20 * 75,  # too many hashes
        struct.pack(">QII", 1, 3, 1),  # clients do not send errors
    ],
)
def test_udp_request_garbage(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_udp_request(data)


def test_udp_announce_bad_event_and_negative_counts() -> None:
    good = encode_udp(
        UdpAnnounceRequest(1, 2, IH, PID, 0, 0, 0, AnnounceEvent.NONE, 0, 0, -1, 1)
    )
    bad_event = good[:80] + struct.pack(">I", 9) + good[84:]
    with pytest.raises(RemoteProtocolError):
        decode_udp_request(bad_event)
    negative_left = good[:56] + b"\xff" * 8 + good[64:]
    with pytest.raises(RemoteProtocolError):
        decode_udp_request(negative_left)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00",
        struct.pack(">II", 0, 1) + b"\x00" * 4,  # short connect reply
        struct.pack(">II", 1, 1) + b"\x00" * 8,  # short announce reply
        struct.pack(">IIIII", 1, 1, 0xFFFFFFFF, 0, 0),  # negative interval
        struct.pack(">IIIII", 1, 1, 1, 0, 0) + b"\x00" * 5,  # torn peer
        struct.pack(">II", 2, 1) + b"\x00" * 13,  # torn scrape entry
        struct.pack(">II", 9, 1),
    ],
)
def test_udp_reply_garbage(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_udp_response(data)


# ------------------------------------------------------------- properties

hashes = st.binary(min_size=20, max_size=20)
counts = st.integers(0, (1 << 63) - 1)
u32 = st.integers(0, 0xFFFFFFFF)
i31 = st.integers(0, 0x7FFFFFFF)
ports = st.integers(1, 0xFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
tokens = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
events = st.sampled_from(list(AnnounceEvent))


@given(
    info_hash=hashes, peer_id=hashes, port=ports, up=counts, down=counts, left=counts,
    event=events, compact=st.booleans(), no_peer_id=st.booleans(),
    numwant=st.none() | st.integers(0, 10_000), key=st.none() | tokens,
    ip=st.none() | ipv4 | ipv6, tid=st.none() | tokens,
)  # fmt: skip
def test_announce_query_round_trip(
    info_hash: bytes, peer_id: bytes, port: int, up: int, down: int, left: int,
    event: AnnounceEvent, compact: bool, no_peer_id: bool, numwant: int | None,
    key: str | None, ip: str | None, tid: str | None,
) -> None:  # fmt: skip
    req = AnnounceRequest(
        info_hash, peer_id, port, up, down, left, event, compact, no_peer_id, numwant, key, ip, tid
    )
    assert parse_announce_query(encode_announce_query(req)) == req


@given(
    interval=i31, min_interval=st.none() | i31, complete=st.none() | counts,
    incomplete=st.none() | counts,
    v4=st.lists(st.builds(Peer, ipv4, ports), max_size=30),
    v6=st.lists(st.builds(Peer, ipv6, ports), max_size=10),
    warning=st.none() | st.text(max_size=50),
)  # fmt: skip
def test_announce_response_round_trip_compact(
    interval: int, min_interval: int | None, complete: int | None, incomplete: int | None,
    v4: list[Peer], v6: list[Peer], warning: str | None,
) -> None:  # fmt: skip
    resp = AnnounceResponse(
        interval, tuple(v4 + v6), min_interval, complete, incomplete, None, warning
    )
    assert decode_announce_response(encode_announce_response(resp, compact=True)) == resp


@given(peers=st.lists(st.builds(Peer, ipv4 | ipv6, ports, st.none() | hashes), max_size=20))
def test_announce_response_round_trip_dicts(peers: list[Peer]) -> None:
    resp = AnnounceResponse(60, tuple(peers))
    assert decode_announce_response(encode_announce_response(resp, compact=False)) == resp


@given(files=st.dictionaries(hashes, st.builds(ScrapeStats, counts, counts, counts), max_size=20))
def test_scrape_round_trip(files: dict[bytes, ScrapeStats]) -> None:
    resp = ScrapeResponse(tuple(sorted(files.items())))
    assert decode_scrape_response(encode_scrape_response(resp)) == resp
    q = encode_scrape_query(ScrapeRequest(tuple(files)))
    assert parse_scrape_query(q) == ScrapeRequest(tuple(files))


udp_requests = st.one_of(
    st.builds(ConnectRequest, u32),
    st.builds(
        UdpAnnounceRequest, st.integers(0, (1 << 64) - 1), u32, hashes, hashes, counts, counts,
        counts, events, u32, u32, st.integers(-(1 << 31), (1 << 31) - 1),
        st.integers(0, 0xFFFF), st.binary(max_size=30),
    ),  # fmt: skip
    st.builds(
        UdpScrapeRequest, st.integers(0, (1 << 64) - 1), u32,
        st.lists(hashes, min_size=1, max_size=74).map(tuple),
    ),  # fmt: skip
)


@given(udp_requests)
def test_udp_request_round_trip(
    pkt: ConnectRequest | UdpAnnounceRequest | UdpScrapeRequest,
) -> None:
    assert decode_udp_request(encode_udp(pkt)) == pkt


@given(
    st.one_of(
        st.builds(ConnectResponse, u32, st.integers(0, (1 << 64) - 1)),
        st.builds(UdpAnnounceResponse, u32, i31, i31, i31,
                  st.lists(st.builds(Peer, ipv4, st.integers(0, 0xFFFF)), max_size=50).map(tuple)),
        st.builds(UdpScrapeResponse, u32,
                  st.lists(st.builds(ScrapeStats, i31, i31, i31), max_size=74).map(tuple)),
        st.builds(UdpError, u32, st.text(max_size=100)),
    )
)  # fmt: skip
def test_udp_response_round_trip(pkt: object) -> None:
    assert decode_udp_response(encode_udp(pkt)) == pkt  # type: ignore[arg-type]


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_udp_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    for decode in (decode_udp_request, decode_udp_response):
        try:
            decode(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=400)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_query_garbage_raises_only_remote_protocol_error(query: bytes | str) -> None:
    for parse in (parse_announce_query, parse_scrape_query):
        try:
            parse(query)
        except RemoteProtocolError:
            pass


@settings(max_examples=300)
@given(st.recursive(
    st.integers(-5, 70_000) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from([b"interval", b"peers", b"peers6", b"files", b"ip",
                                       b"port", b"peer id", b"complete", b"downloaded",
                                       b"incomplete", b"failure reason", b"min interval",
                                       b"tracker id", b"flags", b"a" * 20]), inner, max_size=5),
    max_leaves=20,
))  # fmt: skip
def test_reply_garbage_raises_only_remote_protocol_error(doc: object) -> None:
    body = bencode.encode(doc)  # type: ignore[arg-type]
    for decode in (decode_announce_response, decode_scrape_response):
        try:
            decode(body)
        except RemoteProtocolError:
            pass
        try:
            decode(body[:-1] + b"x")
        except RemoteProtocolError:
            pass
