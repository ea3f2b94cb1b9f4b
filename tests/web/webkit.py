"""Helpers of the web page tests: nodes and a Napster server as processes on
127.0.0.1, music to share, and headless Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peerlab.apps.media import write_mp3

#: Bounds on every wait (never asserted as timings).
START_TIMEOUT = 60.0
CLI_TIMEOUT = 60.0
POLL = 0.1
CHROMIUM = Path("/usr/bin/chromium")
#: Chromium flags for a quiet, self-contained headless run on a shared machine.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
#: The desktop size of the screenshots in docs/screenshots/.
DESKTOP = {"width": 1366, "height": 900}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: The hostile names of the escaping tests.
EVIL_TITLE = "<script>alert(1)</script>"
EVIL_FILE = "<img src=x onerror=alert(1)>.mp3"
_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def music(folder: Path, toot_seconds: int = 60) -> dict[str, Path]:
    """A few tagged MP3s as the lecture's screenshots list them."""
    tracks = {
        "toot": ("Maclean & Maclean - Little Toot.mp3", "Little Toot", "Maclean & Maclean",
                 "The Gross Manual", "Comedy", toot_seconds, 128, 11),
        "ohio": ("Crosby, Stills, Nash And Young - Ohio.mp3", "Ohio",
                 "Crosby, Stills, Nash And Young", "4 Way Street", "Rock", 8, 128, 12),
        "andrews": ("Andrews Sisters - Little Toot.mp3", "Little Toot", "Andrews Sisters",
                    "Disney Songs", "Children", 12, 192, 13),
        "tootsie": ("Brenda Lee - Toot Toot Tootsie Goodbye.mp3", "Toot Toot Tootsie Goodbye",
                    "Brenda Lee", "Little Miss Dynamite", "Pop", 10, 160, 14),
    }  # fmt: skip
    out = {}
    for key, (name, title, artist, album, genre, seconds, kbps, seed) in tracks.items():
        out[key] = write_mp3(folder / name, title=title, artist=artist, album=album,
                             genre=genre, seconds=seconds, bitrate_kbps=kbps, seed=seed)
    return out


def evil_music(folder: Path) -> Path:
    """A file whose name and tags are markup: the page must show them as text."""
    return write_mp3(folder / EVIL_FILE, title=EVIL_TITLE, artist="<b>bold</b> & co",
                     album="<i>x</i>", genre="Hack", seconds=4, seed=66)


class NodeProc:
    """One ``peerlab node`` process with its own data dir (and fixed control port)."""

    def __init__(self, home: Path, data_dir: Path, args: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.home = home
        self.data_dir = data_dir
        self.args = args
        self.env = env or {}
        self.control_port = free_port()
        self.log = data_dir.parent / f"{data_dir.name}.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), "node",
               "--listen-port", "0", "--napster-port", "0", "--control-port",
               str(self.control_port), "--exit-with-parent", *self.args]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env=proc_env(self.home, self.env))
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def control(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "control.json").read_text())  # type: ignore[no-any-return]

    @property
    def token(self) -> str:
        return str(self.control()["token"])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=proc_env(self.home),
        )
        if check and p.returncode != 0:
            raise AssertionError(f"peerlab {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_ready(self, files: int = 0, napster: bool = False) -> dict[str, Any]:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}:\n{self.output()}")
            if (self.data_dir / "control.json").exists():
                p = self.cli("status", "--json", check=False)
                if p.returncode == 0:
                    st: dict[str, Any] = json.loads(p.stdout)
                    nap = st.get("napster") or {}
                    if (not st["scan"]["running"] and st["shares"]["files"] >= files
                            and (not napster or (nap.get("state") == "online"
                                                 and nap.get("shared") == files))):
                        return st
            time.sleep(POLL)
        raise AssertionError(f"node not ready in {START_TIMEOUT} s:\n{self.output()}")

    @property
    def peer_address(self) -> str:
        return str(self.json("status")["listen"])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


class ServerProc:
    """``peerlab napster-server`` on a free port with its own SQLite index."""

    def __init__(self, home: Path, root: Path, name: str) -> None:
        self.out = root / f"{name}.out"
        root.mkdir(parents=True, exist_ok=True)
        with self.out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peerlab.cli", "napster-server", "--port", "0",
                 "--database", f"sqlite:{root / name}.db", "--password-cost", "4",
                 "--exit-with-parent"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=proc_env(home),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            m = _LISTENING.search(self.out.read_text(errors="replace"))
            if m:
                self.address = f"{m.group(1)}:{m.group(2)}"
                return
            assert self.proc.poll() is None, self.out.read_text()
            assert time.monotonic() < deadline, "napster-server did not start"
            time.sleep(POLL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@contextmanager
def chromium() -> Iterator[Any]:
    """A fresh headless Chromium context (Debian's, via Playwright) at desktop size."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="peerlab-chromium-") as profile, \
            sync_playwright() as pw:  # fmt: skip
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=DESKTOP, device_scale_factor=1, locale="en-GB",
            timezone_id="Europe/Berlin",
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def login(page: Any, node: NodeProc, secret: str | None = None) -> None:
    """Open the node's page and log in with its token (or ``secret``)."""
    page.goto(node.url + "/login")
    page.fill("#secret", secret if secret is not None else node.token)
    page.click("#login-button")
    page.wait_for_selector("#link-state[data-state=live]")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("() => document.getElementById('toasts')?.replaceChildren()")
    page.screenshot(path=str(path), full_page=False)
    return path


def wait_until(check: Callable[[], Any], what: str, timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL)
    raise AssertionError(f"timed out waiting for {what}")
