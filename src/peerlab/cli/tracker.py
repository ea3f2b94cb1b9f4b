"""``peerlab tracker``: run a BitTorrent tracker, HTTP and UDP (issue 6, section 2).

::

    peerlab tracker                                  # HTTP and UDP on 127.0.0.1:6969
    peerlab tracker --host 0.0.0.0 --http-port 6969 --udp-port 6969
    peerlab tracker --state ~/tracker.json --interval 900
    peerlab tracker --allow 0123...cdef --allow-file hashes.txt   # a private tracker

A .torrent names it as ``http://HOST:PORT/announce`` or
``udp://HOST:PORT/announce`` (the ready line prints both).  The swarm table is
saved to ``--state`` every ``--save-interval`` seconds and when the tracker
stops, and loaded back at start, so a restart keeps the swarms.

Every mistake (a port in use, an unreadable state file, a bad info-hash, a bad
flag) is one line on stderr and exit status 1 (2 for a usage mistake), never
a traceback.  SIGINT/SIGTERM stop the tracker cleanly (the table is saved).

``python -m peerlab.cli.tracker`` runs the same command on its own.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

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
    from peerlab.overlays.tracker.server import TrackerConfig

#: Default port of both transports: the port trackers have used since 2003.
DEFAULT_PORT = 6969
#: Where the swarm table is kept unless --state names a file.
DEFAULT_STATE_NAME = "tracker-state.json"
#: Largest --allow-file read: 40 hex digits and a newline per hash, a
#: million hashes.
MAX_ALLOW_FILE_BYTES = 41 * 1_000_000

_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")

log = logging.getLogger("peerlab.tracker")


def default_state() -> Path:
    return Path(platformdirs.user_data_dir("peerlab")) / DEFAULT_STATE_NAME


def parse_info_hash(text: str) -> bytes:
    """A 40-digit hex info-hash (as ``peerlab torrent info`` prints it)."""
    text = text.strip()
    if _HEX40.fullmatch(text) is None:
        raise ConfigError(f"{text[:60]!r} is not an info-hash (40 hex digits)")
    return bytes.fromhex(text)


def read_allow_file(path: Path) -> list[bytes]:
    """Info-hashes, one per line; blank lines and ``#`` comments ignored."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_ALLOW_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the allow file {path}: {e.strerror or e}") from None
    if len(data) > MAX_ALLOW_FILE_BYTES:
        raise ConfigError(f"allow file {path} is larger than {MAX_ALLOW_FILE_BYTES} bytes")
    hashes = []
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                hashes.append(parse_info_hash(line))
            except ConfigError as e:
                raise ConfigError(f"{path}, line {n}: {e}") from None
    return hashes


@click.command("tracker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (0.0.0.0: every interface).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=DEFAULT_PORT,
              show_default=True, help="HTTP announce/scrape port (0: any free port).")
@click.option("--udp-port", type=click.IntRange(0, 65535), default=DEFAULT_PORT,
              show_default=True, help="UDP (BEP 15) port (0: any free port).")
@click.option("--no-http", is_flag=True, help="Serve UDP only.")
@click.option("--no-udp", is_flag=True, help="Serve HTTP only.")
@click.option("--state", type=click.Path(path_type=Path, dir_okay=False),
              help=f"File the swarm table is kept in (default: {DEFAULT_STATE_NAME} "
                   "in the user data folder).")
@click.option("--no-state", is_flag=True, help="Keep the table in memory only.")
@click.option("--interval", type=click.IntRange(1, 0x7FFFFFFF), default=1800,
              show_default=True, help="Seconds between announces, told to clients.")
@click.option("--min-interval", type=click.IntRange(0, 0x7FFFFFFF),
              help="Shortest re-announce allowed (default: 300, or --interval if shorter).")
@click.option("--expiry-factor", type=click.FloatRange(min=1.0), default=2.0,
              show_default=True, help="A peer silent this many intervals is dropped.")
@click.option("--numwant", type=click.IntRange(0, 10_000), default=50, show_default=True,
              help="Peers per reply when the client names no number.")
@click.option("--max-numwant", type=click.IntRange(0, 10_000), default=200,
              show_default=True, help="Peers per reply at most.")
