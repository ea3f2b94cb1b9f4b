"""The page's KaZaA search form over Gnutella and the Gnutella Monitor, in
real headless Chromium (Debian's, driven by Playwright) against two nodes on
127.0.0.1; and the ``peerlab node --web-*`` flags.

A (``--gnutella-serve``) shares four tagged tracks; B joins through A.  On
B's page, "Artist: linkin park" with "128 kbps or more" on Gnutella finds the
two Linkin Park tracks of at least 128 kbps -- filtered by A (a rich query),
so only those two arrive -- and A's Monitor shows the query passing through,
with its hops and TTL (``gnutella.query_seen``).
"""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prockit import open_gnutella
from webkit import CHROMIUM, NodeProc, free_port, login, wait_until

from peerlab.apps.media import write_mp3

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (Debian package "
                       "'chromium'; 'make test' installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the 'playwright' package is missing (pip install -e '.[test]')"),
    pytest.mark.slow,
]  # fmt: skip

#: (file name, title, artist, album, genre, seconds, kbps)
TRACKS = [
    ("01 numb.mp3", "Numb", "Linkin Park", "Meteora", "Rock", 8, 192),
    ("02 faint.mp3", "Faint", "Linkin Park", "Meteora", "Rock", 6, 96),
    ("linkin park covers - numb.mp3", "Numb", "The Cover Band", "Tributes", "Pop", 7, 256),
    ("in the end.mp3", "In the End", "Linkin Park", "Hybrid Theory", "Rock", 3, 160),
]


@dataclass
class Net:
    a: NodeProc
    b: NodeProc


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("web-rich")
    home = root / "home"
    for i, (name, title, artist, album, genre, seconds, kbps) in enumerate(TRACKS):
        write_mp3(root / "a-music" / name, title=title, artist=artist, album=album, genre=genre,
                  seconds=seconds, bitrate_kbps=kbps, seed=40 + i)  # fmt: skip
    started: list[NodeProc] = []
    try:
        a = NodeProc(home, root / "a", ["--gnutella-serve", "--share", str(root / "a-music")])
        started.append(a.start())
        addr_a = str(a.wait_ready(files=len(TRACKS))["listen"])
        b = NodeProc(home, root / "b", ["--gnutella", addr_a])
        started.append(b.start())
        b.wait_ready()
        wait_until(lambda: open_gnutella(b.json("status")) >= 1, "B on Gnutella")
        wait_until(lambda: open_gnutella(a.json("status")) >= 1, "A sees B")
        yield Net(a, b)
    finally:
        for p in reversed(started):
            p.stop()


def _row(page: Any, name: str) -> Any:
    return page.locator("tr.result-row", has=page.locator("td.col-name", has_text=name))


def test_artist_search_with_a_bitrate_floor_and_the_monitor(
    net: Net, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    monitor = page.context.new_page()
    login(monitor, net.a)
    monitor.click(".tab[data-tab=network]")

    login(page, net.b)
    page.click(".tab[data-tab=search]")
    for box in page.query_selector_all("#net-choices input"):
        if box.is_enabled() and box.is_checked() != (box.get_attribute("value") == "gnutella"):
            box.click()
    page.check("input[name=field][value=artist]")
    page.click("#more-options summary")
    page.select_option("#filter-bitrate", "128")
    page.fill("#search-text", "linkin park")
    page.click("#search-go")
    page.wait_for_selector("#search-summary:has-text('done')")
    summary = page.inner_text("#search-summary")
    # Only the two matching files arrived: A filtered them, not the page.
    assert summary.startswith("2 items found"), summary
    assert "shown after filters" not in summary
    for name, kbps in (("01 numb.mp3", "192"), ("in the end.mp3", "160")):
        _row(page, name).locator("td", has_text=kbps).first.wait_for()
    assert _row(page, "02 faint.mp3").count() == 0
    assert _row(page, "covers").count() == 0
    numb = _row(page, "01 numb.mp3")
    assert "Meteora" in numb.inner_text() and "Linkin Park" in numb.inner_text()
    # A's Query Hit states 1000 kbit/s: DSL among Napster's link classes, so a
    # "T1 or faster" filter hides both results and "DSL or faster" keeps them.
    assert numb.locator("td.col-speed").inner_text() == "DSL"
    page.select_option("#filter-speed", "9")
    page.wait_for_selector("#search-summary:has-text('0 shown after filters')")
    page.select_option("#filter-speed", "8")
    page.wait_for_function(
        "() => !document.getElementById('search-summary').textContent.includes('shown after')"
    )
    # Its source is a Gnutella servent (A), with the hit's flags.
    numb.locator("button.expander").click()
    page.locator("tr", has_text=net.a.peer_address).filter(has_text="Gnutella").first.wait_for()
    screenshot(page, "search-rich")

    # A's Monitor: the query passed through A (B is its neighbour: hops 0).
    line = monitor.locator("#monitor-body tr", has=monitor.locator("td.query",
                                                                   has_text="linkin park"))
    line.first.wait_for()
    assert line.first.locator("td.hops").inner_text() == "0"
    assert int(line.first.locator("td.ttl").inner_text()) >= 1
    assert "gnutella" in line.first.inner_text()
    screenshot(monitor, "network-monitor")
    monitor.close()


def test_web_port_flag_serves_the_page(tmp_path: Path) -> None:
    port = free_port()
    node = NodeProc(tmp_path / "home", tmp_path / "w", ["--web-port", str(port)])
    try:
        node.start().wait_ready()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as r:
            assert r.status == 200 and b"secret" in r.read()
    finally:
        node.stop()


def test_binding_elsewhere_needs_the_opt_in_and_a_password(tmp_path: Path) -> None:
    node = NodeProc(tmp_path / "home", tmp_path / "x", [])
    # Refused before anything listens: only the command line is checked.
    p = node.cli("node", "--web-port", "0", "--web-bind", "0.0.0.0", check=False)
    assert p.returncode != 0 and "opt-in" in p.stderr and "Traceback" not in p.stderr
    p = node.cli("node", "--web-bind", "0.0.0.0", "--web-open-to-network", check=False)
    assert p.returncode != 0 and "web port" in p.stderr
    p = node.cli("node", "--web-password", "short", check=False)
    assert p.returncode != 0 and "8-256 characters" in p.stderr
