"""Tracker clients: announce and scrape over HTTP (BEP 3, BEP 48) and UDP (BEP 15).

Written only against :mod:`peerlab.runtime.base`, so they run on real sockets
and in the simulator.  Codecs in :mod:`peerlab.wire.tracker`.  Every request
ends in exactly one callback, ``done(result, None)`` or ``done(None, exc)``,
from the runtime's loop: a tracker's ``failure reason`` (or BEP 15 error)
arrives as :class:`TrackerRefused`, garbage as
:class:`~peerlab.errors.RemoteProtocolError`, silence or a dead socket as
:class:`~peerlab.errors.NetworkError`.

Public API (stable)::

    announce(runtime, url, req, done, *, timeout=HTTP_TIMEOUT_S, local_host=None,
             max_retransmissions=UDP_MAX_RETRANSMISSIONS) -> Pending
    scrape(runtime, url, info_hashes, done, ...) -> Pending
        # http://... or udp://HOST:PORT[/...]; done(AnnounceResponse | ScrapeResponse, exc)
    http_announce(runtime, url, req, done, *, timeout=HTTP_TIMEOUT_S) -> HttpTrackerRequest
    http_scrape(runtime, url, info_hashes, done, *, timeout=HTTP_TIMEOUT_S) -> HttpTrackerRequest
    UdpTrackerClient(runtime, address, *, local_host=None,
                     base_timeout=UDP_BASE_TIMEOUT_S,
                     max_retransmissions=UDP_MAX_RETRANSMISSIONS)
        .announce(req, done) -> Pending      # done(AnnounceResponse, exc)
        .scrape(info_hashes, done) -> Pending  # done(ScrapeResponse, exc)
        .close()
    Pending.cancel()                          # done then gets a NetworkError
    TrackerRefused(reason, retry_in=None)     # a PeerlabError
    parse_tracker_url(url) -> TrackerURL(scheme, host, port, target)

Counters (prefixed ``tracker_client.``): ``udp_retransmits``, ``udp_stray``
(a datagram from elsewhere or for no request in flight), ``udp_garbage``.

A malformed or unsupported URL raises :class:`~peerlab.errors.ConfigError`
at once (no callback then).  ``timeout`` bounds an HTTP request; a UDP
request is bounded by its retransmission schedule instead.

UDP (BEP 15 "Time outs"): a request unanswered after ``15 * 2**n`` seconds
is sent again, ``n`` counting from 0; after ``max_retransmissions``
retransmissions (BEP 15 goes up to n = 8, 3840 s) the request fails.  A
connection id is reused for :data:`UDP_CONNECTION_ID_TTL_S` (BEP 15: one
minute), then fetched again; a request refused while using a cached id
fetches a fresh one once before giving up (the tracker may have restarted).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from peerlab.errors import (
    ConfigError,
    LocalProtocolError,
    NetworkError,
    PeerlabError,
    RemoteProtocolError,
)
from peerlab.overlays.httpget import HttpGet
from peerlab.proto.http import Headers, Request
from peerlab.runtime.base import (
    Address,
    DatagramEndpoint,
    Runtime,
    Timer,
)
from peerlab.wire.tracker import (
    INFO_HASH_BYTES,
    MAX_UDP_SCRAPE_HASHES,
    AnnounceRequest,
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    ScrapeRequest,
    ScrapeResponse,
    TrackerFailure,
    UdpAnnounceRequest,
    UdpAnnounceResponse,
    UdpError,
    UdpScrapeRequest,
    UdpScrapeResponse,
    decode_announce_response,
    decode_scrape_response,
    decode_udp_response,
    encode_announce_query,
    encode_scrape_query,
    encode_udp,
    scrape_url,
)

__all__ = [
    "HTTP_TIMEOUT_S",
    "UDP_BASE_TIMEOUT_S",
    "UDP_CONNECTION_ID_TTL_S",
    "UDP_MAX_RETRANSMISSIONS",
    "HttpTrackerRequest",
    "Pending",
    "TrackerRefused",
    "TrackerURL",
    "UdpTrackerClient",
    "announce",
    "http_announce",
    "http_scrape",
    "parse_tracker_url",
    "scrape",
]

#: Seconds an HTTP announce or scrape may take, connect included.
HTTP_TIMEOUT_S = 30.0
#: Largest HTTP tracker reply read: 10,000 peers as a dictionary list is
#: about 700 kB; anything bigger is not a tracker reply.
MAX_HTTP_REPLY_BYTES = 2 * 1024 * 1024
#: BEP 15: the first retransmission after 15 s, then 15 * 2**n.
UDP_BASE_TIMEOUT_S = 15.0
#: BEP 15: n is increased up to 8 (3840 s) before giving up.
UDP_MAX_RETRANSMISSIONS = 8
#: BEP 15: a client may use a connection id until one minute after receiving it.
UDP_CONNECTION_ID_TTL_S = 60.0
#: Requests one UDP client keeps in flight (each holds a timer and a callback).
MAX_UDP_PENDING = 1024
#: Identifies us in the User-Agent of HTTP announces.
USER_AGENT = "peerlab/0.1"

_HEX_KEY_RE = re.compile(r"[0-9A-Fa-f]{1,8}")


class TrackerRefused(PeerlabError):
    """The tracker answered with a refusal (BEP 3 ``failure reason``, BEP 15 error)."""

    def __init__(self, reason: str, retry_in: int | None = None) -> None:
        super().__init__(f"tracker refused: {reason}")
        self.reason = reason
        self.retry_in = retry_in


class Pending(Protocol):
    """A request in flight."""

    def cancel(self) -> None:
        """Abandon it; ``done`` is called with a NetworkError (if not yet called)."""


@dataclass(frozen=True, slots=True)
class TrackerURL:
    """A tracker URL taken apart: ``target`` is path plus query (HTTP only)."""

    scheme: str
    host: str
    port: int
    target: str

    @property
    def address(self) -> Address:
        return (self.host, self.port)


def parse_tracker_url(url: str) -> TrackerURL:
    """``http://host[:port]/path[?query]`` or ``udp://host:port[/path]``.

    Raises :class:`~peerlab.errors.ConfigError` for anything else (https is
    not spoken here).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad tracker URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "udp") or not host:
        raise ConfigError(f"not an http:// or udp:// tracker URL: {url!r}")
    if port is None:
        if scheme == "udp":
            raise ConfigError(f"a udp:// tracker URL needs a port: {url!r}")
        port = 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return TrackerURL(scheme, host, port, target)


