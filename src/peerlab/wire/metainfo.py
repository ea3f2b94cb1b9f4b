"""Torrent files (metainfo): parse, check, build.

Specs:

- BEP 3, "metainfo files": a bencoded dictionary with ``announce`` and
  ``info``; ``info`` holds ``name``, ``piece length``, ``pieces`` (the
  concatenated 20-byte SHA-1 of every piece) and either ``length`` (a single
  file) or ``files`` (a list of ``{length, path}``, ``path`` a list of
  components under the folder ``name``).  The info-hash is "the 20 byte sha1
  hash of the bencoded form of the info value": computed here over the
  original bytes of ``info`` (:func:`peerlab.wire.bencode.decode_with_spans`),
  never over a re-encoding.
- BEP 12: ``announce-list``, tiers of tracker URLs; when present, clients use
  it and ignore ``announce``.
- BEP 19: ``url-list``, web seeds (a string or a list).
- BEP 27: ``private`` in ``info``; 1 means peers come from the trackers only
  (no DHT, no PEX).
- BEP 5: ``nodes``, DHT bootstrap nodes ``[host, port]`` of a trackerless torrent.
- BEP 47: ``attr`` of a file: ``p`` marks a padding file (part of the piece
  space, never written), ``x`` executable, ``h`` hidden.  Symbolic links
  (``l``) are refused.
- BEP 52: a hybrid torrent (``meta version`` 2 with ``pieces``) loads through
  its v1 part; its v2 info-hash (the SHA-256 of the same bytes) is kept.  A
  v2-only torrent (no ``pieces``) is refused: peerlab speaks v1.

Safety.  Every name from a torrent becomes a path on the user's disk, so
every component of every path is checked (:func:`path_component_problem`)
and a torrent that breaks a rule is refused, never "repaired": no empty
component, no ``.`` or ``..``, no ``/``, ``\\`` or ``:`` (a drive or an NTFS
stream on Windows), no control or bidirectional-override characters, no
component that Windows reads as a device (``CON``, ``nul.txt``, ``COM1``...;
trailing dots and spaces are ignored there, so ``"con. "`` counts too), no
component longer than :data:`MAX_COMPONENT_BYTES`, no path deeper than
:data:`MAX_PATH_COMPONENTS` or longer than :data:`MAX_PATH_BYTES`, and no two
files that would land on the same path on a case-insensitive, normalising
file system (or a file where another needs a folder).  Absurd sizes are
refused too: more than :data:`MAX_PIECES` pieces, a piece length outside
[:data:`MIN_PIECE_LENGTH`, :data:`MAX_PIECE_LENGTH`], more than
:data:`MAX_FILES` files, a ``pieces`` string that does not match the total
size, a file larger than :data:`MAX_TOTAL_SIZE`.

Errors: a torrent that breaks a rule raises
:class:`~peerlab.errors.RemoteProtocolError` (a torrent file is untrusted
input) with a message that says what is wrong.  Building one from bad
arguments raises :class:`~peerlab.errors.LocalProtocolError`.

Public API
==========

::

    FileEntry(path: tuple[str, ...], length, offset, attr="")
        .padding / .executable / .hidden -> bool     .name -> "a/b/c"
    Info                                   # the info dictionary (BEP 3)
        .name .piece_length .pieces .files .multi_file .private
        .raw (bytes as they came) .info_hash (SHA-1) .info_hash_v2 (SHA-256 | None)
        .total_size .piece_count .piece_hash(i) .piece_size(i) .data_files
        Info.from_bytes(raw) -> Info       # e.g. metadata from BEP 9 ut_metadata
        Info.create(name, piece_length, pieces, *, length=None, files=None,
                    private=False) -> Info
    Metainfo                               # a whole .torrent file
        .info .announce .announce_list .url_list .nodes .comment .created_by
        .creation_date .extra (other top-level entries, raw) .trackers (BEP 12 tiers)
        .info_hash .magnet() -> Magnet
        .to_bytes() -> bytes               # info byte for byte, extras unchanged
        Metainfo.from_bytes(data) -> Metainfo
        Metainfo.create(info, *, trackers=(), url_list=(), nodes=(), comment=None,
                        created_by=None, creation_date=None) -> Metainfo
    parse_metainfo(data) -> Metainfo       # = Metainfo.from_bytes
    path_component_problem(component) -> str | None
    check_file_path(path) -> None          # RemoteProtocolError if unsafe
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.bencode import Encodable, Raw, Value, decode, decode_with_spans, encode
from peerlab.wire.magnet import Magnet

#: Bytes of a SHA-1 digest: one piece hash, the v1 info-hash (BEP 3).
SHA1_LENGTH = 20
#: Largest .torrent file read.  The biggest part is ``pieces``: 40 MiB at
#: :data:`MAX_PIECES`; the rest (file list, v2 piece layers) fits beside it.
MAX_METAINFO_BYTES = 64 * 1024 * 1024
#: Most pieces in one torrent: libtorrent's default ``max_pieces`` (0x200000),
#: so what libtorrent loads we load, and a torrent cannot make us hold more
#: than 40 MiB of piece hashes or a per-piece table longer than this.
MAX_PIECES = 0x200000
#: Smallest piece length read.  BEP 3 sets none; real torrents use 16 KiB
#: (one request block) or more, and a tiny piece makes every per-piece cost
#: (a hash, a Have message) dominate.
MIN_PIECE_LENGTH = 1024
#: Largest piece length read: a piece is held whole while it is verified,
#: so this bounds that memory (real torrents stop at 16-64 MiB).
MAX_PIECE_LENGTH = 128 * 1024 * 1024
#: Largest total size: every piece full at the two bounds above (256 TiB).
MAX_TOTAL_SIZE = MAX_PIECES * MAX_PIECE_LENGTH
#: Most files in one torrent (each one is an open file, a row, a path check).
MAX_FILES = 250_000
#: Longest path component in UTF-8 bytes: NAME_MAX of Linux file systems.
MAX_COMPONENT_BYTES = 255
#: Deepest path, in components including the torrent's name.
MAX_PATH_COMPONENTS = 64
#: Longest relative path in UTF-8 bytes ("/"-joined, including the name);
#: half of Linux's PATH_MAX leaves room for the download folder in front.
MAX_PATH_BYTES = 2048
#: Most tracker URLs over all tiers of ``announce-list`` (BEP 12).
MAX_TRACKERS = 500
#: Most web seeds in ``url-list`` (BEP 19) and DHT nodes in ``nodes`` (BEP 5).
MAX_URL_LIST = 100
MAX_NODES = 100
#: Longest URL (tracker, web seed) accepted.
MAX_URL_LENGTH = 4096

#: Names Windows maps to devices whatever the folder and extension
#: (Microsoft, "Naming Files, Paths, and Namespaces"); refused on every
#: platform so that a torrent made here is safe everywhere.
RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"COM{d}" for d in "123456789\u00b9\u00b2\u00b3"}
    | {f"LPT{d}" for d in "123456789\u00b9\u00b2\u00b3"}
)
# Bidirectional embedding/override/isolate marks: "evil\u202efdp.exe" shows
# as "evilexe.pdf".  Not separators, but a name that lies about itself.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = frozenset("/\\")
# Printable ASCII without '/', ':' and '\\' (0x2f, 0x3a, 0x5c).
_PLAIN_ASCII = re.compile(r"[\x20-\x2e\x30-\x39\x3b-\x5b\x5d-\x7e]+")
#: BEP 47 attribute letters.
ATTR_PADDING = "p"
ATTR_EXECUTABLE = "x"
ATTR_HIDDEN = "h"
ATTR_SYMLINK = "l"


# ------------------------------------------------------------------ names


def path_component_problem(component: str) -> str | None:
    """Why ``component`` cannot be one element of a file path, or None if it can."""
    if not component:
        return "is empty"
    if component in (".", ".."):
        return f"is {component!r}"
    if len(component.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        return f"is longer than {MAX_COMPONENT_BYTES} bytes"
    # Most names are printable ASCII; only the others need the slow look at
    # each character's Unicode category.
    for ch in ("" if _PLAIN_ASCII.fullmatch(component) else component):
        if ch in _SEPARATORS:
            return "contains a path separator"
        if ch == ":":
            return "contains ':' (a drive or a stream on Windows)"
        category = unicodedata.category(ch)
        if category == "Cc":
            return "contains a control character"
        if category == "Cs":
            return "is not valid UTF-8"
        if ch in _BIDI_CONTROLS:
            return "contains a bidirectional-override character"
    stripped = component.rstrip(". ")
    if not stripped:
        return "is only dots and spaces"
    if stripped.split(".", 1)[0].rstrip(" ").upper() in RESERVED_NAMES:
        return "is a reserved device name on Windows"
    return None


def _shown(path: Sequence[str]) -> str:
    return repr("/".join(path)[:200])


def check_file_path(path: Sequence[str]) -> None:
    """Refuse a relative path (its components) that is unsafe on any platform."""
    if not path:
        raise RemoteProtocolError("torrent file path is empty")
    if len(path) > MAX_PATH_COMPONENTS:
        raise RemoteProtocolError(
            f"unsafe file name in torrent: {_shown(path)} is deeper than "
            f"{MAX_PATH_COMPONENTS} folders"
        )
    for component in path:
        problem = path_component_problem(component)
        if problem is not None:
            raise RemoteProtocolError(
                f"unsafe file name in torrent: {_shown(path)}: component "
                f"{component[:100]!r} {problem}"
            )
    if sum(len(c.encode("utf-8")) + 1 for c in path) - 1 > MAX_PATH_BYTES:
        raise RemoteProtocolError(
            f"unsafe file name in torrent: {_shown(path)} is longer than {MAX_PATH_BYTES} bytes"
        )


def _fold(component: str) -> str:
    """The key under which case-insensitive, normalising file systems store a name."""
    return unicodedata.normalize("NFC", component).casefold()


def _check_collisions(files: Iterable[FileEntry]) -> None:
    """Refuse two files on one path, or a file where another needs a folder."""
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    folders: dict[tuple[str, ...], tuple[str, ...]] = {}
    for entry in files:
        if entry.padding:
            continue  # never written (BEP 47); libtorrent reuses pad names
        key = tuple(_fold(c) for c in entry.path)
        if key in seen or key in folders:
            other = seen.get(key) or folders[key]
            raise RemoteProtocolError(
                f"unsafe file names in torrent: {_shown(entry.path)} and {_shown(other)} "
                f"would be the same path on some file systems"
            )
        seen[key] = entry.path
        for i in range(1, len(key)):
            prefix = key[:i]
            if prefix in seen:
                raise RemoteProtocolError(
                    f"unsafe file names in torrent: {_shown(seen[prefix])} is a file and a "
                    f"folder of {_shown(entry.path)}"
                )
            folders.setdefault(prefix, entry.path)


# ------------------------------------------------------------------ fields


def _text(value: Value | None, what: str) -> str:
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"torrent: {what} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"torrent: {what} is not UTF-8") from None


def _free_text(value: Value | None, what: str) -> str | None:
    """Comment and creator: free text, shown only; bad UTF-8 is replaced."""
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"torrent: {what} is not a string")
    text = value.decode("utf-8", "replace")
    # Shown on terminals: no escape sequences (newlines and tabs may stay).
    return "".join(
        "\ufffd" if unicodedata.category(ch) == "Cc" and ch not in "\n\t" else ch for ch in text
    )


def _integer(value: Value | None, what: str, low: int, high: int) -> int:
    if not isinstance(value, int):
        raise RemoteProtocolError(f"torrent: {what} is missing or not an integer")
    if not low <= value <= high:
        raise RemoteProtocolError(f"torrent: {what} {value} outside [{low}, {high}]")
    return value


def _url(value: Value, what: str) -> str:
    text = _text(value, what)
    if len(text) > MAX_URL_LENGTH:
        raise RemoteProtocolError(f"torrent: {what} longer than {MAX_URL_LENGTH} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise RemoteProtocolError(f"torrent: {what} contains a control character")
    return text


def _utf8(value: Value | None) -> bool:
    """Is ``value`` (a string, or a list of strings) valid UTF-8 throughout?"""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bytes):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True


def _name(d: dict[bytes, Value], key: bytes) -> Value | None:
    """``key``, or its ``key.utf-8`` twin when ``key`` is not UTF-8 (old clients
    wrote names in the local code page and added the twin)."""
    value = d.get(key)
    if not _utf8(value):
        twin = d.get(key + b".utf-8")
        if twin is not None:
            return twin
    return value


# ------------------------------------------------------------------ info


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a torrent: its path (starting with the torrent's name for a
    multi-file torrent), its length and where it starts in the piece space."""

    path: tuple[str, ...]
    length: int
    offset: int
    attr: str = ""

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def padding(self) -> bool:
        """A BEP 47 padding file: zeros that fill the piece space, never written."""
        return ATTR_PADDING in self.attr

    @property
    def executable(self) -> bool:
        return ATTR_EXECUTABLE in self.attr

    @property
    def hidden(self) -> bool:
        return ATTR_HIDDEN in self.attr


