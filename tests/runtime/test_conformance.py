"""The runtime conformance suite: one set of test bodies, both runtimes.

Each test gets a ``world`` (see conftest.py): real asyncio sockets on
127.0.0.1, or the simulator.  The rules checked are the numbered rules in
:mod:`peerlab.runtime.base`.
"""

from __future__ import annotations

import random

import pytest

from peerlab.errors import AddressInUse, ConnectionRefused, NetworkError
from peerlab.runtime.base import Runtime
from peerlab.runtime.worlds import DatagramRecorder, StreamRecorder, World

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
