"""What the foreground server commands share (``peerlab napster-server``,
``peerlab tracker``, ``peerlab gwebcache``): logging to stderr, one event loop
set up and torn down, serving until SIGINT/SIGTERM (or the parent process
going away), and every failure reported as one line.

Each command keeps what is its own: building its server, the ready line it
prints, and closing the server before the loop goes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

from peerlab.errors import PeerlabError

#: Seconds between two checks that the parent process is still there
#: (``--exit-with-parent``: the demo and the tests start servers that way).
PARENT_CHECK_INTERVAL = 1.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def setup_logging(level: str) -> None:
    """peerlab's log records on stderr at ``level`` (once per process)."""
    root = logging.getLogger("peerlab")
    root.setLevel(getattr(logging, level.upper()))
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A peerlab error or an OS error becomes the command's one-line message."""
    try:
        yield
    except PeerlabError as e:
        raise click.ClickException(" ".join(str(e).split())) from None
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        raise click.ClickException(f"{e.strerror or e}{where}") from None


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop (uvloop when installed) as the current one; at the
    end, closing connections get one turn to say goodbye, the worker threads
    are joined and the loop is closed."""
    from peerlab.runtime.aio import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)


def ready(line: str) -> None:
    """The one line on stdout saying the server is up: scripts and tests wait for it."""
    click.echo(line)
    sys.stdout.flush()


def serve_until_stopped(
    loop: asyncio.AbstractEventLoop,
    *,
    exit_with_parent: bool = False,
    every: tuple[float, Callable[[], None]] | None = None,
) -> None:
    """Run ``loop`` until SIGINT or SIGTERM (or, with ``exit_with_parent``,
    until the parent process is gone); ``every=(seconds, fn)`` calls ``fn``
    that often meanwhile."""
    stop = asyncio.Event()
    parent = os.getppid()

    async def serve() -> None:
        next_call = loop.time() + every[0] if every is not None else None
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), PARENT_CHECK_INTERVAL)
            except TimeoutError:
                pass
            if exit_with_parent and os.getppid() != parent:
                stop.set()
            if every is not None and next_call is not None and loop.time() >= next_call:
                next_call = loop.time() + every[0]
                every[1]()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(serve())
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def standalone(command: click.Command, prog: str, argv: list[str] | None) -> NoReturn:
    """Run ``command`` on its own (``python -m peerlab.cli.<command>``), every
    failure one line on stderr as ``peerlab`` itself reports them."""
    code = 0
    try:
        command.main(args=argv, prog_name=prog, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{prog}: interrupted", err=True)
        code = 130
    except click.UsageError as e:
        click.echo(f"{prog}: {' '.join(e.format_message().split())} (see '{prog} --help')",
                   err=True)  # fmt: skip
        code = 2
    except click.ClickException as e:
        click.echo(f"{prog}: {' '.join(e.format_message().split())}", err=True)
        code = e.exit_code or 1
    except Exception as e:  # a bug: still one line, never a traceback
        click.echo(f"{prog}: unexpected error: {type(e).__name__}: {e}", err=True)
        code = 1
    sys.exit(code)
