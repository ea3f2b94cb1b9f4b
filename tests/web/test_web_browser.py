"""The web page end to end: real headless Chromium (Debian's, driven by
Playwright) against real nodes and a Napster index server on 127.0.0.1.

Each test that shows a tab saves a screenshot at desktop size (1366x900): in
a temporary folder on a plain run, in docs/screenshots/ under ``make
screenshots``.  Skipped only when /usr/bin/chromium (or the playwright
package) is missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from webkit import (
    CHROMIUM,
    EVIL_FILE,
    EVIL_TITLE,
    WAIT_MS,
    NodeProc,
    ServerProc,
    evil_music,
    login,
    music,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (Debian package "
                       "'chromium'; 'make test' installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the 'playwright' package is missing (pip install -e '.[test]')"),
]  # fmt: skip

TOOT = "Maclean & Maclean - Little Toot.mp3"


@dataclass
class Net:
    root: Path
    server: ServerProc
    a: NodeProc  # shares the music (and the hostile file) on Napster as lefty
    c: NodeProc  # shares a copy of two tracks as mred
    b: NodeProc  # the user: peers A and C, on Napster as stearch
    tracks: dict[str, Path]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("web")
    home = root / "home"
    started: list[Any] = []
    try:
        server = ServerProc(home, root / "servers", "one")
        started.append(server)
        tracks = music(root / "a-music", toot_seconds=150)
        evil_music(root / "a-music")
        (root / "c-music").mkdir()
        for key in ("toot", "andrews"):
            shutil.copy(tracks[key], root / "c-music" / tracks[key].name)
        a = NodeProc(home, root / "a", ["--share", str(root / "a-music"), "--napster",
                                        server.address, "--napster-nick", "lefty",
                                        "--napster-link", "cable"]).start()
        c = NodeProc(home, root / "c", ["--share", str(root / "c-music"), "--napster",
                                        server.address, "--napster-nick", "mred",
                                        "--napster-link", "dsl"]).start()
        started += [a, c]
        a.wait_ready(files=5, napster=True)
        c.wait_ready(files=2, napster=True)
        b = NodeProc(home, root / "b", ["--peer", a.peer_address, "--peer", c.peer_address,
                                        "--napster", server.address, "--napster-nick",
                                        "stearch", "--napster-link", "56k",
                                        "--download-rate", "400K"]).start()
        started.append(b)
        b.wait_ready(napster=True)
        yield Net(root, server, a, c, b, tracks)
    finally:
        for p in reversed(started):
            p.stop()


ALL = ("local", "peers", "napster")


def search(page: Any, words: str, networks: tuple[str, ...] = ALL) -> None:
    page.click(".tab[data-tab=search]")
    for box in page.query_selector_all("#net-choices input"):
        want = box.get_attribute("value") in networks
        if box.is_enabled() and box.is_checked() != want:
            box.click()
    page.fill("#search-text", words)
    page.click("#search-go")
    page.wait_for_selector("#search-summary:has-text('done')")


def row(page: Any, name: str, sources: int) -> Any:
    """The results line of ``name`` with that many sources."""
    return page.locator("tr.result-row", has=page.locator("td.col-name", has_text=name)).filter(
        has=page.locator("td.col-sources", has_text=str(sources))
    )


def test_login_then_search_two_networks_grouped_by_file(
    net: Net, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    page.goto(net.b.url + "/")
    page.wait_for_url("**/login")
    page.fill("#secret", "not the token")
    page.click("#login-button")
    page.wait_for_selector("#login-error:has-text('Wrong token or password')")
    screenshot(page, "login")
    login(page, net.b)

    search(page, "toot")
    # The direct peers' copy: one line, two sources (A and C), with the tags.
    http = row(page, TOOT, 2).filter(has=page.locator("td.col-artist", has_text="Maclean"))
    http.wait_for()
    # Napster's: lefty and mred share the same bytes (same md5 and size): one line too.
    nap = row(page, TOOT, 2).filter(has=page.locator("td.col-speed", has_text="DSL"))
    nap.wait_for()
    assert page.locator("tr.result-row").count() >= 4
    http.locator(".expander").click()
    page.wait_for_selector("tr.source-row td.source-host")
    hosts = page.locator("tr.source-row td.source-host").all_inner_texts()
    assert sorted(h.removeprefix("↳ ") for h in hosts) == sorted(
        [net.a.peer_address, net.c.peer_address]
    )
    nap.locator(".expander").click()
    page.wait_for_selector("tr.source-row td.source-host:has-text('lefty')")
    page.wait_for_selector("tr.source-row td.col-speed:has-text('Cable')")
    # Sort by size, both ways.
    page.click("th[data-col=size]")
    sizes = [r["size"] for r in _shown(page)]
    assert sizes == sorted(sizes, reverse=True)
    page.click("th[data-col=size]")
    sizes = [r["size"] for r in _shown(page)]
    assert sizes == sorted(sizes)
    page.click("th[data-col=sources]")
    # Filters: 160 kbps or more leaves the two tracks encoded that way.
    page.click("#more-options summary")
    page.select_option("#filter-bitrate", "160")
    assert {r["bitrate"] >= 160 for r in _shown(page)} == {True}
    page.select_option("#filter-bitrate", "0")
    page.click("#more-options summary")
    screenshot(page, "search")


def _shown(page: Any) -> list[dict[str, Any]]:
    """The results lines as drawn, read back with the page's own data."""
    page.wait_for_timeout(100)  # one animation frame for the batched redraw
    ids = [int(x) for x in page.eval_on_selector_all(
        "tr.result-row", "rows => rows.map(r => r.dataset.id)")]  # fmt: skip
    sizes = page.eval_on_selector_all("tr.result-row td:nth-child(6)",
                                      "cells => cells.map(c => c.title)")
    rates = page.eval_on_selector_all("tr.result-row td:nth-child(7)",
                                      "cells => cells.map(c => c.textContent)")
    return [{"id": i, "size": int(s.split()[0].replace(",", "")), "bitrate": int(b or 0)}
            for i, s, b in zip(ids, sizes, rates, strict=True)]  # fmt: skip


