"""``peerlab demo`` (what ``make demo`` runs): a small network, a search, a swarm download.

Issue 2, section 6.  The demo

1. makes a temporary folder and, in it, tagged MP3 files for each node
   (written by :func:`peerlab.apps.media.write_mp3`); some tracks lie on
   several nodes, byte for byte, so one download has several sources;
2. starts ``peerlab node`` subprocesses on 127.0.0.1 with free ports, all in
   one process group of their own, the servers with an upload limit so the
   transfer is slow enough to watch;
3. searches by artist from the first node, downloads the track that most
   nodes have from all of them at once, with a live progress bar per source;
4. checks the file's SHA-1 against its ``urn:sha1`` and compares it with the
   original byte for byte, and prints which source sent how many bytes;
5. then Napster (issue 3, section 4): starts two index servers
   (``peerlab napster-server``) and three peers logging in to the first with
   the second as fail-over (one of them firewalled), searches "little toot"
   as the lecture does (size, bitrate, length, user, link speed), downloads
   Maclean & Maclean's track directly (``GET``) and the Andrews Sisters' from
   the firewalled peer (500/501, the sharer connects out with ``SEND``),
   checks both byte for byte, then kills the first server with SIGKILL and
   shows the peers back on the second, sharing again, and the same search
   answered there;
6. then Gnutella (issue 4, section 5): a dozen servents (``peerlab node
   --gnutella``) on 127.0.0.1, each told only one other at start (its parent
   in a tree), find more of each other through X-Try and Pongs; the last one
   searches "lebowski" with TTL 1, which reaches only its neighbours, then
   with a larger TTL, which reaches every servent, and the message counts of
   both floods are shown (summed over every servent's counters: ``peerlab
   status --gnutella``); then the soundtrack file three servents share (one
   of them firewalled) comes from all three at once, the firewalled one
   through Push/GIV, checked by SHA-1 against its ``urn:sha1``;
7. then KaZaA (issue 5, section 5; :mod:`peerlab.apps.demo_twotier`): 24
   servents of the lecture's link classes start equal, the strong become
   ultrapeers and the rest their leaves; a search for "linkin park" by
   artist, and its messages next to a flat network of the same servents;
8. then BitTorrent (issue 6, item 7; :mod:`peerlab.apps.demo_bt`): a
   tracker, one seed with an upload limit and a flash crowd of leechers, each
   a node; per-peer progress live, every copy checked byte for byte, and the
   upload totals: the seed sent far less than the crowd downloaded;
9. stops every node and server, removes the temporary folder and exits 0.

Ctrl-C (or SIGTERM) at any moment ends it the same way: the node group gets
SIGTERM, then SIGKILL if it lingers, and every child is waited for.  The
nodes also watch their parent (``--exit-with-parent``), so even a
``kill -9`` of the demo leaves no node running for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from peerlab.apps.control import ControlClient, NodeNotRunning, control_file
from peerlab.apps.media import write_mp3
from peerlab.cli.render import clock, human_size, transfers_table
from peerlab.storage.catalog import napster_md5
from peerlab.wire.urn import parse_sha1_urn

#: Upload limit of each serving node: slow enough that a 4 MB download takes
#: a few seconds and the progress bars are worth watching, fast enough that
#: the demo stays short.
DEMO_UPLOAD_RATE = "512K"
#: Seconds of audio per track at 320 kbps (40 KB/s): about 4 MB, 16 chunks.
TRACK_SECONDS = 100.0
SMALL_TRACK_SECONDS = 30.0
BITRATE = 320
#: Bounds on every wait, so a broken build fails instead of hanging.
START_TIMEOUT = 60.0
DOWNLOAD_TIMEOUT = 180.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.2
ARTIST = "Maclean & Maclean"
#: Upload limit of the Napster peers: a 4 MB track takes a few seconds.
NAPSTER_UPLOAD_RATE = "1M"
#: The lecture's search.
NAPSTER_QUERY = "little toot"
#: How long the peers may take to come back after the first server dies.
FAILOVER_TIMEOUT = 60.0
_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")


@dataclass(frozen=True)
class Track:
    artist: str
    title: str
    album: str
    genre: str
    seconds: float
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.artist} - {self.title}.mp3"


#: The lecture's Napster screenshot, as a music collection.
LITTLE_TOOT = Track(ARTIST, "Little Toot", "The Gross Manual", "Comedy", TRACK_SECONDS, 1)
BOWSER = Track(ARTIST, "Bowser and Blue", "The Gross Manual", "Comedy", SMALL_TRACK_SECONDS, 2)
OTHERS = [
    Track("Andrews Sisters", "Little Toot", "Toot", "Swing", SMALL_TRACK_SECONDS, 3),
    Track("Crosby, Stills, Nash And Young", "Ohio", "4 Way Street", "Rock", SMALL_TRACK_SECONDS, 4),
    Track("Brenda Lee", "Toot Toot Tootsie Goodbye", "Little Miss Dynamite", "Pop",
          SMALL_TRACK_SECONDS, 5),
    Track("Fear Factory", "Cars", "Obsolete", "Metal", SMALL_TRACK_SECONDS, 6),
]


@dataclass
class DemoNode:
    name: str
    data_dir: Path
    share_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    peer_port: int = 0
    tracks: list[Track] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "stdout.log"

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during the demo.

    A :class:`KeyboardInterrupt` so that it passes through asyncio's callback
    runner (which logs and swallows ordinary exceptions) and ends the loop.
    """


