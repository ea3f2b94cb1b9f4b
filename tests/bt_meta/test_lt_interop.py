"""Interop with libtorrent (PyPI ``libtorrent`` 2.x, a real BitTorrent engine):
our torrents load in libtorrent with the same info-hash, files and pieces
(libtorrent even checks our piece hashes against the data), libtorrent's
torrents (v1 and hybrid v1+v2) load in peerlab with the same info-hash, and
magnet links agree both ways."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from btmetakit import pseudo_random, write_tree

from peerlab.storage.torrent_hash import hash_torrent
from peerlab.wire.magnet import Magnet, parse_magnet
from peerlab.wire.metainfo import Metainfo, parse_metainfo

lt = pytest.importorskip("libtorrent")

#: Longest wait for libtorrent to check a torrent's data (seconds).
CHECK_DEADLINE = 30.0

FILES = {
    "a.bin": pseudo_random(100_000, 1),
    "sub/b.bin": pseudo_random(70_000, 2),
    "sub/deeper/c.txt": pseudo_random(33_333, 3),
    "z": pseudo_random(1, 4),
}


def _lt_files(ti: Any) -> list[tuple[str, int]]:
    fs = ti.layout()
    return [(fs.file_path(i), fs.file_size(i)) for i in range(fs.num_files())
            if not fs.file_flags(i) & fs.flag_pad_file]


def _ours_to_lt(meta: Metainfo) -> Any:
    return lt.torrent_info(meta.to_bytes())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "data" / "Shared Stuff", FILES)


def test_our_multi_file_torrent_loads_in_libtorrent(folder: Path) -> None:
    info = hash_torrent(folder, 16384, private=True)
    meta = Metainfo.create(info, trackers=[["http://127.0.0.1:6969/announce"],
                                           ["udp://127.0.0.1:6969", "http://127.0.0.1:1/a"]],
                           url_list=["http://127.0.0.1:8000/"], comment="c", created_by="me",
                           creation_date=1_700_000_000)
    ti = _ours_to_lt(meta)
    assert str(ti.info_hashes().v1) == meta.info_hash.hex()
    assert not ti.info_hashes().has_v2()
    assert ti.name() == "Shared Stuff"
    assert _lt_files(ti) == [(f.name, f.length) for f in info.files]
    assert ti.num_pieces() == info.piece_count
    assert ti.piece_length() == 16384
    assert ti.total_size() == info.total_size
    assert all(bytes(ti.hash_for_piece(i)) == info.piece_hash(i) for i in range(ti.num_pieces()))
    assert ti.priv()
    params = lt.load_torrent_buffer(meta.to_bytes())
    assert list(zip(params.trackers, params.tracker_tiers, strict=True)) == [
        ("http://127.0.0.1:6969/announce", 0), ("udp://127.0.0.1:6969", 1),
        ("http://127.0.0.1:1/a", 1)]
    assert list(params.url_seeds) == ["http://127.0.0.1:8000/"]
    assert (ti.comment(), ti.creator()) == ("c", "me")
    # libtorrent's magnet for our torrent names the same content.
    back = parse_magnet(lt.make_magnet_uri(ti))
    assert back.info_hash == meta.info_hash
    assert back.display_name == "Shared Stuff"


def test_our_single_file_torrent_loads_in_libtorrent(tmp_path: Path) -> None:
    (tmp_path / "one file.bin").write_bytes(pseudo_random(200_001))
    info = hash_torrent(tmp_path / "one file.bin", 32768)
    ti = _ours_to_lt(Metainfo.create(info))
    assert str(ti.info_hashes().v1) == info.info_hash.hex()
    assert _lt_files(ti) == [("one file.bin", 200_001)]
    assert not ti.priv()


def test_libtorrent_finds_our_pieces_correct(folder: Path) -> None:
    """libtorrent hashes the files itself and compares with our piece hashes:
    all of them must match for it to call the torrent complete (seeding)."""
    info = hash_torrent(folder, 16384)
    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_outgoing_utp": False, "enable_incoming_utp": False,
    })
    try:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(Metainfo.create(info).to_bytes())
        params.save_path = str(folder.parent)
        handle = ses.add_torrent(params)
        deadline = time.monotonic() + CHECK_DEADLINE
        status = handle.status()
        while time.monotonic() < deadline:
            status = handle.status()
            if status.is_seeding or status.state == lt.torrent_status.seeding:
                break
            time.sleep(0.05)
        assert status.is_seeding, status.state
        assert status.num_pieces == info.piece_count
        assert status.total_wanted_done == info.total_size
    finally:
        ses.pause()
        del ses


@pytest.mark.parametrize("hybrid", [False, True])
def test_libtorrent_torrent_loads_in_peerlab(folder: Path, hybrid: bool) -> None:
    entries = lt.list_files(str(folder))
    flags = 0 if hybrid else lt.create_torrent.v1_only
    ct = lt.create_torrent(entries, 16384, flags)
    ct.add_tracker("http://127.0.0.1:6969/announce", 0)
    ct.add_tracker("udp://127.0.0.1:6969", 1)
    ct.add_url_seed("http://127.0.0.1:8000/")
    ct.set_priv(True)
    ct.set_comment("made by libtorrent")
    lt.set_piece_hashes(ct, str(folder.parent))
    data = lt.bencode(ct.generate())
    ti = lt.torrent_info(data)

    meta = parse_metainfo(data)
    assert meta.info_hash.hex() == str(ti.info_hashes().v1)
    if hybrid:
        assert meta.info.info_hash_v2 is not None
        assert meta.info.info_hash_v2.hex() == str(ti.info_hashes().v2)
        assert any(f.padding for f in meta.info.files)
    else:
        assert meta.info.info_hash_v2 is None
    assert [(f.name, f.length) for f in meta.info.data_files] == _lt_files(ti)
    assert sorted(f.name for f in meta.info.data_files) == sorted(
        f"Shared Stuff/{rel}" for rel in FILES)
    assert meta.info.piece_count == ti.num_pieces()
    assert all(meta.info.piece_hash(i) == bytes(ti.hash_for_piece(i))
               for i in range(ti.num_pieces()))
    assert meta.info.private
    assert meta.trackers == (("http://127.0.0.1:6969/announce",), ("udp://127.0.0.1:6969",))
    assert meta.url_list == ("http://127.0.0.1:8000/",)
    assert meta.comment == "made by libtorrent"
    # Written back, it is the same torrent for libtorrent (piece layers included).
    assert meta.to_bytes() == data
    # For a v1 torrent (no padding) our own hashing of the folder agrees.
    if not hybrid:
        assert hash_torrent(folder, 16384, private=True).pieces == meta.info.pieces


def test_magnets_agree_with_libtorrent() -> None:
    v1 = bytes(range(20))
    v2 = bytes(range(100, 132))
    ours = Magnet(v1, v2, "Little Toot & friends",
                  ("http://127.0.0.1:6969/announce?k=1&x=2", "udp://127.0.0.1:6969"),
                  (("127.0.0.1", 6881), ("::1", 51413)))
    p = lt.parse_magnet_uri(ours.to_uri())
    assert bytes(p.info_hashes.v1.to_bytes()) == v1
    assert bytes(p.info_hashes.v2.to_bytes()) == v2
    assert p.name == "Little Toot & friends"
    assert list(p.trackers) == list(ours.trackers)
    assert [(str(h), port) for h, port in p.peers] == [("127.0.0.1", 6881), ("::1", 51413)]

    b32 = "magnet:?xt=urn:btih:AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT&dn=x+y&tr=udp%3a%2f%2ft%3a1"
    p = lt.parse_magnet_uri(b32)
    m = parse_magnet(b32)
    assert m.info_hash == bytes(p.info_hashes.v1.to_bytes())
    assert (m.display_name, m.trackers) == (p.name, tuple(p.trackers))


def test_libtorrent_magnets_parse_in_peerlab(folder: Path) -> None:
    entries = lt.list_files(str(folder))
    ct = lt.create_torrent(entries, 16384, 0)
    ct.add_tracker("http://127.0.0.1:6969/announce")
    lt.set_piece_hashes(ct, str(folder.parent))
    ti = lt.torrent_info(lt.bencode(ct.generate()))
    uri = lt.make_magnet_uri(ti)
    m = parse_magnet(uri)
    assert m.info_hash is not None and m.info_hash.hex() == str(ti.info_hashes().v1)
    assert m.info_hash_v2 is not None and m.info_hash_v2.hex() == str(ti.info_hashes().v2)
    assert m.display_name == "Shared Stuff"
    assert m.trackers == ("http://127.0.0.1:6969/announce",)
    # And ours for the same torrent is the same link, give or take hex case.
    ours = parse_metainfo(lt.bencode(ct.generate())).magnet().to_uri()
    assert ours.lower() == uri.lower()
