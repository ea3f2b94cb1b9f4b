"""The ``peerlab`` command (issue 2, section 5).

``peerlab node`` runs a node in the foreground; the other commands talk to it
through its control API (:mod:`peerlab.apps.control`).  The ``share``
commands also work without a node, on the catalog database directly.

Every mistake the user can make (an unknown folder, a port in use, no node
running, a bad config, a bad URN, an unknown result id) ends as ONE line on
stderr and a non-zero exit status, never a traceback: :func:`main` catches
:class:`~peerlab.errors.PeerlabError`, ``OSError`` and aiohttp's client
errors; anything else is a bug, reported in one line that says where the
traceback was written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
import platformdirs
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

import peerlab
from peerlab.apps.config import (
    APP_NAME,
    FIELD_NAMES,
    NodeConfig,
    config_file_in_use,
    format_address,
    load_config,
    parse_address,
)
from peerlab.apps.control import ControlClient, ControlError, NodeNotRunning, read_control_file
from peerlab.cli.render import (
    SHORT_ID,
    clock,
    files_table,
    gnutella_table,
    human_rate,
    human_size,
    kazaa_table,
    results_table,
    transfers_table,
)
from peerlab.errors import ConfigError, PeerlabError, StorageError
from peerlab.web.settings import ENV_PASSWORD, ENV_PORT, WebSettings

T = TypeVar("T")

#: Exit statuses: 1 for a failure the user can fix, 2 for a usage mistake
#: (click's convention), 130 for Ctrl-C (128 + SIGINT, as shells report it).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Seconds between refreshes of ``transfers --watch`` and progress displays.
WATCH_INTERVAL = 0.5
#: How long a share command waits for a node that holds the lock but has not
#: written its control file yet (it is still starting).
NODE_START_WAIT = 10.0
CRASH_LOG = "cli-error.log"

console = Console()


# ---------------------------------------------------------------- plumbing


@dataclass
class Env:
    """What the global options said."""

    config_path: Path | None
    data_dir: Path | None

    def config(self, flags: dict[str, Any] | None = None) -> NodeConfig:
        merged = dict(flags or {})
        if self.data_dir is not None:
            merged.setdefault("data_dir", str(self.data_dir))
        return load_config(config_path=self.config_path, flags=merged)

    @property
    def resolved_data_dir(self) -> Path:
        return self.config().data_dir


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def with_client(env: Env, fn: Callable[[ControlClient], Awaitable[T]]) -> T:
    """Run ``fn`` against the node of this data dir."""
    data_dir = env.resolved_data_dir

    async def go() -> T:
        async with ControlClient(data_dir) as client:
            return await fn(client)

    return run(go())


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        f
    )


def _interactive() -> bool:
    return console.is_terminal


# -------------------------------------------------------------------- group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: the per-user one; see 'peerlab config').",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The node's data directory (catalog, partial downloads, control file).",
)
@click.version_option(peerlab.__version__, prog_name="peerlab")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, data_dir: Path | None) -> None:
    """peerlab: the classic peer-to-peer systems, implemented and measured.

    Start a node with 'peerlab node', then search, download and watch
    transfers from another terminal.
    """
    ctx.obj = Env(config_path, data_dir)


# --------------------------------------------------------------------- node


@cli.command()
@click.option("--share", "--shared", "shared", multiple=True, metavar="DIR",
              help="Share this folder (repeatable).")
@click.option("--download-dir", metavar="DIR", help="Where finished downloads go.")
@click.option("--incomplete-dir", metavar="DIR", help="Where partial downloads live.")
@click.option("--listen-host", "--host", "listen_host", metavar="HOST",
              help="Address peers connect to (default 127.0.0.1).")
@click.option("--listen-port", "--port", "listen_port", metavar="PORT",
              help="Port peers connect to (default 6346; 0: any free port).")
@click.option("--control-port", metavar="PORT",
              help="Control API port on 127.0.0.1 (default 0: any free port).")
@click.option("--upload-slots", metavar="N", help="Uploads served at once.")
@click.option("--queue-length", metavar="N", help="Requesters that may wait for a slot.")
@click.option("--upload-rate", metavar="RATE", help="Upload limit, bytes/s (500K, 2M; 0: none).")
@click.option("--download-rate", metavar="RATE", help="Download limit, bytes/s (0: none).")
@click.option("--peer", "--peers", "peers", multiple=True, metavar="HOST:PORT",
              help="Another node to search and download from (repeatable).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="How much to log.")
@click.option("--napster", "napster", multiple=True, metavar="HOST:PORT[,HOST:PORT...]",
              help="Join Napster through these index servers, in fail-over order.")
@click.option("--napster-nick", metavar="NICK", help="Napster nick (default: generated, kept).")
@click.option("--napster-password", metavar="PASSWORD",
              help="Napster password (better in the config file or PEERLAB_NAPSTER_PASSWORD; "
                   "default: generated and kept in the data dir).")
@click.option("--napster-port", metavar="PORT",
              help="Napster data port for peer transfers (default 6699; 0: any free port).")
@click.option("--napster-firewalled/--no-napster-firewalled", default=None,
              help="Log in with data port 0; uploads are pushed out (SEND).")
@click.option("--napster-link", metavar="TYPE",
              help="Napster link type: 0-10 or unknown, 56k, isdn-128k, cable, dsl, t1, t3...")
@click.option("--gnutella", "gnutella", multiple=True, metavar="HOST:PORT[,HOST:PORT...]",
              help="Join Gnutella through these servents (the node's peer port takes "
                   "Gnutella connections too).")
@click.option("--gwebcache", "gwebcache", multiple=True, metavar="URL",
              help="Join Gnutella through this GWebCache (repeatable).")
@click.option("--gnutella-serve/--no-gnutella-serve", default=None,
              help="Join Gnutella with no servent to dial: wait for others to connect.")
@click.option("--gnutella-firewalled/--no-gnutella-firewalled", default=None,
              help="On Gnutella, accept no incoming connection; uploads go out by Push/GIV.")
@click.option("--web-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Also serve the web page on this port (default: only on the control "
                   f"port; env {ENV_PORT}).")
@click.option("--web-bind", default=None, metavar="HOST",
              help="Address of --web-port (default 127.0.0.1).  Anything but loopback needs "
                   "--web-open-to-network and a password.")
@click.option("--web-open-to-network", "web_open", is_flag=True, default=None,
              help="The explicit opt-in to serve the page beyond this machine.")
@click.option("--web-password", default=None, metavar="PASSWORD",
              help="A login password for the page besides the control token (better in "
                   f"{ENV_PASSWORD}: a command line is visible to other users).")
@click.option("--bittorrent/--no-bittorrent", default=None,
              help="Run the BitTorrent client (default on).")
@click.option("--bittorrent-port", "bittorrent_listen_port", metavar="PORT",
              help="Port BitTorrent peers connect to (default: one free port, kept over restarts).")
@click.option("--dht/--no-dht", "bittorrent_dht", default=None,
              help="Find torrents' peers in the mainline DHT too (BEP 5; default on).")
@click.option("--dht-port", "bittorrent_dht_port", metavar="PORT",
              help="UDP port of the DHT node (default: one free port, kept over restarts).")
@click.option("--dht-bootstrap", "bittorrent_dht_bootstrap", multiple=True,
              metavar="HOST:PORT[,HOST:PORT...]", help="DHT node to join through (repeatable).")
@click.option("--gnutella-role", type=click.Choice(["auto", "ultrapeer", "leaf"]), default=None,
              help="Gnutella role: auto (promoted by measured capacity), ultrapeer or leaf.")
@click.option("--gnutella-upload-kbps", type=int, default=None, metavar="KBPS",
              help="Upload capacity of this line (kbit/s) for the ultrapeer promotion policy.")
@click.option("--gnutella-min-uptime", type=int, default=None, metavar="SECONDS",
              help="Uptime before an auto node may become an ultrapeer (default 300).")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="Stop when the parent process goes away (the demo and tests use it).")
@click.pass_obj
def node(env: Env, /, exit_with_parent: bool, **flags: Any) -> None:
    """Run a node in the foreground (Ctrl-C stops it cleanly)."""
    from peerlab.apps.node import setup_logging

    web = _web_settings({k: flags.pop(k) for k in list(flags) if k.startswith("web_")})
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    for key in ("shared", "peers"):
        if key in given:
            given[key] = list(given[key])
    for key in ("napster", "gnutella", "gwebcache", "bittorrent_dht_bootstrap"):
        if key in given:
            given[key] = [a for item in given[key] for a in item.split(",") if a.strip()]
    config = env.config(given)
    log_path = setup_logging(config)
    logging.getLogger("peerlab.node").debug("peerlab %s, log in %s", peerlab.__version__, log_path)
    run_node(config, exit_with_parent=exit_with_parent, web=web)


def _web_settings(flags: dict[str, Any]) -> WebSettings:
    """The web page's settings: ``PEERLAB_WEB_*``, then the ``--web-*`` flags over them."""
    base = WebSettings.from_env(os.environ)
    names = {"web_port": "port", "web_bind": "host", "web_open": "open_to_network",
             "web_password": "password"}  # fmt: skip
    changes = {names[k]: v for k, v in flags.items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base


def run_node(
    config: NodeConfig, *, exit_with_parent: bool = False, web: WebSettings | None = None
) -> None:
    """Run a node until SIGINT/SIGTERM or the control API's shutdown."""
    from peerlab.apps.node import Node
    from peerlab.runtime.aio import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    node_ = Node(config, exit_with_parent=exit_with_parent, web=web)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node_.request_stop)
    try:
        loop.run_until_complete(node_.run())
    except PeerlabError as e:
        # The user sees it as one line (main); the log keeps it too.
        logging.getLogger("peerlab.node").debug("node did not start: %s", e)
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)


