"""The share catalog: what this node shares, hashed, tagged and searchable.

Issue 2, section 3 (share catalog).  The catalog walks the shared folders,
hashes each file once (its ``urn:sha1`` as Gnutella's HUGE writes it, plus a
:class:`~peerlab.wire.chunks.ChunkList` so every chunk can be verified on its
own), reads its type and audio tags, and keeps everything in SQLite (WAL
mode) with an FTS5 keyword index ranked by bm25.

Properties the rest of peerlab relies on:

* **Nothing outside a shared folder is listed.**  Every path is resolved;
  symlinks whose target lies outside the folder are skipped and reported,
  symlinked directories are not followed (their target, when inside the
  folder, is listed under its own path), and special files (FIFOs, devices,
  sockets) are never opened.
* **Rescans are cheap.**  A file is rehashed only when its size, mtime or
  inode changed; files that disappeared are dropped; a file whose content did
  not change keeps its ``index`` (the number ``/get/<index>/<name>`` uses)
  across rescans and restarts.  A file whose content changed gets a new
  index, so an old ``/get`` link can never serve different bytes.
* **User input never breaks search.**  Search words are cut into tokens and
  quoted, so FTS5 operators, quotes and brackets typed by a user are just
  text.
* **Thread-safe.**  One connection, every use under one lock; hashing runs
  outside the lock, so searches stay quick while a long scan runs.

Each file also carries its Napster md5 (:func:`napster_md5`), the partial
hash Napster clients share and search results carry (napster.txt, section
"MD5"), computed at scan time next to the SHA-1.

Hidden files and folders (names starting with ``.``), the catalog's own
database files and any folder given in ``exclude`` (the node's incomplete
downloads) are not shared.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import stat as stat_mod
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerlab.errors import ConfigError, PeerlabError, StorageError
from peerlab.storage.hashing import HashResult, hash_files
from peerlab.storage.metadata import FileMetadata, read_metadata
from peerlab.wire.chunks import ChunkList
from peerlab.wire.urn import parse_sha1_urn, sha1_urn

#: Bumped whenever the schema changes; an older database is rebuilt (it is a
#: cache of what is on disk: a rescan restores it).
SCHEMA_VERSION = 2
#: How long a write waits for another process holding the database (the
#: CLI and the node may open the same file), in seconds.
BUSY_TIMEOUT_S = 10.0
#: Files written per transaction during a scan: big enough that commits cost
#: nothing next to hashing, small enough that results show up in searches
#: while a long scan is still running.
COMMIT_EVERY_FILES = 64
#: During a large file, report progress at least every this many bytes.
PROGRESS_EVERY_BYTES = 16 * 1024 * 1024
#: Problems listed in one ScanReport; beyond this only the count grows, so a
#: share of a million unreadable files cannot exhaust memory.
MAX_REPORTED_PROBLEMS = 1000
#: Folder nesting followed below a shared folder (a guard against bind-mount
#: loops and absurd trees; symlinked folders are never followed).
MAX_DEPTH = 64
#: Bytes of the Napster md5 region: napster.txt, section "MD5", says "the
#: vast majority of the files are hashed using the first 299,008 bytes of the
#: file" (the Windows client; the linux nap client hashed 300,000, which the
#: spec calls out as not what Napster does), after skipping an ID3v2 tag.
NAPSTER_MD5_BYTES = 299_008
#: ID3v2 header: "ID3", version (2 bytes), flags, syncsafe size (4 bytes).
ID3V2_HEADER_BYTES = 10
#: ID3v2 flag bit announcing a 10-byte footer after the tag (ID3v2.4, 3.1).
ID3V2_FOOTER_FLAG = 0x10
#: Search result bound, whatever the caller asks for.
MAX_SEARCH_LIMIT = 10_000
#: Query words used; more add nothing to a match and cost time.
MAX_QUERY_TERMS = 16
#: Longest query word used (longer ones are cut).
MAX_TERM_CHARS = 64
#: bm25 column weights (name, title, artist, album, genre): a hit in a tag
#: that names the work counts more than one in the file name, which often
#: carries track numbers and noise; genre is the weakest signal.
BM25_WEIGHTS = (1.0, 3.0, 3.0, 2.0, 0.5)
#: Fields ``search(field=...)`` may restrict to, and the FTS5 columns they mean.
SEARCH_FIELDS = {
    "all": None,
    "title": "title",
    "artist": "artist",
    "album": "album",
    "genre": "genre",
}

# A query word is a run of letters and digits: the same cut FTS5's unicode61
# tokenizer makes, so that "Linkin_Park-Numb.mp3" and "linkin park" meet.
_WORD = re.compile(r"[^\W_]+")
# Extra cuts for file names: camelCase and letter/digit boundaries.
_SUBWORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_A-Za-z]+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    path TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS files (
    idx INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    root TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    sha1 BLOB NOT NULL,
    chunk_size INTEGER NOT NULL,
    chunk_root BLOB NOT NULL,
    kind TEXT NOT NULL,
    mime TEXT NOT NULL,
    title TEXT,
    artist TEXT,
    album TEXT,
    genre TEXT,
    bitrate INTEGER,
    duration REAL,
    sample_rate INTEGER,
    napster_md5 TEXT
);
CREATE INDEX IF NOT EXISTS files_sha1 ON files(sha1);
CREATE INDEX IF NOT EXISTS files_napster_md5 ON files(napster_md5, size);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS chunks (
    idx INTEGER PRIMARY KEY REFERENCES files(idx) ON DELETE CASCADE,
    list BLOB NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS files_fts USING fts5(
    name, title, artist, album, genre,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
"""

