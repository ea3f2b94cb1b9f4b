"""The web page's HTTP side, against a real ControlServer on 127.0.0.1 with a
fake node: login, cookies, CSRF, Origin/Host refusal, escaping, the event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from peerlab.apps.control import ControlServer
from peerlab.apps.node import NodeObserver
from peerlab.errors import ConfigError
from peerlab.storage.catalog import Catalog
from peerlab.web import WebSettings, WebUI
from peerlab.web.auth import MAX_LOGIN_FAILURES, WebSecrets, cookie_name

EVIL = "<script>alert(1)</script>.mp3"


@dataclass
class _Config:
    downloads_path: Path
    incomplete_path: Path


class FakeNode:
    """What the control API and the web page ask of a node, with hostile names."""

    def __init__(self, tmp: Path) -> None:
        self.observer = NodeObserver()
        self.peer_list = ["127.0.0.1:9"]
        self.peer_state: dict[str, dict[str, Any]] = {}
        self.catalog = Catalog(tmp / "catalog.db")
        self.config = _Config(tmp / "downloads", tmp / "incomplete")
        self.data_dir = tmp / "<script>alert('dir')</script>"
        self._settings = {"upload_rate": 0, "download_rate": 0, "upload_slots": 4}
        self.stopped = False
        self.searched: list[tuple[str, str, list[str] | None]] = []

    def status(self) -> dict[str, Any]:
        return {"version": "test", "listen": "127.0.0.1:1", "data_dir": str(self.data_dir),
                "napster": None, "shares": {"folders": 0, "files": 0}}

    def transfers(self) -> dict[str, Any]:
        return {
            "downloads": [{"id": "D1", "name": EVIL, "size": 100, "done": 40,
                           "status": "downloading", "rate": 10.0, "eta": 6.0, "error": None,
                           "sources": [{"address": "127.0.0.1:9", "status": "active",
                                        "bytes": 40, "rate": 10.0}]}],
            "uploads": [], "concurrent_downloads": 1, "concurrent_uploads": 0,
        }  # fmt: skip

    def scan_state(self) -> dict[str, Any]:
        return {"running": False}

    def search_networks(self) -> list[str]:
        return ["local", "peers"]

    async def search(
        self, text: str, field: str, limit: int, *,
        networks: Collection[str] | None = None,
        on_found: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        self.searched.append((text, field, list(networks) if networks is not None else None))
        row = {"id": 1, "name": EVIL, "size": 3, "urn": "urn:sha1:X", "sources": ["a", "b"]}
        if on_found is not None:
            on_found([row])
        return [row]

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        if "upload_slots" in changes and not isinstance(changes["upload_slots"], int):
            raise ConfigError("upload_slots: expected a whole number")
        self._settings.update(changes)
        return self.settings()

    # The control API's own endpoints (only what these tests call).
    def results(self) -> list[dict[str, Any]]:
        return [{"id": 1, "name": EVIL}]

    def request_stop(self) -> None:
        self.stopped = True

    def clear_finished(self) -> dict[str, Any]:
        return {"cleared": 0}


@dataclass
class Served:
    node: FakeNode
    server: ControlServer
    url: str
    token: str
    data_dir: Path


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    node = FakeNode(tmp_path)
    ui = WebUI(node, tmp_path, WebSettings())
    server = ControlServer(node, tmp_path, web_gate=ui)  # type: ignore[arg-type]
    port = await server.start()
    yield Served(node, server, f"http://127.0.0.1:{port}", server.token, tmp_path)
    await server.close()
    node.catalog.close()


def _session() -> aiohttp.ClientSession:
    # An unsafe jar keeps cookies of an IP-address host (127.0.0.1).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _login(s: aiohttp.ClientSession, served: Served, secret: str | None = None) -> str:
    async with s.post(served.url + "/login", json={"secret": secret or served.token},
                      headers={"Origin": served.url}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf"])


async def test_everything_but_the_login_form_needs_a_login(served: Served) -> None:
    async with _session() as s:
        for path in ("/api/web/state", "/api/web/events", "/api/web/session", "/api/status"):
            async with s.get(served.url + path) as r:
                assert r.status == 401, path
                assert (await r.json())["error"] == "missing or wrong control token"
        async with s.post(served.url + "/api/shutdown", headers={"Origin": served.url}) as r:
            assert r.status == 401
        async with s.get(served.url + "/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/login"
        async with s.get(served.url + "/login") as r:
            assert r.status == 200
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Frame-Options"] == "DENY"
        async with s.get(served.url + "/static/js/app.js") as r:
            assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
            assert "javascript" in r.headers["Content-Type"]
        for escape in ("/static/%2e%2e/auth.py", "/static/..%2fauth.py", "/static/js/../../app.py"):
            async with s.get(yarl.URL(served.url + escape, encoded=True)) as r:
                assert r.status in (302, 403, 404), escape
                assert "import" not in await r.text()
    assert not served.node.stopped


async def test_login_with_the_token_sets_a_strict_http_only_cookie(served: Served) -> None:
    async with _session() as s:
        async with s.post(served.url + "/login", json={"secret": "wrong"},
                          headers={"Origin": served.url}) as r:
            assert r.status == 401
        async with s.post(served.url + "/login", json={"secret": served.token},
                          headers={"Origin": served.url}) as r:
            assert r.status == 200
            set_cookie = r.headers["Set-Cookie"]
        port = served.url.rsplit(":", 1)[1]
        assert set_cookie.startswith(cookie_name(port) + "=")
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        async with s.get(served.url + "/api/web/state") as r:
            assert r.status == 200
            state = await r.json()
        assert state["transfers"]["rows"][0]["name"] == EVIL
        assert state["transfers"]["rows"][0]["status_text"] == "Downloading..."
        assert [n["id"] for n in state["networks"]][:2] == ["peers", "napster"]
        assert state["networks"][1]["joined"] is False
        # The form login (no script) answers with a redirect to the page.
        async with s.post(served.url + "/login", data={"secret": served.token},
                          headers={"Origin": served.url}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
        async with s.post(served.url + "/login", data={"secret": "nope"},
                          headers={"Origin": served.url}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login?error=wrong"


async def test_a_cookie_alone_changes_nothing_without_the_csrf_token(served: Served) -> None:
    async with _session() as s:
        csrf = await _login(s, served)
        body = {"text": "toot", "networks": ["peers"]}
        origin = {"Origin": served.url}
        async with s.post(served.url + "/api/web/search", json=body, headers=origin) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        async with s.post(served.url + "/api/shutdown", headers=origin) as r:
            assert r.status == 403
        async with s.post(served.url + "/api/shutdown",
                          headers={**origin, "X-CSRF-Token": csrf + "x"}) as r:
            assert r.status == 403
        assert not served.node.stopped and served.node.searched == []
        async with s.post(served.url + "/api/web/search", json=body,
                          headers={**origin, "X-CSRF-Token": csrf}) as r:
            assert r.status == 200
            assert (await r.json())["networks"] == ["peers"]
        async with s.get(served.url + "/api/web/session") as r:
            assert (await r.json())["csrf"] == csrf


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # another port of 127.0.0.1 is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Host": "evil.example"},  # DNS rebinding: a foreign name for our address
])  # fmt: skip
async def test_another_web_page_cannot_drive_the_node(
    served: Served, headers: dict[str, str]
) -> None:
    async with _session() as s:
        csrf = await _login(s, served)
        for auth in ({"X-CSRF-Token": csrf}, {"Authorization": f"Bearer {served.token}"}):
            async with s.post(served.url + "/api/shutdown", headers={**auth, **headers}) as r:
                assert r.status == 403, (auth, headers)
                assert (await r.json())["error"].startswith("refused")
            async with s.get(served.url + "/api/web/state", headers={**auth, **headers}) as r:
                assert r.status == 403
        async with s.post(served.url + "/login", json={"secret": served.token},
                          headers=headers) as r:
            assert r.status == 403
    assert not served.node.stopped


async def test_the_cli_s_token_requests_still_work(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {served.token}"}
        async with s.get(served.url + "/api/web/state", headers=auth) as r:
            assert r.status == 200
        async with s.post(served.url + "/api/shutdown", headers=auth) as r:
            assert r.status == 200
    assert served.node.stopped


async def test_the_server_rendered_title_is_escaped(served: Served) -> None:
    async with _session() as s:
        await _login(s, served)
        async with s.get(served.url + "/") as r:
            page = await r.text()
            assert r.headers["Content-Type"].startswith("text/html")
        assert "<script>alert('dir')</script>" not in page
        assert "&lt;script&gt;alert(&#x27;dir&#x27;)&lt;/script&gt;" in page
        # Names from the network travel only as JSON, which no browser renders.
        async with s.get(served.url + "/api/results") as r:
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert (await r.json())["results"][0]["name"] == EVIL


async def _events(resp: aiohttp.ClientResponse, want: str) -> dict[str, Any]:
    """Read server-sent events until one named ``want``; its data."""
    event = None
    async with asyncio.timeout(20):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == want:
                return json.loads(line[6:])  # type: ignore[no-any-return]


async def test_the_event_stream_starts_with_a_snapshot_and_streams_results(
    served: Served,
) -> None:
    async with _session() as s:
        csrf = await _login(s, served)
        async with s.get(served.url + "/api/web/events") as events:
            assert events.status == 200
            assert events.headers["Content-Type"].startswith("text/event-stream")
            snap = await _events(events, "snapshot")
            assert snap["transfers"]["concurrent_downloads"] == 1
            assert {n["id"]: n["enabled"] for n in snap["search_networks"]}["napster"] is False
            async with s.post(served.url + "/api/web/search",
                              json={"text": "little toot", "field": "artist"},
                              headers={"Origin": served.url, "X-CSRF-Token": csrf}) as r:
                search_id = (await r.json())["search"]
            found = await _events(events, "results")
            assert found["search"] == search_id and found["results"][0]["name"] == EVIL
            done = await _events(events, "search_done")
            assert done["id"] == search_id and done["count"] == 1 and done["error"] is None
        assert served.node.searched == [("little toot", "artist", ["local", "peers"])]
        async with s.get(served.url + f"/api/web/search/{search_id}") as r:
            assert [x["id"] for x in (await r.json())["results"]] == [1]


async def test_settings_change_through_the_page(served: Served) -> None:
    async with _session() as s:
        csrf = await _login(s, served)
        h = {"Origin": served.url, "X-CSRF-Token": csrf}
        async with s.post(served.url + "/api/web/settings",
                          json={"upload_rate": 512000, "upload_slots": 2}, headers=h) as r:
            assert r.status == 200 and (await r.json())["upload_slots"] == 2
        async with s.post(served.url + "/api/web/settings", json={"upload_slots": "x"},
                          headers=h) as r:
            assert r.status == 400 and "upload_slots" in (await r.json())["error"]
    assert served.node.settings()["upload_rate"] == 512000


async def test_a_password_logs_in_and_ends_other_sessions(served: Served) -> None:
    async with _session() as first, _session() as second:
        csrf = await _login(first, served)
        await _login(second, served)
        async with first.post(served.url + "/api/web/password", json={"password": "short"},
                              headers={"Origin": served.url, "X-CSRF-Token": csrf}) as r:
            assert r.status == 400
        async with first.post(served.url + "/api/web/password",
                              json={"password": "little toot 1947"},
                              headers={"Origin": served.url, "X-CSRF-Token": csrf}) as r:
            assert r.status == 200
        async with first.get(served.url + "/api/web/state") as r:
            assert r.status == 200  # the session that set it got a new cookie
        async with second.get(served.url + "/api/web/state") as r:
            assert r.status == 401
        await _login(second, served, "little toot 1947")
    stored = json.loads((served.data_dir / "web.json").read_text())
    assert "little toot" not in json.dumps(stored) and stored["password"]["hash"]
    assert (served.data_dir / "web.json").stat().st_mode & 0o777 == 0o600


async def test_failed_logins_are_bounded(served: Served) -> None:
    async with _session() as s:
        for _ in range(MAX_LOGIN_FAILURES):
            async with s.post(served.url + "/login", json={"secret": "guess"},
                              headers={"Origin": served.url}) as r:
                assert r.status == 401
        async with s.post(served.url + "/login", json={"secret": served.token},
                          headers={"Origin": served.url}) as r:
            assert r.status == 429


def test_sessions_survive_a_restart_and_forgeries_do_not(tmp_path: Path) -> None:
    secrets = WebSecrets(tmp_path)
    session, cookie = secrets.new_session()
    again = WebSecrets(tmp_path)  # the node restarted: same key from web.json
    assert again.session(cookie) == session
    body, mac = cookie.rsplit(".", 1)
    v, expires, nonce = body.split(".")
    assert again.session(f"v1.{int(expires) + 9999}.{nonce}.{mac}") is None
    assert again.session(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert again.session(cookie, now=int(expires) + 1) is None
    assert again.session("") is None and again.session("v1.1.2") is None
    again.revoke(session)
    assert again.session(cookie) is None


def test_serving_beyond_loopback_needs_the_opt_in_and_a_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opt-in"):
        WebSettings(port=8080, host="0.0.0.0")
    with pytest.raises(ConfigError, match="needs a web port"):
        WebSettings(host="0.0.0.0", open_to_network=True)
    settings = WebSettings(port=8080, host="0.0.0.0", open_to_network=True)
    node = FakeNode(tmp_path)
    with pytest.raises(ConfigError, match="needs a password"):
        WebUI(node, tmp_path, settings)  # type: ignore[arg-type]
    WebUI(node, tmp_path, WebSettings(port=8080, host="0.0.0.0", open_to_network=True,
                                      password="a long password"))  # type: ignore[arg-type]
    env = {"PEERLAB_WEB_PORT": "8081", "PEERLAB_WEB_PASSWORD": "secret words"}
    assert WebSettings.from_env(env) == WebSettings(port=8081, password="secret words")
    with pytest.raises(ConfigError, match="PEERLAB_WEB_PORT"):
        WebSettings.from_env({"PEERLAB_WEB_PORT": "eighty"})
    node.catalog.close()


async def test_an_extra_web_port_serves_the_same_page(tmp_path: Path) -> None:
    from webkit import free_port

    extra = free_port()
    node = FakeNode(tmp_path)
    ui = WebUI(node, tmp_path, WebSettings(port=extra))  # type: ignore[arg-type]
    server = ControlServer(node, tmp_path, web_gate=ui)  # type: ignore[arg-type]
    port = await server.start()
    try:
        assert ui.urls(port) == [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{extra}/"]
        url = f"http://127.0.0.1:{extra}"
        async with _session() as s:
            async with s.post(url + "/login", json={"secret": server.token},
                              headers={"Origin": url}) as r:
                assert r.status == 200
                assert r.headers["Set-Cookie"].startswith(cookie_name(extra) + "=")
            async with s.get(url + "/api/web/state") as r:
                assert r.status == 200
            # The cookie of one port is not a login on the other.
            async with s.get(f"http://127.0.0.1:{port}/api/web/state") as r:
                assert r.status == 401
    finally:
        await server.close()
        node.catalog.close()
