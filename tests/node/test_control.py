"""The control API: 127.0.0.1 only, token required, errors as one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peerlab.apps.control import (
    ControlClient,
    ControlError,
    ControlServer,
    NodeNotRunning,
    NotFound,
    control_file,
)
from peerlab.errors import ConfigError


class FakeNode:
    """Just enough of a node to see the API route, guard and map errors."""

    def __init__(self) -> None:
        self.stopped = False
        self.peer_list: list[str] = []

    def status(self) -> dict[str, Any]:
        return {"version": "test", "listen": "127.0.0.1:1"}

    def shares(self, with_files: bool) -> dict[str, Any]:
        return {"folders": ["/x"], "files": [] if with_files else None}

    async def add_share(self, path: str) -> dict[str, Any]:
        raise ConfigError(f"cannot share {path}: no such folder")

    async def remove_share(self, path: str) -> dict[str, Any]:
        return {"removed": path}

    def start_scan(self) -> dict[str, Any]:
        return {"running": True}

    def scan_state(self) -> dict[str, Any]:
        return {"running": False}

    async def search(self, text: str, field: str, limit: int) -> list[dict[str, Any]]:
        return [{"id": 1, "name": text, "field": field, "limit": limit}]

    def results(self) -> list[dict[str, Any]]:
        return []

    async def download(self, ref: str) -> dict[str, Any]:
        raise NotFound(f"unknown result id {ref}")

    def transfers(self) -> dict[str, Any]:
        raise RuntimeError("a bug")

    def control_download(self, download_id: str, action: str) -> dict[str, Any]:
        return {"download": {"id": download_id, "status": action}}

    def clear_finished(self) -> dict[str, Any]:
        return {"cleared": 0}

    def peers(self) -> list[str]:
        return self.peer_list

    def add_peer(self, address: str) -> list[str]:
        self.peer_list.append(address)
        return self.peer_list

    def remove_peer(self, address: str) -> list[str]:
        return self.peer_list

    async def browse(self, address: str, text: str, limit: int) -> list[dict[str, Any]]:
        return []

    def request_stop(self) -> None:
        self.stopped = True


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    node = FakeNode()
    srv = ControlServer(node, tmp_path)
    await srv.start({"peer_port": 1})
    yield srv, node
    await srv.close()


async def test_control_file_is_private_and_names_the_port(server: Any, tmp_path: Path) -> None:
    srv, _ = server
    path = control_file(tmp_path)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600
    info = json.loads(path.read_text())
    assert info["port"] == srv.port and info["token"] == srv.token and info["peer_port"] == 1
    assert len(srv.token) >= 40


async def test_requests_without_the_right_token_get_401(server: Any) -> None:
    srv, node = server
    url = f"http://127.0.0.1:{srv.port}"
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": srv.token}):
            async with s.get(url + "/api/status", headers=headers) as r:
                assert r.status == 401
                assert (await r.json())["error"] == "missing or wrong control token"
            async with s.post(url + "/api/shutdown", headers=headers) as r:
                assert r.status == 401
        assert not node.stopped
        async with s.get(
            url + "/api/status", headers={"Authorization": f"Bearer {srv.token}"}
        ) as r:
            assert r.status == 200 and (await r.json())["version"] == "test"


async def test_listens_on_loopback_only(server: Any) -> None:
    srv, _ = server
    assert srv._runner is not None
    hosts = {a[0] for a in srv._runner.addresses}
    assert hosts == {"127.0.0.1"}


async def test_client_round_trips_and_errors(server: Any, tmp_path: Path) -> None:
    srv, node = server
    async with ControlClient(tmp_path) as c:
        assert (await c.status())["listen"] == "127.0.0.1:1"
        assert await c.search("toot", "artist", 5) == [
            {"id": 1, "name": "toot", "field": "artist", "limit": 5}
        ]
        assert await c.add_peer("127.0.0.1:9") == ["127.0.0.1:9"]
        with pytest.raises(ControlError) as e:
            await c.add_share("/nope")
        assert e.value.status == 400 and str(e.value) == "cannot share /nope: no such folder"
        with pytest.raises(ControlError) as e:
            await c.download("7")
        assert e.value.status == 404 and "unknown result id 7" in str(e.value)
        with pytest.raises(ControlError) as e:
            await c.transfers()
        assert e.value.status == 500 and "RuntimeError: a bug" in str(e.value)
        with pytest.raises(ControlError) as e:
            await c.call("POST", "/api/downloads", {"ref": ["x"]})
        assert e.value.status == 400
        await c.shutdown()
    assert node.stopped


async def test_closing_removes_the_control_file(tmp_path: Path) -> None:
    srv = ControlServer(FakeNode(), tmp_path)
    port = await srv.start()
    await srv.close()
    assert not control_file(tmp_path).exists()
    with pytest.raises(NodeNotRunning):
        ControlClient(tmp_path)
    # A stale file (the node was killed) gives the same answer, not a traceback.
    control_file(tmp_path).write_text(json.dumps({"port": port, "token": "x"}))
    async with ControlClient(tmp_path) as c:
        with pytest.raises(NodeNotRunning, match="no node is running"):
            await c.status()
