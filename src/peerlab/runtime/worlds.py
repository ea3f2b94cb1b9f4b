"""Worlds: one test body, run on real sockets and in the simulator.

A :class:`World` makes runtimes, says which host string each one listens on
and connects to, and drives time until a condition holds::

    def check_echo(world: World) -> None:
        server, client = world.new_runtime("server"), world.new_runtime("client")
        listener = server.listen((world.host(server), 0), EchoHandler)
        ...
        assert world.run_until(lambda: client_handler.done, timeout=10)

* :class:`RealWorld`: every runtime is an
  :class:`~peerlab.runtime.aio.AsyncioRuntime` on 127.0.0.1 sharing one event
  loop; ``run_until`` runs that loop, ``timeout`` is in real seconds.
* :class:`SimWorld`: every runtime is a fresh simulated host with the
  world's link figures; ``run_until`` runs the event heap, ``timeout`` is in
  virtual seconds.

``run_until`` is synchronous: call it from plain (not ``async``) tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from peerlab.errors import NetworkError
from peerlab.runtime.aio import AsyncioRuntime, new_event_loop
from peerlab.runtime.base import Address, BaseStreamHandler, Observer, Runtime, Stream
from peerlab.sim import SimHost, SimRuntime, Simulator
from peerlab.sim.addresses import node_ip

#: Loopback: the only address the real world ever binds or connects to.
LOOPBACK = "127.0.0.1"

#: How often RealWorld.run_until re-checks its condition while the loop runs.
POLL_INTERVAL = 0.001

#: Loop turns RealWorld.close() runs after closing every socket, so the
#: transports' close callbacks (one or two turns each) complete.
CLOSE_TURNS = 4


class World(Protocol):
    """What a test needs to run against either runtime."""

    def new_runtime(self, name: str, *, observer: Observer | None = None) -> Runtime:
        """A new runtime (a new host in the simulator) called ``name``."""

    def host(self, runtime: Runtime) -> str:
        """The host string ``runtime`` listens on and is reached at."""

    def run_until(self, pred: Callable[[], object], timeout: float) -> bool:
        """Drive the world until ``pred()`` or ``timeout``; return ``pred()``."""

    def run_for(self, seconds: float) -> None:
        """Drive the world for ``seconds`` (real or virtual)."""

    def close(self) -> None: ...


class RealWorld:
    """Real sockets on 127.0.0.1, one event loop for all runtimes.

    ``loop``: the loop to use (by default a new one from
    :func:`~peerlab.runtime.aio.new_event_loop`, closed by :meth:`close`).
    """

    name = "real"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        use_uvloop: bool = True,
        workers: int = 2,
    ) -> None:
        self._owns_loop = loop is None
        if loop is None:
            loop = new_event_loop() if use_uvloop else asyncio.new_event_loop()
        self.loop = loop
        self._workers = workers
        self.runtimes: dict[str, AsyncioRuntime] = {}

    def new_runtime(self, name: str, *, observer: Observer | None = None) -> AsyncioRuntime:
        rt = AsyncioRuntime(self.loop, observer=observer, workers=self._workers)
        self.runtimes[name] = rt
        return rt

    def host(self, runtime: Runtime) -> str:
        return LOOPBACK

    def run_until(self, pred: Callable[[], object], timeout: float) -> bool:
        loop = self.loop

        async def wait() -> bool:
            deadline = loop.time() + timeout
            while not pred():
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(POLL_INTERVAL)
            return True

        if pred():
            # Still let ready callbacks run once, as a loop turn would.
            loop.run_until_complete(asyncio.sleep(0))
            return True
        return loop.run_until_complete(wait())

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        """Close every runtime's sockets, let their last callbacks run, and
        close the loop if this world made it."""
        for rt in self.runtimes.values():
            rt.close()
        self.runtimes.clear()
        if self._owns_loop and not self.loop.is_closed():
            loop = self.loop
            for _ in range(CLOSE_TURNS):
                loop.run_until_complete(asyncio.sleep(0))
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def __repr__(self) -> str:
        return "<RealWorld 127.0.0.1>"


class SimWorld:
    """A simulated network; each runtime is a new host on its own access link.

    ``up``/``down`` (bytes/s), ``latency`` (s, one way) and ``loss`` apply to
    every host this world makes; hosts get the IPs 10.0.0.1, 10.0.0.2, ...
    """

    name = "sim"

    def __init__(
        self,
        seed: int = 0,
        *,
        up: float = 12_500_000.0,
        down: float = 12_500_000.0,
        latency: float = 0.005,
        loss: float = 0.0,
        trace: bool = False,
    ) -> None:
        self.sim = Simulator(seed, trace=trace)
        self.up = up
        self.down = down
        self.latency = latency
        self.loss = loss
        self.hosts: dict[str, SimHost] = {}
        self._made = 0

    def new_runtime(
        self,
        name: str,
        *,
        observer: Observer | None = None,
        up: float | None = None,
        down: float | None = None,
        latency: float | None = None,
        loss: float | None = None,
    ) -> Runtime:
        """A new host; ``up``/``down``/``latency``/``loss`` override the
        world's link figures for this host only."""
        ip = node_ip(self._made)
        self._made += 1
        host = self.sim.add_host(
            ip,
            up=self.up if up is None else up,
            down=self.down if down is None else down,
            latency=self.latency if latency is None else latency,
            loss=self.loss if loss is None else loss,
            observer=observer,
        )
        self.hosts[name] = host
        return host.runtime

    def host(self, runtime: Runtime) -> str:
        if isinstance(runtime, SimRuntime) and runtime.sim is self.sim:
            return runtime.host.ip
        raise KeyError(f"{runtime!r} does not belong to this world")

    def run_until(self, pred: Callable[[], object], timeout: float) -> bool:
        return self.sim.run_until(pred, timeout)

    def run_for(self, seconds: float) -> None:
        self.sim.run(self.sim.now + seconds)

    def close(self) -> None:
        self.hosts.clear()

    def __repr__(self) -> str:
        return f"<SimWorld seed={self.sim.seed} hosts={len(self.hosts)}>"


class StreamRecorder(BaseStreamHandler):
    """A stream handler that records everything it is told, for tests.

    ``events`` lists callback names in order (``"made"``, ``"failed"``,
    ``"data"``, ``"eof"``, ``"lost"``, ``"pause"``, ``"resume"``); ``data`` is
    everything received; ``error`` the exception of ``connection_failed`` or
    ``connection_lost``.  With ``echo=True`` it writes back what it gets and
    half-closes when the peer does.
    """

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.events: list[str] = []
        self.data = bytearray()
        self.error: NetworkError | None = None
        self.made = False
        self.failed = False
        self.eof = False
        self.lost = False

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self.made = True
        self.events.append("made")

    def connection_failed(self, exc: NetworkError) -> None:
        self.failed = True
        self.error = exc
        self.events.append("failed")

    def data_received(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        if self.echo and self.stream is not None:
            self.stream.write(data)

    def eof_received(self) -> None:
        self.eof = True
        self.events.append("eof")
        if self.echo and self.stream is not None:
            self.stream.write_eof()

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.lost = True
        self.error = exc
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


class DatagramRecorder:
    """A datagram handler that keeps what it receives, for tests."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Address]] = []
        self.errors: list[NetworkError] = []

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.datagrams.append((data, addr))

    def error_received(self, exc: NetworkError) -> None:
        self.errors.append(exc)


__all__ = ["LOOPBACK", "DatagramRecorder", "RealWorld", "SimWorld", "StreamRecorder", "World"]
