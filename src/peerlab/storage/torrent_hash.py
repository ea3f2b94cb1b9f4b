"""Hashing a file or a folder into BitTorrent pieces, to make a torrent.

BEP 3: a torrent's content is the concatenation of its files in order,
cut into pieces of ``piece length`` bytes (the last one shorter); ``pieces``
is the SHA-1 of each piece, 20 bytes apiece.  Pieces cross file boundaries.

Speed (as the share catalog, :mod:`peerlab.storage.hashing`): the calling
thread reads the concatenated stream in large blocks (a whole number of
pieces each, :data:`BLOCK_SIZE` or one piece if larger) into a small pool of
reused buffers; a second thread hashes.  Pieces are independent, so each
block's pieces become tasks of about :data:`TASK_BYTES` that *either* thread
takes: the hashing thread always, the reading thread whenever no buffer is
free.  ``hashlib`` releases the GIL on large buffers, so on two cores both
hash at full speed and reading (a copy out of the page cache) costs little.
Memory stays bounded by the pool (:data:`POOL_BLOCKS` buffers).

What goes into a torrent (:func:`collect_files`): a regular file, or every
regular file under a folder, in sorted path order.  Symbolic links are not
followed (a link could lead out of the folder or loop) and other special
files are skipped.  Every path component must be one that
:func:`peerlab.wire.metainfo.path_component_problem` accepts, since we never
build a torrent we would refuse to read; a name that is not allowed stops
the run with :class:`~peerlab.errors.ConfigError` naming it.

Public API
==========

::

    SourceFile(path: Path, relative: tuple[str, ...], size: int)
    collect_files(path) -> (name, files: list[SourceFile], multi_file: bool)
    auto_piece_length(total_size) -> int
    check_piece_length(n) -> int                   # ConfigError if unusable
    hash_pieces(files, piece_length, on_progress=None) -> bytes
    hash_torrent(path, piece_length=None, *, private=False,
                 on_progress=None) -> peerlab.wire.metainfo.Info

``on_progress(done_bytes, total_bytes)`` is called on the calling thread,
at least once per block, to drive a progress bar.  A file that changes size
or modification time while it is read raises
:class:`~peerlab.errors.StorageError`; one that cannot be read raises
:class:`OSError`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from peerlab.errors import ConfigError, LocalProtocolError, StorageError
from peerlab.wire.metainfo import (
    MAX_FILES,
    MAX_PATH_COMPONENTS,
    MAX_PIECES,
    SHA1_LENGTH,
    Info,
    path_component_problem,
)

#: Bytes read per block (a whole number of pieces; one piece when pieces are
#: larger).  4 MiB, as the catalog: large enough that hashlib releases the
#: GIL and per-block costs vanish, small enough for a modest pool.
BLOCK_SIZE = 4 * 1024 * 1024
#: Buffers in the pool: one being read, one or two being hashed, one spare.
#: Memory bound: ``POOL_BLOCKS * max(BLOCK_SIZE, piece length)``.
POOL_BLOCKS = 4
#: Bytes of pieces per hashing task: small pieces are hashed in groups so the
#: hand-off between threads costs little next to the hashing.
TASK_BYTES = 1024 * 1024
#: Below this many bytes in all, everything is hashed on the calling thread:
#: starting a thread costs more than it saves.
INLINE_LIMIT = 8 * 1024 * 1024
#: Piece lengths we create: powers of two from one request block (16 KiB,
#: BEP 3's customary block, BEP 52's minimum) to 32 MiB.  Larger pieces
#: waste a downloader's work on a failed hash and its memory while verifying.
CREATE_MIN_PIECE_LENGTH = 16 * 1024
CREATE_MAX_PIECE_LENGTH = 32 * 1024 * 1024
#: :func:`auto_piece_length` aims at about this many pieces (libtorrent's
#: rule of thumb: a torrent file of about 40 kB) ...
TARGET_PIECES = 2048
#: ... with pieces of at most this size (then the piece count grows).
AUTO_MAX_PIECE_LENGTH = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to put in a torrent: where it is, its path in the torrent
    (under the torrent's name; empty for a single-file torrent), its size."""

    path: Path
    relative: tuple[str, ...]
    size: int


# ------------------------------------------------------------------ choosing


def check_piece_length(n: int) -> int:
    """``n`` if it is a piece length we create, else :class:`ConfigError`."""
    if n < CREATE_MIN_PIECE_LENGTH or n > CREATE_MAX_PIECE_LENGTH or n & (n - 1):
        raise ConfigError(
            f"piece size {n} is not a power of two between {CREATE_MIN_PIECE_LENGTH} "
            f"(16K) and {CREATE_MAX_PIECE_LENGTH} (32M)"
        )
    return n


