"""Partial downloads on disk: the ``.part`` file, its ``.state`` file, and the final move.

DESIGN.md, "Data safety": a byte reaches the user's download folder only after
its hash is verified, and ``kill -9`` never loses verified work.  This module
is the disk half of that promise (issue 2, section 4, "Transfers"); the
network half is :mod:`peerlab.overlays.transfer.download`.

Layout in the incomplete folder, one pair per download, named by the base32
SHA-1 of the file (so two downloads can never share a partial)::

    <BASE32>.part    the file being assembled, pre-sized, written with pwrite
    <BASE32>.state   JSON: urn, name, size, chunk list, have-bitfield, sources,
                     banned sources; replaced atomically (temp, fsync, rename)

The state is persisted in batches, off the hot path.  What the last state
write did not yet record is not lost: :meth:`PartialFile.recover` re-hashes
every chunk the bitfield does not mark against the chunk list and takes back
the ones that match, so nothing verified is fetched again after a crash.

Every method that touches the disk raises :class:`~peerlab.errors.StorageError`
(never a bare :class:`OSError`) with a message fit to show a user.  The
blocking methods (``write_chunk``, ``recover``, ``hash_range``, ``finish``,
``save_state``) are meant to run through ``runtime.offload``; positioned reads
and writes make them safe to run on several worker threads at once.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerlab.errors import PeerlabError, StorageError
from peerlab.wire.chunks import ChunkList, chunk_count, chunk_digest, chunk_size_for
from peerlab.wire.urn import b32, parse_sha1_urn, sha1_urn

PART_SUFFIX = ".part"
STATE_SUFFIX = ".state"
#: Bumped when the state file's shape changes incompatibly; older files are
#: then ignored (their partial is re-verified from scratch by a new download).
STATE_VERSION = 1
#: Longest file name we write, in UTF-8 bytes.  Linux allows 255; the rest
#: leaves room for a `` (123)`` de-duplication suffix and a temp suffix.
NAME_MAX_BYTES = 200
#: A name that sanitises to nothing becomes this.
DEFAULT_NAME = "download"
#: How many `` (n)`` variants we try before giving up on a free name.
MAX_NAME_VARIANTS = 10_000
#: Bounds on what a state file remembers about peers: a remote peer can grow
#: these lists (by being announced as a source), so they are capped.
MAX_KNOWN_SOURCES = 512
MAX_BANNED_SOURCES = 512
#: The longest ban reason kept in the state file.
MAX_REASON_CHARS = 200
#: Block size for whole-file reads (SHA-1 check, copies across devices).
READ_BLOCK = 1 << 20
#: ``pwritev`` takes at most IOV_MAX (1024 on Linux) buffers per call.
IOV_MAX = 1024
#: Characters Windows and FAT refuse in names; replaced so a download folder
#: on a shared or removable disk still accepts the file.
_RESERVED_CHARS = set('<>:"/\\|?*')


# ------------------------------------------------------------------ names


def sanitize_name(name: str) -> str:
    """A peer-supplied file name made safe to create in the download folder.

    DESIGN.md, "Data safety": peer-supplied names are sanitised.  No path
    separators, no ``..`` or leading dot (no hidden files, no parent
    references), no control characters, no trailing dots or spaces, bounded
    length (the extension is kept when the stem is cut).
    """
    text = unicodedata.normalize("NFC", name)
    out = []
    for ch in text:
        if ch in _RESERVED_CHARS or unicodedata.category(ch)[0] == "C":
            out.append("_")
        else:
            out.append(ch)
    clean = "".join(out).strip().strip(". ")
    while ".." in clean:
        clean = clean.replace("..", ".")
    if not clean or set(clean) <= {"_", "."}:
        clean = DEFAULT_NAME
    return _bound_name(clean, NAME_MAX_BYTES)


def _bound_name(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    ext = f".{ext}" if ext else ""
    budget = limit - len(ext.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(". ")
    return (cut or DEFAULT_NAME) + ext


def name_variant(name: str, n: int) -> str:
    """``x.mp3`` -> ``x (n).mp3`` (``n == 0`` is the name itself)."""
    if n == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({n})"
    return f"{stem} ({n}).{ext}"


def place_file(src: Path, directory: Path, name: str) -> Path:
    """Move ``src`` into ``directory`` under ``name`` without ever clobbering.

    The first free name of ``x.mp3``, ``x (1).mp3``, ``x (2).mp3``... is
    claimed with ``link()``, which fails rather than replace an existing
    file, so the move is atomic and never overwrites.  Across file systems
    the file is copied to a temp name in ``directory``, fsynced, and linked
    from there.  ``src`` must already be fsynced.  Raises StorageError.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create download folder {directory}: {exc.strerror}") from exc
    staged = src
    try:
        try:
            final = _link_free_name(src, directory, name)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            staged = directory / f".{src.name}.copying"
            staged.unlink(missing_ok=True)  # left by a crash mid-copy
            _copy_synced(src, staged)
            final = _link_free_name(staged, directory, name)
            staged.unlink()
        src.unlink()
        _fsync_dir(directory)
        _fsync_dir(src.parent)
        return final
    except OSError as exc:
        if staged != src:
            staged.unlink(missing_ok=True)
        raise StorageError(
            f"cannot move the finished file into {directory}: {exc.strerror or exc}"
        ) from exc


