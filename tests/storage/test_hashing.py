"""peerlab.storage.hashing: one read gives the urn:sha1 and the chunk list."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from peerlab.errors import StorageError
from peerlab.storage import hashing
from peerlab.storage.hashing import BLOCK_SIZE, INLINE_LIMIT, hash_file, hash_files
from peerlab.wire.chunks import MIN_CHUNK_SIZE, ChunkList, chunk_size_for

CHUNK = MIN_CHUNK_SIZE


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes (so a misplaced chunk changes a digest)."""
    return random.Random(seed).randbytes(size)


def expected_chunks(data: bytes, chunk: int) -> bytes:
    """Per-chunk SHA-256, computed independently of peerlab."""
    return b"".join(
        hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk)
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_urn_of_abc_matches_the_known_vector(tmp_path: Path) -> None:
    # SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d (FIPS 180-2, B.1)
    h = hash_file(write(tmp_path / "abc", b"abc"))
    assert h.sha1.hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert h.urn == "urn:sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE5"
    assert h.chunks.count == 1
    assert h.chunks.digests == hashlib.sha256(b"abc").digest()


def test_empty_file(tmp_path: Path) -> None:
    h = hash_file(write(tmp_path / "empty", b""))
    assert h.sha1 == hashlib.sha1(b"").digest()
    assert h.urn == "urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ"
    assert h.chunks.size == 0 and h.chunks.count == 0 and h.chunks.digests == b""


@pytest.mark.parametrize(
    "size",
    [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17, BLOCK_SIZE, BLOCK_SIZE + 1,
     INLINE_LIMIT, INLINE_LIMIT + CHUNK, INLINE_LIMIT + 3 * BLOCK_SIZE + 12345],
)  # fmt: skip
def test_chunk_list_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = payload(size, seed=size)
    h = hash_file(write(tmp_path / "f", data))
    chunk = chunk_size_for(size)
    assert h.sha1 == hashlib.sha1(data).digest()
    assert h.chunks.size == size and h.chunks.chunk_size == chunk
    assert h.chunks.digests == expected_chunks(data, chunk)
    assert h.chunks == ChunkList.of_bytes(data)


def test_file_exactly_on_a_chunk_boundary(tmp_path: Path) -> None:
    data = payload(4 * CHUNK)
    h = hash_file(write(tmp_path / "f", data))
    assert h.chunks.count == 4
    assert h.chunks.span(3) == (3 * CHUNK, CHUNK)
    for i in range(4):
        assert h.chunks.verify(i, data[i * CHUNK : (i + 1) * CHUNK])


@pytest.mark.parametrize("chunk", [16 * 1024, CHUNK, BLOCK_SIZE, 2 * BLOCK_SIZE, 4 * BLOCK_SIZE])
@pytest.mark.parametrize("size", [3 * BLOCK_SIZE + 999, INLINE_LIMIT + 5])
def test_explicit_chunk_size_smaller_and_larger_than_a_block(
    tmp_path: Path, chunk: int, size: int
) -> None:
    data = payload(size, seed=chunk)
    h = hash_file(write(tmp_path / "f", data), chunk_size=chunk)
    assert h.chunks.chunk_size == chunk
    assert h.chunks.digests == expected_chunks(data, chunk)
    assert h.sha1 == hashlib.sha1(data).digest()


@pytest.mark.parametrize("size", [3 * CHUNK + 5, INLINE_LIMIT + 3 * CHUNK + 5])
def test_a_flipped_byte_changes_the_sha1_and_exactly_its_chunk(tmp_path: Path, size: int) -> None:
    data = bytearray(payload(size))
    before = hash_file(write(tmp_path / "f", bytes(data)))
    pos = 2 * CHUNK + 77
    data[pos] ^= 0x01
    after = hash_file(write(tmp_path / "f", bytes(data)))
    assert before.sha1 != after.sha1
    differing = [
        i for i in range(before.chunks.count)
        if before.chunks.digest(i) != after.chunks.digest(i)
    ]  # fmt: skip
    assert differing == [pos // before.chunks.chunk_size]
    assert not before.chunks.verify(differing[0], bytes(data[2 * CHUNK : 3 * CHUNK]))


def test_hash_files_yields_one_result_per_path_in_order(tmp_path: Path) -> None:
    sizes = [0, 5, CHUNK, INLINE_LIMIT + 1, 3, BLOCK_SIZE * 2 + 1, 1000]
    paths = []
    datas = []
    for i, size in enumerate(sizes):
        data = payload(size, seed=i)
        datas.append(data)
        paths.append(write(tmp_path / f"f{i}", data))
    missing = tmp_path / "missing"
    paths.insert(3, missing)
    datas.insert(3, b"")
    seen_bytes: list[int] = []
    results = list(hash_files(paths, on_bytes=lambda p, n: seen_bytes.append(n)))
    assert [r.path for r in results] == paths
    for r, data in zip(results, datas, strict=True):
        if r.path == missing:
            assert r.hashes is None and isinstance(r.error, FileNotFoundError)
            continue
        assert r.error is None and r.hashes is not None
        assert r.hashes.sha1 == hashlib.sha1(data).digest()
        assert r.hashes.chunks == ChunkList.of_bytes(data)
        assert r.stat is not None and r.stat.st_size == len(data)
    assert sum(seen_bytes) == sum(sizes)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="not a regular file"):
        hash_file(fifo)
    (result,) = list(hash_files([fifo]))
    assert isinstance(result.error, StorageError)


