"""The Napster index: accounts, online users, shared files (issue 3, section 2).

An OpenNap server keeps three things: the registered nicks with their
passwords, the users logged in now, and every file they share, searchable by
keyword.  :class:`IndexStore` is that state behind one narrow interface with
two backends:

* :class:`SqliteIndexStore` (the default; ``":memory:"`` works, so the
  simulator can run a server): FTS5 over the file names, every call fast
  enough to run on the event loop (``inline``).  One server per database.
* :class:`PostgresIndexStore` (psycopg 3): full text with a ``tsvector``
  column and a GIN index, shared by a *farm* of servers (``shared``); calls
  are network round trips, so the server runs them on worker threads.

The farm has no single point of failure.  Every server registers a row in
``servers`` and refreshes its heartbeat; every ``users`` and ``files`` row
names the server its session lives on.  A server whose heartbeat is older
than a bound (the caller's ``timeout``) is dead: any live server *reaps* it,
deleting its row, its users and their files in one transaction, and until
then the live servers leave its files out of search results
(``exclude_servers``).  Users of a dead server reconnect elsewhere and share
again.  Messages for a user on another server (a firewalled download's 501,
a ping, a ghost being logged out) go through the ``mail`` table, which each
server polls for its own rows.

Passwords are kept only as salted scrypt hashes (:func:`hash_password`,
RFC 7914); the salt comes from the caller's ``rng`` (a salt must be unique,
not secret), so the simulator stays reproducible.

Nicks are case-insensitive keys (``Alice`` and ``alice`` are one account:
no look-alike takeover); the spelling given at registration is kept for
display.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import sqlite3
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from peerlab.errors import ConfigError, StorageError

# ------------------------------------------------------------------ limits

#: Search words used from one request: every word must match, so more words
#: only narrow a result list that is already capped at MAX_RESULTS (napster.txt
#: 200); the bound keeps one request from building a huge FTS expression.
MAX_QUERY_TERMS = 8
#: Longest search word used (longer ones are cut): no file-name word is longer
#: in practice, and the cut bounds the work per word.
MAX_TERM_CHARS = 64
#: Mail rows fetched per poll: a burst addressed to this server is delivered
#: over several polls instead of in one huge transaction.
MAIL_BATCH = 500
#: Largest scrypt cost (log2 N) a stored hash may ask for when verified: a row
#: written by a future or hostile configuration cannot make a login take minutes.
MAX_SCRYPT_LOG2_N = 20
#: Memory scrypt may use (bytes): N=2^20, r=8 needs 1 GiB; we stay well below.
SCRYPT_MAXMEM = 256 << 20
#: The dummy e-mail a login ack carries for a nick registered without one
#: (napster.txt 3: "If the nick is not registered, a dummy value is returned").
DUMMY_EMAIL = "anon@peerlab"
#: The user level every account has: peerlab has no moderators (napster.txt 604).
USER_LEVEL = "User"

ConstraintField = Literal["link", "bitrate", "frequency", "size", "duration"]
ConstraintOp = Literal[">=", "<=", "="]
_CONSTRAINT_COLUMNS: dict[str, str] = {
    "link": "f.link",
    "bitrate": "f.bitrate",
    "frequency": "f.frequency",
    "size": "f.size",
    "duration": "f.duration",
}
_OPS = frozenset((">=", "<=", "="))

#: One search hit as the server sends it on (napster.txt 201):
#: (filename, md5, size, bitrate, frequency, duration, nick, ip, link type).
Hit = tuple[str, str, int, int, int, int, str, int, int]
#: One browse entry (napster.txt 212): (filename, md5, size, bitrate,
#: frequency, duration).
BrowseEntry = tuple[str, str, int, int, int, int]

# A word is a run of letters and digits: the cut FTS5's unicode61 tokenizer
# makes ("little_toot.mp3" -> little, toot, mp3), used for PostgreSQL too so
# both backends find the same files.
_WORD = re.compile(r"[^\W_]+")


# ------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class Account:
    """A registered nick (napster.txt 2/6: login and new user login)."""

    nick: str
    password_hash: str
    email: str
    level: str
    created: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class OnlineUser:
    """A logged-in user as the whole farm sees it (napster.txt 604 fields)."""

    nick: str
    session_id: int
    server_id: int
    ip: int  # napster.txt 201: the address as the little-endian unsigned long
    data_port: int  # 0: firewalled (napster.txt 2)
    link: int  # link type 0-10 (napster.txt 2)
    client_info: str
    login_time: float  # wall clock
    shared: int
    downloads: int
    uploads: int
    total_downloads: int
    total_uploads: int


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """One file a user shares (napster.txt 100)."""

    filename: str
    md5: str
    size: int
    bitrate: int
    frequency: int
    duration: int


@dataclass(frozen=True, slots=True)
class Constraint:
    """One ``LINESPEED``/``BITRATE``/``FREQ``/``SIZE`` clause of a search
    (napster.txt 200): ``AT LEAST`` is ``>=``, ``AT BEST`` ``<=``,
    ``EQUAL TO`` ``=``."""

    field: ConstraintField
    op: ConstraintOp
    value: int


@dataclass(frozen=True, slots=True)
class IndexQuery:
    """A search as the index runs it: every word in ``terms`` must occur in
    the file name and none in ``excludes`` (``FILENAME EXCLUDES``), every
    constraint must hold, at most ``limit`` hits; ``server_id`` keeps only
    the files of that server's users (``LOCAL_ONLY``)."""

    terms: tuple[str, ...]
    limit: int
    constraints: tuple[Constraint, ...] = ()
    excludes: tuple[str, ...] = ()
    server_id: int | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    """A message for a session on this server, posted by another server.

    ``msg_type``/``payload`` are a Napster message ready to send; ``close``
    asks the server to disconnect the session after sending it (a ghost
    logged out by a newer login of the same nick).
    """

    id: int
    session_id: int
    msg_type: int
    payload: str
    close: bool


