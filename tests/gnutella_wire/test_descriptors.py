"""Gnutella descriptors (peerlab.wire.gnutella).

Byte vectors come from the specs: the 23-byte header and the payload layouts
of the RFC-Gnutella 0.6 draft (section 2.2), HUGE's Query and Query Hit
examples (section 1), the Bye examples (``bye`` section 6), the vendor
message examples (``vendor_msg`` sections 4.1 and 5), the QRP Appendix B
messages, and QHD trailers laid out as gtk-gnutella and LimeWire write them.
"""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest
from gnutkit import SHA1_URN, feed_whole_and_bytewise, messages, query_hits
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire import gnutella as g
from peerlab.wire.ggep import GGEP, Extension, cobs_encode
from peerlab.wire.gnutella import (
    Bye,
    DescriptorDecoder,
    FeaturesSupported,
    Header,
    HopsFlow,
    LinkDeflater,
    LinkInflater,
    MessagesSupported,
    OobReplyAck,
    OobReplyIndication,
    Ping,
    Pong,
    Push,
    PushProxyAck,
    PushProxyCancel,
    PushProxyRequest,
    Query,
    QueryFlags,
    QueryHit,
    QueryHitResult,
    QueryStatusRequest,
    QueryStatusResponse,
    TcpConnectBack,
    UdpConnectBack,
    Unknown,
    VendorMessage,
    build_xml_records,
    decode_header,
    decode_payload,
    decode_vendor,
    encode_descriptor,
    encode_header,
    encode_payload,
    encode_vendor,
    frame,
    make_guid,
    message_type,
    parse_xml_records,
)
from peerlab.wire.qrp import ResetTable
from peerlab.wire.urn import parse_sha1_urn

GUID = bytes(range(16))
SERVENT = bytes(range(16, 32))
SHA1 = parse_sha1_urn(SHA1_URN)


def roundtrip(ptype: int, payload: bytes) -> g.Message:
    """Decode ``payload`` and check that encoding gives the same bytes back."""
    msg = decode_payload(ptype, payload)
    assert message_type(msg) == ptype
    assert encode_payload(msg) == payload
    return msg


# ------------------------------------------------------------------ header


def test_header_layout() -> None:
    # Section 2.2.1: GUID, payload type, TTL, hops, payload length (LE).
    wire = GUID + bytes.fromhex("80 07 02 05 01 00 00")
    h = decode_header(wire)
    assert h == Header(GUID, 0x80, 7, 2, 0x105)
    assert encode_header(h) == wire
    with pytest.raises(RemoteProtocolError):
        decode_header(wire[:22])
    with pytest.raises(LocalProtocolError):
        encode_header(Header(GUID[:15], 0, 1, 0, 0))
    with pytest.raises(LocalProtocolError):
        frame(GUID, 0x80, 256, 0, b"")


def test_marked_guid() -> None:
    guid = make_guid(bytes(range(100, 116)))
    assert len(guid) == 16 and guid[8] == 0xFF and guid[15] == 0
    assert guid[:8] == bytes(range(100, 108))
    with pytest.raises(LocalProtocolError):
        make_guid(b"short")


# ------------------------------------------------------------- ping / pong


def test_ping_descriptor() -> None:
    wire = encode_descriptor(Ping(), guid=GUID, ttl=1)
    assert wire == GUID + bytes.fromhex("00 01 00 00 00 00 00")
    scp = GGEP.of(("SCP", b""))
    assert roundtrip(0x00, b"\xc3\x83SCP\x40") == Ping(scp)
    with pytest.raises(RemoteProtocolError):
        decode_payload(0x00, b"junk")


