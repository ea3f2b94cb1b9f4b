"""Torrents on the web page (issue 8: "add a magnet link"; "Torrents show
per-peer detail and piece map"), end to end in real headless Chromium
(Debian's, driven by Playwright) against two nodes on 127.0.0.1: a seed and
the user's node.  The user pastes a magnet link into the Library tab and
watches the torrent complete in Transfers, with its peers and piece map."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from webkit import CHROMIUM, WAIT_MS, NodeProc, chromium, login, wait_until

from peerlab.wire.metainfo import Metainfo

pytest.importorskip("playwright", reason="pip install -e '.[test]' brings playwright")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no {CHROMIUM} ('make test' installs Debian's chromium)")

NAME = "Night of the Living Dead (1968).avi"
SIZE = 3 * 1024 * 1024
#: The seed's upload limit: slow enough that progress is seen under way.
SEED_LIMIT = "512K"


@dataclass
class Swarm:
    seed: NodeProc
    user: NodeProc
    info_hash: str
    magnet: str
    data: bytes
    seed_bt: str


def _bt_listen(node: NodeProc) -> str:
    return str(node.json("status")["bittorrent"]["listen"])


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    root = tmp_path_factory.mktemp("webbt")
    home = root / "home"
    films = root / "films"
    films.mkdir()
    data = bytes((i * 7919 + (i >> 12)) & 0xFF for i in range(SIZE))
    (films / NAME).write_bytes(data)
    started: list[NodeProc] = []
    try:
        seed = NodeProc(home, root / "seed", ["--bittorrent-port", "0"]).start()
        user = NodeProc(home, root / "user", ["--bittorrent-port", "0"]).start()
        started += [seed, user]
        seed.wait_ready()
        user.wait_ready()
        tfile = root / "film.torrent"
        seed.cli("torrent", "create", str(films / NAME), "--piece-size", "32K", "-o", str(tfile))
        ih = Metainfo.from_bytes(tfile.read_bytes()).info.info_hash.hex()
        seed.cli("torrent", "add", str(tfile), "--save-path", str(films), "--up-limit",
                 SEED_LIMIT)
        wait_until(lambda: [t for t in seed.json("torrent", "list")["torrents"]
                            if t["status"] == "seeding"], "the seed checked its file")
        seed_bt = _bt_listen(seed)
        magnet = f"magnet:?xt=urn:btih:{ih}&dn=film&x.pe={seed_bt}"
        yield Swarm(seed, user, ih, magnet, data, seed_bt)
    finally:
        for p in reversed(started):
            p.stop()


@pytest.fixture
def page(swarm: Swarm) -> Iterator[Any]:
    with chromium() as context:
        p = context.new_page()
        p.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        yield p
        assert not errors, errors


def _percent(row: Any) -> int:
    return int(row.locator("[role=progressbar]").get_attribute("aria-valuenow") or 0)


@pytest.mark.slow
def test_add_a_magnet_link_and_watch_it_complete_with_peers_and_piece_map(
    swarm: Swarm, page: Any, screenshot: Callable[[Any, str], Path]
) -> None:
    login(page, swarm.user)
    page.click(".tab[data-tab=library]")
    page.locator("#magnet-link:enabled").wait_for()
    page.fill("#magnet-link", swarm.magnet)
    page.click("#torrent-add")
    page.wait_for_selector(".toast:has-text('Torrent added')")

    page.click(".tab[data-tab=transfers]")
    row = page.locator("#downloads tr.transfer-row[data-network=bittorrent]",
                       has=page.locator("td.col-name", has_text=NAME))
    row.wait_for()
    row.locator(".expander").click()
    # per-peer detail while it downloads: the seed, with its flags
    peer = page.locator("tr.detail-row tr.torrent-peer", has=page.locator(
        "td", has_text=swarm.seed_bt))
    peer.wait_for()
    wait_until(lambda: 0 < _percent(row) < 100, "progress under way")
    cells = page.locator("tr.detail-row .piece-map .cell")
    assert cells.count() == SIZE // (32 * 1024)
    assert 0 < page.locator("tr.detail-row .piece-map .cell.have").count() < cells.count()
    assert "D" in peer.locator("td.flags").inner_text()  # downloading from it
    screenshot(page, "transfers-torrent")

    row.locator("td.col-status:has-text('Seeding')").wait_for(timeout=90_000)
    assert _percent(row) == 100
    page.locator("tr.detail-row .piece-map .cell.have").nth(cells.count() - 1).wait_for()
    assert page.locator("tr.detail-row .piece-map .cell:not(.have)").count() == 0
    got = swarm.user.data_dir / "downloads" / NAME
    assert got.read_bytes() == swarm.data

    # the row's Pause stops the torrent, Resume starts it again
    row.locator(".act-pause").click()
    row.locator("td.col-status:has-text('Stopped')").wait_for()
    row.locator(".act-pause:has-text('Resume')").click()
    row.locator("td.col-status:has-text('Seeding')").wait_for()


def test_adding_garbage_says_why(swarm: Swarm, page: Any) -> None:
    login(page, swarm.user)
    page.click(".tab[data-tab=library]")
    page.locator("#magnet-link:enabled").wait_for()
    page.fill("#magnet-link", "magnet:?xt=urn:btih:<script>")
    page.click("#torrent-add")
    page.wait_for_selector(".toast:has-text('Cannot add the torrent')")
    assert page.locator("script:has-text('btih')").count() == 0


def test_global_bittorrent_limits_from_the_settings_form(swarm: Swarm, page: Any) -> None:
    login(page, swarm.user)
    page.click(".tab[data-tab=library]")
    page.locator("#set-bt-upload-rate:visible").wait_for()
    page.fill("#set-bt-upload-rate", "200K")
    page.fill("#set-bt-download-rate", "1M")
    page.click("#settings-apply")
    page.wait_for_selector("#now-bt-upload-rate:has-text('200 KB/s')")
    st = swarm.user.json("status")["bittorrent"]
    assert st["upload_limit"] == 200 * 1024 and st["download_limit"] == 1024 * 1024
    page.fill("#set-bt-upload-rate", "0")
    page.fill("#set-bt-download-rate", "0")
    page.click("#settings-apply")
    page.wait_for_selector("#now-bt-upload-rate:has-text('unlimited')")
    assert swarm.user.json("status")["bittorrent"]["upload_limit"] == 0


def test_add_a_torrent_file_then_cancel_removes_it(
    swarm: Swarm, page: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("webbt-file")
    (root / "lonely.bin").write_bytes(b"nobody seeds this" * 4096)
    tfile = root / "lonely.torrent"
    swarm.user.cli("torrent", "create", str(root / "lonely.bin"), "-o", str(tfile))
    login(page, swarm.user)
    page.click(".tab[data-tab=library]")
    page.locator("#torrent-file:enabled").wait_for()
    page.set_input_files("#torrent-file", str(tfile))
    page.click("#torrent-add")
    page.wait_for_selector(".toast:has-text('Torrent added: lonely.bin')")
    page.click(".tab[data-tab=transfers]")
    row = page.locator("#downloads tr.transfer-row[data-network=bittorrent]",
                       has=page.locator("td.col-name", has_text="lonely.bin"))
    row.locator("td.col-peer:has-text('0 peers')").wait_for()
    assert any(t["name"] == "lonely.bin" for t in swarm.user.json("torrent", "list")["torrents"])
    row.locator(".act-cancel").click()
    row.wait_for(state="detached")
    assert all(t["name"] != "lonely.bin" for t in swarm.user.json("torrent", "list")["torrents"])
