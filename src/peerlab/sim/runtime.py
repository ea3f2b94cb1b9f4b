"""The :class:`~peerlab.runtime.base.Runtime` of one simulated host."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from peerlab.runtime.base import Address, DatagramHandler, NullObserver, Observer, StreamHandler
from peerlab.sim.engine import SimTimer
from peerlab.sim.net import SimDatagramEndpoint, SimListener
from peerlab.sim.tcp import SimConnecting, SimStream

if TYPE_CHECKING:
    from peerlab.sim.net import SimHost

T = TypeVar("T")


class SimRuntime:
    """Clock, timers, network, randomness and observer of a simulated host.

    ``rng`` is seeded from the scenario seed and the host's IP, so every
    host draws its own reproducible sequence.  ``wall_time()`` is the
    simulator's epoch plus the virtual time.
    """

    def __init__(self, host: SimHost, observer: Observer | None, seed: int) -> None:
        self.host = host
        self.sim = host.sim
        self.rng: random.Random = random.Random(seed)
        self.observer: Observer = observer if observer is not None else NullObserver()

    # -- clock and timers

    def now(self) -> float:
        return self.sim.now

    def wall_time(self) -> float:
        return self.sim.epoch + self.sim.now

    def call_at(self, when: float, fn: Callable[[], None]) -> SimTimer:
        return self.sim.call_at(when, fn, self.host.ip)

    def call_later(self, delay: float, fn: Callable[[], None]) -> SimTimer:
        return self.sim.call_at(self.sim.now + delay, fn, self.host.ip)

    def call_soon(self, fn: Callable[[], None]) -> SimTimer:
        return self.sim.call_at(self.sim.now, fn, self.host.ip)

    # -- network

    def connect(
        self,
        address: Address,
        handler: StreamHandler,
        *,
        timeout: float | None = None,
        local_host: str | None = None,
    ) -> SimConnecting:
        if local_host is not None:
            self.host.check_local(local_host)
        return SimStream.open(self.host, address, handler, timeout)

    def listen(
        self,
        address: Address,
        factory: Callable[[], StreamHandler],
        *,
        backlog: int = 128,
    ) -> SimListener:
        self.host.check_local(address[0])
        return self.host.add_listener(address[1], factory)

    def bind_udp(self, address: Address, handler: DatagramHandler) -> SimDatagramEndpoint:
        self.host.check_local(address[0])
        return self.host.add_udp(address[1], handler)

    # -- blocking work

    def offload(
        self,
        fn: Callable[[], T],
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        """Run ``fn`` now (virtual time does not pass) and deliver ``done``
        from the heap at the same virtual time."""
        try:
            result = fn()
        except Exception as exc:
            failure: BaseException = exc
            self.sim.schedule(self.sim.now, lambda _: done(None, failure))
        else:
            self.sim.schedule(self.sim.now, lambda _: done(result, None))

    def __repr__(self) -> str:
        return f"<SimRuntime {self.host.ip}>"