@click.option("--max-swarms", type=click.IntRange(1), default=100_000, show_default=True,
              help="Swarms (info-hashes) kept at most.")
@click.option("--max-peers", type=click.IntRange(1), default=10_000, show_default=True,
              help="Peers listed per swarm at most.")
@click.option("--allow", "allow", multiple=True, metavar="INFOHASH",
              help="Serve only this info-hash (repeatable; 40 hex digits).")
@click.option("--allow-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Serve only the info-hashes listed in this file, one per line.")
@click.option("--accept-ip", is_flag=True,
              help="List peers at the ip= address they announce (default: their source).")
@click.option("--full-scrape", is_flag=True, help="Answer a scrape that names no info-hash.")
@click.option("--save-interval", type=click.FloatRange(min=0.1), default=60.0,
              show_default=True, help="Seconds between saves of a changed table.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="How much to log (on stderr).")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="Stop when the parent process goes away (tests use it).")
def tracker(
    host: str,
    http_port: int,
    udp_port: int,
    no_http: bool,
    no_udp: bool,
    state: Path | None,
    no_state: bool,
    interval: int,
    min_interval: int | None,
    expiry_factor: float,
    numwant: int,
    max_numwant: int,
    max_swarms: int,
    max_peers: int,
    allow: tuple[str, ...],
    allow_file: Path | None,
    accept_ip: bool,
    full_scrape: bool,
    save_interval: float,
    log_level: str,
    exit_with_parent: bool,
) -> None:
    """Run a BitTorrent tracker (HTTP announce/scrape and UDP) in the foreground.

    Torrents name it as http://HOST:PORT/announce or udp://HOST:PORT/announce.
    Ctrl-C stops it; the swarm table is saved and comes back at the next start.
    """
    with one_line_errors():
        from peerlab.overlays.tracker.server import TrackerConfig

        if no_http and no_udp:
            raise ConfigError("--no-http and --no-udp together leave nothing to serve")
        if state is not None and no_state:
            raise ConfigError("--state and --no-state contradict each other")
        allowed: frozenset[bytes] | None = None
        if allow or allow_file is not None:
            hashes = [parse_info_hash(h) for h in allow]
            if allow_file is not None:
                hashes += read_allow_file(allow_file)
            allowed = frozenset(hashes)
        config = TrackerConfig(
            host=host,
            http_port=None if no_http else http_port,
            udp_port=None if no_udp else udp_port,
            interval=interval,
            min_interval=None if min_interval is None else min(min_interval, interval),
            expiry_factor=expiry_factor,
            default_numwant=min(numwant, max_numwant),
            max_numwant=max_numwant,
            max_swarms=max_swarms,
            max_peers_per_swarm=max_peers,
            allowed=allowed,
            accept_ip=accept_ip,
            full_scrape=full_scrape,
            save_interval=save_interval,
        )
        setup_logging(log_level)
        state_path = None if no_state else (state or default_state()).expanduser()
        run_tracker(config, state_path, exit_with_parent=exit_with_parent)


def run_tracker(
    config: TrackerConfig, state: Path | None, *, exit_with_parent: bool = False
) -> None:
    """Load the table, serve until SIGINT/SIGTERM, save the table."""
    from peerlab.overlays.tracker.server import FileSwarmStore, Tracker
    from peerlab.runtime.aio import AsyncioRuntime
    from peerlab.runtime.base import LoggingObserver

    store = FileSwarmStore(state) if state is not None else None
    with event_loop() as loop:
        runtime = AsyncioRuntime(loop, observer=LoggingObserver(log), workers=1)
        server = Tracker(runtime, config, store)
        try:
            server.start()
            urls = " and ".join(u for u in (server.announce_url, server.udp_url) if u)
            kept = f"state {state}" if state is not None else "state in memory only"
            ready(f"tracker listening on {urls} ({kept}, {len(server.table)} swarms)")
            serve_until_stopped(loop, exit_with_parent=exit_with_parent)
        finally:
            try:
                server.close()
            finally:
                runtime.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m peerlab.cli.tracker``: the command on its own, every failure
    one line on stderr (as ``peerlab`` itself reports them)."""
    standalone(tracker, "peerlab tracker", argv)


if __name__ == "__main__":
    main()
