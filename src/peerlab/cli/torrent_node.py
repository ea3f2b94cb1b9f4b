"""``peerlab torrent add|list|stop|resume|remove``: torrents on a running node (issue 6, item 6).

::

    peerlab torrent add FILE|MAGNET [--seed-ratio R] [--seed-time T]
                                    [--up-limit RATE] [--down-limit RATE]
                                    [--save-path DIR] [--paused] [--json]
    peerlab torrent list [--json]
    peerlab torrent stop|resume|remove ID
    peerlab torrent set ID [--seed-ratio R] [--seed-time T] [--up-limit RATE] [--down-limit RATE]

The node (``peerlab node``) runs the BitTorrent session
(:mod:`peerlab.apps.torrents`); these commands drive it through the control
API.  ``ID`` is the info-hash or a unique prefix of it (``torrent list``
shows eight characters).  Rates are bytes/s (``500K``, ``2M``; 0: none),
seeding time is seconds or ``90m``/``2h``/``1d``.  Progress shows in
``peerlab transfers`` with every other download.  Registered on the
``torrent`` group by :mod:`peerlab.cli.main`.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from peerlab.apps.config import parse_rate
from peerlab.cli.torrent import TORRENT_SUFFIX, human_bytes, user_errors
from peerlab.errors import ConfigError
from peerlab.wire.metainfo import MAX_METAINFO_BYTES

#: Characters of an info-hash shown in tables (the commands take any unique prefix).
SHORT_HASH = 8
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

console = Console()


def parse_duration(text: str) -> float:
    """Seconds from ``3600``, ``90m``, ``2h`` or ``1d``."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"--seed-time: expected seconds or 90m, 2h, 1d; got {text!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]


def _env(ctx: click.Context) -> Any:
    from peerlab.cli.main import Env

    obj = ctx.find_root().obj
    return obj if isinstance(obj, Env) else Env(None, None)


def _call(ctx: click.Context, fn: Any) -> Any:
    from peerlab.cli.main import with_client

    return with_client(_env(ctx), fn)


def _goals(
    seed_ratio: float | None, seed_time: str | None, up_limit: str | None, down_limit: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if seed_ratio is not None:
        if seed_ratio < 0:
            raise ConfigError("--seed-ratio: expected a number of at least 0")
        body["seed_ratio"] = seed_ratio
    if seed_time is not None:
        body["seed_time"] = parse_duration(seed_time)
    if up_limit is not None:
        body["up_limit"] = parse_rate(up_limit, "--up-limit")
    if down_limit is not None:
        body["down_limit"] = parse_rate(down_limit, "--down-limit")
    return body


def _goal_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--seed-ratio", type=float, metavar="R",
                     help="Seed until uploaded / size reaches R (0: no ratio goal)."),
        click.option("--seed-time", metavar="T",
                     help="Seed for T (seconds, or 90m, 2h, 1d; 0: no time goal)."),
        click.option("--up-limit", metavar="RATE", help="Upload limit of this torrent (500K)."),
        click.option("--down-limit", metavar="RATE", help="Download limit of this torrent."),
    ]):  # fmt: skip
        f = opt(f)
    return f


def _line(t: dict[str, Any]) -> str:
    pct = f"{100 * float(t.get('progress') or 0):.0f}%"
    return f"{str(t.get('id'))[:SHORT_HASH]} {t.get('name')}: {t.get('status')} {pct}"