def _file_list(raw_files: Value, name: str) -> list[FileEntry]:
    if not isinstance(raw_files, list) or not raw_files:
        raise RemoteProtocolError("torrent: info.files is not a non-empty list")
    if len(raw_files) > MAX_FILES:
        raise RemoteProtocolError(f"torrent: more than {MAX_FILES} files")
    out: list[FileEntry] = []
    offset = 0
    for i, item in enumerate(raw_files):
        if not isinstance(item, dict):
            raise RemoteProtocolError(f"torrent: info.files[{i}] is not a dictionary")
        length = _integer(item.get(b"length"), f"info.files[{i}].length", 0, MAX_TOTAL_SIZE)
        raw_path = _name(item, b"path")
        if not isinstance(raw_path, list) or not raw_path:
            raise RemoteProtocolError(f"torrent: info.files[{i}].path is not a non-empty list")
        path = (name,) + tuple(_text(c, f"info.files[{i}].path") for c in raw_path)
        attr_value = item.get(b"attr", b"")
        attr = _text(attr_value, f"info.files[{i}].attr")
        if ATTR_SYMLINK in attr:
            raise RemoteProtocolError(
                f"torrent: {_shown(path)} is a symbolic link (BEP 47), which peerlab refuses"
            )
        check_file_path(path)
        out.append(FileEntry(path, length, offset, attr))
        offset += length
        if offset > MAX_TOTAL_SIZE:
            raise RemoteProtocolError(f"torrent: total size above {MAX_TOTAL_SIZE} bytes")
    return out


