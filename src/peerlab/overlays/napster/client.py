"""A Napster client: one session with an index server, fail-over across a list.

napster.txt (OpenNap's "napster messages"), section 2 for the session and
section 3 for the messages.  :class:`NapsterClient` keeps one logged-in
session with the first server of its list that answers:

* **Login** (messages 7, 8/9/10, then 6 or 2; 3 or 0): the nick is checked
  first; a nick the server does not know is registered with a new-user login
  (6) carrying the password, a registered one logs in with 2.  A server that
  ignores the nick check gets a plain login after :attr:`ClientConfig.nick_check_timeout`.
  A refusal (0) is reported with the server's own words.
* **Sharing** (100, 102): the whole share list right after every login, and
  differences (unshare, share) when :meth:`NapsterClient.reshare` is called
  after a rescan.
* **Searching** (200, 201, 202): results carry no search id, but a server
  answers searches in order with one 202 each, so several may be in flight;
  results between two 202s belong to the oldest pending search.
* **Downloads** (203 -> 204 / 206 / 609; 500 for a firewalled sharer) and the
  transfer notices (218-221); a 501 (someone wants a file we share, and we
  are firewalled) and a 607 (upload request) are handed to the owner.
* **Fail-over**: when the session ends (the server died, the connection was
  reset, the login timed out) the client moves to the next server of its
  list, logs in, shares everything again and sends the searches that were
  in flight again, so a search in progress resumes without the user doing
  anything.  Once every server failed in a row, it waits (backing off up to
  :attr:`ClientConfig.retry_max`) before the next round.

Written only against :mod:`peerlab.runtime.base` (the session machine is
:class:`peerlab.proto.napster.ClientSession`, driven by
:class:`peerlab.runtime.driver.StreamDriver`), so it runs on real sockets and
in the simulator alike.  It never prints: it reports to the runtime's
observer (``napster.*`` events) and to the callbacks its owner sets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from peerlab.errors import LocalProtocolError, NetworkError, PeerlabError
from peerlab.proto.napster import (
    ClientSession,
    ConnectionClosed,
    InvalidMessage,
    LoginTimedOut,
    SessionConfig,
    SessionState,
)
from peerlab.runtime.base import Address, Connecting, Runtime, Timer
from peerlab.runtime.driver import StreamDriver
from peerlab.wire.napster import (
    AcceptFailed,
    AlternateDownloadAck,
    AlternateDownloadRequest,
    DownloadAck,
    DownloadComplete,
    Downloading,
    DownloadRequest,
    ErrorMessage,
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
    QueueLimit,
    QueueLimitNotice,
    SearchEnd,
    SearchQuery,
    SearchRequest,
    SearchResult,
    ServerStats,
    ShareFile,
    Unknown,
    UnshareFile,
    UploadAccept,
    UploadComplete,
    Uploading,
    UploadRequest,
    napster_to_ip,
)

#: Client states, as ``peerlab status`` shows them.
OFFLINE = "offline"  # between attempts (waiting to retry)
CONNECTING = "connecting"
LOGGING_IN = "logging in"
ONLINE = "online"
CLOSED = "closed"

#: Searches waiting for a server, and searches sent at once.  A server answers
#: searches in order (napster.txt, 200-202), so several may be in flight; the
#: bounds keep a script searching in a loop from growing the queue without
#: end.  The session machine's own bound (MAX_PENDING_SEARCHES, 64) is higher.
MAX_QUEUED_SEARCHES = 64
MAX_INFLIGHT_SEARCHES = 4
#: Results kept per search: a server sends at most 100 (message 200, "if it
#: is greater than 100, the server will only return 100 results"); a search
#: re-sent after a fail-over may bring them again, so twice that.
MAX_RESULTS_PER_SEARCH = 200
#: Download requests (203, 500) waiting for their answer.
MAX_PENDING_REQUESTS = 64
#: Message-of-the-day lines kept for ``peerlab status`` (message 621).
MAX_MOTD_LINES = 50
#: Server 404 texts kept (the newest), for the log and status.
MAX_SERVER_ERRORS = 20


class NapsterLoginRefused(PeerlabError):
    """A Napster server refused our login (message 0); the text is the server's."""


