"""Independent pieces of a run on several cores (``peerlab simulate --jobs N``).

A simulation is one thread of events and stays one: what runs in parallel
are pieces that share nothing, each with its own :class:`~peerlab.sim.Simulator`
and seed (the search experiment's networks, one per size and architecture;
the report's scenarios).  :func:`run_pieces` runs them in up to ``jobs``
processes and gives their results in the order the pieces were listed, so a
run's files and digests are the same, byte for byte, whatever ``jobs`` is.

Each piece gets a fresh process (started with ``spawn``: nothing inherited,
the memory it held returned when it ends), and the costliest pieces start
first, so that one long piece does not start last and run alone.  The
workers ignore Ctrl-C; the process that started them ends them all at once
on it, on SIGTERM, or when a piece fails, and reports it.  With ``jobs`` 1
the pieces run here, one after the other.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from peerlab.errors import ConfigError

T = TypeVar("T")

#: The most processes a run may ask for.
MAX_JOBS = 64


@dataclass(frozen=True, slots=True)
class Piece(Generic[T]):
    """One independent piece: ``fn(*args)`` (a module-level function, so a
    process can import it), named ``label`` in progress lines; ``cost``
    orders the pieces (highest first) when they run in parallel."""

    label: str
    fn: Callable[..., T]
    args: tuple[Any, ...] = field(default=())
    cost: float = 1.0


def check_jobs(jobs: int) -> int:
    """``jobs`` if it is a usable process count, else a :class:`ConfigError`."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise ConfigError(f"jobs must be a whole number in 1..{MAX_JOBS}, not {jobs!r}")
    return jobs


def run_pieces(
    pieces: Sequence[Piece[T]],
    jobs: int = 1,
    progress: Callable[[str, int], None] | None = None,
) -> list[T]:
    """Every piece's result, in the order of ``pieces``.  ``progress(what,
    finished)`` hears of each piece: in turn, as it starts (``what`` its
    label); in parallel, as it ends (``"<label> done"``), after a first word
    of the ones that start at once (``"started <label>, <label>"``).  The first piece
    to fail, or Ctrl-C, stops the run: the other processes are ended at
    once and the exception is raised here."""
    check_jobs(jobs)
    if jobs == 1 or len(pieces) <= 1:
        results: list[T] = []
        for n, piece in enumerate(pieces):
            if progress is not None:
                progress(piece.label, n)
            results.append(piece.fn(*piece.args))
            # The piece's network is garbage now (and full of cycles): let it
            # go before the next one is built.
            gc.collect()
        return results
    order = sorted(range(len(pieces)), key=lambda i: -pieces[i].cost)  # stable: ties in order
    workers = min(jobs, len(pieces))
    # Results come back on the pool's thread; this one waits on the queue,
    # so that Ctrl-C reaches it between results.
    results_q: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
    pool = multiprocessing.get_context("spawn").Pool(
        workers, initializer=_ignore_interrupts, maxtasksperchild=1
    )
    out: dict[int, T] = {}
    restore = _exit_on_sigterm()
    try:
        for i in order:
            pool.apply_async(
                pieces[i].fn,
                pieces[i].args,
                callback=functools.partial(_put, results_q, i, True),
                error_callback=functools.partial(_put, results_q, i, False),
            )
        if progress is not None:
            progress("started " + ", ".join(pieces[i].label for i in order[:workers]), 0)
        while len(out) < len(pieces):
            try:
                i, ok, value = results_q.get(timeout=0.5)
            except queue.Empty:
                continue
            if not ok:
                raise value
            out[i] = value
            if progress is not None:
                progress(f"{pieces[i].label} done", len(out))
    except BaseException:
        # A failed piece, Ctrl-C or SIGTERM: the others stop now, not when done.
        pool.terminate()
        pool.join()
        raise
    finally:
        restore()
    pool.close()
    pool.join()
    return [out[i] for i in range(len(pieces))]


def _put(results: queue.Queue[tuple[int, bool, Any]], i: int, ok: bool, value: Any) -> None:
    results.put((i, ok, value))


def _exit_on_sigterm() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM (``kill PID``) raises
    :class:`SystemExit` with the shell's code for it (143) here, so the run
    ends its workers as on Ctrl-C instead of dying and leaving them running.
    Only where nobody else handles SIGTERM, and only in the main thread
    (the only one Python lets set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, stop)
    return restore


def _ignore_interrupts() -> None:
    """A worker leaves Ctrl-C to the process that started it, which stops
    every worker at once (and prints no worker's traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
