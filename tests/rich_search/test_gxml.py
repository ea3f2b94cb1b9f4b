"""LimeWire XML metadata (peerlab.wire.gxml): round trips, the bytes on the
wire of a rich Query and of a Query Hit's private area, and garbage -- which
must raise RemoteProtocolError only, never expand an entity, and stay bounded."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import RemoteProtocolError
from peerlab.wire.gnutella import (
    Query,
    QueryHit,
    QueryHitResult,
    decode_payload,
    encode_payload,
)
from peerlab.wire.gxml import (
    AUDIO_SCHEMA,
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_INFLATED_BYTES,
    MAX_XML_CHARS,
    RichQuery,
    build_xml_records,
    hit_xml_text,
    parse_collection,
    parse_xml_records,
)

LIMEWIRE_HIT_XML = (
    '<?xml version="1.0"?><audios xsi:noNamespaceSchemaLocation='
    '"http://www.limewire.com/schemas/audio.xsd"><audio title="Numb" artist="Linkin Park"'
    ' album="Meteora" genre="Rock" bitrate="192" seconds="187" index="0"/><audio '
    'title="Faint" artist="Linkin Park" bitrate="128" seconds="162" index="1"></audio></audios>'
)


def test_a_limewire_collection_is_read_record_by_record() -> None:
    coll = parse_collection(LIMEWIRE_HIT_XML)
    assert coll.element == "audios" and coll.schema == AUDIO_SCHEMA
    first, second = coll.records
    assert first.index == 0 and second.index == 1
    assert first.fields() == {"title": "Numb", "artist": "Linkin Park", "album": "Meteora",
                              "genre": "Rock", "bitrate": "192", "seconds": "187"}  # fmt: skip
    assert second.get("title") == "Faint" and second.schema == AUDIO_SCHEMA


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["title", "artist", "album", "genre", "bitrate", "seconds"]),
            st.text(max_size=30),
            max_size=6,
        ),
        max_size=12,
    )
)
def test_built_collections_round_trip(records: list[dict[str, str]]) -> None:
    xml = build_xml_records(list(enumerate(records)))
    got = parse_xml_records(xml)
    assert [r.index for r in got] == list(range(len(records)))
    for rec, want in zip(got, records, strict=True):
        # Characters XML 1.0 cannot carry are dropped; \r is normalised by no one here.
        clean = {k: "".join(c for c in v if c in "\t\n\r" or (0x20 <= ord(c) <= 0xD7FF)
                            or 0xE000 <= ord(c) <= 0xFFFD or ord(c) >= 0x10000)
                 for k, v in want.items()}  # fmt: skip
        assert rec.fields() == clean


def test_markup_in_values_is_escaped_and_read_back() -> None:
    xml = build_xml_records([(3, {"title": 'a "quoted" <b> & \'it\''})])
    assert '<b>' not in xml and "&lt;b&gt;" in xml and "&amp;" in xml
    (rec,) = parse_xml_records(xml)
    assert rec.get("title") == 'a "quoted" <b> & \'it\'' and rec.index == 3


def test_character_references_are_decoded() -> None:
    (rec,) = parse_xml_records("<audios><audio artist='&#76;inkin &#x50;ark &apos;03'/></audios>")
    assert rec.get("artist") == "Linkin Park '03"


def test_a_doctype_is_skipped_and_its_entities_never_expanded() -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    )
    # Declared but unused: the document is read, the declarations ignored.
    (rec,) = parse_xml_records(laughs + '<audios><audio title="x" index="0"/></audios>')
    assert rec.get("title") == "x"
    # Used: an entity we never defined, refused -- not a billion laughs.
    with pytest.raises(RemoteProtocolError, match="never expanded"):
        parse_xml_records(laughs + '<audios><audio title="&lol3;"/></audios>')
    with pytest.raises(RemoteProtocolError):
        parse_xml_records(
            '<!DOCTYPE a SYSTEM "file:///etc/passwd"><audios><audio title="&xxe;"/></audios>'
        )


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "no markup at all",
        "<audios>",
        "<audios><audio title='x'></audios>",
        "<audios><audio title=x/></audios>",
        "<audios><audio title='a' title='b'/></audios>",
        "<audios><audio title='a & b'/></audios>",
        "<audios><audio title='<'/></audios>",
        "<audios><audio title='&#0;'/></audios>",
        "<audios><audio title='&#xD800;'/></audios>",
        "<audios/><audios/>",
        "<audios/>trailing text",
        "<audios><!ENTITY x 'y'></audios>",
        "<audios><audio title='x'",
        "<audios><!-- open comment </audios>",
        "<1audios/>",
        "</audios>",
    ],
)
def test_malformed_xml_raises_remote_protocol_error(garbage: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_collection(garbage)


def test_bounds_on_size_depth_and_elements() -> None:
    with pytest.raises(RemoteProtocolError, match="longer"):
        parse_collection("<a>" + " " * MAX_XML_CHARS + "</a>")
    deep = "".join(f"<e{i}>" for i in range(MAX_DEPTH + 1))
    deep += "".join(f"</e{i}>" for i in reversed(range(MAX_DEPTH + 1)))
    with pytest.raises(RemoteProtocolError, match="deeper"):
        parse_collection(deep)
    many = "<audios>" + "<audio/>" * MAX_ELEMENTS + "</audios>"
    with pytest.raises(RemoteProtocolError, match="elements"):
        parse_collection(many)
    attrs = " ".join(f'a{i}="1"' for i in range(40))
    with pytest.raises(RemoteProtocolError, match="attributes"):
        parse_collection(f"<audios><audio {attrs}/></audios>")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"'&;#!?[]- aAx0:")), max_size=120))
def test_random_markup_raises_only_protocol_errors(text: str) -> None:
    try:
        parse_collection(text)
    except RemoteProtocolError:
        pass


def test_deflated_hit_xml_is_inflated_within_a_bound() -> None:
    raw = b"{deflate}" + zlib.compress(LIMEWIRE_HIT_XML.encode())
    assert hit_xml_text(raw) == LIMEWIRE_HIT_XML
    assert hit_xml_text(b"{plaintext}" + LIMEWIRE_HIT_XML.encode()) == LIMEWIRE_HIT_XML
    bomb = b"{deflate}" + zlib.compress(b"<" * (MAX_INFLATED_BYTES * 4))
    with pytest.raises(RemoteProtocolError, match="beyond"):
        hit_xml_text(bomb)
    with pytest.raises(RemoteProtocolError, match="inflate"):
        hit_xml_text(b"{deflate}not zlib at all")


def test_a_query_hit_carries_the_collection_in_its_private_area() -> None:
    hit = QueryHit(
        port=6346, ip="127.0.0.1", speed=1000, servent_guid=bytes(range(16)), vendor="PLAB",
        push=False, busy=False, stable=True, speed_measured=False,
        results=(QueryHitResult(0, 1000, "Numb.mp3"), QueryHitResult(1, 2000, "Faint.mp3")),
        xml=LIMEWIRE_HIT_XML,
    )  # fmt: skip
    payload = encode_payload(hit)
    wire = LIMEWIRE_HIT_XML.encode() + b"\x00"
    # The XML closes the private area, just before the 16-byte servent GUID,
    # and the open data's XML size (little-endian) counts it with its NUL.
    assert payload[-16 - len(wire) : -16] == wire
    assert len(wire).to_bytes(2, "little") in payload
    back = decode_payload(hit.TYPE, payload)
    assert isinstance(back, QueryHit) and back.xml == LIMEWIRE_HIT_XML
    # gtk-gnutella's deflated form decodes to the same text.
    deflated = b"{deflate}" + zlib.compress(LIMEWIRE_HIT_XML.encode())
    cut = len(payload) - 16 - len(wire)
    size_at = payload.rfind(len(wire).to_bytes(2, "little"), 0, cut)
    patched = (
        payload[:size_at] + len(deflated).to_bytes(2, "little") + payload[size_at + 2 : cut]
        + deflated + payload[-16:]
    )  # fmt: skip
    again = decode_payload(hit.TYPE, patched)
    assert isinstance(again, QueryHit) and again.xml == LIMEWIRE_HIT_XML


def test_a_rich_query_travels_between_the_nulls() -> None:
    rich = RichQuery.from_form("artist", "linkin park", min_bitrate=128)
    xml = rich.to_xml()
    assert xml == (
        '<?xml version="1.0"?><audios xsi:noNamespaceSchemaLocation="'
        + AUDIO_SCHEMA + '"><audio artist="linkin park" bitrate="128"/></audios>'
    )
    q = Query("linkin park", urns=(), xml=xml)
    payload = encode_payload(q)
    # flags (2 bytes), criteria, NUL, the XML extension, NUL
    assert payload[2:] == b"linkin park\x00" + xml.encode() + b"\x00"
    back = decode_payload(q.TYPE, payload)
    assert isinstance(back, Query) and back.xml == xml
    assert RichQuery.from_xml(xml) == rich
    assert rich.field == "artist" and rich.words == "linkin park"


def test_rich_query_matching() -> None:
    rich = RichQuery.from_form("artist", "Linkin Park", min_bitrate=128, min_seconds=60)
    assert rich.admits({"artist": "LINKIN PARK", "bitrate": "192", "seconds": "187"})
    assert rich.admits({"artist": "Linkin Park", "bitrate": 128, "duration": 60.4})
    assert not rich.admits({"artist": "Linkin Park", "bitrate": "96", "seconds": "187"})
    assert not rich.admits({"artist": "Linkin Park", "seconds": "187"})  # unknown bitrate
    assert not rich.admits({"artist": "Linkin Park", "bitrate": "192", "seconds": "30"})
    assert not rich.admits({"title": "Linkin Park", "bitrate": "192", "seconds": "187"})
    assert not rich.admits({"artist": "Park Linkinson", "bitrate": "192", "seconds": "187"})
    assert RichQuery.from_form("all", "numb").constrains is False
    assert RichQuery.from_xml("<audios><audio index='0'/></audios>") is None
    assert RichQuery.from_xml(
        '<videos xsi:noNamespaceSchemaLocation="http://www.limewire.com/schemas/video.xsd">'
        '<video title="x"/></videos>'
    ) is None  # fmt: skip
