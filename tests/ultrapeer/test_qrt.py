"""QRP tables of leaves and ultrapeers (qrt.py) on top of the wire codec."""

from __future__ import annotations

import zlib

import pytest
from gnetkit import Shares, make_file

from peerlab.overlays.gnutella.qrt import (
    QrpInbound,
    QrpRefused,
    QrpSender,
    merge_presence,
    query_keywords,
    share_keywords,
    shares_table,
    table_matches,
)
from peerlab.wire.gnutella import Query
from peerlab.wire.qrp import (
    COMPRESSOR_NONE,
    COMPRESSOR_ZLIB,
    PatchTable,
    PresenceTable,
    QrpReceiver,
    QueryRouteTable,
    ResetTable,
    make_update,
    qrp_hash,
)

SHARES = Shares([
    make_file(1, "Linkin_Park-Numb.mp3", artist="Linkin Park", title="Numb"),
    make_file(2, "little toot.ogg"),
])  # fmt: skip


def test_share_keywords_hold_names_tags_and_urns() -> None:
    words = share_keywords(SHARES)
    for w in ("linkin", "park", "numb", "mp3", "little", "toot", "ogg"):
        assert w in words
    assert SHARES.files[0].urn.lower() in words


def test_the_table_matches_queries_by_every_keyword_or_any_urn() -> None:
    table = shares_table(SHARES)
    assert table.contains("numb") and table.to_table().entries[qrp_hash("numb", 16)] == 1
    assert table_matches(table, Query("linkin park"))
    assert table_matches(table, Query("LITTLE Toot"))
    assert not table_matches(table, Query("linkin zeppelin"))
    assert table_matches(table, Query("\\", urns=(SHARES.files[1].urn,)))
    assert not table_matches(table, Query("\\", urns=("urn:sha1:" + "A" * 32,)))
    # rich query without criteria: words of the XML values
    xml = '<audios><audio artist="linkin park"/></audios>'
    assert query_keywords(Query("", xml=xml))[0] == ["linkin", "park"]
    assert table_matches(table, Query("", xml=xml))


def test_sender_sends_reset_and_patches_then_only_changes() -> None:
    sender = QrpSender()
    first = sender.update(shares_table(SHARES))
    assert isinstance(first[0], ResetTable) and first[0].table_length == 65536
    patches = [m for m in first[1:] if isinstance(m, PatchTable)]
    assert patches and all(p.entry_bits == 4 and p.compressor == COMPRESSOR_ZLIB for p in patches)
    assert sender.update(shares_table(SHARES)) == []  # unchanged: nothing
    bigger = Shares([*SHARES.files, make_file(3, "third song.mp3")])
    again = sender.update(shares_table(bigger))
    assert again and all(isinstance(m, PatchTable) for m in again)  # a patch, no reset
    inbound = QrpInbound()
    for m in first + again:
        inbound.receive(m)
    # The ultrapeer keeps presence only, a bit per entry.
    assert isinstance(inbound.table, PresenceTable)
    assert inbound.table.presence() == shares_table(bigger).presence()
    assert inbound.table.contains("third") and not shares_table(SHARES).contains("third")


def test_inbound_refuses_a_table_too_large() -> None:
    inbound = QrpInbound(max_length=1 << 16)
    with pytest.raises(QrpRefused) as e:
        inbound.receive(ResetTable(1 << 17, 7))
    assert e.value.reason == "too_large"
    assert inbound.table is None


def test_inbound_refuses_patches_out_of_sequence() -> None:
    inbound = QrpInbound()
    with pytest.raises(QrpRefused) as e:  # no RESET first
        inbound.receive(PatchTable(1, 1, COMPRESSOR_NONE, 8, bytes(64)))
    assert e.value.reason == "sequence"
    inbound.receive(ResetTable(64, 7))
    data = zlib.compress(bytes(32))
    inbound.receive(PatchTable(1, 2, COMPRESSOR_ZLIB, 4, data[:5]))
    with pytest.raises(QrpRefused) as e:
        inbound.receive(PatchTable(3, 2, COMPRESSOR_ZLIB, 4, data[5:]))
    assert e.value.reason == "sequence"