@dataclass(frozen=True, slots=True)
class Replaced:
    """The session a login replaced (a ghost of the same nick)."""

    nick: str
    session_id: int
    server_id: int


@dataclass(frozen=True, slots=True)
class FarmStats:
    """Napster 214 server stats for the whole farm: users, files, bytes."""

    users: int
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class NewSession:
    """What a login writes into ``users``."""

    nick: str
    session_id: int
    server_id: int
    ip: int
    data_port: int
    link: int
    client_info: str
    login_time: float


# ------------------------------------------------------------------ passwords


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """scrypt parameters (RFC 7914 section 2).  The default (N=2^14, r=8,
    p=1, about 16 MiB and 40 ms here) is the interactive-login cost RFC 7914
    and OWASP recommend; tests and benchmarks may lower ``log2_n``."""

    log2_n: int = 14
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        in_range = 1 <= self.log2_n <= MAX_SCRYPT_LOG2_N and 1 <= self.r <= 32
        if not in_range or not 1 <= self.p <= 16:
            raise ConfigError(
                f"scrypt cost out of range (log2 N 1..{MAX_SCRYPT_LOG2_N}, r 1..32, p 1..16)"
            )


#: Salt length in bytes (RFC 7914 leaves it free; 16 is the usual choice).
SALT_BYTES = 16
#: Derived key length in bytes.
HASH_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=1 << cost.log2_n,
        r=cost.r,
        p=cost.p,
        maxmem=SCRYPT_MAXMEM,
        dklen=HASH_BYTES,
    )


def new_salt(rng: random.Random) -> bytes:
    """A fresh salt from the runtime's ``rng`` (uniqueness is all a salt needs)."""
    return rng.getrandbits(SALT_BYTES * 8).to_bytes(SALT_BYTES, "big")


def hash_password(password: str, salt: bytes, cost: ScryptCost | None = None) -> str:
    """The stored form of ``password``: ``scrypt$log2N$r$p$salt$hash``
    (base64).  Slow on purpose; the server runs it on a worker thread."""
    cost = cost or ScryptCost()
    digest = _scrypt(password, salt, cost)
    return f"scrypt${cost.log2_n}${cost.r}${cost.p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare).

    A malformed stored value never matches (and never raises)."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        cost = ScryptCost(int(log2_n), int(r), int(p))
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), cost)
    except (ValueError, ConfigError):
        return False
    return hmac.compare_digest(actual, expected)


# ------------------------------------------------------------------ words