def auto_piece_length(total_size: int) -> int:
    """The smallest power of two from 16 KiB that cuts ``total_size`` into at
    most :data:`TARGET_PIECES` pieces, capped at :data:`AUTO_MAX_PIECE_LENGTH`."""
    length = CREATE_MIN_PIECE_LENGTH
    while length < AUTO_MAX_PIECE_LENGTH and -(-total_size // length) > TARGET_PIECES:
        length *= 2
    return length


def _component(name: str, where: Path) -> str:
    problem = path_component_problem(name)
    if problem is not None:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise ConfigError(f"cannot put {str(where)!r} in a torrent: the name {shown!r} {problem}")
    return name


def collect_files(path: Path | str) -> tuple[str, list[SourceFile], bool]:
    """What a torrent of ``path`` holds: its name, its files, whether it is multi-file.

    Raises :class:`ConfigError` for a missing path, a name that is not
    allowed in a torrent, too many files or no bytes at all.
    """
    root = Path(path).expanduser()
    try:
        st = root.stat()
    except FileNotFoundError:
        raise ConfigError(f"no such file or folder: {root}") from None
    root = root.resolve()
    name = _component(root.name, root)
    if stat.S_ISREG(st.st_mode):
        if st.st_size == 0:
            raise ConfigError(f"nothing to share: {root} is empty")
        return name, [SourceFile(root, (), st.st_size)], False
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"not a regular file or a folder: {root}")
    files: list[SourceFile] = []

    def walk(folder: Path, relative: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise StorageError(f"cannot list {folder}: {e.strerror or e}") from None
        for entry in entries:
            if entry.is_symlink():
                continue
            where = folder / entry.name
            if entry.is_dir(follow_symlinks=False):
                if len(relative) + 2 > MAX_PATH_COMPONENTS:
                    raise ConfigError(f"{where} is nested deeper than a torrent may hold "
                                      f"({MAX_PATH_COMPONENTS} folders)")
                walk(where, relative + (_component(entry.name, where),))
            elif entry.is_file(follow_symlinks=False):
                rel = relative + (_component(entry.name, where),)
                files.append(SourceFile(where, rel, entry.stat(follow_symlinks=False).st_size))
                if len(files) > MAX_FILES:
                    raise ConfigError(f"{root} holds more than {MAX_FILES} files")

    walk(root, ())
    if not files or not any(f.size for f in files):
        raise ConfigError(f"nothing to share: {root} holds no bytes")
    return name, files, True


# ------------------------------------------------------------------ reading


class _Reader:
    """The concatenation of the files, read into buffers block by block."""

    def __init__(self, files: Sequence[SourceFile]) -> None:
        self._files = list(files)
        self._index = 0
        self._fd: int | None = None
        self._st: os.stat_result | None = None
        self._left = 0  # bytes of the current file still to read

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_next(self) -> bool:
        while self._index < len(self._files):
            f = self._files[self._index]
            self._index += 1
            if f.size == 0:
                continue
            flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(f.path, flags)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"not a regular file any more: {f.path}")
                if st.st_size != f.size:
                    raise StorageError(f"file changed while the torrent was made: {f.path}")
                os.set_blocking(fd, True)
                if hasattr(os, "posix_fadvise"):
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
                    except OSError:
                        pass  # only a read-ahead hint
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._st, self._left = fd, st, f.size
            return True
        return False

    def _finish_file(self) -> None:
        assert self._fd is not None and self._st is not None
        after = os.fstat(self._fd)
        f = self._files[self._index - 1]
        if after.st_size != self._st.st_size or after.st_mtime_ns != self._st.st_mtime_ns:
            raise StorageError(f"file changed while the torrent was made: {f.path}")
        self.close()

    def fill(self, buf: memoryview) -> int:
        """Fill ``buf`` from the stream; fewer bytes only at its end."""
        got = 0
        want = len(buf)
        while got < want:
            if self._fd is None and not self._open_next():
                break
            assert self._fd is not None
            n = os.readv(self._fd, [buf[got : got + min(want - got, self._left)]])
            if n == 0:
                f = self._files[self._index - 1]
                raise StorageError(f"file changed while the torrent was made: {f.path}")
            got += n
            self._left -= n
            if self._left == 0:
                self._finish_file()
        return got


# ------------------------------------------------------------------ hashing


def _hash_range(view: memoryview, piece_length: int, out: bytearray, first: int) -> None:
    """SHA-1 of each piece in ``view`` into ``out``, starting at piece ``first``."""
    sha1 = hashlib.sha1
    pos = 0
    index = first * SHA1_LENGTH
    n = len(view)
    while pos < n:
        out[index : index + SHA1_LENGTH] = sha1(view[pos : pos + piece_length]).digest()
        pos += piece_length
        index += SHA1_LENGTH