def test_pong_layout_with_ggep() -> None:
    # Section 2.2.3: port (LE), IP (network order), files, kbytes (LE); GGEP.
    wire = bytes.fromhex("ca18 c0000207 64000000 00080000")
    wire += b"\xc3" + b"\x02DU\x42\x10\x0e" + b"\x82UP\x43\x01\x1e\x04"
    pong = roundtrip(0x01, wire)
    assert isinstance(pong, Pong)
    assert (pong.port, pong.ip, pong.files, pong.kbytes) == (6346, "192.0.2.7", 100, 2048)
    assert pong.is_ultrapeer and pong.free_slots == (30, 4) and pong.daily_uptime == 3600
    assert pong.vendor_code is None and pong.packed_hosts == []
    plain = Pong(6346, "192.0.2.7", 100, 2048)
    assert encode_payload(plain) == wire[:14] and not plain.is_ultrapeer
    vc = Pong(1, "1.1.1.1", ggep=GGEP.of(("VC", b"GTKG\x12"), ("IPP", b"\x01\x02\x03\x04\xca\x18")))
    assert vc.vendor_code == "GTKG" and vc.packed_hosts == [("1.2.3.4", 6346)]
    for bad in (wire[:13], wire[:14] + b"x"):
        with pytest.raises(RemoteProtocolError):
            decode_payload(0x01, bad)


def test_two_ggep_blocks_packed_together_are_merged() -> None:
    # GGEP "Extension Block": "an arbitrary number of GGEP blocks packed one against another".
    wire = bytes(14) + b"\xc3\x81A\x41x" + b"\xc3\x81B\x41y"
    pong = decode_payload(0x01, wire)
    assert isinstance(pong, Pong) and pong.ggep == GGEP.of(("A", b"x"), ("B", b"y"))


# --------------------------------------------------------------- bye / push


def test_bye_examples() -> None:
    # "bye" section 6 (the code is binary, not repeated in the text).
    wire = b"\xc8\x00Shutting Down\r\nServer: my server/version\r\n\r\n\x00"
    bye = roundtrip(0x02, wire)
    assert bye == Bye(200, "Shutting Down", (("Server", "my server/version"),))
    short = roundtrip(0x02, b"\xf6\x01Send Queue Full (40960 bytes)\x00")
    assert short == Bye(502, "Send Queue Full (40960 bytes)")
    # Lenient: no NUL terminator.
    assert decode_payload(0x02, b"\x91\x01Too Many Duplicates") == Bye(401, "Too Many Duplicates")
    with pytest.raises(RemoteProtocolError):
        decode_payload(0x02, b"\x01")
    with pytest.raises(LocalProtocolError):
        encode_payload(Bye(200, "two\r\nlines"))


def test_push_layout() -> None:
    # Section 2.2.8: servent GUID, file index (LE), IP (network order), port (LE).
    wire = SERVENT + bytes.fromhex("07000000 0a010203 ca18")
    assert roundtrip(0x40, wire) == Push(SERVENT, 7, "10.1.2.3", 6346)
    with_ggep = roundtrip(0x40, wire + b"\xc3\x83TLS\x40")
    assert isinstance(with_ggep, Push) and with_ggep.ggep == GGEP.of(("TLS", b""))
    with pytest.raises(RemoteProtocolError):
        decode_payload(0x40, wire[:25])


# ------------------------------------------------------------------- query


def test_query_huge_examples() -> None:
    # HUGE section 1: "Gnutella Protocol[0x00]urn:[0x00]" ...
    q = roundtrip(0x80, b"\x80\x00Gnutella Protocol\x00urn:\x00")
    assert q == Query("Gnutella Protocol", 0x8000, ("urn:",))
    assert q.sha1 is None and q.max_hits is None
    # ... and "[0x00]urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB[0x00]".
    by_hash = roundtrip(0x80, b"\x80\x00\x00" + SHA1_URN.encode() + b"\x00")
    assert isinstance(by_hash, Query) and by_hash.criteria == "" and by_hash.sha1 == SHA1
    # gtk-gnutella's form: criteria "\" and no trailing NUL.
    gtkg = decode_payload(0x80, b"\xb8\x00\\\x00" + SHA1_URN.encode())
    assert isinstance(gtkg, Query) and gtkg.criteria == "\\" and gtkg.sha1 == SHA1
    assert gtkg.leaf_guided and gtkg.wants_xml and not gtkg.firewalled