# ------------------------------------------------------------------- config


@cli.command("config")
@json_option
@click.pass_obj
def config_cmd(env: Env, as_json: bool) -> None:
    """Show the effective settings and where they come from."""
    cfg = env.config()
    path = config_file_in_use(env.config_path)
    if as_json:
        emit_json(
            {"config_file": str(path), "exists": path.exists(), "settings": cfg.to_display()}
        )
        return
    state = "" if path.exists() else " (not present: defaults apply)"
    click.echo(f"config file: {path}{state}")
    for key, value in cfg.to_display().items():
        click.echo(f"  {key} = {value!r}")
    click.echo(f"keys: {', '.join(FIELD_NAMES)}; env: PEERLAB_<KEY>; flags: peerlab node --help")


# ------------------------------------------------------------------- shares


@cli.group()
def share() -> None:
    """Shared folders: add, list, scan (with or without a running node)."""


def _node_running(data_dir: Path) -> bool:
    """A node holds this data dir; wait briefly for its control file if it is starting."""
    from peerlab.apps.node import data_dir_locked

    if not data_dir_locked(data_dir):
        return False
    deadline = time.monotonic() + NODE_START_WAIT
    while time.monotonic() < deadline:
        try:
            read_control_file(data_dir)
            return True
        except NodeNotRunning:
            time.sleep(0.1)
    raise NodeNotRunning(f"a node holds {data_dir} but does not answer (is it still starting?)")


