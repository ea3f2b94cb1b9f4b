"""Metainfo (BEP 3, 12, 19, 27, 47, 52's v1 part): fields, the info-hash over
the original bytes, hostile names refused, absurd sizes refused, garbage."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from btmetakit import PIECE, multi_info, pieces_of, pseudo_random, single_info, torrent
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.bencode import decode, decode_with_spans, encode
from peerlab.wire.magnet import parse_magnet
from peerlab.wire.metainfo import (
    MAX_COMPONENT_BYTES,
    MAX_PATH_BYTES,
    MAX_PATH_COMPONENTS,
    MAX_PIECE_LENGTH,
    MAX_PIECES,
    MAX_TOTAL_SIZE,
    MAX_TRACKERS,
    Info,
    Metainfo,
    check_file_path,
    parse_metainfo,
    path_component_problem,
)

# ------------------------------------------------------------------ basics


def test_single_file_torrent_fields_and_info_hash() -> None:
    data = pseudo_random(40000)
    info = {"length": 40000, "name": "song.mp3", "piece length": PIECE,
            "pieces": pieces_of(data)}
    raw = torrent(info, {"announce": "http://127.0.0.1:6969/announce", "comment": "hi",
                         "created by": "hand", "creation date": 1_700_000_000})
    meta = parse_metainfo(raw)
    assert meta.info_hash == hashlib.sha1(encode(info)).digest()
    assert meta.info.name == "song.mp3"
    assert not meta.info.multi_file
    assert meta.info.total_size == 40000
    assert meta.info.piece_count == 3
    assert [meta.info.piece_size(i) for i in range(3)] == [PIECE, PIECE, 40000 - 2 * PIECE]
    assert meta.info.piece_hash(2) == hashlib.sha1(data[2 * PIECE:]).digest()
    assert [(f.path, f.length, f.offset) for f in meta.info.files] == [(("song.mp3",), 40000, 0)]
    assert meta.announce == "http://127.0.0.1:6969/announce"
    assert meta.trackers == (("http://127.0.0.1:6969/announce",),)
    assert (meta.comment, meta.created_by, meta.creation_date) == ("hi", "hand", 1_700_000_000)
    assert not meta.info.private
    with pytest.raises(IndexError):
        meta.info.piece_hash(3)
    with pytest.raises(IndexError):
        meta.info.piece_size(-1)


def test_multi_file_torrent_paths_and_offsets() -> None:
    files = [(["a.bin"], 100), (["sub", "b.bin"], 0), (["sub", "deeper", "c.bin"], 40000)]
    meta = parse_metainfo(torrent(multi_info(files, name="album")))
    assert meta.info.multi_file
    assert [(f.name, f.length, f.offset) for f in meta.info.files] == [
        ("album/a.bin", 100, 0), ("album/sub/b.bin", 0, 100),
        ("album/sub/deeper/c.bin", 40000, 100)]
    assert meta.info.total_size == 40100
    assert meta.info.piece_count == 3
    assert meta.trackers == ()


def test_info_hash_is_taken_over_the_original_bytes() -> None:
    # Unknown keys inside info are part of the hash (BEP 3 hashes the bencoded
    # info value as it is); keys outside it are not.
    info = single_info(**{"source": "TRACKER-X", "x-cross-seed": b"\x00\x01"})
    raw = torrent(info, {"announce": "http://a/announce"})
    decoded = decode_with_spans(raw)
    expected = hashlib.sha1(decoded.raw(b"info")).digest()
    meta = parse_metainfo(raw)
    assert meta.info_hash == expected
    assert meta.info.raw == decoded.raw(b"info")
    assert parse_metainfo(torrent(info, {"comment": "other"})).info_hash == expected
    assert Info.from_bytes(meta.info.raw).info_hash == expected
    assert parse_metainfo(torrent(single_info())).info_hash != expected


def test_to_bytes_keeps_every_byte_of_a_canonical_torrent() -> None:
    raw = torrent(single_info(), {
        "announce": "http://a/1",
        "announce-list": [["http://a/1", "http://b/1"], ["udp://c:80"]],
        "url-list": ["http://seed/", "http://seed2/"], "comment": "c", "created by": "x",
        "creation date": 5, "encoding": "UTF-8", "piece layers": {b"k": b"v"},
        "nodes": [["127.0.0.1", 6881]],
    })
    meta = parse_metainfo(raw)
    assert meta.to_bytes() == raw
    assert meta.nodes == (("127.0.0.1", 6881),)


def test_announce_list_bep12() -> None:
    raw = torrent(single_info(), {
        "announce": "http://ignored/announce",
        "announce-list": [["http://a/1", "http://b/1"], [], ["udp://c:80/announce"]],
    })
    meta = parse_metainfo(raw)
    assert meta.trackers == (("http://a/1", "http://b/1"), ("udp://c:80/announce",))
    assert meta.magnet().trackers == ("http://a/1", "http://b/1", "udp://c:80/announce")


def test_create_writes_announce_and_announce_list() -> None:
    info = Info.create("x.bin", PIECE, bytes(20), length=10)
    one = Metainfo.create(info, trackers=[["http://a/1"]])
    assert decode(one.to_bytes())[b"announce"] == b"http://a/1"  # type: ignore[index]
    assert b"announce-list" not in decode(one.to_bytes())  # type: ignore[operator]
    many = Metainfo.create(info, trackers=[["http://a/1", "http://b/1"], ["udp://c:1"]])
    top = decode(many.to_bytes())
    assert isinstance(top, dict)
    assert top[b"announce"] == b"http://a/1"
    assert top[b"announce-list"] == [[b"http://a/1", b"http://b/1"], [b"udp://c:1"]]
    again = parse_metainfo(many.to_bytes())
    assert again.trackers == many.trackers
    assert again.info_hash == info.info_hash
    with pytest.raises(LocalProtocolError):
        Metainfo.create(info, trackers=[["http://a/\n"]])


def test_private_flag_bep27() -> None:
    assert parse_metainfo(torrent(single_info(private=1))).info.private
    assert not parse_metainfo(torrent(single_info(private=0))).info.private
    assert not parse_metainfo(torrent(single_info())).info.private
    info = Info.create("x.bin", PIECE, bytes(20), length=10, private=True)
    assert info.private and decode(info.raw)[b"private"] == 1  # type: ignore[index]
    # The flag is inside info: it changes the info-hash.
    assert info.info_hash != Info.create("x.bin", PIECE, bytes(20), length=10).info_hash
    with pytest.raises(RemoteProtocolError, match="private"):
        parse_metainfo(torrent(single_info(private=b"yes")))


def test_url_list_bep19_string_or_list() -> None:
    assert parse_metainfo(torrent(single_info(), {"url-list": "http://s/f"})).url_list == (
        "http://s/f",)
    assert parse_metainfo(torrent(single_info(), {"url-list": ["http://s/", ""]})).url_list == (
        "http://s/",)
    assert parse_metainfo(torrent(single_info())).url_list == ()
    with pytest.raises(RemoteProtocolError, match="url-list"):
        parse_metainfo(torrent(single_info(), {"url-list": 5}))


def test_padding_files_bep47() -> None:
    info = multi_info([(["a"], 100), ([".pad", "16284"], PIECE - 100), (["b"], 10),
                       ([".pad", "16284"], PIECE - 100)])
    info["files"][1]["attr"] = "p"
    info["files"][3]["attr"] = "p"
    info["files"][2]["attr"] = "xh"
    meta = parse_metainfo(torrent(info))
    assert [f.padding for f in meta.info.files] == [False, True, False, True]
    assert [f.name for f in meta.info.data_files] == ["folder/a", "folder/b"]
    assert meta.info.files[2].executable and meta.info.files[2].hidden
    assert meta.info.files[2].offset == PIECE


def test_symlinks_are_refused() -> None:
    info = multi_info([(["a"], 100), (["link"], 0)])
    info["files"][1]["attr"] = "l"
    info["files"][1]["symlink path"] = ["..", "..", "etc", "passwd"]
    with pytest.raises(RemoteProtocolError, match="symbolic link"):
        parse_metainfo(torrent(info))


def test_v2_only_torrent_is_refused_clearly() -> None:
    info = {"meta version": 2, "name": "x", "piece length": PIECE,
            "file tree": {"x": {"": {"length": 10, "pieces root": bytes(32)}}}}
    with pytest.raises(RemoteProtocolError, match="v2-only"):
        parse_metainfo(torrent(info))


def test_hybrid_keeps_its_v2_hash() -> None:
    info = single_info(**{"meta version": 2, "file tree": {"file.bin": {"": {
        "length": 40000, "pieces root": bytes(32)}}}})
    meta = parse_metainfo(torrent(info))
    assert meta.info.info_hash_v2 == hashlib.sha256(encode(info)).digest()
    magnet = meta.magnet()
    assert magnet.info_hash_v2 == meta.info.info_hash_v2
    assert parse_magnet(magnet.to_uri()) == magnet


def test_legacy_name_utf8_twin() -> None:
    info = single_info(name=b"caf\xe9.txt", **{"name.utf-8": "café.txt"})
    assert parse_metainfo(torrent(info)).info.name == "café.txt"
    with pytest.raises(RemoteProtocolError, match="not UTF-8"):
        parse_metainfo(torrent(single_info(name=b"caf\xe9.txt")))
    files = multi_info([([b"caf\xe9"], 10)])
    files["files"][0]["path.utf-8"] = ["café"]
    assert parse_metainfo(torrent(files)).info.files[0].path == ("folder", "café")


def test_free_text_cannot_carry_terminal_escapes() -> None:
    meta = parse_metainfo(torrent(single_info(), {"comment": b"a\x1b[2Jb\nc\xff"}))
    assert meta.comment == "a\ufffd[2Jb\nc\ufffd"


def test_magnet_of_a_torrent() -> None:
    meta = parse_metainfo(torrent(single_info(name="a b+c"), {
        "announce-list": [["http://t/a"], ["udp://u:1"]], "url-list": "http://ws/"}))
    uri = meta.magnet().to_uri()
    assert uri.startswith("magnet:?xt=urn:btih:" + meta.info_hash.hex() + "&dn=a%20b%2Bc&")
    back = parse_magnet(uri)
    assert back.info_hash == meta.info_hash
    assert back.display_name == "a b+c"
    assert back.trackers == ("http://t/a", "udp://u:1")
    assert back.web_seeds == ("http://ws/",)


def test_info_create_refuses_what_it_would_not_read() -> None:
    with pytest.raises(LocalProtocolError, match="unsafe"):
        Info.create("..", PIECE, bytes(20), length=10)
    with pytest.raises(LocalProtocolError, match="unsafe"):
        Info.create("ok", PIECE, bytes(20), files=[(("a", "con.txt"), 10)])
    with pytest.raises(LocalProtocolError, match="piece hashes"):
        Info.create("ok", PIECE, bytes(40), length=10)
    with pytest.raises(LocalProtocolError):
        Info.create("ok", PIECE, bytes(20))


# ------------------------------------------------------------------ names

HOSTILE_COMPONENTS = [
    "", ".", "..", "...", ". .", ".. ", "a/b", "/etc", "a\\b", "..\\..\\evil", "C:", "C:evil",
    "file:stream", "con", "CON", "Con.txt", "nul", "NUL.tar.gz", "aux", "prn", "com1",
    "COM9.log", "lpt1", "LPT3.txt", "COM\u00b9", "conin$", "CONOUT$", "clock$", "con.",
    "con ", "nul .txt", "a\x00b", "a\nb", "tab\there", "\x1b[31mred", "del\x7f",
    "evil\u202efdp.exe", "x" * (MAX_COMPONENT_BYTES + 1), "é" * 128,
]


@pytest.mark.parametrize("component", HOSTILE_COMPONENTS)
def test_hostile_component_is_named(component: str) -> None:
    assert path_component_problem(component) is not None


@pytest.mark.parametrize("component", HOSTILE_COMPONENTS)
def test_hostile_torrent_name_is_refused(component: str) -> None:
    with pytest.raises(RemoteProtocolError, match="unsafe file name"):
        parse_metainfo(torrent(single_info(name=component)))


@pytest.mark.parametrize("component", HOSTILE_COMPONENTS)
def test_hostile_path_component_is_refused(component: str) -> None:
    files = [(["ok.txt"], 10), (["sub", component, "f.bin"], 10)]
    with pytest.raises(RemoteProtocolError, match="unsafe file name"):
        parse_metainfo(torrent(multi_info(files)))
    with pytest.raises(RemoteProtocolError, match="unsafe file name"):
        parse_metainfo(torrent(multi_info([([component], 10)])))


@pytest.mark.parametrize("name", [
    "Vol. 1", "Mr.", ".hidden", ".pad", "con-artist.txt", "CONSOLE", "a.con", "nul2",
    "com10", "lpt", "日本語の歌.flac", "Ärger.mp3", "What?.mp3", "a<b>|*\"", "x" * 255,
    "é" * 127, "emoji \U0001f3b5.ogg", "trailing space ", "zero\u200dwidth",
])
def test_ordinary_names_pass(name: str) -> None:
    assert path_component_problem(name) is None
    assert parse_metainfo(torrent(single_info(name=name))).info.name == name
    meta = parse_metainfo(torrent(multi_info([(["d", name], 10)])))
    assert meta.info.files[0].path == ("folder", "d", name)


def test_empty_path_and_path_bounds() -> None:
    with pytest.raises(RemoteProtocolError, match="path"):
        parse_metainfo(torrent(multi_info([([], 10)])))
    deep = ["d"] * MAX_PATH_COMPONENTS  # plus the torrent's name: one too deep
    with pytest.raises(RemoteProtocolError, match="deeper"):
        parse_metainfo(torrent(multi_info([(deep, 10)])))
    parse_metainfo(torrent(multi_info([(deep[:-1], 10)])))
    long_path = ["x" * 200] * (MAX_PATH_BYTES // 200 + 1)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        parse_metainfo(torrent(multi_info([(long_path, 10)])))
    with pytest.raises(RemoteProtocolError):
        check_file_path(())


@pytest.mark.parametrize("paths", [
    [["a.txt"], ["a.txt"]],
    [["A.txt"], ["a.txt"]],
    [["Straße"], ["STRASSE"]],
    [["caf\u00e9"], ["cafe\u0301"]],  # NFC vs NFD: one name on macOS
    [["a"], ["a", "b"]],  # a file where a folder must go
    [["a", "b"], ["a"]],
    [["D", "x"], ["d"]],
])
def test_colliding_paths_are_refused(paths: list[list[str]]) -> None:
    with pytest.raises(RemoteProtocolError, match="same path|a file and a folder"):
        parse_metainfo(torrent(multi_info([(p, 10) for p in paths])))


def test_a_folder_shared_by_files_is_fine() -> None:
    meta = parse_metainfo(torrent(multi_info([(["a", "x"], 10), (["a", "y"], 10)])))
    assert [f.name for f in meta.info.files] == ["folder/a/x", "folder/a/y"]


# ------------------------------------------------------------------ bounds

def _refused(info: dict[str, Any], match: str, top: dict[str, Any] | None = None) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        parse_metainfo(torrent(info, top))


def test_structure_errors_say_what_is_wrong() -> None:
    with pytest.raises(RemoteProtocolError, match="no info"):
        parse_metainfo(encode({"announce": "http://a/"}))
    with pytest.raises(RemoteProtocolError, match="dictionary"):
        parse_metainfo(b"li1ee")
    _refused({"length": 10, "piece length": PIECE, "pieces": bytes(20)}, "name")
    _refused(single_info(**{"piece length": b"16384"}), "piece length")
    both = single_info()
    both["files"] = [{"length": 1, "path": ["a"]}]
    _refused(both, "exactly one")
    neither = single_info()
    del neither["length"]
    _refused(neither, "exactly one")
    _refused(multi_info([]) | {"pieces": b""}, "non-empty list")
    _refused(single_info(name=5), "name")
    bad_files = multi_info([(["a"], 10)])
    bad_files["files"] = [b"a"]
    _refused(bad_files, "not a dictionary")
    bad_path = multi_info([(["a"], 10)])
    bad_path["files"][0]["path"] = "a"
    _refused(bad_path, "path")
    _refused(single_info(), "announce-list", {"announce-list": "http://a/"})
    _refused(single_info(), "tier", {"announce-list": ["http://a/"]})
    _refused(single_info(), "announce", {"announce": 7})
    _refused(single_info(), "creation date", {"creation date": "today"})
    _refused(single_info(), "DHT node", {"nodes": [["h"]]})


@pytest.mark.parametrize(("changes", "match"), [
    ({"piece length": 0}, "piece length"),
    ({"piece length": -PIECE}, "piece length"),
    ({"piece length": MAX_PIECE_LENGTH * 2}, "piece length"),
    ({"length": -1}, "length"),
    ({"length": MAX_TOTAL_SIZE + 1}, "length"),
    ({"length": 0, "pieces": b""}, "no bytes"),
    ({"pieces": bytes(19 + 40)}, "20-byte"),
    ({"pieces": bytes(20 * 2)}, "needs 3"),  # 40000 bytes are 3 pieces, not 2
    ({"pieces": bytes(20 * 4)}, "needs 3"),
    ({"pieces": b""}, "needs 3"),
    ({"length": 10**13}, "needs"),  # ten terabytes claimed with three hashes
])
def test_absurd_sizes_are_refused(changes: dict[str, Any], match: str) -> None:
    info = single_info()
    info.update(changes)
    _refused(info, match)


def test_too_many_pieces_is_refused() -> None:
    count = MAX_PIECES + 1
    info = single_info(length=count * 1024, **{"piece length": 1024,
                                               "pieces": bytes(20 * count)})
    _refused(info, "more than")


def test_total_size_bound_over_many_files() -> None:
    files = [([f"f{i}"], MAX_TOTAL_SIZE // 2) for i in range(3)]
    _refused(multi_info(files, piece_length=MAX_PIECE_LENGTH, pieces=bytes(20)), "total size")


def test_tracker_count_bound() -> None:
    tiers = [[f"http://t{i}/a"] for i in range(MAX_TRACKERS + 1)]
    _refused(single_info(), "trackers", {"announce-list": tiers})


# ------------------------------------------------------------------ garbage

_SEED_TORRENT = torrent(multi_info([(["a"], 20000), (["b", "c"], 30000)]), {
    "announce": "http://a/announce", "announce-list": [["http://a/announce"], ["udp://b:1"]],
    "url-list": "http://ws/", "comment": "x", "creation date": 1})


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_torrents_raise_only_remote_protocol_error(data: st.DataObject) -> None:
    raw = bytearray(_SEED_TORRENT)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del raw[pos : pos + data.draw(st.integers(1, 8))]
        if not raw:
            raw = bytearray(b"x")
    try:
        meta = parse_metainfo(bytes(raw))
    except RemoteProtocolError:
        return
    # Whatever is accepted is written back to an equal torrent, info byte for byte.
    assert parse_metainfo(meta.to_bytes()) == meta
    assert decode_with_spans(bytes(raw)).raw(b"info") == meta.info.raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_remote_protocol_error(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_metainfo(raw)
    with pytest.raises(RemoteProtocolError):
        Info.from_bytes(raw)


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(names)
def test_any_name_is_either_refused_or_safe(name: str) -> None:
    problem = path_component_problem(name)
    try:
        meta = parse_metainfo(torrent(single_info(name=name)))
    except RemoteProtocolError:
        assert problem is not None
        return
    assert problem is None
    assert meta.info.name == name
    assert "/" not in name and "\\" not in name and name not in (".", "..")
