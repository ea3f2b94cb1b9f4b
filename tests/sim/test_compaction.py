"""Compacting the heap of cancelled timers must not strand later events
(a regression: compaction once swapped in a new list under a running loop)."""

from __future__ import annotations

from peerlab.sim import Simulator
from peerlab.sim.engine import COMPACT_THRESHOLD


def test_events_scheduled_after_a_compaction_still_fire() -> None:
    sim = Simulator(seed=1)
    rt = sim.add_host("10.9.0.1", up=1e6, down=1e6, latency=0.01).runtime
    fired: list[str] = []

    def churn() -> None:
        timers = [rt.call_later(100.0, lambda: fired.append("cancelled")) for _ in
                  range(COMPACT_THRESHOLD + 5000)]
        for t in timers:
            t.cancel()  # crosses the threshold: the heap is compacted here
        rt.call_later(0.1, lambda: fired.append("after"))

    rt.call_later(0.0, churn)
    assert sim.run_until(lambda: "after" in fired, 10.0)
    sim.run(until=200.0)
    assert fired == ["after"]


def test_run_sees_events_after_a_compaction() -> None:
    sim = Simulator(seed=2)
    rt = sim.add_host("10.9.0.2", up=1e6, down=1e6, latency=0.01).runtime
    fired: list[float] = []

    def churn() -> None:
        for t in [rt.call_later(50.0, lambda: None) for _ in range(COMPACT_THRESHOLD + 10)]:
            t.cancel()
        rt.call_later(1.0, lambda: fired.append(rt.now()))

    rt.call_later(0.5, churn)
    sim.run(until=10.0)
    assert fired == [1.5]
