"""The node's control API: JSON over HTTP on 127.0.0.1, guarded by a token.

The node listens on ``127.0.0.1`` only (never another address: this is its
remote control) and writes ``<data_dir>/control.json`` with mode 0600::

    {"port": 51234, "token": "...", "pid": 4242, "peer_port": 6346}

Every request carries ``Authorization: Bearer <token>``; without it, or with
a wrong one, the answer is ``401``.  So only someone who can read the data
directory can drive the node.  Errors come back as ``{"error": "one line"}``
with a 4xx status (the user's mistake) or 500 (ours, details in the node's log).

The same server carries the node's web page (:mod:`peerlab.web`, issue 8),
whose browser logs in once and then sends a session cookie instead of the
token.  Another web page open in the same browser must not drive the node, so
every request is checked before anything else (:func:`foreign_request`): an
``Origin`` other than the server's own, a ``Sec-Fetch-Site`` of
``cross-site``/``same-site`` on ``/api/`` or any POST, or (on loopback) a ``Host`` that is
not a loopback name with our port (DNS rebinding) gets ``403``; the web
layer then asks a cookie's state-changing requests for their CSRF token.

Endpoints (all JSON)::

    GET    /api/status                  node, ports, counters
    GET    /api/shares                  shared folders (?files=1: and the files)
    POST   /api/shares      {path}      share a folder (then scan)
    DELETE /api/shares      {path}      stop sharing a folder
    POST   /api/scan                    start a rescan (no-op if one runs)
    GET    /api/scan                    progress of the current/last scan
    POST   /api/search      {text, field, limit, ttl?}
    GET    /api/results                 every result of this session, by id
    POST   /api/downloads   {ref}       result id or urn:sha1
    POST   /api/downloads/{id}/{pause|resume|cancel}
    POST   /api/downloads/clear         forget finished downloads
    GET    /api/transfers               downloads and uploads
    GET    /api/peers                   configured peers
    POST   /api/peers       {address}   add a peer (HOST:PORT)
    DELETE /api/peers       {address}
    POST   /api/browse      {address, text, limit}
    POST   /api/shutdown                stop the node cleanly
    GET    /api/torrents                BitTorrent: torrents (peers, piece map) and session
    POST   /api/torrents    {torrent (base64) | magnet, seed_ratio?, seed_time?,
                             up_limit?, down_limit?, save_path?, paused?}
    POST   /api/torrents/{info-hash}/{stop|resume|remove|set}   (set: goals, limits)

:class:`ControlClient` is the small client the CLI uses.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from peerlab.apps.config import CONTROL_HOST
from peerlab.errors import AddressInUse, ConfigError, NetworkError, PeerlabError

log = logging.getLogger("peerlab.control")

CONTROL_FILE = "control.json"
#: Bytes of randomness in the token: 256 bits, beyond guessing.
TOKEN_BYTES = 32
#: Largest request body the API accepts; its requests are a few hundred bytes.
MAX_REQUEST_BYTES = 64 * 1024
#: ... except ``POST /api/torrents``, which carries a .torrent in base64: 16 MiB
#: holds the pieces of a 100 GiB torrent at 256 KiB pieces (and the app's
#: body limit is this one; every other endpoint checks its own).
MAX_TORRENT_BODY_BYTES = 16 * 1024 * 1024
#: How long the CLI waits for an answer.  Searches wait for slow peers (the
#: browse client's own timeout is 10 s), so this is generous.
CLIENT_TIMEOUT = 60.0


class NodeNotRunning(PeerlabError):
    """No node answers for this data directory."""


class ControlError(PeerlabError):
    """The node refused a request; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ConfigError):
    """The user named something that does not exist (a result id, a download)."""


