"""The search filters through the control API (what ``peerlab search`` and
the page send), and the ``peerlab node --web-*`` flags over ``PEERLAB_WEB_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peerlab.apps.control import ControlClient, ControlError, ControlServer
from peerlab.cli.main import _length, _web_settings
from peerlab.errors import ConfigError


class FakeNode:
    """Only ``search`` is asked of it here."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def search(self, text: str, field: str, limit: int, **filters: Any) -> list[Any]:
        self.calls.append((text, field, limit, filters))
        return [{"id": 1, "name": text}]


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    node = FakeNode()
    srv = ControlServer(node, tmp_path)  # type: ignore[arg-type]
    await srv.start({"peer_port": 1})
    async with ControlClient(tmp_path) as c:
        yield c, node
    await srv.close()


async def test_filters_travel_to_the_node(client: Any) -> None:
    c, node = client
    await c.search("linkin park", "artist", 10, min_bitrate=128, min_length=90)
    await c.search("numb", "all", 5)
    await c.search("numb", "title", 5, ttl=2, min_bitrate=0)
    assert node.calls == [
        ("linkin park", "artist", 10, {"min_bitrate": 128, "min_length": 90}),
        ("numb", "all", 5, {}),
        ("numb", "title", 5, {"ttl": 2}),  # a floor of 0 is no floor
    ]


@pytest.mark.parametrize("bad", [-1, "128", 1.5, True])
async def test_bad_filters_are_one_clear_error(client: Any, bad: Any) -> None:
    c, node = client
    with pytest.raises(ControlError, match="'min_bitrate' must be a whole number"):
        await c.call("POST", "/api/search", {"text": "x", "min_bitrate": bad})
    assert node.calls == []


def test_min_length_accepts_seconds_and_minutes() -> None:
    assert _length("90") == 90 and _length("1:30") == 90 and _length("0:05") == 5
    for bad in ("soon", "1:2:3", "-5", "", "9999999"):
        with pytest.raises(ConfigError, match="min-length"):
            _length(bad)


def test_web_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERLAB_WEB_PORT", "8080")
    monkeypatch.setenv("PEERLAB_WEB_PASSWORD", "from the environment")
    s = _web_settings({"web_port": None, "web_bind": None, "web_open": None,
                       "web_password": None})  # fmt: skip
    assert (s.port, s.host, s.password) == (8080, "127.0.0.1", "from the environment")
    s = _web_settings({"web_port": 9090, "web_password": "from the flag"})
    assert (s.port, s.password) == (9090, "from the flag")
    with pytest.raises(ConfigError, match="opt-in"):
        _web_settings({"web_bind": "0.0.0.0"})
    s = _web_settings({"web_bind": "0.0.0.0", "web_open": True})
    assert s.open_to_network and s.host == "0.0.0.0"  # the page then insists on a password
