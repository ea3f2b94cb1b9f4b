"""The Napster md5 the catalog computes at scan time (napster.txt, "MD5")."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from peerlab.apps.media import write_mp3
from peerlab.storage.catalog import NAPSTER_MD5_BYTES, Catalog, napster_md5


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def test_md5_skips_an_id3v2_tag_then_hashes_299008_bytes(tmp_path: Path) -> None:
    body = os.urandom(NAPSTER_MD5_BYTES + 5000)
    tag = b"ID3\x03\x00\x00" + _syncsafe(300) + b"\x00" * 300
    p = tmp_path / "a.mp3"
    p.write_bytes(tag + body)
    assert napster_md5(p) == hashlib.md5(body[:NAPSTER_MD5_BYTES]).hexdigest()


def test_md5_of_a_footer_tag_and_of_a_short_file(tmp_path: Path) -> None:
    body = b"\xff\xfb" + b"x" * 1000
    tag = b"ID3\x04\x00\x10" + _syncsafe(20) + b"\x00" * 20 + b"3DI" + b"\x00" * 7
    p = tmp_path / "b.mp3"
    p.write_bytes(tag + body)
    assert napster_md5(p) == hashlib.md5(body).hexdigest()


def test_a_tag_claiming_more_than_the_file_is_not_skipped(tmp_path: Path) -> None:
    data = b"ID3\x03\x00\x00" + _syncsafe(1 << 20) + b"short"
    p = tmp_path / "c.bin"
    p.write_bytes(data)
    assert napster_md5(p) == hashlib.md5(data).hexdigest()
    plain = tmp_path / "d.txt"
    plain.write_bytes(b"no tag here")
    assert napster_md5(plain) == hashlib.md5(b"no tag here").hexdigest()


def test_catalog_stores_the_md5_and_finds_files_by_it(tmp_path: Path) -> None:
    share = tmp_path / "share"
    song = write_mp3(share / "Little Toot.mp3", title="Little Toot", artist="A", album="B",
                     genre="C", seconds=30, bitrate_kbps=128, seed=1)
    with Catalog(tmp_path / "cat.db") as cat:
        cat.add_folder(share)
        cat.scan()
        [f] = cat.files()
        assert f.napster_md5 == napster_md5(song)
        assert len(f.napster_md5) == 32
        found = cat.by_napster_md5(f.napster_md5.upper(), f.size)
        assert found is not None and found.index == f.index
        assert cat.by_napster_md5(f.napster_md5, f.size + 1) is None
    # A rescan of an unchanged file keeps it; reopening keeps it too.
    with Catalog(tmp_path / "cat.db") as cat:
        cat.scan()
        assert cat.files()[0].napster_md5 == napster_md5(song)