class _Pool:
    """Buffers, the task FIFO and the hashing thread."""

    def __init__(self, block: int, count: int, piece_length: int, digests: bytearray) -> None:
        self.views = [memoryview(bytearray(block)) for _ in range(count)]
        self.free = list(range(count))
        self.pending = [0] * count  # unfinished tasks per buffer
        self.tasks: deque[tuple[int, int, int, int]] = deque()  # (buffer, start, end, piece)
        self.cond = threading.Condition(threading.Lock())
        self.closing = False
        self.error: BaseException | None = None
        self.done_bytes = 0
        self.piece_length = piece_length
        self.digests = digests
        self.thread = threading.Thread(target=self._work, name="torrent-hash", daemon=True)

    def _take(self) -> tuple[int, int, int, int] | None:
        """The oldest task (call under the lock)."""
        return self.tasks.popleft() if self.tasks else None

    def _run(self, task: tuple[int, int, int, int]) -> None:
        buffer, start, end, piece = task
        _hash_range(self.views[buffer][start:end], self.piece_length, self.digests, piece)
        with self.cond:
            self.done_bytes += end - start
            self.pending[buffer] -= 1
            if self.pending[buffer] == 0:
                self.free.append(buffer)
            self.cond.notify_all()

    def _work(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.tasks and not self.closing:
                        self.cond.wait()
                    task = self._take()
                    if task is None:
                        return
                self._run(task)
        except BaseException as e:  # reported to the reading thread, never lost
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def _check(self) -> None:
        """Raise what the hashing thread hit (call under the lock)."""
        if self.error is not None:
            raise StorageError(f"hashing failed: {self.error}") from self.error

    def buffer(self) -> int:
        """A free buffer; hash pieces while none is free."""
        while True:
            with self.cond:
                self._check()
                if self.free:
                    return self.free.pop()
                task = self._take()
                if task is None:
                    self.cond.wait(0.25)
                    continue
            self._run(task)

    def submit(self, buffer: int, n: int, first_piece: int) -> None:
        step = max(1, TASK_BYTES // self.piece_length) * self.piece_length
        with self.cond:
            for start in range(0, n, step):
                self.tasks.append((buffer, start, min(start + step, n),
                                   first_piece + start // self.piece_length))
                self.pending[buffer] += 1
            if self.pending[buffer] == 0:
                self.free.append(buffer)
            self.cond.notify_all()

    def drain(self, report: Callable[[], None]) -> None:
        """Help with the remaining tasks, then wait until every one is done."""
        while True:
            with self.cond:
                self._check()
                task = self._take()
                if task is None:
                    if not any(self.pending):
                        return
                    self.cond.wait(0.25)
            if task is not None:
                self._run(task)
            else:
                report()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.tasks.clear()
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join()


def hash_pieces(
    files: Sequence[SourceFile],
    piece_length: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """The ``pieces`` string (BEP 3) of ``files`` concatenated, cut every ``piece_length``."""
    if piece_length <= 0:
        raise LocalProtocolError(f"piece length {piece_length}")
    total = sum(f.size for f in files)
    count = -(-total // piece_length)
    if count > MAX_PIECES:
        raise ConfigError(
            f"{count} pieces of {piece_length} bytes is more than a torrent may hold "
            f"({MAX_PIECES}); use a larger piece size"
        )
    digests = bytearray(count * SHA1_LENGTH)
    pieces_per_block = max(1, BLOCK_SIZE // piece_length)
    block = pieces_per_block * piece_length
    reader = _Reader(files)

    def report(done: int) -> None:
        if on_progress is not None:
            on_progress(done, total)

    try:
        if total <= INLINE_LIMIT:
            view = memoryview(bytearray(min(block, max(total, 1))))
            offset = 0
            while offset < total:
                n = reader.fill(view)
                if n == 0:
                    break
                _hash_range(view[:n], piece_length, digests, offset // piece_length)
                offset += n
                report(offset)
            if offset != total:
                raise StorageError("files changed while the torrent was made")
            return bytes(digests)
        pool = _Pool(block, POOL_BLOCKS, piece_length, digests)
        pool.thread.start()
        try:
            offset = 0
            while offset < total:
                i = pool.buffer()
                n = reader.fill(pool.views[i][: min(block, total - offset)])
                if n == 0:
                    raise StorageError("files changed while the torrent was made")
                pool.submit(i, n, offset // piece_length)
                offset += n
                report(pool.done_bytes)
            pool.drain(lambda: report(pool.done_bytes))
            report(total)
        finally:
            pool.close()
        return bytes(digests)
    finally:
        reader.close()


def hash_torrent(
    path: Path | str,
    piece_length: int | None = None,
    *,
    private: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Info:
    """The info dictionary (BEP 3) of a torrent of ``path``: a file or a folder.

    ``piece_length`` defaults to :func:`auto_piece_length` of the total size
    and must otherwise pass :func:`check_piece_length`.  ``private`` sets the
    BEP 27 flag.
    """
    name, files, multi_file = collect_files(path)
    total = sum(f.size for f in files)
    length = auto_piece_length(total) if piece_length is None else check_piece_length(
        piece_length)

    def build(pieces: bytes) -> Info:
        try:
            if multi_file:
                return Info.create(name, length, pieces,
                                   files=[(f.relative, f.size) for f in files], private=private)
            return Info.create(name, length, pieces, length=total, private=private)
        except LocalProtocolError as e:
            # Info's checks go further than the per-name one (path lengths,
            # names that collide on case-insensitive file systems).
            raise ConfigError(f"cannot make a torrent of {path}: {e}") from None

    count = -(-total // length)
    if count <= MAX_PIECES:
        build(bytes(count * SHA1_LENGTH))  # refuse a bad file list before hashing it all
    return build(hash_pieces(files, length, on_progress))
