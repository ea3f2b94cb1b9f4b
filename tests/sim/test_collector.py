"""The garbage collector frozen around a long simulation, and put back."""

from __future__ import annotations

import gc

import pytest

from peerlab.sim.collector import frozen
from peerlab.sim.topology import flood_scenario


def test_frozen_puts_the_collector_back() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(100)]
    with frozen((10_000, 10, 10)):
        assert gc.get_threshold() == (10_000, 10, 10)
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_frozen_puts_the_collector_back_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), frozen((5_000, 5, 5)):
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_flood_traces_the_same_whether_or_not_collections_run_during_it() -> None:
    """The flood freezes the built network; disabling the collector
    altogether (nothing freed until the end) gives the same trace."""
    frozen_run = flood_scenario(60, 10, seed=3)
    gc.disable()
    try:
        no_gc_run = flood_scenario(60, 10, seed=3)
    finally:
        gc.enable()
    assert frozen_run.deliveries > 0
    assert (frozen_run.digest, frozen_run.deliveries, frozen_run.hits) == (
        no_gc_run.digest, no_gc_run.deliveries, no_gc_run.hits)
