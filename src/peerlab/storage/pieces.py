"""A torrent's pieces on disk (or in memory): layout, verified writes, reads, resume.

Issue 6, sections 3, 4 and 6; DESIGN.md "Data safety".  BEP 3 ("metainfo
files"): a torrent's content is its files concatenated in order and cut into
pieces of ``piece length`` bytes, the last one shorter; pieces cross file
boundaries.  BEP 47: padding files are part of the piece space but never
written (they read as zeros).

What this module promises:

* **Only verified bytes are written.**  Blocks of a piece are collected in
  memory (:meth:`PieceStore.put_block`); when the piece is whole it is hashed
  and, only if its SHA-1 matches the torrent, written into the final layout
  (:meth:`PieceStore.submit`).  Hashing and writing run through
  ``runtime.offload`` (a worker thread on the real runtime).  A piece counts
  (:attr:`PieceStore.have`) only once it is on disk.
* **Paths stay inside the download folder.**  Every file is placed at
  ``root / <path from the torrent>``; the torrent's names were already
  checked by :mod:`peerlab.wire.metainfo` (no ``..``, no absolute names, no
  reserved names), and on top of that every existing component on the way is
  checked not to be a symbolic link and the resolved path to lie under the
  root (:func:`safe_path`).
* **kill -9 never loses a verified piece.**  The resume state (which pieces
  are verified) is written atomically (temp file, fsync, rename, fsync of the
  folder) a moment after pieces complete, and on stop.  A piece is written
  before it is marked, so on restart :meth:`PieceStore.check` trusts the bits
  of the resume file (when the files are still long enough to hold them) and
  re-hashes every other piece whose bytes exist on disk: the pieces written
  after the last resume save are found again, not fetched again.

Public API
==========

::

    PieceBits(count, bitfield=None)      # a set of piece indices as a BEP 3 bitfield
        in / .add(i) / .discard(i) / .count / .complete / .to_bytes() / iter()
        .missing() -> list[int] / .copy()
    FileLayout(info)                     # piece space -> files
        .spans(offset, length) -> list[Span]     .piece_spans(index) -> list[Span]
        .piece_size(index) .piece_offset(index) .total_size .piece_count
    Storage (Protocol): read(offset, length) -> bytes; write(offset, data);
        has_data(offset, length) -> bool; sync(); close(); describe() -> str
    FileStorage(layout, root)            # files under root, positioned I/O
    MemoryStorage(layout, data=None)     # sparse, in memory (the simulator's hundreds of peers)
    safe_path(root, parts) -> Path       # StorageError for anything leading out of root
    ResumeState(info_hash, piece_count, have: bytes)     # what the resume file holds
    read_resume(path) -> ResumeState | None;  write_resume(path, state)   # atomic
    write_atomic(path, data)             # temp file, fsync, rename, fsync the folder
    PieceStore(runtime, info, storage, *, resume_path=None, observer_prefix="bt.store",
               max_buffer_bytes=MAX_BUFFER_BYTES, read_cache_bytes=READ_CACHE_BYTES)
        .have: PieceBits   .checked: bool   .complete: bool
        .check(done, *, trust_resume=True)     # startup: resume bits + re-hash the rest
        .mark_all_verified()                   # we made the files ourselves (seeding)
        .put_block(index, begin, data) -> bool # True: the piece is whole, submit it
        .drop_piece(index)                     # forget a partial piece's buffer
        .submit(index, done)                   # hash, write if good; done(index, ok, error)
        .buffered_bytes / .buffer_room(piece_size) -> bool
        .read_block(index, begin, length, done)   # done(data | None, exc | None)
        .read_cached(index, begin, length) -> bytes | None   # at once, from the cache
        .save_resume() / .close()
        .counters                               # Counter: verified, failed, bytes_written...

Counters go to ``runtime.observer`` under ``observer_prefix`` too:
``verified``, ``hash_failed``, ``bytes_written``, ``bytes_read``,
``resume_saves``, ``resume_trusted``, ``rechecked``, ``recheck_found``,
``storage_errors``; ``read_cache_hits`` (the seeding hot path) is kept in
:attr:`PieceStore.counters` only.

Errors from the disk raise (or are delivered as) :class:`~peerlab.errors.StorageError`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import errno
import hashlib
import json
import os
import stat
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from peerlab.errors import StorageError
from peerlab.runtime.base import Runtime, Timer
from peerlab.wire.metainfo import Info

__all__ = [
    "MAX_BUFFER_BYTES",
    "MAX_OPEN_FILES",
    "READ_CACHE_BYTES",
    "RECHECK_BATCH_BYTES",
    "RESUME_SAVE_DELAY",
    "FileLayout",
    "FileStorage",
    "MemoryStorage",
    "PieceBits",
    "PieceStore",
    "ResumeState",
    "Span",
    "Storage",
    "read_resume",
    "safe_path",
    "write_atomic",
    "write_resume",
]

#: Bytes of partial pieces held in memory while their blocks arrive (a piece
#: is verified whole before it is written).  The piece picker starts no new
#: piece beyond this, so a torrent with 16 MiB pieces and many peers cannot
#: make us hold more.
MAX_BUFFER_BYTES = 256 << 20
#: Bytes of whole pieces kept after a read or a write to answer requests: peers
#: ask for the blocks of a piece one after another, so one disk read serves
#: them all.
READ_CACHE_BYTES = 32 << 20
#: Bytes hashed per offloaded task while re-checking data on disk at start-up.
RECHECK_BATCH_BYTES = 8 << 20
#: Re-check tasks in flight at once (one per worker thread of the real runtime).
RECHECK_PARALLEL = 2
#: Seconds between a piece's verification and the resume save that records
#: it (pieces completing meanwhile share the save).  What a crash loses in
#: that window is found again by the re-check, never fetched again.
RESUME_SAVE_DELAY = 2.0
#: Files a :class:`FileStorage` keeps open at once (least recently used closed).
MAX_OPEN_FILES = 64
#: Bumped when the resume file's shape changes; other versions are ignored.
RESUME_VERSION = 1
#: Largest resume file read: the bitfield of the largest torrent
#: (2 Mi pieces -> 256 KiB, base64 ~350 KiB) plus a little.
MAX_RESUME_BYTES = 1 << 20
#: Chunk size of :class:`MemoryStorage`'s sparse buffer.
MEMORY_CHUNK = 64 << 10


T = TypeVar("T")

# ------------------------------------------------------------------ piece sets


class PieceBits:
    """A set of piece indices kept as a BEP 3 bitfield (high bit of byte 0 is
    piece 0), so it goes on the wire as is and tests membership cheaply."""

    __slots__ = ("size", "data", "count")

    def __init__(self, size: int, bitfield: bytes | bytearray | memoryview | None = None) -> None:
        self.size = size
        nbytes = (size + 7) >> 3
        if bitfield is None:
            self.data = bytearray(nbytes)
            self.count = 0
        else:
            if len(bitfield) != nbytes:
                raise ValueError(f"bitfield of {len(bitfield)} bytes for {size} pieces")
            self.data = bytearray(bitfield)
            spare = nbytes * 8 - size
            if spare:
                self.data[-1] &= 0xFF << spare & 0xFF
            self.count = int.from_bytes(self.data, "big").bit_count()

    @classmethod
    def full(cls, size: int) -> PieceBits:
        bits = cls(size)
        nbytes = len(bits.data)
        if nbytes:
            bits.data[:] = b"\xff" * nbytes
            spare = nbytes * 8 - size
            if spare:
                bits.data[-1] = 0xFF << spare & 0xFF
        bits.count = size
        return bits

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or not 0 <= index < self.size:
            return False
        return bool(self.data[index >> 3] & (0x80 >> (index & 7)))

    def add(self, index: int) -> bool:
        """Add ``index``; True if it was not in the set."""
        mask = 0x80 >> (index & 7)
        byte = self.data[index >> 3]
        if byte & mask:
            return False
        self.data[index >> 3] = byte | mask
        self.count += 1
        return True

    def discard(self, index: int) -> bool:
        """Remove ``index``; True if it was in the set."""
        mask = 0x80 >> (index & 7)
        byte = self.data[index >> 3]
        if not byte & mask:
            return False
        self.data[index >> 3] = byte & ~mask
        self.count -= 1
        return True

    @property
    def complete(self) -> bool:
        return self.count == self.size

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        for byte_index, byte in enumerate(self.data):
            if byte:
                base = byte_index << 3
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        yield base + bit

    def missing(self) -> list[int]:
        """The indices not in the set, ascending."""
        out: list[int] = []
        size = self.size
        for byte_index, byte in enumerate(self.data):
            if byte != 0xFF:
                base = byte_index << 3
                for bit in range(8):
                    i = base + bit
                    if i < size and not byte & (0x80 >> bit):
                        out.append(i)
        return out

    def to_bytes(self) -> bytes:
        return bytes(self.data)

    def copy(self) -> PieceBits:
        return PieceBits(self.size, self.data)

    def __repr__(self) -> str:
        return f"<PieceBits {self.count}/{self.size}>"


# ------------------------------------------------------------------ layout


@dataclass(frozen=True, slots=True)
class Span:
    """A run of bytes of the piece space inside one file."""

    file_index: int
    file_offset: int
    length: int


class FileLayout:
    """Where each byte of the piece space lives (BEP 3: files in order)."""

    def __init__(self, info: Info) -> None:
        self.info = info
        self.files = info.files
        self.piece_length = info.piece_length
        self.total_size = info.total_size
        self.piece_count = info.piece_count
        self._starts = [f.offset for f in self.files]

    def piece_offset(self, index: int) -> int:
        return index * self.piece_length

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.piece_count:
            raise IndexError(f"piece {index} of {self.piece_count}")
        return min(self.piece_length, self.total_size - index * self.piece_length)

    def spans(self, offset: int, length: int) -> list[Span]:
        """The file runs holding ``length`` bytes from ``offset`` (zero-length
        files are skipped)."""
        if offset < 0 or length < 0 or offset + length > self.total_size:
            raise IndexError(f"bytes {offset}+{length} outside {self.total_size}")
        out: list[Span] = []
        i = bisect.bisect_right(self._starts, offset) - 1
        end = offset + length
        files = self.files
        while offset < end:
            f = files[i]
            f_end = f.offset + f.length
            if f_end > offset:
                take = min(end, f_end) - offset
                out.append(Span(i, offset - f.offset, take))
                offset += take
            i += 1
        return out

    def piece_spans(self, index: int) -> list[Span]:
        return self.spans(self.piece_offset(index), self.piece_size(index))


# ------------------------------------------------------------------ storage


class Storage(Protocol):
    """Bytes of the piece space, kept somewhere.  Methods may block: call them
    through ``runtime.offload``.  They must be safe on two threads at once."""

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes; StorageError if any of them is missing."""

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    def has_data(self, offset: int, length: int) -> bool:
        """Whether every byte of the range may exist (files long enough)."""

    def sync(self) -> None:
        """Make written bytes durable (fsync)."""

    def close(self) -> None: ...

    def describe(self) -> str:
        """Where the data lives, for people."""


