"""The runtime conformance suite: one set of test bodies, both runtimes.

Each test gets a ``world`` (see conftest.py): real asyncio sockets on
127.0.0.1, or the simulator.  The rules checked are the numbered rules in
:mod:`peerlab.runtime.base`.
"""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from peerlab.errors import AddressInUse, ConnectionRefused, NetworkError
from peerlab.runtime.base import Address, Runtime
from peerlab.runtime.worlds import DatagramRecorder, RealWorld, StreamRecorder, World

TIMEOUT = 20.0


def pair(
    world: World, server_handler: type[StreamRecorder] | None = None, *, echo: bool = False
) -> tuple[Runtime, Runtime, list[StreamRecorder], StreamRecorder]:
    """A server runtime listening with recorders, and a client connected to it."""
    server, client = world.new_runtime("server"), world.new_runtime("client")
    accepted: list[StreamRecorder] = []

    def factory() -> StreamRecorder:
        h = (server_handler or StreamRecorder)(echo=echo)
        accepted.append(h)
        return h

    listener = server.listen((world.host(server), 0), factory)
    c = StreamRecorder()
    client.connect(listener.address, c)
    assert world.run_until(lambda: c.made and len(accepted) == 1 and accepted[0].made, TIMEOUT)
    return server, client, accepted, c


def payload(n: int, seed: str = "payload") -> bytes:
    return random.Random(seed).randbytes(n)


def test_listen_connect_addresses(world: World) -> None:
    server, client, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    assert c.stream.remote_address == s.stream.local_address
    assert s.stream.remote_address == c.stream.local_address
    assert c.stream.remote_address[0] == world.host(server)
    assert c.events == ["made"] and s.events == ["made"]


def test_send_both_ways_byte_for_byte(world: World) -> None:
    _, _, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    up = payload(3 << 20, "up")
    down = payload((2 << 20) + 12345, "down")
    # Many small writes one way, one big write the other.
    for i in range(0, len(up), 100_000):
        c.stream.write(up[i : i + 100_000])
    s.stream.write(down)
    assert world.run_until(lambda: len(s.data) == len(up) and len(c.data) == len(down), TIMEOUT)
    assert bytes(s.data) == up
    assert bytes(c.data) == down


def test_refused_connection(world: World) -> None:
    server, client = world.new_runtime("server"), world.new_runtime("client")
    # Find a port nobody listens on: bind and close a listener.
    listener = server.listen((world.host(server), 0), StreamRecorder)
    address = listener.address
    listener.close()
    world.run_for(0.01)
    c = StreamRecorder()
    client.connect(address, c)
    assert world.run_until(lambda: c.failed, TIMEOUT)
    assert isinstance(c.error, ConnectionRefused)
    assert c.events == ["failed"]


def test_address_in_use_is_raised_at_once(world: World) -> None:
    server = world.new_runtime("server")
    listener = server.listen((world.host(server), 0), StreamRecorder)
    with pytest.raises(AddressInUse):
        server.listen(listener.address, StreamRecorder)
    endpoint = server.bind_udp((world.host(server), 0), DatagramRecorder())
    with pytest.raises(AddressInUse):
        server.bind_udp(endpoint.address, DatagramRecorder())
    assert isinstance(AddressInUse("x"), NetworkError)


def test_timers_order_ties_cancel(world: World) -> None:
    rt = world.new_runtime("timers")
    fired: list[str] = []
    now = rt.now()
    rt.call_at(now + 0.05, lambda: fired.append("c"))
    rt.call_at(now + 0.02, lambda: fired.append("a"))
    for i in range(5):
        rt.call_at(now + 0.03, lambda i=i: fired.append(f"tie{i}"))
    cancelled = rt.call_at(now + 0.01, lambda: fired.append("cancelled"))
    cancelled.cancel()
    cancelled.cancel()
    rt.call_later(0.04, lambda: fired.append("b"))
    rt.call_soon(lambda: fired.append("soon"))
    t = rt.call_later(0.06, lambda: fired.append("last"))
    assert t.when == pytest.approx(now + 0.06, abs=0.01)
    assert not t.cancelled and cancelled.cancelled
    assert world.run_until(lambda: "last" in fired, TIMEOUT)
    assert fired == ["soon", "a", "tie0", "tie1", "tie2", "tie3", "tie4", "b", "c", "last"]
    assert rt.now() >= now + 0.06


