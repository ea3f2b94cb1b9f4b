"""The BitTorrent part of ``peerlab demo`` (issue 6, item 7): a flash crowd.

On 127.0.0.1: a tracker (``peerlab tracker``), one seed and
:data:`BT_LEECHERS` leechers, each a ``peerlab node`` of its own.  The seed
has a file nobody else has and a torrent of it naming the tracker; its upload
is limited (:data:`SEED_UPLOAD_RATE`), the leechers' is not.  Every leecher
adds the torrent at the same moment (the flash crowd), learns the others from
the tracker, and the demo shows each one's pieces, rates and peers live.  At
the end every copy is compared with the original (SHA-1, byte for byte) and
the upload totals are printed: the seed sent far less than the crowd
downloaded, because the leechers uploaded the rest to each other (the
lecture's point: a flash crowd adds upload capacity as it grows).

:func:`bittorrent_story` runs it inside :class:`peerlab.apps.demo.Network`
(whose clean-up stops every process).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from peerlab.apps.control import ControlClient
from peerlab.apps.demo import (
    POLL_INTERVAL,
    START_TIMEOUT,
    DemoFailed,
    DemoNode,
    Network,
)
from peerlab.cli.render import human_rate, human_size
from peerlab.storage.torrent_hash import hash_torrent
from peerlab.wire.metainfo import Metainfo

#: Leechers of the flash crowd: enough that they outnumber the seed's upload
#: slots and must trade among themselves, few enough for a 2-core laptop.
BT_LEECHERS = 6
#: The shared file: 8 MiB in 64 KiB pieces (128 pieces, a visible piece map).
BT_FILE_SIZE = 8 * 1024 * 1024
BT_PIECE_SIZE = 64 * 1024
BT_FILE_NAME = "flash-crowd.bin"
#: The seed's upload limit: the crowd as a whole can only fetch new pieces
#: this fast from it, so what they get faster they got from each other.
SEED_UPLOAD_RATE = "1M"
#: How long the swarm may take (the demo fails beyond it).
SWARM_TIMEOUT = 180.0
#: The seed may upload at most this share of what the crowd downloaded,
#: or the demo says the leechers did not trade.
MAX_SEED_SHARE = 0.5
#: Tracker announce interval for the demo: short, so late joiners are
#: found by early ones quickly (peers also connect in, and PEX spreads them).
TRACKER_INTERVAL = 15
_TRACKER_READY = re.compile(r"tracker listening on (http://\S+/announce)")


def bittorrent_story(net: Network, console: Console) -> None:
    """The flash crowd (see the module docstring); raises DemoFailed."""
    console.rule("[bold]BitTorrent: a tracker, one seed, a flash crowd")
    root = net.root / "bittorrent"
    seed = DemoNode("seed", root / "seed" / "data", root / "seed" / "share")
    leechers = [
        DemoNode(f"leech{i}", root / f"leech{i}" / "data", root / f"leech{i}" / "share")
        for i in range(1, BT_LEECHERS + 1)
    ]
    for node in (seed, *leechers):
        node.share_dir.mkdir(parents=True, exist_ok=True)
    original = seed.share_dir / BT_FILE_NAME
    original.write_bytes(os.urandom(BT_FILE_SIZE))
    digest = hashlib.sha1(original.read_bytes()).hexdigest()

    announce = _start_tracker(net, root)
    console.print(f"Tracker: {announce}")
    info = hash_torrent(original, BT_PIECE_SIZE)
    meta = Metainfo.create(info, trackers=[[announce]])
    torrent = meta.to_bytes()
    ih = info.info_hash.hex()
    console.print(f"Torrent of {BT_FILE_NAME}: {human_size(info.total_size)} in "
                  f"{info.piece_count} pieces of {human_size(BT_PIECE_SIZE)}, "
                  f"info-hash {ih}")

    console.print(f"Starting the seed and {len(leechers)} leechers (peerlab node each) ...")
    net.nodes += [seed, *leechers]
    for node in (seed, *leechers):
        net.start(node, ["--bittorrent-port", "0"])
    net.wait_ready([seed, *leechers])
    asyncio.run(_swarm(seed, leechers, torrent, ih, info.piece_count, console))

    for node in leechers:
        copy = node.data_dir / "downloads" / BT_FILE_NAME
        if hashlib.sha1(copy.read_bytes()).hexdigest() != digest:
            raise DemoFailed(f"{node.name}'s copy differs from the original")
    console.print(f"[green]Every leecher's copy is identical to the original, byte for byte "
                  f"(SHA-1 {digest}).[/]")


def _start_tracker(net: Network, root: Path) -> str:
    """``peerlab tracker`` on a free port; its HTTP announce URL."""
    server = net.spawn_server("tracker", root / "tracker.out", [
        "tracker", "--host", "127.0.0.1", "--http-port", "0", "--no-udp", "--no-state",
        "--interval", str(TRACKER_INTERVAL), "--exit-with-parent",
    ])
    assert server.proc is not None
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = server.log_path.read_text(encoding="utf-8", errors="replace")
        m = _TRACKER_READY.search(text)
        if m:
            server.address = m.group(1)
            return m.group(1)
        if server.proc.poll() is not None:
            raise DemoFailed(f"the tracker exited:\n{text[-500:]}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"the tracker did not start within {START_TIMEOUT:g} s")
        time.sleep(POLL_INTERVAL)


async def _row(c: ControlClient, ih: str) -> dict[str, Any]:
    for t in (await c.torrents())["torrents"]:
        if t["info_hash"] == ih:
            return t  # type: ignore[no-any-return]
    raise DemoFailed(f"torrent {ih} vanished from a node")


async def _swarm(
    seed: DemoNode, leechers: list[DemoNode], torrent: bytes, ih: str, pieces: int,
    console: Console,
) -> None:
    clients = {n.name: ControlClient(n.data_dir) for n in (seed, *leechers)}
    try:
        body = {"torrent": base64.b64encode(torrent).decode()}
        await clients["seed"].torrent_add(
            {**body, "save_path": str(seed.share_dir), "up_limit": SEED_UPLOAD_RATE}
        )
        deadline = time.monotonic() + START_TIMEOUT
        while (await _row(clients["seed"], ih))["status"] != "seeding":
            if time.monotonic() > deadline:
                raise DemoFailed("the seed did not finish checking its file")
            await asyncio.sleep(POLL_INTERVAL)
        console.print(f"The seed has every piece; its upload is limited to "
                      f"{SEED_UPLOAD_RATE}B/s.  The flash crowd arrives ...")
        # the flash crowd: every leecher adds the torrent at once
        await asyncio.gather(*(clients[n.name].torrent_add(body) for n in leechers))
        await _watch(clients, seed, leechers, ih, pieces, console)
        await _report(clients, seed, leechers, ih, console)
    finally:
        for c in clients.values():
            await c.close()


async def _watch(
    clients: dict[str, ControlClient], seed: DemoNode, leechers: list[DemoNode], ih: str,
    pieces: int, console: Console,
) -> None:
    progress = Progress(
        TextColumn("[bold]{task.description:<7}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"), console=console, transient=False,
    )  # fmt: skip
    tasks = {n.name: progress.add_task(n.name, total=pieces, detail="") for n in leechers}
    seed_task = progress.add_task("seed", total=None, detail="")
    deadline = time.monotonic() + SWARM_TIMEOUT
    with progress:
        while True:
            rows = await asyncio.gather(*(_row(clients[n.name], ih) for n in leechers))
            seed_row = await _row(clients["seed"], ih)
            for node, r in zip(leechers, rows, strict=True):
                progress.update(
                    tasks[node.name], completed=r["pieces_have"] or 0,
                    detail=(f"down {human_rate(r['rate']):>9}  up {human_rate(r['up_rate']):>9}  "
                            f"{len(r['sources'])} peers  sent {human_size(r['uploaded'])}"),
                )  # fmt: skip
            progress.update(seed_task, detail=(
                f"up {human_rate(seed_row['up_rate']):>9}  {len(seed_row['sources'])} peers  "
                f"sent {human_size(seed_row['uploaded'])}"))
            if all(r["status"] == "seeding" for r in rows):
                return
            if time.monotonic() > deadline:
                raise DemoFailed(f"the swarm did not complete within {SWARM_TIMEOUT:g} s")
            await asyncio.sleep(POLL_INTERVAL)


async def _report(
    clients: dict[str, ControlClient], seed: DemoNode, leechers: list[DemoNode], ih: str,
    console: Console,
) -> None:
    rows = {n.name: await _row(clients[n.name], ih) for n in (seed, *leechers)}
    table = Table(title="Who uploaded what", box=None, header_style="bold")
    for col in ("peer", "downloaded", "uploaded", "share ratio"):
        table.add_column(col, justify="left" if col == "peer" else "right")
    for name, r in rows.items():
        table.add_row(name, human_size(r["downloaded"]), human_size(r["uploaded"]),
                      f"{r['ratio']:.2f}")
    console.print(table)
    seed_up = rows["seed"]["uploaded"]
    crowd_down = sum(rows[n.name]["downloaded"] for n in leechers)
    crowd_up = sum(rows[n.name]["uploaded"] for n in leechers)
    console.print(
        f"The {len(leechers)} leechers downloaded {human_size(crowd_down)} in all; the seed "
        f"uploaded only {human_size(seed_up)} ({100 * seed_up / max(1, crowd_down):.0f}%), "
        f"the leechers uploaded {human_size(crowd_up)} to each other."
    )
    if seed_up > MAX_SEED_SHARE * crowd_down:
        raise DemoFailed("the seed uploaded most of it: the leechers did not trade")