def _link_free_name(src: Path, directory: Path, name: str) -> Path:
    for n in range(MAX_NAME_VARIANTS):
        target = directory / name_variant(name, n)
        try:
            os.link(src, target)
        except FileExistsError:
            continue
        return target
    raise StorageError(f"no free name for {name!r} in {directory}")


def _copy_synced(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while block := fin.read(READ_BLOCK):
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())


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


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a temp file, fsync, rename, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    _fsync_dir(path.parent)


# ------------------------------------------------------------------ bitfield


class Bitfield:
    """One bit per chunk, most significant bit first (BitTorrent's order)."""

    __slots__ = ("count", "bits", "ones")

    def __init__(self, count: int, bits: bytes | None = None) -> None:
        self.count = count
        nbytes = (count + 7) // 8
        self.bits = bytearray(bits if bits is not None else nbytes)
        if len(self.bits) != nbytes:
            raise ValueError("bitfield length does not match its count")
        spare = nbytes * 8 - count
        if spare and self.bits and self.bits[-1] & ((1 << spare) - 1):
            raise ValueError("bitfield has bits set past its count")
        self.ones = sum(bin(b).count("1") for b in self.bits)

    def __getitem__(self, i: int) -> bool:
        return bool(self.bits[i >> 3] & (0x80 >> (i & 7)))

    def set(self, i: int) -> bool:
        """Set bit ``i``; True when it was not set before."""
        if not 0 <= i < self.count:
            raise IndexError(i)
        mask = 0x80 >> (i & 7)
        if self.bits[i >> 3] & mask:
            return False
        self.bits[i >> 3] |= mask
        self.ones += 1
        return True

    def clear_all(self) -> None:
        self.bits = bytearray(len(self.bits))
        self.ones = 0

    @property
    def complete(self) -> bool:
        return self.ones == self.count

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if not self[i]]


# ------------------------------------------------------------------ state


@dataclass
class SourceRecord:
    """A source as the state file remembers it (``index``/``name`` for /get/)."""

    host: str
    port: int
    index: int | None = None
    name: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass
