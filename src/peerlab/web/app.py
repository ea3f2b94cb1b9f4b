"""The node's web page: routes, login, and the live stream (issue 8).

:class:`WebUI` plugs into :class:`peerlab.apps.control.ControlServer`
(:class:`~peerlab.apps.control.WebGate`): the page lives on the control
server's own port, 127.0.0.1 only, beside the JSON API it drives.

Routes (``*``: public; every other one needs the control token or a session)::

    GET  /                      the page (no session: redirect to /login)
    GET  /login              *  the login form (token or password)
    POST /login              *  log in: sets the session cookie, back to /
    POST /logout                end this session
    GET  /static/...         *  the page's HTML, CSS and JS modules (package data)
    GET  /api/web/session       the CSRF token and what the page needs to start
    GET  /api/web/state         everything the page shows, at once (JSON)
    GET  /api/web/events        the live stream (server-sent events, :mod:`.hub`)
    POST /api/web/search        {text, field, networks, limit, min_bitrate?, min_length?}
                                -> {search: id}
    GET  /api/web/search/{id}   a search and its results so far
    DELETE /api/web/search/{id} forget a search
    GET  /api/web/settings      rate limits and upload slots
    POST /api/web/settings      change them for this session
    POST /api/web/password      {password}: set the login password

Everything the page does besides lives in the control API (downloads,
pause/resume/cancel, clear, shares, scan).  A session's state-changing
requests carry ``X-CSRF-Token``; every request passes
:func:`peerlab.apps.control.foreign_request` first.  No name from the
network is ever put into HTML by the server: the page's script renders data
as text, and the one server-rendered string (the window title) is escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

import peerlab
from peerlab.apps.config import CONTROL_HOST
from peerlab.apps.control import _body, _error, _minimum, _str, dumps
from peerlab.errors import ConfigError
from peerlab.web.auth import CSRF_HEADER, SESSION_SECONDS, Session, WebSecrets, cookie_name
from peerlab.web.hub import KEEPALIVE_SECONDS, EventHub
from peerlab.web.settings import WebSettings, is_loopback
from peerlab.web.views import WebNode, search_choices

log = logging.getLogger("peerlab.web")

STATIC_DIR = Path(str(resources.files("peerlab.web") / "static"))
#: Content-Security-Policy of the page: scripts, styles and connections from
#: the node only, no inline script, no framing (an injected tag can do nothing).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/login", "/favicon.ico"})
#: Search limit when the page names none.
DEFAULT_WEB_LIMIT = 1000


def _port_of(request: web.Request) -> int:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sock, tuple) and len(sock) >= 2:
        return int(sock[1])
    return 0


class WebUI:
    """The web page of one node."""

    def __init__(self, node: WebNode, data_dir: Path, settings: WebSettings) -> None:
        self.node = node
        self.settings = settings
        self.secrets = WebSecrets(data_dir, env_password=settings.password)
        if not is_loopback(settings.host) and not self.secrets.has_password:
            raise ConfigError(
                f"serving the web page on {settings.host} needs a password "
                "(set PEERLAB_WEB_PASSWORD, or set one on the page's Settings first)"
            )
        self.hub = EventHub(node)
        self._extra_ports: list[tuple[str, int]] = []
        self._control_token = ""

    # ------------------------------------------------------------ WebGate

    def install(self, app: web.Application, token: str) -> None:
        self._control_token = token
        r = app.router
        r.add_get("/", self._page)
        r.add_get("/login", self._login_page)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._logout)
        r.add_get("/favicon.ico", self._favicon)
        r.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
        r.add_get("/api/web/session", self._session)
        r.add_get("/api/web/state", self._state)
        r.add_get("/api/web/events", self._events)
        r.add_post("/api/web/search", self._search)
        r.add_get("/api/web/search/{id}", self._search_get)
        r.add_delete("/api/web/search/{id}", self._search_forget)
        r.add_get("/api/web/settings", self._settings_get)
        r.add_post("/api/web/settings", self._settings_set)
        r.add_post("/api/web/password", self._password)
        app.on_response_prepare.append(self._headers)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    def is_public(self, request: web.Request) -> bool:
        return request.path in PUBLIC_PATHS or request.path.startswith("/static/")

    def admit(self, request: web.Request) -> web.StreamResponse | None:
        """A session cookie in place of the token; its changes need the CSRF token."""
        session = self._current(request)
        if session is None:
            if request.path.startswith("/api/") or request.method not in SAFE_METHODS:
                return _error(401, "missing or wrong control token")
            raise web.HTTPFound("/login")
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not given or not _same(given, session.csrf):
                return _error(403, "missing or wrong CSRF token (reload the page)")
        return None

    def _current(self, request: web.Request) -> Session | None:
        return self.secrets.session(request.cookies.get(cookie_name(_port_of(request))))

    async def add_sites(self, runner: web.AppRunner) -> None:
        s = self.settings
        if s.port:
            site = web.TCPSite(runner, s.host, s.port, reuse_address=True)
            try:
                await site.start()
            except OSError as e:
                raise ConfigError(
                    f"cannot serve the web page on {s.host}:{s.port}: {e.strerror or e}"
                ) from None
            self._extra_ports.append((s.host, s.port))

    def urls(self, control_port: int | None) -> list[str]:
        """Where the page can be opened (for the node's log)."""
        out = [f"http://{CONTROL_HOST}:{control_port}/"] if control_port else []
        for host, port in self._extra_ports:
            shown = f"[{host}]" if ":" in host else host
            out.append(f"http://{shown}:{port}/")
        return out

    # ------------------------------------------------------------ plumbing

    async def _on_startup(self, app: web.Application) -> None:
        self.hub.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.hub.close()

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Origin "null"
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        if request.path.startswith("/api/"):
            h.setdefault("Cache-Control", "no-store")
        else:
            h.setdefault("Cache-Control", "no-cache")
            h.setdefault("Content-Security-Policy", CSP)

    @staticmethod
    def _ok(value: Any) -> web.Response:
        return web.json_response(value, dumps=dumps)

    def _html(self, name: str, fill: dict[str, str]) -> web.Response:
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        for key, value in fill.items():
            text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    def _title(self) -> str:
        st = self.node.status()
        return f"peerlab {peerlab.__version__} — {st.get('listen')} — {st.get('data_dir')}"

    # ---------------------------------------------------------------- page

    async def _page(self, request: web.Request) -> web.Response:
        return self._html("index.html", {"title": self._title()})

    async def _login_page(self, request: web.Request) -> web.Response:
        return self._html("login.html", {"title": f"peerlab {peerlab.__version__} — log in"})

    async def _favicon(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "favicon.svg",
                                headers={"Content-Type": "image/svg+xml"})

    async def _login(self, request: web.Request) -> web.StreamResponse:
        """Log in with the control token or the password (form or JSON)."""
        wants_json = request.content_type == "application/json"
        if wants_json:
            body = await _body(request)
            secret = body.get("secret")
        else:
            form = await request.post()
            secret = form.get("secret")
        now = time.monotonic()
        if not self.secrets.login_allowed(now):
            return self._login_answer(wants_json, 429, "too many failed logins; wait a minute")
        ok = False
        if isinstance(secret, str) and secret:
            ok = bool(self._control_token) and _same(secret, self._control_token) or (
                self.secrets.has_password
                and await asyncio.to_thread(self.secrets.check_password, secret)
            )
        if not ok:
            self.secrets.login_failed(now)
            log.info("web login refused (from %s)", request.remote)
            return self._login_answer(wants_json, 401, "wrong token or password")
        session, value = self.secrets.new_session()
        log.info("web login (from %s)", request.remote)
        if wants_json:
            response = self._ok({"ok": True, "csrf": session.csrf})
            self._set_cookie(request, response, value)
            return response
        redirect = web.HTTPSeeOther("/")
        self._set_cookie(request, redirect, value)
        raise redirect

    @staticmethod
    def _set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(
            cookie_name(_port_of(request)), value, max_age=SESSION_SECONDS, path="/",
            httponly=True, samesite="Strict",
        )  # fmt: skip

    @staticmethod
    def _login_answer(wants_json: bool, status: int, message: str) -> web.StreamResponse:
        if wants_json:
            return _error(status, message)
        code = "busy" if status == 429 else "wrong"
        raise web.HTTPSeeOther(f"/login?error={code}")

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = self._current(request)
        if session is not None:
            self.secrets.revoke(session)
        response = self._ok({"ok": True})
        response.del_cookie(cookie_name(_port_of(request)), path="/")
        return response

    # ----------------------------------------------------------------- API

    async def _session(self, request: web.Request) -> web.Response:
        session = self._current(request)
        return self._ok({
            "csrf": session.csrf if session else None,
            "expires": session.expires if session else None,
            "has_password": self.secrets.has_password,
            "version": peerlab.__version__,
            "keepalive": KEEPALIVE_SECONDS,
        })  # fmt: skip

    async def _state(self, request: web.Request) -> web.Response:
        return self._ok(self.hub.snapshot())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        stream = self.hub.attach()
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        })  # fmt: skip
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    item = b": keep-alive\n\n"
                if item is None:
                    break
                await response.write(item)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.hub.detach(stream)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _search(self, request: web.Request) -> web.Response:
        body = await _body(request)
        text = _str(body, "text", "")
        field = _str(body, "field", "all")
        networks = body.get("networks")
        if networks is not None and (
            not isinstance(networks, list) or not all(isinstance(n, str) for n in networks)
        ):
            raise ConfigError("'networks' must be a list of network names")
        limit = body.get("limit", DEFAULT_WEB_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("'limit' must be a positive whole number")
        filters = {k: v for k in ("min_bitrate", "min_length") if (v := _minimum(body, k))}
        search = self.hub.start_search(text, field, networks, limit, **filters)
        return self._ok({"search": search.id, "networks": search.networks})

    async def _search_get(self, request: web.Request) -> web.Response:
        search = self.hub.searches.get(request.match_info["id"])
        if search is None:
            return _error(404, "no such search (it may have been forgotten)")
        return self._ok(search.summary(True))

    async def _search_forget(self, request: web.Request) -> web.Response:
        return self._ok({"forgotten": self.hub.forget_search(request.match_info["id"])})

    async def _settings_get(self, request: web.Request) -> web.Response:
        return self._ok({**self.node.settings(), "search_networks": search_choices(self.node)})

    async def _settings_set(self, request: web.Request) -> web.Response:
        body = await _body(request)
        settings = self.node.apply_settings(body)
        self.hub.broadcast("settings", settings)
        return self._ok(settings)

    async def _password(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        password = _str(body, "password")
        await asyncio.to_thread(self.secrets.set_password, password)
        log.info("web password changed; other sessions ended")
        session, value = self.secrets.new_session()
        response = self._ok({"ok": True, "csrf": session.csrf})
        self._set_cookie(request, response, value)
        return response


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))