def _fold(text: str) -> str:
    """Lower case without diacritics (what unicode61 remove_diacritics does)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words_of(text: str) -> list[str]:
    """The index words of a file name or search text, folded."""
    return _WORD.findall(_fold(text))


def query_terms(texts: Sequence[str]) -> tuple[str, ...]:
    """The search words of ``FILENAME CONTAINS`` texts: folded, cut to
    :data:`MAX_TERM_CHARS`, duplicates dropped, at most :data:`MAX_QUERY_TERMS`."""
    seen: dict[str, None] = {}
    for text in texts:
        for w in words_of(text):
            seen.setdefault(w[:MAX_TERM_CHARS], None)
            if len(seen) >= MAX_QUERY_TERMS:
                return tuple(seen)
    return tuple(seen)


def _check_query(query: IndexQuery) -> None:
    for c in query.constraints:
        if c.field not in _CONSTRAINT_COLUMNS or c.op not in _OPS:
            raise ConfigError(f"bad search constraint {c!r}")


# ------------------------------------------------------------------ interface


class IndexStore(ABC):
    """The index a Napster server (or a farm of them) keeps.

    Every method blocks.  ``inline`` says calls are fast enough to make on
    the event loop; otherwise the server runs them through
    ``runtime.offload``.  ``shared`` says several servers may use the store at
    once (a farm), so mail must be polled and dead servers reaped.
    Database failures raise :class:`~peerlab.errors.StorageError`.
    """

    inline: bool = True
    shared: bool = False

    # -- servers

    @abstractmethod
    def register_server(self, name: str, now: float) -> int:
        """Add a live server; returns its id (never reused)."""

    @abstractmethod
    def heartbeat(self, server_id: int, now: float, users: int, files: int, size: int) -> bool:
        """Refresh this server's heartbeat and its share of the totals.

        Returns False when the row is gone: the farm declared this server dead
        and reaped its users, who must log in again."""

    @abstractmethod
    def stale_servers(self, now: float, timeout: float) -> list[int]:
        """Servers whose heartbeat is older than ``timeout`` seconds."""

    @abstractmethod
    def reap_server(self, server_id: int, now: float, timeout: float) -> int:
        """Delete a stale server with its users and files; returns the files
        deleted (0 when another server reaped it first or it came back)."""

    @abstractmethod
    def unregister_server(self, server_id: int) -> None:
        """A clean shutdown: delete this server, its users and their files."""

    @abstractmethod
    def farm_stats(self, now: float, timeout: float) -> FarmStats:
        """Users, files and bytes over the live servers (napster.txt 214)."""

    # -- accounts

    @abstractmethod
    def get_account(self, nick: str) -> Account | None: ...

    @abstractmethod
    def create_account(self, account: Account) -> bool:
        """Register a nick; False when it is taken (case-insensitively)."""

    @abstractmethod
    def touch_account(self, nick: str, now: float) -> None:
        """Record ``now`` as the nick's last-seen time (napster.txt 605)."""

    # -- sessions

    @abstractmethod
    def open_session(self, session: NewSession) -> Replaced | None:
        """Log a user in; a session of the same nick (a ghost, on any server)
        is replaced, its files deleted, and returned."""

    @abstractmethod
    def close_session(self, session_id: int) -> int:
        """Log a session out: delete its user row and files (files deleted)."""

    @abstractmethod
    def find_user(self, nick: str) -> OnlineUser | None:
        """The nick's live session anywhere in the farm, if any."""

    @abstractmethod
    def update_user(
        self, session_id: int, *, link: int | None = None, data_port: int | None = None
    ) -> None:
        """Change a session's link type (napster.txt 700) or data port (703)."""

    @abstractmethod
    def count_transfer(
        self, session_id: int, kind: Literal["download", "upload"], delta: int
    ) -> None:
        """napster.txt 218-221: one transfer started (+1) or finished (-1)."""

    # -- files

    @abstractmethod
    def add_files(self, user: OnlineUser, files: Sequence[SharedEntry]) -> int:
        """Share files for a session; a name it already shares is skipped.
        Returns how many were added."""

    @abstractmethod
    def remove_file(self, session_id: int, filename: str) -> int | None:
        """Unshare one file (napster.txt 102); returns its size, None if not shared."""

    @abstractmethod
    def remove_all_files(self, session_id: int) -> int:
        """Unshare everything (napster.txt 110); returns how many files."""

    @abstractmethod
    def session_totals(self, session_id: int) -> tuple[int, int]:
        """(files, bytes) a session shares."""

    @abstractmethod
    def search(self, query: IndexQuery, exclude_servers: Sequence[int] = ()) -> list[Hit]:
        """Files matching ``query``, at most ``query.limit``, leaving out the
        files of ``exclude_servers`` (dead, not yet reaped)."""

    @abstractmethod
    def browse(self, nick: str, limit: int) -> list[BrowseEntry]:
        """The files ``nick`` shares now (napster.txt 211/212)."""

    @abstractmethod
    def find_file(self, nick: str, filename: str) -> tuple[OnlineUser, SharedEntry] | None:
        """The online user ``nick`` and its shared ``filename`` (napster.txt 203)."""

    # -- mail

    @abstractmethod
    def post(
        self, server_id: int, session_id: int, msg_type: int, payload: str, close: bool = False
    ) -> None:
        """Leave a message for a session on another server."""

    @abstractmethod
    def take_mail(self, server_id: int, limit: int = MAIL_BATCH) -> list[Mail]:
        """Remove and return this server's mail, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Release the database."""


# ------------------------------------------------------------------ shared SQL