class NodeAPI(Protocol):
    """What the control API asks of a node (:class:`peerlab.apps.node.Node`)."""

    def status(self) -> dict[str, Any]: ...
    def shares(self, with_files: bool) -> dict[str, Any]: ...
    async def add_share(self, path: str) -> dict[str, Any]: ...
    async def remove_share(self, path: str) -> dict[str, Any]: ...
    def start_scan(self) -> dict[str, Any]: ...
    def scan_state(self) -> dict[str, Any]: ...
    async def search(
        self, text: str, field: str, limit: int, *, ttl: int | None = None
    ) -> list[dict[str, Any]]: ...
    def results(self) -> list[dict[str, Any]]: ...
    async def download(self, ref: str) -> dict[str, Any]: ...
    def transfers(self) -> dict[str, Any]: ...
    def control_download(self, download_id: str, action: str) -> dict[str, Any]: ...
    def clear_finished(self) -> dict[str, Any]: ...
    def peers(self) -> list[str]: ...
    def add_peer(self, address: str) -> list[str]: ...
    def remove_peer(self, address: str) -> list[str]: ...
    async def browse(self, address: str, text: str, limit: int) -> list[dict[str, Any]]: ...
    def request_stop(self) -> None: ...
    def torrent_add(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def torrent_list(self) -> dict[str, Any]: ...
    def torrent_action(self, ref: str, action: str, body: dict[str, Any]) -> dict[str, Any]: ...


class WebGate(Protocol):
    """What the control server asks of the web page (:class:`peerlab.web.WebUI`)."""

    def install(self, app: web.Application, token: str) -> None: ...
    def is_public(self, request: web.Request) -> bool: ...
    def admit(self, request: web.Request) -> web.StreamResponse | None: ...
    async def add_sites(self, runner: web.AppRunner) -> None: ...


#: Names a browser may use for a loopback server (the ``Host`` header's host part).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
#: ``Sec-Fetch-Site`` values that mark a request sent by another site's page
#: (``same-site`` includes other ports of 127.0.0.1: ports are not sites).
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def foreign_request(request: web.Request) -> str | None:
    """Why ``request`` looks sent by another web page, or ``None`` when it does not.

    The CLI sends neither ``Origin`` nor ``Sec-Fetch-*``; a browser sends
    ``Origin`` on every cross-origin request and on every POST, so a foreign
    one is recognised whatever it carries.
    """
    site = request.headers.get("Sec-Fetch-Site", "")
    if site in FOREIGN_FETCH_SITES and (
        request.path.startswith("/api/") or request.method not in ("GET", "HEAD")
    ):
        return f"refused: a {site} request (another web page) cannot use the node's API"
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sock, tuple) and sock and str(sock[0]) in ("127.0.0.1", "::1"):
        host, _, port = request.host.rpartition(":")
        if host.lower() not in LOOPBACK_NAMES or port != str(sock[1]):
            return f"refused: Host {request.host!r} is not this node's loopback address"
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return f"refused: requests from origin {origin[:100]!r} cannot drive this node"
    return None


def control_file(data_dir: Path) -> Path:
    return data_dir / CONTROL_FILE


