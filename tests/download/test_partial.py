"""peerlab.storage.partial: names, bitfield, state, atomic writes, recovery, final move."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from peerlab.errors import StorageError
from peerlab.storage.partial import (
    NAME_MAX_BYTES,
    Bitfield,
    PartialFile,
    PartialState,
    SourceRecord,
    name_variant,
    place_file,
    sanitize_name,
)
from peerlab.wire.chunks import ChunkList
from peerlab.wire.urn import sha1_urn

CHUNK = 16 * 1024


def make_data(n: int, seed: int = 1) -> bytes:
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def new_partial(tmp_path: Path, data: bytes, with_list: bool = True) -> PartialFile:
    state = PartialState(urn=sha1_urn(hashlib.sha1(data).digest()), name="song.mp3", size=len(data))
    chunks = ChunkList.of_bytes(data, CHUNK) if with_list else None
    state.set_layout(len(data), chunks)
    if not with_list:
        state.chunk_size = CHUNK
        state.have = Bitfield(-(-len(data) // CHUNK))
    part = PartialFile(tmp_path / "incomplete", state)
    part.open()
    return part


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ("song.mp3", "song.mp3"),
        ("../../etc/passwd", "_._etc_passwd"),
        ("..", "download"),
        ("a/b\\c.mp3", "a_b_c.mp3"),
        ("evil\x00name\n.txt", "evil_name_.txt"),
        (".hidden", "hidden"),
        ("trailing. ", "trailing"),
        ("", "download"),
        ("///", "download"),
    ],
)
def test_sanitize_name(raw: str, expect: str) -> None:
    assert sanitize_name(raw) == expect


def test_sanitize_name_bounds_length_and_keeps_extension() -> None:
    name = sanitize_name("é" * 500 + ".flac")
    assert len(name.encode()) <= NAME_MAX_BYTES
    assert name.endswith(".flac")
    assert "/" not in name and ".." not in name


def test_name_variants() -> None:
    assert name_variant("x.mp3", 0) == "x.mp3"
    assert name_variant("x.mp3", 1) == "x (1).mp3"
    assert name_variant("README", 2) == "README (2)"


def test_bitfield_order_and_counts() -> None:
    bf = Bitfield(10)
    assert bf.set(0) and bf.set(9) and not bf.set(9)
    assert bytes(bf.bits) == b"\x80\x40"
    assert bf.ones == 2 and not bf.complete
    assert bf.missing() == [1, 2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(ValueError):
        Bitfield(10, b"\x00\x01")  # a bit past the count
    with pytest.raises(IndexError):
        bf.set(10)


def test_state_round_trip(tmp_path: Path) -> None:
    data = make_data(5 * CHUNK + 100)
    part = new_partial(tmp_path, data)
    st = part.state
    st.have.set(1)
    st.have.set(5)
    st.list_from = "127.0.0.1:1"
    st.add_source(SourceRecord("127.0.0.1", 6346, 3, "song.mp3"))
    st.ban("127.0.0.1:666", "sent a bad chunk (2)")
    back = PartialState.from_json(st.to_json())
    assert back.urn == st.urn and back.size == st.size and back.name == st.name
    assert back.chunks == st.chunks and back.verified
    assert bytes(back.have.bits) == bytes(st.have.bits) and back.have.ones == 2
    assert back.sources == st.sources and back.banned == st.banned
    assert back.done_bytes() == CHUNK + 100


@pytest.mark.parametrize(
    "blob",
    [b"", b"{", b"[]", b'{"version": 99}', b'{"version": 1, "urn": "nonsense"}'],
)
def test_garbage_state_raises_storage_error(blob: bytes) -> None:
    with pytest.raises(StorageError):
        PartialState.from_json(blob)


def test_write_verify_and_recover(tmp_path: Path) -> None:
    data = make_data(4 * CHUNK + 7)
    part = new_partial(tmp_path, data)
    chunks = part.state.chunks
    assert chunks is not None
    # A good chunk, given as several pieces, is written; a bad one is not.
    mv = memoryview(data)
    assert part.verify_and_write(1, [mv[CHUNK : CHUNK + 100], mv[CHUNK + 100 : 2 * CHUNK]])
    assert not part.verify_and_write(2, [b"\x00" * CHUNK])
    assert part.verify_and_write(4, [data[4 * CHUNK :]])
    assert part.read_chunk(1) == data[CHUNK : 2 * CHUNK]
    assert part.read_chunk(2) == b"\x00" * CHUNK  # never written: still the hole
    # Nothing was marked in the state, yet recovery finds exactly what is good.
    assert part.recover(range(5)) == [1, 4]


def test_crash_before_state_write_loses_nothing_verified(tmp_path: Path) -> None:
    data = make_data(6 * CHUNK)
    part = new_partial(tmp_path, data)
    part.save_state()  # the state as first written: nothing done
    for i in (0, 3, 5):
        assert part.verify_and_write(i, [data[i * CHUNK : (i + 1) * CHUNK]])
    part.state.have.set(0)
    part.save_state()  # a batch that recorded chunk 0 only
    part.close()  # "kill -9": chunks 3 and 5 were written, never recorded
    again = PartialFile.load(part.state_path)
    again.open()
    assert again.state.have.missing() == [1, 2, 3, 4, 5]
    assert again.recover(again.state.have.missing()) == [3, 5]


def test_state_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_data(2 * CHUNK)
    part = new_partial(tmp_path, data)
    part.save_state()
    before = part.state_path.read_bytes()
    part.state.have.set(0)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left"):
        part.save_state()
    monkeypatch.undo()
    assert part.state_path.read_bytes() == before  # the old state is untouched
    assert not list(part.directory.glob("*.tmp"))


def test_hash_range_feeds_whole_file(tmp_path: Path) -> None:
    data = make_data(3 * CHUNK + 5)
    part = new_partial(tmp_path, data)
    for i in range(4):
        part.write_chunk(i, [data[i * CHUNK : (i + 1) * CHUNK]])
    h = hashlib.sha1()
    part.hash_range(h, 0, 2)
    part.hash_range(h, 2, 4)
    assert h.digest() == hashlib.sha1(data).digest()


def test_finish_moves_without_clobbering(tmp_path: Path) -> None:
    data = make_data(CHUNK + 1)
    dest = tmp_path / "done"
    dest.mkdir()
    (dest / "song.mp3").write_bytes(b"someone else's file")
    part = new_partial(tmp_path, data)
    for i in range(2):
        part.write_chunk(i, [data[i * CHUNK : (i + 1) * CHUNK]])
    part.save_state()
    final = part.finish(dest, "song.mp3")
    assert final == dest / "song (1).mp3"
    assert final.read_bytes() == data
    assert (dest / "song.mp3").read_bytes() == b"someone else's file"
    assert not part.part_path.exists() and not part.state_path.exists()


def test_finish_into_unwritable_folder_keeps_partial(tmp_path: Path) -> None:
    data = make_data(CHUNK)
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"x")
    part = new_partial(tmp_path, data)
    part.write_chunk(0, [data])
    with pytest.raises(StorageError, match="download folder"):
        part.finish(blocker / "sub", "song.mp3")
    assert part.part_path.read_bytes() == data


def test_place_file_across_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.part"
    src.write_bytes(b"payload")
    real_link = os.link
    calls = []

    def link(a: object, b: object) -> None:
        calls.append(a)
        if Path(str(a)) == src:
            raise OSError(18, "Invalid cross-device link")
        real_link(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    final = place_file(src, tmp_path / "out", "a.bin")
    assert final.read_bytes() == b"payload" and not src.exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.bin"]
