"""Hashing shared files: the whole-file SHA-1 and the chunk list, in one read.

Issue 2, section 3 (share catalog): every shared file is named by its
``urn:sha1`` (HUGE, section 3) and carries a :class:`~peerlab.wire.chunks.ChunkList`
(one SHA-256 per chunk) so that each chunk can be verified on its own.  Both
come from a single pass over the file's bytes.

Speed: one pass feeds two digests, and two threads share the work.  The
*reader* thread reads each file in large blocks into a small pool of reused
buffers, reading ahead while a buffer is free; the *SHA-1* thread feeds the
blocks, in order, to the file's sequential SHA-1.  The per-chunk SHA-256
digests can be computed in any order, so they go to a shared FIFO from which
whichever thread has slack takes the next chunk: the reader when no buffer is
free, the SHA-1 thread when no block is waiting.  ``hashlib`` releases the GIL
on large buffers, so both cores stay busy whatever the ratio of SHA-1 to
SHA-256 speed on the machine, and the whole runs at close to a single plain
SHA-1 pass.  Files flow through without a pause between them, so many small
files keep both threads as busy as one large file.  Memory stays bounded by
the buffer pool.

This module never reads the clock or global randomness; it only reads files.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerlab.errors import StorageError
from peerlab.wire.chunks import ChunkList, chunk_count, chunk_size_for
from peerlab.wire.urn import sha1_urn

#: Bytes read per block.  Large enough that a hash call's fixed cost and the
#: queue hand-off vanish next to the hashing itself (and that ``hashlib``
#: releases the GIL), small enough that the pool below stays modest.  A power
#: of two, so a block holds a whole number of chunks or a chunk a whole
#: number of blocks.
BLOCK_SIZE = 4 * 1024 * 1024
#: Blocks in flight: one being read, one or two being hashed, one spare so
#: that neither thread waits on the other's jitter (measured: more buffers
#: gain nothing, and 2-4 MiB blocks beat both smaller and larger ones).
#: Memory bound of the pipeline: ``BLOCK_SIZE * POOL_BLOCKS``.
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
            try:
                # A hint for cold reads (larger read-ahead); some file
                # systems refuse it, which costs nothing but the hint.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:
                pass
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
#
# Work per block: one read, one SHA-1 update (strictly in order, per file),
# and the SHA-256 of each chunk in the block (in any order).  The reader thread
# reads ahead while buffers are free and hashes chunks otherwise; the SHA-1
# thread updates the SHA-1 and, whenever it has no block waiting, takes chunks
# too.  Chunks are shared through one FIFO under one lock, so whichever thread
# has slack does the SHA-256 work and both cores stay busy whatever the ratio
# of SHA-1 to SHA-256 speed on the machine.  A buffer returns to the pool
# when its SHA-1 update and all its chunks are done.

# Messages from the reader to the SHA-1 thread, and from the SHA-1 thread to
# the consumer.  Plain tuples: these pass once per block.
_START = 0  # (_START, _File)
_BLOCK = 1  # (_BLOCK, _Block)
_END = 2  # (_END, _File)
_FAIL = 3  # (_FAIL, path, error, stat | None)
_STOP = 4  # (_STOP,)
_PROGRESS = 5  # (_PROGRESS, path, nbytes): SHA-1 thread to consumer only
_RESULT = 6  # (_RESULT, HashResult): SHA-1 thread to consumer only


class _File:
    """One file in flight."""

    __slots__ = ("path", "st", "chunk_size", "digests", "pending", "chunker")

    def __init__(self, path: Path, st: os.stat_result, chunk_size: int) -> None:
        self.path = path
        self.st = st
        self.chunk_size = chunk_size
        count = chunk_count(st.st_size, chunk_size)
        self.digests: list[bytes] = [b""] * count
        self.pending = 0  # chunk digests not yet computed
        # Chunks larger than a block are hashed in order by the reader.
        self.chunker = _ChunkHasher(chunk_size) if chunk_size > BLOCK_SIZE else None


class _Block:
    """One buffer's worth of a file: its SHA-1 update and its chunks."""

    __slots__ = ("buffer", "n", "file", "first", "count", "next", "left")

    def __init__(self, buffer: int, n: int, file: _File, offset: int, count: int) -> None:
        self.buffer = buffer
        self.n = n
        self.file = file
        self.first = offset // file.chunk_size if count else 0  # index of its first chunk
        self.count = count  # chunks to hash from this block (0: done by the chunker)
        self.next = 0  # next chunk to hand out
        self.left = count + 1  # chunks to finish, plus the SHA-1 update