def test_udp_both_ways(world: World) -> None:
    a, b = world.new_runtime("a"), world.new_runtime("b")
    ra, rb = DatagramRecorder(), DatagramRecorder()
    ea = a.bind_udp((world.host(a), 0), ra)
    eb = b.bind_udp((world.host(b), 0), rb)
    msgs = [payload(n, f"d{n}") for n in (1, 100, 1400, 8000)]
    for m in msgs:
        ea.send_to(m, eb.address)
    eb.send_to(b"pong", ea.address)
    assert world.run_until(lambda: len(rb.datagrams) == len(msgs) and ra.datagrams, TIMEOUT)
    assert [d for d, _ in rb.datagrams] == msgs
    assert all(addr == ea.address for _, addr in rb.datagrams)
    assert ra.datagrams == [(b"pong", eb.address)]
    ea.close()
    eb.close()


def test_half_close_peer_still_writes_back(world: World) -> None:
    _, _, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    c.stream.write(b"request")
    c.stream.write_eof()
    assert world.run_until(lambda: s.eof, TIMEOUT)
    assert bytes(s.data) == b"request"
    assert s.events == ["made", "data", "eof"]
    assert not s.stream.closing
    # The half-closed peer still writes, and the client still reads.
    s.stream.write(b"response after eof")
    s.stream.close()
    assert world.run_until(lambda: c.eof and s.lost, TIMEOUT)
    assert bytes(c.data) == b"response after eof"
    assert s.error is None
    c.stream.close()
    assert world.run_until(lambda: c.lost, TIMEOUT)
    assert c.events == ["made", "data", "eof", "lost"] and c.error is None
    assert s.events == ["made", "data", "eof", "lost"]


def test_close_flushes_then_peer_sees_eof(world: World) -> None:
    _, _, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    body = payload(1 << 20, "close")
    c.stream.write(body)
    c.stream.close()
    assert c.stream.closing
    c.stream.write(b"ignored after close")
    assert world.run_until(lambda: s.eof and c.lost, TIMEOUT)
    assert bytes(s.data) == body
    assert c.error is None and c.events[-1] == "lost" and c.events.count("lost") == 1
    s.stream.close()
    assert world.run_until(lambda: s.lost, TIMEOUT)
    assert s.error is None and s.events == ["made", "data", "eof", "lost"]


def test_abort_resets_the_peer(world: World) -> None:
    _, _, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    c.stream.write(b"x" * 1000)
    assert world.run_until(lambda: len(s.data) == 1000, TIMEOUT)
    c.stream.write(b"discarded" * 1000)
    c.stream.abort()
    assert c.stream.closing
    assert world.run_until(lambda: c.lost and s.lost, TIMEOUT)
    assert c.error is None  # the aborting side ends quietly
    assert isinstance(s.error, NetworkError)  # the peer sees a reset
    assert "reset" in str(s.error)
    assert not s.eof
    assert s.events[-1] == "lost" and s.events.count("lost") == 1


def test_flow_control_pause_and_resume_writing(world: World) -> None:
    _, _, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    s.stream.pause_reading()
    body = payload(16 << 20, "flow")
    c.stream.write(body)
    assert c.stream.get_write_buffer_size() > 0
    assert world.run_until(lambda: "pause" in c.events, TIMEOUT)
    # Writes while paused are still accepted.
    c.stream.write(b"tail")
    world.run_for(0.05)
    assert "resume" not in c.events
    assert len(s.data) == 0
    s.stream.resume_reading()
    assert world.run_until(lambda: len(s.data) == len(body) + 4, TIMEOUT)
    assert bytes(s.data) == body + b"tail"
    assert c.events == ["made", "pause", "resume"]
    assert c.stream.get_write_buffer_size() == 0


def test_pause_reading_holds_data_back(world: World) -> None:
    _, _, accepted, c = pair(world)
    s = accepted[0]
    assert c.stream is not None and s.stream is not None
    s.stream.pause_reading()
    c.stream.write(b"held back")
    c.stream.write_eof()
    world.run_for(0.1)
    assert s.data == b"" and not s.eof
    s.stream.resume_reading()
    assert world.run_until(lambda: s.eof, TIMEOUT)
    assert bytes(s.data) == b"held back"
    assert s.events == ["made", "data", "eof"]


def test_no_callback_runs_inside_a_runtime_call(world: World) -> None:
    server, client = world.new_runtime("server"), world.new_runtime("client")
    listener = server.listen((world.host(server), 0), StreamRecorder)
    c = StreamRecorder()
    client.connect(listener.address, c)
    assert c.events == []
    fired: list[int] = []
    client.call_soon(lambda: fired.append(1))
    assert fired == []
    results: list[tuple[object, BaseException | None]] = []
    client.offload(lambda: 6 * 7, lambda r, e: results.append((r, e)))
    assert results == []
    assert world.run_until(lambda: c.made and fired and results, TIMEOUT)


