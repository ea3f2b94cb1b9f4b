"""``peerlab torrent``: make and inspect .torrent files (issue 6, section 1).

::

    peerlab torrent create PATH [--tracker URL ...] [--piece-size N] [--private]
                                [--web-seed URL ...] [--comment TEXT] [-o FILE] [--force]
    peerlab torrent info FILE [--json]

``create`` hashes a file or a folder into pieces (both cores, with a progress
bar, :mod:`peerlab.storage.torrent_hash`) and writes a BEP 3 torrent: each
``--tracker`` is a BEP 12 tier of its own (commas put several URLs in one
tier), ``--private`` sets the BEP 27 flag, ``--web-seed`` fills ``url-list``
(BEP 19).  The piece size is chosen from the total size unless given (a
power of two from 16K to 32M).  The file is written atomically.

``info`` reads a torrent and shows its name, size, files, piece size and
count, trackers, info-hash and magnet link (``--json`` for scripts).

Every mistake (a missing path, a name a torrent may not hold, a bad piece
size or URL, an existing output, a file that is not a valid torrent) is one
line on stderr and exit status 1; a usage mistake is exit status 2.  The
group is ``peerlab.cli.torrent:torrent`` (registered in
:mod:`peerlab.cli.main`); ``python -m peerlab.cli.torrent`` runs it alone.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
from rich.console import Console
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
from rich.text import Text

import peerlab
from peerlab.errors import ConfigError, PeerlabError, RemoteProtocolError
from peerlab.wire.metainfo import MAX_METAINFO_BYTES, Metainfo

F = TypeVar("F", bound=Callable[..., Any])

#: Schemes a tracker URL may have: HTTP(S) trackers (BEP 3) and UDP trackers (BEP 15).
TRACKER_SCHEMES = ("http", "https", "udp")
#: Schemes a web seed may have (BEP 19).
WEB_SEED_SCHEMES = ("http", "https")
#: File extension of torrent files.
TORRENT_SUFFIX = ".torrent"
_SIZE = re.compile(r"\s*([0-9]+)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

err_console = Console(stderr=True)
out_console = Console()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def user_errors(fn: F) -> F:
    """Turn every error a user can cause into one line (click.ClickException)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PeerlabError as e:
            raise click.ClickException(_one_line(str(e))) from None
        except OSError as e:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            raise click.ClickException(_one_line(f"{e.strerror or e}{where}")) from None

    return wrapper  # type: ignore[return-value]


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"`` (powers of 1024, as piece sizes are)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def parse_piece_size(text: str) -> int:
    """``262144``, ``256K``, ``256KiB``, ``1M`` -> bytes; ConfigError otherwise."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ConfigError(f"not a piece size (try 256K or 1M): {text!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def _check_url(url: str, schemes: tuple[str, ...], what: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in schemes or not parts.netloc:
        raise ConfigError(f"not a {what} URL ({'/'.join(schemes)}://HOST...): {url!r}")
    return url


def _tiers(trackers: tuple[str, ...]) -> list[list[str]]:
    tiers = []
    for option in trackers:
        tier = [_check_url(u.strip(), TRACKER_SCHEMES, "tracker") for u in option.split(",")
                if u.strip()]
        if tier:
            tiers.append(tier)
    return tiers


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_torrent(path: Path) -> Metainfo:
    """Read and check a .torrent file; one clear error if it is not a valid one."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_METAINFO_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a torrent file") from None
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    try:
        return Metainfo.from_bytes(data)
    except RemoteProtocolError as e:
        raise ConfigError(f"{path} is not a valid torrent: {e}") from None


def torrent_json(meta: Metainfo) -> dict[str, Any]:
    """What ``torrent info --json`` prints."""
    info = meta.info
    return {
        "name": info.name,
        "info_hash": info.info_hash.hex(),
        "info_hash_v2": info.info_hash_v2.hex() if info.info_hash_v2 else None,
        "size": info.total_size,
        "piece_length": info.piece_length,
        "piece_count": info.piece_count,
        "private": info.private,
        "multi_file": info.multi_file,
        "files": [{"path": f.name, "size": f.length, "offset": f.offset}
                  for f in info.data_files],
        "trackers": [list(tier) for tier in meta.trackers],
        "web_seeds": list(meta.url_list),
        "dht_nodes": [f"{host}:{port}" for host, port in meta.nodes],
        "comment": meta.comment,
        "created_by": meta.created_by,
        "creation_date": meta.creation_date,
        "magnet": meta.magnet().to_uri(),
    }


# ------------------------------------------------------------------ commands


@click.group("torrent", context_settings={"help_option_names": ["-h", "--help"]})
def torrent() -> None:
    """Make and inspect .torrent files (BitTorrent metainfo, BEP 3)."""


@torrent.command("create")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("-t", "--tracker", "trackers", multiple=True, metavar="URL[,URL...]",
              help="Tracker announce URL, http(s):// or udp:// (repeatable: one tier each; "
                   "commas put several URLs in one tier).")
@click.option("--piece-size", metavar="N",
              help="Piece size, a power of two from 16K to 32M (default: from the size).")
@click.option("--private", is_flag=True,
              help="Private torrent (BEP 27): peers come from the trackers only.")
