"""StreamDriver over a small line protocol, in both worlds.

The machine below is the smallest sans-I/O protocol with every part of the
shape: lines in and out, an idle timer, EOF, and garbage detection.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerlab.errors import NetworkError, RemoteProtocolError
from peerlab.runtime.base import Runtime
from peerlab.runtime.driver import SansIOMachine, StreamDriver
from peerlab.runtime.worlds import StreamRecorder, World

TIMEOUT = 20.0
#: Longest line the test protocol accepts, like any line protocol's limit.
MAX_LINE = 64


@dataclass(frozen=True, slots=True)
class Line:
    text: str


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    at: float


@dataclass(frozen=True, slots=True)
class Ended:
    pass


class LineMachine:
    """Newline-framed text; an idle timer that fires once, ``idle`` seconds
    after the last byte received, and then says goodbye."""

    def __init__(self, now: float, idle: float | None = None) -> None:
        self._buf = bytearray()
        self._out = bytearray()
        self._idle = idle
        self._last = now
        self.timed_out = False

    def send_line(self, text: str) -> None:
        self._out += text.encode() + b"\n"

    def receive_data(self, data: bytes, now: float) -> list[Line | IdleTimeout | Ended]:
        self._last = now
        self._buf += data
        events: list[Line | IdleTimeout | Ended] = []
        while (i := self._buf.find(b"\n")) >= 0:
            events.append(Line(self._buf[:i].decode()))
            del self._buf[: i + 1]
        if len(self._buf) > MAX_LINE:
            raise RemoteProtocolError(f"line longer than {MAX_LINE} bytes")
        return events

    def receive_eof(self, now: float) -> list[Line | IdleTimeout | Ended]:
        return [Ended()]

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float | None:
        if self._idle is None or self.timed_out:
            return None
        return self._last + self._idle

    def handle_timeout(self, now: float) -> list[Line | IdleTimeout | Ended]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        self.timed_out = True
        self.send_line("bye")
        return [IdleTimeout(now)]


class PingServer:
    """Answers ``ping N`` with ``pong N``; closes when the peer ends."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[object] = []
        self.closed: list[Exception | None] = []
        self.machine = LineMachine(runtime.now())
        self.driver = StreamDriver(
            runtime, self.machine, self.on_event, on_closed=self.closed.append
        )

    def on_event(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, Line) and event.text.startswith("ping "):
            self.machine.send_line("pong " + event.text[5:])
        elif isinstance(event, Ended):
            self.driver.close()


def test_machine_shape_is_recognised() -> None:
    assert isinstance(LineMachine(0.0), SansIOMachine)


def test_request_response_idle_timer_and_eof(world: World) -> None:
    server_rt, client_rt = world.new_runtime("server"), world.new_runtime("client")
    servers: list[PingServer] = []

    def factory() -> StreamDriver:
        servers.append(PingServer(server_rt))
        return servers[-1].driver

    listener = server_rt.listen((world.host(server_rt), 0), factory)
    idle = 0.2
    machine = LineMachine(client_rt.now(), idle=idle)
    events: list[object] = []
    closed: list[Exception | None] = []
    connected: list[StreamDriver] = []
    client = StreamDriver(
        client_rt, machine, events.append, on_closed=closed.append, on_connected=connected.append
    )
    for i in range(3):
        machine.send_line(f"ping {i}")
    client_rt.connect(listener.address, client)
    assert world.run_until(lambda: len(events) == 3, TIMEOUT)
    assert connected == [client]
    assert events == [Line("pong 0"), Line("pong 1"), Line("pong 2")]
    last_activity = client_rt.now()

    # Traffic re-arms the one timer; silence lets it fire once.
    assert world.run_until(lambda: any(isinstance(e, IdleTimeout) for e in events), TIMEOUT)
    fired = [e for e in events if isinstance(e, IdleTimeout)]
    assert len(fired) == 1
    assert fired[0].at >= last_activity + idle - 0.01
    assert world.run_until(lambda: Line("bye") in servers[0].events, TIMEOUT)
    world.run_for(idle * 2)
    assert len([e for e in events if isinstance(e, IdleTimeout)]) == 1

    # Client closes; the server machine sees EOF, the server closes too.
    client.close()
    assert world.run_until(lambda: bool(closed) and bool(servers[0].closed), TIMEOUT)
    assert closed == [None]
    assert servers[0].closed == [None]
    assert servers[0].events[-1] == Ended()
    assert client.finished and servers[0].driver.finished


def test_garbage_costs_only_that_connection(world: World) -> None:
    server_rt, client_rt = world.new_runtime("server"), world.new_runtime("client")
    servers: list[PingServer] = []

    def factory() -> StreamDriver:
        servers.append(PingServer(server_rt))
        return servers[-1].driver

    listener = server_rt.listen((world.host(server_rt), 0), factory)
    bad, good = StreamRecorder(), StreamRecorder()
    client_rt.connect(listener.address, bad)
    client_rt.connect(listener.address, good)
    assert world.run_until(lambda: bad.made and good.made and len(servers) == 2, TIMEOUT)
    assert bad.stream is not None and good.stream is not None
    bad.stream.write(b"x" * (MAX_LINE + 10))
    assert world.run_until(lambda: bad.lost, TIMEOUT)
    assert isinstance(bad.error, NetworkError)
    failed = [s for s in servers if s.closed]
    assert len(failed) == 1 and isinstance(failed[0].closed[0], RemoteProtocolError)
    # The other connection is served as before.
    good.stream.write(b"ping 7\n")
    assert world.run_until(lambda: bytes(good.data) == b"pong 7\n", TIMEOUT)


def test_connect_failure_reaches_on_closed(world: World) -> None:
    server_rt, client_rt = world.new_runtime("server"), world.new_runtime("client")
    listener = server_rt.listen((world.host(server_rt), 0), StreamRecorder)
    address = listener.address
    listener.close()
    world.run_for(0.01)
    closed: list[Exception | None] = []
    driver = StreamDriver(client_rt, LineMachine(client_rt.now()), print, on_closed=closed.append)
    client_rt.connect(address, driver)
    assert world.run_until(lambda: bool(closed), TIMEOUT)
    assert isinstance(closed[0], NetworkError) and driver.finished