class _DirectCatalog:
    """The catalog database opened by the CLI itself, holding the data dir's lock."""

    def __init__(self, config: NodeConfig) -> None:
        from peerlab.apps.node import DataDirLock, open_catalog

        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock = DataDirLock(config.data_dir)
        self.lock.acquire("share command")
        try:
            self.catalog = open_catalog(config)
        except BaseException:
            self.lock.release()
            raise

    def __enter__(self) -> Any:
        return self.catalog

    def __exit__(self, *exc: object) -> None:
        try:
            self.catalog.close()
        finally:
            self.lock.release()


def _check_dir(path: Path) -> Path:
    p = path.expanduser()
    if not p.exists():
        raise StorageError(f"no such folder: {p}")
    if not p.is_dir():
        raise StorageError(f"not a folder: {p}")
    return p.resolve()


@share.command("add")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--no-scan", is_flag=True, help="Only remember the folder; scan later.")
@click.pass_obj
def share_add(env: Env, folder: Path, no_scan: bool) -> None:
    """Share FOLDER (and scan it)."""
    folder = _check_dir(folder)
    data_dir = env.resolved_data_dir
    if _node_running(data_dir):
        async def go(c: ControlClient) -> None:
            await c.add_share(str(folder))
            click.echo(f"sharing {folder}")
            if not no_scan:
                await _scan_via_node(c)

        with_client(env, go)
        return
    with _DirectCatalog(env.config()) as catalog:
        catalog.add_folder(folder)
        click.echo(f"sharing {folder}")
        if not no_scan:
            _scan_direct(catalog)


@share.command("remove")
@click.argument("folder", type=click.Path(path_type=Path))
@click.pass_obj
def share_remove(env: Env, folder: Path) -> None:
    """Stop sharing FOLDER."""
    target = folder.expanduser().absolute()
    data_dir = env.resolved_data_dir
    if _node_running(data_dir):
        with_client(env, lambda c: c.remove_share(str(target)))
    else:
        with _DirectCatalog(env.config()) as catalog:
            known = [Path(p) for p in catalog.folders()]
            if target not in known and target.resolve() not in known:
                raise ConfigError(f"{folder} is not a shared folder")
            catalog.remove_folder(target if target in known else target.resolve())
    click.echo(f"no longer sharing {target}")


@share.command("list")
@json_option
@click.option("--folders", "folders_only", is_flag=True, help="Only the folders.")
@click.pass_obj
def share_list(env: Env, as_json: bool, folders_only: bool) -> None:
    """List shared folders and files."""
    from peerlab.apps.node import shared_file_json

    data_dir = env.resolved_data_dir
    if _node_running(data_dir):
        data = with_client(env, lambda c: c.shares(with_files=not folders_only))
    else:
        with _DirectCatalog(env.config()) as catalog:
            data = {"folders": [str(p) for p in catalog.folders()], "count": catalog.count()}
            if not folders_only:
                data["files"] = [shared_file_json(f) for f in catalog.files()]
    if as_json:
        emit_json(data)
        return
    folders = data.get("folders", [])
    if not folders:
        click.echo("no shared folders (add one with 'peerlab share add DIR')")
        return
    for f in folders:
        click.echo(f"folder: {f}")
    if not folders_only:
        files = data.get("files", [])
        if files:
            console.print(files_table(files))
        total = sum(int(f.get("size") or 0) for f in files)
        click.echo(f"{len(files)} file(s), {human_size(total)}")