@dataclass(frozen=True, slots=True)
class Info:
    """A checked info dictionary (BEP 3) and its hashes over the original bytes."""

    name: str
    piece_length: int
    pieces: bytes
    files: tuple[FileEntry, ...]
    multi_file: bool
    private: bool
    raw: bytes = field(repr=False)
    info_hash: bytes
    info_hash_v2: bytes | None = None

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    @property
    def total_size(self) -> int:
        return sum(f.length for f in self.files)

    @property
    def piece_count(self) -> int:
        return len(self.pieces) // SHA1_LENGTH

    @property
    def data_files(self) -> tuple[FileEntry, ...]:
        """The files that are written (all but BEP 47 padding)."""
        return tuple(f for f in self.files if not f.padding)

    def piece_hash(self, index: int) -> bytes:
        """The SHA-1 piece ``index`` must have."""
        if not 0 <= index < self.piece_count:
            raise IndexError(f"piece {index} of {self.piece_count}")
        return self.pieces[index * SHA1_LENGTH : (index + 1) * SHA1_LENGTH]

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index``: the piece length, less for the last piece."""
        if not 0 <= index < self.piece_count:
            raise IndexError(f"piece {index} of {self.piece_count}")
        return min(self.piece_length, self.total_size - index * self.piece_length)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview) -> Info:
        """Check a bencoded info dictionary (as it came in a torrent or over BEP 9)."""
        data = bytes(raw)
        if len(data) > MAX_METAINFO_BYTES:
            raise RemoteProtocolError(f"torrent: info larger than {MAX_METAINFO_BYTES} bytes")
        d = decode(data)
        if not isinstance(d, dict):
            raise RemoteProtocolError("torrent: info is not a dictionary")
        return cls._from_dict(d, data)

    @classmethod
    def _from_dict(cls, d: dict[bytes, Value], raw: bytes) -> Info:
        name = _text(_name(d, b"name"), "info.name")
        piece_length = _integer(d.get(b"piece length"), "info.piece length",
                                MIN_PIECE_LENGTH, MAX_PIECE_LENGTH)
        meta_version = d.get(b"meta version")
        pieces = d.get(b"pieces")
        if pieces is None and meta_version == 2:
            raise RemoteProtocolError(
                "torrent: a BitTorrent v2-only torrent (BEP 52, no 'pieces'); peerlab reads "
                "v1 and hybrid torrents"
            )
        if not isinstance(pieces, bytes) or len(pieces) % SHA1_LENGTH:
            raise RemoteProtocolError("torrent: info.pieces is not a string of 20-byte hashes")
        if len(pieces) // SHA1_LENGTH > MAX_PIECES:
            raise RemoteProtocolError(f"torrent: more than {MAX_PIECES} pieces")
        has_length = b"length" in d
        has_files = b"files" in d
        if has_length == has_files:
            raise RemoteProtocolError("torrent: info needs exactly one of 'length' and 'files'")
        if has_length:
            length = _integer(d[b"length"], "info.length", 0, MAX_TOTAL_SIZE)
            check_file_path((name,))
            files = [FileEntry((name,), length, 0)]
        else:
            check_file_path((name,))
            files = _file_list(d[b"files"], name)
            _check_collisions(files)
        total = sum(f.length for f in files)
        if total == 0:
            raise RemoteProtocolError("torrent: the files hold no bytes at all")
        expected = -(-total // piece_length)
        if len(pieces) // SHA1_LENGTH != expected:
            raise RemoteProtocolError(
                f"torrent: {len(pieces) // SHA1_LENGTH} piece hashes for {total} bytes in pieces "
                f"of {piece_length} (needs {expected})"
            )
        private_value = d.get(b"private", 0)
        if not isinstance(private_value, int):
            raise RemoteProtocolError("torrent: info.private is not an integer")
        return cls(
            name=name,
            piece_length=piece_length,
            pieces=pieces,
            files=tuple(files),
            multi_file=has_files,
            private=private_value != 0,
            raw=raw,
            info_hash=hashlib.sha1(raw).digest(),
            info_hash_v2=hashlib.sha256(raw).digest() if meta_version == 2 else None,
        )

    @classmethod
    def create(
        cls,
        name: str,
        piece_length: int,
        pieces: bytes,
        *,
        length: int | None = None,
        files: Sequence[tuple[Sequence[str], int]] | None = None,
        private: bool = False,
    ) -> Info:
        """Build an info dictionary (BEP 3): ``length`` for a single file, or
        ``files`` as (path under ``name``, length) pairs for a folder.

        The result goes through the same checks as a torrent read from the
        network, so we never build what we would refuse to read.
        """
        d: dict[str, Encodable] = {"name": name, "piece length": piece_length, "pieces": pieces}
        if (length is None) == (files is None):
            raise LocalProtocolError("Info.create needs exactly one of length and files")
        if length is not None:
            d["length"] = length
        else:
            assert files is not None
            d["files"] = [{"length": n, "path": list(p)} for p, n in files]
        if private:
            d["private"] = 1
        try:
            return cls.from_bytes(encode(d))
        except RemoteProtocolError as e:
            raise LocalProtocolError(str(e)) from None


# ------------------------------------------------------------------ metainfo


def _tiers(value: Value) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list):
        raise RemoteProtocolError("torrent: announce-list is not a list of tiers")
    tiers: list[tuple[str, ...]] = []
    count = 0
    for i, tier in enumerate(value):
        if not isinstance(tier, list):
            raise RemoteProtocolError(f"torrent: announce-list tier {i} is not a list")
        urls = tuple(_url(u, f"announce-list tier {i}") for u in tier if u != b"")
        count += len(urls)
        if count > MAX_TRACKERS:
            raise RemoteProtocolError(f"torrent: more than {MAX_TRACKERS} trackers")
        if urls:
            tiers.append(urls)
    return tuple(tiers)


def _url_list(value: Value | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, bytes) else value
    if not isinstance(items, list):
        raise RemoteProtocolError("torrent: url-list is not a string or a list")
    if len(items) > MAX_URL_LIST:
        raise RemoteProtocolError(f"torrent: more than {MAX_URL_LIST} web seeds")
    return tuple(_url(u, "url-list") for u in items if u != b"")


def _nodes(value: Value | None) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_NODES:
        raise RemoteProtocolError(f"torrent: nodes is not a list of at most {MAX_NODES}")
    out: list[tuple[str, int]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            raise RemoteProtocolError("torrent: a DHT node is not [host, port]")
        host = _url(item[0], "DHT node host")
        out.append((host, _integer(item[1], "DHT node port", 1, 65535)))
    return tuple(out)


_MODELLED_KEYS = frozenset({
    b"info", b"announce", b"announce-list", b"url-list", b"nodes", b"comment",
    b"created by", b"creation date",
})


@dataclass(frozen=True, slots=True)
class Metainfo:
    """A whole .torrent file (BEP 3), with BEP 12 / 19 / 27 / 5 extras."""

    info: Info
    announce: str | None = None
    announce_list: tuple[tuple[str, ...], ...] = ()
    url_list: tuple[str, ...] = ()
    nodes: tuple[tuple[str, int], ...] = ()
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    #: Top-level entries this class does not model (BEP 52 ``piece layers``,
    #: ``encoding``...), as (key, original bencoded bytes), so that
    #: :meth:`to_bytes` writes them back unchanged.
    extra: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)

    @property
    def info_hash(self) -> bytes:
        return self.info.info_hash

    @property
    def trackers(self) -> tuple[tuple[str, ...], ...]:
        """Tracker tiers in BEP 12 order: ``announce-list`` if any, else ``announce``."""
        if self.announce_list:
            return self.announce_list
        return ((self.announce,),) if self.announce else ()

    def magnet(self) -> Magnet:
        """A magnet link for this torrent (BEP 9): hashes, name, trackers, web seeds."""
        return Magnet(
            info_hash=self.info.info_hash,
            info_hash_v2=self.info.info_hash_v2,
            display_name=self.info.name,
            trackers=tuple(url for tier in self.trackers for url in tier),
            web_seeds=self.url_list,
        )

    def to_bytes(self) -> bytes:
        """The .torrent file; the info dictionary goes in byte for byte."""
        d: dict[bytes, Encodable] = {key: Raw(raw) for key, raw in self.extra}
        d[b"info"] = Raw(self.info.raw)
        if self.announce is not None:
            d[b"announce"] = self.announce
        if self.announce_list:
            d[b"announce-list"] = [list(t) for t in self.announce_list]
        if self.url_list:
            # BEP 19 allows a string or a list; one URL is written as a
            # string, as libtorrent and most creators do.
            seeds = self.url_list
            d[b"url-list"] = seeds[0] if len(seeds) == 1 else list(seeds)
        if self.nodes:
            d[b"nodes"] = [[h, p] for h, p in self.nodes]
        if self.comment is not None:
            d[b"comment"] = self.comment
        if self.created_by is not None:
            d[b"created by"] = self.created_by
        if self.creation_date is not None:
            d[b"creation date"] = self.creation_date
        return encode(d)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Metainfo:
        """Parse and check a .torrent file; RemoteProtocolError says what is wrong."""
        if len(data) > MAX_METAINFO_BYTES:
            raise RemoteProtocolError(f"torrent: file larger than {MAX_METAINFO_BYTES} bytes")
        decoded = decode_with_spans(data)
        top = decoded.value
        info_value = top.get(b"info")
        if not isinstance(info_value, dict):
            raise RemoteProtocolError("torrent: no info dictionary")
        info = Info._from_dict(info_value, decoded.raw(b"info"))
        announce_value = top.get(b"announce")
        announce = None
        if announce_value is not None and announce_value != b"":
            announce = _url(announce_value, "announce")
        announce_list = _tiers(top[b"announce-list"]) if b"announce-list" in top else ()
        creation_date = top.get(b"creation date")
        if creation_date is not None and not isinstance(creation_date, int):
            raise RemoteProtocolError("torrent: creation date is not an integer")
        return cls(
            info=info,
            announce=announce,
            announce_list=announce_list,
            url_list=_url_list(top.get(b"url-list")),
            nodes=_nodes(top.get(b"nodes")),
            comment=_free_text(top.get(b"comment"), "comment"),
            created_by=_free_text(top.get(b"created by"), "created by"),
            creation_date=creation_date,
            extra=tuple(
                (key, decoded.raw(key)) for key in top if key not in _MODELLED_KEYS
            ),
        )

    @classmethod
    def create(
        cls,
        info: Info,
        *,
        trackers: Sequence[Sequence[str]] = (),
        url_list: Sequence[str] = (),
        nodes: Sequence[tuple[str, int]] = (),
        comment: str | None = None,
        created_by: str | None = None,
        creation_date: int | None = None,
    ) -> Metainfo:
        """A torrent for ``info``.  ``trackers`` are BEP 12 tiers; the first URL
        also goes in ``announce`` for clients that predate BEP 12, and a single
        tracker is written as ``announce`` alone."""
        tiers = tuple(tuple(t) for t in trackers if t)
        urls = [u for t in tiers for u in t]
        if len(urls) > MAX_TRACKERS:
            raise LocalProtocolError(f"more than {MAX_TRACKERS} trackers")
        for u in urls + list(url_list):
            if not u or len(u) > MAX_URL_LENGTH or any(unicodedata.category(c) == "Cc" for c in u):
                raise LocalProtocolError(f"not a usable URL: {u[:100]!r}")
        return cls(
            info=info,
            announce=urls[0] if urls else None,
            announce_list=tiers if len(urls) > 1 else (),
            url_list=tuple(url_list),
            nodes=tuple(nodes),
            comment=comment,
            created_by=created_by,
            creation_date=creation_date,
        )


def parse_metainfo(data: bytes | bytearray | memoryview) -> Metainfo:
    """Parse and check a .torrent file (:meth:`Metainfo.from_bytes`)."""
    return Metainfo.from_bytes(data)
