"""The GWebCache: its answers line by line (v1 and v2), the update rules of
the spec's section 4, the client against the server in both worlds
(redirects, garbage), the state file, and the ``peerlab gwebcache`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from gnetkit import WAIT

from peerlab.errors import ConfigError
from peerlab.overlays.gnutella.gwebcache import (
    MAX_HOSTS_RETURNED,
    GWebCache,
    GWebCacheClient,
    GWebCacheConfig,
    GWebCacheReply,
)
from peerlab.runtime.base import BaseStreamHandler, Runtime, Stream
from peerlab.runtime.worlds import SimWorld, StreamRecorder, World


def sim_cache(**cfg: object) -> tuple[SimWorld, Runtime, GWebCache]:
    w = SimWorld(seed=1)
    rt = w.new_runtime("gwc")
    cache = GWebCache(rt, GWebCacheConfig(host=w.host(rt), port=80, **cfg))  # type: ignore[arg-type]
    cache.start()
    return w, rt, cache


def lines(body: str) -> list[str]:
    assert body.endswith("\r\n") or body == ""
    return body.split("\r\n")[:-1]


def test_ping_in_both_dialects() -> None:
    _, _, cache = sim_cache()
    status, body = cache.handle("/?ping=1&client=GTKG&version=1.2", "10.0.0.5")
    assert status == 200
    first, second = lines(body)
    assert first.startswith("PONG peerlab-gwc ")
    assert second.startswith("I|pong|peerlab-gwc ") and second.endswith("|gnutella")


def test_update_then_get_v2() -> None:
    w, _, cache = sim_cache(update_interval=3300.0)
    ok = cache.handle("/?update=1&ip=10.0.0.5:6346&url=http://10.0.0.9/gwc&net=gnutella",
                      "10.0.0.5")  # fmt: skip
    assert ok == (200, "I|update|OK\r\n")
    w.run_for(42.0)
    assert cache.handle("/?update=1&ip=10.0.0.5:6347", "10.0.0.5") == (
        200, "I|update|WARNING|Returned too soon\r\n")  # fmt: skip
    cache.handle("/?update=1&ip=10.0.0.6:6346", "10.0.0.6")
    _, body = cache.handle("/?get=1&net=gnutella", "10.0.0.7")
    assert lines(body) == ["H|10.0.0.6:6346|0", "H|10.0.0.5:6346|42", "U|http://10.0.0.9/gwc|42"]


def test_v1_update_hostfile_urlfile_and_statfile() -> None:
    _, _, cache = sim_cache()
    assert cache.handle("/?ip=10.0.0.5:6346&url=http://10.0.0.9/x", "10.0.0.5") == (200, "OK\r\n")
    assert lines(cache.handle("/?hostfile=1", "1.2.3.4")[1]) == ["10.0.0.5:6346"]
    assert lines(cache.handle("/?urlfile=1", "1.2.3.4")[1]) == ["http://10.0.0.9/x"]
    assert lines(cache.handle("/?statfile=1", "1.2.3.4")[1]) == ["4", "4", "1"]


def test_bad_updates_are_warned_not_stored() -> None:
    _, _, cache = sim_cache(update_interval=0.0)
    cases = {
        "/?update=1&ip=10.0.0.8:6346": "I|update|WARNING|IP is not yours",
        "/?update=1&ip=999.1.1.1:6346": "I|update|WARNING|Invalid IP",
        "/?update=1&ip=10.0.0.5:0": "I|update|WARNING|Invalid IP",
        "/?update=1&url=ftp://x/y": "I|update|WARNING|Invalid URL",
        "/?update=1&url=http://a%7Cb/": "I|update|WARNING|Invalid URL",
    }
    for target, answer in cases.items():
        assert cache.handle(target, "10.0.0.5") == (200, answer + "\r\n"), target
    assert not cache.hosts and not cache.urls
    assert cache.handle("/?get=1&net=gnutella2", "10.0.0.5")[1].startswith("ERROR: Network")
    assert cache.handle("/other?get=1", "10.0.0.5")[0] == 404


def test_private_addresses_only_when_the_cache_is_private() -> None:
    _, _, cache = sim_cache(accept_private=False, update_interval=0.0)
    assert cache.handle("/?update=1&ip=10.0.0.5:6346", "10.0.0.5")[1] == (
        "I|update|WARNING|Private IP\r\n")  # fmt: skip
    _, _, lab = sim_cache()  # listens on 10.0.0.1: a lab cache takes lab addresses
    assert lab.handle("/?update=1&ip=10.0.0.5:6346", "10.0.0.5")[1] == "I|update|OK\r\n"


def test_only_the_newest_hosts_are_kept_and_returned() -> None:
    _, _, cache = sim_cache(update_interval=0.0, max_hosts=30)
    for i in range(1, 61):
        cache.handle(f"/?update=1&ip=10.0.1.{i}:6346", f"10.0.1.{i}")
    assert len(cache.hosts) == 30
    got = lines(cache.handle("/?get=1", "1.1.1.1")[1])
    assert len(got) == MAX_HOSTS_RETURNED and got[0].startswith("H|10.0.1.60:6346|")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "gwc.json"
    w = SimWorld(seed=2)
    rt = w.new_runtime("gwc")
    cache = GWebCache(rt, GWebCacheConfig(host=w.host(rt), port=80, state_path=state))
    cache.start()
    cache.handle("/?update=1&ip=10.0.0.5:6346&url=http://10.0.0.9/", "10.0.0.5")
    cache.close()
    assert json.loads(state.read_text())["hosts"][0][:2] == ["10.0.0.5", 6346]
    rt2 = w.new_runtime("gwc2")
    again = GWebCache(rt2, GWebCacheConfig(host=w.host(rt2), port=80, state_path=state))
    again.start()
    assert list(again.hosts) == [("10.0.0.5", 6346)] and list(again.urls) == ["http://10.0.0.9/"]
    state.write_text("{not json")
    with pytest.raises(Exception, match="not a GWebCache state file"):
        GWebCache(rt2, GWebCacheConfig(host=w.host(rt2), port=81, state_path=state)).start()


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        GWebCacheConfig(path="gwc")
    with pytest.raises(ConfigError):
        GWebCacheConfig(port=-1)


class Redirect(BaseStreamHandler):
    """An HTTP server that answers every request with a redirect."""

    def __init__(self, location: str) -> None:
        self.location = location

    def data_received(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(
            f"HTTP/1.1 302 Found\r\nLocation: {self.location}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        self.stream.close()

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream


def test_client_against_the_server(world: World) -> None:
    crt = world.new_runtime("gwc")
    cache = GWebCache(crt, GWebCacheConfig(host=world.host(crt), port=0, update_interval=0))
    cache.start()
    rt = world.new_runtime("client")
    me = world.host(rt)
    client = GWebCacheClient(rt)
    answers: list[tuple[GWebCacheReply | None, str | None]] = []
    client.update(cache.url, (me, 6346), lambda r, e: answers.append((r, e)),
                  cache_url="http://192.0.2.1/gwc")  # fmt: skip
    assert world.run_until(lambda: len(answers) == 1, WAIT)
    assert answers[0][0] is not None and answers[0][0].update_ok is True
    # Through a redirect to the same cache.
    rrt = world.new_runtime("redirector")
    redir = rrt.listen((world.host(rrt), 0), lambda: Redirect(cache.url))
    host, port = redir.address
    client.get(f"http://{host}:{port}/old", lambda r, e: answers.append((r, e)))
    assert world.run_until(lambda: len(answers) == 2, WAIT)
    reply, error = answers[1]
    assert error is None and reply is not None
    assert reply.hosts == (((me, 6346), 0),) and reply.urls == (("http://192.0.2.1/gwc", 0),)
    assert reply.pong is not None and reply.pong.startswith("peerlab-gwc")
    # A cache that is not there, and a URL that is not one.
    client.get(f"http://{host}:1/", lambda r, e: answers.append((r, e)))
    client.get("gopher://x/", lambda r, e: answers.append((r, e)))
    assert world.run_until(lambda: len(answers) == 4, WAIT)
    assert answers[2][0] is None and answers[3][0] is None
    cache.close()


def test_server_survives_garbage_and_slow_clients(world: World) -> None:
    crt = world.new_runtime("gwc")
    cache = GWebCache(crt, GWebCacheConfig(host=world.host(crt), port=0, request_timeout=0.5))
    cache.start()
    rt = world.new_runtime("junk")
    junk, slow = StreamRecorder(), StreamRecorder()
    rt.connect(cache.address, junk)
    rt.connect(cache.address, slow)
    assert world.run_until(lambda: junk.made and slow.made, WAIT)
    assert junk.stream is not None and slow.stream is not None
    junk.stream.write(b"\x00\x01\x02 garbage\r\n\r\n")
    slow.stream.write(b"GET /?get=1 HTTP/1.1\r\nHost: x")
    assert world.run_until(lambda: (junk.eof or junk.lost) and (slow.eof or slow.lost), WAIT)
    assert junk.data.startswith(b"HTTP/1.1 400 ")
    assert slow.data == b"", "a request that never ends gets no answer, only a close"
    ok: list[GWebCacheReply | None] = []
    GWebCacheClient(rt).get(cache.url, lambda r, e: ok.append(r))
    assert world.run_until(lambda: bool(ok), WAIT) and ok[0] is not None
    cache.close()


def test_the_gwebcache_command(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "peerlab.cli.gwebcache",
            "--port",
            "0",
            "--state",
            str(state),
            "--update-interval",
            "0",
            "--exit-with-parent",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("gwebcache listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        with urllib.request.urlopen(url + "?update=1&ip=127.0.0.1:6346", timeout=10) as r:
            assert r.read() == b"I|update|OK\r\n"
        with urllib.request.urlopen(url + "?get=1&net=gnutella", timeout=10) as r:
            assert r.read().startswith(b"H|127.0.0.1:6346|")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert json.loads(state.read_text())["hosts"][0][:2] == ["127.0.0.1", 6346]


def test_the_command_reports_mistakes_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("nope")
    for args, code in ((["--state", str(bad), "--port", "0"], 1), (["--port", "x"], 2)):
        cmd = [sys.executable, "-m", "peerlab.cli.gwebcache", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=dict(os.environ))
        assert r.returncode == code, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