@pytest.mark.slow
def test_multi_source_download_pause_resume_and_the_upload_on_the_other_node(
    net: Net, page: Any, browser: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    login(page, net.b)
    search(page, "toot")
    http = row(page, TOOT, 2).filter(has=page.locator("td.col-artist", has_text="Maclean"))
    http.locator(".download-button").click()
    page.wait_for_selector(".toast:has-text('from 2 sources')")
    # Two small ones only Napster users have, fetched with Napster's own transfer.
    for name in ("Andrews Sisters", "Brenda Lee"):
        napster = page.locator("tr.result-row", has=page.locator("td.col-name", has_text=name))
        napster.filter(has=page.locator("td.col-speed", has_text="DSL")).or_(
            napster.filter(has=page.locator("td.col-speed", has_text="Cable"))
        ).first.locator(".download-button").click()
    page.click(".tab[data-tab=transfers]")
    dl = page.locator("#downloads tr.transfer-row", has=page.locator("td.col-name",
                                                                      has_text=TOOT))
    dl.locator("td.col-status:has-text('Downloading...')").wait_for()
    wait_until(lambda: 0 < _percent(dl) < 100, "progress under way")

    # The other node's Uploads table shows it, live.
    other = browser.new_page()
    other.set_default_timeout(WAIT_MS)
    login(other, net.a)
    other.click(".tab[data-tab=transfers]")
    up = other.locator("#uploads tr.transfer-row", has=other.locator("td.col-name",
                                                                     has_text=TOOT))
    up.wait_for()
    assert up.locator("td.col-peer").inner_text().startswith("127.0.0.1:")
    screenshot(other, "transfers-uploads")
    other.close()

    dl.locator(".act-pause").click()
    dl.locator("td.col-status:has-text('Paused')").wait_for()
    assert [d["status"] for d in net.b.json("transfers")["downloads"]
            if d.get("network") != "napster"] == ["paused"]  # fmt: skip
    page.locator("#downloads tr[data-network=napster] td.col-status:has-text('Complete')").nth(
        1
    ).wait_for()
    dl.locator(".expander").click()
    page.wait_for_selector(f"tr.detail-row td:has-text('{net.a.peer_address}')")
    page.wait_for_selector(f"tr.detail-row td:has-text('{net.c.peer_address}')")
    screenshot(page, "transfers")
    dl.locator(".act-pause:has-text('Resume')").click()
    dl.locator("td.col-status:has-text('File Complete!')").wait_for(timeout=90_000)
    assert _percent(dl) == 100
    assert page.locator("#transfers-concurrent").inner_text().startswith(
        "Concurrent Downloads: 0"
    )
    [done] = [d for d in net.b.json("transfers")["downloads"] if d.get("network") != "napster"]
    assert done["status"] == "complete"
    assert {s["address"] for s in done["sources"] if s["bytes"] > 0} == {
        net.a.peer_address, net.c.peer_address
    }  # both peers sent part of it
    got = net.b.data_dir / "downloads" / TOOT
    assert hashlib.sha1(got.read_bytes()).digest() == hashlib.sha1(
        net.tracks["toot"].read_bytes()
    ).digest()
    page.click("#clear-finished")
    page.wait_for_selector("#downloads tr.empty:visible")


def _percent(row_locator: Any) -> int:
    return int(row_locator.locator("[role=progressbar]").get_attribute("aria-valuenow") or 0)


def test_names_from_the_network_are_shown_as_text(
    net: Net, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    login(page, net.b)
    search(page, "alert")
    named = page.locator("tr.result-row", has=page.locator("td.col-name", has_text=EVIL_FILE))
    # The direct peer's line (Napster's carries no tags).
    evil = named.filter(has=page.locator("td.col-title", has_text="alert"))
    evil.wait_for()
    assert evil.locator("td.col-name").inner_text() == EVIL_FILE
    assert evil.locator("td.col-title").inner_text() == EVIL_TITLE
    assert evil.locator("td.col-artist").inner_text() == "<b>bold</b> & co"
    assert page.locator("#results img, #results script, #results b, #results i").count() == 0
    evil.locator(".download-button").click()
    page.wait_for_selector(".toast:has-text('Downloading')")
    # The sharer's Uploads table shows the name as its catalog has it, as text
    # (the downloader stores the file under a name made safe for its disk).
    sharer = page.context.new_page()
    login(sharer, net.a)
    sharer.click(".tab[data-tab=transfers]")
    cell = sharer.locator("#uploads td.col-name", has_text=EVIL_FILE).first
    cell.wait_for()
    assert cell.inner_text() == EVIL_FILE
    assert sharer.locator("#uploads img").count() == 0
    sharer.close()
    page.click(".tab[data-tab=search]")
    screenshot(page, "search-escaping")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_network_tab_shows_servers_peers_and_the_monitor(
    net: Net, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    login(page, net.b)
    search(page, "ohio")
    page.click(".tab[data-tab=network]")
    napster = page.locator(".network-card[data-network=napster]")
    napster.locator("table.servers td:has-text('✔ in use')").wait_for()
    assert net.server.address in napster.locator("table.servers").inner_text()
    assert "stearch" in napster.locator(".facts").inner_text()
    napster.locator("table.rates td:has-text('tx.search')").wait_for()
    peers = page.locator(".network-card[data-network=peers]")
    peers.locator("table.connections td:has-text('answered')").first.wait_for()
    assert peers.locator("table.connections tbody tr").count() == 2
    assert "has not joined" in page.locator(".network-card[data-network=gnutella]").inner_text()
    # BitTorrent runs in every node (its own listener), with no torrent yet
    bt = page.locator(".network-card[data-network=bittorrent]").inner_text()
    assert "has not joined" not in bt and "Torrents" in bt
    # A sees B's searches pass through it: gtk-gnutella's Monitor.
    login_a = page.context.new_page()
    login(login_a, net.a)
    login_a.click(".tab[data-tab=network]")
    search(page, "tootsie")
    login_a.click(".tab[data-tab=network]")
    login_a.locator("#monitor-body td.query:has-text('tootsie')").wait_for()
    screenshot(login_a, "network")
    login_a.close()


def test_library_and_settings(
    net: Net, page: Any, tmp_path: Path, screenshot: Callable[[Any, str], Path]
) -> None:
    login(page, net.c)
    page.click(".tab[data-tab=library]")
    folder = page.locator("#folders-body tr", has_text=str(net.root / "c-music"))
    folder.wait_for()
    assert folder.locator("td.num").first.inner_text() == "2"
    extra = tmp_path / "more music"
    music(extra)
    page.fill("#folder-path", str(extra))
    page.click("#folder-add")
    added = page.locator("#folders-body tr", has_text=str(extra))
    added.wait_for()
    wait_until(lambda: added.locator("td.num").first.inner_text() == "4", "the rescan's count")
    page.fill("#set-upload-rate", "300K")
    page.fill("#set-upload-slots", "3")
    page.click("#settings-apply")
    page.wait_for_selector("#now-upload-rate:has-text('300 KB/s')")
    assert net.c.json("status")["upload_slots"] == 3
    assert page.locator("#magnet-link").is_enabled()  # BitTorrent runs in the node
    assert "magnet link" in page.locator("#torrent-note").inner_text()
    screenshot(page, "library")
    added.locator("button:has-text('Remove')").click()
    added.wait_for(state="detached")
    page.fill("#set-upload-rate", "0")
    page.fill("#set-upload-slots", "4")
    page.click("#settings-apply")
    page.wait_for_selector("#now-upload-rate:has-text('unlimited')")


def test_a_thousand_results_and_two_hundred_transfers_stay_responsive(
    net: Net, page: Any
) -> None:
    login(page, net.c)
    page.evaluate("""() => {
        const results = [];
        for (let i = 0; i < 1000; i++) results.push({id: 100000 + i, name: `track ${i}.mp3`,
            size: 1000 * i, bitrate: 128, duration: 200, sources: ["127.0.0.1:1"],
            urn: `urn:sha1:${i}`, title: `title ${i}`});
        window.peerlab.emit("results", {search: "load", text: "load", networks: ["peers"],
                                        results});
        const rows = [];
        for (let i = 0; i < 200; i++) rows.push({key: `d:L${i}`, id: `L${i}`, network: "peers",
            name: `load ${i}.mp3`, size: 1000, done: i, progress: i / 200, status: "downloading",
            status_text: "Downloading...", peer: "127.0.0.1:1", speed: "", rate: 10, eta: 5,
            sources: []});
        window.peerlab.emit("transfers", {rows, gone: [], concurrent_downloads: 200,
                                          concurrent_uploads: 0});
    }""")
    page.click(".chip:has-text('load')")
    page.wait_for_selector("#search-summary:has-text('1000 items found')")
    drawn = page.locator("#results-body tr.result-row").count()
    assert 0 < drawn < 100  # virtualised: only the visible lines exist
    page.eval_on_selector("#results-scroll", "s => { s.scrollTop = s.scrollHeight; }")
    page.wait_for_selector("#results-body td.col-name:has-text('track 0.mp3')")
    page.click(".tab[data-tab=transfers]")
    page.wait_for_selector("#downloads tr[data-key='d:L199']")
    assert page.locator("#downloads tr.transfer-row").count() == 200
    assert page.locator("#transfers-concurrent").inner_text().startswith(
        "Concurrent Downloads: 200"
    )


def test_the_page_says_when_the_node_stops_and_reconnects(
    tmp_path: Path, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    home = tmp_path / "home"
    d = NodeProc(home, tmp_path / "d", []).start()
    try:
        d.wait_ready()
        login(page, d)
        page.click(".tab[data-tab=network]")
        d.stop()
        page.wait_for_selector("#banner[data-kind=error]:has-text('stopped answering')")
        assert page.locator("#link-state").get_attribute("data-state") == "lost"
        screenshot(page, "node-stopped")
        d.start()  # same data dir, same control port: the session is still good
        page.wait_for_selector("#banner[data-kind=ok]:has-text('Reconnected')")
        page.wait_for_selector("#link-state[data-state=live]")
        assert page.url.endswith("#network")
        time.sleep(0.2)
        assert "has not joined" in page.locator(".network-card[data-network=napster]").inner_text()
    finally:
        d.stop()
