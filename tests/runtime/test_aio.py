"""What only the real runtime does: loops, threads, the OS."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from peerlab.errors import AddressInUse
from peerlab.runtime.aio import AsyncioRuntime, new_event_loop
from peerlab.runtime.worlds import RealWorld, StreamRecorder


def test_new_event_loop_prefers_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


async def test_runtime_on_the_running_loop() -> None:
    rt = AsyncioRuntime()
    assert rt.loop is asyncio.get_running_loop()
    got: asyncio.Future[bytes] = rt.loop.create_future()

    class Client(StreamRecorder):
        def eof_received(self) -> None:
            super().eof_received()
            got.set_result(bytes(self.data))

    listener = rt.listen(("127.0.0.1", 0), lambda: StreamRecorder(echo=True))
    client = Client()
    rt.connect(listener.address, client)
    while not client.made:
        await asyncio.sleep(0.001)
    assert client.stream is not None
    client.stream.writelines([b"one ", b"two ", b"three"])
    client.stream.write_eof()
    assert await asyncio.wait_for(got, 10) == b"one two three"
    rt.close()
    assert not rt.loop.is_closed()  # not ours to close


def test_runtime_without_a_loop_owns_one() -> None:
    rt = AsyncioRuntime()
    loop = rt.loop
    fired: list[float] = []
    rt.call_later(0.01, lambda: fired.append(rt.now()))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert len(fired) == 1
    rt.close()
    assert loop.is_closed()


def test_listen_on_a_port_taken_by_another_socket() -> None:
    world = RealWorld()
    try:
        rt = world.new_runtime("r")
        other = socket.socket()
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        try:
            with pytest.raises(AddressInUse, match="in use"):
                rt.listen(other.getsockname(), StreamRecorder)
        finally:
            other.close()
    finally:
        world.close()


def test_offload_runs_on_a_worker_thread_and_returns_on_the_loop() -> None:
    world = RealWorld(workers=2)
    try:
        rt = world.new_runtime("r")
        seen: list[tuple[str, str]] = []
        loop_thread = threading.current_thread().name

        def work() -> str:
            return threading.current_thread().name

        def done(result: Any, exc: BaseException | None) -> None:
            seen.append((result, threading.current_thread().name))

        rt.offload(work, done)
        assert world.run_until(lambda: bool(seen), 10)
        worker, delivered_on = seen[0]
        assert worker.startswith("peerlab-offload")
        assert delivered_on == loop_thread
    finally:
        world.close()


def test_a_failing_timer_does_not_stop_the_others() -> None:
    world = RealWorld()
    try:
        rt = world.new_runtime("r")
        errors: list[dict[str, Any]] = []
        world.loop.set_exception_handler(lambda loop, ctx: errors.append(ctx))
        fired: list[str] = []

        def boom() -> None:
            raise RuntimeError("timer bug")

        when = rt.now() + 0.01
        rt.call_at(when, boom)
        rt.call_at(when, lambda: fired.append("after"))
        assert world.run_until(lambda: bool(fired), 10)
        assert isinstance(errors[0]["exception"], RuntimeError)
    finally:
        world.close()


def test_close_releases_every_socket() -> None:
    world = RealWorld()
    try:
        server, client = world.new_runtime("s"), world.new_runtime("c")
        accepted: list[StreamRecorder] = []

        def factory() -> StreamRecorder:
            accepted.append(StreamRecorder())
            return accepted[-1]

        listener = server.listen(("127.0.0.1", 0), factory)
        c = StreamRecorder()
        client.connect(listener.address, c)
        assert world.run_until(lambda: c.made and bool(accepted), 10)
        server.close()
        assert world.run_until(lambda: c.eof and accepted[0].lost, 10)
        # Nobody listens on the port any more (TIME_WAIT leftovers aside).
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(listener.address)
        finally:
            probe.close()
    finally:
        world.close()
