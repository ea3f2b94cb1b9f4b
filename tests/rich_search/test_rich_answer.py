"""Answering and collecting rich queries (overlays/gnutella/search.py): a
servent answers "Artist: linkin park, at least 128 kbps" from its catalog's
tags, not its file names, with the LimeWire XML records in the hit; the
searcher reads the records back and survives garbage XML."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peerlab.apps.media import write_mp3
from peerlab.overlays.gnutella.search import (
    HitIdentity,
    Search,
    build_query_hits,
    matching_files,
    result_metadata,
)
from peerlab.storage.catalog import Catalog
from peerlab.wire.gnutella import Query as GQuery
from peerlab.wire.gnutella import (
    QueryFlags,
    QueryHit,
    QueryHitResult,
    decode_payload,
    encode_payload,
)
from peerlab.wire.gxml import RichQuery, parse_xml_records

#: (file name, title, artist, album, genre, seconds, kbps)
TRACKS = [
    ("01 numb.mp3", "Numb", "Linkin Park", "Meteora", "Rock", 8, 192),
    ("02 faint.mp3", "Faint", "Linkin Park", "Meteora", "Rock", 6, 96),
    ("linkin park covers - numb.mp3", "Numb", "The Cover Band", "Tributes", "Pop", 7, 256),
    ("in the end (live).mp3", "In the End", "Linkin Park", "Live", "Rock", 2, 160),
]
FLAGS = int(QueryFlags.MARK | QueryFlags.XML | QueryFlags.GGEP_H)
ME = HitIdentity(ip="127.0.0.1", port=6346, speed=1000, servent_guid=bytes(16), push=False,
                 busy=False, stable=True)  # fmt: skip


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    base = tmp_path_factory.mktemp("rich")
    for i, (name, title, artist, album, genre, seconds, kbps) in enumerate(TRACKS):
        write_mp3(base / "share" / name, title=title, artist=artist, album=album, genre=genre,
                  seconds=seconds, bitrate_kbps=kbps, seed=i)  # fmt: skip
    cat = Catalog(base / "catalog.db")
    cat.add_folder(base / "share")
    cat.scan()
    yield cat
    cat.close()


def rich_query(field: str, text: str, **mins: int) -> GQuery:
    rich = RichQuery.from_form(field, text, mins.get("bitrate"), mins.get("seconds"))
    return GQuery(text, FLAGS, xml=rich.to_xml() if rich.constrains else None)


def names(files: list[object]) -> set[str]:
    return {str(getattr(f, "name", "")) for f in files}


def test_catalog_answers_by_field_with_a_bitrate_floor(catalog: Catalog) -> None:
    # A plain keyword query matches names and tags alike.
    assert names(matching_files(catalog, GQuery("linkin park", FLAGS))) == {
        "01 numb.mp3", "02 faint.mp3", "linkin park covers - numb.mp3", "in the end (live).mp3"
    }  # fmt: skip
    # By artist: not the cover band whose *file name* says linkin park.
    assert names(matching_files(catalog, rich_query("artist", "linkin park"))) == {
        "01 numb.mp3", "02 faint.mp3", "in the end (live).mp3"
    }  # fmt: skip
    # ...of at least 128 kbps: not the 96 kbps Faint.
    got = matching_files(catalog, rich_query("artist", "linkin park", bitrate=128))
    assert names(got) == {"01 numb.mp3", "in the end (live).mp3"}
    # ...and at least 5 s long: not the 2 s live track.
    got = matching_files(catalog, rich_query("artist", "linkin park", bitrate=128, seconds=5))
    assert names(got) == {"01 numb.mp3"}
    assert names(matching_files(catalog, rich_query("title", "numb", bitrate=200))) == {
        "linkin park covers - numb.mp3"
    }  # fmt: skip


@dataclass
class Plain:
    """A shared file in memory with tags, for shares that cannot filter."""

    index: int
    name: str
    size: int
    artist: str | None = None
    bitrate: int | None = None
    duration: float | None = None


class ListShares:
    def __init__(self, files: list[Plain]) -> None:
        self.files = files

    def search(self, text: str, *, limit: int = 100) -> list[Plain]:
        words = text.lower().split()
        found = [f for f in self.files if all(w in f"{f.name} {f.artist}".lower() for w in words)]
        return found[:limit]


def test_shares_without_fields_are_filtered_by_their_tags() -> None:
    shares = ListShares([
        Plain(1, "numb.mp3", 10, "Linkin Park", 192, 180.0),
        Plain(2, "faint.mp3", 10, "Linkin Park", 96, 160.0),
        Plain(3, "linkin park - numb (cover).mp3", 10, "Other", 256, 170.0),
        Plain(4, "papercut.mp3", 10, "Linkin Park", None, 180.0),
    ])  # fmt: skip
    got = matching_files(shares, rich_query("artist", "linkin park", bitrate=128))
    assert [f.index for f in got] == [1]
    # A garbage rich query is answered on its keywords alone.
    bad = GQuery("linkin park", FLAGS, xml="<audios><audio artist='&boom;'/></audios>")
    assert [f.index for f in matching_files(shares, bad)] == [1, 2, 3, 4]


def test_hits_carry_the_records_the_searcher_reads_back(catalog: Catalog) -> None:
    query = rich_query("artist", "linkin park", bitrate=128)
    files = matching_files(catalog, query)
    (hit,) = build_query_hits(query, files, ME)
    back = decode_payload(QueryHit.TYPE, encode_payload(hit))
    assert isinstance(back, QueryHit) and back.xml is not None
    records = {r.index: r.fields() for r in parse_xml_records(back.xml)}
    by_name = {r.name: records[i] for i, r in enumerate(back.results)}
    # Whole seconds, as LimeWire's schema has them (the MP3 is 8 s give or take a frame).
    seconds = int(next(f.duration for f in files if f.name == "01 numb.mp3"))
    assert seconds in (7, 8)
    assert by_name["01 numb.mp3"] == {"title": "Numb", "artist": "Linkin Park",
                                      "album": "Meteora", "genre": "Rock", "bitrate": "192",
                                      "seconds": str(seconds)}  # fmt: skip
    search = Search(b"g" * 16, "linkin park", 3, 0.0, None)
    assert search.add_hit(back, 0) == 2
    meta = {r.name: result_metadata(r.metadata) for r in search.results.values()}
    assert meta["01 numb.mp3"] == {"title": "Numb", "artist": "Linkin Park", "album": "Meteora",
                                   "genre": "Rock", "bitrate": 192, "duration": seconds,
                                   "kind": "audio"}  # fmt: skip
    assert meta["in the end (live).mp3"]["bitrate"] == 160


def test_a_hit_with_garbage_xml_keeps_its_results_and_counts_the_xml() -> None:
    hit = QueryHit(
        port=1, ip="127.0.0.1", speed=1, servent_guid=bytes(16), vendor="LIME",
        push=False, busy=False, stable=False, speed_measured=False,
        results=(QueryHitResult(0, 5, "numb.mp3", ("urn:sha1:" + "A" * 32,)),),
        xml="<audios><audio title='&lol9;' index='0'/></audios>",
    )  # fmt: skip
    search = Search(b"g" * 16, "numb", 3, 0.0, None)
    assert search.add_hit(hit, 1) == 1
    assert search.bad_xml == 1
    (result,) = search.results.values()
    assert result.metadata == {} and result.name == "numb.mp3"


def test_no_xml_unless_the_query_asks(tmp_path: Path, catalog: Catalog) -> None:
    plain = GQuery("numb", int(QueryFlags.MARK))
    (hit,) = build_query_hits(plain, matching_files(catalog, plain), ME)
    assert hit.xml is None

