"""A small GWebCache: the server (``peerlab gwebcache``) and the servent's client.

The Gnutella Web Caching System (gtk-gnutella ``doc/gnutella/gwcache``,
version 1.3.1; "GWebCache 2" as the later caches -- Skulls, Beacon Cache,
GhostWhiteCrab -- and gtk-gnutella speak it) answers the "initial connection
point problem": a script on a web server that keeps the addresses of a few
recent servents and the URLs of other caches.  Everything is an HTTP GET of
the cache's URL with a query string; answers are ``text/plain`` lines.

Requests the server answers (several may be combined in one query string)::

    ?ping=1                 "PONG name version" (v1) and "I|pong|name version|gnutella" (v2)
    ?get=1                  v2: "H|ip:port|age" per host, "U|url|age" per cache (age in s)
    ?hostfile=1             v1: "ip:port" per line
    ?urlfile=1              v1: one cache URL per line
    ?update=1&ip=..&url=..  v2: "I|update|OK" or "I|update|WARNING|why"
    ?ip=..&url=..           v1 update: "OK" (then "WARNING: why" lines, if any)
    ?statfile=1             requests total, requests and updates in the last hour
    &net=gnutella           only Gnutella is served ("ERROR: Network not supported")
    &client=PLAB&version=.. who asks (recorded nowhere: statistics only)

Rules from section 4 of the spec: only the newest entries are kept and
returned (:data:`MAX_HOSTS_RETURNED` hosts, :data:`MAX_URLS_RETURNED` URLs);
"once a client has made an Update request, do not accept any more Update
requests from that client's IP address for another ~55 minutes"
(:data:`UPDATE_INTERVAL`), answered with OK and a warning, not an ERROR;
an update's IP must be the requester's own ("REMOTE_ADDR"); URLs must begin
with ``http://``.  Private and loopback addresses are accepted only by a
cache that itself listens on one (a cache for a lab network on 127.0.0.1).

The client (:class:`GWebCacheClient`) sends ``get`` and ``update``
requests with ``client=PLAB``, follows up to :data:`MAX_REDIRECTS` redirects
("Clients must support this method"), and reads both the v2 lines and the
v1 bare lists (:func:`parse_response`).  Responses are bounded
(:data:`MAX_RESPONSE_BYTES`).

Both run on the runtime interface (HTTP through
:mod:`peerlab.proto.http`), so they work in the simulator too.

Public API: :class:`GWebCache`, :class:`GWebCacheConfig`,
:class:`GWebCacheClient`, :class:`GWebCacheReply`, :func:`parse_response`,
:func:`parse_cache_url`, :func:`format_query`.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from peerlab import __version__
from peerlab.errors import (
    AddressInUse,
    ConfigError,
    LocalProtocolError,
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
    StorageError,
)
from peerlab.overlays.gnutella.hostcache import usable_address, write_atomically
from peerlab.proto.http import (
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    Request,
    Response,
    ServerConnection,
)
from peerlab.runtime.base import Address, BaseStreamHandler, Listener, Runtime, Stream, Timer

#: Hosts a cache keeps ("only need to keep that many entries": the newest).
MAX_HOSTS_KEPT = 50
#: Hosts returned by one get/hostfile ("around 20 nodes").
MAX_HOSTS_RETURNED = 20
#: URLs kept, and returned by one get/urlfile ("around 10-20 URLs").
MAX_URLS_KEPT = 30
MAX_URLS_RETURNED = 10
#: Seconds during which a client IP's second update is refused ("~55 minutes").
UPDATE_INTERVAL = 55 * 60.0
#: Client IPs whose last update time is remembered (oldest forgotten first).
MAX_TRACKED_CLIENTS = 10_000
#: Longest URL accepted in an update.
MAX_URL_LENGTH = 256
#: Largest request head a cache reads (a GWebCache query string is short).
MAX_REQUEST_HEAD = 4096
#: Seconds a client connection may take to send its request (slowloris).
REQUEST_TIMEOUT = 10.0
#: HTTP connections served at once.
MAX_HTTP_CONNECTIONS = 256
#: Largest response the client reads (a full get is ~1.5 KB).
MAX_RESPONSE_BYTES = 64 * 1024
#: Lines of a response the client looks at.
MAX_RESPONSE_LINES = 500
#: Redirects the client follows.
MAX_REDIRECTS = 2
#: Seconds the client waits for a whole answer.
CLIENT_TIMEOUT = 20.0
#: The state file's format name.
STATE_FORMAT = "peerlab-gwebcache"
CACHE_NAME = "peerlab-gwc"


def _private(ip: str) -> bool:
    parts = [int(p) for p in ip.split(".")]
    return (
        parts[0] in (10, 127)
        or (parts[0] == 172 and 16 <= parts[1] <= 31)
        or (parts[0] == 192 and parts[1] == 168)
        or (parts[0] == 169 and parts[1] == 254)
    )


def _is_ipv4(text: str) -> bool:
    return usable_address((text, 1))


def parse_cache_url(url: str) -> tuple[Address, str]:
    """``http://host[:port]/path?query`` -> ((host, port), "/path?query").

    Raises :class:`~peerlab.errors.ConfigError` for anything but an http URL
    ("URLs must always begin with http://")."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"not a GWebCache URL: {url!r}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"a GWebCache URL is http://host[:port]/path, not {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return (parts.hostname, port or 80), path


