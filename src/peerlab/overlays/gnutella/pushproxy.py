"""Push proxies (gtk-gnutella ``doc/gnutella/push_proxy``, version 0.6).

A firewalled servent (FS) cannot be reached, so downloads from it go by
Push.  A routed Push must travel the reverse path of the Query Hit, which
churn breaks.  With push proxies the FS asks its ultrapeers to relay for it:

1. FS -> ultrapeer: ``PushProxyRequest`` (``LIME/21``, message GUID = the
   FS's servent GUID), section 3;
2. ultrapeer -> FS: ``PushProxyAck`` (``LIME/22v2``: the IP and port where
   the ultrapeer takes push-proxy HTTP requests), section 3.1;
3. FS's Query Hits carry the proxies in GGEP ``PUSH`` (section 4.1);
4. downloader (D) -> proxy: ``GET /gnutella/push-proxy?ServerId=<base32
   servent GUID>`` with ``X-Node: <IP>:<port>`` (where the FS should send its
   GIV), section 5;
5. the proxy sends a Push (file index 0) one hop to the FS and answers
   ``202``; ``410`` when the FS is not connected, ``400`` for a malformed
   request.  The FS then connects to D and sends ``GIV 0:<GUID>/``.

Parts, all written against the runtime interface:

* :class:`PushProxies` -- the servent's side, both roles: as an ultrapeer
  the table of servents we proxy for (bounded by
  :data:`MAX_PROXIED`) and :meth:`PushProxies.relay`; as a firewalled
  servent the proxies our ultrapeers acknowledged
  (:meth:`PushProxies.proxies`, at most :data:`MAX_PROXIES_ADVERTISED`).
* :func:`parse_push_proxy_request` / :func:`push_proxy_target` -- the HTTP
  request's two halves (the serving side answers through
  :class:`~peerlab.overlays.transfer.server.UploadService`'s
  ``push_proxy`` hook).
* :class:`ProxyBook` and :func:`request_push` -- the downloader's side:
  which proxies each servent GUID gave, and one HTTP request to a proxy.

Counters: ``push_proxy.requested`` (a LIME/21 came), ``push_proxy.acked``,
``push_proxy.refused``, ``push_proxy.cancelled``, ``push_proxy.relayed``
(a Push sent for an HTTP request), ``push_proxy.not_connected`` (410),
``push_proxy.acks`` (a LIME/22 received: we have a proxy).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote

from peerlab.errors import RemoteProtocolError
from peerlab.overlays.gnutella.flow import Queued
from peerlab.overlays.gnutella.hostcache import usable_address
from peerlab.overlays.httpget import HttpGet
from peerlab.proto.http import Headers, Request, Response
from peerlab.runtime.base import Address, Runtime
from peerlab.wire.gnutella import (
    GUID_LENGTH,
    PUSH,
    VENDOR,
    Push,
    PushProxyAck,
    PushProxyRequest,
    encode_payload,
    encode_vendor,
)
from peerlab.wire.handshake import parse_host_port
from peerlab.wire.urn import b32, unb32

if TYPE_CHECKING:
    from peerlab.overlays.gnutella.servent import Link, Servent

#: The HTTP resource a proxy answers (section 5).
PUSH_PROXY_PATH = "/gnutella/push-proxy"
#: Servents one ultrapeer proxies for: its leaves (gtk-gnutella keeps a
#: few hundred leaves at most); beyond this a request is refused, not stored.
MAX_PROXIED = 1024
#: Proxies we list in our hits: gtk-gnutella and LimeWire send at most 4.
MAX_PROXIES_ADVERTISED = 4
#: Proxies kept per servent GUID by a downloader, and GUIDs remembered.
MAX_PROXIES_PER_SERVENT = 8
MAX_BOOK_SERVENTS = 4096
#: Seconds a downloader waits for a proxy's answer (section 5: "no response
#: at all" means do not use it again).
PROXY_REQUEST_TIMEOUT = 10.0
#: Bytes of a proxy's answer body read at most (a status line is what counts).
MAX_PROXY_ANSWER = 4096
#: The version of LIME/21 and LIME/22 we send (section 3.1: "LIME/21v2").
PROXY_MESSAGE_VERSION = 2

# HTTP answers (section 5).
STATUS_SENT = 202
STATUS_BAD_REQUEST = 400
STATUS_NOT_CONNECTED = 410


class PushProxies:
    """A servent's push-proxy state, as proxy and as firewalled servent."""

    def __init__(self, servent: Servent) -> None:
        self.servent = servent
        #: Servent GUID -> link id of the servents we relay Pushes for.
        self._proxied: dict[bytes, int] = {}
        #: Link id -> the proxy address that ultrapeer acknowledged for us.
        self._mine: dict[int, Address] = {}

    # -- as a firewalled servent

    def link_opened(self, link: Link) -> None:
        """Ask a new ultrapeer neighbour to be our proxy when we are firewalled
        (section 3): LIME/21 with our servent GUID as the message GUID."""
        if not self.servent.config.firewalled or link.role != "ultrapeer":
            return
        body = encode_vendor(PushProxyRequest(), PROXY_MESSAGE_VERSION)
        link.enqueue(Queued(self.servent.guid, VENDOR, 1, 0, encode_payload(body)))

    def on_ack(self, link: Link, guid: bytes, ack: PushProxyAck) -> None:
        """LIME/22: ``link``'s ultrapeer relays for us at ``ack``'s address
        (v1 gives only the port: the IP is the connection's)."""
        if guid != self.servent.guid:
            self.servent._drop(link, "push_proxy_ack_guid")
            return
        ip = ack.ip if ack.ip is not None else link.address[0]
        address = (ip, ack.port)
        if not usable_address(address):
            self.servent._drop(link, "push_proxy_ack_address")
            return
        self._mine[link.id] = address
        self.servent.counters.count("push_proxy.acks")

    def proxies(self) -> list[Address]:
        """The proxies to list in our hits' GGEP ``PUSH`` (section 4.1)."""
        if not self.servent.config.firewalled:
            return []
        return list(self._mine.values())[:MAX_PROXIES_ADVERTISED]

    # -- as a proxy

    def on_request(self, link: Link, guid: bytes) -> None:
        """LIME/21 from ``link``: become its push proxy and acknowledge with
        the address where we take HTTP requests (section 3.1)."""
        counters = self.servent.counters
        counters.count("push_proxy.requested")
        ip, port = self.servent.address
        if (
            len(guid) != GUID_LENGTH
            or not self.servent.accepting
            or not usable_address((ip, port))
            or (guid not in self._proxied and len(self._proxied) >= MAX_PROXIED)
        ):
            counters.count("push_proxy.refused")
            return
        self._proxied[guid] = link.id
        body = encode_vendor(PushProxyAck(port, ip), PROXY_MESSAGE_VERSION)
        link.enqueue(Queued(guid, VENDOR, 1, 0, encode_payload(body)))
        counters.count("push_proxy.acked")

    def on_cancel(self, link: Link, guid: bytes) -> None:
        """GTKG/21 (``msg/proxy_cancel``): the servent needs us no more."""
        if self._proxied.get(guid) == link.id:
            del self._proxied[guid]
            self.servent.counters.count("push_proxy.cancelled")

    def link_closed(self, link: Link) -> None:
        self._mine.pop(link.id, None)
        for guid in [g for g, lid in self._proxied.items() if lid == link.id]:
            del self._proxied[guid]

    def proxied(self) -> list[bytes]:
        """Servent GUIDs we relay Pushes for."""
        return list(self._proxied)

    def handle_http(self, query: str, headers: Mapping[str, str] | Headers) -> int:
        """The whole HTTP request (section 5): parse, then :meth:`relay`."""
        try:
            guid, address = parse_push_proxy_request(query, headers)
        except RemoteProtocolError:
            self.servent.counters.count("push_proxy.bad_request")
            return STATUS_BAD_REQUEST
        return self.relay(guid, address)

    def relay(self, servent_guid: bytes, address: Address) -> int:
        """An HTTP push-proxy request (section 5): send a Push (file index 0)
        one hop to ``servent_guid`` asking it to connect to ``address``.
        Returns the HTTP status: 202 sent, 410 not connected, 400 bad."""
        counters = self.servent.counters
        if not usable_address(address):
            return STATUS_BAD_REQUEST
        link_id = self._proxied.get(servent_guid)
        link = self.servent._links.get(link_id) if link_id is not None else None
        if link is None or not link.is_open:
            counters.count("push_proxy.not_connected")
            return STATUS_NOT_CONNECTED
        payload = encode_payload(Push(servent_guid, 0, address[0], address[1]))
        link.enqueue(Queued(self.servent._new_guid(), PUSH, 1, 0, payload))
        counters.count("push_proxy.relayed")
        self.servent.runtime.observer.event(
            "gnutella.push_proxy_relayed",
            to=f"{address[0]}:{address[1]}",
            servent=servent_guid.hex(),
        )
        return STATUS_SENT