# --------------------------------------------------------------------- HTTP


class HttpTrackerRequest(HttpGet):
    """One HTTP announce or scrape on a fresh connection."""

    closed_message = "tracker closed the connection before replying"
    failed_prefix = "tracker reply failed"
    too_large_message = "tracker reply too large"
    cancelled_message = "tracker request cancelled"

    def __init__(
        self,
        runtime: Runtime,
        url: TrackerURL,
        query: str,
        parse: Callable[[bytes], Any],
        done: Callable[[Any, Exception | None], None],
        timeout: float,
    ) -> None:
        self.url = url
        self._parse = parse
        self._done = done
        self.timeout_message = f"tracker {url.host}:{url.port} did not answer in time"
        sep = "&" if "?" in url.target else "?"
        host = f"[{url.host}]" if ":" in url.host else url.host
        request = Request(
            "GET",
            url.target + sep + query,
            Headers(
                [
                    ("Host", f"{host}:{url.port}"),
                    ("User-Agent", USER_AGENT),
                    ("Accept-Encoding", "identity"),
                    ("Connection", "close"),
                ]
            ),
        )
        super().__init__(
            runtime, url.address, request, timeout=timeout, max_body=MAX_HTTP_REPLY_BYTES
        )

    def on_body(self, body: bytes) -> Any:
        if self.status != 200:
            # Some trackers put a failure reason in an error response.
            try:
                result = self._parse(body)
            except RemoteProtocolError:
                raise RemoteProtocolError(f"tracker answered HTTP {self.status}") from None
            if not isinstance(result, TrackerFailure):
                raise RemoteProtocolError(f"tracker answered HTTP {self.status}")
        else:
            result = self._parse(body)
        if isinstance(result, TrackerFailure):
            raise TrackerRefused(result.reason, result.retry_in)
        return result

    def deliver(self, result: Any, exc: Exception | None) -> None:
        self._done(result, exc)


def http_announce(
    runtime: Runtime,
    url: str,
    req: AnnounceRequest,
    done: Callable[[AnnounceResponse | None, Exception | None], None],
    *,
    timeout: float = HTTP_TIMEOUT_S,
) -> HttpTrackerRequest:
    """BEP 3 announce to an ``http://`` tracker."""
    parsed = parse_tracker_url(url)
    if parsed.scheme != "http":
        raise ConfigError(f"not an http:// tracker URL: {url!r}")
    return HttpTrackerRequest(
        runtime, parsed, encode_announce_query(req), decode_announce_response, done, timeout
    )