class DemoFailed(Exception):
    """Something the demo checks did not hold."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@dataclass
class DemoServer:
    """A ``peerlab napster-server`` process of the demo."""

    name: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""


class Network:
    """The demo's nodes and servers: one process group, started and stopped together."""

    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.count = count
        self.nodes = [
            DemoNode(f"node{i}", root / f"node{i}" / "data", root / f"node{i}" / "share")
            for i in range(1, count + 1)
        ]
        self.index_servers: list[DemoServer] = []
        self.pgid: int | None = None
        self.config = root / "demo.toml"
        self.config.write_text("# the demo's nodes ignore the user's config file\n")

    @property
    def downloader(self) -> DemoNode:
        return self.nodes[0]

    @property
    def servers(self) -> list[DemoNode]:
        return self.nodes[1 : self.count]

    def make_files(self) -> None:
        """Every server has Little Toot; two have Bowser and Blue; each one more."""
        for i, node in enumerate(self.servers):
            self.place(node, LITTLE_TOOT)
            if i < 2:
                self.place(node, BOWSER)
            self.place(node, OTHERS[i % len(OTHERS)])
        self.place(self.downloader, OTHERS[-1])

    def place(self, node: DemoNode, track: Track) -> None:
        """Put ``track`` in ``node``'s share: a copy of one original, byte for byte."""
        original = self.original(track)
        if not original.exists():
            write_mp3(
                original, title=track.title, artist=track.artist, album=track.album,
                genre=track.genre, seconds=track.seconds, bitrate_kbps=BITRATE, seed=track.seed,
            )  # fmt: skip
        node.share_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, node.share_dir / track.filename)
        node.tracks.append(track)

    def original(self, track: Track) -> Path:
        return self.root / "originals" / track.filename

    def start(self, node: DemoNode, extra: list[str]) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
        cmd = [
            sys.executable, "-m", "peerlab.cli", "--config", str(self.config),
            "--data-dir", str(node.data_dir), "node",
            "--listen-host", "127.0.0.1", "--listen-port", "0", "--control-port", "0",
            "--share", str(node.share_dir), "--exit-with-parent", *extra,
        ]
        with node.log_path.open("wb") as out:
            node.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0 if self.pgid is None else self.pgid,
            )
        if self.pgid is None:
            self.pgid = node.proc.pid

    def spawn_server(self, name: str, log_path: Path, args: list[str]) -> DemoServer:
        """``peerlab ARGS...`` in the demo's process group, output to ``log_path``
        (stopped and waited for with the nodes)."""
        server = DemoServer(name, log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
        with log_path.open("wb") as out:
            server.proc = subprocess.Popen(
                [sys.executable, "-m", "peerlab.cli", *args], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0 if self.pgid is None else self.pgid,
            )
        if self.pgid is None:
            self.pgid = server.proc.pid
        self.index_servers.append(server)
        return server

    def start_index_server(self, name: str) -> DemoServer:
        """``peerlab napster-server`` on a free port, its index in the demo folder."""
        server = self.spawn_server(name, self.root / "napster" / f"{name}.out", [
            "napster-server", "--host", "127.0.0.1",
            "--port", "0", "--database", f"sqlite:{self.root / 'napster' / name}.db",
            "--name", name, "--password-cost", "4", "--exit-with-parent",
            "--motd", f"Welcome to the peerlab demo's Napster server {name}.",
        ])
        assert server.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not server.address:
            text = server.log_path.read_text(encoding="utf-8", errors="replace")
            m = _LISTENING.search(text)
            if m:
                server.address = f"{m.group(1)}:{m.group(2)}"
            elif server.proc.poll() is not None:
                raise DemoFailed(f"napster server {name} exited:\n{text[-500:]}")
            elif time.monotonic() > deadline:
                raise DemoFailed(f"napster server {name} did not start within "
                                 f"{START_TIMEOUT:g} s")
            else:
                time.sleep(POLL_INTERVAL)
        return server

    def add_napster_peer(self, name: str, tracks: list[Track]) -> DemoNode:
        node = DemoNode(name, self.root / "napster" / name / "data",
                        self.root / "napster" / name / "share")
        self.nodes.append(node)
        node.share_dir.mkdir(parents=True, exist_ok=True)
        for track in tracks:
            self.place(node, track)
        return node

    def wait_napster(self, nodes: list[DemoNode]) -> dict[str, dict[str, Any]]:
        """Until each node is logged in to a Napster server and shares its files there."""
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(nodes)
        ready: dict[str, dict[str, Any]] = {}
        while pending:
            for node in list(pending):
                assert node.proc is not None
                if node.proc.poll() is not None:
                    raise DemoFailed(
                        f"{node.name} exited with status {node.proc.returncode}:\n"
                        + node.log_tail()
                    )
                status = _try_status(node.data_dir)
                nap = (status or {}).get("napster") or {}
                if (status is not None and not status["scan"]["running"]
                        and nap.get("state") == "online"
                        and nap.get("shared") == len(node.tracks)):
                    node.peer_port = int(status["listen"].rsplit(":", 1)[1])
                    ready[node.name] = nap
                    pending.remove(node)
            if time.monotonic() > deadline:
                names = ", ".join(n.name for n in pending)
                raise DemoFailed(f"{names} did not log in to Napster within {START_TIMEOUT:g} s")
            time.sleep(POLL_INTERVAL)
        return ready

    def wait_ready(self, nodes: list[DemoNode]) -> None:
        """Until each node answers and has scanned its share."""
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(nodes)
        while pending:
            for node in list(pending):
                assert node.proc is not None
                if node.proc.poll() is not None:
                    raise DemoFailed(
                        f"{node.name} exited with status {node.proc.returncode}:\n"
                        + node.log_tail()
                    )
                status = _try_status(node.data_dir)
                if status is None:
                    continue
                scan = status.get("scan") or {}
                if not scan.get("running") and status["shares"]["files"] >= len(node.tracks):
                    node.peer_port = int(status["listen"].rsplit(":", 1)[1])
                    pending.remove(node)
            if time.monotonic() > deadline:
                names = ", ".join(n.name for n in pending)
                raise DemoFailed(f"{names} did not start within {START_TIMEOUT:g} s")
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after STOP_TIMEOUT, and wait for every child."""
        if self.pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        procs = [n.proc for n in self.nodes] + [s.proc for s in self.index_servers]
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        # Anything else left in the group (there should be nothing) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.pgid = None


def _try_status(data_dir: Path) -> dict[str, Any] | None:
    if not control_file(data_dir).exists():
        return None

    async def ask() -> dict[str, Any]:
        async with ControlClient(data_dir, timeout=5.0) as c:
            return await c.status()

    try:
        return asyncio.run(ask())
    except NodeNotRunning:
        return None


def sha1_of(path: Path) -> bytes:
    h = hashlib.sha1()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.digest()


#: The demo's parts, in the order they run (``peerlab demo --only PART``).
PARTS = ("direct", "napster", "gnutella", "twotier", "bittorrent")


def run_demo(
    *, nodes: int = 4, keep: bool = False, console: Console | None = None,
    only: str | None = None,
) -> int:
    """Run the demo (every part, or ``only`` one of :data:`PARTS`); returns
    the exit status (0: every download verified)."""
    if only is not None and only not in PARTS:
        raise ValueError(f"unknown demo part {only!r} (one of {', '.join(PARTS)})")
    console = console or Console()
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    root = Path(tempfile.mkdtemp(prefix="peerlab-demo-"))
    net: Network | None = None
    try:
        net = Network(root, nodes)
        _story(net, console, only)
        return 0
    except Interrupted as e:
        console.print(f"\n[yellow]interrupted ({e}): stopping the nodes[/]")
        return 130
    except DemoFailed as e:
        console.print(f"[red]demo failed:[/] {e}")
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        try:
            if net is not None:
                net.stop()
            if keep:
                console.print(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def _story(net: Network, console: Console, only: str | None = None) -> None:
    console.rule("[bold]peerlab demo")
    if only == "napster":
        _napster_story(net, console)
        return
    if only == "gnutella":
        _gnutella_story(net, console)
        return
    if only == "twotier":
        _twotier_story(console)
        return
    if only == "bittorrent":
        _bittorrent_story(net, console)
        return
    console.print(f"Writing tagged MP3 files for {len(net.nodes)} nodes in {net.root} ...")
    net.make_files()
    for node in net.nodes:
        names = ", ".join(t.filename for t in node.tracks)
        console.print(f"  [bold]{node.name}[/] shares {names}")

    console.print(f"Starting {len(net.servers)} serving nodes (upload limit "
                  f"{DEMO_UPLOAD_RATE}B/s each) ...")
    for node in net.servers:
        net.start(node, ["--upload-rate", DEMO_UPLOAD_RATE])
    net.wait_ready(net.servers)
    peers: list[str] = []
    for node in net.servers:
        peers += ["--peer", f"127.0.0.1:{node.peer_port}"]
    net.start(net.downloader, peers)
    net.wait_ready([net.downloader])
    by_port = {f"127.0.0.1:{n.peer_port}": n.name for n in net.nodes}
    for node in net.nodes:
        console.print(f"  {node.name} listens on 127.0.0.1:{node.peer_port}")

    asyncio.run(_search_and_download(net, console, by_port))
    if only is None:
        _napster_story(net, console)
        _gnutella_story(net, console)
        _twotier_story(console)
        _bittorrent_story(net, console)


def _twotier_story(console: Console) -> None:
    """Issue 5, item 5: :mod:`peerlab.apps.demo_twotier`."""
    from peerlab.apps.demo_twotier import twotier_story

    if not twotier_story(console):
        raise DemoFailed("the two-tier network did not do what the story says")


def _bittorrent_story(net: Network, console: Console) -> None:
    """A tracker, one seed and a flash crowd (:mod:`peerlab.apps.demo_bt`)."""
    from peerlab.apps.demo_bt import bittorrent_story

    bittorrent_story(net, console)


async def _search_and_download(net: Network, console: Console, by_port: dict[str, str]) -> None:
    me = net.downloader
    async with ControlClient(me.data_dir) as c:
        console.print(f"\n[bold]{me.name}[/]: search --artist {ARTIST!r}")
        results = await c.search(ARTIST, "artist", 50)
        table = Table(pad_edge=False)
        for col in ("ID", "File", "Size", "Artist", "Title", "Sources"):
            table.add_column(col)
        for r in results:
            table.add_row(
                str(r["id"]), r["name"], f"{r['size']:,}", str(r.get("artist") or ""),
                str(r.get("title") or ""),
                ", ".join(by_port.get(s, s) for s in r["sources"]),
            )
        console.print(table)
        if not results:
            raise DemoFailed("the search found nothing")
        best = max(results, key=lambda r: len(r["sources"]))
        if len(best["sources"]) < 2:
            raise DemoFailed("no result has more than one source")

        console.print(f"\n[bold]{me.name}[/]: download {best['id']} "
                      f"({best['name']}, {len(best['sources'])} sources)")
        started = await c.download(str(best["id"]))
        download_id = str(started["download"]["id"])
        final = await _watch(c, download_id, console, by_port, best["size"])
        console.print(f"\n[bold]{me.name}[/]: transfers")
        console.print(transfers_table(await c.transfers(), width=console.width))

    if final.get("status") != "complete":
        raise DemoFailed(f"download ended {final.get('status')}: {final.get('error')}")
    path = Path(final["path"])
    got = sha1_of(path)
    want = parse_sha1_urn(best["urn"])
    original = net.original(LITTLE_TOOT)
    same = path.read_bytes() == original.read_bytes()

    summary = Table(title="Where the bytes came from", pad_edge=False)
    summary.add_column("Source")
    summary.add_column("Node")
    summary.add_column("Bytes", justify="right")
    summary.add_column("Share", justify="right")
    summary.add_column("Status")
    total = sum(int(s.get("bytes") or 0) for s in final.get("sources", []))
    used = 0
    for s in final.get("sources", []):
        n = int(s.get("bytes") or 0)
        used += n > 0
        summary.add_row(
            str(s["address"]), by_port.get(str(s["address"]), "?"), f"{n:,}",
            f"{100 * n / total:.0f} %" if total else "", str(s.get("status")),
        )
    console.print(summary)
    console.print(f"saved to {path}")
    ok_hash = got == want
    console.print(
        f"SHA-1 {'[green]matches[/]' if ok_hash else '[red]DOES NOT match[/]'} {best['urn']}; "
        f"{'[green]identical[/]' if same else '[red]different[/]'} to the original, byte for byte"
    )
    if not ok_hash or not same:
        raise DemoFailed("the downloaded file is not the original")
    if used < 2:
        raise DemoFailed(f"only {used} source sent data")
    console.print(f"[bold green]verified download of {best['size']:,} bytes "
                  f"from {used} sources at once[/]")


async def _watch(
    c: ControlClient, download_id: str, console: Console, by_port: dict[str, str], size: int
) -> dict[str, Any]:
    """A live bar for the file and one per source, until it completes or fails."""
    # One bar for the verified whole, one per source on the same scale (its
    # share of the file); only the whole has a time left.
    progress = Progress(
        TextColumn("{task.description:>18}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[left]}"),
        console=console,
    )
    tasks: dict[str, Any] = {}
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT
    with progress:
        whole = progress.add_task("verified", total=size, left="")
        while True:
            data = await c.transfers()
            d = next((x for x in data["downloads"] if str(x["id"]) == download_id), None)
            if d is None:
                raise DemoFailed("the download vanished")
            progress.update(whole, completed=d.get("done") or 0,
                            left=f"{clock(d.get('eta'))} left" if d.get("eta") else "")
            for s in d.get("sources", []):
                key = str(s["address"])
                if key not in tasks:
                    label = f"from {by_port.get(key, key)}"
                    tasks[key] = progress.add_task(label, total=size, left="")
                progress.update(tasks[key], completed=int(s.get("bytes") or 0))
            if d.get("status") in ("complete", "failed"):
                return d  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise DemoFailed(f"the download did not finish within {DOWNLOAD_TIMEOUT:g} s")
            await asyncio.sleep(POLL_INTERVAL)


# ------------------------------------------------------------------ Napster


def _napster_story(net: Network, console: Console) -> None:
    """Issue 3, section 4: two index servers, three peers, the lecture's search,
    a direct and a firewalled download, and fail-over to the second server."""
    console.rule("[bold]Napster")
    console.print("Starting two Napster index servers (peerlab napster-server) ...")
    one = net.start_index_server("one")
    two = net.start_index_server("two")
    for server in (one, two):
        console.print(f"  server [bold]{server.name}[/] on {server.address}")
    servers = f"{one.address},{two.address}"
    andrews = OTHERS[0]
    peers = [
        (net.add_napster_peer("lefty", [LITTLE_TOOT, BOWSER]), "cable", []),
        (net.add_napster_peer("jane", [andrews, OTHERS[2]]), "dsl", ["--napster-firewalled"]),
        (net.add_napster_peer("mred", [OTHERS[3]]), "56k", []),
    ]
    for node, link, extra in peers:
        net.start(node, [
            "--napster", servers, "--napster-nick", node.name, "--napster-link", link,
            "--napster-port", "0", "--upload-rate", NAPSTER_UPLOAD_RATE, *extra,
        ])  # fmt: skip
    ready = net.wait_napster([n for n, _, _ in peers])
    for node, _, _ in peers:
        nap = ready[node.name]
        port = "firewalled (data port 0)" if nap["firewalled"] else f"data port {nap['data_port']}"
        names = ", ".join(t.filename for t in node.tracks)
        console.print(f"  [bold]{node.name}[/] ({nap['link']}, {port}) on server one, "
                      f"shares {names}")
    asyncio.run(_napster_session(net, console, peers[2][0], one, two))


async def _napster_search(c: ControlClient, console: Console, who: str) -> list[dict[str, Any]]:
    console.print(f"\n[bold]{who}[/]: search {NAPSTER_QUERY!r}")
    results = [r for r in await c.search(NAPSTER_QUERY, "all", 50) if r.get("users")]
    table = Table(pad_edge=False)
    for col in ("ID", "Filename", "Filesize", "Bitrate", "Length", "User", "Connection"):
        table.add_column(col, justify="right" if col in ("ID", "Filesize", "Bitrate") else "left")
    for r in results:
        user = r["users"][0]
        table.add_row(
            str(r["id"]), r["name"], f"{r['size']:,}",
            str(user.get("bitrate") or r.get("bitrate") or ""),
            clock(r.get("duration"))[3:] if r.get("duration") else "",
            str(user["nick"]), str(user["link"]),
        )  # fmt: skip
    console.print(table)
    return results


async def _napster_session(
    net: Network, console: Console, me: DemoNode, one: DemoServer, two: DemoServer
) -> None:
    async with ControlClient(me.data_dir) as c:
        results = await _napster_search(c, console, me.name)
        by_user = {r["users"][0]["nick"]: r for r in results}
        if set(by_user) < {"lefty", "jane"}:
            raise DemoFailed(f"the Napster search found {sorted(by_user)}, not lefty and jane")
        for nick, track, how in (
            ("lefty", LITTLE_TOOT, "direct: GET to lefty's data port"),
            ("jane", OTHERS[0], "jane is firewalled: 500/501, jane connects out with SEND"),
        ):
            r = by_user[nick]
            console.print(f"\n[bold]{me.name}[/]: download {r['id']} ({r['name']} from "
                          f"{nick}; {how})")
            started = await c.download(str(r["id"]))
            final = await _watch_one(c, str(started["download"]["id"]), console, nick, r["size"])
            if final.get("status") != "complete":
                raise DemoFailed(f"Napster download ended {final.get('status')}: "
                                 f"{final.get('error')}")
            path = Path(final["path"])
            original = net.original(track)
            same = path.read_bytes() == original.read_bytes()
            md5_ok = napster_md5(path) == r.get("napster_md5")
            console.print(f"saved to {path}")
            console.print(
                f"{human_size(path.stat().st_size)}; Napster md5 "
                f"{'[green]matches[/]' if md5_ok else '[red]DOES NOT match[/]'}; "
                f"{'[green]identical[/]' if same else '[red]different[/]'} to the original, "
                "byte for byte"
            )
            if not same or not md5_ok:
                raise DemoFailed("a Napster download is not the original")
            if nick == "jane" and not final.get("firewalled"):
                raise DemoFailed("the download from jane did not go through SEND")
        console.print(f"\n[bold]{me.name}[/]: transfers")
        console.print(transfers_table(await c.transfers(), width=console.width))

        console.print(f"\n[bold]Fail-over[/]: kill -9 napster server one ({one.address})")
        if one.proc is not None:
            one.proc.kill()
            one.proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + FAILOVER_TIMEOUT
        peers = [n for n in net.nodes if n.data_dir.parent.parent.name == "napster"]
        moved: dict[str, dict[str, Any]] = {}
        while len(moved) < len(peers):
            for node in peers:
                status = await _status_async(node.data_dir)
                nap = (status or {}).get("napster") or {}
                if nap.get("server") == two.address and nap.get("shared") == len(node.tracks):
                    moved[node.name] = nap
            if time.monotonic() > deadline:
                raise DemoFailed("the peers did not move to server two within "
                                 f"{FAILOVER_TIMEOUT:g} s")
            await asyncio.sleep(POLL_INTERVAL)
        for name, nap in moved.items():
            console.print(f"  {name} logged in to server two ({nap['server']}) and shared "
                          f"its {nap['shared']} file(s) again, by itself")
        again: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            again = await _napster_search(c, console, me.name)
            if {r["users"][0]["nick"] for r in again} >= {"lefty", "jane"}:
                break
            await asyncio.sleep(POLL_INTERVAL)
        else:
            raise DemoFailed("the search did not find lefty and jane on server two")
    console.print("[bold green]Napster: the lecture's search, a direct and a firewalled "
                  "download, and fail-over to the second server[/]")


async def _status_async(data_dir: Path) -> dict[str, Any] | None:
    """A node's status from inside the demo's event loop (None: not answering)."""
    try:
        async with ControlClient(data_dir, timeout=5.0) as c:
            return await c.status()
    except NodeNotRunning:
        return None


async def _watch_one(
    c: ControlClient, download_id: str, console: Console, nick: str, size: int
) -> dict[str, Any]:
    """One bar (a Napster download has one sharer at a time) until it ends."""
    progress = Progress(
        TextColumn("{task.description:>18}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT
    with progress:
        task = progress.add_task(f"from {nick}", total=size)
        while True:
            data = await c.transfers()
            d = next((x for x in data["downloads"] if str(x["id"]) == download_id), None)
            if d is None:
                raise DemoFailed("the Napster download vanished")
            progress.update(task, completed=d.get("done") or 0)
            if d.get("status") in ("complete", "failed"):
                return d  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise DemoFailed(f"the download did not finish within {DOWNLOAD_TIMEOUT:g} s")
            await asyncio.sleep(POLL_INTERVAL)


# ------------------------------------------------------------------ Gnutella

#: Issue 4, section 5: "a dozen servents".
GNUTELLA_SERVENTS = 12
#: The search the lecture's gtk-gnutella screenshot shows.
GNUTELLA_QUERY = "lebowski"
#: The floods: TTL 1 reaches the searcher's neighbours only, TTL 2 their
#: neighbours too; TTL 7 (the hops + TTL cap, ``router.MAX_TTL``) exceeds
#: the diameter of the starting tree (6), so it reaches every servent.
GNUTELLA_TTLS = (1, 2, 7)
#: Upload limit of each Gnutella sharer: the swarmed download takes a few
#: seconds, so every source (the pushed one too) sends a part.
GNUTELLA_UPLOAD_RATE = "300K"
#: Open connections the searcher waits for before it searches (the servent
#: dials up to 6: ``ServentConfig.target_degree``), so that TTL 1 reaches
#: several servents but not all.
GNUTELLA_SEARCHER_DEGREE = 3
#: The soundtrack, on three servents (one firewalled), and one more track.
DUDE = Track("The Big Lebowski", "The Man in Me", "Original Soundtrack", "Soundtrack",
             50.0, 21)
KINGS = Track("The Big Lebowski", "Hotel California", "Original Soundtrack", "Soundtrack",
              SMALL_TRACK_SECONDS, 22)
#: servent number -> (its tracks, firewalled); the searcher is the last one.
GNUTELLA_SHARES: dict[int, tuple[list[Track], bool]] = {
    4: ([KINGS], False),
    8: ([DUDE], False),
    9: ([DUDE], True),
    10: ([DUDE, KINGS], False),
}
#: Message types and counters shown for each flood.
_FLOOD_COLUMNS = (
    ("Query sent", "query", "sent"),
    ("Query received", "query", "received"),
    ("dup dropped", "query", "dropped_duplicate"),
    ("TTL dropped", "query", "dropped_ttl"),
    ("routed", "query", "routed"),
    ("QueryHit sent", "query_hit", "sent"),
    ("QueryHit routed", "query_hit", "routed"),
)


def _gnutella_parent(number: int) -> int:
    """Servent ``number``'s only known servent at start: its parent in a binary tree."""
    return number // 2


def _gnutella_story(net: Network, console: Console) -> None:
    """Issue 4, section 5: a dozen servents, TTL-limited floods, a swarmed
    download with one firewalled source."""
    console.rule("[bold]Gnutella")
    servents: list[DemoNode] = []
    firewalled: set[str] = set()
    for number in range(1, GNUTELLA_SERVENTS + 1):
        name = f"g{number:02d}"
        node = DemoNode(name, net.root / "gnutella" / name / "data",
                        net.root / "gnutella" / name / "share")
        node.share_dir.mkdir(parents=True, exist_ok=True)
        tracks, fw = GNUTELLA_SHARES.get(number, ([], False))
        for track in tracks:
            net.place(node, track)
        if fw:
            firewalled.add(name)
        net.nodes.append(node)
        servents.append(node)
    console.print(f"Starting {len(servents)} Gnutella servents, each told only one other "
                  "(its parent in a tree) ...")
    # Level by level: a servent's parent listens before the servent starts.
    level = [1]
    while level:
        for number in level:
            node = servents[number - 1]
            extra = ["--upload-rate", GNUTELLA_UPLOAD_RATE]
            if number == 1:
                extra.append("--gnutella-serve")
            else:
                parent = servents[_gnutella_parent(number) - 1]
                extra += ["--gnutella", f"127.0.0.1:{parent.peer_port}"]
            if node.name in firewalled:
                extra.append("--gnutella-firewalled")
            net.start(node, extra)
        net.wait_ready([servents[n - 1] for n in level])
        level = [c for n in level for c in (2 * n, 2 * n + 1) if c <= len(servents)]
    by_port = {f"127.0.0.1:{n.peer_port}": n.name for n in servents}
    for number, node in enumerate(servents, start=1):
        told = ("--gnutella-serve (the first)" if number == 1
                else f"--gnutella {servents[_gnutella_parent(number) - 1].name}")
        names = ", ".join(t.filename for t in node.tracks)
        fw_note = " [yellow]firewalled[/]" if node.name in firewalled else ""
        console.print(f"  [bold]{node.name}[/] 127.0.0.1:{node.peer_port}{fw_note} "
                      f"knows {told}" + (f"; shares {names}" if names else ""))
    asyncio.run(_gnutella_session(servents, firewalled, console, by_port, net))


async def _gnutella_statuses(nodes: list[DemoNode]) -> dict[str, dict[str, Any]]:
    """Every servent's ``status`` Gnutella part (``peerlab status --gnutella --json``)."""
    got = await asyncio.gather(*(_status_async(n.data_dir) for n in nodes))
    out: dict[str, dict[str, Any]] = {}
    for node, status in zip(nodes, got, strict=True):
        gnut = (status or {}).get("gnutella")
        if gnut is None:
            raise DemoFailed(f"{node.name} is not on Gnutella:\n{node.log_tail()}")
        out[node.name] = gnut
    return out


def _grown(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], kind: str, col: str
) -> int:
    """How much one message counter grew, summed over every servent."""
    return sum(
        after[n]["messages"][kind][col] - before[n]["messages"][kind][col] for n in after
    )