def test_offload_delivers_result_and_error(world: World) -> None:
    rt = world.new_runtime("worker")
    results: list[tuple[object, BaseException | None]] = []

    def boom() -> int:
        raise ValueError("bad chunk")

    rt.offload(lambda: sum(range(1000)), lambda r, e: results.append((r, e)))
    rt.offload(boom, lambda r, e: results.append((r, e)))
    assert world.run_until(lambda: len(results) == 2, TIMEOUT)
    ok = [r for r in results if r[1] is None]
    bad = [r for r in results if r[1] is not None]
    assert ok == [(499500, None)]
    assert bad[0][0] is None and isinstance(bad[0][1], ValueError)


def test_wall_time_and_clock(world: World) -> None:
    rt = world.new_runtime("clock")
    t0, w0 = rt.now(), rt.wall_time()
    assert w0 > 1_600_000_000  # an epoch timestamp, not a monotonic reading
    world.run_for(0.05)
    assert rt.now() >= t0 + 0.05 - 1e-3
    assert rt.wall_time() >= w0


def test_rng_is_a_random_generator(world: World) -> None:
    rt = world.new_runtime("rng")
    values = {rt.rng.getrandbits(64) for _ in range(10)}
    assert len(values) == 10


@contextmanager
def unanswered_address(world: World) -> Iterator[Address]:
    """An address whose SYNs go unanswered.

    Simulator: a host that does not exist.  Real world (Linux only): a
    listening socket that never accepts, with backlog 0 and its accept queue
    already full, so the kernel drops further SYNs on loopback.
    """
    if not isinstance(world, RealWorld):
        yield ("10.255.255.254", 4000)
        return
    if not sys.platform.startswith("linux"):
        pytest.skip("an unanswered loopback address is only reliably made on Linux")
    srv = socket.socket()
    fill: list[socket.socket] = []
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        address = srv.getsockname()
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            fill.append(s)
            try:
                s.connect(address)
            except BlockingIOError:
                pass
        world.run_for(0.05)
        yield (address[0], address[1])
    finally:
        for s in fill:
            s.close()
        srv.close()


def test_connect_timeout(world: World) -> None:
    client = world.new_runtime("client")
    with unanswered_address(world) as address:
        c = StreamRecorder()
        start = client.now()
        client.connect(address, c, timeout=0.5)
        assert world.run_until(lambda: c.failed or c.made, TIMEOUT)
        assert c.events == ["failed"]
        assert isinstance(c.error, NetworkError)
        assert not isinstance(c.error, ConnectionRefused)
        assert "timed out" in str(c.error)
        assert client.now() >= start + 0.5 - 0.01


def test_cancel_pending_connect(world: World) -> None:
    client = world.new_runtime("client")
    with unanswered_address(world) as address:
        c = StreamRecorder()
        attempt = client.connect(address, c, timeout=5.0)
        world.run_for(0.05)
        attempt.cancel()
        attempt.cancel()
        assert world.run_until(lambda: c.failed, TIMEOUT)
        world.run_for(0.05)
        assert c.events == ["failed"]
        assert isinstance(c.error, NetworkError)


def test_listener_close_stops_accepting(world: World) -> None:
    server, client, accepted, c = pair(world)
    assert c.stream is not None
    listener = server.listen((world.host(server), 0), StreamRecorder)
    address = listener.address
    listener.close()
    listener.close()
    late = StreamRecorder()
    client.connect(address, late)
    assert world.run_until(lambda: late.failed, TIMEOUT)
    assert isinstance(late.error, ConnectionRefused)
    # An established connection is not touched by closing a listener.
    c.stream.write(b"still here")
    assert world.run_until(lambda: accepted[0].data == b"still here", TIMEOUT)


def test_many_connections_to_one_listener(world: World) -> None:
    server, client = world.new_runtime("server"), world.new_runtime("client")
    accepted: list[StreamRecorder] = []

    def factory() -> StreamRecorder:
        h = StreamRecorder(echo=True)
        accepted.append(h)
        return h

    listener = server.listen((world.host(server), 0), factory)
    clients = [StreamRecorder() for _ in range(20)]
    for c in clients:
        client.connect(listener.address, c)
    assert world.run_until(lambda: all(c.made for c in clients), TIMEOUT)
    for i, c in enumerate(clients):
        assert c.stream is not None
        c.stream.write(f"client {i}".encode())
        c.stream.write_eof()
    assert world.run_until(lambda: all(c.eof for c in clients), TIMEOUT)
    assert [bytes(c.data) for c in clients] == [f"client {i}".encode() for i in range(20)]
    assert len({c.stream.local_address for c in clients if c.stream}) == 20
