"""The timer both runtimes keep in their own heap (:class:`QueuedTimer`).

It is the :class:`~peerlab.runtime.base.Timer` of :mod:`peerlab.runtime.aio`
and, as :class:`~peerlab.sim.engine.SimTimer`, of the simulator.  It lives
apart from :mod:`peerlab.runtime.base` (which re-exports it) because the
compiled build (``make fast``) compiles it together with the simulator's
engine: a compiled class can only extend a compiled one, and the rest of
``base`` (``@runtime_checkable`` protocols) does not compile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TimerOwner(Protocol):
    def _timer_cancelled(self) -> None:
        """A timer of this owner's queue was cancelled (for lazy compaction)."""


class QueuedTimer:
    """A :class:`~peerlab.runtime.base.Timer` kept in its runtime's own heap
    (both runtimes use it).

    The runtime fires it through :attr:`fn`; cancelling drops the callback and
    tells the owner, which compacts its heap when cancelled entries pile up.
    """

    __slots__ = ("_when", "fn", "_cancelled", "_owner")

    def __init__(self, owner: TimerOwner, when: float, fn: Callable[[], None]) -> None:
        self._owner = owner
        self._when = when
        self.fn: Callable[[], None] | None = fn
        self._cancelled = False

    @property
    def when(self) -> float:
        return self._when

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self.fn is not None:
                self.fn = None
                self._owner._timer_cancelled()

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__} when={self._when!r}{state}>"