def safe_path(root: Path, parts: Sequence[str]) -> Path:
    """``root / parts``, refusing anything that could lead out of ``root``:
    absolute or ``..`` components, and symbolic links on the way (an existing
    link would let a torrent write wherever it points).  DESIGN.md "Data
    safety"; the names themselves were checked by the metainfo parser."""
    path = root
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\x00" in part or "\\" in part:
            raise StorageError(f"unsafe path component {part!r} under {root}")
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot inspect {path}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(f"{path} is a symbolic link; refusing to write through it")
    try:
        resolved_root = root.resolve()
        if not path.resolve().is_relative_to(resolved_root):
            raise StorageError(f"{path} lies outside {root}")
    except OSError as exc:
        raise StorageError(f"cannot resolve {path}: {exc.strerror}") from None
    return path


class FileStorage:
    """The torrent's files under ``root``, read and written with positioned I/O.

    Files and folders are created on the first write (sparse: a file grows as
    pieces land in it).  Padding files (BEP 47) are never created; they read
    as zeros.  A file marked executable (BEP 47 ``x``) is created mode 0755.
    """

    def __init__(self, layout: FileLayout, root: Path | str) -> None:
        self.layout = layout
        self.root = Path(root)
        self._paths: list[Path | None] = []
        for f in layout.files:
            self._paths.append(None if f.padding else safe_path(self.root, f.path))
        self._fds: OrderedDict[tuple[int, bool], int] = OrderedDict()
        self._lock = threading.Lock()
        self._dirty: set[int] = set()

    def describe(self) -> str:
        return str(self.root)

    def path(self, file_index: int) -> Path | None:
        """Where file ``file_index`` lives (None for padding)."""
        return self._paths[file_index]

    def _fd(self, file_index: int, writing: bool) -> int:
        key = (file_index, writing)
        with self._lock:
            fd = self._fds.get(key)
            if fd is not None:
                self._fds.move_to_end(key)
                return fd
            path = self._paths[file_index]
            assert path is not None
            try:
                if writing:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # re-check after creating folders: nothing may have slipped in
                    safe_path(self.root, self.layout.files[file_index].path)
                    mode = 0o755 if self.layout.files[file_index].executable else 0o644
                    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                    fd = os.open(path, flags, mode)
                else:
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError as exc:
                raise StorageError(f"cannot open {path}: {exc.strerror}") from None
            self._fds[key] = fd
            while len(self._fds) > MAX_OPEN_FILES:
                (old_index, old_writing), old = self._fds.popitem(last=False)
                if old_writing and old_index in self._dirty:
                    self._sync_fd(old, old_index)
                os.close(old)
            return fd

    def _sync_fd(self, fd: int, file_index: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot sync {self._paths[file_index]}: {exc.strerror}") from None
        self._dirty.discard(file_index)

    def read(self, offset: int, length: int) -> bytes:
        parts: list[bytes] = []
        for span in self.layout.spans(offset, length):
            if self._paths[span.file_index] is None:
                parts.append(bytes(span.length))
                continue
            fd = self._fd(span.file_index, False)
            try:
                data = os.pread(fd, span.length, span.file_offset)
            except OSError as exc:
                path = self._paths[span.file_index]
                raise StorageError(f"cannot read {path}: {exc.strerror}") from None
            if len(data) != span.length:
                path = self._paths[span.file_index]
                raise StorageError(f"{path} is shorter than the torrent says")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        pos = 0
        for span in self.layout.spans(offset, len(view)):
            chunk = view[pos : pos + span.length]
            pos += span.length
            if self._paths[span.file_index] is None:
                continue
            fd = self._fd(span.file_index, True)
            done = 0
            try:
                while done < len(chunk):
                    done += os.pwrite(fd, chunk[done:], span.file_offset + done)
            except OSError as exc:
                path = self._paths[span.file_index]
                if exc.errno == errno.ENOSPC:
                    raise StorageError(f"disk full writing {path}") from None
                raise StorageError(f"cannot write {path}: {exc.strerror}") from None
            self._dirty.add(span.file_index)

    def has_data(self, offset: int, length: int) -> bool:
        for span in self.layout.spans(offset, length):
            path = self._paths[span.file_index]
            if path is None:
                continue
            try:
                size = os.stat(path).st_size
            except OSError:
                return False
            if size < span.file_offset + span.length:
                return False
        return True

    def sync(self) -> None:
        with self._lock:
            for (file_index, writing), fd in list(self._fds.items()):
                if writing and file_index in self._dirty:
                    self._sync_fd(fd, file_index)

    def close(self) -> None:
        with self._lock:
            fds = list(self._fds.items())
            self._fds.clear()
        for (file_index, writing), fd in fds:
            try:
                if writing and file_index in self._dirty:
                    os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
        self._dirty.clear()


class MemoryStorage:
    """The piece space in memory, sparse (chunks of :data:`MEMORY_CHUNK`
    bytes appear when written): the simulator runs hundreds of peers on it.
    ``data`` fills it at once (a seed)."""

    def __init__(self, layout: FileLayout, data: bytes | None = None) -> None:
        self.layout = layout
        self._chunks: dict[int, bytearray] = {}
        self._lock = threading.Lock()
        if data is not None:
            if len(data) != layout.total_size:
                raise StorageError(f"{len(data)} bytes for a torrent of {layout.total_size}")
            self.write(0, data)

    def describe(self) -> str:
        return "memory"

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        pos = 0
        with self._lock:
            while pos < len(view):
                index, inner = divmod(offset + pos, MEMORY_CHUNK)
                take = min(MEMORY_CHUNK - inner, len(view) - pos)
                chunk = self._chunks.get(index)
                if chunk is None:
                    chunk = self._chunks[index] = bytearray(MEMORY_CHUNK)
                chunk[inner : inner + take] = view[pos : pos + take]
                pos += take

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        pos = offset
        end = offset + length
        with self._lock:
            while pos < end:
                index, inner = divmod(pos, MEMORY_CHUNK)
                take = min(MEMORY_CHUNK - inner, end - pos)
                chunk = self._chunks.get(index)
                if chunk is None:
                    raise StorageError(f"bytes {pos}+{take} were never written")
                out += chunk[inner : inner + take]
                pos += take
        return bytes(out)

    def has_data(self, offset: int, length: int) -> bool:
        first = offset // MEMORY_CHUNK
        last = (offset + max(length, 1) - 1) // MEMORY_CHUNK
        return all(i in self._chunks for i in range(first, last + 1))

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ resume


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What a resume file records: the verified pieces of one torrent."""

    info_hash: bytes
    piece_count: int
    have: bytes  # BEP 3 bitfield


def read_resume(path: Path | str) -> ResumeState | None:
    """The resume state in ``path``, or None when it is missing or unusable
    (wrong version, garbage: the re-check then finds the pieces instead)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_RESUME_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {p}: {exc.strerror}") from None
    if len(raw) > MAX_RESUME_BYTES:
        return None
    try:
        d = json.loads(raw)
        if not isinstance(d, dict) or d.get("version") != RESUME_VERSION:
            return None
        info_hash = bytes.fromhex(d["info_hash"])
        count = d["piece_count"]
        have = base64.b64decode(d["have"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if len(info_hash) != 20 or not isinstance(count, int) or len(have) != (count + 7) // 8:
        return None
    return ResumeState(info_hash, count, have)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, rename,
    fsync the folder.  A crash leaves the old file or the new one, never a
    torn one."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {p}: {exc.strerror}") from None
    _fsync_dir(p.parent)


def write_resume(path: Path | str, state: ResumeState) -> None:
    """Write the resume file atomically (:func:`write_atomic`)."""
    body = json.dumps(
        {
            "version": RESUME_VERSION,
            "info_hash": state.info_hash.hex(),
            "piece_count": state.piece_count,
            "have": base64.b64encode(state.have).decode("ascii"),
        }
    ).encode()
    write_atomic(path, body)


# ------------------------------------------------------------------ the store


DoneCallback = Callable[[int, bool, StorageError | None], None]


class _Partial:
    __slots__ = ("buf", "received")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.received = 0


class PieceStore:
    """The pieces of one torrent: verified writes, cached reads, resume state.

    Single-threaded from the caller's side (the event loop); the blocking
    parts run through ``runtime.offload``.  See the module docstring.
    """

    def __init__(
        self,
        runtime: Runtime,
        info: Info,
        storage: Storage,
        *,
        resume_path: Path | str | None = None,
        observer_prefix: str = "bt.store",
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
        read_cache_bytes: int = READ_CACHE_BYTES,
    ) -> None:
        self.runtime = runtime
        self.info = info
        self.layout = FileLayout(info)
        self.storage = storage
        self.resume_path = Path(resume_path) if resume_path is not None else None
        self.have = PieceBits(info.piece_count)
        self.checked = False
        self.closed = False
        self.counters: Counter[str] = Counter()
        self.max_buffer_bytes = max_buffer_bytes
        self.read_cache_bytes = read_cache_bytes
        self._prefix = observer_prefix
        self._partials: dict[int, _Partial] = {}
        self._buffered = 0
        self._in_flight: set[int] = set()  # submitted, being hashed/written
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._reads: dict[int, list[tuple[int, int, Callable[..., None]]]] = {}
        self._resume_dirty = False
        self._resume_timer: Timer | None = None
        self._resume_saving = False
        self._busy = 0  # offloaded tasks in flight
        self._storage_closed = False

    # -- counters

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
        self.runtime.observer.count(f"{self._prefix}.{name}", n)

    @property
    def complete(self) -> bool:
        return self.have.complete

    # -- start-up

    def mark_all_verified(self) -> None:
        """Every piece is on disk and good (we hashed these files ourselves
        to make the torrent): skip the check."""
        self.have = PieceBits.full(self.info.piece_count)
        self.checked = True

    def check(self, done: Callable[[Exception | None], None], *, trust_resume: bool = True) -> None:
        """Find the verified pieces: the resume file's bits (if its files are
        still long enough), then a re-hash of every other piece whose bytes
        exist.  ``done(None)`` when finished, ``done(exc)`` if the disk failed."""
        trusted: PieceBits | None = None
        if trust_resume and self.resume_path is not None:
            try:
                state = read_resume(self.resume_path)
            except StorageError as exc:
                self.runtime.observer.event(f"{self._prefix}.resume_unreadable", error=str(exc))
                state = None
            if (
                state is not None
                and state.info_hash == self.info.info_hash
                and state.piece_count == self.info.piece_count
            ):
                trusted = PieceBits(state.piece_count, state.have)
        layout = self.layout
        storage = self.storage

        def plan() -> tuple[list[int], list[int]]:
            trust: list[int] = []
            recheck: list[int] = []
            for index in range(layout.piece_count):
                offset = layout.piece_offset(index)
                size = layout.piece_size(index)
                if not storage.has_data(offset, size):
                    continue
                if trusted is not None and index in trusted:
                    trust.append(index)
                else:
                    recheck.append(index)
            return trust, recheck

        def planned(result: tuple[list[int], list[int]] | None, exc: BaseException | None) -> None:
            self._task_done()
            if exc is not None or result is None:
                done(_storage_error(exc))
                return
            trust, recheck = result
            for index in trust:
                self.have.add(index)
            self._count("resume_trusted", len(trust))
            self._recheck(recheck, done)

        self._offload(plan, planned)

    def _recheck(self, pieces: list[int], done: Callable[[Exception | None], None]) -> None:
        _Recheck(self, pieces, done).launch()

    # -- downloading

    @property
    def buffered_bytes(self) -> int:
        """Bytes of partial and submitted pieces held in memory."""
        return self._buffered

    def buffer_room(self, piece_size: int) -> bool:
        """Whether one more piece of ``piece_size`` may be started."""
        return self._buffered + piece_size <= self.max_buffer_bytes or not self._buffered

    def put_block(self, index: int, begin: int, data: bytes | memoryview) -> bool:
        """Keep a block of piece ``index`` (each block once: the picker sees
        to it).  True when the piece has all its bytes: :meth:`submit` it."""
        partial = self._partials.get(index)
        if partial is None:
            size = self.layout.piece_size(index)
            partial = self._partials[index] = _Partial(size)
            self._buffered += size
        end = begin + len(data)
        if begin < 0 or end > len(partial.buf):
            raise IndexError(f"block {begin}+{len(data)} outside piece {index}")
        partial.buf[begin:end] = data
        partial.received += len(data)
        return partial.received >= len(partial.buf)

    def drop_piece(self, index: int) -> None:
        """Forget the blocks of a partial piece (it is given up)."""
        partial = self._partials.pop(index, None)
        if partial is not None:
            self._buffered -= len(partial.buf)

    def submit(self, index: int, done: DoneCallback) -> None:
        """Hash piece ``index``; write it if its SHA-1 matches, then mark it
        had.  ``done(index, ok, error)`` from the loop: ``(i, True, None)``
        verified and written; ``(i, False, None)`` a bad hash (the blocks are
        dropped); ``(i, False, StorageError)`` the disk failed."""
        partial = self._partials.pop(index, None)
        if partial is None:
            raise KeyError(f"piece {index} has no blocks")
        buf = bytes(partial.buf)
        self._in_flight.add(index)
        want = self.info.piece_hash(index)
        offset = self.layout.piece_offset(index)
        storage = self.storage

        def work() -> bool:
            if hashlib.sha1(buf).digest() != want:
                return False
            storage.write(offset, buf)
            return True

        def finished(ok: bool | None, exc: BaseException | None) -> None:
            self._in_flight.discard(index)
            self._buffered -= len(buf)
            self._task_done()
            if exc is not None:
                self._count("storage_errors")
                self.runtime.observer.event(
                    f"{self._prefix}.write_failed", piece=index, error=str(exc)
                )
                done(index, False, _storage_error(exc))
                return
            if not ok:
                self._count("hash_failed")
                done(index, False, None)
                return
            self.have.add(index)
            self._count("verified")
            self._count("bytes_written", len(buf))
            self._cache_put(index, buf)
            self._resume_dirty = True
            self._schedule_resume_save()
            done(index, True, None)

        self._offload(work, finished)

    # -- uploading

    def _cache_put(self, index: int, data: bytes) -> None:
        if len(data) > self.read_cache_bytes:
            return
        old = self._cache.pop(index, None)
        if old is not None:
            self._cache_bytes -= len(old)
        self._cache[index] = data
        self._cache_bytes += len(data)
        while self._cache_bytes > self.read_cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= len(dropped)

    def read_cached(self, index: int, begin: int, length: int) -> bytes | None:
        """The block at once if its piece is in the read cache, else None
        (then :meth:`read_block`): the hot path of seeding."""
        cached = self._cache.get(index)
        if cached is None:
            return None
        self._cache.move_to_end(index)
        self.counters["read_cache_hits"] += 1
        return cached[begin : begin + length]

    def read_block(
        self,
        index: int,
        begin: int,
        length: int,
        done: Callable[[bytes | None, BaseException | None], None],
    ) -> None:
        """Read a block of a verified piece; ``done(data, None)`` or
        ``done(None, exc)`` later from the loop (never from inside this call)."""
        if index not in self.have:
            raise KeyError(f"piece {index} is not verified")
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            self.counters["read_cache_hits"] += 1
            block = cached[begin : begin + length]
            self.runtime.call_soon(lambda: done(block, None))
            return
        waiters = self._reads.get(index)
        if waiters is not None:
            waiters.append((begin, length, done))
            return
        self._reads[index] = [(begin, length, done)]
        offset = self.layout.piece_offset(index)
        size = self.layout.piece_size(index)
        storage = self.storage

        def finished(data: bytes | None, exc: BaseException | None) -> None:
            self._task_done()
            waiting = self._reads.pop(index, [])
            if data is not None:
                self._count("bytes_read", len(data))
                self._cache_put(index, data)
            else:
                self._count("storage_errors")
            for b, n, cb in waiting:
                if data is None:
                    cb(None, _storage_error(exc))
                else:
                    cb(data[b : b + n], None)

        self._offload(lambda: storage.read(offset, size), finished)

    # -- resume

    def _resume_state(self) -> ResumeState:
        return ResumeState(self.info.info_hash, self.info.piece_count, self.have.to_bytes())

    def _schedule_resume_save(self) -> None:
        if self.resume_path is None or self._resume_timer is not None or self.closed:
            return
        self._resume_timer = self.runtime.call_later(RESUME_SAVE_DELAY, self._save_due)

    def _save_due(self) -> None:
        self._resume_timer = None
        if not self._resume_dirty or self.resume_path is None:
            return
        if self._resume_saving:
            self._schedule_resume_save()
            return
        self._resume_dirty = False
        self._resume_saving = True
        state = self._resume_state()
        path = self.resume_path
        storage = self.storage

        def work() -> None:
            storage.sync()  # the pieces the state claims are durable first
            write_resume(path, state)

        def finished(_: None, exc: BaseException | None) -> None:
            self._task_done()
            self._resume_saving = False
            if exc is not None:
                self._count("storage_errors")
                self.runtime.observer.event(f"{self._prefix}.resume_failed", error=str(exc))
                self._resume_dirty = True
            else:
                self._count("resume_saves")
            if self._resume_dirty:
                self._schedule_resume_save()

        self._offload(work, finished)

    def save_resume(self) -> None:
        """Sync and write the resume state now, on this thread."""
        if self.resume_path is None:
            return
        self.storage.sync()
        write_resume(self.resume_path, self._resume_state())
        self._resume_dirty = False
        self._count("resume_saves")

    def close(self) -> None:
        """Stop: write the resume state (synchronously) and close the files
        once the work in flight is done.  Partial pieces in memory are
        dropped (their blocks come again); a piece whose write was in flight
        is found by the next start's re-check."""
        if self.closed:
            return
        self.closed = True
        timer = self._resume_timer
        self._resume_timer = None
        if timer is not None:
            timer.cancel()
        self._partials.clear()
        try:
            if self.checked:
                self.save_resume()
        except StorageError as exc:
            self.runtime.observer.event(f"{self._prefix}.resume_failed", error=str(exc))
        self._task_done(0)

    # -- work in flight

    def _offload(
        self, fn: Callable[[], T], done: Callable[[T | None, BaseException | None], None]
    ) -> None:
        self._busy += 1
        self.runtime.offload(fn, done)

    def _task_done(self, n: int = 1) -> None:
        """One offloaded task finished; the files close after the last one."""
        self._busy -= n
        if self.closed and not self._busy and not self._storage_closed:
            self._storage_closed = True
            self.storage.close()


class _Recheck:
    """Re-hashes pieces found on disk, in batches of about
    :data:`RECHECK_BATCH_BYTES`, :data:`RECHECK_PARALLEL` at a time."""

    def __init__(
        self, store: PieceStore, pieces: list[int], done: Callable[[Exception | None], None]
    ) -> None:
        self.store = store
        self.total = len(pieces)
        self.done = done
        self.running = 0
        self.failed: StorageError | None = None
        batches: list[list[int]] = []
        batch: list[int] = []
        size = 0
        for index in pieces:
            batch.append(index)
            size += store.layout.piece_size(index)
            if size >= RECHECK_BATCH_BYTES:
                batches.append(batch)
                batch, size = [], 0
        if batch:
            batches.append(batch)
        self.queue = list(reversed(batches))

    def launch(self) -> None:
        store = self.store
        while self.queue and self.running < RECHECK_PARALLEL and self.failed is None:
            items = self.queue.pop()
            self.running += 1
            store._offload(self._worker(items), self._finished)
        if (not self.queue or self.failed is not None) and not self.running:
            store.checked = True
            store._count("rechecked", self.total)
            store._resume_dirty = True
            store._schedule_resume_save()
            self.done(self.failed)

    def _worker(self, items: list[int]) -> Callable[[], list[int]]:
        storage = self.store.storage
        layout = self.store.layout
        hashes = self.store.info.pieces

        def work() -> list[int]:
            good: list[int] = []
            for index in items:
                try:
                    data = storage.read(layout.piece_offset(index), layout.piece_size(index))
                except StorageError:
                    continue
                if hashlib.sha1(data).digest() == hashes[index * 20 : index * 20 + 20]:
                    good.append(index)
            return good

        return work

    def _finished(self, good: list[int] | None, exc: BaseException | None) -> None:
        self.store._task_done()
        self.running -= 1
        if exc is not None:
            self.failed = _storage_error(exc)
        for index in good or ():
            self.store.have.add(index)
        self.store._count("recheck_found", len(good or ()))
        self.launch()


def _storage_error(exc: BaseException | None) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    return StorageError(f"storage failed: {exc}")