def test_query_with_ggep_extension_block() -> None:
    # GGEP "Query Message": MinSpeed | Criteria | 0x0 | Extension_Block.
    wire = b"\xa8\x00lebowski\x00" + b"\xc3\x81H\x55\x01" + SHA1
    q = roundtrip(0x80, wire)
    assert isinstance(q, Query)
    assert q.flags == QueryFlags.MARK | QueryFlags.XML | QueryFlags.GGEP_H
    assert q.understands_ggep_h and q.wants_xml and q.sha1 == SHA1 and q.urns == ()


def test_query_flags_and_legacy_speed() -> None:
    legacy = decode_payload(0x80, b"\x32\x00old style\x00")
    assert isinstance(legacy, Query)
    assert legacy.min_speed == 50 and not legacy.wants_xml and legacy.max_hits is None
    capped = Query("x", QueryFlags.MARK | QueryFlags.FIREWALLED | QueryFlags.OOB_REPLY | 30)
    assert capped.firewalled and capped.oob_reply and capped.max_hits == 30
    assert capped.min_speed is None
    assert encode_payload(capped)[:2] == b"\xc4\x1e"  # big-endian flags (min_speed)


def test_query_rich_xml_urn_and_legacy_fields() -> None:
    xml = '<?xml version="1.0"?><audios><audio artist="linkin park"/></audios>'
    wire = b"\xe0\x00linkin park\x00" + SHA1_URN.encode() + b"\x1c" + xml.encode()
    wire += b"\x1clegacy\x00"
    q = roundtrip(0x80, wire)
    assert q == Query("linkin park", 0xE000, (SHA1_URN,), xml, None, (b"legacy",))


def test_query_garbage() -> None:
    for bad in (b"", b"\x80\x00", b"\x80\x00no terminator", b"\x80\x00x\x00\xc3\x01"):
        with pytest.raises(RemoteProtocolError):
            decode_payload(0x80, bad)
    with pytest.raises(LocalProtocolError):
        encode_payload(Query("nul\x00inside"))
    with pytest.raises(LocalProtocolError):
        encode_payload(Query("x", urns=("notaurn",)))
    with pytest.raises(LocalProtocolError):
        encode_payload(Query("x", extra=(b"\xc3ggep-lookalike",)))


# --------------------------------------------------------------- query hit


def test_query_hit_huge_example() -> None:
    # HUGE section 1: one result with its urn:sha1 "between the nulls", no QHD.
    wire = bytes.fromhex("01 ca18 01020304 e8030000")
    wire += bytes.fromhex("01000000 40e20100") + b"GnutellaProtocol04.pdf\x00"
    wire += SHA1_URN.encode() + b"\x00" + SERVENT
    hit = roundtrip(0x81, wire)
    assert hit == QueryHit(
        6346,
        "1.2.3.4",
        1000,
        (QueryHitResult(1, 123456, "GnutellaProtocol04.pdf", (SHA1_URN,)),),
        SERVENT,
    )
    assert isinstance(hit, QueryHit) and hit.results[0].sha1 == SHA1 and hit.vendor is None


def test_query_hit_gtk_gnutella_trailer() -> None:
    # "GTKG", 2 bytes of open data: byte 0 = push value + "known" bits of
    # busy/stable/speed/GGEP, byte 1 = push known + their values; GGEP after.
    wire = bytes.fromhex("00 ca18 0a000001 00010000")
    wire += b"GTKG\x02\x3d\x25" + b"\xc3\x82BH\x40" + SERVENT
    hit = roundtrip(0x81, wire)
    assert isinstance(hit, QueryHit)
    assert (hit.vendor, hit.push, hit.busy, hit.stable, hit.speed_measured) == (
        "GTKG",
        True,
        True,
        False,
        False,
    )
    assert hit.browse_host and hit.push_proxies == [] and hit.results == ()