_USER_COLUMNS = (
    "nick, session_id, server_id, ip, data_port, link, client_info, login_time,"
    " shared, downloads, uploads, total_downloads, total_uploads"
)


def _user(row: Sequence[Any]) -> OnlineUser:
    return OnlineUser(
        row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]),
        row[6], float(row[7]), int(row[8]), int(row[9]), int(row[10]), int(row[11]),
        int(row[12]),
    )


class _Cursor:
    """The part of a DB-API cursor the shared SQL uses, with ``?`` marks."""

    def __init__(self, cursor: Any, marker: str) -> None:
        self._c = cursor
        self._marker = marker

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        if self._marker != "?":
            sql = sql.replace("?", self._marker)
        self._c.execute(sql, params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` for every row; returns the rows changed in total."""
        if self._marker != "?":
            sql = sql.replace("?", self._marker)
        self._c.executemany(sql, rows)
        return int(self._c.rowcount)

    def fetchone(self) -> Any:
        return self._c.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._c.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._c.rowcount)


class _SqlIndexStore(IndexStore):
    """The SQL both backends share; each adds its schema, full text and clock."""

    @abstractmethod
    @contextmanager
    def _tx(self) -> Iterator[_Cursor]:
        """One transaction: commit on success, roll back and raise StorageError
        on a database error."""
        yield  # type: ignore[misc]

    # -- servers

    def _now(self, now: float) -> tuple[str, list[Any]]:
        """The SQL for "now" in heartbeats and its parameters: the caller's
        clock here; a shared backend uses the database's."""
        return "?", [now]

    def register_server(self, name: str, now: float) -> int:
        clock, args = self._now(now)
        with self._tx() as c:
            row = c.execute(
                f"INSERT INTO servers (name, started, heartbeat) VALUES (?, ?, {clock})"
                " RETURNING id",
                (name, now, *args),
            ).fetchone()
        return int(row[0])

    def heartbeat(self, server_id: int, now: float, users: int, files: int, size: int) -> bool:
        clock, args = self._now(now)
        with self._tx() as c:
            c.execute(
                f"UPDATE servers SET heartbeat = {clock}, users = ?, files = ?, bytes = ?"
                " WHERE id = ?",
                (*args, users, files, size, server_id),
            )
            return c.rowcount > 0

    def stale_servers(self, now: float, timeout: float) -> list[int]:
        clock, args = self._now(now)
        with self._tx() as c:
            rows = c.execute(
                f"SELECT id FROM servers WHERE heartbeat < {clock} - ?", (*args, timeout)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def reap_server(self, server_id: int, now: float, timeout: float) -> int:
        clock, args = self._now(now)
        with self._tx() as c:
            # Only the server whose DELETE takes the row reaps: two live
            # servers noticing the same death do the work once.
            gone = c.execute(
                f"DELETE FROM servers WHERE id = ? AND heartbeat < {clock} - ? RETURNING id",
                (server_id, *args, timeout),
            ).fetchone()
            if gone is None:
                return 0
            return self._drop_server_rows(c, server_id)

    def unregister_server(self, server_id: int) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM servers WHERE id = ?", (server_id,))
            self._drop_server_rows(c, server_id)

    def _drop_server_rows(self, c: _Cursor, server_id: int) -> int:
        files = c.execute(
            "DELETE FROM files WHERE session_id IN"
            " (SELECT session_id FROM users WHERE server_id = ?)",
            (server_id,),
        ).rowcount
        c.execute("DELETE FROM users WHERE server_id = ?", (server_id,))
        c.execute("DELETE FROM mail WHERE server_id = ?", (server_id,))
        return max(0, files)

    def farm_stats(self, now: float, timeout: float) -> FarmStats:
        clock, args = self._now(now)
        with self._tx() as c:
            row = c.execute(
                "SELECT COALESCE(SUM(users), 0), COALESCE(SUM(files), 0),"
                f" COALESCE(SUM(bytes), 0) FROM servers WHERE heartbeat >= {clock} - ?",
                (*args, timeout),
            ).fetchone()
        return FarmStats(int(row[0]), int(row[1]), int(row[2]))

    # -- accounts

    def get_account(self, nick: str) -> Account | None:
        with self._tx() as c:
            row = c.execute(
                "SELECT nick, password, email, level, created, last_seen FROM accounts"
                " WHERE nick_key = ?",
                (nick.lower(),),
            ).fetchone()
        if row is None:
            return None
        return Account(row[0], row[1], row[2], row[3], float(row[4]), float(row[5]))

    def create_account(self, account: Account) -> bool:
        with self._tx() as c:
            c.execute(
                "INSERT INTO accounts (nick_key, nick, password, email, level, created, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (nick_key) DO NOTHING",
                (
                    account.nick.lower(), account.nick, account.password_hash, account.email,
                    account.level, account.created, account.last_seen,
                ),
            )
            return c.rowcount > 0

    def touch_account(self, nick: str, now: float) -> None:
        with self._tx() as c:
            c.execute("UPDATE accounts SET last_seen = ? WHERE nick_key = ?", (now, nick.lower()))

    # -- sessions

    def open_session(self, session: NewSession) -> Replaced | None:
        with self._tx() as c:
            old = c.execute(
                "DELETE FROM users WHERE nick_key = ? RETURNING nick, session_id, server_id",
                (session.nick.lower(),),
            ).fetchone()
            replaced = None
            if old is not None:
                replaced = Replaced(old[0], int(old[1]), int(old[2]))
                c.execute("DELETE FROM files WHERE session_id = ?", (replaced.session_id,))
            c.execute(
                "INSERT INTO users (nick_key, nick, session_id, server_id, ip, data_port, link,"
                " client_info, login_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.nick.lower(), session.nick, session.session_id, session.server_id,
                    session.ip, session.data_port, session.link, session.client_info,
                    session.login_time,
                ),
            )
        return replaced

    def close_session(self, session_id: int) -> int:
        with self._tx() as c:
            files = c.execute("DELETE FROM files WHERE session_id = ?", (session_id,)).rowcount
            c.execute("DELETE FROM users WHERE session_id = ?", (session_id,))
        return max(0, files)

    def find_user(self, nick: str) -> OnlineUser | None:
        with self._tx() as c:
            row = c.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE nick_key = ?", (nick.lower(),)
            ).fetchone()
        return None if row is None else _user(row)

    def update_user(
        self, session_id: int, *, link: int | None = None, data_port: int | None = None
    ) -> None:
        with self._tx() as c:
            if link is not None:
                c.execute("UPDATE users SET link = ? WHERE session_id = ?", (link, session_id))
                # files carry the link type so a search needs no join (napster.txt 201)
                c.execute("UPDATE files SET link = ? WHERE session_id = ?", (link, session_id))
            if data_port is not None:
                c.execute(
                    "UPDATE users SET data_port = ? WHERE session_id = ?", (data_port, session_id)
                )

    # -- files

    def remove_file(self, session_id: int, filename: str) -> int | None:
        with self._tx() as c:
            row = c.execute(
                "DELETE FROM files WHERE session_id = ? AND filename = ? RETURNING size",
                (session_id, filename),
            ).fetchone()
            if row is None:
                return None
            c.execute("UPDATE users SET shared = shared - 1 WHERE session_id = ?", (session_id,))
        return int(row[0])

    def session_totals(self, session_id: int) -> tuple[int, int]:
        with self._tx() as c:
            row = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def remove_all_files(self, session_id: int) -> int:
        with self._tx() as c:
            n = c.execute("DELETE FROM files WHERE session_id = ?", (session_id,)).rowcount
            c.execute("UPDATE users SET shared = 0 WHERE session_id = ?", (session_id,))
        return max(0, n)

    def browse(self, nick: str, limit: int) -> list[BrowseEntry]:
        with self._tx() as c:
            rows = c.execute(
                "SELECT f.filename, f.md5, f.size, f.bitrate, f.frequency, f.duration"
                " FROM users u JOIN files f ON f.session_id = u.session_id"
                " WHERE u.nick_key = ? ORDER BY f.id LIMIT ?",
                (nick.lower(), limit),
            ).fetchall()
        return [tuple(r) for r in rows]

    def find_file(self, nick: str, filename: str) -> tuple[OnlineUser, SharedEntry] | None:
        cols = ", ".join(f"u.{c.strip()}" for c in _USER_COLUMNS.split(","))
        with self._tx() as c:
            row = c.execute(
                f"SELECT {cols}, f.filename, f.md5, f.size, f.bitrate, f.frequency, f.duration"
                " FROM users u JOIN files f ON f.session_id = u.session_id"
                " WHERE u.nick_key = ? AND f.filename = ?",
                (nick.lower(), filename),
            ).fetchone()
        if row is None:
            return None
        return _user(row[:13]), SharedEntry(
            row[13], row[14], int(row[15]), int(row[16]), int(row[17]), int(row[18])
        )

    # -- mail

    def post(
        self, server_id: int, session_id: int, msg_type: int, payload: str, close: bool = False
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO mail (server_id, session_id, msg_type, payload, closes)"
                " VALUES (?, ?, ?, ?, ?)",
                (server_id, session_id, msg_type, payload, bool(close)),
            )

    def take_mail(self, server_id: int, limit: int = MAIL_BATCH) -> list[Mail]:
        with self._tx() as c:
            rows = c.execute(
                "DELETE FROM mail WHERE id IN (SELECT id FROM mail WHERE server_id = ?"
                " ORDER BY id LIMIT ?) RETURNING id, session_id, msg_type, payload, closes",
                (server_id, limit),
            ).fetchall()
        mail = [Mail(int(r[0]), int(r[1]), int(r[2]), r[3], bool(r[4])) for r in rows]
        mail.sort(key=lambda m: m.id)
        return mail


def _constraint_sql(query: IndexQuery) -> tuple[str, list[Any]]:
    """The WHERE additions for a query's constraints (and LOCAL_ONLY)."""
    _check_query(query)
    parts: list[str] = []
    values: list[Any] = []
    for cons in query.constraints:
        parts.append(f" AND {_CONSTRAINT_COLUMNS[cons.field]} {cons.op} ?")
        values.append(cons.value)
    if query.server_id is not None:
        parts.append(" AND f.server_id = ?")
        values.append(query.server_id)
    return "".join(parts), values


# ------------------------------------------------------------------ SQLite

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    users INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS accounts (
    nick_key TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    password TEXT NOT NULL,
    email TEXT NOT NULL,
    level TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    nick_key TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    session_id INTEGER NOT NULL UNIQUE,
    server_id INTEGER NOT NULL,
    ip INTEGER NOT NULL,
    data_port INTEGER NOT NULL,
    link INTEGER NOT NULL,
    client_info TEXT NOT NULL,
    login_time REAL NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0,
    downloads INTEGER NOT NULL DEFAULT 0,
    uploads INTEGER NOT NULL DEFAULT 0,
    total_downloads INTEGER NOT NULL DEFAULT 0,
    total_uploads INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS users_server ON users(server_id);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL,
    server_id INTEGER NOT NULL,
    nick TEXT NOT NULL,
    ip INTEGER NOT NULL,
    link INTEGER NOT NULL,
    filename TEXT NOT NULL,
    md5 TEXT NOT NULL,
    size INTEGER NOT NULL,
    bitrate INTEGER NOT NULL,
    frequency INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    UNIQUE (session_id, filename)
);
CREATE VIRTUAL TABLE IF NOT EXISTS files_fts USING fts5(
    filename, content = 'files', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS files_ai AFTER INSERT ON files BEGIN
    INSERT INTO files_fts (rowid, filename) VALUES (new.id, new.filename);
END;
CREATE TRIGGER IF NOT EXISTS files_ad AFTER DELETE ON files BEGIN
    INSERT INTO files_fts (files_fts, rowid, filename) VALUES ('delete', old.id, old.filename);
END;
CREATE TABLE IF NOT EXISTS mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL,
    session_id INTEGER NOT NULL,
    msg_type INTEGER NOT NULL,
    payload TEXT NOT NULL,
    closes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_server ON mail(server_id, id);
"""

#: Prepared statements the sqlite3 module keeps: one per search shape
#: (constraint combinations) plus the rest, with room to spare.
SQLITE_STATEMENT_CACHE = 512
#: Page cache per connection (KiB, as SQLite's negative cache_size): the FTS
#: index of a million files stays in memory.
SQLITE_CACHE_KIB = 256 * 1024
#: How long a write waits for another connection holding the file (seconds).
SQLITE_BUSY_TIMEOUT_S = 10.0


class SqliteIndexStore(_SqlIndexStore):
    """The index in SQLite with FTS5 (the default; one server per database).

    ``path`` is a file or ``":memory:"``.  Calls are quick (an FTS5 lookup
    with a LIMIT, prepared statements), so the server makes them inline.  A
    lock makes the store safe to share between threads anyway.
    """

    inline = True
    shared = False

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=SQLITE_STATEMENT_CACHE,
                timeout=SQLITE_BUSY_TIMEOUT_S,
            )
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            # The index is rebuilt from the clients' shares after any crash;
            # only accounts need to survive, and WAL with NORMAL keeps them.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            self._db.execute("PRAGMA temp_store = MEMORY")
            self._db.executescript(_SQLITE_SCHEMA)
        except sqlite3.Error as e:
            raise StorageError(f"cannot open the index database {path}: {e}") from e
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[_Cursor]:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN")
                yield _Cursor(db.cursor(), "?")
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StorageError(f"index database error: {e}") from e
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def count_transfer(
        self, session_id: int, kind: Literal["download", "upload"], delta: int
    ) -> None:
        column = "downloads" if kind == "download" else "uploads"
        with self._tx() as c:
            c.execute(
                f"UPDATE users SET {column} = MAX(0, {column} + ?),"
                f" total_{column} = total_{column} + ? WHERE session_id = ?",
                (delta, 1 if delta > 0 else 0, session_id),
            )

    def add_files(self, user: OnlineUser, files: Sequence[SharedEntry]) -> int:
        rows = [
            (
                user.session_id, user.server_id, user.nick, user.ip, user.link, f.filename,
                f.md5, f.size, f.bitrate, f.frequency, f.duration,
            )
            for f in files
        ]
        with self._tx() as c:
            added = c.executemany(
                "INSERT OR IGNORE INTO files (session_id, server_id, nick, ip, link, filename,"
                " md5, size, bitrate, frequency, duration) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            if added > 0:
                c.execute(
                    "UPDATE users SET shared = shared + ? WHERE session_id = ?",
                    (added, user.session_id),
                )
        return added

    def search(self, query: IndexQuery, exclude_servers: Sequence[int] = ()) -> list[Hit]:
        if not query.terms or query.limit <= 0:
            return []
        match = " ".join(f'"{t}"' for t in query.terms)
        if query.excludes:
            match = f"({match})" + "".join(f' NOT "{x}"' for x in query.excludes)
        extra, values = _constraint_sql(query)
        if exclude_servers:
            extra += f" AND f.server_id NOT IN ({','.join('?' * len(exclude_servers))})"
            values.extend(exclude_servers)
        sql = (
            "SELECT f.filename, f.md5, f.size, f.bitrate, f.frequency, f.duration, f.nick,"
            " f.ip, f.link FROM files_fts JOIN files f ON f.id = files_fts.rowid"
            f" WHERE files_fts MATCH ?{extra} LIMIT ?"
        )
        with self._lock:
            try:
                return self._db.execute(sql, (match, *values, query.limit)).fetchall()
            except sqlite3.Error as e:
                raise StorageError(f"index search failed: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ------------------------------------------------------------------ PostgreSQL

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL,
    users BIGINT NOT NULL DEFAULT 0,
    files BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS accounts (
    nick_key TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    password TEXT NOT NULL,
    email TEXT NOT NULL,
    level TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    nick_key TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    session_id BIGINT NOT NULL UNIQUE,
    server_id BIGINT NOT NULL,
    ip BIGINT NOT NULL,
    data_port INTEGER NOT NULL,
    link INTEGER NOT NULL,
    client_info TEXT NOT NULL,
    login_time DOUBLE PRECISION NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0,
    downloads INTEGER NOT NULL DEFAULT 0,
    uploads INTEGER NOT NULL DEFAULT 0,
    total_downloads INTEGER NOT NULL DEFAULT 0,
    total_uploads INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS users_server ON users(server_id);
CREATE TABLE IF NOT EXISTS files (
    id BIGSERIAL PRIMARY KEY,
    session_id BIGINT NOT NULL,
    server_id BIGINT NOT NULL,
    nick TEXT NOT NULL,
    ip BIGINT NOT NULL,
    link INTEGER NOT NULL,
    filename TEXT NOT NULL,
    md5 TEXT NOT NULL,
    size BIGINT NOT NULL,
    bitrate INTEGER NOT NULL,
    frequency INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    words TEXT NOT NULL,
    tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', words)) STORED,
    UNIQUE (session_id, filename)
);
-- fastupdate off: GIN's pending list (the default) is scanned by every query
-- until autovacuum flushes it, which made farm searches 8x slower at random.
CREATE INDEX IF NOT EXISTS files_tsv ON files USING GIN (tsv) WITH (fastupdate = off);
CREATE TABLE IF NOT EXISTS mail (
    id BIGSERIAL PRIMARY KEY,
    server_id BIGINT NOT NULL,
    session_id BIGINT NOT NULL,
    msg_type INTEGER NOT NULL,
    payload TEXT NOT NULL,
    closes BOOLEAN NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_server ON mail(server_id, id);
"""

#: Advisory lock key taken while creating the schema, so two farm servers
#: starting at once do not race on CREATE TABLE ("peerlab-napster" in ASCII).
_PG_SCHEMA_LOCK = 0x7065_6572_6E61_70
#: Seconds a new connection may take before the database counts as unreachable.
PG_CONNECT_TIMEOUT_S = 10
#: The database server's clock in seconds: farm members on different machines
#: need not agree on the time for heartbeats to work.
_PG_NOW = "extract(epoch from clock_timestamp())"


def _pg_words(filename: str) -> str:
    return " ".join(words_of(filename))


class PostgresIndexStore(_SqlIndexStore):
    """The index in PostgreSQL, shared by a farm of servers (psycopg 3).

    Each worker thread gets its own connection (psycopg connections must not
    be used by two threads at once); a broken connection is replaced on the
    next call.  Heartbeats and staleness use the database's clock.
    """

    inline = False
    shared = True

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - psycopg is a dependency
            raise ConfigError("the PostgreSQL index needs psycopg 3 (pip install psycopg)") from e
        self._psycopg = psycopg
        self.url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._closed = False
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(?)", (_PG_SCHEMA_LOCK,))
            for statement in _PG_SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)

    def _now(self, now: float) -> tuple[str, list[Any]]:
        return _PG_NOW, []

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._closed:
            raise StorageError("the index database is closed")
        try:
            conn = self._psycopg.connect(
                self.url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S
            )
        except self._psycopg.Error as e:
            raise StorageError(f"cannot connect to the index database: {_pg_message(e)}") from e
        self._local.conn = conn
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[_Cursor]:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield _Cursor(cur, "%s")
        except self._psycopg.Error as e:
            raise StorageError(f"index database error: {_pg_message(e)}") from e

    def count_transfer(
        self, session_id: int, kind: Literal["download", "upload"], delta: int
    ) -> None:
        column = "downloads" if kind == "download" else "uploads"
        with self._tx() as c:
            c.execute(
                f"UPDATE users SET {column} = GREATEST(0, {column} + ?),"
                f" total_{column} = total_{column} + ? WHERE session_id = ?",
                (delta, 1 if delta > 0 else 0, session_id),
            )

    def add_files(self, user: OnlineUser, files: Sequence[SharedEntry]) -> int:
        if not files:
            return 0
        rows = [
            (
                user.session_id, user.server_id, user.nick, user.ip, user.link, f.filename,
                f.md5, f.size, f.bitrate, f.frequency, f.duration, _pg_words(f.filename),
            )
            for f in files
        ]
        # One statement for the batch: unnest the columns, skip names the
        # session shares already (and duplicates within the batch).
        columns = list(zip(*rows, strict=True))
        with self._tx() as c:
            added = c.execute(
                "INSERT INTO files (session_id, server_id, nick, ip, link, filename, md5, size,"
                " bitrate, frequency, duration, words)"
                " SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::bigint[],"
                " ?::int[], ?::text[], ?::text[], ?::bigint[], ?::int[], ?::int[], ?::int[],"
                " ?::text[]) ON CONFLICT (session_id, filename) DO NOTHING",
                [list(col) for col in columns],
            ).rowcount
            if added > 0:
                c.execute(
                    "UPDATE users SET shared = shared + ? WHERE session_id = ?",
                    (added, user.session_id),
                )
        return max(0, added)

    def search(self, query: IndexQuery, exclude_servers: Sequence[int] = ()) -> list[Hit]:
        if not query.terms or query.limit <= 0:
            return []
        # Words are runs of letters and digits, so quoting each is enough to
        # keep user text out of the tsquery syntax.
        tsquery = " & ".join(
            [f"'{t}'" for t in query.terms] + [f"!'{x}'" for x in query.excludes]
        )
        extra, values = _constraint_sql(query)
        params: list[Any] = [tsquery, *values]
        if exclude_servers:
            extra += " AND f.server_id <> ALL(?)"
            params.append(list(exclude_servers))
        params.append(query.limit)
        with self._tx() as c:
            rows = c.execute(
                "SELECT f.filename, f.md5, f.size, f.bitrate, f.frequency, f.duration, f.nick,"
                " f.ip, f.link FROM files f WHERE f.tsv @@ to_tsquery('simple', ?)"
                f"{extra} LIMIT ?",
                params,
            ).fetchall()
        return [tuple(r) for r in rows]

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except self._psycopg.Error:
                pass


def _pg_message(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ------------------------------------------------------------------ opening


def open_index_store(url: str) -> IndexStore:
    """The store a ``--database`` value names.

    ``sqlite:PATH`` (or a bare path), ``sqlite::memory:``, or a
    ``postgresql://`` / ``postgres://`` URL.  Raises
    :class:`~peerlab.errors.ConfigError` for a value that names neither, and
    :class:`~peerlab.errors.StorageError` when the database cannot be opened.
    """
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        if not parts.hostname and not parts.path.strip("/"):
            raise ConfigError(f"bad database URL {url!r}: no host or database name")
        return PostgresIndexStore(url)
    if url.startswith("sqlite:"):
        path = unquote(url[len("sqlite:"):])
        if path.startswith("//"):
            path = path[2:]
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"bad database URL {url!r}: unknown scheme {scheme!r}"
            " (use sqlite:PATH or postgresql://...)"
        )
    else:
        path = url
    if not path:
        raise ConfigError(
            "bad database URL: empty SQLite path (use sqlite:PATH or sqlite::memory:)"
        )
    return SqliteIndexStore(path)
