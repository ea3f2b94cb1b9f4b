"""Independent pieces of a run on several cores (``peerlab simulate --jobs N``).

A simulation is one thread of events and stays one: what runs in parallel
are pieces that share nothing, each with its own :class:`~peerlab.sim.Simulator`
and seed (the search experiment's networks, one per size and architecture;
the report's scenarios).  :func:`run_pieces` runs them in up to ``jobs``
processes and gives their results in the order the pieces were listed, so a
run's files and digests are the same, byte for byte, whatever ``jobs`` is.

Each piece gets a fresh process (started with ``spawn``: nothing inherited,
the memory it held returned when it ends), and the costliest pieces start
first, so that one long piece does not start last and run alone.  With
``jobs`` 1 the pieces run here, one after the other.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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
    label); in parallel, as it ends (``"<label> done"``).  The first piece
    to fail stops the run: the others are cancelled (those running finish
    first) and its exception is raised here."""
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
    out: dict[int, T] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(pieces)), mp_context=context, max_tasks_per_child=1
    ) as pool:
        running: dict[Future[T], int] = {}
        try:
            for i in order:
                running[pool.submit(pieces[i].fn, *pieces[i].args)] = i
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: running[f]):
                    i = running.pop(future)
                    out[i] = future.result()
                    if progress is not None:
                        progress(f"{pieces[i].label} done", len(out))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [out[i] for i in range(len(pieces))]