class PartialState:
    """Everything a download needs to resume; the content of the ``.state`` file.

    ``have`` marks chunks that are on disk and good: verified against the
    chunk list when there is one, else received (the whole-file SHA-1 at the
    end then checks them all).  ``verified`` says which of the two it means.
    """

    urn: str
    name: str
    size: int | None
    chunk_root: bytes | None = None
    chunks: ChunkList | None = None
    chunk_size: int | None = None
    have: Bitfield | None = None
    verified: bool = False
    list_from: str | None = None
    sources: list[SourceRecord] = field(default_factory=list)
    banned: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    created: float = 0.0

    @property
    def digest(self) -> bytes:
        return parse_sha1_urn(self.urn)

    @property
    def id(self) -> str:
        return b32(self.digest)

    @property
    def count(self) -> int:
        return self.have.count if self.have is not None else 0

    def set_layout(self, size: int, chunks: ChunkList | None) -> None:
        """Fix the size and chunking (once known); resets ``have``."""
        self.size = size
        self.chunks = chunks
        self.chunk_size = chunks.chunk_size if chunks else chunk_size_for(size)
        self.have = Bitfield(chunk_count(size, self.chunk_size))
        self.verified = chunks is not None

    def span(self, index: int) -> tuple[int, int]:
        assert self.size is not None and self.chunk_size is not None
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def done_bytes(self) -> int:
        if self.have is None or self.size is None or self.chunk_size is None:
            return 0
        done = self.have.ones * self.chunk_size
        last = self.have.count - 1
        if last >= 0 and self.have[last]:
            done -= self.chunk_size - self.span(last)[1]
        return done

    def add_source(self, record: SourceRecord) -> bool:
        """Remember a source (bounded; newest kept).  True when it was new."""
        for i, known in enumerate(self.sources):
            if known.address == record.address:
                if record.index is not None and known.index is None:
                    self.sources[i] = record
                return False
        self.sources.append(record)
        if len(self.sources) > MAX_KNOWN_SOURCES:
            del self.sources[: len(self.sources) - MAX_KNOWN_SOURCES]
        return True

    def ban(self, key: str, reason: str) -> None:
        self.banned[key] = reason[:MAX_REASON_CHARS]
        while len(self.banned) > MAX_BANNED_SOURCES:
            del self.banned[next(iter(self.banned))]

    # --- serialisation

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "version": STATE_VERSION,
            "urn": self.urn,
            "name": self.name,
            "size": self.size,
            "chunk_root": b32(self.chunk_root) if self.chunk_root else None,
            "chunks": base64.b64encode(self.chunks.encode()).decode() if self.chunks else None,
            "chunk_size": self.chunk_size,
            "have": base64.b64encode(bytes(self.have.bits)).decode() if self.have else None,
            "verified": self.verified,
            "list_from": self.list_from,
            "sources": [[s.host, s.port, s.index, s.name] for s in self.sources],
            "banned": self.banned,
            "paused": self.paused,
            "created": self.created,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PartialState:
        """Parse a state file; anything malformed raises :class:`StorageError`."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
                raise ValueError("unknown state version")
            urn = sha1_urn(parse_sha1_urn(str(doc["urn"])))
            size = doc["size"]
            if size is not None and (not isinstance(size, int) or size < 0):
                raise ValueError("bad size")
            state = cls(urn=urn, name=sanitize_name(str(doc["name"])), size=size)
            if doc.get("chunk_root"):
                state.chunk_root = base64.b32decode(
                    doc["chunk_root"] + "=" * (-len(doc["chunk_root"]) % 8)
                )
            if doc.get("chunks"):
                state.chunks = ChunkList.decode(base64.b64decode(doc["chunks"]), expect_size=size)
            if size is not None:
                chunk_size = int(doc["chunk_size"])
                if state.chunks is not None and chunk_size != state.chunks.chunk_size:
                    raise ValueError("chunk size disagrees with the chunk list")
                if chunk_size <= 0:
                    raise ValueError("bad chunk size")
                state.chunk_size = chunk_size
                have = base64.b64decode(doc["have"]) if doc.get("have") else None
                state.have = Bitfield(chunk_count(size, chunk_size), have)
            state.verified = bool(doc.get("verified")) and state.chunks is not None
            state.list_from = doc.get("list_from")
            for host, port, index, name in doc.get("sources", [])[-MAX_KNOWN_SOURCES:]:
                state.sources.append(
                    SourceRecord(
                        str(host),
                        int(port),
                        int(index) if index is not None else None,
                        str(name) if name is not None else None,
                    )
                )
            for key, reason in list(doc.get("banned", {}).items())[-MAX_BANNED_SOURCES:]:
                state.banned[str(key)] = str(reason)[:MAX_REASON_CHARS]
            state.paused = bool(doc.get("paused", False))
            state.created = float(doc.get("created", 0.0))
            return state
        except (
            ValueError,
            TypeError,
            KeyError,
            binascii.Error,
            PeerlabError,
        ) as exc:
            raise StorageError(f"unreadable download state: {exc}") from exc


# ------------------------------------------------------------------ the file


class PartialFile:
    """The ``.part`` file of one download plus its ``.state``.

    The loop thread owns :attr:`state` (the bitfield is only ever changed
    there); worker threads only run the blocking methods, which read and
    write the file at explicit offsets.
    """

    def __init__(self, directory: Path, state: PartialState) -> None:
        self.directory = directory
        self.state = state
        self._fd: int | None = None
        # Worker threads use the descriptor while the loop thread may close
        # it; closing waits for the last user so a recycled descriptor
        # number is never written to.
        self._fd_lock = threading.Lock()
        self._fd_users = 0
        self._close_pending = False
        self._retired: list[int] = []
        # Buffered writes to one file serialise on its inode lock in the
        # kernel, where a waiter spins; waiting here sleeps instead.
        self._write_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saved_seq = -1
        self._seq = 0

    def snapshot(self) -> tuple[int, bytes]:
        """The state as it is now, numbered (taken on the loop thread)."""
        self._seq += 1
        return self._seq, self.state.to_json()

    @property
    def part_path(self) -> Path:
        return self.directory / f"{self.state.id}{PART_SUFFIX}"

    @property
    def state_path(self) -> Path:
        return self.directory / f"{self.state.id}{STATE_SUFFIX}"

    # --- life cycle

    @classmethod
    def scan(cls, directory: Path) -> list[Path]:
        """State files of the partial downloads left in ``directory``."""
        try:
            return sorted(directory.glob(f"*{STATE_SUFFIX}"))
        except OSError:
            return []

    @classmethod
    def load(cls, state_path: Path) -> PartialFile:
        """Open a partial left behind (StorageError when its state is unreadable)."""
        try:
            data = state_path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {state_path}: {exc.strerror}") from exc
        state = PartialState.from_json(data)
        if state_path.name != f"{state.id}{STATE_SUFFIX}":
            raise StorageError(f"{state_path.name} does not name the download it holds")
        return cls(state_path.parent, state)

    def open(self) -> None:
        """Create the folder and the ``.part`` file (pre-sized once the size is known)."""
        with self._fd_lock:
            if self._fd is not None and not self._close_pending:
                return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.part_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open {self.part_path}: {exc.strerror or exc}") from exc
        with self._fd_lock:
            old = self._fd if self._fd_users == 0 else None
            if self._fd is not None and self._fd_users:
                # The old descriptor's last user closes it; swap in the new one.
                self._retire(self._fd)
            self._fd, self._close_pending = fd, False
        if old is not None:
            os.close(old)
        self.resize()

    def _retire(self, fd: int) -> None:
        self._retired.append(fd)

    @contextmanager
    def _using_fd(self) -> Iterator[int]:
        with self._fd_lock:
            if self._fd is None or self._close_pending:
                raise StorageError(f"{self.part_path} is not open")
            self._fd_users += 1
            fd = self._fd
        try:
            yield fd
        finally:
            to_close: list[int] = []
            with self._fd_lock:
                self._fd_users -= 1
                if self._fd_users == 0:
                    to_close, self._retired = self._retired, []
                    if self._close_pending and self._fd is not None:
                        to_close.append(self._fd)
                        self._fd, self._close_pending = None, False
            for old in to_close:
                _close_fd(old)

    def resize(self) -> None:
        """Size the file to the download's size (once known)."""
        if self.state.size is None:
            return
        size = self.state.size
        try:
            with self._using_fd() as fd:
                have = os.fstat(fd).st_size
                if have < size:
                    _preallocate(fd, have, size)
                elif have > size:
                    os.ftruncate(fd, size)
        except OSError as exc:
            raise StorageError(f"cannot size {self.part_path}: {exc.strerror or exc}") from exc

    @property
    def is_open(self) -> bool:
        return self._fd is not None and not self._close_pending

    def close(self) -> None:
        """Close the file now, or as soon as the last worker using it is done."""
        with self._fd_lock:
            if self._fd is None:
                return
            if self._fd_users:
                self._close_pending = True
                return
            fd, self._fd = self._fd, None
        _close_fd(fd)

    def discard(self) -> None:
        """Delete the partial and its state (a cancelled download)."""
        self.close()
        for path in (self.part_path, self.state_path):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    # --- blocking work, run through runtime.offload

    def write_chunk(self, index: int, data: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write chunk ``index`` (given as pieces; no join) at its offset."""
        offset, length = self.state.span(index)
        try:
            with self._using_fd() as fd, self._write_lock:
                pieces = list(data)
                for i in range(0, len(pieces), IOV_MAX):
                    group = pieces[i : i + IOV_MAX]
                    want = sum(len(p) for p in group)
                    wrote = os.pwritev(fd, group, offset)
                    if wrote != want:
                        _write_rest(fd, group, offset, wrote)
                    offset += want
        except OSError as exc:
            raise StorageError(f"cannot write {self.part_path}: {exc.strerror or exc}") from exc

    def verify_and_write(self, index: int, data: Sequence[bytes | bytearray | memoryview]) -> bool:
        """Check the pieces of chunk ``index`` against the chunk list, write them if good.

        Returns False (and writes nothing) for a bad chunk.  Without a chunk
        list the data is written unverified (the whole-file SHA-1 decides).
        """
        chunks = self.state.chunks
        if chunks is not None:
            h = hashlib.sha256()
            total = 0
            for piece in data:
                h.update(piece)
                total += len(piece)
            if total != chunks.span(index)[1] or h.digest() != chunks.digest(index):
                return False
        self.write_chunk(index, data)
        return True

    def read_chunk(self, index: int) -> bytes:
        offset, length = self.state.span(index)
        try:
            with self._using_fd() as fd:
                data = os.pread(fd, length, offset)
        except OSError as exc:
            raise StorageError(f"cannot read {self.part_path}: {exc.strerror or exc}") from exc
        return data

    def recover(self, indexes: Iterable[int]) -> list[int]:
        """Re-hash chunks ``indexes`` from the file; return those that match the list.

        Covers what the last state write did not yet record.  Without a
        chunk list nothing can be recovered this way.
        """
        chunks = self.state.chunks
        if chunks is None:
            return []
        good = []
        for index in indexes:
            data = self.read_chunk(index)
            if len(data) == chunks.span(index)[1] and chunk_digest(data) == chunks.digest(index):
                good.append(index)
        return good

    def hash_range(self, hasher: Any, start: int, stop: int) -> None:
        """Feed chunks ``start..stop-1`` from the file to ``hasher`` (a hashlib object)."""
        assert self.state.chunk_size is not None
        offset = start * self.state.chunk_size
        end = min(stop * self.state.chunk_size, self.state.size or 0)
        buf = bytearray(min(READ_BLOCK, max(end - offset, 1)))
        view = memoryview(buf)
        try:
            with self._using_fd() as fd:
                while offset < end:
                    n = os.preadv(fd, [view[: min(len(buf), end - offset)]], offset)
                    if n <= 0:
                        raise StorageError(f"{self.part_path} is shorter than expected")
                    hasher.update(view[:n])
                    offset += n
        except OSError as exc:
            raise StorageError(f"cannot read {self.part_path}: {exc.strerror or exc}") from exc

    def sync(self) -> None:
        """fsync the partial (before a state write claims its chunks)."""
        if not self.is_open:
            return
        try:
            with self._using_fd() as fd:
                os.fsync(fd)
        except StorageError:
            return  # closed meanwhile: nothing left to sync
        except OSError as exc:
            raise StorageError(f"cannot sync {self.part_path}: {exc.strerror or exc}") from exc

    def save_state(self, snapshot: tuple[int, bytes] | None = None) -> None:
        """Persist a :meth:`snapshot` (default: one taken now): data first, then state.

        Snapshots may be written from several threads; an older one never
        replaces a newer one on disk.
        """
        seq, blob = snapshot if snapshot is not None else self.snapshot()
        with self._save_lock:
            if seq <= self._saved_seq:
                return
            self.sync()
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create {self.directory}: {exc.strerror or exc}"
                ) from exc
            atomic_write(self.state_path, blob)
            self._saved_seq = seq

    def finish(self, download_dir: Path, name: str) -> Path:
        """fsync, move into ``download_dir`` under a free name, drop the state."""
        self.sync()
        self.close()
        final = place_file(self.part_path, download_dir, name)
        try:
            self.state_path.unlink(missing_ok=True)
        except OSError:
            pass
        return final


def _preallocate(fd: int, have: int, size: int) -> None:
    """Reserve the partial's blocks up front: a full disk shows at once rather
    than mid-download, and writes into allocated blocks are cheaper than
    delayed allocation.  Where the file system cannot, the file is just
    extended (sparse)."""
    try:
        os.posix_fallocate(fd, have, size - have)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _write_rest(
    fd: int, pieces: Sequence[bytes | bytearray | memoryview], offset: int, wrote: int
) -> None:
    """Finish a short ``pwritev`` (rare: signals, odd file systems)."""
    skip = wrote
    pos = offset + wrote
    for piece in pieces:
        view = memoryview(piece).cast("B")
        if skip >= len(view):
            skip -= len(view)
            continue
        view = view[skip:]
        skip = 0
        while view:
            n = os.pwrite(fd, view, pos)
            if n <= 0:
                raise OSError(28, "No space left on device")
            view = view[n:]
            pos += n