# ------------------------------------------------------------------ HTTP


def push_proxy_target(servent_guid: bytes) -> str:
    """The request target for ``servent_guid`` (section 5: base32)."""
    return f"{PUSH_PROXY_PATH}?ServerId={quote(b32(servent_guid))}"


def parse_push_proxy_request(
    query: str, headers: Mapping[str, str] | Headers
) -> tuple[bytes, Address]:
    """The servent GUID and GIV address of a push-proxy request: ``query`` is
    the target's query string, ``headers`` its headers (case-insensitive
    ``get``).  ``ServerId`` is base32 (section 5); gtk-gnutella's ``guid``
    (32 hex digits) is read too.  Raises :class:`RemoteProtocolError` (400)."""
    params = {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=True)[:16]}
    guid: bytes | None = None
    if "serverid" in params:
        guid = unb32(params["serverid"])
    elif "guid" in params:
        try:
            guid = bytes.fromhex(params["guid"])
        except ValueError:
            raise RemoteProtocolError("push-proxy guid is not hex") from None
    if guid is None or len(guid) != GUID_LENGTH:
        raise RemoteProtocolError("push-proxy request names no 16-byte servent id")
    node = headers.get("X-Node")
    address = parse_host_port(node.strip()) if node else None
    if address is None or not usable_address(address):
        raise RemoteProtocolError("push-proxy request without a usable X-Node")
    return guid, address