@dataclass
class ClientConfig:
    """Settings of :class:`NapsterClient`, with documented defaults."""

    #: Index servers, tried in this order (fail-over goes to the next one).
    servers: list[Address]
    nick: str
    password: str
    #: Our data port for peer transfers; 0 says we are firewalled (message 2).
    data_port: int = 0
    link_type: LinkType = LinkType.UNKNOWN
    #: ``<client-info>`` of the login (message 2).
    client_info: str = "peerlab"
    #: The e-mail address a new-user login (6) must carry; nobody reads it.
    email: str = "anonymous@peerlab.invalid"
    #: Seconds to wait for a TCP connection to a server.
    connect_timeout: float = 10.0
    #: Seconds to wait for the answer to a nick check (7) before logging in
    #: with a plain 2 (a server may not implement the check).
    nick_check_timeout: float = 5.0
    #: Seconds to wait for the answer to a login (2 or 6).
    login_timeout: float = 15.0
    #: Delay before trying again once every server failed, doubling up to
    #: ``retry_max`` while they keep failing.
    retry_min: float = 0.5
    retry_max: float = 30.0
    #: Seconds a download request (203, 500) waits for its answer.
    request_timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class NapsterHit:
    """One search result (message 201), the sharer's ip as a dotted address."""

    filename: str
    md5: str
    size: int
    bitrate: int
    frequency: int
    duration: int
    nick: str
    ip: str
    link_type: LinkType
    server: Address

    @classmethod
    def from_result(cls, msg: SearchResult, server: Address) -> NapsterHit:
        return cls(
            msg.filename, msg.md5, msg.size, msg.bitrate, msg.frequency, msg.duration,
            msg.nick, napster_to_ip(msg.ip), msg.link_type, server,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where to reach a sharer for a download (message 204): ``port`` 0 means
    it is firewalled and must push the file to us (500/501)."""

    nick: str
    ip: str
    port: int
    filename: str
    md5: str
    link_type: LinkType


#: ``done(hits_so_far_complete, error)``: error is None when the server's 202
#: arrived, else why the search ended early.
SearchDone = Callable[[str | None], None]
RequestDone = Callable[[PeerAddress | None, str | None], None]


@dataclass(eq=False)
class SearchHandle:
    """A search the client runs; :meth:`cancel` stops delivering its results."""

    query: SearchQuery
    on_hit: Callable[[NapsterHit], None]
    on_done: SearchDone
    seen: set[tuple[str, str]] = field(default_factory=set)
    finished: bool = False

    def cancel(self) -> None:
        self.finished = True

    def _hit(self, hit: NapsterHit) -> None:
        key = (hit.nick, hit.filename)
        if self.finished or key in self.seen or len(self.seen) >= MAX_RESULTS_PER_SEARCH:
            return
        self.seen.add(key)
        self.on_hit(hit)

    def _done(self, error: str | None) -> None:
        if not self.finished:
            self.finished = True
            self.on_done(error)


@dataclass(eq=False)
class _Request:
    nick: str
    filename: str
    done: RequestDone
    timer: Timer | None = None


class NapsterClient:
    """One Napster identity on a list of index servers (see the module doc).

    Callbacks the owner may set (each optional):

    * ``on_state(state, detail)``: the state changed (:data:`ONLINE` after
      every login, :data:`OFFLINE` after a loss, with the reason);
    * ``on_online()``: logged in and shared; pending work may go on;
    * ``on_push_request(nick, address, filename, link_type)``: a 501: connect
      to ``address`` and SEND ``filename`` to ``nick``;
    * ``on_upload_request(nick, filename, link_type) -> bool``: a 607; True
      accepts it with a 608;
    * ``on_link_speed(nick, link_type)``: a 601, the answer to
      :meth:`request_link_speed`.

    ``shares()`` returns the share messages (100) of everything we share; it
    is asked at every login and by :meth:`reshare`.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: ClientConfig,
        shares: Callable[[], Sequence[ShareFile]],
    ) -> None:
        if not config.servers:
            raise LocalProtocolError("a Napster client needs at least one server")
        self.runtime = runtime
        self.config = config
        self._shares = shares
        self.state = OFFLINE
        self.detail = ""
        #: The server we are logged in to (None while not online).
        self.server: Address | None = None
        #: The last refusal (message 0) of each server, by address.
        self.refusals: dict[Address, str] = {}
        #: The last failure of each server (connect error, loss, timeout).
        self.failures: dict[Address, str] = {}
        self.motd: deque[str] = deque(maxlen=MAX_MOTD_LINES)
        self.server_errors: deque[str] = deque(maxlen=MAX_SERVER_ERRORS)
        self.stats: ServerStats | None = None
        self.logins = 0
        self.shared: dict[str, ShareFile] = {}
        self.on_state: Callable[[str, str], None] | None = None
        self.on_online: Callable[[], None] | None = None
        self.on_push_request: Callable[[str, Address, str, LinkType], None] | None = None
        self.on_upload_request: Callable[[str, str, LinkType | None], bool] | None = None
        self.on_link_speed: Callable[[str, LinkType], None] | None = None
        self._index = -1  # position in config.servers of the current attempt
        self._failed_in_row = 0
        self._driver: StreamDriver | None = None
        self._session: ClientSession | None = None
        self._connecting: Connecting | None = None
        self._timer: Timer | None = None
        self._queued: deque[SearchHandle] = deque()
        self._inflight: deque[SearchHandle] = deque()
        self._requests: list[_Request] = []
        self._closed = False
        #: Why the current connection is being closed, when we close it.
        self._loss_reason: str | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect to the first server of the list."""
        if self._driver is None and self._timer is None and not self._closed:
            self._next_server()

    def close(self) -> None:
        """Log out (close the session) and stop; every pending call gets its error."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()
        self._fail_pending("the Napster client stopped", requeue=False)
        self._set_state(CLOSED, "stopped")

    @property
    def online(self) -> bool:
        return self.state == ONLINE

    @property
    def all_failed(self) -> bool:
        """Not online, and every server of the list failed in a row (waiting to retry)."""
        return not self.online and self._failed_in_row >= len(self.config.servers)

    @property
    def nick(self) -> str:
        return self.config.nick

    @property
    def firewalled(self) -> bool:
        return self.config.data_port == 0

    # -------------------------------------------------------------- searches

    def search(
        self,
        query: SearchQuery,
        on_hit: Callable[[NapsterHit], None],
        on_done: SearchDone,
    ) -> SearchHandle:
        """Run ``query`` (message 200) now or as soon as a server takes it.

        The search waits through a fail-over; the caller bounds how long it
        waits by cancelling the handle.  A full queue ends it at once with an
        error.
        """
        handle = SearchHandle(query, on_hit, on_done)
        if self._closed:
            handle._done("the Napster client stopped")
            return handle
        self._queued = deque(h for h in self._queued if not h.finished)
        if len(self._queued) >= MAX_QUEUED_SEARCHES:
            handle._done(f"too many Napster searches waiting (at most {MAX_QUEUED_SEARCHES})")
            return handle
        self._queued.append(handle)
        self._pump_searches()
        return handle

    def _pump_searches(self) -> None:
        session, driver = self._session, self._driver
        if session is None or driver is None or self.state != ONLINE:
            return
        sent = False
        while self._queued and len(self._inflight) < MAX_INFLIGHT_SEARCHES:
            handle = self._queued.popleft()
            if handle.finished:
                continue
            try:
                session.send(SearchRequest(handle.query))
            except LocalProtocolError as exc:
                handle._done(f"cannot send the search: {exc}")
                continue
            self._inflight.append(handle)
            sent = True
        if sent:
            driver.flush()

    # ------------------------------------------------------------- downloads

    def request_download(self, nick: str, filename: str, done: RequestDone) -> None:
        """Ask the server where ``nick`` serves ``filename`` (203 -> 204).

        ``done(address, None)`` with the sharer's address (port 0: it is
        firewalled, ask for a push with :meth:`request_push`), or
        ``done(None, reason)`` on 206/609/timeout/loss.
        """
        if not self.online:
            done(None, "not logged in to a Napster server")
            return
        if len(self._requests) >= MAX_PENDING_REQUESTS:
            done(None, "too many Napster download requests waiting")
            return
        req = _Request(nick, filename, done)
        req.timer = self.runtime.call_later(
            self.config.request_timeout, lambda: self._request_expired(req)
        )
        self._requests.append(req)
        if not self._send(DownloadRequest(nick, filename)):
            self._finish_request(req, None, "cannot send the download request")

    def request_push(self, nick: str, filename: str) -> bool:
        """Ask a firewalled sharer to connect to us and SEND (message 500)."""
        return self._send(AlternateDownloadRequest(nick, filename))

    def notice(self, msg: Downloading | DownloadComplete | Uploading | UploadComplete) -> None:
        """A transfer notice (218-221, napster.txt section 5.1); dropped when offline."""
        self._send(msg)

    def request_link_speed(self, nick: str) -> None:
        """Ask the server for ``nick``'s link type (600); the 601 goes to ``on_link_speed``."""
        self._send(LinkSpeedRequest(nick))

    def queue_limit(self, nick: str, filename: str, limit: int) -> None:
        """Tell ``nick`` (through the server, 619) that our upload slots are full."""
        self._send(QueueLimit(nick, filename, limit))

    def _request_expired(self, req: _Request) -> None:
        self._finish_request(req, None, "the server did not answer the download request")

    def _finish_request(
        self, req: _Request, address: PeerAddress | None, error: str | None
    ) -> None:
        if req not in self._requests:
            return
        self._requests.remove(req)
        if req.timer is not None:
            req.timer.cancel()
        req.done(address, error)

    def _match_request(self, nick: str, filename: str) -> _Request | None:
        for req in self._requests:
            if req.nick == nick and req.filename == filename:
                return req
        return None

    # ---------------------------------------------------------------- shares

    def reshare(self) -> None:
        """Bring the server's copy of our share list in line with ``shares()``.

        Sends 102 for files gone or changed and 100 for files new or changed.
        Nothing happens while offline: the next login shares everything.
        """
        if not self.online:
            return
        want = {m.filename: m for m in self._shares()}
        msgs: list[Message] = []
        for name, old in list(self.shared.items()):
            if want.get(name) != old:
                msgs.append(UnshareFile(name))
                del self.shared[name]
        for name, msg in want.items():
            if name not in self.shared:
                msgs.append(msg)
                self.shared[name] = msg
        if msgs:
            self._send_many(msgs)
            self.runtime.observer.event("napster.reshared", changes=len(msgs))

    # ---------------------------------------------------------- connections

    def _next_server(self) -> None:
        self._timer = None
        if self._closed:
            return
        servers = self.config.servers
        self._index = (self._index + 1) % len(servers)
        address = servers[self._index]
        session = ClientSession(SessionConfig(login_timeout=self.config.login_timeout))
        self._session = session
        driver = StreamDriver(
            self.runtime,
            session,
            lambda ev: self._on_event(driver, ev),
            on_connected=lambda d: self._on_connected(d, address),
            on_closed=lambda exc: self._on_closed(driver, address, exc),
        )
        self._driver = driver
        self._loss_reason = None
        self._set_state(CONNECTING, f"{address[0]}:{address[1]}")
        self.runtime.observer.event("napster.connecting", server=address)
        self._connecting = self.runtime.connect(
            address, driver, timeout=self.config.connect_timeout
        )

    def _on_connected(self, driver: StreamDriver, address: Address) -> None:
        self._connecting = None
        if driver is not self._driver or self._session is None:
            return
        self._set_state(LOGGING_IN, f"{address[0]}:{address[1]}")
        try:
            self._session.send(NickCheck(self.config.nick))
        except LocalProtocolError:
            self._login(new_user=False)
            return
        self._cancel_timer()
        self._timer = self.runtime.call_later(
            self.config.nick_check_timeout, lambda: self._nick_check_expired(driver)
        )

    def _nick_check_expired(self, driver: StreamDriver) -> None:
        self._timer = None
        if driver is self._driver and self._session is not None:
            if self._session.state is SessionState.AWAITING_LOGIN:
                self._login(new_user=False)
                driver.flush()

    def _login(self, *, new_user: bool) -> None:
        session = self._session
        if session is None or session.state is not SessionState.AWAITING_LOGIN:
            return
        self._cancel_timer()
        cfg = self.config
        msg: Login | NewUserLogin
        if new_user:
            msg = NewUserLogin(cfg.nick, cfg.password, cfg.data_port, cfg.client_info,
                               cfg.link_type, cfg.email)
        else:
            msg = Login(cfg.nick, cfg.password, cfg.data_port, cfg.client_info, cfg.link_type)
        session.login(msg, self.runtime.now())

    def _on_closed(self, driver: StreamDriver, address: Address, exc: Exception | None) -> None:
        if driver is not self._driver:
            return
        self._driver = None
        self._session = None
        self._connecting = None
        self._cancel_timer()
        was_online = self.state == ONLINE
        self.server = None
        self.shared.clear()
        if self._closed:
            return
        if self._loss_reason is not None:
            reason = self._loss_reason
        elif isinstance(exc, NetworkError | PeerlabError):
            reason = str(exc) or type(exc).__name__
        else:
            reason = "the server closed the connection"
        self.failures[address] = reason
        self.runtime.observer.event(
            "napster.server_lost" if was_online else "napster.server_failed",
            server=address, reason=reason,
        )
        self._fail_pending(f"lost the Napster server: {reason}", requeue=True)
        self._set_state(OFFLINE, reason)
        if was_online:
            self._failed_in_row = 0
            self._next_server()  # fail over at once
            return
        self._failed_in_row += 1
        if self._failed_in_row % len(self.config.servers):
            self._next_server()
            return
        rounds = self._failed_in_row // len(self.config.servers)
        delay = min(self.config.retry_max, self.config.retry_min * 2 ** (rounds - 1))
        self._timer = self.runtime.call_later(delay, self._next_server)

    def _fail_pending(self, reason: str, *, requeue: bool) -> None:
        """The session ended: searches go back to the queue, requests fail."""
        inflight = [h for h in self._inflight if not h.finished]
        self._inflight.clear()
        if requeue:
            self._queued.extendleft(reversed(inflight))
        else:
            for h in inflight + list(self._queued):
                h._done(reason)
            self._queued.clear()
        for req in list(self._requests):
            self._finish_request(req, None, reason)

    # ---------------------------------------------------------------- events

    def _on_event(self, driver: StreamDriver, ev: object) -> None:
        if driver is not self._driver:
            return
        try:
            self._handle(driver, ev)
        except (PeerlabError, OSError) as exc:
            # An owner's callback failed (a disk error serving a push...):
            # that one message is lost, the session goes on.
            self.runtime.observer.event(
                "napster.event_failed", event=type(ev).__name__, error=str(exc)
            )

    def _handle(self, driver: StreamDriver, ev: object) -> None:
        if isinstance(ev, SearchResult):
            if self._inflight and self.server is not None:
                self._inflight[0]._hit(NapsterHit.from_result(ev, self.server))
        elif isinstance(ev, SearchEnd):
            if self._inflight:
                self._inflight.popleft()._done(None)
            self._pump_searches()
        elif isinstance(ev, DownloadAck):
            req = self._match_request(ev.nick, ev.filename)
            if req is not None:
                address = PeerAddress(ev.nick, napster_to_ip(ev.ip), ev.port, ev.filename,
                                      ev.md5, ev.link_type)
                self._finish_request(req, address, None)
        elif isinstance(ev, GetError | AcceptFailed):
            req = self._match_request(ev.nick, ev.filename)
            if req is not None:
                what = "is not available" if isinstance(ev, GetError) else "was not accepted"
                self._finish_request(req, None, f"{ev.nick}: the file {what}")
        elif isinstance(ev, QueueLimitNotice):
            req = self._match_request(ev.nick, ev.filename)
            if req is not None:
                self._finish_request(req, None, f"{ev.nick}: upload slots full ({ev.limit})")
        elif isinstance(ev, AlternateDownloadAck):
            if self.on_push_request is not None:
                self.on_push_request(ev.nick, (napster_to_ip(ev.ip), ev.port), ev.filename,
                                     ev.link_type)
        elif isinstance(ev, UploadRequest):
            accept = self.on_upload_request
            if accept is not None and accept(ev.nick, ev.filename, ev.link_type):
                self._send(UploadAccept(ev.nick, ev.filename))
        elif isinstance(ev, LinkSpeed):
            if self.on_link_speed is not None:
                self.on_link_speed(ev.nick, ev.link_type)
        elif isinstance(ev, ErrorMessage):
            self._server_error(ev.text)
        elif isinstance(ev, Ping):
            self._send(Pong(ev.nick))
        elif isinstance(ev, Unknown) and ev.type == 750:
            # Server ping: Napster 2.0 answers with its nick (napster.txt, 750).
            self._send(Unknown(750, self.config.nick.encode("latin-1")))
        elif isinstance(ev, Motd):
            self.motd.append(ev.text)
        elif isinstance(ev, ServerStats):
            self.stats = ev
        elif isinstance(ev, NickNotRegistered):
            self._login(new_user=True)
        elif isinstance(ev, NickAlreadyRegistered):
            self._login(new_user=False)
        elif isinstance(ev, InvalidNick):
            self._refused(driver, f"the server calls the nick {self.config.nick!r} invalid")
        elif isinstance(ev, LoginAck):
            self._logged_in()
        elif isinstance(ev, LoginError):
            self._refused(driver, ev.message or "login refused")
        elif isinstance(ev, LoginTimedOut):
            self.runtime.observer.event("napster.login_timeout", server=self._address())
            self._loss_reason = "the server did not answer the login"
            driver.abort()
        elif isinstance(ev, InvalidMessage):
            self.runtime.observer.event("napster.bad_message", type=ev.type, reason=ev.reason)
        elif isinstance(ev, ConnectionClosed):
            driver.close()

    def _server_error(self, text: str) -> None:
        self.server_errors.append(text)
        self.runtime.observer.event("napster.server_error", text=text)
        # OpenNap answers a 203 for a user who is gone with a 404 naming them
        # ("User x is not currently online."): fail that request now.
        for req in list(self._requests):
            if req.nick in text.split():
                self._finish_request(req, None, text)

    def _refused(self, driver: StreamDriver, reason: str) -> None:
        address = self._address()
        if address is not None:
            self.refusals[address] = reason
        self.runtime.observer.event("napster.login_refused", server=address, reason=reason)
        self._loss_reason = f"login refused: {reason}"
        driver.close()

    def _logged_in(self) -> None:
        address = self._address()
        assert address is not None and self._driver is not None
        self._cancel_timer()
        self.server = address
        self.logins += 1
        self._failed_in_row = 0
        self.refusals.pop(address, None)
        self.failures.pop(address, None)
        self._set_state(ONLINE, f"{address[0]}:{address[1]}")
        shares = list(self._shares())
        self.shared = {m.filename: m for m in shares}
        if shares:
            self._send_many(shares)
        self.runtime.observer.event("napster.online", server=address, shared=len(shares))
        self._pump_searches()
        if self.on_online is not None:
            self.on_online()

    # --------------------------------------------------------------- helpers

    def _address(self) -> Address | None:
        if self._index < 0:
            return None
        return self.config.servers[self._index]

    def _send(self, msg: Message) -> bool:
        return self._send_many([msg])

    def _send_many(self, msgs: Sequence[Message]) -> bool:
        session, driver = self._session, self._driver
        if session is None or driver is None or self.state != ONLINE:
            return False
        try:
            session.send_many(msgs)
        except LocalProtocolError as exc:
            self.runtime.observer.event("napster.send_failed", error=str(exc))
            return False
        driver.flush()
        return True

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_state(self, state: str, detail: str) -> None:
        changed = (state, detail) != (self.state, self.detail)
        self.state, self.detail = state, detail
        if changed and self.on_state is not None:
            self.on_state(state, detail)