def http_scrape(
    runtime: Runtime,
    url: str,
    info_hashes: list[bytes] | tuple[bytes, ...],
    done: Callable[[ScrapeResponse | None, Exception | None], None],
    *,
    timeout: float = HTTP_TIMEOUT_S,
) -> HttpTrackerRequest:
    """BEP 48 scrape; ``url`` is the announce URL (its scrape URL is derived)
    or a scrape URL itself."""
    target = url
    if not urlsplit(url).path.rpartition("/")[2].startswith("scrape"):
        derived = scrape_url(url)
        if derived is None:
            raise ConfigError(f"tracker {url!r} has no scrape URL (BEP 48)")
        target = derived
    parsed = parse_tracker_url(target)
    query = encode_scrape_query(ScrapeRequest(tuple(info_hashes)))
    return HttpTrackerRequest(runtime, parsed, query, decode_scrape_response, done, timeout)


# ---------------------------------------------------------------------- UDP


def _udp_key(key: str | None) -> int:
    """BEP 15's 32-bit key from BEP 3's text key (hex as is, else its CRC-32)."""
    if key is None:
        return 0
    if _HEX_KEY_RE.fullmatch(key):
        return int(key, 16)
    return zlib.crc32(key.encode("ascii", "replace"))


def _ipv4_int(ip: str | None) -> int:
    if ip is None:
        return 0
    try:
        return int(ipaddress.IPv4Address(ip))
    except ValueError:
        return 0  # BEP 15 carries only IPv4 here; the source address stands


class _UdpTransaction:
    """One announce or scrape: connect (unless a fresh id is cached), then the request."""

    def __init__(
        self,
        client: UdpTrackerClient,
        build: Callable[[int, int], UdpAnnounceRequest | UdpScrapeRequest],
        finish: Callable[[Any], Any],
        done: Callable[[Any, Exception | None], None],
    ) -> None:
        self.client = client
        self.build = build
        self.finish_result = finish
        self._done: Callable[[Any, Exception | None], None] | None = done
        self.tid = 0
        self.phase = "connect"
        self.packet = b""
        self.n = 0
        self.cached_id = False
        self.retried_connect = False
        self.timer: Timer | None = None

    @property
    def active(self) -> bool:
        return self._done is not None

    def cancel(self) -> None:
        self.fail(NetworkError("tracker request cancelled"))

    def start(self) -> None:
        cid = self.client._cached_connection_id()
        if cid is not None:
            self.cached_id = True
            self._request(cid)
        else:
            self._connect()

    def _connect(self) -> None:
        self.phase = "connect"
        self.n = 0
        self.tid = self.client._new_tid(self)
        self.packet = encode_udp(ConnectRequest(self.tid))
        self._send()

    def _request(self, connection_id: int) -> None:
        self.phase = "request"
        self.n = 0
        self.tid = self.client._new_tid(self)
        self.packet = encode_udp(self.build(connection_id, self.tid))
        self._send()

    def _send(self) -> None:
        c = self.client
        c._send(self.packet)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = c.runtime.call_later(c.base_timeout * (2**self.n), self._timeout)

    def _timeout(self) -> None:
        self.timer = None
        if not self.active:
            return
        c = self.client
        if self.n >= c.max_retransmissions:
            where = f"{c.address[0]}:{c.address[1]}"
            self.fail(NetworkError(f"UDP tracker {where} did not answer"))
            return
        self.n += 1
        c.runtime.observer.count("tracker_client.udp_retransmits")
        if self.phase == "request" and c._cached_connection_id() is None:
            # BEP 15: the connection id expired meanwhile: fetch a new one.
            self._connect()
            return
        self._send()

    def reply(self, packet: Any) -> None:
        c = self.client
        if isinstance(packet, UdpError):
            if self.phase == "request" and self.cached_id and not self.retried_connect:
                self.retried_connect = True
                self.cached_id = False
                c._forget_connection_id()
                c._release_tid(self.tid)
                self._connect()
                return
            self.fail(TrackerRefused(packet.message))
            return
        if self.phase == "connect":
            if not isinstance(packet, ConnectResponse):
                self.fail(RemoteProtocolError("UDP tracker answered a connect with another action"))
                return
            c._store_connection_id(packet.connection_id)
            c._release_tid(self.tid)
            self._request(packet.connection_id)
            return
        try:
            result = self.finish_result(packet)
        except RemoteProtocolError as exc:
            self.fail(exc)
            return
        self._complete(result, None)

    def fail(self, exc: Exception) -> None:
        self._complete(None, exc)

    def _complete(self, result: Any, exc: Exception | None) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.client._release_tid(self.tid)
        done(result, exc)