def test_inbound_refuses_a_table_claiming_every_keyword() -> None:
    inbound = QrpInbound(max_fill=0.75)
    inbound.receive(ResetTable(64, 7))
    # 8-bit entries of -6: every entry becomes 1 ("present")
    with pytest.raises(QrpRefused) as e:
        inbound.receive(PatchTable(1, 1, COMPRESSOR_NONE, 8, bytes([0xFA]) * 64))
    assert e.value.reason == "full"
    assert inbound.table is None


def test_inbound_refuses_a_zip_bomb_as_too_large() -> None:
    inbound = QrpInbound()
    inbound.receive(ResetTable(64, 7))
    with pytest.raises(QrpRefused) as e:
        inbound.receive(PatchTable(1, 1, COMPRESSOR_ZLIB, 4, zlib.compress(bytes(10_000))))
    assert e.value.reason == "too_large"


def test_merge_presence_is_the_union_at_distance_one() -> None:
    a = QueryRouteTable.from_keywords(["alpha"], 1 << 16)
    b = QueryRouteTable.from_keywords(["beta"], 1 << 12)  # scaled up
    c = QueryRouteTable(1 << 17)
    c.add("gamma", 3)  # scaled down, distance kept as presence
    d = PresenceTable.from_keywords(["delta"], 1 << 16)
    merged = merge_presence([a, b, c])
    assert merged.length == 1 << 16
    for word in ("alpha", "beta", "gamma"):
        assert merged.contains(word)
        assert merged.to_table().entries[qrp_hash(word, 16)] == 1
    assert not merged.contains("delta")
    assert merged.present <= 1 + 16 + 1
    # A presence table joins by its bitmap; the union is the same either way.
    both = merge_presence([a, b, c, d])
    assert both.contains("delta") and both.present == merged.present + 1
    assert both == merge_presence([a, b, c, d.to_table()])


def test_own_tables_are_kept_as_bits_and_sent_as_distances() -> None:
    """A leaf keeps its table as a bit per entry; what it sends is byte for
    byte what the table of distances would send, first and as a patch."""
    table = shares_table(SHARES)
    assert isinstance(table, PresenceTable) and len(table._bitmap) == 65536 // 8
    bigger = shares_table(Shares([*SHARES.files, make_file(3, "third song.mp3")]))
    assert make_update(table) == make_update(table.to_table())
    assert make_update(bigger, table) == make_update(bigger.to_table(), table.to_table())
    assert make_update(bigger, table) and make_update(bigger, bigger.copy()) == []


def test_the_fast_4bit_patch_equals_the_per_entry_definition() -> None:
    """make_update packs 4-bit patches with bytes operations; the result
    must be the spec's entry-by-entry difference, high nibble first."""
    import random

    from peerlab.wire.qrp import _pack_patch, make_update

    rng = random.Random(1)
    for _ in range(40):
        length, inf = rng.choice([8, 64, 1024, 65536]), rng.choice([2, 5, 7])
        a = QueryRouteTable(length, inf, bytes(rng.randrange(inf + 1) for _ in range(length)))
        b = QueryRouteTable(length, inf, bytes(rng.randrange(inf + 1) for _ in range(length)))
        for prev in (None, a):
            msgs = make_update(b, prev, compressor=COMPRESSOR_NONE, chunk_size=1 << 20)
            base = bytes((inf,)) * length if prev is None else bytes(prev.entries)
            want = _pack_patch([n - o for n, o in zip(b.entries, base, strict=True)], 4)
            assert b"".join(m.data for m in msgs if isinstance(m, PatchTable)) == want
            rx = QrpReceiver()  # distances kept: the exact arithmetic
            if prev is not None:
                for m in make_update(a):
                    rx.receive(m)
            for m in msgs:
                rx.receive(m)
            assert rx.table == b
