"""Same seed and same program: the same trace, to the byte."""

from __future__ import annotations

import os
import subprocess
import sys

from peerlab.runtime.base import Runtime
from peerlab.runtime.worlds import DatagramRecorder, StreamRecorder
from peerlab.sim import Simulator, derive_seed

HOSTS = 6


def scenario(seed: int, loss: float, *, trace: bool = False) -> Simulator:
    """A small busy network: streams, datagrams and timers, all driven by
    each host's own rng."""
    sim = Simulator(seed, trace=trace)
    hosts = [
        sim.add_host(
            f"10.0.0.{i + 1}", up=2e5 * (i + 1), down=4e5 * (i + 1), latency=0.005 * i, loss=loss
        )
        for i in range(HOSTS)
    ]
    endpoints = []
    for h in hosts:
        h.runtime.listen((h.ip, 80), lambda: StreamRecorder(echo=True))
        endpoints.append(h.runtime.bind_udp((h.ip, 53), DatagramRecorder()))

    def activity(rt: Runtime, index: int) -> None:
        rng = rt.rng
        for _ in range(2):
            peer = hosts[rng.randrange(HOSTS)]
            c = StreamRecorder()
            rt.connect((peer.ip, 80), c)

            size = rng.randrange(1, 300_000)

            def send(c: StreamRecorder = c, n: int = size) -> None:
                if c.stream is not None:
                    c.stream.write(rng.randbytes(n))
                    c.stream.write_eof()

            rt.call_later(rng.uniform(0.5, 2.0), send)
        for _ in range(20):
            peer = hosts[rng.randrange(HOSTS)]
            size = rng.randrange(1, 1200)
            rt.call_later(
                rng.uniform(0, 5),
                lambda ip=peer.ip, n=size: endpoints[index].send_to(bytes(n), (ip, 53)),
            )

    for i, h in enumerate(hosts):
        activity(h.runtime, i)
    sim.run(until=60.0)
    return sim


def test_same_seed_same_trace() -> None:
    a = scenario(1, 0.03, trace=True)
    b = scenario(1, 0.03, trace=True)
    assert a.trace_lines == b.trace_lines
    assert a.trace_digest() == b.trace_digest()
    assert a.events_run == b.events_run
    assert a.trace_lines is not None and len(a.trace_lines) > 100
    # Something of everything happened: streams, datagrams, losses, timers.
    kinds = {line.split()[2] for line in a.trace_lines}
    assert {"connected", "accepted", "data", "eof", "dgram", "lost", "timer"} <= kinds


def test_different_seed_different_trace() -> None:
    assert scenario(1, 0.03).trace_digest() != scenario(2, 0.03).trace_digest()


def test_trace_does_not_depend_on_the_process() -> None:
    """hash() is salted per process; the simulator must not depend on it."""
    code = (
        "import importlib.util as u\n"
        f"spec = u.spec_from_file_location('det', {__file__!r})\n"
        "m = u.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.scenario(5, 0.02).trace_digest())\n"
    )
    digests = set()
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert digests == {scenario(5, 0.02).trace_digest()}


def test_host_rng_depends_on_seed_and_ip_only() -> None:
    one = Simulator(9)
    a1 = one.add_host("10.0.0.1", up=1e6, down=1e6, latency=0.01)
    b1 = one.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.01)
    two = Simulator(9)
    b2 = two.add_host("10.0.0.2", up=1e6, down=1e6, latency=0.01)  # other order
    a2 = two.add_host("10.0.0.1", up=5e6, down=1e6, latency=0.2)  # other links
    draws = [h.runtime.rng.random() for h in (a1, b1, a2, b2)]
    assert draws[0] == draws[2] and draws[1] == draws[3] and draws[0] != draws[1]
    assert (
        Simulator(10).add_host("10.0.0.1", up=1, down=1, latency=0).runtime.rng.random()
        != (draws[0])
    )
    assert derive_seed(9, "10.0.0.1", "rng") == derive_seed(9, "10.0.0.1", "rng")
