"""Piece storage (storage/pieces.py): the piece space over files, writes only
after a piece's hash matches, paths kept inside the download folder, reads
through the cache, and the resume state (atomic, trusted on restart, the
rest re-checked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from swarmkit import content, multi_file, single_file

from peerlab.errors import LocalProtocolError, StorageError
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import SimWorld
from peerlab.storage.pieces import (
    FileLayout,
    FileStorage,
    MemoryStorage,
    PieceBits,
    PieceStore,
    ResumeState,
    Span,
    read_resume,
    safe_path,
    write_resume,
)

PL = 4096  # small pieces: many boundaries


def album() -> tuple[object, bytes]:
    files = [
        (("cd1", "01.flac"), content(5000, b"a")),
        (("cd1", "empty.txt"), b""),
        (("cd1", "02.flac"), content(9000, b"b")),
        (("cover.jpg",), content(100, b"c")),
        (("cd2", "03.flac"), content(7001, b"d")),
    ]
    return multi_file(files, PL)


def test_piece_bits_is_a_bep3_bitfield() -> None:
    b = PieceBits(10)
    assert b.add(0) and b.add(9) and not b.add(9)
    assert b.to_bytes() == bytes([0x80, 0x40]) and b.count == 2
    assert list(b) == [0, 9] and 9 in b and 5 not in b and 10 not in b
    assert b.missing() == [1, 2, 3, 4, 5, 6, 7, 8]
    full = PieceBits.full(10)
    assert full.to_bytes() == bytes([0xFF, 0xC0]) and full.complete
    # spare bits of a peer's bitfield are cleared, not counted
    assert PieceBits(10, bytes([0xFF, 0xFF])).count == 10


def test_layout_spans_cross_file_boundaries_and_skip_empty_files() -> None:
    info, data = album()
    layout = FileLayout(info)  # type: ignore[arg-type]
    assert layout.total_size == len(data) == 21101
    # piece 1 is bytes 4096..8191: the end of 01.flac, then 02.flac
    assert layout.piece_spans(1) == [Span(0, 4096, 904), Span(2, 0, 3192)]
    # the last piece is short and ends in cd2/03.flac
    last = layout.piece_count - 1
    assert layout.piece_size(last) == 21101 - last * PL
    assert layout.piece_spans(last)[-1].file_index == 4
    assert all(s.length for p in range(layout.piece_count) for s in layout.piece_spans(p))


def test_file_storage_writes_pieces_into_the_files(tmp_path: Path) -> None:
    info, data = album()
    layout = FileLayout(info)  # type: ignore[arg-type]
    storage = FileStorage(layout, tmp_path)
    for p in reversed(range(layout.piece_count)):  # any order
        off = layout.piece_offset(p)
        storage.write(off, data[off : off + layout.piece_size(p)])
    storage.sync()
    assert (tmp_path / "album" / "cd1" / "01.flac").read_bytes() == data[:5000]
    assert (tmp_path / "album" / "cd1" / "02.flac").read_bytes() == data[5000:14000]
    assert (tmp_path / "album" / "cover.jpg").read_bytes() == data[14000:14100]
    assert (tmp_path / "album" / "cd2" / "03.flac").read_bytes() == data[14100:]
    assert storage.read(4000, 2000) == data[4000:6000]
    assert storage.has_data(0, len(data))
    storage.close()


def test_paths_never_lead_out_of_the_download_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "album").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="symbolic link"):
        safe_path(root, ("album", "x.bin"))
    info, _ = album()
    with pytest.raises(StorageError):
        FileStorage(FileLayout(info), root)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        safe_path(root, ("..", "etc"))
    # a torrent naming such paths never loads in the first place
    with pytest.raises(LocalProtocolError):
        multi_file([(("..", "evil"), b"x" * 10)], 1024)
    assert os.listdir(outside) == []


def _store(world: SimWorld, info: object, storage: object, **kw: object) -> PieceStore:
    obs = RecordingObserver()
    rt = world.new_runtime(f"store{len(world.hosts)}", observer=obs)
    return PieceStore(rt, info, storage, **kw)  # type: ignore[arg-type]


def _feed(world: SimWorld, store: PieceStore, index: int, data: bytes) -> tuple[bool, object]:
    layout = store.layout
    off = layout.piece_offset(index)
    piece = data[off : off + layout.piece_size(index)]
    whole = False
    for begin in range(0, len(piece), 1024):
        whole = store.put_block(index, begin, piece[begin : begin + 1024])
    assert whole
    out: list[tuple[bool, object]] = []
    store.submit(index, lambda i, ok, err: out.append((ok, err)))
    assert world.run_until(lambda: bool(out), 5)
    return out[0]


def test_only_verified_pieces_are_written(tmp_path: Path) -> None:
    world = SimWorld(1)
    data = content(3 * PL + 10)
    info = single_file(data, PL)
    store = _store(world, info, FileStorage(FileLayout(info), tmp_path))
    bad = bytearray(data)
    bad[PL + 7] ^= 1
    assert _feed(world, store, 1, bytes(bad)) == (False, None)
    assert store.counters["hash_failed"] == 1 and 1 not in store.have
    assert not (tmp_path / "payload.bin").exists()  # nothing written
    assert _feed(world, store, 1, data) == (True, None)
    assert _feed(world, store, 3, data) == (True, None)
    assert list(store.have) == [1, 3] and store.buffered_bytes == 0
    on_disk = (tmp_path / "payload.bin").read_bytes()
    assert on_disk[PL : 2 * PL] == data[PL : 2 * PL] and on_disk[3 * PL :] == data[3 * PL :]
    # reads: one disk read per piece, the rest from the cache
    got: list[bytes | None] = []
    store.read_block(1, 0, 100, lambda d, e: got.append(d))
    store.read_block(1, 100, 100, lambda d, e: got.append(d))
    assert world.run_until(lambda: len(got) == 2, 5)
    assert got == [data[PL : PL + 100], data[PL + 100 : PL + 200]]
    store.close()


def test_resume_trusts_its_bits_and_rechecks_the_rest(tmp_path: Path) -> None:
    world = SimWorld(2)
    data = content(6 * PL)
    info = single_file(data, PL)
    resume = tmp_path / "state" / "x.resume"
    store = _store(world, info, FileStorage(FileLayout(info), tmp_path / "dl"),
                   resume_path=resume)
    done: list[object] = []
    store.check(done.append)
    assert world.run_until(lambda: bool(done), 5) and done == [None]
    for i in (0, 1, 2):
        assert _feed(world, store, i, data)[0]
    store.save_resume()
    assert read_resume(resume) == ResumeState(info.info_hash, 6, bytes([0b11100000]))
    # piece 4 verified and written after the last save, then a crash (no close)
    assert _feed(world, store, 4, data)[0]
    assert not list(resume.parent.glob(".*tmp"))  # atomic writes leave no temp file

    again = _store(world, info, FileStorage(FileLayout(info), tmp_path / "dl"),
                   resume_path=resume)
    done.clear()
    again.check(done.append)
    assert world.run_until(lambda: bool(done), 5) and done == [None]
    assert list(again.have) == [0, 1, 2, 4]
    assert again.counters["resume_trusted"] == 3  # not hashed again
    assert again.counters["recheck_found"] == 1  # piece 4, found by its hash
    # re-hashed: piece 4 and the hole before it (zeros, fails); piece 5 lies
    # beyond the end of the file and is not even read
    assert again.counters["rechecked"] == 2


def test_resume_bits_are_not_trusted_for_a_truncated_file(tmp_path: Path) -> None:
    world = SimWorld(3)
    data = content(4 * PL)
    info = single_file(data, PL)
    resume = tmp_path / "r.resume"
    write_resume(resume, ResumeState(info.info_hash, 4, bytes([0xF0])))
    path = tmp_path / "dl" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(data[: 2 * PL])  # only two pieces made it to disk
    store = _store(world, info, FileStorage(FileLayout(info), tmp_path / "dl"),
                   resume_path=resume)
    done: list[object] = []
    store.check(done.append)
    assert world.run_until(lambda: bool(done), 5)
    assert list(store.have) == [0, 1]


def test_unusable_resume_files_are_ignored(tmp_path: Path) -> None:
    p = tmp_path / "r.resume"
    assert read_resume(p) is None
    p.write_bytes(b"{not json")
    assert read_resume(p) is None
    p.write_bytes(b'{"version": 99}')
    assert read_resume(p) is None


def test_memory_storage_is_sparse() -> None:
    data = content(300_000)
    info = single_file(data, 16384)
    layout = FileLayout(info)
    m = MemoryStorage(layout)
    assert not m.has_data(0, 10)
    m.write(70_000, data[70_000:80_000])
    assert m.read(70_000, 10_000) == data[70_000:80_000]
    with pytest.raises(StorageError):
        m.read(0, 10)
    assert MemoryStorage(layout, data).read(0, len(data)) == data
