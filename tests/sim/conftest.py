"""Helpers for the simulator's own tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from peerlab.runtime.worlds import StreamRecorder
from peerlab.sim import SimHost, Simulator


class Transfer:
    """A one-way stream from ``src`` to ``dst``: connected, then ``send()``
    writes and the receiver records what arrives and when."""

    def __init__(self, sim: Simulator, src: SimHost, dst: SimHost, port: int = 80) -> None:
        self.sim = sim
        self.received: list[StreamRecorder] = []
        self.done_at: float | None = None
        self.expected = -1

        def factory() -> StreamRecorder:
            h = StreamRecorder()
            self.received.append(h)
            return h

        self.listener = dst.runtime.listen((dst.ip, port), factory)
        self.sender = StreamRecorder()
        src.runtime.connect(self.listener.address, self.sender)
        assert sim.run_until(lambda: self.sender.made and bool(self.received), 60)

    @property
    def receiver(self) -> StreamRecorder:
        return self.received[0]

    def send(self, data: bytes) -> None:
        assert self.sender.stream is not None
        self.sender.stream.write(data)

    def complete(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.receiver.data) >= n


@pytest.fixture
def make_transfer() -> Callable[..., Transfer]:
    return Transfer
