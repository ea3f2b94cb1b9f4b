"""The simulator's network model, checked against its own formulas.

Times here are virtual: asserting them checks the model, not the machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from peerlab.errors import ConfigError, ConnectionRefused, NetworkError
from peerlab.runtime.worlds import DatagramRecorder, StreamRecorder
from peerlab.sim import Packet, Simulator
from peerlab.sim.net import CONTROL_SIZE, UDP_OVERHEAD
from peerlab.sim.tcp import (
    DEFAULT_CONNECT_TIMEOUT,
    SEGMENT_MAX,
    SEGMENT_MIN,
    SEGMENT_TIME,
    SYN_RTO,
    TCP_OVERHEAD,
)

Make = Callable[..., Any]


def segment_size(rate: float) -> int:
    return max(SEGMENT_MIN, min(SEGMENT_MAX, int(rate * SEGMENT_TIME)))


def wire_bytes(n: int, seg: int) -> int:
    """Bytes on the wire for an n-byte stream cut into seg-byte segments."""
    return n + math.ceil(n / seg) * TCP_OVERHEAD


@pytest.mark.parametrize(
    ("up", "down", "lat_a", "lat_b"),
    [
        (1e6, 1e6, 0.01, 0.02),  # symmetric
        (2e6, 5e5, 0.05, 0.05),  # receiver's downlink is the bottleneck
        (3e5, 8e6, 0.001, 0.1),  # sender's uplink is the bottleneck
    ],
)
def test_serialisation_delay(
    make_transfer: Make, up: float, down: float, lat_a: float, lat_b: float
) -> None:
    sim = Simulator(1)
    a = sim.add_host("10.0.0.1", up=up, down=1e9, latency=lat_a)
    b = sim.add_host("10.0.0.2", up=1e9, down=down, latency=lat_b)
    t = make_transfer(sim, a, b)
    n = 3_000_000
    start = sim.now
    t.send(bytes(n))
    assert sim.run_until(t.complete(n), 600)
    took = sim.now - start
    bottleneck = min(up, down)
    seg = segment_size(bottleneck)
    # The model: every wire byte crosses the bottleneck once, plus the
    # propagation delay, plus one segment's store-and-forward on the other link.
    ideal = wire_bytes(n, seg) / bottleneck + lat_a + lat_b
    forward = (seg + TCP_OVERHEAD) / max(up, down)
    assert ideal <= took <= ideal + forward + (seg + TCP_OVERHEAD) / bottleneck + 1e-6
    assert bytes(t.receiver.data) == bytes(n)


def test_latency_of_a_small_message(make_transfer: Make) -> None:
    sim = Simulator(2)
    up, down = 1e6, 2e6
    a = sim.add_host("10.0.0.1", up=up, down=down, latency=0.030)
    b = sim.add_host("10.0.0.2", up=up, down=down, latency=0.045)
    t = make_transfer(sim, a, b)
    sim.run(sim.now + 1.0)  # let the handshake's last ACK settle
    start = sim.now
    t.send(b"0123456789")
    assert sim.run_until(t.complete(10), 10)
    wire = 10 + TCP_OVERHEAD
    assert sim.now - start == pytest.approx(wire / up + 0.030 + 0.045 + wire / down, abs=1e-9)


def test_connect_takes_one_round_trip() -> None:
    sim = Simulator(3)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.1)
    b = sim.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.2)
    b.runtime.listen(("10.0.0.2", 80), StreamRecorder)
    c = StreamRecorder()
    a.runtime.connect(("10.0.0.2", 80), c)
    assert sim.run_until(lambda: c.made, 10)
    control = 2 * (CONTROL_SIZE / 1e6 + CONTROL_SIZE / 1e6)  # SYN and SYN-ACK, up and down
    assert sim.now == pytest.approx(2 * 0.3 + control, abs=1e-9)


def test_refused_after_one_round_trip() -> None:
    sim = Simulator(4)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.1)
    sim.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.2)
    c = StreamRecorder()
    a.runtime.connect(("10.0.0.2", 81), c)
    assert sim.run_until(lambda: c.failed, 10)
    assert isinstance(c.error, ConnectionRefused)
    assert sim.now == pytest.approx(0.6 + 4 * CONTROL_SIZE / 1e6, abs=1e-9)


def test_unknown_host_times_out_after_the_default_connect_timeout() -> None:
    sim = Simulator(5)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.1)
    c = StreamRecorder()
    a.runtime.connect(("10.9.9.9", 80), c)
    assert sim.run_until(lambda: c.failed, 1000)
    assert sim.now == pytest.approx(DEFAULT_CONNECT_TIMEOUT)
    assert isinstance(c.error, NetworkError) and not isinstance(c.error, ConnectionRefused)
    # Every SYN was lost on the way (no route), retried 1 s, 2 s, 4 s, ... apart.
    assert a.packets_lost == 1 + int(math.log2(DEFAULT_CONNECT_TIMEOUT / SYN_RTO + 1))


def test_loss_with_retransmission_keeps_the_stream_intact(make_transfer: Make) -> None:
    sim = Simulator(6)
    a = sim.add_host("10.0.0.1", up=2e6, down=2e6, latency=0.02, loss=0.05)
    b = sim.add_host("10.0.0.2", up=2e6, down=2e6, latency=0.02, loss=0.05)
    t = make_transfer(sim, a, b)
    data = bytes(range(256)) * (5 * 4096)  # 5 MiB of a pattern: misordering shows
    start = sim.now
    t.send(data)
    assert t.sender.stream is not None
    t.sender.stream.write_eof()
    assert sim.run_until(lambda: t.receiver.eof, 600)
    assert bytes(t.receiver.data) == data
    assert a.packets_lost + b.packets_lost > 10
    lossless = wire_bytes(len(data), segment_size(2e6)) / 2e6
    assert sim.now - start > lossless


def test_datagrams_are_lost_not_retransmitted() -> None:
    sim = Simulator(7)
    a = sim.add_host("10.0.0.1", up=1e7, down=1e7, latency=0.01, loss=0.2)
    b = sim.add_host("10.0.0.2", up=1e7, down=1e7, latency=0.01)
    rb = DatagramRecorder()
    ea = a.runtime.bind_udp(("10.0.0.1", 0), DatagramRecorder())
    b.runtime.bind_udp(("10.0.0.2", 53), rb)
    for i in range(500):
        ea.send_to(i.to_bytes(4, "big"), ("10.0.0.2", 53))
    sim.run()
    got = [int.from_bytes(d, "big") for d, _ in rb.datagrams]
    assert got == sorted(got)  # one path: no reordering
    assert 300 < len(got) < 500  # about 80% of them
    assert len(got) + a.packets_lost == 500
    assert a.bytes_up == 500 * (4 + UDP_OVERHEAD)


def test_uplink_is_shared_round_robin(make_transfer: Make) -> None:
    sim = Simulator(8)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e9, latency=0.01)
    b = sim.add_host("10.0.0.2", up=1e9, down=1e9, latency=0.01)
    c = sim.add_host("10.0.0.3", up=1e9, down=1e9, latency=0.01)
    tb, tc = make_transfer(sim, a, b), make_transfer(sim, a, c)
    n = 2_000_000
    start = sim.now
    tb.send(bytes(n))
    tc.send(bytes(n))
    assert sim.run_until(lambda: len(tb.receiver.data) >= n // 2, 100)
    # Halfway through one, the other has had about the same share.
    assert abs(len(tc.receiver.data) - len(tb.receiver.data)) <= 2 * segment_size(1e6)
    assert sim.run_until(lambda: tb.complete(n)() and tc.complete(n)(), 100)
    took = sim.now - start
    assert took == pytest.approx(2 * wire_bytes(n, segment_size(1e6)) / 1e6, rel=0.02)


def test_downlink_is_a_fifo_shared_by_senders(make_transfer: Make) -> None:
    sim = Simulator(9)
    b = sim.add_host("10.0.0.2", up=1e9, down=1e6, latency=0.01)
    senders = [sim.add_host(f"10.0.1.{i}", up=1e9, down=1e9, latency=0.01) for i in range(3)]
    transfers = [make_transfer(sim, s, b, port=80 + i) for i, s in enumerate(senders)]
    start = sim.now
    n = 1_000_000
    for t in transfers:
        t.send(bytes(n))
    assert sim.run_until(lambda: all(t.complete(n)() for t in transfers), 100)
    # Three streams through one 1 MB/s downlink take three times as long as one.
    assert sim.now - start == pytest.approx(3 * wire_bytes(n, segment_size(1e6)) / 1e6, rel=0.03)


def test_packet_hooks_see_and_can_drop_packets() -> None:
    sim = Simulator(10)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.01)
    b = sim.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.01)
    seen: list[str] = []
    dropped_syns = 0

    def firewall(pkt: Packet) -> Packet | None:
        nonlocal dropped_syns
        seen.append(pkt.kind)
        if pkt.kind == "SYN" and dropped_syns < 2:
            dropped_syns += 1
            return None
        return pkt

    a.egress.append(firewall)
    b.runtime.listen(("10.0.0.2", 80), StreamRecorder)
    c = StreamRecorder()
    a.runtime.connect(("10.0.0.2", 80), c)
    assert sim.run_until(lambda: c.made, 10)
    # Two SYNs were eaten: the third, after 1 s + 2 s of backoff, got through.
    assert sim.now == pytest.approx(3.0 + 0.04 + 4 * CONTROL_SIZE / 1e6, abs=1e-9)
    assert seen == ["SYN", "SYN", "SYN"]

    rewritten: list[Packet] = []

    def redirect(pkt: Packet) -> Packet | None:
        if pkt.kind == "DGRAM" and pkt.dst[1] == 9:
            pkt.dst = (pkt.dst[0], 10)
            rewritten.append(pkt)
        return pkt

    b.ingress.append(redirect)
    r9, r10 = DatagramRecorder(), DatagramRecorder()
    b.runtime.bind_udp(("10.0.0.2", 9), r9)
    b.runtime.bind_udp(("10.0.0.2", 10), r10)
    a.runtime.bind_udp(("10.0.0.1", 5), DatagramRecorder()).send_to(b"hi", ("10.0.0.2", 9))
    sim.run(sim.now + 1)
    assert r9.datagrams == [] and r10.datagrams == [(b"hi", ("10.0.0.1", 5))]
    assert len(rewritten) == 1


def test_closed_port_answers_late_segments_with_reset(make_transfer: Make) -> None:
    sim = Simulator(11)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.01)
    b = sim.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.01)
    t = make_transfer(sim, a, b)
    assert t.receiver.stream is not None and t.sender.stream is not None
    t.receiver.stream.close()
    assert sim.run_until(lambda: t.sender.eof and t.receiver.lost, 10)
    t.sender.stream.write(b"after close: discarded")
    sim.run(sim.now + 1)
    assert not t.sender.lost  # within the linger time: quietly ignored
    sim.run(sim.now + 120)  # the closed end is forgotten
    t.sender.stream.write(b"to a forgotten port")
    assert sim.run_until(lambda: t.sender.lost, 10)
    assert isinstance(t.sender.error, NetworkError) and "reset" in str(t.sender.error)
    assert t.receiver.data == b""


def test_offload_and_timers_use_virtual_time() -> None:
    sim = Simulator(12)
    rt = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.01).runtime
    calls: list[tuple[str, float]] = []
    rt.call_later(5.0, lambda: calls.append(("timer", rt.now())))
    rt.offload(
        lambda: calls.append(("work", rt.now())), lambda r, e: calls.append(("done", rt.now()))
    )
    assert calls == [("work", 0.0)]  # fn runs at once, done comes from the heap
    sim.run()
    assert calls == [("work", 0.0), ("done", 0.0), ("timer", 5.0)]
    assert rt.wall_time() == sim.epoch + 5.0


def test_host_configuration_errors() -> None:
    sim = Simulator(13)
    sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.01)
    with pytest.raises(ConfigError):
        sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.01)
    with pytest.raises(ConfigError):
        sim.add_host("10.0.0.2", up=0, down=1e6, latency=0.01)
    with pytest.raises(ConfigError):
        sim.add_host("10.0.0.3", up=1e6, down=1e6, latency=0.01, loss=1.0)
    rt = sim.hosts["10.0.0.1"].runtime
    with pytest.raises(NetworkError):
        rt.listen(("10.0.0.99", 80), StreamRecorder)


def test_unlimited_bandwidth_hosts() -> None:
    sim = Simulator(14)
    a = sim.add_host("10.0.0.1", up=math.inf, down=math.inf, latency=0.01)
    b = sim.add_host("10.0.0.2", up=math.inf, down=math.inf, latency=0.01)
    b.runtime.listen(("10.0.0.2", 80), lambda: StreamRecorder(echo=True))
    c = StreamRecorder()
    a.runtime.connect(("10.0.0.2", 80), c)
    assert sim.run_until(lambda: c.made, 1)
    assert c.stream is not None
    start = sim.now
    c.stream.write(b"x" * 1_000_000)
    assert sim.run_until(lambda: len(c.data) == 1_000_000, 10)
    assert sim.now - start == pytest.approx(0.04)  # pure latency, both ways


def test_close_after_a_long_write_flushes_everything(make_transfer: Make) -> None:
    """close() right after a write that takes far longer than the linger
    time to flush still delivers every byte, then EOF."""
    sim = Simulator(15)
    a = sim.add_host("10.0.0.1", up=10_000, down=1e6, latency=0.05)
    b = sim.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.05)
    t = make_transfer(sim, a, b)
    assert t.sender.stream is not None
    data = bytes(range(256)) * 4000  # 1 MB: 100 s at 10 kB/s
    t.send(data)
    t.sender.stream.close()
    assert sim.run_until(lambda: t.receiver.eof, 300)
    assert bytes(t.receiver.data) == data
    assert sim.now > 100
    assert t.sender.lost and t.sender.error is None