def format_query(params: list[tuple[str, str]]) -> str:
    """``a=1&b=x%3Ay``: URL-encoded, as section 3.1 asks."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


# ------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class GWebCacheReply:
    """What a cache answered."""

    hosts: tuple[tuple[Address, int | None], ...] = ()
    urls: tuple[tuple[str, int | None], ...] = ()
    #: The cache's name and version from its pong, if it ponged.
    pong: str | None = None
    #: ``True`` update accepted, ``False`` refused or warned, ``None`` not asked.
    update_ok: bool | None = None
    warnings: tuple[str, ...] = ()
    #: The cache's ERROR line ("asking to be removed from the client's list").
    error: str | None = None


def _age(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


def parse_response(text: str) -> GWebCacheReply:
    """Read a cache's answer, v2 lines and v1 lists alike; malformed lines
    are skipped ("responses that cannot be parsed" only make a cache bad
    when nothing in them is usable)."""
    hosts: list[tuple[Address, int | None]] = []
    urls: list[tuple[str, int | None]] = []
    warnings: list[str] = []
    pong: str | None = None
    update_ok: bool | None = None
    error: str | None = None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for raw in lines[:MAX_RESPONSE_LINES]:
        line = raw.strip()
        if not line:
            continue
        head, bar, rest = line.partition("|")
        kind = head.upper()
        if bar and kind == "H":
            fields = rest.split("|")
            hp = _host_port(fields[0])
            if hp is not None:
                hosts.append((hp, _age(fields[1]) if len(fields) > 1 else None))
        elif bar and kind == "U":
            fields = rest.split("|")
            if fields[0].lower().startswith("http://") and len(fields[0]) <= MAX_URL_LENGTH:
                urls.append((fields[0], _age(fields[1]) if len(fields) > 1 else None))
        elif bar and kind == "I":
            fields = rest.split("|")
            what = fields[0].lower()
            if what == "pong":
                pong = fields[1] if len(fields) > 1 else ""
            elif what == "update":
                status = fields[1].upper() if len(fields) > 1 else ""
                if status == "OK":
                    update_ok = True if update_ok is None else update_ok
                else:
                    update_ok = False
                    warnings.append("|".join(fields[1:]))
            elif what in ("error", "force") or "remove" in rest.lower():
                error = rest
        elif line.upper().startswith("PONG"):
            if pong is None:
                pong = line[4:].strip()
        elif line.upper().startswith("ERROR"):
            error = line[5:].lstrip(": ").strip() or "ERROR"
        elif line.upper() == "OK":
            update_ok = True if update_ok is None else update_ok
        elif line.upper().startswith("WARNING"):
            update_ok = False
            warnings.append(line[7:].lstrip(": ").strip())
        elif line.lower().startswith("http://"):
            if len(line) <= MAX_URL_LENGTH:
                urls.append((line, None))
        else:
            hp = _host_port(line)
            if hp is not None:
                hosts.append((hp, None))
    return GWebCacheReply(tuple(hosts), tuple(urls), pong, update_ok, tuple(warnings), error)


def _host_port(text: str) -> Address | None:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5:
        return None
    addr = (host, int(port))
    return addr if usable_address(addr) else None


# ---------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class GWebCacheConfig:
    """Settings of a cache."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: The script's path: requests for anything else get 404.
    path: str = "/"
    #: Where the lists survive restarts (``None``: memory only).
    state_path: Path | None = None
    #: Seconds before one IP may update again (section 4.1).
    update_interval: float = UPDATE_INTERVAL
    #: An update's IP must be the requester's (section 4.1).
    check_ip: bool = True
    #: Accept private/loopback addresses; ``None``: when the cache listens on one.
    accept_private: bool | None = None
    max_hosts: int = MAX_HOSTS_KEPT
    #: Seconds a client connection may take to send its request (slowloris).
    request_timeout: float = REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not 0-65535")
        if not self.path.startswith("/"):
            raise ConfigError(f"the cache path must start with '/', not {self.path!r}")
        if self.max_hosts < 1:
            raise ConfigError("max_hosts must be >= 1")