class _Pipeline:
    """The two hashing threads, the buffer pool and the shared chunk FIFO."""

    def __init__(self, paths: Iterable[Path], chunk_size: int | None) -> None:
        self._paths = paths
        self._chunk_size = chunk_size
        self._views = [memoryview(bytearray(BLOCK_SIZE)) for _ in range(POOL_BLOCKS)]
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(POOL_BLOCKS):
            self._free.put(i)
        self._to_sha1: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.out: queue.Queue[tuple[Any, ...]] = queue.Queue(OUTPUT_QUEUE_LIMIT)
        self._cancel = threading.Event()
        # Guards the chunk FIFO and every _Block/_File counter.
        self._cond = threading.Condition(threading.Lock())
        self._work: deque[_Block] = deque()
        self._reader = threading.Thread(target=self._read_stage, name="hash-read", daemon=True)
        self._sha1 = threading.Thread(target=self._sha1_stage, name="hash-sha1", daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._sha1.start()

    def cancel(self) -> None:
        """Stop after the current block and wait for both threads."""
        self._cancel.set()
        # Drain so the SHA-1 thread never blocks on a full output queue.
        while self._sha1.is_alive():
            try:
                self.out.get(timeout=0.05)
            except queue.Empty:
                pass
        self._reader.join()

    # Shared chunk work.
    def _hash_one_chunk(self) -> bool:
        """Take the oldest unhashed chunk and hash it; False when there is none."""
        with self._cond:
            work = self._work
            while work:
                block = work[0]
                k = block.next
                block.next = k + 1
                if block.next >= block.count:
                    work.popleft()
                if k < block.count:
                    break
            else:
                return False
        file = block.file
        chunk = file.chunk_size
        start = k * chunk
        digest = hashlib.sha256(self._views[block.buffer][start : min(start + chunk, block.n)])
        with self._cond:
            file.digests[block.first + k] = digest.digest()
            file.pending -= 1
            self._finish_part(block)
            if file.pending == 0:
                self._cond.notify_all()
        return True

    def _finish_part(self, block: _Block) -> None:
        """One part of a block is done (call under the lock)."""
        block.left -= 1
        if block.left == 0:
            self._free.put(block.buffer)

    # The reader: read ahead while buffers are free, hash chunks otherwise.
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
            # Help with what is left so the SHA-1 thread finishes quickly.
            while self._hash_one_chunk():
                pass

    def _buffer(self) -> int:
        while True:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                pass
            if not self._hash_one_chunk():
                return self._free.get()

    def _read_one(self, path: Path, send: Callable[[tuple[Any, ...]], None]) -> None:
        try:
            fd, st = _open_regular(path)
        except (OSError, StorageError) as exc:
            send((_FAIL, path, exc, None))
            return
        try:
            file = _File(path, st, self._chunk_size or chunk_size_for(st.st_size))
            chunk = file.chunk_size
            send((_START, file))
            remaining = st.st_size
            offset = 0
            while remaining > 0:
                if self._cancel.is_set():
                    send((_FAIL, path, StorageError("hashing cancelled"), st))
                    return
                i = self._buffer()
                view = self._views[i]
                n = _read_fully(fd, view[: min(BLOCK_SIZE, remaining)])
                if n == 0:
                    self._free.put(i)
                    break
                if file.chunker is not None:
                    file.chunker.update(view[:n])
                    block = _Block(i, n, file, offset, 0)
                else:
                    block = _Block(i, n, file, offset, -(-n // chunk))
                    with self._cond:
                        file.pending += block.count
                        self._work.append(block)
                send((_BLOCK, block))
                offset += n
                remaining -= n
            _check_unchanged(path, fd, st, offset)
            send((_END, file))
        except (OSError, StorageError) as exc:
            send((_FAIL, path, exc, st))
        finally:
            os.close(fd)

    # The SHA-1 thread: the sequential SHA-1 of each file, chunks when idle.
    def _sha1_stage(self) -> None:
        inbox = self._to_sha1
        put = self.out.put
        sha1 = hashlib.sha1()
        while True:
            try:
                msg = inbox.get_nowait()
            except queue.Empty:
                if self._hash_one_chunk():
                    continue
                msg = inbox.get()
            kind = msg[0]
            if kind == _BLOCK:
                block: _Block = msg[1]
                sha1.update(self._views[block.buffer][: block.n])
                with self._cond:
                    self._finish_part(block)
                put((_PROGRESS, block.file.path, block.n))
            elif kind == _START:
                sha1 = hashlib.sha1()
            elif kind == _END:
                file: _File = msg[1]
                put((_RESULT, HashResult(file.path, self._finish_file(file, sha1), None, file.st)))
            elif kind == _FAIL:
                _, path, exc, st = msg
                put((_RESULT, HashResult(path, None, exc, st)))
            else:
                put((_STOP,))
                return

    def _finish_file(self, file: _File, sha1: hashlib._Hash) -> FileHashes:
        while True:
            with self._cond:
                if file.pending == 0:
                    break
            if not self._hash_one_chunk():
                with self._cond:
                    # The reader is hashing this file's last chunks.
                    self._cond.wait_for(lambda: file.pending == 0)
                break
        if file.chunker is not None:
            chunks = file.chunker.finish(file.st.st_size)
        else:
            chunks = ChunkList(file.st.st_size, file.chunk_size, b"".join(file.digests))
        return FileHashes(sha1.digest(), chunks)


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
                    on_bytes(msg[1], msg[2])
            elif kind == _RESULT:
                yield msg[1]
            else:
                finished = True
                return
    finally:
        if not finished:
            pipe.cancel()