@share.command("scan")
@json_option
@click.pass_obj
def share_scan(env: Env, as_json: bool) -> None:
    """Rescan the shared folders (only changed files are hashed again)."""
    data_dir = env.resolved_data_dir
    if _node_running(data_dir):
        report = with_client(env, lambda c: _scan_via_node(c, quiet=as_json))
    else:
        with _DirectCatalog(env.config()) as catalog:
            report = _scan_direct(catalog, quiet=as_json)
    if as_json:
        emit_json(report)


def _scan_numbers(state: dict[str, Any] | None) -> tuple[float, float | None, str]:
    """(done, total, label) out of a scan progress snapshot, bytes if known, else files."""
    s = state or {}
    for done_key, total_key in (
        ("bytes_done", "bytes_total"),
        ("hashed_bytes", "total_bytes"),
        ("files_done", "files_total"),
        ("done", "total"),
    ):
        if done_key in s:
            total = s.get(total_key)
            return float(s[done_key] or 0), (float(total) if total else None), done_key
    return 0.0, None, ""


def _scan_line(report: dict[str, Any] | None) -> str:
    """``scan done: 3 files (34.4 MB) shared; 1 hashed, 2 unchanged, 0 removed``."""
    r = report or {}
    if "files" not in r:
        return "scan done"
    line = (
        f"scan done: {r['files']} file(s) ({human_size(r.get('bytes'))}) shared; "
        f"{r.get('hashed', 0)} hashed, {r.get('unchanged', 0)} unchanged, "
        f"{r.get('removed', 0)} removed"
    )
    if r.get("skipped_count"):
        line += f"; {r['skipped_count']} skipped (outside the share or not regular files)"
    if r.get("error_count"):
        line += f"; {r['error_count']} unreadable (see --json)"
    return line


def _scan_direct(catalog: Any, *, quiet: bool = False) -> dict[str, Any]:
    from peerlab.apps.node import jsonable

    if quiet:
        report = jsonable(catalog.scan())
        return report  # type: ignore[no-any-return]
    with _scan_progress() as (progress, task):
        def update(p: Any) -> None:
            done, total, _ = _scan_numbers(jsonable(p))
            progress.update(task, completed=done, total=total)

        report = jsonable(catalog.scan(update))
    click.echo(_scan_line(report))
    return report  # type: ignore[no-any-return]


async def _scan_via_node(c: ControlClient, *, quiet: bool = False) -> dict[str, Any]:
    await c.start_scan()
    state = await c.scan_state()
    if quiet:
        while state.get("running"):
            await asyncio.sleep(WATCH_INTERVAL)
            state = await c.scan_state()
    else:
        with _scan_progress() as (progress, task):
            while state.get("running"):
                done, total, _ = _scan_numbers(state.get("progress"))
                progress.update(task, completed=done, total=total)
                await asyncio.sleep(WATCH_INTERVAL)
                state = await c.scan_state()
    if state.get("error"):
        raise StorageError(f"scan failed: {state['error']}")
    report = state.get("report") or {}
    if not quiet:
        click.echo(_scan_line(report))
    return report


class _scan_progress:
    """A rich progress bar for a scan (shown only on a terminal)."""

    def __enter__(self) -> tuple[Progress, Any]:
        self.progress = Progress(
            TextColumn("scanning"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not _interactive(),
            transient=True,
        )
        self.progress.__enter__()
        return self.progress, self.progress.add_task("scan", total=None)

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)


# ------------------------------------------------------------------- search


@cli.command()
@click.argument("words", nargs=-1)
@click.option("--artist", help="Match the artist tag only.")
@click.option("--title", help="Match the title tag only.")
@click.option("--album", help="Match the album tag only.")
@click.option("--min-bitrate", type=click.IntRange(1, 100_000), default=None, metavar="KBPS",
              help="Only files of at least this bitrate (kbit/s; files of unknown bitrate "
                   "are left out).")
@click.option("--min-length", default=None, metavar="[M:]SS",
              help="Only files at least this long (seconds, or minutes:seconds).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--ttl", type=click.IntRange(1, 255), default=None, metavar="N",
              help="Gnutella: how many hops the query travels (default: the servent's, 4).")
