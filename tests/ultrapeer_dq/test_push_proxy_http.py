"""The push-proxy HTTP endpoint of the upload service (``push_proxy``
sections 4.2 and 5), on 127.0.0.1: the request reaches the node's hook with
its query and ``X-Node``; the answer's status is the hook's; without a hook
the resource does not exist; a firewalled servent's files carry
``X-Push-Proxies``."""

from __future__ import annotations

from pathlib import Path

from servekit import fetch, make_shares, start_server, stop_server

from peerlab.overlays.gnutella.pushproxy import push_proxy_target
from peerlab.wire.http import Headers

GUID = bytes(range(16))


async def test_push_proxy_endpoint_answers_with_the_hooks_status(tmp_path: Path) -> None:
    shares = make_shares(tmp_path)
    srv = await start_server(shares)
    try:
        target = push_proxy_target(GUID)
        # No hook: we are nobody's push proxy.
        assert (await fetch(srv.port, target, [("X-Node", "192.0.2.1:6346")])).status == 404
        seen: list[tuple[str, str | None]] = []

        def hook(query: str, headers: Headers) -> int:
            seen.append((query, headers.get("X-Node")))
            return 202 if headers.get("X-Node") else 400

        srv.service.push_proxy = hook
        reply = await fetch(srv.port, target, [("X-Node", "192.0.2.1:6346")])
        assert reply.status == 202 and reply.body == b"Push Proxy: Accepted\n"
        assert seen == [(target.partition("?")[2], "192.0.2.1:6346")]
        assert (await fetch(srv.port, target)).status == 400
        assert srv.observer.counters["upload.push_proxy.202"] == 1
        assert srv.observer.counters["upload.push_proxy.400"] == 1

        # A file served by a firewalled servent names its proxies.
        f = shares.file("big.bin")
        plain = await fetch(srv.port, f"/uri-res/N2R?{f.urn}", method="HEAD")
        assert plain.header("X-Push-Proxies") is None
        srv.service.our_push_proxies = lambda: [("192.0.2.7", 6346), ("192.0.2.8", 6347)]
        reply = await fetch(srv.port, f"/uri-res/N2R?{f.urn}", method="HEAD")
        assert reply.header("X-Push-Proxies") == "192.0.2.7:6346,192.0.2.8:6347"
    finally:
        stop_server(srv)
        shares.catalog.close()