def write_private_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` readable by the owner only (0600), atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=dumps)


async def _body(request: web.Request, limit: int = MAX_REQUEST_BYTES) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if request.content_length is not None and request.content_length > limit:
        raise ConfigError(f"request body larger than {limit} bytes")
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError("request body is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError("request body must be a JSON object")
    return data


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{key!r} must be a string")
    return value


def _limit(body: dict[str, Any], default: int) -> int:
    value = body.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("'limit' must be a positive whole number")
    return value


def _ttl(body: dict[str, Any]) -> int | None:
    """The Gnutella Query TTL of a search (draft 2.2.6: 1..255; absent: the servent's)."""
    value = body.get("ttl")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
        raise ConfigError("'ttl' must be a whole number from 1 to 255")
    return value


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlServer:
    """The aiohttp application serving :class:`NodeAPI` on 127.0.0.1."""

    def __init__(
        self, node: NodeAPI, data_dir: Path, *, port: int = 0, web_gate: WebGate | None = None
    ) -> None:
        self.node = node
        #: The web page (:mod:`peerlab.web`), when the node serves one.
        self.web = web_gate
        self.data_dir = data_dir
        self.requested_port = port
        self.token = secrets.token_urlsafe(TOKEN_BYTES)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self, extra: dict[str, Any] | None = None) -> int:
        """Listen and write ``control.json``; returns the bound port."""
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_TORRENT_BODY_BYTES)
        self._routes(app)
        if self.web is not None:
            self.web.install(app, self.token)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        # SO_REUSEADDR lets a restarted node take its port back while the old
        # connections sit in TIME_WAIT (the web page reconnects to the same
        # address); on Linux it never lets two sockets listen on one port.
        site = web.TCPSite(runner, CONTROL_HOST, self.requested_port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise AddressInUse(
                    f"control port {CONTROL_HOST}:{self.requested_port} is already in use "
                    "(choose another with --control-port, or 0 for any free port)"
                ) from None
            raise NetworkError(f"cannot open the control port: {e.strerror or e}") from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self.web is not None:
            try:
                await self.web.add_sites(runner)
            except BaseException:
                await runner.cleanup()
                self._runner = None
                raise
        payload = {"port": self.port, "token": self.token, "pid": os.getpid()}
        payload.update(extra or {})
        write_private_json(control_file(self.data_dir), payload)
        return self.port

    async def close(self) -> None:
        path = control_file(self.data_dir)
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
            if current.get("token") == self.token:
                path.unlink()
        except (OSError, ValueError):
            pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -------------------------------------------------------------- plumbing

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        foreign = foreign_request(request)
        if foreign is not None:
            return _error(403, foreign)
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        if hmac.compare_digest(given.encode(), expected.encode()):
            pass
        elif self.web is None:
            return _error(401, "missing or wrong control token")
        elif not self.web.is_public(request):
            refusal = self.web.admit(request)
            if refusal is not None:
                return refusal
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except NotFound as e:
            return _error(404, str(e))
        except PeerlabError as e:
            return _error(400, str(e))
        except Exception as e:  # the node's bug: keep serving, log the details
            log.exception("control API %s %s failed", request.method, request.path)
            return _error(500, f"internal error in the node: {type(e).__name__}: {e}")

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/status", self._status)
        r.add_get("/api/shares", self._shares)
        r.add_post("/api/shares", self._add_share)
        r.add_delete("/api/shares", self._remove_share)
        r.add_get("/api/scan", self._scan_state)
        r.add_post("/api/scan", self._start_scan)
        r.add_post("/api/search", self._search)
        r.add_get("/api/results", self._results)
        r.add_post("/api/downloads", self._download)
        r.add_post("/api/downloads/clear", self._clear)
        r.add_post("/api/downloads/{id}/{action}", self._control_download)
        r.add_get("/api/transfers", self._transfers)
        r.add_get("/api/peers", self._peers)
        r.add_post("/api/peers", self._add_peer)
        r.add_delete("/api/peers", self._remove_peer)
        r.add_post("/api/browse", self._browse)
        r.add_post("/api/shutdown", self._shutdown)
        r.add_get("/api/torrents", self._torrents)
        r.add_post("/api/torrents", self._torrent_add)
        r.add_post("/api/torrents/{id}/{action}", self._torrent_action)

    @staticmethod
    def _ok(value: Any) -> web.Response:
        return web.json_response(value, dumps=dumps)

    # ------------------------------------------------------------- endpoints

    async def _status(self, request: web.Request) -> web.Response:
        return self._ok(self.node.status())

    async def _shares(self, request: web.Request) -> web.Response:
        with_files = request.query.get("files", "") in ("1", "true", "yes")
        return self._ok(self.node.shares(with_files))

    async def _add_share(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return self._ok(await self.node.add_share(_str(body, "path")))

    async def _remove_share(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return self._ok(await self.node.remove_share(_str(body, "path")))

    async def _scan_state(self, request: web.Request) -> web.Response:
        return self._ok(self.node.scan_state())

    async def _start_scan(self, request: web.Request) -> web.Response:
        return self._ok(self.node.start_scan())

    async def _search(self, request: web.Request) -> web.Response:
        body = await _body(request)
        text = _str(body, "text", "")
        field = _str(body, "field", "all")
        limit, ttl = _limit(body, 100), _ttl(body)
        results = await (
            self.node.search(text, field, limit) if ttl is None
            else self.node.search(text, field, limit, ttl=ttl)
        )  # fmt: skip
        return self._ok({"results": results})

    async def _results(self, request: web.Request) -> web.Response:
        return self._ok({"results": self.node.results()})

    async def _download(self, request: web.Request) -> web.Response:
        body = await _body(request)
        ref = body.get("ref")
        if isinstance(ref, int) and not isinstance(ref, bool):
            ref = str(ref)
        if not isinstance(ref, str):
            raise ConfigError("'ref' must be a result id or a urn:sha1")
        return self._ok(await self.node.download(ref))

    async def _control_download(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("pause", "resume", "cancel"):
            return _error(404, f"unknown action {action!r}")
        return self._ok(self.node.control_download(request.match_info["id"], action))

    async def _clear(self, request: web.Request) -> web.Response:
        return self._ok(self.node.clear_finished())

    async def _transfers(self, request: web.Request) -> web.Response:
        return self._ok(self.node.transfers())

    async def _peers(self, request: web.Request) -> web.Response:
        return self._ok({"peers": self.node.peers()})

    async def _add_peer(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return self._ok({"peers": self.node.add_peer(_str(body, "address"))})

    async def _remove_peer(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return self._ok({"peers": self.node.remove_peer(_str(body, "address"))})

    async def _browse(self, request: web.Request) -> web.Response:
        body = await _body(request)
        files = await self.node.browse(
            _str(body, "address"), _str(body, "text", ""), _limit(body, 500)
        )
        return self._ok({"results": files})

    async def _shutdown(self, request: web.Request) -> web.Response:
        self.node.request_stop()
        return self._ok({"stopping": True})

    async def _torrents(self, request: web.Request) -> web.Response:
        return self._ok(self.node.torrent_list())

    async def _torrent_add(self, request: web.Request) -> web.Response:
        return self._ok(self.node.torrent_add(await _body(request, MAX_TORRENT_BODY_BYTES)))

    async def _torrent_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("stop", "resume", "remove", "set"):
            return _error(404, f"unknown action {action!r}")
        body = await _body(request)
        return self._ok(self.node.torrent_action(request.match_info["id"], action, body))


# ------------------------------------------------------------------- client


def read_control_file(data_dir: Path) -> dict[str, Any]:
    """The node's port and token, or :class:`NodeNotRunning`."""
    path = control_file(data_dir)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NodeNotRunning(
            f"no node is running for data dir {data_dir} (start one with 'peerlab node')"
        ) from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied (is it your node?)") from None
    except (OSError, ValueError) as e:
        raise NodeNotRunning(f"cannot read {path}: {e}") from None
    if not isinstance(info, dict) or not isinstance(info.get("port"), int) or not isinstance(
        info.get("token"), str
    ):
        raise NodeNotRunning(f"{path} is damaged; restart the node")
    return info


class ControlClient:
    """Talks to a running node.  Use as ``async with ControlClient(data_dir) as c``."""

    def __init__(self, data_dir: Path, *, timeout: float = CLIENT_TIMEOUT) -> None:
        self.data_dir = data_dir
        info = read_control_file(data_dir)
        self.port: int = info["port"]
        self.token: str = info["token"]
        self.info = info
        self.base = f"http://{CONTROL_HOST}:{self.port}"
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; raises :class:`NodeNotRunning` or :class:`ControlError`."""
        session = self._get_session()
        try:
            async with session.request(method, self.base + path, json=body) as resp:
                try:
                    data = await resp.json(content_type=None)
                except (json.JSONDecodeError, UnicodeDecodeError, aiohttp.ContentTypeError):
                    data = None
                if resp.status >= 400:
                    message = data.get("error") if isinstance(data, dict) else None
                    raise ControlError(message or f"node answered {resp.status}", resp.status)
                return data
        except aiohttp.ClientConnectorError:
            raise NodeNotRunning(
                f"no node is running for data dir {self.data_dir} "
                f"(nothing answers on {CONTROL_HOST}:{self.port}; start one with 'peerlab node')"
            ) from None
        except TimeoutError:
            raise NodeNotRunning(
                f"the node on {CONTROL_HOST}:{self.port} did not answer within {self.timeout:g} s"
            ) from None
        except aiohttp.ClientError as e:
            raise NodeNotRunning(f"lost the connection to the node: {e}") from None

    # Convenience wrappers, one per endpoint.

    async def status(self) -> dict[str, Any]:
        return await self.call("GET", "/api/status")  # type: ignore[no-any-return]

    async def shares(self, with_files: bool = False) -> dict[str, Any]:
        q = "?files=1" if with_files else ""
        return await self.call("GET", "/api/shares" + q)  # type: ignore[no-any-return]

    async def add_share(self, path: str) -> dict[str, Any]:
        return await self.call("POST", "/api/shares", {"path": path})  # type: ignore[no-any-return]

    async def remove_share(self, path: str) -> dict[str, Any]:
        return await self.call(  # type: ignore[no-any-return]
            "DELETE", "/api/shares", {"path": path}
        )

    async def start_scan(self) -> dict[str, Any]:
        return await self.call("POST", "/api/scan")  # type: ignore[no-any-return]

    async def scan_state(self) -> dict[str, Any]:
        return await self.call("GET", "/api/scan")  # type: ignore[no-any-return]

    async def search(
        self, text: str, field: str = "all", limit: int = 100, *, ttl: int | None = None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"text": text, "field": field, "limit": limit}
        if ttl is not None:
            body["ttl"] = ttl
        data = await self.call("POST", "/api/search", body)
        return data["results"]  # type: ignore[no-any-return]

    async def results(self) -> list[dict[str, Any]]:
        return (await self.call("GET", "/api/results"))["results"]  # type: ignore[no-any-return]

    async def download(self, ref: str) -> dict[str, Any]:
        return await self.call("POST", "/api/downloads", {"ref": ref})  # type: ignore[no-any-return]

    async def control_download(self, download_id: str, action: str) -> dict[str, Any]:
        return await self.call(  # type: ignore[no-any-return]
            "POST", f"/api/downloads/{download_id}/{action}"
        )

    async def clear_finished(self) -> dict[str, Any]:
        return await self.call("POST", "/api/downloads/clear")  # type: ignore[no-any-return]

    async def transfers(self) -> dict[str, Any]:
        return await self.call("GET", "/api/transfers")  # type: ignore[no-any-return]

    async def peers(self) -> list[str]:
        return (await self.call("GET", "/api/peers"))["peers"]  # type: ignore[no-any-return]

    async def add_peer(self, address: str) -> list[str]:
        data = await self.call("POST", "/api/peers", {"address": address})
        return data["peers"]  # type: ignore[no-any-return]

    async def remove_peer(self, address: str) -> list[str]:
        data = await self.call("DELETE", "/api/peers", {"address": address})
        return data["peers"]  # type: ignore[no-any-return]

    async def browse(self, address: str, text: str = "", limit: int = 500) -> list[dict[str, Any]]:
        data = await self.call(
            "POST", "/api/browse", {"address": address, "text": text, "limit": limit}
        )
        return data["results"]  # type: ignore[no-any-return]

    async def shutdown(self) -> None:
        await self.call("POST", "/api/shutdown")

    async def torrents(self) -> dict[str, Any]:
        return await self.call("GET", "/api/torrents")  # type: ignore[no-any-return]

    async def torrent_add(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/api/torrents", body)  # type: ignore[no-any-return]

    async def torrent_action(
        self, ref: str, action: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.call(  # type: ignore[no-any-return]
            "POST", f"/api/torrents/{ref}/{action}", body or {}
        )
