"""``peerlab gwebcache``: run a small GWebCache (issue 4, section 2).

A Gnutella Web Cache (gtk-gnutella ``doc/gnutella/gwcache``; the v2 ``get``
/ ``update`` requests too) that servents ask for the addresses of other
servents when they have none::

    peerlab gwebcache --port 8080
    peerlab node --gnutella-cache http://127.0.0.1:8080/

It serves ``http://HOST:PORT/PATH`` and keeps its lists in a state file
(written atomically) so that a restart forgets nothing.  Every mistake (a
port in use, an unreadable state file, a bad flag) is one line on stderr and
exit status 1 (2 for a usage mistake), never a traceback.  SIGINT/SIGTERM
stop it cleanly.

``python -m peerlab.cli.gwebcache`` runs the same command on its own.
"""

from __future__ import annotations

import logging
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
from peerlab.errors import PeerlabError

if TYPE_CHECKING:
    from peerlab.overlays.gnutella.gwebcache import GWebCacheConfig

#: Where the cache keeps its lists unless told otherwise.
DEFAULT_STATE_NAME = "gwebcache.json"
#: Seconds between saves of the lists while running.
SAVE_INTERVAL = 60.0

log = logging.getLogger("peerlab.gwebcache")


def default_state() -> Path:
    return Path(platformdirs.user_data_dir("peerlab")) / DEFAULT_STATE_NAME


@click.command("gwebcache", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address servents connect to (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on (0: any free port).",
)
@click.option(
    "--path", "url_path", default="/", show_default=True, help="The cache's path in its URL."
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File keeping the host and URL lists across restarts "
    "(default: gwebcache.json in the user data folder).",
)
@click.option("--no-state", is_flag=True, help="Keep the lists in memory only.")
@click.option(
    "--update-interval",
    type=click.FloatRange(min=0),
    default=55 * 60.0,
    show_default=True,
    help="Seconds before one IP address may update the cache again.",
)
@click.option(
    "--accept-private/--public-only",
    default=None,
    help="Accept private and loopback addresses in updates "
    "(default: when the cache itself listens on one).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much to log (on stderr).",
)
@click.option(
    "--exit-with-parent",
    is_flag=True,
    hidden=True,
    help="Stop when the parent process goes away (tests use it).",
)
def gwebcache(
    host: str,
    port: int,
    url_path: str,
    state_path: Path | None,
    no_state: bool,
    update_interval: float,
    accept_private: bool | None,
    log_level: str,
    exit_with_parent: bool,
) -> None:
    """Run a GWebCache (Gnutella web cache) in the foreground.

    Servents send it their address (update) and ask it for others (get,
    hostfile); it keeps the newest few.  Ctrl-C stops it cleanly.
    """
    with one_line_errors():
        from peerlab.overlays.gnutella.gwebcache import GWebCacheConfig

        state = None if no_state else (state_path or default_state()).expanduser()
        config = GWebCacheConfig(
            host=host,
            port=port,
            path=url_path,
            state_path=state,
            update_interval=update_interval,
            accept_private=accept_private,
        )
        setup_logging(log_level)
        run_cache(config, exit_with_parent=exit_with_parent)


def run_cache(config: GWebCacheConfig, *, exit_with_parent: bool = False) -> None:
    """Start the cache and serve until SIGINT/SIGTERM; save the lists at the end."""
    from peerlab.overlays.gnutella.gwebcache import GWebCache
    from peerlab.runtime.aio import AsyncioRuntime
    from peerlab.runtime.base import LoggingObserver

    with event_loop() as loop:
        runtime = AsyncioRuntime(loop, observer=LoggingObserver(log), workers=1)
        cache = GWebCache(runtime, config)
        started = False

        def save() -> None:
            try:
                cache.save()
            except PeerlabError as e:
                log.warning("cannot save the cache: %s", e)

        try:
            cache.start()
            started = True
            ready(f"gwebcache listening on {cache.url}")
            serve_until_stopped(loop, exit_with_parent=exit_with_parent,
                                every=(SAVE_INTERVAL, save))  # fmt: skip
        finally:
            if started:
                cache.close()
            runtime.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m peerlab.cli.gwebcache``: the command on its own, every
    failure one line on stderr (as ``peerlab`` itself reports them)."""
    standalone(gwebcache, "peerlab gwebcache", argv)


if __name__ == "__main__":
    main()