@json_option
@click.pass_obj
def search(
    env: Env,
    words: tuple[str, ...],
    artist: str | None,
    title: str | None,
    album: str | None,
    min_bitrate: int | None,
    min_length: str | None,
    limit: int,
    ttl: int | None,
    as_json: bool,
) -> None:
    """Search your shares and every peer; results get ids for 'peerlab download ID'.

    By field (--artist "linkin park") and with filters (--min-bitrate 128),
    the KaZaA way: the columns then are Title, Artist, Album, Category,
    Quality and Length."""
    fielded = {k: v for k, v in (("artist", artist), ("title", title), ("album", album)) if v}
    if len(fielded) > 1 or (fielded and words):
        raise ConfigError("give either WORDS or one of --artist/--title/--album")
    if fielded:
        field, text = next(iter(fielded.items()))
    else:
        field, text = "all", " ".join(words)
    if not text.strip():
        raise ConfigError("what should I search for? (peerlab search WORDS)")
    seconds = _length(min_length) if min_length is not None else None
    results = with_client(
        env,
        lambda c: c.search(
            text, field, limit, ttl=ttl, min_bitrate=min_bitrate, min_length=seconds
        ),
    )
    if as_json:
        emit_json(results)
        return
    if not results:
        click.echo("no results")
        return
    rich = field != "all" or min_bitrate is not None or seconds is not None
    console.print(kazaa_table(results) if rich else search_table(results))
    click.echo("download one with: peerlab download ID")


#: Longest --min-length (a day: no track is longer).
MAX_MIN_LENGTH_S = 86_400


def _length(text: str) -> int:
    """``--min-length``: ``90`` or ``1:30`` -> 90 seconds."""
    parts = text.strip().split(":")
    if len(parts) > 2 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise ConfigError(f"--min-length: expected seconds or M:SS, got {text!r}")
    seconds = int(parts[-1]) + (60 * int(parts[0]) if len(parts) == 2 else 0)
    if seconds > MAX_MIN_LENGTH_S:
        raise ConfigError(f"--min-length: at most {MAX_MIN_LENGTH_S} seconds")
    return seconds


