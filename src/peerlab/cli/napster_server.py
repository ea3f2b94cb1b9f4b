"""``peerlab napster-server``: run an OpenNap-compatible index server (issue 3, section 2).

One server with its index in SQLite (the default), or one member of a farm
when ``--database`` names a PostgreSQL database that other servers share::

    peerlab napster-server --port 8888
    peerlab napster-server --port 8888 --database postgresql://napster@db/napster
    peerlab napster-server --port 8889 --database postgresql://napster@db/napster

Every mistake (a port in use, a bad database URL, a database that cannot be
reached, a bad flag) is one line on stderr and exit status 1 (2 for a usage
mistake), never a traceback.  SIGINT/SIGTERM stop the server cleanly: its
clients are disconnected and its rows leave the shared index at once.

``python -m peerlab.cli.napster_server`` runs the same command on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import click
import platformdirs

from peerlab.cli.foreground import (
    event_loop,
    one_line_errors,
    ready,
    serve_until_stopped,
    setup_logging,
    standalone,
)
from peerlab.errors import ConfigError

if TYPE_CHECKING:
    from peerlab.overlays.napster.server import NapsterServerConfig

#: Where the default SQLite index lives (accounts survive restarts there).
DEFAULT_DB_NAME = "napster-server.db"
#: Worker threads for password hashing and (PostgreSQL) database calls.
DEFAULT_WORKERS = 4
#: Longest MOTD file read (bytes): a MOTD is a few lines.
MAX_MOTD_BYTES = 64 * 1024

log = logging.getLogger("peerlab.napster")


def default_database() -> str:
    return "sqlite:" + str(Path(platformdirs.user_data_dir("peerlab")) / DEFAULT_DB_NAME)


def display_database(url: str) -> str:
    """The database URL with any password masked (for logs and messages)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def _read_motd(path: Path) -> tuple[str, ...]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MOTD_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the MOTD file {path}: {e.strerror or e}") from e
    if len(data) > MAX_MOTD_BYTES:
        raise ConfigError(f"MOTD file {path} is larger than {MAX_MOTD_BYTES} bytes")
    return tuple(data.decode("utf-8", "replace").splitlines())


@click.command("napster-server", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address clients connect to (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8888, show_default=True,
              help="Port clients connect to (0: any free port).")
@click.option("--database", metavar="sqlite:PATH|postgresql://...",
              help="The index: a SQLite file (default: in the user data folder) or a "
                   "PostgreSQL database shared by a farm of servers.")
@click.option("--name", default="", help="This server's name in the farm (default HOST:PORT).")
@click.option("--motd", "motd_lines", multiple=True, metavar="TEXT",
              help="A line of the message of the day (repeatable).")
@click.option("--motd-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the message of the day from a file.")
@click.option("--max-results", type=click.IntRange(1, 100), default=100, show_default=True,
              help="Results per search at most.")
@click.option("--max-shares", type=click.IntRange(1), default=5000, show_default=True,
              help="Files one user may share.")
@click.option("--max-connections", type=click.IntRange(1), default=20_000, show_default=True,
              help="Clients at once.")
@click.option("--command-rate", type=click.FloatRange(min=0.001), default=500.0,
              show_default=True, help="Commands per second one client may send, sustained.")
@click.option("--command-burst", type=click.FloatRange(min=1), default=8000.0,
              show_default=True, help="Commands one client may send at once.")
@click.option("--search-cost", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Commands a search or browse counts as.")
@click.option("--password-cost", type=click.IntRange(1, 20), default=14, show_default=True,
              help="scrypt cost (log2 N) of new password hashes.")
@click.option("--auto-register/--no-auto-register", default=True, show_default=True,
              help="Register an unknown nick at its first login.")
@click.option("--confirm-downloads", is_flag=True,
              help="Ask the sharer first (607/608) before acknowledging a download.")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0.01), default=1.0,
              show_default=True, help="Seconds between heartbeats in the shared index.")
@click.option("--server-timeout", type=click.FloatRange(min=0.02), default=5.0,
              show_default=True,
              help="Seconds without a heartbeat after which a farm server counts as dead.")
@click.option("--workers", type=click.IntRange(1, 64), default=DEFAULT_WORKERS,
              show_default=True, help="Threads for password hashing and database calls.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="How much to log (on stderr).")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="Stop when the parent process goes away (tests use it).")
def napster_server(
    host: str,
    port: int,
    database: str | None,
    name: str,
    motd_lines: tuple[str, ...],
    motd_file: Path | None,
    max_results: int,
    max_shares: int,
    max_connections: int,
    command_rate: float,
    command_burst: float,
    search_cost: float,
    password_cost: int,
    auto_register: bool,
    confirm_downloads: bool,
    heartbeat_interval: float,
    server_timeout: float,
    workers: int,
    log_level: str,
    exit_with_parent: bool,
) -> None:
    """Run an OpenNap-compatible Napster index server in the foreground.

    Several servers given the same PostgreSQL database form a farm: each
    answers for the users logged in anywhere, and when one dies its users'
    files leave the results within --server-timeout and its users can log in
    to another.  Ctrl-C stops the server cleanly.
    """
    with one_line_errors():
        from peerlab.overlays.napster.server import NapsterServerConfig
        from peerlab.storage.napster_index import ScryptCost

        motd: tuple[str, ...] = motd_lines
        if motd_file is not None:
            motd = motd + _read_motd(motd_file)
        config = NapsterServerConfig(
            host=host,
            port=port,
            name=name,
            max_results=max_results,
            max_shares=max_shares,
            max_connections=max_connections,
            command_rate=command_rate,
            command_burst=command_burst,
            search_cost=search_cost,
            password_cost=ScryptCost(log2_n=password_cost),
            auto_register=auto_register,
            confirm_downloads=confirm_downloads,
            heartbeat_interval=heartbeat_interval,
            server_timeout=server_timeout,
            motd=motd or NapsterServerConfig.motd,
        )
        setup_logging(log_level)
        run_server(config, database or default_database(), workers=workers,
                   exit_with_parent=exit_with_parent)


def run_server(
    config: NapsterServerConfig, database: str, *, workers: int = DEFAULT_WORKERS,
    exit_with_parent: bool = False,
) -> None:
    """Open the index, start the server, serve until SIGINT/SIGTERM."""
    from peerlab.overlays.napster.server import NapsterServer
    from peerlab.runtime.aio import AsyncioRuntime
    from peerlab.runtime.base import LoggingObserver
    from peerlab.storage.napster_index import open_index_store

    if database.startswith("sqlite:") or "://" not in database:
        path = database[len("sqlite:"):] if database.startswith("sqlite:") else database
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    store = open_index_store(database)
    try:
        with event_loop() as loop:
            runtime = AsyncioRuntime(loop, observer=LoggingObserver(log), workers=workers)
            server = NapsterServer(runtime, store, config)
            try:
                server.start()
                host, port = server.address
                ready(f"napster-server {server.server_id} listening on {host}:{port}"
                      f" (index {display_database(database)})")  # fmt: skip
                serve_until_stopped(loop, exit_with_parent=exit_with_parent)
            finally:
                server.close()
                runtime.close()
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m peerlab.cli.napster_server``: the command on its own, every
    failure one line on stderr (as ``peerlab`` itself reports them)."""
    standalone(napster_server, "peerlab napster-server", argv)


if __name__ == "__main__":
    main()