class ProxyBook:
    """A downloader's memory of the push proxies each servent's hits listed,
    newest servents kept, bounded by :data:`MAX_BOOK_SERVENTS`."""

    def __init__(self) -> None:
        self._book: OrderedDict[bytes, list[Address]] = OrderedDict()

    def learn(self, servent_guid: bytes, proxies: Iterable[Address]) -> None:
        fresh = [p for p in proxies if usable_address(p)][:MAX_PROXIES_PER_SERVENT]
        if not fresh:
            return
        self._book[servent_guid] = fresh
        self._book.move_to_end(servent_guid)
        while len(self._book) > MAX_BOOK_SERVENTS:
            self._book.popitem(last=False)

    def proxies(self, servent_guid: bytes) -> list[Address]:
        return list(self._book.get(servent_guid, ()))

    def forget(self, servent_guid: bytes, proxy: Address) -> None:
        """Section 5: a proxy that answered an error (or not at all) is not
        contacted again for that servent."""
        got = self._book.get(servent_guid)
        if got is not None and proxy in got:
            got.remove(proxy)


PushDone = Callable[[int | None, Exception | None], None]


class PushProxyRequestGet(HttpGet):
    """One push-proxy request in flight (section 5)."""

    closed_message = "push proxy closed the connection before answering"
    failed_prefix = "push-proxy request failed"
    too_large_message = "push-proxy answer too large"
    cancelled_message = "push-proxy request cancelled"

    def __init__(
        self,
        runtime: Runtime,
        proxy: Address,
        servent_guid: bytes,
        node: Address,
        done: PushDone,
        timeout: float,
    ) -> None:
        self._done = done
        self.timeout_message = f"push proxy {proxy[0]}:{proxy[1]} did not answer"
        request = Request(
            "GET",
            push_proxy_target(servent_guid),
            Headers([
                ("Host", f"{proxy[0]}:{proxy[1]}"),
                ("X-Node", f"{node[0]}:{node[1]}"),
                ("Connection", "close"),
            ]),
        )  # fmt: skip
        super().__init__(runtime, proxy, request, timeout=timeout, max_body=MAX_PROXY_ANSWER)

    def on_response(self, response: Response) -> None:
        if response.status != STATUS_SENT:
            raise RemoteProtocolError(f"push proxy refused: {response.status} {response.reason}")

    def on_body(self, body: bytes) -> int:
        return self.status or STATUS_SENT

    def deliver(self, result: int | None, exc: Exception | None) -> None:
        self._done(result, exc)


def request_push(
    runtime: Runtime,
    proxy: Address,
    servent_guid: bytes,
    node: Address,
    done: PushDone,
    timeout: float = PROXY_REQUEST_TIMEOUT,
) -> PushProxyRequestGet:
    """Ask ``proxy`` to push ``servent_guid`` toward ``node`` (our GIV
    address).  ``done(202, None)`` or ``done(None, exc)`` is called exactly
    once, from the runtime's loop, within ``timeout`` seconds."""
    return PushProxyRequestGet(runtime, proxy, servent_guid, node, done, timeout)


__all__ = [
    "PUSH_PROXY_PATH",
    "ProxyBook",
    "PushProxies",
    "parse_push_proxy_request",
    "push_proxy_target",
    "request_push",
]
