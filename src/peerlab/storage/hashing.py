"""Hashing shared files: the whole-file SHA-1 and the chunk list, in one read.

Issue 2, section 3 (share catalog): every shared file is named by its
``urn:sha1`` (HUGE, section 3) and carries a :class:`~peerlab.wire.chunks.ChunkList`
(one SHA-256 per chunk) so that each chunk can be verified on its own.  Both
come from a single pass over the file's bytes.

Speed: both digests are computed in a two-stage pipeline.  Stage one (the
*reader* thread) reads the file in large blocks into a small pool of reused
buffers and computes the per-chunk SHA-256 digests; stage two (the *SHA-1*
thread) feeds the same buffers, in order, to the file's sequential SHA-1.
``hashlib`` releases the GIL on large buffers, so the two stages run on two
cores at once, and since SHA-1 is the slower of the two digests, the pipeline
runs at close to SHA-1's own speed.  Files flow through the pipeline one after
the other without a pause, so many small files keep both stages as busy as
one large file does.  Memory stays bounded by the buffer pool.

This module never reads the clock or global randomness; it only reads files.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from peerlab.errors import StorageError
from peerlab.wire.chunks import ChunkList, chunk_size_for
from peerlab.wire.urn import sha1_urn

#: Bytes read per block.  Large enough that a hash call's fixed cost and the
#: queue hand-off vanish next to the hashing itself (and that ``hashlib``
#: releases the GIL), small enough that the pool below stays modest.  A power
#: of two, so a block holds a whole number of chunks or a chunk a whole
#: number of blocks.
BLOCK_SIZE = 4 * 1024 * 1024
#: Blocks in flight between the two stages: one being read, one or two being
#: hashed by the SHA-1 stage, one spare so that neither stage waits on the
#: other's jitter.  Memory bound of the pipeline: ``BLOCK_SIZE * POOL_BLOCKS``.
POOL_BLOCKS = 4
#: Files smaller than this are hashed inline by :func:`hash_file` instead of
#: starting the two pipeline threads (whose start-up costs more than hashing
#: a few MiB on one core).
INLINE_LIMIT = 2 * BLOCK_SIZE
#: Results and progress reports waiting for the consumer.  Bounded so that a
#: slow consumer (tag reading, database writes) holds the pipeline back
#: instead of letting reports pile up.
OUTPUT_QUEUE_LIMIT = 256


@dataclass(frozen=True, slots=True)
class FileHashes:
    """What hashing one file yields: its SHA-1 and its chunk list."""

    sha1: bytes
    chunks: ChunkList

    @property
    def size(self) -> int:
        return self.chunks.size

    @property
    def urn(self) -> str:
        """``urn:sha1:BASE32`` (HUGE, section 3)."""
        return sha1_urn(self.sha1)


@dataclass(frozen=True, slots=True)
class HashResult:
    """The outcome for one path handed to :func:`hash_files`.

    Exactly one of ``hashes`` and ``error`` is set.  ``stat`` is the file's
    status taken from the open descriptor before reading (``None`` if the file
    could not be opened); when the file changed while it was being read the
    result is an error, so a successful result always describes the bytes
    that ``stat`` names.
    """

    path: Path
    hashes: FileHashes | None
    error: OSError | StorageError | None
    stat: os.stat_result | None


# ------------------------------------------------------------------ chunking


class _ChunkHasher:
    """Per-chunk SHA-256 digests of a byte stream fed in arbitrary pieces."""

    __slots__ = ("chunk_size", "digests", "_partial", "_filled")

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.digests: list[bytes] = []
        self._partial: hashlib._Hash | None = None
        self._filled = 0

    def update(self, data: memoryview) -> None:
        pos = 0
        n = len(data)
        chunk = self.chunk_size
        if self._filled:
            take = min(chunk - self._filled, n)
            assert self._partial is not None
            self._partial.update(data[:take])
            self._filled += take
            pos = take
            if self._filled == chunk:
                self.digests.append(self._partial.digest())
                self._partial = None
                self._filled = 0
        sha256 = hashlib.sha256
        append = self.digests.append
        while n - pos >= chunk:
            append(sha256(data[pos : pos + chunk]).digest())
            pos += chunk
        if pos < n:
            self._partial = sha256(data[pos:])
            self._filled = n - pos

    def finish(self, size: int) -> ChunkList:
        if self._partial is not None:
            self.digests.append(self._partial.digest())
            self._partial = None
            self._filled = 0
        return ChunkList(size, self.chunk_size, b"".join(self.digests))


# ------------------------------------------------------------------ one file


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading; refuse anything but a regular file.

    Opening a FIFO would block for ever and a device could be endless, so
    the descriptor is opened non-blocking and checked before any read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"not a regular file: {path}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _check_unchanged(path: Path, fd: int, before: os.stat_result, read: int) -> None:
    after = os.fstat(fd)
    if (
        read != before.st_size
        or after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
    ):
        raise StorageError(f"file changed while it was being hashed: {path}")


def _read_fully(fd: int, buf: memoryview) -> int:
    """Fill ``buf`` from ``fd``; fewer bytes only at end of file."""
    got = 0
    want = len(buf)
    while got < want:
        n = os.readv(fd, [buf[got:]])
        if n == 0:
            break
        got += n
    return got


def _hash_inline(path: Path, chunk_size: int | None) -> tuple[FileHashes, os.stat_result]:
    """Hash one file on the calling thread (small files)."""
    fd, st = _open_regular(path)
    try:
        chunk = chunk_size or chunk_size_for(st.st_size)
        chunker = _ChunkHasher(chunk)
        sha1 = hashlib.sha1()
        buf = bytearray(min(BLOCK_SIZE, max(st.st_size, 1)))
        mv = memoryview(buf)
        remaining = st.st_size
        read = 0
        while remaining > 0:
            n = _read_fully(fd, mv[: min(len(mv), remaining)])
            if n == 0:
                break
            view = mv[:n]
            sha1.update(view)
            chunker.update(view)
            read += n
            remaining -= n
        _check_unchanged(path, fd, st, read)
    finally:
        os.close(fd)
    return FileHashes(sha1.digest(), chunker.finish(st.st_size)), st


def hash_file(path: Path | str, *, chunk_size: int | None = None) -> FileHashes:
    """SHA-1 and chunk list of the file at ``path``, from one read.

    ``chunk_size`` defaults to :func:`~peerlab.wire.chunks.chunk_size_for`
    of the file's size.  Raises :class:`OSError` when the file cannot be read
    and :class:`~peerlab.errors.StorageError` when it is not a regular file or
    changed while it was being read.
    """
    p = Path(path)
    try:
        size = os.stat(p).st_size
    except OSError:
        size = 0  # let the open below raise the real error
    if size < INLINE_LIMIT:
        return _hash_inline(p, chunk_size)[0]
    for result in hash_files([p], chunk_size=chunk_size):
        if result.error is not None:
            raise result.error
        assert result.hashes is not None
        return result.hashes
    raise StorageError(f"hashing produced no result for {p}")  # pragma: no cover


# ------------------------------------------------------------------ pipeline

# Messages from the reader stage to the SHA-1 stage, and from the SHA-1 stage
# to the consumer.  Plain tuples: these pass once per block.
_START = 0  # (_START, path)
_BLOCK = 1  # (_BLOCK, buffer_index, length)
_END = 2  # (_END, path, FileHashes-less parts: chunk list, stat)
_FAIL = 3  # (_FAIL, path, error, stat | None)
_STOP = 4  # (_STOP,)
_PROGRESS = 5  # (_PROGRESS, path, nbytes) -- SHA-1 stage to consumer only
_RESULT = 6  # (_RESULT, HashResult) -- SHA-1 stage to consumer only


class _Pipeline:
    """The two hashing threads and the queues between them."""

    def __init__(self, paths: Iterable[Path], chunk_size: int | None) -> None:
        self._paths = paths
        self._chunk_size = chunk_size
        self._buffers = [bytearray(BLOCK_SIZE) for _ in range(POOL_BLOCKS)]
        self._views = [memoryview(b) for b in self._buffers]
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(POOL_BLOCKS):
            self._free.put(i)
        self._to_sha1: queue.SimpleQueue[tuple[object, ...]] = queue.SimpleQueue()
        self.out: queue.Queue[tuple[object, ...]] = queue.Queue(OUTPUT_QUEUE_LIMIT)
        self._cancel = threading.Event()
        self._reader = threading.Thread(target=self._read_stage, name="hash-read", daemon=True)
        self._sha1 = threading.Thread(target=self._sha1_stage, name="hash-sha1", daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._sha1.start()

    def cancel(self) -> None:
        """Stop after the current block and wait for both threads."""
        self._cancel.set()
        # Drain so the SHA-1 stage never blocks on a full output queue.
        while self._sha1.is_alive():
            try:
                self.out.get(timeout=0.05)
            except queue.Empty:
                pass
        self._reader.join()

    # Stage one: read blocks, hash chunks, pass blocks on.
    def _read_stage(self) -> None:
        send = self._to_sha1.put
        try:
            for path in self._paths:
                if self._cancel.is_set():
                    break
                self._read_one(Path(path), send)
        except BaseException as exc:  # an iterator of paths that failed
            send((_FAIL, Path("."), StorageError(f"hashing stopped: {exc}"), None))
        finally:
            send((_STOP,))

    def _read_one(self, path: Path, send: Callable[[tuple[object, ...]], None]) -> None:
        try:
            fd, st = _open_regular(path)
        except (OSError, StorageError) as exc:
            send((_FAIL, path, exc, None))
            return
        try:
            chunker = _ChunkHasher(self._chunk_size or chunk_size_for(st.st_size))
            send((_START, path))
            remaining = st.st_size
            read = 0
            while remaining > 0:
                if self._cancel.is_set():
                    send((_FAIL, path, StorageError("hashing cancelled"), st))
                    return
                i = self._free.get()
                mv = self._views[i]
                n = _read_fully(fd, mv[: min(BLOCK_SIZE, remaining)])
                if n == 0:
                    self._free.put(i)
                    break
                chunker.update(mv[:n])
                send((_BLOCK, i, n))
                read += n
                remaining -= n
            _check_unchanged(path, fd, st, read)
            send((_END, path, chunker.finish(st.st_size), st))
        except (OSError, StorageError) as exc:
            send((_FAIL, path, exc, st))
        finally:
            os.close(fd)

    # Stage two: the sequential SHA-1 of each file.
    def _sha1_stage(self) -> None:
        get = self._to_sha1.get
        put = self.out.put
        sha1 = hashlib.sha1()
        current = Path(".")
        while True:
            msg = get()
            kind = msg[0]
            if kind == _BLOCK:
                i, n = msg[1], msg[2]
                sha1.update(self._views[i][:n])  # type: ignore[index]
                self._free.put(i)  # type: ignore[arg-type]
                put((_PROGRESS, current, n))
            elif kind == _START:
                current = msg[1]  # type: ignore[assignment]
                sha1 = hashlib.sha1()
            elif kind == _END:
                _, path, chunks, st = msg
                hashes = FileHashes(sha1.digest(), chunks)  # type: ignore[arg-type]
                put((_RESULT, HashResult(path, hashes, None, st)))  # type: ignore[arg-type]
            elif kind == _FAIL:
                _, path, exc, st = msg
                put((_RESULT, HashResult(path, None, exc, st)))  # type: ignore[arg-type]
            else:
                put((_STOP,))
                return


def hash_files(
    paths: Iterable[Path],
    *,
    chunk_size: int | None = None,
    on_bytes: Callable[[Path, int], None] | None = None,
) -> Iterator[HashResult]:
    """Hash many files through the two-stage pipeline; yield results in order.

    ``paths`` is consumed lazily by the reader thread.  One :class:`HashResult`
    comes out per path, in the order given; a file that cannot be read gives
    a result with ``error`` set and hashing goes on with the next.
    ``on_bytes(path, n)`` is called on the consuming thread as blocks finish
    (at most every :data:`BLOCK_SIZE` bytes), to drive a progress bar.

    Closing the iterator early stops both threads.
    """
    pipe = _Pipeline(paths, chunk_size)
    pipe.start()
    finished = False
    try:
        while True:
            msg = pipe.out.get()
            kind = msg[0]
            if kind == _PROGRESS:
                if on_bytes is not None:
                    on_bytes(msg[1], msg[2])  # type: ignore[arg-type]
            elif kind == _RESULT:
                yield msg[1]  # type: ignore[misc]
            else:
                finished = True
                return
    finally:
        if not finished:
            pipe.cancel()

