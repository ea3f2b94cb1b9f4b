"""Helpers of the web page tests: nodes and a Napster server as processes on
127.0.0.1 (the shared kit, tests/kits/prockit.py), music to share, headless
Chromium driven by Playwright, and where the screenshots go."""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import prockit
from prockit import ServerProc, proc_env, wait_until

from peerlab.apps.media import write_mp3

__all__ = [
    "CHROMIUM", "EVIL_FILE", "EVIL_TITLE", "WAIT_MS", "NodeProc", "ServerProc", "chromium",
    "evil_music", "free_port", "login", "music", "proc_env", "screenshot_folder",
    "take_screenshot", "wait_until",
]  # fmt: skip

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium flags for a quiet, self-contained headless run on a shared machine.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
#: Page waits (Playwright's own timeout), milliseconds: a bound, never asserted.
WAIT_MS = 30_000
#: The desktop size of the screenshots in docs/screenshots/.
DESKTOP = {"width": 1366, "height": 900}
#: Names the folder the screenshots go to: ``make screenshots`` sets it to
#: docs/screenshots/; a plain test run leaves the tracked files alone.
SCREENSHOTS_ENV = "PEERLAB_SCREENSHOTS"
#: The hostile names of the escaping tests.
EVIL_TITLE = "<script>alert(1)</script>"
EVIL_FILE = "<img src=x onerror=alert(1)>.mp3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class NodeProc(prockit.NodeProc):
    """A ``peerlab node`` with a Napster client and a fixed control port (the
    web page's address)."""

    def __init__(self, home: Path, data_dir: Path, args: list[str],
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(home, data_dir, args, env)
        self.control_port = free_port()

    def node_args(self) -> list[str]:
        return [*super().node_args(), "--napster-port", "0",
                "--control-port", str(self.control_port)]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def control(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "control.json").read_text())  # type: ignore[no-any-return]

    @property
    def token(self) -> str:
        return str(self.control()["token"])


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


def screenshot_folder(environ: Mapping[str, str], scratch: Path) -> Path:
    """Where screenshots go: the folder :data:`SCREENSHOTS_ENV` names, else
    ``scratch`` (a temporary folder: a test run changes no tracked file)."""
    named = environ.get(SCREENSHOTS_ENV)
    return Path(named) if named else scratch


def take_screenshot(page: Any, folder: Path, name: str) -> Path:
    """``folder/name.png`` of the page as it shows now, without toasts."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.evaluate("() => document.getElementById('toasts')?.replaceChildren()")
    page.screenshot(path=str(path), full_page=False)
    return path