class UdpTrackerClient:
    """Announces and scrapes to one BEP 15 tracker over one UDP socket.

    ``local_host``: where to bind (default: 127.0.0.1 for a loopback tracker,
    else the wildcard of the tracker's address family).
    """

    def __init__(
        self,
        runtime: Runtime,
        address: Address,
        *,
        local_host: str | None = None,
        base_timeout: float = UDP_BASE_TIMEOUT_S,
        max_retransmissions: int = UDP_MAX_RETRANSMISSIONS,
    ) -> None:
        if base_timeout <= 0 or max_retransmissions < 0:
            raise ConfigError("UDP tracker timeouts must be positive")
        self.runtime = runtime
        self.address = address
        self.base_timeout = base_timeout
        self.max_retransmissions = max_retransmissions
        self.ipv6 = ":" in address[0]
        if local_host is None:
            local_host = _default_local(address[0])
        self.local_host = local_host
        self._endpoint: DatagramEndpoint | None = None
        self._pending: dict[int, _UdpTransaction] = {}
        self._connection_id: int | None = None
        self._connection_id_expires = 0.0
        self._closed = False

    # ----------------------------------------------------------- requests

    def announce(
        self,
        req: AnnounceRequest,
        done: Callable[[AnnounceResponse | None, Exception | None], None],
    ) -> Pending:
        """BEP 15 announce; the reply's peers come back as an AnnounceResponse."""
        num_want = -1 if req.numwant is None else min(req.numwant, 0x7FFFFFFF)

        def build(cid: int, tid: int) -> UdpAnnounceRequest:
            return UdpAnnounceRequest(
                cid, tid, req.info_hash, req.peer_id, req.downloaded, req.left, req.uploaded,
                req.event, _ipv4_int(req.ip), _udp_key(req.key), num_want, req.port,
            )  # fmt: skip

        def finish(packet: Any) -> AnnounceResponse:
            if not isinstance(packet, UdpAnnounceResponse):
                raise RemoteProtocolError("UDP tracker answered an announce with another action")
            return AnnounceResponse(
                interval=packet.interval,
                peers=packet.peers,
                complete=packet.seeders,
                incomplete=packet.leechers,
            )

        return self._start(build, finish, done)

    def scrape(
        self,
        info_hashes: list[bytes] | tuple[bytes, ...],
        done: Callable[[ScrapeResponse | None, Exception | None], None],
    ) -> Pending:
        """BEP 15 scrape of 1-74 info-hashes."""
        hashes = tuple(info_hashes)
        if not 1 <= len(hashes) <= MAX_UDP_SCRAPE_HASHES:
            raise LocalProtocolError(f"a UDP scrape names 1-{MAX_UDP_SCRAPE_HASHES} info-hashes")
        if any(len(h) != INFO_HASH_BYTES for h in hashes):
            raise LocalProtocolError("info-hashes are 20 bytes")

        def build(cid: int, tid: int) -> UdpScrapeRequest:
            return UdpScrapeRequest(cid, tid, hashes)

        def finish(packet: Any) -> ScrapeResponse:
            if not isinstance(packet, UdpScrapeResponse):
                raise RemoteProtocolError("UDP tracker answered a scrape with another action")
            if len(packet.stats) != len(hashes):
                raise RemoteProtocolError("UDP scrape reply does not answer every info-hash")
            return ScrapeResponse(tuple(zip(hashes, packet.stats, strict=True)))

        return self._start(build, finish, done)

    def close(self) -> None:
        """Fail every request in flight and close the socket."""
        if self._closed:
            return
        self._closed = True
        for t in list(self._pending.values()):
            t.fail(NetworkError("UDP tracker client closed"))
        self._pending.clear()
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None

    # ---------------------------------------------------------- internals

    def _start(
        self,
        build: Callable[[int, int], UdpAnnounceRequest | UdpScrapeRequest],
        finish: Callable[[Any], Any],
        done: Callable[[Any, Exception | None], None],
    ) -> _UdpTransaction:
        if self._closed:
            raise LocalProtocolError("the UDP tracker client is closed")
        if len(self._pending) >= MAX_UDP_PENDING:
            raise LocalProtocolError("too many UDP tracker requests in flight")
        if self._endpoint is None:
            self._endpoint = self.runtime.bind_udp((self.local_host, 0), _ClientSocket(self))
        t = _UdpTransaction(self, build, finish, done)
        # Start from the loop, so ``done`` never runs inside this call.
        self.runtime.call_soon(lambda: self._begin(t))
        return t

    def _begin(self, t: _UdpTransaction) -> None:
        if not t.active:
            return
        if self._closed:
            t.fail(NetworkError("UDP tracker client closed"))
            return
        try:
            t.start()
        except PeerlabError as exc:
            t.fail(exc)

    def _new_tid(self, t: _UdpTransaction) -> int:
        rng = self.runtime.rng
        while True:
            tid = rng.getrandbits(32)
            if tid not in self._pending:
                self._pending[tid] = t
                return tid

    def _release_tid(self, tid: int) -> None:
        self._pending.pop(tid, None)

    def _cached_connection_id(self) -> int | None:
        if self._connection_id is not None and self.runtime.now() < self._connection_id_expires:
            return self._connection_id
        return None

    def _store_connection_id(self, cid: int) -> None:
        self._connection_id = cid
        self._connection_id_expires = self.runtime.now() + UDP_CONNECTION_ID_TTL_S

    def _forget_connection_id(self) -> None:
        self._connection_id = None

    def _send(self, packet: bytes) -> None:
        if self._endpoint is not None:
            self._endpoint.send_to(packet, self.address)

    def _datagram(self, data: bytes, addr: Address) -> None:
        obs = self.runtime.observer
        if addr != self.address:
            obs.count("tracker_client.udp_stray")
            return
        try:
            packet = decode_udp_response(data, ipv6=self.ipv6)
        except RemoteProtocolError as exc:
            obs.count("tracker_client.udp_garbage")
            obs.event("tracker_client.udp_garbage", error=str(exc)[:200])
            return
        t = self._pending.get(packet.transaction_id)
        if t is None:
            obs.count("tracker_client.udp_stray")  # late duplicate or a stranger
            return
        t.reply(packet)


