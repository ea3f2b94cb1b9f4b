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
6. stops every node and server, removes the temporary folder and exits 0.

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

    def start_index_server(self, name: str) -> DemoServer:
        """``peerlab napster-server`` on a free port, its index in the demo folder."""
        server = DemoServer(name, self.root / "napster" / f"{name}.out")
        server.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
        cmd = [
            sys.executable, "-m", "peerlab.cli", "napster-server", "--host", "127.0.0.1",
            "--port", "0", "--database", f"sqlite:{self.root / 'napster' / name}.db",
            "--name", name, "--password-cost", "4", "--exit-with-parent",
            "--motd", f"Welcome to the peerlab demo's Napster server {name}.",
        ]
        with server.log_path.open("wb") as out:
            server.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0 if self.pgid is None else self.pgid,
            )
        if self.pgid is None:
            self.pgid = server.proc.pid
        self.index_servers.append(server)
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


def run_demo(*, nodes: int = 4, keep: bool = False, console: Console | None = None) -> int:
    """Run the whole demo; returns the exit status (0: a verified multi-source download)."""
    console = console or Console()
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    root = Path(tempfile.mkdtemp(prefix="peerlab-demo-"))
    net: Network | None = None
    try:
        net = Network(root, nodes)
        _story(net, console)
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


def _story(net: Network, console: Console) -> None:
    console.rule("[bold]peerlab demo")
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
    _napster_story(net, console)


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