class GWebCache:
    """A GWebCache on the runtime: :meth:`start`, :meth:`close`."""

    def __init__(self, runtime: Runtime, config: GWebCacheConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or GWebCacheConfig()
        #: address -> wall time of its update, newest last.
        self.hosts: OrderedDict[Address, float] = OrderedDict()
        #: url -> wall time, newest last.
        self.urls: OrderedDict[str, float] = OrderedDict()
        self._updates: OrderedDict[str, float] = OrderedDict()
        self._requests: deque[float] = deque()
        self._update_times: deque[float] = deque()
        self.requests_total = 0
        self._listener: Listener | None = None
        self._handlers: list[_CacheHandler] = []
        self._closed = False
        self._accept_private = False

    @property
    def address(self) -> Address:
        if self._listener is None:
            raise LocalProtocolError("the GWebCache is not started")
        return self._listener.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self.config.path}"

    def start(self) -> None:
        """Load the saved lists and listen; raises AddressInUse / StorageError."""
        cfg = self.config
        self._load()
        try:
            self._listener = self.runtime.listen((cfg.host, cfg.port), self._new_handler)
        except AddressInUse as exc:
            raise AddressInUse(f"port {cfg.port} on {cfg.host} is already in use") from exc
        host = self._listener.address[0]
        if cfg.accept_private is not None:
            self._accept_private = cfg.accept_private
        else:
            self._accept_private = _is_ipv4(host) and _private(host)
        self.runtime.observer.event("gwebcache.started", url=self.url)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        for h in list(self._handlers):
            h.abort()
        self._handlers.clear()
        self.save()

    # -- state

    def save(self) -> None:
        """Write the lists to the state file (atomically), if there is one."""
        path = self.config.state_path
        if path is None:
            return
        doc = {
            "format": STATE_FORMAT,
            "version": 1,
            "hosts": [[h, p, t] for (h, p), t in self.hosts.items()],
            "urls": [[u, t] for u, t in self.urls.items()],
        }
        write_atomically(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))

    def _load(self) -> None:
        path = self.config.state_path
        if path is None:
            return
        try:
            data = path.read_bytes()[: 4 * 1024 * 1024]
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            doc: Any = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise StorageError(f"{path} is not a GWebCache state file: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise StorageError(f"{path} is not a GWebCache state file")
        for item in doc.get("hosts", [])[-self.config.max_hosts :]:
            if (
                isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and isinstance(item[1], int) and isinstance(item[2], int | float)
                and usable_address((item[0], item[1]))
            ):  # fmt: skip
                self.hosts[(item[0], item[1])] = float(item[2])
        for item in doc.get("urls", [])[-MAX_URLS_KEPT:]:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
                if item[0].startswith("http://") and isinstance(item[1], int | float):
                    self.urls[item[0]] = float(item[1])

    # -- requests

    def _new_handler(self) -> BaseStreamHandler:
        if self._closed or len(self._handlers) >= MAX_HTTP_CONNECTIONS:
            self.runtime.observer.count("gwebcache.refused_connections")
            return _Busy()
        h = _CacheHandler(self)
        self._handlers.append(h)
        return h

    def _count_request(self, now: float, update: bool) -> None:
        self.requests_total += 1
        for q in (self._requests, self._update_times) if update else (self._requests,):
            q.append(now)
            while q and q[0] <= now - 3600:
                q.popleft()
            while len(q) > 100_000:
                q.popleft()

    def handle(self, target: str, client_ip: str) -> tuple[int, str]:
        """Status and body answering ``GET target`` from ``client_ip``."""
        path, _, query = target.partition("?")
        if path != self.config.path:
            return 404, "ERROR: no GWebCache here\r\n"
        try:
            params = parse_qsl(query, keep_blank_values=True, max_num_fields=32)
        except ValueError:
            return 400, "ERROR: bad query string\r\n"
        p: dict[str, str] = {}
        for k, v in params:
            p.setdefault(k.lower(), v)
        now = self.runtime.now()
        wall = self.runtime.wall_time()
        ip = p.get("ip") or p.get("ip1")
        url = p.get("url") or p.get("url1")
        is_update = p.get("update") == "1" or ip is not None or url is not None
        self._count_request(now, is_update)
        self.runtime.observer.count("gwebcache.requests")
        net = p.get("net", "gnutella").lower()
        if net != "gnutella":
            return 200, "ERROR: Network not supported\r\nI|nets|gnutella\r\n"
        out: list[str] = []
        v2 = any(p.get(k) == "1" for k in ("get", "update")) or "net" in p
        if p.get("ping") == "1":
            out.append(f"PONG {CACHE_NAME} {__version__}")
            out.append(f"I|pong|{CACHE_NAME} {__version__}|gnutella")
        if is_update:
            out.extend(self._update(ip, url, client_ip, now, wall, v2=p.get("update") == "1"))
        if p.get("get") == "1":
            for (h, port), t in list(reversed(self.hosts.items()))[:MAX_HOSTS_RETURNED]:
                out.append(f"H|{h}:{port}|{max(0, int(wall - t))}")
            for u, t in list(reversed(self.urls.items()))[:MAX_URLS_RETURNED]:
                out.append(f"U|{u}|{max(0, int(wall - t))}")
        if p.get("hostfile") == "1":
            for h, port in list(reversed(self.hosts))[:MAX_HOSTS_RETURNED]:
                out.append(f"{h}:{port}")
        if p.get("urlfile") == "1":
            out.extend(list(reversed(self.urls))[:MAX_URLS_RETURNED])
        if p.get("statfile") == "1":
            out += [
                str(self.requests_total),
                str(len(self._requests)),
                str(len(self._update_times)),
            ]
        if not out and not v2:
            out.append(f"{CACHE_NAME} {__version__}: a Gnutella web cache (GWebCache)")
        return 200, "".join(line + "\r\n" for line in out)

    def _update(
        self, ip: str | None, url: str | None, client_ip: str, now: float, wall: float, *, v2: bool
    ) -> list[str]:
        cfg = self.config
        warnings: list[str] = []
        last = self._updates.get(client_ip)
        if last is not None and now - last < cfg.update_interval:
            warnings.append("Returned too soon")
        else:
            if ip is not None:
                hp = _host_port(ip)
                if hp is None:
                    warnings.append("Invalid IP")
                elif cfg.check_ip and hp[0] != client_ip:
                    warnings.append("IP is not yours")
                elif _private(hp[0]) and not self._accept_private:
                    warnings.append("Private IP")
                else:
                    self.hosts.pop(hp, None)
                    self.hosts[hp] = wall
                    while len(self.hosts) > cfg.max_hosts:
                        self.hosts.popitem(last=False)
                    self.runtime.observer.count("gwebcache.host_updates")
            if url is not None:
                u = url.strip()
                if (
                    not u.lower().startswith("http://")
                    or len(u) > MAX_URL_LENGTH
                    or any(c.isspace() or c in '|<>"' for c in u)
                ):
                    warnings.append("Invalid URL")
                else:
                    self.urls.pop(u, None)
                    self.urls[u] = wall
                    while len(self.urls) > MAX_URLS_KEPT:
                        self.urls.popitem(last=False)
            self._updates.pop(client_ip, None)
            self._updates[client_ip] = now
            while len(self._updates) > MAX_TRACKED_CLIENTS:
                self._updates.popitem(last=False)
        if v2:
            if warnings:
                return [f"I|update|WARNING|{w}" for w in warnings]
            return ["I|update|OK"]
        return ["OK", *(f"WARNING: {w}" for w in warnings)]


class _Busy(BaseStreamHandler):
    def connection_made(self, stream: Stream) -> None:
        stream.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        stream.close()


class _CacheHandler(BaseStreamHandler):
    """One HTTP connection to the cache."""

    def __init__(self, cache: GWebCache) -> None:
        self.cache = cache
        self.conn = ServerConnection(max_header_bytes=MAX_REQUEST_HEAD)
        self.stream: Stream | None = None
        self.closed = False
        self._timer: Timer | None = None
        self.peer_ip = "?"

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self.peer_ip = str(stream.remote_address[0])
        self._timer = self.cache.runtime.call_later(self.cache.config.request_timeout, self.abort)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            self._respond(exc.code or 400, "ERROR: bad request\r\n")
            return
        for ev in events:
            if isinstance(ev, Request):
                if ev.method not in ("GET", "HEAD"):
                    self._respond(405, "ERROR: only GET\r\n")
                else:
                    status, body = self.cache.handle(ev.target, self.peer_ip)
                    self._respond(status, body, head=ev.method == "HEAD")
                return
            if isinstance(ev, ConnectionClosed):
                self.close()
                return

    def eof_received(self) -> None:
        self.close()

    def _respond(self, status: int, body: str, *, head: bool = False) -> None:
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        data = body.encode("utf-8")
        headers = Headers(
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(data))),
                ("Server", f"{CACHE_NAME}/{__version__}"),
                ("Connection", "close"),
            ]
        )
        try:
            self.conn.send_response(Response(status, reasons.get(status, "Error"), headers))
            if not head and data:
                self.conn.send_data(data)
            self.conn.send_end()
            out = self.conn.data_to_send()
        except LocalProtocolError:
            out = b""
        if self.stream is not None and out:
            self.stream.write(out)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel()
        if self.stream is not None:
            self.stream.close()

    def abort(self) -> None:
        self._timer = None
        if self.stream is not None and not self.closed:
            self.closed = True
            self.stream.abort()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.closed = True
        self._cancel()
        if self in self.cache._handlers:
            self.cache._handlers.remove(self)