def register(group: click.Group) -> None:
    """Add the node-driving commands to the ``torrent`` group."""

    @group.command("add")
    @click.argument("source", metavar="FILE|MAGNET")
    @_goal_options
    @click.option("--save-path", metavar="DIR", help="Folder for its files (default: the "
                  "node's BitTorrent download folder).")
    @click.option("--paused", is_flag=True, help="Add it stopped ('torrent resume' starts it).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    @user_errors
    def add(ctx: click.Context, source: str, seed_ratio: float | None, seed_time: str | None,
            up_limit: str | None, down_limit: str | None, save_path: str | None, paused: bool,
            as_json: bool) -> None:
        """Add a .torrent file or a magnet link to the running node."""
        body = _goals(seed_ratio, seed_time, up_limit, down_limit)
        if source.startswith("magnet:"):
            body["magnet"] = source
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                hint = "" if path.suffix == TORRENT_SUFFIX else " (nor a magnet: link)"
                raise ConfigError(f"{source}: no such .torrent file{hint}")
            if path.stat().st_size > MAX_METAINFO_BYTES:
                raise ConfigError(f"{source} is larger than any torrent file may be")
            body["torrent"] = base64.b64encode(path.read_bytes()).decode()
        if save_path:
            body["save_path"] = str(Path(save_path).expanduser().absolute())
        if paused:
            body["paused"] = True
        data = _call(ctx, lambda c: c.torrent_add(body))
        t = data["torrent"]
        if as_json:
            click.echo(_json(t))
            return
        click.echo(f"added {_line(t)}  (info-hash {t.get('info_hash')})")

    @group.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    @user_errors
    def list_cmd(ctx: click.Context, as_json: bool) -> None:
        """The node's torrents: progress, rates, peers, ratio and goals."""
        data = _call(ctx, lambda c: c.torrents())
        if as_json:
            click.echo(_json(data))
            return
        rows = data.get("torrents", [])
        if not rows:
            click.echo("No torrents.")
            return
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for col in ("ID", "Name", "Size", "Status", "Done", "Down", "Up", "Peers", "Ratio",
                    "Goal"):
            table.add_column(col, no_wrap=col != "Name")
        for t in rows:
            goal = []
            if t.get("seed_ratio"):
                goal.append(f"ratio {t['seed_ratio']:g}")
            if t.get("seed_time"):
                goal.append(f"{t['seed_time'] / 60:g} min")
            table.add_row(
                str(t.get("id"))[:SHORT_HASH], Text(str(t.get("name"))),
                human_bytes(t["size"]) if t.get("size") is not None else "?",
                str(t.get("status")) + (f" ({t['goal_reached']})" if t.get("goal_reached")
                                        else ""),
                f"{100 * float(t.get('progress') or 0):.0f}%",
                human_bytes(int(t.get("rate") or 0)) + "/s",
                human_bytes(int(t.get("up_rate") or 0)) + "/s",
                f"{t.get('seeds', 0)}s/{t.get('leechers', 0)}l",
                f"{float(t.get('ratio') or 0):.2f}",
                ", ".join(goal) or "-",
            )  # fmt: skip
        console.print(table)

    def action(name: str, help_text: str) -> None:
        @group.command(name, help=help_text)
        @click.argument("ref", metavar="ID")
        @click.pass_context
        @user_errors
        def command(ctx: click.Context, ref: str) -> None:
            data = _call(ctx, lambda c: c.torrent_action(ref, name))
            click.echo(_line(data["torrent"]))

    action("stop", "Stop a torrent (its verified pieces stay; 'resume' goes on).")
    action("resume", "Start a stopped torrent again (only missing pieces are fetched).")
    action("remove", "Remove a torrent from the node (its files stay on disk).")

    @group.command("set")
    @click.argument("ref", metavar="ID")
    @_goal_options
    @click.pass_context
    @user_errors
    def set_cmd(ctx: click.Context, ref: str, seed_ratio: float | None, seed_time: str | None,
                up_limit: str | None, down_limit: str | None) -> None:
        """Change a torrent's seeding goals or rate limits."""
        body = _goals(seed_ratio, seed_time, up_limit, down_limit)
        if not body:
            raise ConfigError("nothing to set (--seed-ratio, --seed-time, --up-limit, "
                              "--down-limit)")
        data = _call(ctx, lambda c: c.torrent_action(ref, "set", body))
        click.echo(_line(data["torrent"]))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
