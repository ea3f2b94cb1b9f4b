"""Hashing a path into pieces (peerlab.storage.torrent_hash): piece hashes
byte for byte against a plain SHA-1 of the concatenated files, through the
inline path and the two-thread pipeline, progress, and what may go in."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from btmetakit import pieces_of, pseudo_random, write_tree

from peerlab.errors import ConfigError, StorageError
from peerlab.storage import torrent_hash
from peerlab.storage.torrent_hash import (
    AUTO_MAX_PIECE_LENGTH,
    CREATE_MIN_PIECE_LENGTH,
    TARGET_PIECES,
    SourceFile,
    auto_piece_length,
    check_piece_length,
    collect_files,
    hash_pieces,
    hash_torrent,
)
from peerlab.wire.metainfo import parse_metainfo


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the threaded pipeline on small inputs: tiny blocks, no inline path."""
    monkeypatch.setattr(torrent_hash, "INLINE_LIMIT", 0)
    monkeypatch.setattr(torrent_hash, "BLOCK_SIZE", 64 * 1024)
    monkeypatch.setattr(torrent_hash, "TASK_BYTES", 32 * 1024)
    monkeypatch.setattr(torrent_hash, "POOL_BLOCKS", 3)


# File sizes chosen to cross piece and block boundaries in every way:
# empty files, files smaller than a piece, a file ending exactly on one.
TREE = {
    "b/one.bin": 70_001,
    "a.bin": 16_384,
    "b/empty": 0,
    "b/c/two.bin": 300_000,
    "z.bin": 5,
}


def _tree(root: Path) -> tuple[Path, bytes]:
    files = {rel: pseudo_random(n, seed=i) for i, (rel, n) in enumerate(TREE.items())}
    folder = write_tree(root / "My Album", files)
    ordered = sorted(files.items(), key=lambda kv: kv[0].split("/"))
    return folder, b"".join(data for _, data in ordered)


