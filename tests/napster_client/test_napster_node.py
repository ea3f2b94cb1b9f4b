"""``peerlab node --napster``: real processes on 127.0.0.1 (an index server,
nodes, the CLI): search shows Napster's columns, downloads byte for byte
(direct and firewalled), the transfers table lists them, a wrong password is
one clear line, and fail-over to the second server keeps searches working."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from napclientkit import POLL, START_TIMEOUT, NodeProc, ServerProc, little_toot, same_bytes

TOOT = "Maclean & Maclean - Little Toot.mp3"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture
def server(tmp_path: Path, procs: list[Any]) -> Callable[[str], ServerProc]:
    def start(name: str) -> ServerProc:
        s = ServerProc(tmp_path / "home", tmp_path / "servers", name)
        procs.append(s)
        return s

    return start


@pytest.fixture
def node(tmp_path: Path, procs: list[Any]) -> Callable[..., NodeProc]:
    def start(name: str, *args: str) -> NodeProc:
        n = NodeProc(tmp_path / "home", tmp_path / name, list(args))
        procs.append(n)
        return n

    return start


def _sharer(tmp_path: Path, node: Callable[..., NodeProc], servers: str, *extra: str) -> NodeProc:
    share = tmp_path / "lefty-share"
    share.mkdir()
    little_toot(share)
    return node("lefty", "--share", str(share), "--napster", servers, "--napster-nick", "lefty",
                "--napster-link", "cable", *extra)


def test_search_download_and_transfers_through_the_cli(
    tmp_path: Path, server: Callable[[str], ServerProc], node: Callable[..., NodeProc]
) -> None:
    s = server("one")
    lefty = _sharer(tmp_path, node, s.address)
    mred = node("mred", "--napster", s.address, "--napster-nick", "mred", "--napster-link", "dsl")
    lefty.wait_ready(files=1)
    mred.wait_ready()

    [r] = mred.json("search", "little", "toot")
    assert r["name"] == TOOT and r["user"] == "lefty" and r["link"] == "Cable"
    assert r["bitrate"] == 320 and r["size"] == (tmp_path / "lefty-share" / TOOT).stat().st_size
    assert r["sources"] == ["napster:lefty"] and r["urn"] is None
    table = mred.cli("search", "little", "toot").stdout
    for column in ("User", "Link", "Bitrate", "lefty", "Cable", "320 kbps"):
        assert column in table

    out = mred.cli("download", str(r["id"]), "--wait").stdout
    assert "size and Napster md5 check out" in out
    got = mred.data_dir / "downloads" / TOOT
    assert same_bytes(got, tmp_path / "lefty-share" / TOOT)

    data = mred.json("transfers")
    [d] = [d for d in data["downloads"] if d.get("network") == "napster"]
    assert (d["status"], d["user"], d["done"], d["path"]) == ("complete", "lefty", r["size"],
                                                              str(got))
    text = mred.cli("transfers").stdout
    assert "lefty (Cable)" in text and "File Complete!" in text and d["id"][:8] in text
    ups = lefty.json("transfers")["uploads"]
    assert [(u["peer"], u["status"], u["sent"]) for u in ups] == [
        ("mred (DSL)", "complete", r["size"])
    ]
    nap = mred.json("status")["napster"]
    assert nap["nick"] == "mred" and nap["server"] == s.address and nap["logins"] == 1


def test_firewalled_sharer_through_the_cli(
    tmp_path: Path, server: Callable[[str], ServerProc], node: Callable[..., NodeProc]
) -> None:
    s = server("one")
    lefty = _sharer(tmp_path, node, s.address, "--napster-firewalled")
    mred = node("mred", "--napster", s.address, "--napster-nick", "mred")
    st = lefty.wait_ready(files=1)
    assert st["napster"]["firewalled"] is True and st["napster"]["data_port"] == 0
    mred.wait_ready()
    [r] = mred.json("search", "toot")
    started = mred.json("download", str(r["id"]), "--wait")
    d = started["download"]
    assert d["status"] == "complete" and d["firewalled"] is True
    assert same_bytes(Path(d["path"]), tmp_path / "lefty-share" / TOOT)


def test_wrong_password_is_one_clear_line(
    tmp_path: Path, server: Callable[[str], ServerProc], node: Callable[..., NodeProc]
) -> None:
    s = server("one")
    first = node("first", "--napster", s.address, "--napster-nick", "lefty")
    first.wait_ready()  # registers lefty with a generated password
    first.stop()
    again = node("again", "--napster", s.address, "--napster-nick", "lefty",
                 "--napster-password", "not-the-one")
    assert again.proc.wait(timeout=START_TIMEOUT) == 1
    lines = [ln for ln in again.output().splitlines() if ln.startswith("peerlab: ")]
    assert len(lines) == 1, again.output()
    assert "refused the login of 'lefty': Invalid Password" in lines[0]
    assert "Traceback" not in again.output()
    # The generated password was kept (0600): the first node logs in again as lefty.
    path = first.data_dir / "napster.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(json.loads(path.read_text())["password"]) >= 16
    back = node("first", "--napster", s.address, "--napster-nick", "lefty")
    back.wait_ready()


def test_fail_over_to_the_second_server_re_shares_and_searches_resume(
    tmp_path: Path, server: Callable[[str], ServerProc], node: Callable[..., NodeProc]
) -> None:
    one, two = server("one"), server("two")
    servers = f"{one.address},{two.address}"
    lefty = _sharer(tmp_path, node, servers)
    mred = node("mred", "--napster", servers, "--napster-nick", "mred")
    lefty.wait_ready(files=1)
    mred.wait_ready()
    assert mred.json("status")["napster"]["server"] == one.address
    assert len(mred.json("search", "little", "toot")) == 1

    one.kill()  # SIGKILL: the server is gone, no goodbye
    deadline = time.monotonic() + START_TIMEOUT
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = [r for r in mred.json("search", "little", "toot") if r.get("user") == "lefty"]
        time.sleep(POLL)
    assert found, mred.output()
    for n in (lefty, mred):
        nap = n.json("status")["napster"]
        assert nap["server"] == two.address and nap["logins"] == 2
    assert lefty.json("status")["napster"]["shared"] == 1
    out = mred.cli("download", str(found[0]["id"]), "--wait").stdout
    assert "check out" in out
