"""The OpenNap-compatible index server, alone or as one member of a farm.

Issue 3, section 2 and "Bad input and faults"; protocol per ``doc/napster.txt``
of OpenNap (message numbers below are that file's).  :class:`NapsterServer`
is written only against the :class:`~peerlab.runtime.base.Runtime`
interface, so it runs on real sockets and in the simulator; its state lives
in an :class:`~peerlab.storage.napster_index.IndexStore`.

What a connection goes through:

1. **Login** (2, or 6 for a new nick; 7 checks a nick first).  The password is
   checked against a salted scrypt hash on a worker thread; an unknown nick is
   registered on its first login (OpenNap's auto-registration), a registered
   one cannot be taken over without its password.  A correct login of a nick
   already online anywhere in the farm replaces that session (a ghost left by
   a dead connection); the old connection is told and closed.  Acks: 3 with
   the e-mail, the MOTD (621 lines), the server stats (214).  Failures: 0 with
   the reason, then the connection is closed.
2. **Online**: shares (100/102/110, a cap per user), searches (200 -> 201...
   202), downloads (203 -> 204; 500 -> 501 delivered to the sharer, on
   whichever server of the farm it is connected; 607/608 for clients that
   confirm uploads), browse (211 -> 212... 213), whois (603 -> 604/605), link
   speed (600), transfer notices (218-221, counted per user), private
   messages (205), ping/pong (751/752, 750), queue limits (619 -> 620), data
   port errors (626), MOTD (621), stats (214), link speed and data port
   changes (700/703).  Anything else gets the 404 error message.

Bad input costs only the connection that sent it: a payload that does not
parse gets a 404 and the connection carries on; a frame longer than the
codec's bound (the framing is lost), a flood beyond the per-connection token
bucket, or a client that does not read its results gets an error and is
disconnected.  Every queue a client can grow is bounded (see the constants).

The farm: the server heartbeats in the store every ``heartbeat_interval``;
servers silent for ``server_timeout`` are dead, their files are left out of
results at once and reaped (rows deleted) by the first live server that sees
it.  Users reconnect to another server and share again.  Messages for users on
other servers go through the store's mail table, polled every
``mail_interval``.  A server that finds its own row reaped (it was too slow to
heartbeat) drops its connections, so their users log in again, and registers
anew.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from peerlab.errors import (
    ConfigError,
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
    StorageError,
)
from peerlab.runtime.base import Listener, Runtime, Stream, Timer
from peerlab.storage.napster_index import (
    DUMMY_EMAIL,
    MAX_QUERY_TERMS,
    USER_LEVEL,
    Account,
    Constraint,
    ConstraintField,
    ConstraintOp,
    FarmStats,
    IndexQuery,
    IndexStore,
    Mail,
    NewSession,
    OnlineUser,
    Replaced,
    ScryptCost,
    SharedEntry,
    hash_password,
    new_salt,
    query_terms,
    verify_password,
)
from peerlab.wire.napster import (
    MAX_PAYLOAD_BYTES,
    MAX_SEARCH_RESULTS,
    AlternateDownloadAck,
    AlternateDownloadRequest,
    BrowseEnd,
    BrowseRequest,
    BrowseResult,
    ChangeDataPort,
    ChangeLinkSpeed,
    Compare,
    DataPortError,
    DownloadAck,
    DownloadComplete,
    Downloading,
    DownloadRequest,
    ErrorMessage,
    Frame,
    FrameDecoder,
    GetError,
    InvalidNick,
    LinkSpeed,
    LinkSpeedRequest,
    LinkType,
    Login,
    LoginAck,
    LoginError,
    Message,
    Motd,
    NewUserLogin,
    NickAlreadyRegistered,
    NickCheck,
    NickNotRegistered,
    Ping,
    Pong,
    PrivateMessage,
    QueueLimit,
    QueueLimitNotice,
    SearchEnd,
    SearchField,
    SearchQuery,
    SearchRequest,
    ServerStats,
    ServerStatsRequest,
    ShareFile,
    Unknown,
    UnshareAll,
    UnshareFile,
    UploadAccept,
    UploadComplete,
    Uploading,
    UploadRequest,
    UserSignoff,
    WhoisRequest,
    WhoisResponse,
    WhowasResponse,
    decode,
    encode,
    ip_to_napster,
    is_valid_nick,
)

T = TypeVar("T")

# ------------------------------------------------------------------ bounds

#: Longest nick the server registers.  OpenNap's default ``max_nick_length``
#: is 19; 32 leaves room for generated nicks while staying far below the
#: codec's absolute bound.
MAX_NICK_CHARS = 32
#: Frames decoded and waiting for their turn on one connection before the
#: server stops reading from it (its DB work runs one message at a time).
MAX_PENDING_FRAMES = 4096
#: Reading resumes when the queue has drained to this.
RESUME_PENDING_FRAMES = 256
#: Consecutive shares (100) written in one store transaction: a client's whole
#: share list usually arrives in a few reads; batching makes it one commit.
SHARE_BATCH = 500
#: Files one browse (211) returns at most: OpenNap's ``max_browse_result``.
MAX_BROWSE_RESULTS = 500
#: Password hashes running or queued at once for the whole server: each costs
#: ~16 MiB and ~40 ms of a core (ScryptCost), so a login storm from many
#: connections is refused early instead of exhausting memory.
MAX_PENDING_LOGINS = 64
#: Server ping (napster.txt 750): answered with an empty 750.
SERVER_PING = 750
#: Types a client never sends (server-only messages): answered like unknown ones.
_SERVER_ONLY = frozenset({3, 8, 9, 10, 201, 202, 204, 206, 209, 210, 212, 213, 501, 601,
                          604, 605, 607, 609, 620})

_HEADER = struct.Struct("<HH")

_COMPARE_OPS: dict[Compare, ConstraintOp] = {
    Compare.AT_LEAST: ">=",
    Compare.AT_BEST: "<=",
    Compare.EQUAL_TO: "=",
}
_FIELD_COLUMNS: dict[SearchField, ConstraintField] = {
    SearchField.LINESPEED: "link",
    SearchField.BITRATE: "bitrate",
    SearchField.FREQ: "frequency",
    SearchField.SIZE: "size",
    SearchField.DURATION: "duration",
}


# ------------------------------------------------------------------ config


@dataclass(frozen=True)
class NapsterServerConfig:
    """Settings of one index server (issue 3, section 2), with defaults.

    ``host``/``port``: where clients connect (8888 is OpenNap's port;
    0: any free port).  ``name`` identifies the server in the farm's
    ``servers`` table (default ``host:port``).  ``motd``: the message of the
    day, one line per 621 message.

    Limits: ``max_results`` caps a search's results (napster.txt 200: 100);
    ``max_shares`` caps the files one user shares; ``max_connections`` caps
    clients; ``login_timeout`` is how long a connection may take to log in.
    ``command_rate``/``command_burst`` are the per-connection token bucket:
    a command costs one token, a search or browse ``search_cost``; a client
    that runs the bucket dry is told and disconnected.  ``max_output_bytes``:
    a client whose unread output exceeds this is disconnected.

    ``password_cost``: the scrypt cost for new passwords.  ``auto_register``:
    a login (2) with an unknown nick registers it (OpenNap's default);
    otherwise only a new user login (6) does.  ``confirm_downloads``: OpenNap's
    flow, where 203/500 first ask the sharer with 607 and the ack follows its
    608; by default the server answers 203 with 204 and 500 with 501 at once
    (napster.txt 203/500).

    Farm: ``heartbeat_interval`` between heartbeats (and dead-server checks);
    a server silent for ``server_timeout`` is dead; ``mail_interval`` between
    polls of the mail table (shared stores only).
    """

    host: str = "127.0.0.1"
    port: int = 8888
    name: str = ""
    motd: tuple[str, ...] = ("Welcome to the peerlab Napster index server.",)
    max_results: int = MAX_SEARCH_RESULTS
    max_shares: int = 5000
    max_connections: int = 20_000
    login_timeout: float = 60.0
    command_rate: float = 500.0
    command_burst: float = 8000.0
    search_cost: float = 10.0
    max_output_bytes: int = 4 << 20
    password_cost: ScryptCost = field(default_factory=ScryptCost)
    auto_register: bool = True
    confirm_downloads: bool = False
    heartbeat_interval: float = 1.0
    server_timeout: float = 5.0
    mail_interval: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not between 0 and 65535")
        if not 1 <= self.max_results <= MAX_SEARCH_RESULTS:
            raise ConfigError(f"max results must be between 1 and {MAX_SEARCH_RESULTS}")
        for name in ("max_shares", "max_connections", "max_output_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1")
        for name in ("login_timeout", "command_rate", "heartbeat_interval", "mail_interval"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be positive")
        if self.search_cost < 1 or self.command_burst < self.search_cost:
            raise ConfigError("command burst must cover at least one search")
        if self.server_timeout < 2 * self.heartbeat_interval:
            raise ConfigError("server timeout must be at least two heartbeat intervals")
        for line in self.motd:
            if len(line.encode("latin-1", "replace")) > MAX_PAYLOAD_BYTES or any(
                ord(c) < 32 and c != "\t" for c in line
            ):
                raise ConfigError("a MOTD line is too long or holds control characters")

    @property
    def server_name(self) -> str:
        return self.name or f"{self.host}:{self.port}"


# ------------------------------------------------------------------ helpers


def _frame(msg: Message) -> bytes:
    return encode(msg)


def _ip_of(stream: Stream) -> int:
    try:
        return ip_to_napster(stream.remote_address[0])
    except (ValueError, IndexError):
        return 0  # not IPv4: Napster has no way to say it


def _index_query(query: SearchQuery, limit_cap: int, server_id: int) -> IndexQuery:
    """napster.txt 200 as the index runs it."""
    asked = query.max_results if query.max_results else limit_cap
    return IndexQuery(
        terms=query_terms(query.contains),
        limit=max(0, min(asked, limit_cap)),
        constraints=tuple(
            Constraint(_FIELD_COLUMNS[c.field], _COMPARE_OPS[c.compare], c.value)
            for c in query.constraints
        ),
        excludes=query_terms(query.excludes)[:MAX_QUERY_TERMS],
        server_id=server_id if query.local_only else None,
    )


def _result_frames(hits: Sequence[tuple[str, str, int, int, int, int, str, int, int]]) -> bytes:
    """201 frames for ``hits`` (napster.txt 201), built directly: the hot path
    of every search.  Every value was checked by the codec when it was
    shared, so formatting cannot produce a bad frame."""
    out = bytearray()
    pack = _HEADER.pack
    for fn, md5, size, bitrate, freq, duration, nick, ip, link in hits:
        payload = (
            f'"{fn}" {md5} {size} {bitrate} {freq} {duration} {nick} {ip} {link}'
        ).encode("latin-1")
        out += pack(len(payload), 201)
        out += payload
    return bytes(out)


_SEARCH_END = encode(SearchEnd())


# ------------------------------------------------------------------ connection

_NEW, _LOGGING_IN, _ONLINE, _CLOSED = "new", "logging-in", "online", "closed"


class _Connection:
    """One client: frames in, one message handled at a time, replies out."""

    def __init__(self, server: NapsterServer) -> None:
        self.server = server
        self.runtime = server.runtime
        self.config = server.config
        self.stream: Stream | None = None
        self.decoder = FrameDecoder()
        self.pending: deque[Frame] = deque()
        self.state = _NEW
        self.busy = False
        self.write_paused = False
        self.read_paused = False
        self.tokens = server.config.command_burst
        self.refilled = server.runtime.now()
        self.user: OnlineUser | None = None
        self.ip = 0
        self.shared = 0
        self.shared_bytes = 0
        self.login_timer: Timer | None = None
        self.closing = False
        self.eof = False

    # -- StreamHandler

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self.ip = _ip_of(stream)
        srv = self.server
        srv.connections[self] = None
        if len(srv.connections) > self.config.max_connections:
            srv.observer.count("napster.server.refused_full")
            self._fatal("server is full, try again later", login=True)
            return
        self.login_timer = self.runtime.call_later(self.config.login_timeout, self._login_expired)

    def connection_failed(self, exc: NetworkError) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            frames = self.decoder.feed(data)
        except RemoteProtocolError as e:
            self.server.observer.count("napster.server.bad_frame")
            self._fatal(f"{e}; closing the connection")
            return
        if not frames:
            return
        now = self.runtime.now()
        cfg = self.config
        self.tokens = min(cfg.command_burst, self.tokens + (now - self.refilled) * cfg.command_rate)
        self.refilled = now
        cost = cfg.search_cost
        for f in frames:
            self.tokens -= cost if f.type == 200 or f.type == 211 else 1.0
            if self.tokens < 0:
                self.server.observer.count("napster.server.flood")
                self.server.observer.event("napster.server.flood", peer=self._who())
                self._fatal("flooding: too many commands, disconnecting")
                return
            self.pending.append(f)
        if len(self.pending) > MAX_PENDING_FRAMES and not self.read_paused and self.stream:
            self.read_paused = True
            self.stream.pause_reading()
        self._pump()

    def eof_received(self) -> None:
        # Half-closed: answer what was asked, then close.
        self.eof = True
        self._pump()

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.closing = True
        self.pending.clear()
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        self.server.connections.pop(self, None)
        if self.state == _ONLINE:
            self.server._session_ended(self)
        self.state = _CLOSED

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._pump()

    # -- output

    def send(self, msg: Message) -> None:
        self.write(_frame(msg))

    def write(self, data: bytes) -> None:
        stream = self.stream
        if stream is None or self.closing:
            return
        stream.write(data)
        if stream.get_write_buffer_size() > self.config.max_output_bytes:
            # A client that does not read what it asked for: cut it off
            # rather than buffer without end.
            self.server.observer.count("napster.server.slow_reader")
            self.closing = True
            stream.abort()

    def error(self, text: str) -> None:
        """napster.txt 404 (or 0 while logging in, which is the only time it is sent)."""
        if self.state == _ONLINE:
            self.send(ErrorMessage(text))
        else:
            self.send(LoginError(text))

    def _fatal(self, text: str, *, login: bool = False) -> None:
        """Tell the client why, then close (after what was queued is sent)."""
        if self.closing:
            return
        if login or self.state != _ONLINE:
            self.send(LoginError(text))
        else:
            self.send(ErrorMessage(text))
        self.close()

    def close(self) -> None:
        self.closing = True
        self.pending.clear()
        if self.stream is not None:
            self.stream.close()

    def _who(self) -> str:
        if self.user is not None:
            return self.user.nick
        if self.stream is not None:
            host, port = self.stream.remote_address
            return f"{host}:{port}"
        return "?"

    # -- the message loop

    def _pump(self) -> None:
        while self.pending and not self.busy and not self.write_paused and not self.closing:
            frame = self.pending.popleft()
            try:
                if frame.type == ShareFile.TYPE and self.state == _ONLINE:
                    self._share_batch(frame)
                else:
                    self._dispatch(frame)
            except RemoteProtocolError as e:
                self.server.observer.count("napster.server.bad_message")
                self.error(str(e))
                if frame.type == SearchRequest.TYPE:
                    self.write(_SEARCH_END)
            except StorageError as e:
                self._storage_failed(e)
            except PeerlabError as e:
                # a value we could not encode: a bug on our side, not the client's
                self.server.observer.event("napster.server.error", error=str(e))
                self.error("internal server error")
        if self.read_paused and len(self.pending) <= RESUME_PENDING_FRAMES and not self.closing:
            self.read_paused = False
            if self.stream is not None:
                self.stream.resume_reading()
        if self.eof and not self.pending and not self.busy and not self.closing:
            self.close()

    def _storage_failed(self, exc: BaseException) -> None:
        self.server.observer.event("napster.server.storage_error", error=str(exc))
        self.server.observer.count("napster.server.storage_error")
        if self.state == _ONLINE:
            self.error("server database unavailable, try again later")
        else:
            self._fatal("server database unavailable, try again later")

    def db(self, fn: Callable[[], T], then: Callable[[T], None]) -> None:
        """Run a store call, then ``then(result)``; the connection handles no
        other message meanwhile.  Inline for a fast store, else on a worker."""
        if self.server.store.inline:
            then(fn())
            return
        self._offload(fn, then)

    def slow(
        self, fn: Callable[[], T], then: Callable[[T], None], *, finally_: Callable[[], None]
    ) -> None:
        """Run CPU-heavy work (a password hash) on a worker, always;
        ``finally_`` runs first when it ends, whether it worked or not."""
        self._offload(fn, then, finally_)

    def _offload(
        self, fn: Callable[[], T], then: Callable[[T], None],
        finally_: Callable[[], None] | None = None,
    ) -> None:
        self.busy = True

        def done(result: T | None, exc: BaseException | None) -> None:
            self.busy = False
            if finally_ is not None:
                finally_()
            try:
                if exc is not None:
                    if isinstance(exc, PeerlabError):
                        self._storage_failed(exc)
                    else:
                        self.server.observer.event("napster.server.error", error=repr(exc))
                        self._fatal("internal server error")
                else:
                    then(result)  # type: ignore[arg-type]
            except StorageError as e:
                self._storage_failed(e)
            except PeerlabError as e:
                self.server.observer.event("napster.server.error", error=str(e))
                self.error("internal server error")
            self._pump()

        self.runtime.offload(fn, done)

    # -- dispatch

    def _dispatch(self, frame: Frame) -> None:
        mtype = frame.type
        if mtype == SERVER_PING:
            # an empty 750 is a ping; one with a nick answers ours (we send none)
            if not frame.payload:
                self.write(_HEADER.pack(0, SERVER_PING))
            return
        online = self.state == _ONLINE
        msg = None if online and mtype in _SERVER_ONLY else decode(mtype, frame.payload)
        if not online:
            assert msg is not None
            self._before_login(msg)
            return
        handler = None if msg is None else _HANDLERS.get(type(msg))
        if handler is None or msg is None:
            self.server.observer.count("napster.server.unknown_type")
            self.error(f"unknown command code {mtype}")
            return
        handler(self, msg)

    # -- login (napster.txt 2, 6, 7)

    def _before_login(self, msg: Message) -> None:
        if isinstance(msg, NickCheck):
            nick = msg.nick
            if not self._nick_ok(nick):
                self.send(InvalidNick())
                return
            self.db(
                lambda: self.server.store.get_account(nick),
                lambda acct: self.send(NickNotRegistered() if acct is None
                                       else NickAlreadyRegistered()),
            )
            return
        if isinstance(msg, Login | NewUserLogin):
            self._login(msg)
            return
        if isinstance(msg, Unknown) and msg.type == 4:
            return  # version check (napster.txt 4): nothing to upgrade to
        self._fatal("you must log in first")

    @staticmethod
    def _nick_ok(nick: str) -> bool:
        return len(nick) <= MAX_NICK_CHARS and is_valid_nick(nick)

    def _login(self, msg: Login | NewUserLogin) -> None:
        if self.state != _NEW:
            self._fatal("already logging in")
            return
        if not self._nick_ok(msg.nick):
            self.server.observer.count("napster.server.login_failed")
            self._fatal(f"invalid nickname {msg.nick!r}")
            return
        srv = self.server
        if srv.pending_logins >= MAX_PENDING_LOGINS:
            srv.observer.count("napster.server.login_busy")
            self._fatal("server busy, try again later")
            return
        self.state = _LOGGING_IN
        store = srv.store
        self.db(lambda: store.get_account(msg.nick), lambda acct: self._login_account(msg, acct))

    def _login_account(self, msg: Login | NewUserLogin, acct: Account | None) -> None:
        srv = self.server
        if acct is not None:
            if isinstance(msg, NewUserLogin):
                self._login_failed(f"nickname {msg.nick} is already registered")
                return
            stored = acct.password_hash
            srv.pending_logins += 1

            def checked(ok: bool) -> None:
                if not ok:
                    self._login_failed("Invalid Password")
                    return
                self._open_session(msg, acct.nick, acct.email)

            self.slow(lambda: verify_password(msg.password, stored), checked,
                      finally_=srv._login_done)
            return
        if isinstance(msg, Login) and not srv.config.auto_register:
            self._login_failed(f"nickname {msg.nick} is not registered")
            return
        salt = new_salt(self.runtime.rng)
        cost = srv.config.password_cost
        srv.pending_logins += 1
        email = msg.email if isinstance(msg, NewUserLogin) else DUMMY_EMAIL
        now = self.runtime.wall_time()

        def hashed(stored: str) -> None:
            account = Account(msg.nick, stored, email, USER_LEVEL, now, now)
            self.db(lambda: srv.store.create_account(account), created)

        def created(ok: bool) -> None:
            if not ok:
                # registered by someone else in the meantime: never take it over
                self._login_failed(f"nickname {msg.nick} is already registered")
                return
            srv.observer.count("napster.server.registered")
            self._open_session(msg, msg.nick, email)

        self.slow(lambda: hash_password(msg.password, salt, cost), hashed,
                  finally_=srv._login_done)

    def _login_failed(self, reason: str) -> None:
        self.server.observer.count("napster.server.login_failed")
        self.server.observer.event("napster.server.login_failed", peer=self._who(), reason=reason)
        self.state = _NEW
        self._fatal(reason, login=True)

    def _open_session(self, msg: Login | NewUserLogin, nick: str, email: str) -> None:
        srv = self.server
        if self.closing:
            self.state = _NEW
            return
        session = NewSession(
            nick=nick,
            session_id=srv._next_session_id(),
            server_id=srv.server_id,
            ip=self.ip,
            data_port=msg.port,
            link=int(msg.link_type),
            client_info=msg.client_info,
            login_time=self.runtime.wall_time(),
        )

        def opened(replaced: Replaced | None) -> None:
            user = OnlineUser(
                session.nick, session.session_id, session.server_id, session.ip,
                session.data_port, session.link, session.client_info, session.login_time,
                0, 0, 0, 0, 0,
            )
            if self.closing:
                # the client went away while we were logging it in
                srv._background(lambda: srv.store.close_session(session.session_id))
                return
            self.user = user
            self.state = _ONLINE
            if self.login_timer is not None:
                self.login_timer.cancel()
                self.login_timer = None
            srv._session_started(self, replaced)
            self.send(LoginAck(email))
            for line in srv.config.motd:
                self.send(Motd(line))
            self.send(srv._stats_message())

        self.db(lambda: srv.store.open_session(session), opened)

    def _login_expired(self) -> None:
        self.login_timer = None
        if self.state != _ONLINE and not self.closing:
            self.server.observer.count("napster.server.login_timeout")
            self._fatal("login timed out")

    # -- shares (napster.txt 100, 102, 110)

    def _share_batch(self, first: Frame) -> None:
        entries: list[SharedEntry] = []
        errors: list[str] = []
        frame: Frame | None = first
        while frame is not None:
            try:
                m = decode(frame.type, frame.payload)
                assert isinstance(m, ShareFile)
                entries.append(
                    SharedEntry(m.filename, m.md5, m.size, m.bitrate, m.frequency, m.duration)
                )
            except RemoteProtocolError as e:
                errors.append(str(e))
            if len(entries) >= SHARE_BATCH or not self.pending:
                break
            frame = self.pending[0] if self.pending[0].type == ShareFile.TYPE else None
            if frame is not None:
                self.pending.popleft()
        for text in errors:
            self.error(text)
        room = self.config.max_shares - self.shared
        if len(entries) > room:
            self.error(f"share limit reached: at most {self.config.max_shares} files per user")
            self.server.observer.count("napster.server.share_limit")
            entries = entries[: max(0, room)]
        if not entries:
            return
        user = self.user
        assert user is not None
        store = self.server.store
        size = sum(e.size for e in entries)

        def added(n: int) -> None:
            if n == len(entries):
                self.shared += n
                self.shared_bytes += size
                self.server.observer.count("napster.server.shares", n)
                return
            # some names were shared already: count exactly
            self.db(lambda: store.session_totals(user.session_id), self._set_totals)

        self.db(lambda: store.add_files(user, entries), added)

    def _set_totals(self, totals: tuple[int, int]) -> None:
        self.shared, self.shared_bytes = totals

    def on_unshare(self, msg: UnshareFile) -> None:
        user = self.user
        assert user is not None

        def removed(size: int | None) -> None:
            if size is None:
                self.error(f'you are not sharing "{msg.filename}"')
                return
            self.shared -= 1
            self.shared_bytes -= size

        self.db(lambda: self.server.store.remove_file(user.session_id, msg.filename), removed)

    def on_unshare_all(self, msg: UnshareAll) -> None:
        user = self.user
        assert user is not None

        def removed(n: int) -> None:
            self.shared = 0
            self.shared_bytes = 0

        self.db(lambda: self.server.store.remove_all_files(user.session_id), removed)

    # -- search (napster.txt 200-202)

    def on_search(self, msg: SearchRequest) -> None:
        srv = self.server
        query = _index_query(msg.query, self.config.max_results, srv.server_id)
        srv.observer.count("napster.server.searches")
        if not query.terms:
            self.error("search failed: request contained no words to look for")
            self.write(_SEARCH_END)
            return
        exclude = srv.dead_list
        store = srv.store

        def found(hits: list[tuple[str, str, int, int, int, int, str, int, int]]) -> None:
            self.write(_result_frames(hits) + _SEARCH_END)

        self.db(lambda: store.search(query, exclude), found)

    # -- downloads (napster.txt 203/204, 500/501, 607/608, 206)

    def _find_file(
        self, nick: str, filename: str, then: Callable[[OnlineUser, SharedEntry], None]
    ) -> None:
        srv = self.server

        def found(hit: tuple[OnlineUser, SharedEntry] | None) -> None:
            if hit is None or hit[0].server_id in srv.dead_servers:
                self.send(GetError(nick, filename))
                return
            then(*hit)

        self.db(lambda: srv.store.find_file(nick, filename), found)

    def on_download(self, msg: DownloadRequest) -> None:
        me = self.user
        assert me is not None

        def ack(sharer: OnlineUser, f: SharedEntry) -> None:
            if self.config.confirm_downloads:
                self.server.deliver(sharer, UploadRequest(me.nick, f.filename, LinkType(me.link)),
                                    via=self)
                return
            # port 0 tells the client to ask for a push with 500 (napster.txt 5.1)
            self.send(DownloadAck(sharer.nick, sharer.ip, sharer.data_port, f.filename, f.md5,
                                  LinkType(sharer.link)))

        self._find_file(msg.nick, msg.filename, ack)

    def on_alternate_download(self, msg: AlternateDownloadRequest) -> None:
        me = self.user
        assert me is not None

        def push(sharer: OnlineUser, f: SharedEntry) -> None:
            if sharer.data_port == 0 and me.data_port == 0:
                self.error(f"cannot transfer: both you and {sharer.nick} are firewalled")
                return
            if self.config.confirm_downloads:
                self.server.deliver(sharer, UploadRequest(me.nick, f.filename, LinkType(me.link)),
                                    via=self)
                return
            self.server.observer.count("napster.server.pushes")
            self.server.deliver(
                sharer,
                AlternateDownloadAck(me.nick, me.ip, me.data_port, f.filename, f.md5,
                                     LinkType(me.link)),
                via=self,
            )

        self._find_file(msg.nick, msg.filename, push)

    def on_upload_accept(self, msg: UploadAccept) -> None:
        """608 from the sharer: the download may go ahead (OpenNap's flow)."""
        me = self.user
        assert me is not None
        srv = self.server

        def got(found: tuple[OnlineUser | None, tuple[OnlineUser, SharedEntry] | None]) -> None:
            recipient, mine = found
            if recipient is None or recipient.server_id in srv.dead_servers:
                self.error(f"user {msg.nick} is not currently online")
                return
            if mine is None:
                self.error(f'you are not sharing "{msg.filename}"')
                return
            f = mine[1]
            if me.data_port == 0:
                self.send(AlternateDownloadAck(recipient.nick, recipient.ip, recipient.data_port,
                                               f.filename, f.md5, LinkType(recipient.link)))
            else:
                srv.deliver(recipient, DownloadAck(me.nick, me.ip, me.data_port, f.filename,
                                                   f.md5, LinkType(me.link)), via=self)

        self.db(
            lambda: (srv.store.find_user(msg.nick), srv.store.find_file(me.nick, msg.filename)),
            got,
        )

    def on_queue_limit(self, msg: QueueLimit) -> None:
        """619 from the sharer -> 620 to the downloader (napster.txt 619/620)."""
        me = self.user
        assert me is not None
        srv = self.server

        def got(found: tuple[OnlineUser | None, tuple[OnlineUser, SharedEntry] | None]) -> None:
            recipient, mine = found
            if recipient is None or recipient.server_id in srv.dead_servers:
                self.error(f"user {msg.nick} is not currently online")
                return
            size = mine[1].size if mine is not None else 0
            srv.deliver(recipient, QueueLimitNotice(me.nick, msg.filename, size, msg.limit),
                        via=self)

        self.db(
            lambda: (srv.store.find_user(msg.nick), srv.store.find_file(me.nick, msg.filename)),
            got,
        )

    def on_transfer(self, msg: Downloading | DownloadComplete | Uploading | UploadComplete) -> None:
        user = self.user
        assert user is not None
        kind: Literal["download", "upload"] = (
            "download" if isinstance(msg, Downloading | DownloadComplete) else "upload"
        )
        delta = 1 if isinstance(msg, Downloading | Uploading) else -1
        self.server.observer.count(f"napster.server.{kind}_{'start' if delta > 0 else 'end'}")
        self.db(lambda: self.server.store.count_transfer(user.session_id, kind, delta),
                lambda _: None)

    # -- users (napster.txt 211-213, 600/601, 603-605, 205, 626, 751/752)

    def _online(self, nick: str, then: Callable[[OnlineUser | None], None]) -> None:
        srv = self.server

        def found(user: OnlineUser | None) -> None:
            if user is not None and user.server_id in srv.dead_servers:
                user = None
            then(user)

        self.db(lambda: srv.store.find_user(nick), found)

    def on_browse(self, msg: BrowseRequest) -> None:
        srv = self.server

        def listed(found: tuple[OnlineUser | None, list[Any]]) -> None:
            user, files = found
            if user is None or user.server_id in srv.dead_servers:
                # napster.txt 210: also the answer to browsing a user not online
                self.send(UserSignoff(msg.nick))
                self.send(BrowseEnd(msg.nick))
                return
            out = bytearray()
            for fn, md5, size, bitrate, freq, duration in files:
                out += _frame(BrowseResult(user.nick, fn, md5, size, bitrate, freq, duration))
            out += _frame(BrowseEnd(user.nick, user.ip))
            self.write(bytes(out))

        self.db(
            lambda: (srv.store.find_user(msg.nick),
                     srv.store.browse(msg.nick, MAX_BROWSE_RESULTS)),
            listed,
        )

    def on_whois(self, msg: WhoisRequest) -> None:
        srv = self.server

        def found(got: tuple[OnlineUser | None, Account | None]) -> None:
            user, acct = got
            if user is not None and user.server_id not in srv.dead_servers:
                online = max(0, int(self.runtime.wall_time() - user.login_time))
                self.send(WhoisResponse(
                    user.nick, acct.level if acct else USER_LEVEL, online, "", "Active",
                    user.shared, user.downloads, user.uploads, LinkType(user.link),
                    user.client_info,
                ))
            elif acct is not None:
                self.send(WhowasResponse(acct.nick, acct.level, max(0, int(acct.last_seen))))
            else:
                self.error(f"user {msg.nick} is not a known user")

        self.db(lambda: (srv.store.find_user(msg.nick), srv.store.get_account(msg.nick)), found)

    def on_link_speed(self, msg: LinkSpeedRequest) -> None:
        def found(user: OnlineUser | None) -> None:
            if user is None:
                self.error(f"user {msg.nick} is not currently online")
            else:
                self.send(LinkSpeed(user.nick, LinkType(user.link)))

        self._online(msg.nick, found)

    def _relay(self, nick: str, make: Callable[[str], Message], offline: str) -> None:
        me = self.user
        assert me is not None

        def found(user: OnlineUser | None) -> None:
            if user is None:
                self.error(offline)
            else:
                self.server.deliver(user, make(me.nick), via=self)

        self._online(nick, found)

    def on_private(self, msg: PrivateMessage) -> None:
        self._relay(msg.nick, lambda me: PrivateMessage(me, msg.text),
                    f"user {msg.nick} is not currently online")

    def on_ping(self, msg: Ping) -> None:
        self._relay(msg.nick, Ping, f"ping failed, {msg.nick} is not online")

    def on_pong(self, msg: Pong) -> None:
        self._relay(msg.nick, Pong, f"pong failed, {msg.nick} is not online")

    def on_data_port_error(self, msg: DataPortError) -> None:
        self._relay(msg.nick, DataPortError, f"user {msg.nick} is not currently online")

    # -- this user (napster.txt 621, 214, 700, 703; 2/6 again)

    def on_motd(self, msg: Motd) -> None:
        for line in self.config.motd:
            self.send(Motd(line))

    def on_stats(self, msg: ServerStatsRequest | ServerStats) -> None:
        self.send(self.server._stats_message())

    def on_change_link(self, msg: ChangeLinkSpeed) -> None:
        user = self.user
        assert user is not None
        link = int(msg.link_type)

        def changed(_: None) -> None:
            self.user = replace(user, link=link)

        self.db(lambda: self.server.store.update_user(user.session_id, link=link), changed)

    def on_change_port(self, msg: ChangeDataPort) -> None:
        user = self.user
        assert user is not None

        def changed(_: None) -> None:
            self.user = replace(user, data_port=msg.port)

        self.db(lambda: self.server.store.update_user(user.session_id, data_port=msg.port),
                changed)

    def on_login_again(self, msg: Message) -> None:
        self.error("you are already logged in")

    def on_nick_check(self, msg: NickCheck) -> None:
        self._before_login(msg)


_HANDLERS: dict[type[Message], Callable[[_Connection, Any], None]] = {
    UnshareFile: _Connection.on_unshare,
    UnshareAll: _Connection.on_unshare_all,
    SearchRequest: _Connection.on_search,
    DownloadRequest: _Connection.on_download,
    AlternateDownloadRequest: _Connection.on_alternate_download,
    UploadAccept: _Connection.on_upload_accept,
    QueueLimit: _Connection.on_queue_limit,
    Downloading: _Connection.on_transfer,
    DownloadComplete: _Connection.on_transfer,
    Uploading: _Connection.on_transfer,
    UploadComplete: _Connection.on_transfer,
    BrowseRequest: _Connection.on_browse,
    WhoisRequest: _Connection.on_whois,
    LinkSpeedRequest: _Connection.on_link_speed,
    PrivateMessage: _Connection.on_private,
    Ping: _Connection.on_ping,
    Pong: _Connection.on_pong,
    DataPortError: _Connection.on_data_port_error,
    Motd: _Connection.on_motd,
    ServerStatsRequest: _Connection.on_stats,
    ServerStats: _Connection.on_stats,
    ChangeLinkSpeed: _Connection.on_change_link,
    ChangeDataPort: _Connection.on_change_port,
    Login: _Connection.on_login_again,
    NewUserLogin: _Connection.on_login_again,
    NickCheck: _Connection.on_nick_check,
}


# ------------------------------------------------------------------ server


class NapsterServer:
    """An OpenNap-compatible index server (see the module docstring).

    ``start()`` registers the server in the store and listens; ``close()``
    stops listening, disconnects every client and removes this server's rows.
    """

    def __init__(self, runtime: Runtime, store: IndexStore, config: NapsterServerConfig) -> None:
        self.runtime = runtime
        self.store = store
        self.config = config
        self.observer = runtime.observer
        #: Open connections, oldest first: a dict, not a set, so closing them
        #: all goes in the order they came (a set's order follows object
        #: addresses, which differ from run to run and broke the simulator's
        #: same-seed-same-trace promise).
        self.connections: dict[_Connection, None] = {}
        self.sessions: dict[int, _Connection] = {}
        self.server_id = 0
        self.dead_servers: set[int] = set()
        self.dead_list: tuple[int, ...] = ()
        self.pending_logins = 0
        self.farm = FarmStats(0, 0, 0)
        self._session_seq = 0
        self._listener: Listener | None = None
        self._tick_timer: Timer | None = None
        self._mail_timer: Timer | None = None
        self._tick_running = False
        self._mail_running = False
        self._closed = False

    # -- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect (the real port when 0 was asked for)."""
        if self._listener is None:
            return (self.config.host, self.config.port)
        return self._listener.address

    def start(self) -> None:
        """Register in the store and listen.  Raises
        :class:`~peerlab.errors.AddressInUse`/:class:`~peerlab.errors.NetworkError`
        or :class:`~peerlab.errors.StorageError` (nothing is left behind)."""
        cfg = self.config
        now = self.runtime.wall_time()
        self.server_id = self.store.register_server(cfg.server_name, now)
        try:
            self._listener = self.runtime.listen((cfg.host, cfg.port), lambda: _Connection(self))
        except PeerlabError:
            self.store.unregister_server(self.server_id)
            raise
        if not self.store.shared:
            # One server per database: rows of an earlier run are stale now.
            for sid in self.store.stale_servers(now, 0.0):
                if sid != self.server_id:
                    self.store.reap_server(sid, now, 0.0)
        self.observer.event(
            "napster.server.started", server_id=self.server_id, address=self.address
        )
        self._tick_timer = self.runtime.call_later(cfg.heartbeat_interval, self._tick)
        if self.store.shared:
            self._mail_timer = self.runtime.call_later(cfg.mail_interval, self._poll_mail)

    def close(self) -> None:
        """Stop: no new clients, every client disconnected, rows removed."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._tick_timer, self._mail_timer):
            if timer is not None:
                timer.cancel()
        if self._listener is not None:
            self._listener.close()
        for conn in list(self.connections):
            conn.close()
        self.sessions.clear()
        if self.server_id:
            try:
                self.store.unregister_server(self.server_id)
            except StorageError as e:
                self.observer.event("napster.server.storage_error", error=str(e))

    # -- sessions

    def _login_done(self) -> None:
        """A password hash finished (either way): one login slot is free."""
        self.pending_logins -= 1

    def _next_session_id(self) -> int:
        # Unique in the farm: the server's id (never reused) above a counter.
        self._session_seq += 1
        return (self.server_id << 32) | (self._session_seq & 0xFFFF_FFFF)

    def _session_started(self, conn: _Connection, replaced: Replaced | None) -> None:
        user = conn.user
        assert user is not None
        self.sessions[user.session_id] = conn
        self.observer.count("napster.server.logins")
        if replaced is not None:
            self.observer.count("napster.server.ghosts")
            text = "you logged in from another location: this session is closed"
            if replaced.server_id == self.server_id:
                ghost = self.sessions.pop(replaced.session_id, None)
                if ghost is not None and ghost is not conn:
                    ghost.state = _CLOSED  # its rows are gone already
                    ghost.send(ErrorMessage(text))
                    ghost.close()
            elif replaced.server_id not in self.dead_servers:
                sid, sess = replaced.server_id, replaced.session_id
                self._background(lambda: self.store.post(sid, sess, ErrorMessage.TYPE, text,
                                                         close=True))
        nick, now = user.nick, self.runtime.wall_time()
        self._background(lambda: self.store.touch_account(nick, now))

    def _session_ended(self, conn: _Connection) -> None:
        user = conn.user
        if user is None:
            return
        if self.sessions.get(user.session_id) is conn:
            del self.sessions[user.session_id]
        self.observer.count("napster.server.logouts")
        if self._closed:
            return
        sid, nick, now = user.session_id, user.nick, self.runtime.wall_time()

        def end() -> None:
            self.store.close_session(sid)
            self.store.touch_account(nick, now)

        self._background(end)

    def _background(self, fn: Callable[[], Any]) -> None:
        """A store call nobody waits for (errors are only reported)."""

        def done(_: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self.observer.event("napster.server.storage_error", error=str(exc))

        if self.store.inline:
            try:
                fn()
            except StorageError as e:
                done(None, e)
            return
        self.runtime.offload(fn, done)

    def deliver(self, user: OnlineUser, msg: Message, *, via: _Connection | None = None) -> None:
        """Send ``msg`` to ``user``, here or on another server of the farm."""
        if user.server_id == self.server_id:
            conn = self.sessions.get(user.session_id)
            if conn is not None:
                conn.send(msg)
            return
        if user.server_id in self.dead_servers:
            return
        payload = encode(msg)[4:].decode("latin-1")
        sid, sess, mtype = user.server_id, user.session_id, msg.TYPE
        self.observer.count("napster.server.mail_sent")
        if via is not None:
            via.db(lambda: self.store.post(sid, sess, mtype, payload), lambda _: None)
        else:
            self._background(lambda: self.store.post(sid, sess, mtype, payload))

    # -- stats (napster.txt 214)

    def local_totals(self) -> tuple[int, int, int]:
        """(users, files, bytes) of this server's sessions."""
        files = size = 0
        for conn in self.sessions.values():
            files += conn.shared
            size += conn.shared_bytes
        return len(self.sessions), files, size

    def _stats_message(self) -> ServerStats:
        if self.store.shared:
            stats = self.farm
            users, files, size = stats.users, stats.files, stats.bytes
        else:
            users, files, size = self.local_totals()
        return ServerStats(min(users, 2**32 - 1), min(files, 2**32 - 1),
                           min(size >> 30, 2**32 - 1))

    # -- the farm: heartbeat, reaping, mail

    def _tick(self) -> None:
        self._tick_timer = None
        if self._closed:
            return
        self._tick_timer = self.runtime.call_later(self.config.heartbeat_interval, self._tick)
        if self._tick_running:
            return  # the last round is still at the database
        self._tick_running = True
        store, cfg = self.store, self.config
        server_id = self.server_id
        users, files, size = self.local_totals()
        now = self.runtime.wall_time()

        def work() -> tuple[bool, list[int], FarmStats]:
            alive = store.heartbeat(server_id, now, users, files, size)
            stale = [s for s in store.stale_servers(now, cfg.server_timeout) if s != server_id]
            stats = store.farm_stats(now, cfg.server_timeout) if store.shared else self.farm
            return alive, stale, stats

        def done(result: tuple[bool, list[int], FarmStats] | None,
                 exc: BaseException | None) -> None:
            self._tick_running = False
            if self._closed:
                return
            if exc is not None or result is None:
                self.observer.event("napster.server.storage_error", error=str(exc))
                return
            alive, stale, stats = result
            self.farm = stats
            if not alive:
                self._rejoin()
                return
            self.dead_servers.update(stale)
            self.dead_list = tuple(sorted(self.dead_servers))
            for sid in stale:
                self._reap(sid, now)

        self._call(work, done)

    def _reap(self, sid: int, now: float) -> None:
        timeout = self.config.server_timeout

        def done(n: int | None, exc: BaseException | None) -> None:
            if exc is not None:
                self.observer.event("napster.server.storage_error", error=str(exc))
                return
            # reaped by us or by another server: either way its rows are gone
            self.dead_servers.discard(sid)
            self.dead_list = tuple(sorted(self.dead_servers))
            if n:
                self.observer.event("napster.server.reaped", server_id=sid, files=n)
                self.observer.count("napster.server.reaped_files", n)

        self._call(lambda: self.store.reap_server(sid, now, timeout), done)

    def _rejoin(self) -> None:
        """Our row was reaped (we were too slow): our users' rows are gone, so
        drop them (they log in again, here or elsewhere) and register anew."""
        self.observer.event("napster.server.rejoin", old_id=self.server_id)
        self.observer.count("napster.server.rejoins")
        for conn in list(self.connections):
            conn._fatal("server lost its place in the farm, please reconnect")
        self.sessions.clear()
        name, now = self.config.server_name, self.runtime.wall_time()

        def done(sid: int | None, exc: BaseException | None) -> None:
            if exc is not None or sid is None:
                self.observer.event("napster.server.storage_error", error=str(exc))
                return
            self.server_id = sid

        self._call(lambda: self.store.register_server(name, now), done)

    def _poll_mail(self) -> None:
        self._mail_timer = None
        if self._closed:
            return
        self._mail_timer = self.runtime.call_later(self.config.mail_interval, self._poll_mail)
        if self._mail_running:
            return
        self._mail_running = True
        server_id = self.server_id

        def done(mail: list[Mail] | None, exc: BaseException | None) -> None:
            self._mail_running = False
            if exc is not None or mail is None:
                self.observer.event("napster.server.storage_error", error=str(exc))
                return
            for m in mail:
                conn = self.sessions.get(m.session_id)
                if conn is None:
                    continue
                self.observer.count("napster.server.mail_delivered")
                payload = m.payload.encode("latin-1", "replace")
                if len(payload) <= MAX_PAYLOAD_BYTES and 0 <= m.msg_type <= 0xFFFF:
                    conn.write(_HEADER.pack(len(payload), m.msg_type) + payload)
                if m.close:
                    self.sessions.pop(m.session_id, None)
                    conn.state = _CLOSED  # replaced: its rows belong to the new session
                    conn.close()

        self._call(lambda: self.store.take_mail(server_id), done)

    def _call(
        self, fn: Callable[[], T], done: Callable[[T | None, BaseException | None], None]
    ) -> None:
        if self.store.inline:
            try:
                result = fn()
            except StorageError as e:
                done(None, e)
                return
            done(result, None)
            return
        self.runtime.offload(fn, done)


__all__ = [
    "MAX_BROWSE_RESULTS",
    "MAX_NICK_CHARS",
    "MAX_PENDING_FRAMES",
    "MAX_PENDING_LOGINS",
    "NapsterServer",
    "NapsterServerConfig",
]