# ---------------------------------------------------------------- client

Done = Callable[[GWebCacheReply | None, str | None], None]


class _Fetch(BaseStreamHandler):
    """One GET of a cache URL; ``done(reply, None)`` or ``done(None, why)`` once."""

    def __init__(self, client: GWebCacheClient, url: str, query: str, done: Done,
                 redirects: int = 0) -> None:  # fmt: skip
        self.client = client
        self.url = url
        self.query = query
        self.done = done
        self.redirects = redirects
        self.conn = ClientConnection()
        self.stream: Stream | None = None
        self.status: int | None = None
        self.location: str | None = None
        self.body = bytearray()
        self.finished = False
        self.timer: Timer | None = None
        self.path = "/"
        self.host_header = ""

    def start(self) -> None:
        rt = self.client.runtime
        try:
            address, path = parse_cache_url(self.url)
        except ConfigError as exc:
            self._finish(None, str(exc))
            return
        self.path = path + ("&" if "?" in path else "?") + self.query
        self.host_header = address[0] if address[1] == 80 else f"{address[0]}:{address[1]}"
        self.timer = rt.call_later(CLIENT_TIMEOUT, lambda: self._finish(None, "timed out"))
        rt.connect(address, self, timeout=CLIENT_TIMEOUT)

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        if self.finished:
            stream.abort()
            return
        headers = Headers(
            [
                ("Host", self.host_header),
                ("User-Agent", f"peerlab/{__version__}"),
                ("Connection", "close"),
            ]
        )
        self.conn.send_request(Request("GET", self.path, headers))
        stream.write(self.conn.data_to_send())

    def connection_failed(self, exc: NetworkError) -> None:
        self._finish(None, str(exc))

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            self._events(self.conn.receive_data(data))
        except RemoteProtocolError as exc:
            self._finish(None, f"bad HTTP from the cache: {exc}")

    def eof_received(self) -> None:
        if self.finished:
            return
        try:
            self._events(self.conn.receive_eof())
        except RemoteProtocolError as exc:
            self._finish(None, f"bad HTTP from the cache: {exc}")

    def connection_lost(self, exc: NetworkError | None) -> None:
        if not self.finished:
            self._finish(None, str(exc) if exc else "the cache closed the connection")

    def _events(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, Response):
                self.status = ev.status
                self.location = ev.headers.get("Location")
            elif isinstance(ev, Data):
                self.body += ev.data
                if len(self.body) > MAX_RESPONSE_BYTES:
                    self._finish(None, "answer too long")
                    return
            elif isinstance(ev, EndOfMessage):
                self._complete()
                return
            elif isinstance(ev, ConnectionClosed):
                self._complete()
                return

    def _complete(self) -> None:
        status = self.status or 0
        if 300 <= status < 400 and self.location:
            if self.redirects >= MAX_REDIRECTS:
                self._finish(None, "too many redirects")
                return
            loc = self.location
            if loc.startswith("/"):
                (host, port), _ = parse_cache_url(self.url)
                loc = f"http://{host}:{port}{loc}"
            base = loc.split("?", 1)[0]
            nxt = _Fetch(self.client, base, self.query, self.done, self.redirects + 1)
            self.done = _ignore
            self._finish(None, "redirected")
            nxt.start()
            return
        if status != 200:
            self._finish(None, f"HTTP {status}")
            return
        self._finish(parse_response(self.body.decode("utf-8", "replace")), None)

    def _finish(self, reply: GWebCacheReply | None, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.stream is not None:
            self.stream.close()
        self.client._done(self)
        try:
            self.done(reply, error)
        except PeerlabError as exc:
            self.client.runtime.observer.event("gwebcache.callback_failed", error=str(exc))


def _ignore(reply: GWebCacheReply | None, error: str | None) -> None:
    pass


class GWebCacheClient:
    """Talks to GWebCaches for a servent (section 3, "Client-Side Behavior")."""

    def __init__(
        self, runtime: Runtime, *, vendor: str = "PLAB", version: str = __version__
    ) -> None:
        self.runtime = runtime
        self.vendor = vendor
        self.version = version
        self._pending: list[_Fetch] = []

    def _client_params(self) -> list[tuple[str, str]]:
        return [("client", self.vendor), ("version", self.version)]

    def _start(self, url: str, params: list[tuple[str, str]], done: Done) -> None:
        fetch = _Fetch(self, url, format_query(params + self._client_params()), done)
        self._pending.append(fetch)
        fetch.start()

    def _done(self, fetch: _Fetch) -> None:
        if fetch in self._pending:
            self._pending.remove(fetch)

    def get(self, url: str, done: Done) -> None:
        """Ask ``url`` for hosts and caches (v2 ``get``, and ``ping``)."""
        self._start(url, [("ping", "1"), ("get", "1"), ("net", "gnutella")], done)

    def hostfile(self, url: str, done: Done) -> None:
        """The v1 ``hostfile`` request."""
        self._start(url, [("hostfile", "1")], done)

    def update(
        self, url: str, address: Address, done: Done, *, cache_url: str | None = None
    ) -> None:
        """Tell ``url`` our address (and another working cache's URL)."""
        params = [("update", "1"), ("ip", f"{address[0]}:{address[1]}")]
        if cache_url is not None:
            params.append(("url", cache_url))
        params.append(("net", "gnutella"))
        self._start(url, params, done)

    def close(self) -> None:
        """Abandon every request in flight (their ``done`` is not called)."""
        for fetch in list(self._pending):
            fetch.done = _ignore
            fetch._finish(None, "closed")
        self._pending.clear()


__all__ = [
    "MAX_HOSTS_RETURNED",
    "MAX_URLS_RETURNED",
    "UPDATE_INTERVAL",
    "GWebCache",
    "GWebCacheClient",
    "GWebCacheConfig",
    "GWebCacheReply",
    "format_query",
    "parse_cache_url",
    "parse_response",
]