def test_a_file_growing_while_hashed_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "f", payload(INLINE_LIMIT + 3 * BLOCK_SIZE))
    real = hashing._read_fully
    calls = [0]

    def read_then_append(fd: int, buf: memoryview) -> int:
        calls[0] += 1
        if calls[0] == 2:
            with open(path, "ab") as f:
                f.write(b"more")
        return real(fd, buf)

    monkeypatch.setattr(hashing, "_read_fully", read_then_append)
    with pytest.raises(StorageError, match="changed while"):
        hash_file(path)


def test_a_file_shrinking_while_hashed_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "f", payload(3 * CHUNK))
    real = hashing._read_fully

    def truncate_then_read(fd: int, buf: memoryview) -> int:
        os.truncate(path, CHUNK)
        return real(fd, buf)

    monkeypatch.setattr(hashing, "_read_fully", truncate_then_read)
    with pytest.raises(StorageError, match="changed while"):
        hash_file(path)


def test_closing_the_iterator_early_stops_the_threads(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"f{i}", payload(BLOCK_SIZE + 1, seed=i)) for i in range(6)]
    before = {t.ident for t in threading.enumerate()}
    it = hash_files(paths)
    first = next(it)
    assert first.hashes is not None
    it.close()
    leftover = [
        t for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("hash-")
    ]  # fmt: skip
    assert leftover == []


@pytest.mark.parametrize("chunk", [16 * 1024, 64 * 1024, 256 * 1024])
@pytest.mark.parametrize("pool", [2, 3, 5])
def test_pipeline_stress_with_small_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, pool: int
) -> None:
    """Many blocks per file and many files, so both threads race for chunks
    (and, with chunks larger than a block, the reader hashes them in order)."""
    monkeypatch.setattr(hashing, "BLOCK_SIZE", 64 * 1024)
    monkeypatch.setattr(hashing, "POOL_BLOCKS", pool)
    rng = random.Random(chunk * 31 + pool)
    datas = []
    paths = []
    for i in range(30):
        size = rng.choice([0, 1, chunk, 64 * 1024, rng.randrange(1, 700_000)])
        data = rng.randbytes(size)
        datas.append(data)
        paths.append(write(tmp_path / f"f{i}", data))
    results = list(hash_files(paths, chunk_size=chunk))
    for r, data in zip(results, datas, strict=True):
        assert r.hashes is not None, r.error
        assert r.hashes.sha1 == hashlib.sha1(data).digest()
        assert r.hashes.chunks.digests == expected_chunks(data, chunk)


def test_a_failure_mid_file_leaves_later_files_correct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hashing, "BLOCK_SIZE", 64 * 1024)
    datas = [payload(300_000, seed=i) for i in range(5)]
    paths = [write(tmp_path / f"f{i}", d) for i, d in enumerate(datas)]
    real = hashing._read_fully
    calls = [0]

    def flaky(fd: int, buf: memoryview) -> int:
        calls[0] += 1
        if calls[0] == 8:  # second file, third block
            raise OSError(5, "Input/output error")
        return real(fd, buf)

    monkeypatch.setattr(hashing, "_read_fully", flaky)
    results = list(hash_files(paths, chunk_size=16 * 1024))
    assert [r.error is None for r in results] == [True, False, True, True, True]
    assert isinstance(results[1].error, OSError)
    for r, data in zip(results, datas, strict=True):
        if r.hashes is not None:
            assert r.hashes.sha1 == hashlib.sha1(data).digest()
            assert r.hashes.chunks.digests == expected_chunks(data, 16 * 1024)