def test_query_hit_limewire_trailer_with_xml() -> None:
    # LimeWire QueryReplyImpl: "LIME", open size 4 (flags, controls, XML
    # size + 1 LE), private area: chat byte, GGEP, XML, NUL; then the GUID.
    xml = build_xml_records(
        [(0, {"title": "Little Toot", "artist": "Disney", "bitrate": "128", "seconds": "150"})]
    )
    assert xml.startswith('<?xml version="1.0"?><audios xsi:noNamespaceSchemaLocation=')
    raw_xml = xml.encode() + b"\x00"
    ggep = b"\xc3\x04PUSH\x46\x0a\x00\x00\x01\xca\x18" + b"\x82BH\x40"
    wire = bytes.fromhex("01 ca18 c0a80001 80000000")
    wire += (
        bytes.fromhex("00000000 00100000") + b"Little Toot.mp3\x00" + SHA1_URN.encode() + b"\x00"
    )
    wire += b"LIME\x04\x3c\x29" + len(raw_xml).to_bytes(2, "little") + b"\x01" + ggep
    wire += raw_xml + SERVENT
    hit = roundtrip(0x81, wire)
    assert isinstance(hit, QueryHit)
    assert (hit.push, hit.busy, hit.stable, hit.speed_measured) == (False, False, True, False)
    assert hit.private_prefix == b"\x01" and hit.xml == xml
    assert hit.push_proxies == [("10.0.0.1", 6346)] and hit.browse_host
    (rec,) = parse_xml_records(hit.xml)
    assert rec.element == "audio" and rec.index == 0
    assert rec.get("title") == "Little Toot" and rec.get("bitrate") == "128"
    assert rec.schema == "http://www.limewire.com/schemas/audio.xsd"


def test_query_hit_large_file_in_ggep_lf() -> None:
    # filesize64: the 32-bit size says 0xFFFFFFFF, GGEP "LF" holds the size
    # (COBS-encoded here: a result's extensions may not contain NUL).
    size = 5 * 2**30
    lf = size.to_bytes(5, "little")
    wire = bytes.fromhex("01 ca18 01020304 00000000") + bytes.fromhex("09000000 ffffffff")
    wire += b"big.iso\x00" + b"\xc3" + bytes([0x80 | 0x40 | 2]) + b"LF"
    wire += bytes([0x40 | len(cobs_encode(lf))]) + cobs_encode(lf) + b"\x00" + SERVENT
    hit = roundtrip(0x81, wire)
    assert isinstance(hit, QueryHit)
    assert hit.results[0].size == size and hit.results[0].ggep is None
    with pytest.raises(LocalProtocolError):
        encode_payload(QueryHitResult(1, 1, "x", ggep=GGEP.of(("LF", b"\x01"))))  # type: ignore[arg-type]


