"""The simulator at size: a 100 MiB stream, and thousands of hosts."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

from peerlab.runtime.base import BaseStreamHandler, Stream
from peerlab.runtime.worlds import DatagramRecorder, StreamRecorder
from peerlab.sim import Simulator
from peerlab.sim.tcp import SEGMENT_MAX, SEGMENT_MIN, SEGMENT_TIME, TCP_OVERHEAD

MIB = 1 << 20


class Digesting(BaseStreamHandler):
    """Hashes what it receives instead of keeping it."""

    def __init__(self) -> None:
        self.sha1 = hashlib.sha1()
        self.n = 0
        self.eof = False

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream

    def data_received(self, data: bytes) -> None:
        self.sha1.update(data)
        self.n += len(data)

    def eof_received(self) -> None:
        self.eof = True


def test_100_mib_over_1_mb_s_takes_about_100_virtual_seconds(
    make_transfer: Callable[..., Any],
) -> None:
    sim = Simulator(100)
    a = sim.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.02)
    b = sim.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.02)
    receivers: list[Digesting] = []

    def factory() -> Digesting:
        receivers.append(Digesting())
        return receivers[-1]

    listener = b.runtime.listen(("10.0.0.2", 80), factory)
    sender = StreamRecorder()
    a.runtime.connect(listener.address, sender)
    assert sim.run_until(lambda: sender.made and bool(receivers), 5)
    assert sender.stream is not None
    block = hashlib.sha256(b"peerlab").digest() * (MIB // 32)
    data = block * 100
    start = sim.now
    sender.stream.write(data)
    sender.stream.write_eof()
    assert sim.run_until(lambda: receivers[0].eof, 1000)
    took = sim.now - start
    assert receivers[0].n == len(data)
    assert receivers[0].sha1.digest() == hashlib.sha1(data).digest()
    seg = max(SEGMENT_MIN, min(SEGMENT_MAX, int(1e6 * SEGMENT_TIME)))
    wire = len(data) + math.ceil(len(data) / seg) * TCP_OVERHEAD
    assert wire / 1e6 < took < wire / 1e6 + 0.5  # ~105 s: 100 MiB is 104.9 MB
    assert sim.events_run < 10 * len(data) / seg  # a few events per segment


def test_two_thousand_hosts() -> None:
    sim = Simulator(2000)
    n = 2000
    hosts = [
        sim.add_host(f"10.{i >> 8}.{i & 255}.1", up=1e5, down=1e6, latency=0.02, loss=0.01)
        for i in range(n)
    ]
    inboxes = []
    endpoints = []
    for h in hosts:
        h.runtime.listen((h.ip, 6346), lambda: StreamRecorder(echo=True))
        inboxes.append(DatagramRecorder())
        endpoints.append(h.runtime.bind_udp((h.ip, 6346), inboxes[-1]))
    clients = []
    for i, h in enumerate(hosts):
        peer = hosts[h.runtime.rng.randrange(n)]
        endpoints[i].send_to(b"ping", (peer.ip, 6346))
        c = StreamRecorder()
        h.runtime.connect((peer.ip, 6346), c)
        clients.append(c)
    assert sim.run_until(lambda: all(c.made for c in clients), 60)
    for c in clients:
        assert c.stream is not None
        c.stream.write(b"hello" * 100)
        c.stream.write_eof()
    assert sim.run_until(lambda: all(c.eof for c in clients), 60)
    assert all(bytes(c.data) == b"hello" * 100 for c in clients)
    received = sum(len(i.datagrams) for i in inboxes)
    assert 0.95 * n < received <= n  # 1% loss on each of two links
    assert sim.events_run < 40 * n