def _neighbours(
    states: dict[str, dict[str, Any]], by_port: dict[str, str]
) -> dict[str, list[str]]:
    """Each servent's open connections, by name.

    A connection names the far servent by its listening address when we
    dialled it (or it sent ``Listen-IP``); a firewalled servent accepts
    nothing, so its links are known from its own side only: every link is
    read from whichever end names the other.
    """
    links: dict[str, set[str]] = {name: set() for name in states}
    for name, gnut in states.items():
        for c in gnut.get("connections") or []:
            other = by_port.get(str(c.get("listen") or c.get("address")))
            if c.get("state") == "open" and other is not None and other in links:
                links[name].add(other)
                links[other].add(name)
    return {name: sorted(others) for name, others in links.items()}


async def _gnutella_session(
    servents: list[DemoNode], firewalled: set[str], console: Console,
    by_port: dict[str, str], net: Network,
) -> None:
    me = servents[-1]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        neighbours = _neighbours(await _gnutella_statuses(servents), by_port)
        degrees = {name: len(others) for name, others in neighbours.items()}
        if min(degrees.values()) >= 1 and degrees[me.name] >= GNUTELLA_SEARCHER_DEGREE:
            break
        if time.monotonic() > deadline:
            raise DemoFailed(f"the servents did not connect within {START_TIMEOUT:g} s: {degrees}")
        await asyncio.sleep(POLL_INTERVAL)
    console.print("\nThrough X-Try headers and Pongs they found each other "
                  "(each keeps up to 6 connections):")
    for name, others in neighbours.items():
        console.print(f"  {name} -- {', '.join(others)}")

    flood = Table(title=f"The query {GNUTELLA_QUERY!r} from {me.name}, summed over all "
                        f"{len(servents)} servents", pad_edge=False)
    flood.add_column("TTL", justify="right")
    flood.add_column("Servents reached", justify="right")
    flood.add_column("Files found")
    for label, _, _ in _FLOOD_COLUMNS:
        flood.add_column(label, justify="right")
    results: list[dict[str, Any]] = []
    reached: dict[int, int] = {}
    async with ControlClient(me.data_dir) as c:
        for ttl in GNUTELLA_TTLS:
            before = await _gnutella_statuses(servents)
            console.print(f"\n[bold]{me.name}[/]: search {GNUTELLA_QUERY!r} --ttl {ttl}")
            results = [r for r in await c.search(GNUTELLA_QUERY, "all", 50, ttl=ttl)
                       if r.get("hosts")]
            after = await _gnutella_statuses(servents)
            console.print(_gnutella_results(results, by_port))
            reached[ttl] = sum(
                after[n]["messages"]["query"]["received"]
                > before[n]["messages"]["query"]["received"]
                for n in after if n != me.name
            )
            found = sum(len(r["hosts"]) for r in results)
            flood.add_row(
                str(ttl), f"{reached[ttl]} of {len(servents) - 1}",
                f"{len(results)} ({found} sources)",
                *(f"{_grown(before, after, t, col):,}" for _, t, col in _FLOOD_COLUMNS),
            )  # fmt: skip
        console.print()
        console.print(flood)
        small, large = GNUTELLA_TTLS[0], GNUTELLA_TTLS[-1]
        console.print(
            f"TTL {small} reached {reached[small]} servent(s), TTL {large} reached "
            f"{reached[large]} of the {len(servents) - 1} others.  Each servent passes a "
            "Query on to every neighbour but the one it came from while its TTL lasts; a "
            "copy arriving again by another path is dropped as a duplicate (its GUID is "
            "known), and Query Hits go back along the path their Query came."
        )
        if reached[large] <= reached[small] or reached[large] < len(servents) - 1:
            raise DemoFailed(f"TTL {large} reached {reached[large]} servent(s), TTL {small} "
                             f"{reached[small]}: the flood should reach all with the larger")

        dude = next((r for r in results if r["name"] == DUDE.filename), None)
        if dude is None:
            raise DemoFailed(f"the search did not find {DUDE.filename}")
        pushed = [h for h in dude["hosts"] if h.get("push")]
        if len(dude["hosts"]) < 3 or not pushed:
            raise DemoFailed(f"{DUDE.filename} was found on {len(dude['hosts'])} servent(s), "
                             f"{len(pushed)} firewalled; the demo wants 3, one firewalled")
        console.print(f"\n[bold]{me.name}[/]: download {dude['id']} ({dude['name']}, "
                      f"{len(dude['hosts'])} sources, "
                      f"{', '.join(by_port.get(h['host'], h['host']) for h in pushed)} "
                      "firewalled: a Push goes back along the hit's path and it connects "
                      "to us with GIV)")
        started = await c.download(str(dude["id"]))
        final = await _watch(c, str(started["download"]["id"]), console, by_port, dude["size"])
    if final.get("status") != "complete":
        raise DemoFailed(f"Gnutella download ended {final.get('status')}: {final.get('error')}")
    path = Path(final["path"])
    ok_hash = sha1_of(path) == parse_sha1_urn(dude["urn"])
    same = path.read_bytes() == net.original(DUDE).read_bytes()
    sources = {str(s["address"]): int(s.get("bytes") or 0) for s in final.get("sources", [])}
    push_bytes = sum(int(s.get("bytes") or 0) for s in final.get("sources", []) if s.get("push"))
    for addr, n in sources.items():
        console.print(f"  {by_port.get(addr, addr):>4} sent {n:>10,} bytes")
    console.print(
        f"SHA-1 {'[green]matches[/]' if ok_hash else '[red]DOES NOT match[/]'} {dude['urn']}; "
        f"{'[green]identical[/]' if same else '[red]different[/]'} to the original, byte for byte"
    )
    if not ok_hash or not same:
        raise DemoFailed("the Gnutella download is not the original")
    used = sum(n > 0 for n in sources.values())
    if used < 2 or push_bytes <= 0:
        raise DemoFailed(f"{used} source(s) sent data, {push_bytes} bytes through Push")
    console.print(f"[bold green]Gnutella: TTL {small} reached {reached[small]} servent(s), "
                  f"TTL {large} all {reached[large]} others; {dude['size']:,} bytes from {used} "
                  f"servents at once, {push_bytes:,} of them pushed by a firewalled one[/]")


def _gnutella_results(results: list[dict[str, Any]], by_port: dict[str, str]) -> Table:
    """The gtk-gnutella search pane: file, size, and each source's host,
    distance (hops) and flags."""
    table = Table(pad_edge=False)
    for col in ("ID", "File", "Size", "Sources (hops of the hit, flags)", "urn:sha1"):
        table.add_column(col, justify="right" if col in ("ID", "Size") else "left")
    for r in results:
        hosts = []
        for h in r["hosts"]:
            flags = "".join(f for f, on in (("push ", h.get("push")), ("busy ", h.get("busy")),
                                            ("stable", h.get("stable"))) if on).strip()
            hosts.append(f"{by_port.get(h['host'], h['host'])} ({h.get('distance')}"
                         + (f", {flags})" if flags else ")"))
        table.add_row(str(r["id"]), r["name"], f"{r['size']:,}", ", ".join(hosts),
                      str(r["urn"]).removeprefix("urn:sha1:")[:12] + "…")
    if not results:
        table.add_row("", "(nothing within reach)", "", "", "")
    return table