class _ClientSocket:
    def __init__(self, client: UdpTrackerClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self.client._datagram(data, addr)
        except Exception as exc:  # the handler boundary
            self.client.runtime.observer.event("tracker_client.handler_error", error=repr(exc))

    def error_received(self, exc: NetworkError) -> None:
        self.client.runtime.observer.event("tracker_client.udp_error", error=str(exc))


def _default_local(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0"
    if ip.is_loopback:
        return str(ip)
    return "::" if ip.version == 6 else "0.0.0.0"


# ---------------------------------------------------------- one-shot helpers


class _OneShot:
    """A UDP request with its own client, closed when the request ends."""

    def __init__(self, client: UdpTrackerClient) -> None:
        self.client = client
        self.inner: Pending | None = None

    def cancel(self) -> None:
        if self.inner is not None:
            self.inner.cancel()
        self.client.close()


def announce(
    runtime: Runtime,
    url: str,
    req: AnnounceRequest,
    done: Callable[[AnnounceResponse | None, Exception | None], None],
    *,
    timeout: float = HTTP_TIMEOUT_S,
    local_host: str | None = None,
    max_retransmissions: int = UDP_MAX_RETRANSMISSIONS,
) -> Pending:
    """Announce to ``url`` (``http://`` or ``udp://``), one request."""
    parsed = parse_tracker_url(url)
    if parsed.scheme == "http":
        return http_announce(runtime, url, req, done, timeout=timeout)
    client = UdpTrackerClient(
        runtime, parsed.address, local_host=local_host, max_retransmissions=max_retransmissions
    )
    shot = _OneShot(client)

    def finished(result: AnnounceResponse | None, exc: Exception | None) -> None:
        client.close()
        done(result, exc)

    shot.inner = client.announce(req, finished)
    return shot


def scrape(
    runtime: Runtime,
    url: str,
    info_hashes: list[bytes] | tuple[bytes, ...],
    done: Callable[[ScrapeResponse | None, Exception | None], None],
    *,
    timeout: float = HTTP_TIMEOUT_S,
    local_host: str | None = None,
    max_retransmissions: int = UDP_MAX_RETRANSMISSIONS,
) -> Pending:
    """Scrape ``url`` (``http://`` announce/scrape URL or ``udp://``), one request."""
    parsed = parse_tracker_url(url)
    if parsed.scheme == "http":
        return http_scrape(runtime, url, info_hashes, done, timeout=timeout)
    client = UdpTrackerClient(
        runtime, parsed.address, local_host=local_host, max_retransmissions=max_retransmissions
    )
    shot = _OneShot(client)

    def finished(result: ScrapeResponse | None, exc: Exception | None) -> None:
        client.close()
        done(result, exc)

    shot.inner = client.scrape(info_hashes, finished)
    return shot
