"""``peerlab torrent create`` / ``info``: the files they write and read, and
every user mistake as one line on stderr with a non-zero exit status."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from btmetakit import pieces_of, pseudo_random, single_info, torrent, write_tree

from peerlab.cli.torrent import main, parse_piece_size
from peerlab.errors import ConfigError
from peerlab.wire.magnet import parse_magnet
from peerlab.wire.metainfo import parse_metainfo


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Callable[..., Run]:
    """``peerlab torrent ARGS`` in this process, in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def go(*args: str) -> Run:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        captured = capsys.readouterr()
        code = exit_info.value.code
        return Run(code if isinstance(code, int) else 0, captured.out, captured.err)

    return go


def _one_line_error(r: Run) -> str:
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err
    return lines[0]


def test_create_a_folder_and_read_it_back(run: Callable[..., Run], tmp_path: Path) -> None:
    data = {"a.bin": pseudo_random(50_000, 1), "sub/b.bin": pseudo_random(20_000, 2)}
    write_tree(tmp_path / "Album", data)
    r = run("create", "Album", "--tracker", "http://127.0.0.1:6969/announce",
            "-t", "udp://127.0.0.1:6969,http://127.0.0.1:1/announce", "--piece-size", "16K",
            "--private", "--web-seed", "http://127.0.0.1:8000/", "--comment", "for the test")
    assert r.code == 0, r.err
    meta = parse_metainfo((tmp_path / "Album.torrent").read_bytes())
    assert meta.info.name == "Album"
    assert meta.info.piece_length == 16384
    assert meta.info.pieces == pieces_of(data["a.bin"] + data["sub/b.bin"], 16384)
    assert meta.info.private
    assert meta.trackers == (("http://127.0.0.1:6969/announce",),
                             ("udp://127.0.0.1:6969", "http://127.0.0.1:1/announce"))
    assert meta.url_list == ("http://127.0.0.1:8000/",)
    assert meta.comment == "for the test"
    assert meta.created_by and meta.created_by.startswith("peerlab ")
    assert meta.info_hash.hex() in r.out
    assert meta.magnet().to_uri() in r.out

    info = run("info", "Album.torrent")
    assert info.code == 0, info.err
    for text in ("Album", meta.info_hash.hex(), "70000 bytes", "5 x 16 KiB", "yes",
                 "udp://127.0.0.1:6969 http://127.0.0.1:1/announce", "Album/sub/b.bin",
                 "for the test", meta.magnet().to_uri()):
        assert text in info.out, text

    as_json = json.loads(run("info", "Album.torrent", "--json").out)
    assert as_json["info_hash"] == meta.info_hash.hex()
    assert as_json["size"] == 70_000
    assert as_json["piece_length"] == 16384 and as_json["piece_count"] == 5
    assert as_json["private"] is True
    assert as_json["files"] == [
        {"path": "Album/a.bin", "size": 50_000, "offset": 0},
        {"path": "Album/sub/b.bin", "size": 20_000, "offset": 50_000}]
    assert as_json["trackers"] == [list(t) for t in meta.trackers]
    assert parse_magnet(as_json["magnet"]).info_hash == meta.info_hash


def test_create_a_single_file_with_automatic_piece_size_and_output(
        run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "song.mp3").write_bytes(pseudo_random(100_000))
    r = run("create", str(tmp_path / "song.mp3"), "-o", "out/x.torrent")
    assert r.code == 1  # the output folder does not exist: one line
    _one_line_error(r)
    (tmp_path / "out").mkdir()
    r = run("create", str(tmp_path / "song.mp3"), "-o", "out/x.torrent")
    assert r.code == 0, r.err
    meta = parse_metainfo((tmp_path / "out" / "x.torrent").read_bytes())
    assert not meta.info.multi_file
    assert meta.info.piece_length == 16384
    assert meta.trackers == ()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.torrent"]  # no temp left


def test_existing_output_needs_force(run: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"one")
    assert run("create", "f").code == 0
    first = (tmp_path / "f.torrent").read_bytes()
    (tmp_path / "f").write_bytes(b"two")
    r = run("create", "f")
    assert r.code == 1
    assert "exists" in _one_line_error(r)
    assert (tmp_path / "f.torrent").read_bytes() == first
    assert run("create", "f", "--force").code == 0
    assert (tmp_path / "f.torrent").read_bytes() != first


@pytest.mark.parametrize(("args", "words"), [
    (["create", "missing"], "no such file or folder"),
    (["create", "f", "--piece-size", "3K"], "power of two"),
    (["create", "f", "--piece-size", "64M"], "power of two"),
    (["create", "f", "--piece-size", "lots"], "not a piece size"),
    (["create", "f", "--tracker", "ftp://x/"], "not a tracker URL"),
    (["create", "f", "--tracker", "127.0.0.1:6969"], "not a tracker URL"),
    (["create", "f", "--web-seed", "udp://x/"], "not a web seed URL"),
    (["create", "empty"], "empty"),
    (["create", "bad"], "cannot put"),
    (["info", "missing.torrent"], "no such file"),
    (["info", "f"], "is not a valid torrent"),
    (["info", "hostile.torrent"], "unsafe file name"),
    (["info", "sub"], "folder"),
])
def test_user_errors_are_one_line(run: Callable[..., Run], tmp_path: Path, args: list[str],
                                  words: str) -> None:
    (tmp_path / "f").write_bytes(b"not a torrent")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    write_tree(tmp_path / "bad", {"ok": b"1", "aux.c": b"2"})
    (tmp_path / "hostile.torrent").write_bytes(torrent(single_info(name="..")))
    r = run(*args)
    assert r.code == 1
    assert words in _one_line_error(r)
    assert r.err.startswith("peerlab torrent: ")
    assert not (tmp_path / "missing.torrent").exists()


def test_usage_mistakes_exit_2(run: Callable[..., Run]) -> None:
    r = run("info", "--bogus")
    assert r.code == 2
    assert "--bogus" in _one_line_error(r)
    assert run("create").code == 2


def test_info_of_a_hybrid_shows_both_hashes(run: Callable[..., Run], tmp_path: Path) -> None:
    info = single_info(**{"meta version": 2, "file tree": {"file.bin": {"": {
        "length": 40000, "pieces root": bytes(32)}}}})
    (tmp_path / "h.torrent").write_bytes(torrent(info))
    meta = parse_metainfo((tmp_path / "h.torrent").read_bytes())
    r = run("info", "h.torrent")
    assert r.code == 0
    assert meta.info.info_hash.hex() in r.out
    assert meta.info.info_hash_v2 is not None and meta.info.info_hash_v2.hex() in r.out
    assert "trackerless" in r.out


@pytest.mark.parametrize(("text", "value"), [
    ("16384", 16384), ("16K", 16384), ("256k", 262144), ("1M", 1 << 20), ("1MiB", 1 << 20),
    ("2mb", 2 << 20), (" 512 KiB ", 512 << 10)])
def test_parse_piece_size(text: str, value: int) -> None:
    assert parse_piece_size(text) == value


@pytest.mark.parametrize("text", ["", "K", "1.5M", "-16K", "16X", "16 K B"])
def test_parse_piece_size_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_piece_size(text)