@click.option("--web-seed", "web_seeds", multiple=True, metavar="URL",
              help="HTTP server holding the same files (BEP 19; repeatable).")
@click.option("--dht-node", "dht_nodes", multiple=True, metavar="HOST:PORT",
              help="DHT node to join through, stored in the torrent (BEP 5 'nodes', for "
                   "trackerless torrents; repeatable).")
@click.option("--comment", metavar="TEXT", help="A comment stored in the torrent.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Torrent file to write (default: NAME.torrent in this folder).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@user_errors
def create(
    path: Path,
    trackers: tuple[str, ...],
    piece_size: str | None,
    private: bool,
    web_seeds: tuple[str, ...],
    dht_nodes: tuple[str, ...],
    comment: str | None,
    output: Path | None,
    force: bool,
) -> None:
    """Make a torrent of PATH (a file or a folder)."""
    from peerlab.apps.config import parse_address
    from peerlab.storage.torrent_hash import check_piece_length, hash_torrent

    nodes = [parse_address(n, "--dht-node") for n in dht_nodes]

    tiers = _tiers(trackers)
    seeds = [_check_url(u, WEB_SEED_SCHEMES, "web seed") for u in web_seeds]
    length = check_piece_length(parse_piece_size(piece_size)) if piece_size else None
    source = path.expanduser()
    if not source.exists():
        raise ConfigError(f"no such file or folder: {source}")
    target = output if output is not None else Path(source.resolve().name + TORRENT_SUFFIX)
    if target.exists() and not force:
        raise ConfigError(f"{target} exists (use --force to overwrite it)")
    if target.exists() and target.is_dir():
        raise ConfigError(f"{target} is a folder")

    with Progress(
        TextColumn("hashing"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("hashing", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        info = hash_torrent(source, length, private=private, on_progress=on_progress)
    meta = Metainfo.create(
        info,
        trackers=tiers,
        url_list=seeds,
        nodes=nodes,
        comment=comment,
        created_by=f"peerlab {peerlab.__version__}",
        creation_date=int(time.time()),
    )
    _write_atomically(target, meta.to_bytes())
    files = info.data_files
    click.echo(f"wrote {target}")
    click.echo(f"  name:      {info.name}")
    click.echo(f"  size:      {human_bytes(info.total_size)} in {len(files)} "
               f"file{'s' if len(files) != 1 else ''}")
    click.echo(f"  pieces:    {info.piece_count} x {human_bytes(info.piece_length)}")
    click.echo(f"  info-hash: {info.info_hash.hex()}")
    click.echo(f"  magnet:    {meta.magnet().to_uri()}")


@torrent.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@user_errors
def info_cmd(file: Path, as_json: bool) -> None:
    """Show what the torrent FILE holds."""
    meta = read_torrent(file.expanduser())
    if as_json:
        click.echo(json.dumps(torrent_json(meta), indent=2))
        return
    info = meta.info
    files = info.data_files
    rows: list[tuple[str, str]] = [
        ("name", info.name),
        ("info-hash", info.info_hash.hex()),
    ]
    if info.info_hash_v2 is not None:
        rows.append(("info-hash v2", info.info_hash_v2.hex()))
    rows += [
        ("size", f"{human_bytes(info.total_size)} ({info.total_size} bytes) in {len(files)} "
                 f"file{'s' if len(files) != 1 else ''}"),
        ("pieces", f"{info.piece_count} x {human_bytes(info.piece_length)}"),
        ("private", "yes (BEP 27)" if info.private else "no"),
    ]
    for i, tier in enumerate(meta.trackers, 1):
        rows.append((f"tracker tier {i}", " ".join(tier)))
    if not meta.trackers:
        rows.append(("trackers", "none (trackerless: DHT or peer exchange)"))
    for host, port in meta.nodes:
        rows.append(("dht node", f"{host}:{port}"))
    for url in meta.url_list:
        rows.append(("web seed", url))
    if meta.creation_date is not None:
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(meta.creation_date))
        except (OverflowError, OSError, ValueError):
            when = str(meta.creation_date)
        rows.append(("created", when + (f" by {meta.created_by}" if meta.created_by else "")))
    elif meta.created_by:
        rows.append(("created by", meta.created_by))
    if meta.comment:
        rows.append(("comment", meta.comment))
    rows.append(("magnet", meta.magnet().to_uri()))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key + ':':<{width + 1}} {value}")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("file")
    table.add_column("size", justify="right")
    for f in files:
        table.add_row(Text(f.name), Text(human_bytes(f.length)))
    out_console.print(table)


def main(argv: list[str] | None = None) -> None:
    """``python -m peerlab.cli.torrent``: the group on its own, every failure one line."""
    prog = "peerlab torrent"
    code = 0
    try:
        torrent.main(args=argv, prog_name=prog, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{prog}: interrupted", err=True)
        code = 130
    except click.UsageError as e:
        click.echo(f"{prog}: {_one_line(e.format_message())} (see '{prog} --help')", err=True)
        code = 2
    except click.ClickException as e:
        click.echo(f"{prog}: {_one_line(e.format_message())}", err=True)
        code = e.exit_code or 1
    sys.exit(code)


if __name__ == "__main__":
    main()