_FILE_COLUMNS = (
    "idx, path, root, name, size, mtime_ns, sha1, chunk_size, chunk_root, kind, mime,"
    " title, artist, album, genre, bitrate, duration, sample_rate, napster_md5"
)


@dataclass(frozen=True, slots=True)
class SharedFile:
    """One shared file as the catalog knows it."""

    index: int
    path: Path
    root: Path
    name: str
    size: int
    mtime_ns: int
    sha1: bytes
    chunk_size: int
    chunk_root: bytes
    kind: str
    mime: str
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    bitrate: int | None = None
    duration: float | None = None
    sample_rate: int | None = None
    #: The Napster md5 (hex, :func:`napster_md5`), shared in Napster's 100 message.
    napster_md5: str | None = None

    @property
    def urn(self) -> str:
        """``urn:sha1:BASE32`` (HUGE, section 3)."""
        return sha1_urn(self.sha1)


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Where a scan is.  Totals count the work of this scan: the files that
    need hashing (new or changed) and their bytes."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    current: Path | None


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one scan did.

    ``skipped`` lists files left out on purpose (a symlink leading out of the
    share, a special file, a name that is not valid UTF-8); ``errors`` lists
    files that could not be read or changed while being hashed (they are
    tried again on the next scan).  Each list holds at most
    :data:`MAX_REPORTED_PROBLEMS` entries; ``skipped_count`` and
    ``error_count`` are the full numbers.
    """

    files: int  # shared after the scan
    bytes: int  # their total size
    added: int
    changed: int
    removed: int
    unchanged: int
    hashed: int
    bytes_hashed: int
    skipped: tuple[tuple[Path, str], ...] = ()
    errors: tuple[tuple[Path, str], ...] = ()
    skipped_count: int = 0
    error_count: int = 0


# ------------------------------------------------------------------ helpers


def _id3v2_length(head: bytes) -> int:
    """Bytes an ID3v2 tag at the start of a file takes (0 when there is none).

    ID3v2.4 section 3.1: "ID3", two version bytes (neither 0xFF), flags, then
    the tag size as four syncsafe bytes (7 bits each), not counting the
    10-byte header or the optional footer.
    """
    if len(head) < ID3V2_HEADER_BYTES or head[:3] != b"ID3":
        return 0
    if head[3] == 0xFF or head[4] == 0xFF or any(b & 0x80 for b in head[6:10]):
        return 0
    size = 0
    for b in head[6:10]:
        size = (size << 7) | b
    footer = ID3V2_HEADER_BYTES if head[5] & ID3V2_FOOTER_FLAG else 0
    return ID3V2_HEADER_BYTES + size + footer


def napster_md5_of(f: Any, size: int) -> str:
    """The Napster md5 of the open binary file ``f`` of ``size`` bytes.

    napster.txt, section "MD5": the hex MD5 of the first
    :data:`NAPSTER_MD5_BYTES` bytes after an ID3v2 tag ("skip id3v2 ...
    and hash"); a file shorter than that is hashed to its end.  A tag that
    claims to run past the end of the file is not skipped.  It names a
    file only loosely (a partial hash, as Napster had), so peerlab checks
    it together with the size.
    """
    f.seek(0)
    start = _id3v2_length(f.read(ID3V2_HEADER_BYTES))
    if start >= size:
        start = 0
    f.seek(start)
    h = hashlib.md5(usedforsecurity=False)
    left = NAPSTER_MD5_BYTES
    while left > 0:
        block = f.read(min(left, 1 << 16))
        if not block:
            break
        h.update(block)
        left -= len(block)
    return h.hexdigest()


def napster_md5(path: Path | str) -> str:
    """:func:`napster_md5_of` the file at ``path`` (raises ``OSError``)."""
    with open(path, "rb") as f:
        return napster_md5_of(f, os.fstat(f.fileno()).st_size)


def _name_text(name: str) -> str:
    """The file name as indexed: itself plus its camelCase/digit sub-words."""
    words = {w.lower() for w in _WORD.findall(name)}
    extra = []
    for sub in _SUBWORD.findall(name):
        low = sub.lower()
        if low not in words:
            words.add(low)
            extra.append(sub)
    return name if not extra else name + " " + " ".join(extra)


def fts_query(text: str, field: str = "all") -> str | None:
    """A safe FTS5 query for the words in ``text``; ``None`` when it has none.

    Every word is quoted, so nothing a user types is FTS5 syntax; all words
    must match; the last word matches as a prefix unless the text ends in a
    space (the user finished typing it).
    """
    if field not in SEARCH_FIELDS:
        raise ConfigError(f"unknown search field {field!r} (one of {', '.join(SEARCH_FIELDS)})")
    words = [w[:MAX_TERM_CHARS] for w in _WORD.findall(text)][:MAX_QUERY_TERMS]
    if not words:
        return None
    phrases = [f'"{w}"' for w in words]
    if not text[-1:].isspace():
        phrases[-1] += "*"
    expr = " ".join(phrases)
    column = SEARCH_FIELDS[field]
    return expr if column is None else f"{{{column}}} : ({expr})"


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(slots=True)
class _Candidate:
    path: str
    root: str
    st: os.stat_result


class _Problems:
    """A bounded list of (path, reason) plus the full count."""

    def __init__(self) -> None:
        self.items: list[tuple[Path, str]] = []
        self.count = 0

    def add(self, path: str | Path, reason: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED_PROBLEMS:
            self.items.append((Path(path), reason))


#: One hashed file on its way into the database: where it was found, its
#: hashes, its tags and its Napster md5.
_Hashed = tuple[_Candidate, HashResult, FileMetadata, str]


def _md5_for(result: HashResult) -> tuple[str | None, OSError | StorageError | None]:
    """The Napster md5 of a hashed file, from the bytes the SHA-1 described.

    Read in a second, short pass (at most :data:`NAPSTER_MD5_BYTES` plus an
    ID3v2 tag); a file whose size or mtime changed since it was hashed is an
    error, like a file changing while it is hashed.
    """
    st = result.stat
    assert st is not None
    try:
        with open(result.path, "rb") as f:
            now = os.fstat(f.fileno())
            was = (st.st_size, st.st_mtime_ns, st.st_ino)
            if (now.st_size, now.st_mtime_ns, now.st_ino) != was:
                return None, StorageError("file changed while it was hashed")
            return napster_md5_of(f, now.st_size), None
    except OSError as exc:
        return None, exc


# ------------------------------------------------------------------ catalog


class Catalog:
    """The shared folders and their files, in SQLite with an FTS5 index."""

    #: :meth:`search` takes ``field``, ``min_bitrate`` and ``min_duration``
    #: (a Gnutella rich query is answered by the index, not by a filter).
    fielded_search = True

    def __init__(self, db_path: Path | str, *, exclude: Iterable[Path | str] = ()) -> None:
        self.db_path = Path(db_path).expanduser().absolute()
        self._lock = threading.RLock()
        self._scan_lock = threading.Lock()
        self._exclude: set[str] = set()
        for p in exclude:
            self.exclude(p)
        for suffix in ("", "-wal", "-shm", "-journal"):
            self._exclude.add(os.path.realpath(str(self.db_path) + suffix))
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.db_path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._setup()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the catalog database {self.db_path}: {exc}") from None

    def _setup(self) -> None:
        db = self._conn()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            # An index of what is on disk: rebuild rather than migrate.
            db.executescript(
                "DROP TABLE IF EXISTS files_fts; DROP TABLE IF EXISTS chunks;"
                " DROP TABLE IF EXISTS files;"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError("the catalog is closed")
        return self._db

    # ------------------------------------------------------------- folders

    def exclude(self, path: Path | str) -> None:
        """Never share ``path`` (a file or folder, e.g. incomplete downloads)."""
        with self._lock:
            self._exclude.add(os.path.realpath(os.path.expanduser(str(path))))

    def add_folder(self, path: Path | str) -> Path:
        """Share the folder at ``path``; return its resolved path.

        Raises :class:`ConfigError` when it is missing, not a folder, or not
        readable.  Files are listed by the next :meth:`scan`.
        """
        p = Path(path).expanduser()
        if not p.exists():
            raise ConfigError(f"cannot share {p}: no such folder")
        if not p.is_dir():
            raise ConfigError(f"cannot share {p}: not a folder")
        if not os.access(p, os.R_OK | os.X_OK):
            raise ConfigError(f"cannot share {p}: permission denied")
        resolved = p.resolve()
        with self._lock:
            self._conn().execute("INSERT OR IGNORE INTO folders(path) VALUES (?)", (str(resolved),))
        return resolved

    def remove_folder(self, path: Path | str) -> None:
        """Stop sharing a folder: its files leave the catalog at once.

        Raises :class:`ConfigError` when the folder is not shared.
        """
        given = Path(path).expanduser()
        names = {str(given.absolute()), os.path.realpath(given)}
        with self._lock:
            db = self._conn()
            shared = {r[0] for r in db.execute("SELECT path FROM folders")}
            hit = [n for n in names if n in shared]
            if not hit:
                raise ConfigError(f"{given} is not a shared folder")
            db.execute("BEGIN IMMEDIATE")
            try:
                for root in hit:
                    self._delete_where("root = ?", (root,))
                    db.execute("DELETE FROM folders WHERE path = ?", (root,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def folders(self) -> list[Path]:
        """The shared folders, resolved, sorted."""
        with self._lock:
            rows = self._conn().execute("SELECT path FROM folders ORDER BY path").fetchall()
        return [Path(r[0]) for r in rows]

    # ------------------------------------------------------------- queries

    @staticmethod
    def _file(row: tuple[Any, ...]) -> SharedFile:
        (idx, path, root, name, size, mtime_ns, sha1, chunk_size, chunk_root, kind, mime,
         title, artist, album, genre, bitrate, duration, sample_rate, md5) = row  # fmt: skip
        return SharedFile(
            index=idx, path=Path(path), root=Path(root), name=name, size=size,
            mtime_ns=mtime_ns, sha1=bytes(sha1), chunk_size=chunk_size,
            chunk_root=bytes(chunk_root), kind=kind, mime=mime, title=title,
            artist=artist, album=album, genre=genre, bitrate=bitrate,
            duration=duration, sample_rate=sample_rate, napster_md5=md5,
        )  # fmt: skip

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[SharedFile]:
        with self._lock:
            rows = self._conn().execute(sql, tuple(params)).fetchall()
        return [self._file(r) for r in rows]

    def files(self) -> list[SharedFile]:
        """Every shared file, ordered by path."""
        return self._select(f"SELECT {_FILE_COLUMNS} FROM files ORDER BY path")

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def total_size(self) -> int:
        """Bytes shared, over every file."""
        with self._lock:
            row = self._conn().execute("SELECT COALESCE(SUM(size), 0) FROM files").fetchone()
        return int(row[0])

    def by_index(self, index: int) -> SharedFile | None:
        found = self._select(f"SELECT {_FILE_COLUMNS} FROM files WHERE idx = ?", (int(index),))
        return found[0] if found else None

    def by_napster_md5(self, md5: str, size: int) -> SharedFile | None:
        """A shared file with this Napster md5 and size (napster.txt "MD5"), or ``None``."""
        found = self._select(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE napster_md5 = ? AND size = ?"
            " ORDER BY idx LIMIT 1",
            (str(md5).lower(), int(size)),
        )
        return found[0] if found else None

    def by_urn(self, urn_or_digest: str | bytes) -> SharedFile | None:
        """The file with this SHA-1 (``urn:sha1:...``, bare base32, or the 20
        raw bytes); ``None`` when none is shared or the name is malformed."""
        if isinstance(urn_or_digest, bytes | bytearray | memoryview):
            digest = bytes(urn_or_digest)
        else:
            try:
                digest = parse_sha1_urn(str(urn_or_digest))
            except PeerlabError:
                return None
        if len(digest) != 20:
            return None
        found = self._select(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE sha1 = ? ORDER BY idx LIMIT 1", (digest,)
        )
        return found[0] if found else None

    def chunk_list(self, file: SharedFile) -> ChunkList:
        """The stored chunk list of ``file``.

        Raises :class:`StorageError` when no file with that content is shared
        any more.
        """
        with self._lock:
            db = self._conn()
            row = db.execute(
                "SELECT c.list FROM chunks c JOIN files f ON f.idx = c.idx"
                " WHERE f.idx = ? AND f.sha1 = ?",
                (file.index, file.sha1),
            ).fetchone()
            if row is None:
                row = db.execute(
                    "SELECT c.list FROM chunks c JOIN files f ON f.idx = c.idx"
                    " WHERE f.sha1 = ? AND f.size = ? AND f.chunk_size = ? LIMIT 1",
                    (file.sha1, file.size, file.chunk_size),
                ).fetchone()
        if row is None:
            raise StorageError(f"{file.name} is no longer shared")
        try:
            return ChunkList.decode(bytes(row[0]), expect_size=file.size)
        except PeerlabError as exc:
            raise StorageError(f"stored chunk list of {file.name} is damaged: {exc}") from None

    def search(
        self,
        text: str,
        *,
        field: str = "all",
        limit: int = 100,
        min_bitrate: int | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        min_duration: float | None = None,
    ) -> list[SharedFile]:
        """Files matching every word of ``text``, best match first (bm25).

        ``field`` restricts matching to one tag (``"title"``, ``"artist"``,
        ``"album"``) or searches all of name and tags (``"all"``).  Filters:
        ``min_bitrate`` (kbps; files without a bitrate never pass),
        ``min_size``/``max_size`` (bytes, inclusive), ``min_duration``
        (seconds; files without a length never pass).  Text without any word
        returns every file passing the filters, by name.  An unknown
        ``field`` raises :class:`ConfigError`; no text ever raises.
        """
        query = fts_query(text, field)
        limit = max(0, min(int(limit), MAX_SEARCH_LIMIT))
        conds: list[str] = []
        params: list[Any] = []
        if min_bitrate is not None:
            conds.append("f.bitrate >= ?")
            params.append(int(min_bitrate))
        if min_duration is not None:
            conds.append("f.duration >= ?")
            params.append(float(min_duration))
        if min_size is not None:
            conds.append("f.size >= ?")
            params.append(int(min_size))
        if max_size is not None:
            conds.append("f.size <= ?")
            params.append(int(max_size))
        cols = ", ".join(f"f.{c.strip()}" for c in _FILE_COLUMNS.split(","))
        if query is None:
            where = " WHERE " + " AND ".join(conds) if conds else ""
            sql = f"SELECT {cols} FROM files f{where} ORDER BY f.name, f.idx LIMIT ?"
            return self._select(sql, [*params, limit])
        weights = ", ".join(str(w) for w in BM25_WEIGHTS)
        where = " AND ".join(["files_fts MATCH ?", *conds])
        sql = (
            f"SELECT {cols} FROM files_fts JOIN files f ON f.idx = files_fts.rowid"
            f" WHERE {where} ORDER BY bm25(files_fts, {weights}), f.name, f.idx LIMIT ?"
        )
        try:
            return self._select(sql, [query, *params, limit])
        except sqlite3.OperationalError:
            # fts_query quotes every word, so this is not expected; a search
            # box must still never fail on what a user typed.
            return []

    # ------------------------------------------------------------- scanning

    def _walk(
        self, roots: list[str], skipped: _Problems, errors: _Problems
    ) -> dict[str, _Candidate]:
        """Every shareable regular file under the roots, with its status."""
        found: dict[str, _Candidate] = {}
        root_set = set(roots)
        with self._lock:
            exclude = frozenset(self._exclude)
        for root in roots:
            stack: list[tuple[str, int]] = [(root, 0)]
            seen_dirs: set[tuple[int, int]] = set()
            while stack:
                folder, depth = stack.pop()
                try:
                    st = os.stat(folder)
                    key = (st.st_dev, st.st_ino)
                    if key in seen_dirs:
                        continue
                    seen_dirs.add(key)
                    with os.scandir(folder) as it:
                        entries = list(it)
                except OSError as exc:
                    errors.add(folder, f"cannot read folder: {exc.strerror or exc}")
                    continue
                for entry in entries:
                    name = entry.name
                    path = entry.path
                    if name.startswith("."):
                        continue
                    if not _utf8_ok(path):
                        skipped.add(path, "name is not valid UTF-8")
                        continue
                    try:
                        if entry.is_symlink():
                            self._symlink(path, root, exclude, found, skipped, errors)
                            continue
                        if path in exclude:
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            if path in root_set:
                                continue  # shared on its own, walked as such
                            if depth + 1 > MAX_DEPTH:
                                skipped.add(path, f"nested deeper than {MAX_DEPTH} folders")
                                continue
                            stack.append((path, depth + 1))
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except OSError as exc:
                        errors.add(path, f"cannot stat: {exc.strerror or exc}")
                        continue
                    if not stat_mod.S_ISREG(st.st_mode):
                        skipped.add(path, "not a regular file")
                        continue
                    found[path] = _Candidate(path, root, st)
        return found

    def _symlink(
        self,
        path: str,
        root: str,
        exclude: frozenset[str],
        found: dict[str, _Candidate],
        skipped: _Problems,
        errors: _Problems,
    ) -> None:
        target = os.path.realpath(path)
        if not _within(target, root):
            skipped.add(path, "symlink leading outside the shared folder")
            return
        if any(_within(target, e) for e in exclude):
            return
        try:
            st = os.stat(target)
        except OSError as exc:
            errors.add(path, f"broken symlink: {exc.strerror or exc}")
            return
        if stat_mod.S_ISDIR(st.st_mode):
            return  # not followed: its files are listed under their own paths
        if not stat_mod.S_ISREG(st.st_mode):
            skipped.add(path, "not a regular file")
            return
        found[path] = _Candidate(path, root, st)

    def _delete_where(self, cond: str, params: tuple[Any, ...]) -> int:
        db = self._conn()
        ids = [r[0] for r in db.execute(f"SELECT idx FROM files WHERE {cond}", params)]
        for i in ids:
            db.execute("DELETE FROM files_fts WHERE rowid = ?", (i,))
            db.execute("DELETE FROM chunks WHERE idx = ?", (i,))
            db.execute("DELETE FROM files WHERE idx = ?", (i,))
        return len(ids)

    def _store(self, batch: list[_Hashed]) -> tuple[int, int]:
        """Write hashed files in one transaction; ``(added, changed)``."""
        added = changed = 0
        with self._lock:
            db = self._conn()
            roots = {r[0] for r in db.execute("SELECT path FROM folders")}
            db.execute("BEGIN IMMEDIATE")
            try:
                for cand, result, meta, md5 in batch:
                    if cand.root not in roots:
                        continue  # the folder was removed while we hashed
                    was = self._store_one(db, cand, result, meta, md5)
                    if was:
                        changed += 1
                    else:
                        added += 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added, changed

    def _store_one(
        self,
        db: sqlite3.Connection,
        cand: _Candidate,
        result: HashResult,
        meta: FileMetadata,
        md5: str,
    ) -> bool:
        """Insert or update one file; True when the path was listed before."""
        hashes = result.hashes
        st = result.stat
        assert hashes is not None and st is not None
        name = os.path.basename(cand.path)
        old = db.execute("SELECT idx, sha1 FROM files WHERE path = ?", (cand.path,)).fetchone()
        values = (
            st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, cand.root, name,
            hashes.chunks.chunk_size, hashes.chunks.root, meta.kind, meta.mime,
            meta.title, meta.artist, meta.album, meta.genre, meta.bitrate,
            meta.duration, meta.sample_rate, md5,
        )  # fmt: skip
        if old is not None and bytes(old[1]) == hashes.sha1:
            # Same content (touched, copied over): keep the index.
            idx = old[0]
            db.execute(
                "UPDATE files SET size=?, mtime_ns=?, inode=?, dev=?, root=?, name=?,"
                " chunk_size=?, chunk_root=?, kind=?, mime=?, title=?, artist=?, album=?,"
                " genre=?, bitrate=?, duration=?, sample_rate=?, napster_md5=? WHERE idx=?",
                (*values, idx),
            )
            db.execute("DELETE FROM files_fts WHERE rowid = ?", (idx,))
            db.execute("UPDATE chunks SET list = ? WHERE idx = ?", (hashes.chunks.encode(), idx))
        else:
            if old is not None:
                self._delete_where("idx = ?", (old[0],))
            cur = db.execute(
                "INSERT INTO files(size, mtime_ns, inode, dev, root, name, chunk_size,"
                " chunk_root, kind, mime, title, artist, album, genre, bitrate, duration,"
                " sample_rate, napster_md5, path, sha1)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, cand.path, hashes.sha1),
            )
            idx = cur.lastrowid
            db.execute("INSERT INTO chunks(idx, list) VALUES (?, ?)", (idx, hashes.chunks.encode()))
        db.execute(
            "INSERT INTO files_fts(rowid, name, title, artist, album, genre)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (idx, _name_text(name), meta.title, meta.artist, meta.album, meta.genre),
        )
        return old is not None

    def scan(self, progress: Callable[[ScanProgress], None] | None = None) -> ScanReport:
        """Bring the catalog in line with the shared folders.

        Walks every shared folder, drops files that disappeared, hashes files
        that are new or whose (size, mtime, inode) changed, and reads their
        tags.  ``progress`` is called on this thread: once when the work is
        known, after each file, during large files every
        :data:`PROGRESS_EVERY_BYTES`, and once at the end.  Scans run one at
        a time; queries keep working while one runs.
        """
        with self._scan_lock:
            return self._scan(progress)

    def _scan(self, progress: Callable[[ScanProgress], None] | None) -> ScanReport:
        skipped = _Problems()
        errors = _Problems()
        roots = [str(p) for p in self.folders()]
        for root in roots:
            if not os.path.isdir(root):
                errors.add(root, "shared folder is missing")
        found = self._walk([r for r in roots if os.path.isdir(r)], skipped, errors)

        with self._lock:
            known = {
                r[0]: (r[1], r[2], r[3], r[4], r[5])
                for r in self._conn().execute(
                    "SELECT path, size, mtime_ns, inode, dev, root FROM files"
                )
            }
        to_hash: list[_Candidate] = []
        unchanged = 0
        for path, cand in found.items():
            st = cand.st
            # A file now under a newly nested share moves to it (rare: rehashed).
            if known.get(path) == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, cand.root):
                unchanged += 1
            else:
                to_hash.append(cand)
        gone = [p for p in known if p not in found]
        removed = 0
        if gone:
            with self._lock:
                db = self._conn()
                db.execute("BEGIN IMMEDIATE")
                try:
                    for p in gone:
                        removed += self._delete_where("path = ?", (p,))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        to_hash.sort(key=lambda c: c.path)

        files_total = len(to_hash)
        bytes_total = sum(c.st.st_size for c in to_hash)
        state = {"files": 0, "bytes": 0, "reported": 0}
        current: list[Path | None] = [None]

        def report() -> None:
            if progress is not None:
                state["reported"] = state["bytes"]
                progress(
                    ScanProgress(
                        state["files"], files_total, state["bytes"], bytes_total, current[0]
                    )
                )

        def on_bytes(path: Path, n: int) -> None:
            state["bytes"] += n
            current[0] = path
            if state["bytes"] - state["reported"] >= PROGRESS_EVERY_BYTES:
                report()

        report()
        by_path = {c.path: c for c in to_hash}
        added = changed = hashed = bytes_hashed = 0
        batch: list[_Hashed] = []
        stale: list[str] = []
        results: Iterator[HashResult] = hash_files(
            (Path(c.path) for c in to_hash), on_bytes=on_bytes
        )
        try:
            for result in results:
                path = str(result.path)
                cand = by_path[path]
                state["files"] += 1
                md5, md5_error = (None, None) if result.error else _md5_for(result)
                if result.error is not None or md5 is None:
                    error = result.error or md5_error
                    reason = getattr(error, "strerror", None) or str(error)
                    errors.add(path, f"cannot hash: {reason}")
                    if path in known:
                        stale.append(path)
                else:
                    assert result.hashes is not None
                    hashed += 1
                    bytes_hashed += result.hashes.size
                    # Tags are read here, outside the database lock.
                    batch.append((cand, result, read_metadata(result.path), md5))
                    if len(batch) >= COMMIT_EVERY_FILES:
                        a, c = self._store(batch)
                        added, changed, batch = added + a, changed + c, []
                current[0] = result.path
                report()
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            if batch:
                a, c = self._store(batch)
                added, changed = added + a, changed + c
        if stale:
            # Changed and now unreadable: the old hash no longer names it.
            with self._lock:
                db = self._conn()
                db.execute("BEGIN IMMEDIATE")
                try:
                    for p in stale:
                        removed += self._delete_where("path = ?", (p,))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        current[0] = None
        report()
        with self._lock:
            n, total = (
                self._conn()
                .execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files")
                .fetchone()
            )
        return ScanReport(
            files=int(n),
            bytes=int(total),
            added=added,
            changed=changed,
            removed=removed,
            unchanged=unchanged,
            hashed=hashed,
            bytes_hashed=bytes_hashed,
            skipped=tuple(skipped.items),
            errors=tuple(errors.items),
            skipped_count=skipped.count,
            error_count=errors.count,
        )

    # ------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the database.  Idempotent; later calls raise StorageError."""
        with self._lock:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