def test_query_hit_result_extensions_and_helpers() -> None:
    r = QueryHitResult(
        2,
        10,
        "a.mp3",
        ("urn:bitprint:" + SHA1_URN[9:] + ".TIGERTIGER",),
        None,
        GGEP.of(("ALT", b"\x01\x02\x03\x04\x00\x01"), ("CT", b"\x10\x00")),
    )
    hit = QueryHit(1, "1.1.1.1", 0, (r,), SERVENT)
    back = decode_payload(0x81, encode_payload(hit))
    assert back == hit
    assert isinstance(back, QueryHit)
    res = back.results[0]
    assert res.sha1 == SHA1 and res.alt_locations == [("1.2.3.4", 256)] and res.create_time == 16


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        bytes(26),  # too short for header + GUID
        b"\x01" + bytes(10) + b"\x01\x00" + SERVENT,  # result truncated
        b"\x01" + bytes(10) + bytes(8) + b"name-without-nul" + SERVENT,
        b"\x01" + bytes(10) + bytes(8) + b"n\x00ext-without-nul" + SERVENT,
        b"\x00" + bytes(10) + b"GTK" + SERVENT,  # trailer shorter than 5
        b"\x00" + bytes(10) + b"GTKG\x09\x01" + SERVENT,  # open data overruns
        b"\x00" + bytes(10) + b"LIME\x04\x00\x00\xff\x00" + SERVENT,  # XML size overruns
    ],
)
def test_query_hit_garbage(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_payload(0x81, bad)


def test_query_hit_opaque_private_data_that_looks_like_ggep() -> None:
    # The GGEP spec's BearShare caveat: the GGEP bit is set but what follows
    # the magic is not a block -- the private area stays opaque, no error.
    wire = bytes(11) + b"BEAR\x02\x20\x20" + b"\xc3\xff\xff" + SERVENT
    hit = decode_payload(0x81, wire)
    assert isinstance(hit, QueryHit) and hit.ggep is None and hit.private_prefix == b"\xc3\xff\xff"


def test_query_hit_keeps_good_ggep_before_opaque_bytes() -> None:
    wire = bytes(11) + b"GTKG\x02\x20\x20" + b"\x01" + b"\xc3\x82BH\x40" + b"\xc3\xff"
    hit = decode_payload(0x81, wire + SERVENT)
    assert isinstance(hit, QueryHit)
    assert (hit.private_prefix, hit.ggep, hit.private_suffix) == (
        b"\x01",
        GGEP.of(("BH", b"")),
        b"\xc3\xff",
    )


def test_query_hit_local_misuse() -> None:
    r = QueryHitResult(0, 1, "x")
    with pytest.raises(LocalProtocolError):
        encode_payload(QueryHit(1, "1.1.1.1", 0, (r,) * 256, SERVENT))
    with pytest.raises(LocalProtocolError):
        encode_payload(QueryHit(1, "1.1.1.1", 0, (), SERVENT, busy=True))
    with pytest.raises(LocalProtocolError):
        encode_payload(QueryHit(1, "1.1.1.1", 0, (), SERVENT, vendor="TOOLONG"))
    with pytest.raises(LocalProtocolError):
        encode_payload(QueryHit(1, "1.1.1", 0, (), SERVENT))
    with pytest.raises(LocalProtocolError):
        encode_payload(
            QueryHit(
                1,
                "1.1.1.1",
                0,
                (),
                SERVENT,
                "LIME",
                private_prefix=b"\xc3",
                ggep=GGEP.of(("BH", b"")),
            )
        )


# --------------------------------------------------------- vendor messages


def test_hops_flow_example() -> None:
    # vendor_msg section 5: "BEAR", 4 (LE), version 1 (LE), the hop value.
    wire = encode_descriptor(encode_vendor(HopsFlow(5)), guid=GUID, ttl=1)
    assert wire == GUID + bytes.fromhex("31 01 00 09 00 00 00") + b"BEAR\x04\x00\x01\x00\x05"
    vm = roundtrip(0x31, b"BEAR\x04\x00\x01\x00\x05")
    assert isinstance(vm, VendorMessage) and decode_vendor(vm) == HopsFlow(5)
    assert g.VENDOR_MESSAGES[("BEAR", 4)].action == "handle"


def test_supported_vendor_ids_reply_example() -> None:
    # vendor_msg section 4.1: the "null/0xfffe" reply listing BEAR and GTKG.
    wire = bytes.fromhex("00000000 feff 0100") + b"BEARGTKG"
    vm = roundtrip(0x31, wire)
    assert vm == VendorMessage("\0\0\0\0", 0xFFFE, 1, b"BEARGTKG")
    assert isinstance(vm, VendorMessage) and decode_vendor(vm) is None  # not modelled: drop


def test_messages_supported_as_gtk_gnutella_sends_it() -> None:
    # vmsg_send_messages_supported: count (LE) then vendor (4), id (LE), version (LE).
    body = MessagesSupported((("BEAR", 4, 1), ("LIME", 21, 2)))
    vm = encode_vendor(body)
    assert vm.data == b"\x02\x00" + b"BEAR\x04\x00\x01\x00" + b"LIME\x15\x00\x02\x00"
    assert encode_payload(vm)[:8] == b"\0\0\0\0\x00\x00\x00\x00"
    assert decode_vendor(vm) == body
    feats = encode_vendor(FeaturesSupported((("TLS!", 1), ("QRP1", 1))))
    assert feats.data == b"\x02\x00TLS!\x01\x00QRP1\x01\x00"


@pytest.mark.parametrize(
    ("body", "version", "data"),
    [
        (TcpConnectBack(6346), 1, b"\xca\x18"),
        (QueryStatusRequest(), 1, b""),
        (QueryStatusResponse(0xFFFF), 1, b"\xff\xff"),
        (UdpConnectBack(6346), 2, b"\xca\x18"),
        (UdpConnectBack(6346, GUID), 1, b"\xca\x18" + GUID),
        (PushProxyRequest(), 1, b""),
        (PushProxyAck(6346, "10.0.0.1"), 2, b"\x0a\x00\x00\x01\xca\x18"),
        (PushProxyAck(6346), 1, b"\xca\x18"),
        (PushProxyCancel(), 1, b""),
        (OobReplyIndication(12, True), 2, b"\x0c\x01"),
        (OobReplyAck(10), 2, b"\x0a"),
        (OobReplyAck(10, GGEP.of(("SO", b"\x01\x02"))), 3, b"\x0a\xc3\x82SO\x42\x01\x02"),
    ],
)
def test_vendor_bodies(body: g.VendorBody, version: int, data: bytes) -> None:
    vm = encode_vendor(body, version)
    assert vm.data == data and vm.version == version
    assert decode_vendor(decode_payload(0x31, encode_payload(vm))) == body  # type: ignore[arg-type]


def test_vendor_message_framing_and_bad_bodies() -> None:
    std = VendorMessage("LIME", 21, 1, standard=True)
    assert message_type(std) == 0x32 and roundtrip(0x32, encode_payload(std)) == std
    with pytest.raises(RemoteProtocolError):
        decode_payload(0x31, b"BEAR\x04\x00\x01")
    for vm in (
        VendorMessage("BEAR", 4, 1, b""),
        VendorMessage("\0\0\0\0", 0, 0, b"\x05\x00BEAR"),
        VendorMessage("LIME", 22, 2, b"\x01\x02"),
        VendorMessage("BEAR", 12, 0, b"\x01\x02"),  # version 0 of a v1 message
    ):
        with pytest.raises(RemoteProtocolError):
            decode_vendor(vm)
    # Every row of the table names versions and an action.
    assert all(i.versions and i.action in ("handle", "ignore") for i in g.VENDOR_MESSAGES.values())


def test_unknown_payload_types_pass_through() -> None:
    assert roundtrip(0xCD, b"hsep") == Unknown(0xCD, b"hsep")
    assert message_type(ResetTable(8, 7)) == 0x30


# ----------------------------------------------------------------- framing


def test_descriptor_stream_whole_and_bytewise() -> None:
    msgs = [
        (Ping(), 1),
        (Query("little toot", urns=(SHA1_URN,)), 7),
        (Pong(6346, "1.2.3.4", 3, 4), 3),
        (Bye(200, "bye"), 1),
    ]
    stream = b"".join(encode_descriptor(m, guid=GUID, ttl=t, hops=1) for m, t in msgs)
    items = feed_whole_and_bytewise(DescriptorDecoder, stream)
    assert [decode_payload(h.payload_type, p) for h, p in items] == [m for m, _ in msgs]
    assert [(h.guid, h.ttl, h.hops) for h, _ in items] == [(GUID, t, 1) for _, t in msgs]


def test_descriptor_decoder_buffers_one_partial_and_bounds_length() -> None:
    dec = DescriptorDecoder(max_payload=100)
    wire = frame(GUID, 0x80, 1, 0, b"x" * 100)
    assert dec.feed(wire[:50]) == [] and dec.buffered == 50
    assert len(dec.feed(wire[50:])) == 1 and dec.buffered == 0
    too_big = GUID + bytes.fromhex("80 01 00 65 00 00 00")
    with pytest.raises(RemoteProtocolError) as info:
        DescriptorDecoder(max_payload=100).feed(too_big)
    assert info.value.code == 400
    # The bound is checked as soon as the header is complete, before any payload.
    with pytest.raises(RemoteProtocolError):
        DescriptorDecoder().feed(GUID + bytes.fromhex("80 01 00 ff ff ff 7f"))


# -------------------------------------------------------- link compression


def test_deflated_link_round_trip_bytewise() -> None:
    tx = LinkDeflater()
    sent, wire = [], b""
    for i in range(20):
        desc = encode_descriptor(Query(f"query number {i}"), guid=GUID, ttl=4)
        sent.append(desc)
        compressed = tx.compress(desc) + tx.flush()
        # A sync flush makes every message decodable on its own, at once.
        assert LinkInflater().decompress(wire + compressed) == b"".join(sent)
        wire += compressed
    whole = LinkInflater().decompress(wire)
    rx = LinkInflater()
    bytewise = b"".join(rx.decompress(wire[i : i + 1]) for i in range(len(wire)))
    assert whole == bytewise == b"".join(sent)
    assert tx.bytes_in == len(whole) and tx.bytes_out == len(wire) < len(whole)


def test_deflated_link_uses_a_1k_window_and_reads_any_window() -> None:
    # Our stream's zlib header: CMF 0x28, deflate with CINFO 2 (a window of
    # 2 ** (2 + 8) = 1 KiB), and an FLG that makes CMF * 256 + FLG a
    # multiple of 31 (RFC 1950).
    tx = LinkDeflater()
    head = tx.compress(b"GNUTELLA") + tx.flush()
    assert head[0] == 0x28 and (head[0] * 256 + head[1]) % 31 == 0
    # A peer's 32 KiB-window stream (LimeWire's java.util.zip default), with
    # a repeat 20,000 bytes back that only the large window can reach.
    text = random.Random(2).randbytes(20_000)
    big = zlib.compressobj(6, zlib.DEFLATED, 15)
    wire = big.compress(text + text) + big.flush(zlib.Z_SYNC_FLUSH)
    assert wire[0] == 0x78 and len(wire) < 30_000
    assert LinkInflater().decompress(wire) == text + text


def test_an_inflater_of_a_peerlab_stream_holds_a_1k_window() -> None:
    # The inflater allocates the window the header announces, not 32 KiB:
    # thousands of links in the simulator (zlib's state is about 7 KiB).
    tx = LinkDeflater()
    wire = tx.compress(random.Random(3).randbytes(10_000)) + tx.flush()
    tracemalloc.start()
    try:
        rx = LinkInflater()
        assert len(rx.decompress(wire)) == 10_000
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 10 * 1024  # 32 KiB more with the default window


def test_deflated_link_refuses_a_bomb() -> None:
    bomb = zlib.compress(bytes(20 * 1024 * 1024), 9)  # 20 MiB in ~20 KiB
    rx = LinkInflater()
    with pytest.raises(RemoteProtocolError, match="bound"):
        for i in range(0, len(bomb), 4096):
            rx.decompress(bomb[i : i + 4096])
    assert rx.bytes_out <= rx.slack + rx.max_ratio * rx.bytes_in


def test_deflated_link_cannot_bank_credit_for_a_burst() -> None:
    tx, rx = LinkDeflater(), LinkInflater()
    noise = random.Random(1).randbytes(2_000_000)  # incompressible: ratio ~1
    assert rx.decompress(tx.compress(noise) + tx.flush()) == noise
    burst = tx.compress(bytes(16 * 1024 * 1024)) + tx.flush()  # ~16 KiB
    # The link's lifetime ratio would allow it; one call may not.
    assert rx.slack + rx.max_ratio * (rx.bytes_in + len(burst)) > 16 * 1024 * 1024
    with pytest.raises(RemoteProtocolError, match="bound"):
        rx.decompress(burst)


def test_deflated_link_garbage() -> None:
    with pytest.raises(RemoteProtocolError):
        LinkInflater().decompress(b"definitely not zlib")
    ended = zlib.compress(b"abc")
    with pytest.raises(RemoteProtocolError):
        LinkInflater().decompress(ended + b"more")
    rx = LinkInflater()
    rx.decompress(ended)
    with pytest.raises(RemoteProtocolError):
        rx.decompress(b"x")
    assert LinkInflater().decompress(b"") == b""


# ---------------------------------------------------------------- XML


def test_xml_records_are_read_tolerantly() -> None:
    xml = (
        "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]>"
        "<audios xsi:noNamespaceSchemaLocation='http://www.limewire.com/schemas/audio.xsd'>"
        '<audio title="Tom &amp; Jerry" index="3" seconds="61"></audio>'
        "<audio artist='&#76;inkin Park' index='x'/></audios>"
    )
    recs = parse_xml_records(xml)
    assert [r.get("title") for r in recs] == ["Tom & Jerry", None]
    assert recs[0].index == 3 and recs[1].index is None
    assert recs[1].get("artist") == "Linkin Park"
    built = build_xml_records([(1, {"title": 'a "quoted" <b>'})])
    assert parse_xml_records(built)[0].get("title") == 'a "quoted" <b>'


# --------------------------------------------------------- property tests


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips(msg: g.Message) -> None:
    payload = encode_payload(msg)
    assert decode_payload(message_type(msg), payload) == msg
    wire = encode_descriptor(msg, guid=GUID, ttl=3, hops=2)
    ((header, body),) = DescriptorDecoder().feed(wire)
    assert header == Header(GUID, message_type(msg), 3, 2, len(payload)) and body == payload


@settings(max_examples=100, deadline=None)
@given(query_hits())
def test_query_hit_results_never_carry_a_raw_nul_in_extensions(hit: QueryHit) -> None:
    payload = encode_payload(hit)
    assert decode_payload(0x81, payload) == hit


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([0x00, 0x01, 0x02, 0x30, 0x31, 0x32, 0x40, 0x80, 0x81]), st.binary(max_size=200)
)
def test_arbitrary_payloads_raise_only_remote_protocol_error(ptype: int, data: bytes) -> None:
    try:
        msg = decode_payload(ptype, data)
    except RemoteProtocolError:
        return
    if isinstance(msg, VendorMessage):
        try:
            decode_vendor(msg)
        except RemoteProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_streams_raise_only_remote_protocol_error(data: bytes) -> None:
    try:
        DescriptorDecoder(max_payload=64).feed(data)
    except RemoteProtocolError:
        pass
    try:
        LinkInflater().decompress(data)
    except RemoteProtocolError:
        pass


def test_extension_of_ggep_inside_results_with_nul_uses_cobs() -> None:
    r = QueryHitResult(1, 2, "n", ggep=GGEP((Extension("ALT", b"\x00\x00\x00\x01\x00\x01"),)))
    enc = encode_payload(QueryHit(1, "1.1.1.1", 0, (r,), SERVENT))
    # Between the name's NUL and the result's closing NUL there is no other NUL.
    area = enc[11 + 8 + 2 : -16]
    assert area.endswith(b"\x00") and 0 not in area[:-1]