def search_table(results: list[dict[str, Any]]) -> Table:
    """The results table; with Napster results, the lecture's Napster columns too.

    Napster's result list showed each file's size, bitrate, length, the
    user sharing it and that user's declared link speed; a result several
    users share shows the first and how many more.
    """
    if any(r.get("hosts") for r in results) and not any(r.get("users") for r in results):
        return gnutella_table(results)
    if not any(r.get("users") for r in results):
        return results_table(results)
    table = Table(pad_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("File", overflow="fold", max_width=44)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Artist", overflow="fold", max_width=20)
    table.add_column("Bitrate", justify="right", no_wrap=True)
    table.add_column("Length", justify="right", no_wrap=True)
    table.add_column("User", overflow="fold", max_width=20)
    table.add_column("Link", no_wrap=True)
    table.add_column("Sources", justify="right")
    for r in results:
        sources = r.get("sources") or []
        users = r.get("users") or []
        where = "local" if r.get("local") and len(sources) == 1 else str(len(sources))
        user = str(users[0]["nick"]) if users else ""
        if len(users) > 1:
            user += f" +{len(users) - 1}"
        duration = r.get("duration")
        table.add_row(
            str(r.get("id", "")),
            str(r.get("name", "")),
            human_size(r.get("size")),
            str(r.get("artist") or ""),
            f"{r['bitrate']} kbps" if r.get("bitrate") else "",
            clock(duration)[3:] if duration else "",
            user,
            str(users[0]["link"]) if users else "",
            where,
        )
    return table


@cli.command()
@click.argument("address", metavar="HOST:PORT")
@click.argument("words", nargs=-1)
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_obj
def browse(env: Env, address: str, words: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List what the node at HOST:PORT shares (through your node if one runs)."""
    peer = format_address(parse_address(address, "HOST:PORT"))
    text = " ".join(words)
    data_dir = env.resolved_data_dir
    try:
        read_control_file(data_dir)
        via_node = True
    except NodeNotRunning:
        via_node = False
    if via_node:
        try:
            results = with_client(env, lambda c: c.browse(peer, text, limit))
        except NodeNotRunning:
            via_node = False
    if not via_node:
        results = run(_browse_direct(parse_address(peer), text, limit))
    if as_json:
        emit_json(results)
        return
    if not results:
        click.echo(f"{peer} shares nothing" + (f" matching {text!r}" if text else ""))
        return
    console.print(results_table(results, title=f"shared by {peer}"))
    if via_node:
        click.echo("download one with: peerlab download ID")


async def _browse_direct(address: tuple[str, int], text: str, limit: int) -> list[dict[str, Any]]:
    """Browse without a node: a runtime of our own for one request."""
    from peerlab.apps.node import PEER_TIMEOUT, jsonable
    from peerlab.errors import NetworkError
    from peerlab.overlays.transfer.browse import browse as browse_peer
    from peerlab.runtime.aio import AsyncioRuntime

    loop = asyncio.get_running_loop()
    runtime = AsyncioRuntime(loop)
    fut: asyncio.Future[list[Any]] = loop.create_future()

    def done(files: list[Any] | None, exc: Exception | None) -> None:
        if not fut.done():
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(list(files or []))

    try:
        browse_peer(runtime, address, text, limit, done, timeout=PEER_TIMEOUT)
        try:
            files = await asyncio.wait_for(fut, PEER_TIMEOUT + 5.0)
        except PeerlabError as e:
            raise NetworkError(f"cannot browse {format_address(address)}: {e}") from None
        except TimeoutError:
            raise NetworkError(f"cannot browse {format_address(address)}: no answer") from None
    finally:
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
    out = []
    for i, f in enumerate(files, 1):
        d = jsonable(f)
        d["id"] = i
        d["sources"] = [format_address(address)]
        out.append(d)
    return out


# ---------------------------------------------------------------- downloads


@cli.command()
@click.argument("ref", metavar="ID|URN")
@click.option("--wait", is_flag=True, help="Wait until the file is complete and verified.")
@json_option
@click.pass_obj
def download(env: Env, ref: str, wait: bool, as_json: bool) -> None:
    """Download a search result (by its id) or a file by its urn:sha1."""

    async def go(c: ControlClient) -> dict[str, Any]:
        started = await c.download(ref)
        d = started.get("download") or {}
        if not as_json:
            n = len(started.get("result", {}).get("sources", []))
            click.echo(
                f"downloading {d.get('name') or started['result']['name']} "
                f"({human_size(started['result'].get('size'))}) from {n} source(s); "
                f"download id {str(d.get('id'))[:SHORT_ID]}"
            )
        if wait:
            d = await _wait_download(c, str(d.get("id")), quiet=as_json)
            started["download"] = d
        return started

    started = with_client(env, go)
    if as_json:
        emit_json(started)
        return
    if wait:
        d = started["download"]
        if d.get("status") != "complete":
            raise PeerlabError(f"download failed: {d.get('error') or d.get('status')}")
        if d.get("network") == "napster":
            # All Napster offers (napster.txt "MD5"): the size and the md5 of the start.
            click.echo(f"complete; size and Napster md5 check out: {d.get('path')}")
        else:
            click.echo(f"complete and verified: {d.get('path')}")


def _find(downloads: list[dict[str, Any]], download_id: str) -> dict[str, Any] | None:
    for d in downloads:
        if str(d.get("id")) == download_id:
            return d
    return None


async def _wait_download(c: ControlClient, download_id: str, *, quiet: bool) -> dict[str, Any]:
    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not _interactive(),
        transient=True,
    )
    with progress:
        task = progress.add_task("download", total=None)
        while True:
            d = _find((await c.transfers())["downloads"], download_id)
            if d is None:
                raise PeerlabError(f"download {download_id} disappeared (cancelled?)")
            progress.update(task, description=str(d.get("name", ""))[:32],
                            completed=d.get("done") or 0, total=d.get("size"))
            if d.get("status") in ("complete", "failed"):
                return d
            await asyncio.sleep(WATCH_INTERVAL)


@cli.command()
@click.option("--watch", is_flag=True, help="Refresh live, with progress bars (Ctrl-C ends).")
@click.option("--until-done", is_flag=True,
              help="With --watch: stop when no download is active any more.")
@json_option
@click.pass_obj
def transfers(env: Env, watch: bool, until_done: bool, as_json: bool) -> None:
    """Downloads and uploads, with the lecture's columns."""
    if not watch:
        data = with_client(env, lambda c: c.transfers())
        if as_json:
            emit_json(data)
        else:
            console.print(transfers_table(data, width=console.width))
        return
    if as_json:
        raise ConfigError("--watch and --json do not go together (poll with --json instead)")

    async def go(c: ControlClient) -> None:
        data = await c.transfers()
        with Live(transfers_table(data, bars=True, width=console.width), console=console,
                  auto_refresh=False) as live:
            while True:
                data = await c.transfers()
                live.update(transfers_table(data, bars=True, width=console.width), refresh=True)
                if until_done and not any(
                    d.get("status") in ("queued", "downloading", "verifying", "metadata",
                                        "checking")
                    for d in data.get("downloads", [])
                ):
                    return
                await asyncio.sleep(WATCH_INTERVAL)

    try:
        with_client(env, go)
    except KeyboardInterrupt:
        return


def _download_action(action: str) -> click.Command:
    @click.command(action, help=f"{action.capitalize()} a download (its id from 'transfers').")
    @click.argument("download_id", metavar="ID")
    @click.pass_obj
    def command(env: Env, download_id: str) -> None:
        data = with_client(env, lambda c: c.control_download(download_id, action))
        d = data.get("download") or {}
        click.echo(f"{d.get('name', download_id)}: {d.get('status', action)}")

    return command


for _action in ("pause", "resume", "cancel"):
    cli.add_command(_download_action(_action))


@cli.command()
@click.pass_obj
def clear(env: Env) -> None:
    """Clear finished downloads from the list (the files stay)."""
    data = with_client(env, lambda c: c.clear_finished())
    click.echo(f"cleared {data.get('cleared', 0)} finished download(s)")


# -------------------------------------------------------------- status etc.


@cli.command()
@click.option("--gnutella", "gnutella", is_flag=True,
              help="Only Gnutella: connections and per-message-type counters.")
@json_option
@click.pass_obj
def status(env: Env, gnutella: bool, as_json: bool) -> None:
    """What the node is doing."""
    data = with_client(env, lambda c: c.status())
    if gnutella:
        gnutella_status(data.get("gnutella"), as_json=as_json)
        return
    if as_json:
        emit_json(data)
        return
    scan = data.get("scan") or {}
    lines = [
        f"peerlab {data.get('version')} node, pid {data.get('pid')}, "
        f"up {int(data.get('uptime', 0))} s",
        f"data dir:   {data.get('data_dir')}",
        f"peers on:   {data.get('listen')}   control: 127.0.0.1:{data.get('control_port')}",
        f"shares:     {data['shares']['files']} file(s) in {data['shares']['folders']} folder(s)"
        + ("  (scanning...)" if scan.get("running") else ""),
        f"peers:      {', '.join(data.get('peers') or []) or 'none'}",
        f"downloads:  {data.get('downloads')} ({data.get('concurrent_downloads')} active)"
        f"   uploads: {data.get('uploads')} ({data.get('concurrent_uploads')} active)",
    ]
    nap = data.get("napster")
    if nap:
        port = "firewalled" if nap.get("firewalled") else f"data port {nap.get('data_port')}"
        where = (
            f"on {nap['server']}; {nap.get('shared')} file(s) shared" if nap.get("server")
            else f"not logged in ({nap.get('state')}: {nap.get('detail')})"
        )  # fmt: skip
        lines.append(
            f"napster:    {nap.get('nick')} ({nap.get('link')}, {port}) {where}; "
            f"servers {', '.join(nap.get('servers') or [])}"
        )
    gnut = data.get("gnutella")
    if gnut:
        conns = gnut.get("connections") or []
        opened = [c for c in conns if c.get("state") == "open"]
        lines.append(
            f"gnutella:   servent {str(gnut.get('guid'))[:12]}… on {gnut.get('address')}"
            + (f", {gnut['role']}" if gnut.get("role") else "")
            + (" (firewalled)" if gnut.get("firewalled") else "")
            + f"; {len(opened)} connection(s) open, {gnut.get('hosts_known')} host(s) known"
        )
        for c in conns:
            lines.append(
                f"  {c.get('direction'):>3} {c.get('address')} {c.get('state')} "
                f"{c.get('role')} {c.get('user_agent') or ''} "
                f"msgs in {c.get('messages_in')} out {c.get('messages_out')} "
                f"dropped {c.get('dropped')}"
            )
        counters = gnut.get("counters") or {}
        if counters:
            lines.append("  counters: " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    bt = data.get("bittorrent")
    if bt:
        limits = "/".join(human_rate(bt.get(k)) or "unlimited"
                          for k in ("upload_limit", "download_limit"))
        lines.append(f"bittorrent: on {bt.get('listen')}; {bt.get('torrents')} torrent(s), "
                     f"{bt.get('connections')} connection(s); limits up/down {limits}")
    dht = data.get("dht")
    if dht:
        lines.append(f"dht:        node {str(dht.get('node_id'))[:12]}… on UDP "
                     f"{dht.get('address')}; {dht.get('nodes')} node(s) in the routing table "
                     f"({dht.get('good_nodes')} good), {dht.get('stored_peers')} peer(s) "
                     "stored for others")
    for line in lines:
        click.echo(line)


def gnutella_status(gnut: dict[str, Any] | None, *, as_json: bool) -> None:
    """``peerlab status --gnutella``: the servent's connections and, per message
    type, sent / received / dropped as duplicate / dropped by TTL / routed
    (issue 4, section 4)."""
    if gnut is None:
        raise ConfigError("this node is not on Gnutella (start it with --gnutella HOST:PORT, "
                          "--gnutella-serve or --gwebcache URL)")
    if as_json:
        emit_json(gnut)
        return
    conns = gnut.get("connections") or []
    click.echo(
        f"gnutella servent {gnut.get('guid')} on {gnut.get('address')}"
        + (f", {gnut['role']}" if gnut.get("role") else "")
        + (" (firewalled)" if gnut.get("firewalled") else "")
        + f"; {sum(c.get('state') == 'open' for c in conns)} connection(s) open, "
        f"{gnut.get('hosts_known')} host(s) known"
    )
    links = Table(title="Connections", pad_edge=False)
    for col in ("Dir", "Address", "State", "Role", "Agent", "In", "Out", "Dropped"):
        links.add_column(col, justify="right" if col in ("In", "Out", "Dropped") else "left")
    for c in conns:
        links.add_row(
            str(c.get("direction")), str(c.get("address")), str(c.get("state")),
            str(c.get("role")), str(c.get("user_agent") or ""), str(c.get("messages_in")),
            str(c.get("messages_out")), str(c.get("dropped")),
        )  # fmt: skip
    console.print(links)
    table = Table(title="Messages", pad_edge=False)
    columns = ("sent", "received", "dropped_duplicate", "dropped_ttl", "routed")
    table.add_column("Type")
    for col in ("Sent", "Received", "Dup dropped", "TTL dropped", "Routed"):
        table.add_column(col, justify="right")
    messages: dict[str, dict[str, int]] = gnut.get("messages") or {}
    for kind, row in messages.items():
        table.add_row(kind, *(f"{row.get(col, 0):,}" for col in columns))
    table.add_row("[bold]total", *(
        f"[bold]{sum(r.get(col, 0) for r in messages.values()):,}" for col in columns
    ))  # fmt: skip
    console.print(table)


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def peer(ctx: click.Context, as_json: bool) -> None:
    """The peers this node searches (list; add/remove HOST:PORT)."""
    if ctx.invoked_subcommand is None:
        peers = with_client(ctx.obj, lambda c: c.peers())
        if as_json:
            emit_json(peers)
        else:
            click.echo("\n".join(peers) if peers else "no peers (add one with 'peerlab peer add')")


@peer.command("add")
@click.argument("address", metavar="HOST:PORT")
@click.pass_obj
def peer_add(env: Env, address: str) -> None:
    """Add a peer for this session."""
    parse_address(address, "HOST:PORT")
    with_client(env, lambda c: c.add_peer(address))
    click.echo(f"peer added: {address}")


@peer.command("remove")
@click.argument("address", metavar="HOST:PORT")
@click.pass_obj
def peer_remove(env: Env, address: str) -> None:
    """Forget a peer."""
    with_client(env, lambda c: c.remove_peer(address))
    click.echo(f"peer removed: {address}")


@cli.command()
@click.pass_obj
def stop(env: Env) -> None:
    """Stop the running node."""
    with_client(env, lambda c: c.shutdown())
    click.echo("node stopping")


@cli.command()
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(2, 8),
              help="How many nodes to start.")
@click.option("--keep", is_flag=True, help="Keep the temporary folders (for a look inside).")
@click.option("--only", type=click.Choice(["direct", "napster", "gnutella", "twotier",
                                          "bittorrent"]),
              default=None,
              help="Run one part of the demo (default: all, in this order).")
def demo(nodes: int, keep: bool, only: str | None) -> None:
    """Start a small network on 127.0.0.1, search, download from several sources, verify."""
    from peerlab.apps.demo import run_demo

    code = run_demo(nodes=nodes, keep=keep, console=console, only=only)
    if code:
        sys.exit(code)


def _register_commands() -> None:
    """The commands that live in modules of their own: ``napster-server``
    (issue 3), ``gwebcache`` (issue 4), ``torrent create|info`` and
    ``tracker`` (issue 6)."""
    from peerlab.cli.gwebcache import gwebcache
    from peerlab.cli.napster_server import napster_server
    from peerlab.cli.simulate import simulate
    from peerlab.cli.torrent import torrent
    from peerlab.cli.tracker import tracker

    cli.add_command(napster_server, "napster-server")
    cli.add_command(gwebcache, "gwebcache")
    cli.add_command(torrent, "torrent")
    from peerlab.cli.torrent_node import register as register_torrent_node

    register_torrent_node(torrent)  # torrent add|list|stop|resume|remove|set on a node
    cli.add_command(tracker, "tracker")
    cli.add_command(simulate, "simulate")


_register_commands()


# ------------------------------------------------------------ entry point


def _crash_log_path() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME)) / CRASH_LOG


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    click.echo(f"peerlab: {message}", err=True)
    return code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """The console script: run the command, turn every failure into one line."""
    args = sys.argv[1:] if argv is None else argv
    code = 0
    try:
        rv = cli.main(args=args, prog_name="peerlab", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Abort:
        code = _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        code = _fail("interrupted", EXIT_INTERRUPTED)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        code = _fail(_one_line(e.format_message()) + hint, EXIT_USAGE)
    except click.ClickException as e:
        code = _fail(_one_line(e.format_message()), e.exit_code or EXIT_ERROR)
    except ControlError as e:
        code = _fail(_one_line(str(e)))
    except PeerlabError as e:
        code = _fail(_one_line(str(e)))
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        code = _fail(_one_line(f"{e.strerror or e}{where}"))
    except aiohttp.ClientError as e:
        code = _fail(_one_line(f"cannot talk to the node: {e}"))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
    except Exception as e:
        code = _report_crash(e)
    sys.stdout.flush()
    sys.exit(code)


def _report_crash(exc: BaseException) -> int:
    path = _crash_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: "
                    f"peerlab {' '.join(sys.argv[1:])}\n")
            f.write("".join(traceback.format_exception(exc)))
        where = f"details in {path}"
    except OSError:
        where = "could not write the details to a log"
    return _fail(_one_line(f"unexpected error: {type(exc).__name__}: {exc} ({where})"))


if __name__ == "__main__":
    main()