@pytest.mark.parametrize("piece_length", [16384, 32768, 65536, 262144])
@pytest.mark.parametrize("threaded", [False, True])
def test_folder_pieces_match_plain_sha1(tmp_path: Path, piece_length: int, threaded: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if threaded:
        monkeypatch.setattr(torrent_hash, "INLINE_LIMIT", 0)
        monkeypatch.setattr(torrent_hash, "BLOCK_SIZE", 64 * 1024)
        monkeypatch.setattr(torrent_hash, "TASK_BYTES", 16 * 1024)
        monkeypatch.setattr(torrent_hash, "POOL_BLOCKS", 2)
    folder, stream = _tree(tmp_path)
    info = hash_torrent(folder, piece_length)
    assert info.pieces == pieces_of(stream, piece_length)
    assert info.name == "My Album"
    assert info.multi_file
    assert [(f.name, f.length) for f in info.files] == [
        ("My Album/a.bin", 16_384), ("My Album/b/c/two.bin", 300_000),
        ("My Album/b/empty", 0), ("My Album/b/one.bin", 70_001), ("My Album/z.bin", 5)]
    assert info.total_size == len(stream)


def test_single_file(tmp_path: Path, small_blocks: None) -> None:
    data = pseudo_random(1_000_003)
    (tmp_path / "film.mkv").write_bytes(data)
    info = hash_torrent(tmp_path / "film.mkv", 16384, private=True)
    assert not info.multi_file
    assert info.name == "film.mkv"
    assert info.files[0].path == ("film.mkv",)
    assert info.pieces == pieces_of(data, 16384)
    assert info.private


def test_progress_reaches_the_total_and_never_goes_back(tmp_path: Path,
                                                        small_blocks: None) -> None:
    data = pseudo_random(600_000)
    (tmp_path / "f").write_bytes(data)
    seen: list[tuple[int, int]] = []
    info = hash_torrent(tmp_path / "f", 16384, on_progress=lambda d, t: seen.append((d, t)))
    assert info.pieces == pieces_of(data, 16384)
    assert seen and seen[-1] == (600_000, 600_000)
    assert all(t == 600_000 for _, t in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert len(seen) >= 600_000 // (64 * 1024)  # at least one report per block


def test_an_error_in_the_progress_callback_stops_cleanly(tmp_path: Path,
                                                        small_blocks: None) -> None:
    (tmp_path / "f").write_bytes(pseudo_random(600_000))

    def boom(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hash_torrent(tmp_path / "f", 16384, on_progress=boom)
    # A later run works: no thread or buffer is left behind in a bad state.
    assert hash_torrent(tmp_path / "f", 16384).piece_count == -(-600_000 // 16384)


def test_a_file_that_shrinks_while_hashing_is_an_error(tmp_path: Path,
                                                       small_blocks: None) -> None:
    path = tmp_path / "f"
    path.write_bytes(pseudo_random(300_000))
    files = [SourceFile(path, (), 300_000)]
    path.write_bytes(pseudo_random(200_000))
    with pytest.raises(StorageError, match="changed"):
        hash_pieces(files, 16384)


def test_large_piece_lengths_use_one_piece_per_block(tmp_path: Path,
                                                     small_blocks: None) -> None:
    data = pseudo_random(700_000)
    (tmp_path / "f").write_bytes(data)
    # 256 KiB pieces, 64 KiB blocks: a block grows to hold one piece.
    assert hash_torrent(tmp_path / "f", 262144).pieces == pieces_of(data, 262144)


def test_collect_skips_symlinks_and_special_files(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "share", {"a.txt": b"a", "sub/b.txt": b"bb"})
    outside = write_tree(tmp_path / "outside", {"secret": b"s"})
    (folder / "link-out").symlink_to(outside / "secret")
    (folder / "link-dir").symlink_to(outside)
    os.mkfifo(folder / "fifo")
    name, files, multi = collect_files(folder)
    assert (name, multi) == ("share", True)
    assert [f.relative for f in files] == [("a.txt",), ("sub", "b.txt")]
    assert [f.size for f in files] == [1, 2]


@pytest.mark.parametrize("bad", ["con.txt", "a:b", "nul", "tab\tname", "not-utf8-\udcff"])
def test_local_names_a_torrent_may_not_hold_are_refused(tmp_path: Path, bad: str) -> None:
    folder = write_tree(tmp_path / "share", {"ok.txt": b"ok", f"sub/{bad}": b"x"})
    with pytest.raises(ConfigError, match="cannot put"):
        hash_torrent(folder)


def test_names_that_collide_elsewhere_are_refused_before_hashing(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "share", {"A.txt": b"1", "a.txt": b"2"})
    with pytest.raises(ConfigError, match="same path"):
        hash_torrent(folder)


def test_nothing_to_share(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no bytes"):
        hash_torrent(tmp_path / "empty")
    write_tree(tmp_path / "zeros", {"a": b"", "b/c": b""})
    with pytest.raises(ConfigError, match="no bytes"):
        hash_torrent(tmp_path / "zeros")
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty"):
        hash_torrent(tmp_path / "e.bin")
    with pytest.raises(ConfigError, match="no such"):
        hash_torrent(tmp_path / "missing")


def test_piece_length_choice() -> None:
    assert auto_piece_length(1) == CREATE_MIN_PIECE_LENGTH
    assert auto_piece_length(TARGET_PIECES * 16384) == 16384
    assert auto_piece_length(TARGET_PIECES * 16384 + 1) == 32768
    assert auto_piece_length(512 * 1024 * 1024) == 256 * 1024
    assert auto_piece_length(10**15) == AUTO_MAX_PIECE_LENGTH
    for n in (16384, 1 << 20, 32 << 20):
        assert check_piece_length(n) == n
    for n in (0, 8192, 16385, 3 * 16384, 64 << 20):
        with pytest.raises(ConfigError, match="power of two"):
            check_piece_length(n)


def test_default_piece_length_and_a_round_trip_through_bytes(tmp_path: Path) -> None:
    data = pseudo_random(100_000)
    (tmp_path / "f.bin").write_bytes(data)
    info = hash_torrent(tmp_path / "f.bin")
    assert info.piece_length == 16384
    assert info.info_hash == hashlib.sha1(info.raw).digest()
    from peerlab.wire.metainfo import Metainfo

    meta = parse_metainfo(Metainfo.create(info).to_bytes())
    assert meta.info == info
