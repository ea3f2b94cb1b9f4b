"""Helpers of the tracker tests: requests, and running a world until a
callback arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peerlab.overlays.tracker.server import Tracker, TrackerConfig
from peerlab.runtime.base import RecordingObserver, Runtime
from peerlab.runtime.worlds import World
from peerlab.wire.tracker import AnnounceEvent, AnnounceRequest

IH = bytes.fromhex("aa" * 20)
IH2 = bytes.fromhex("bb" * 20)
#: Upper bound on any single wait, in the world's seconds.
WAIT_S = 20.0


def peer_id(n: int) -> bytes:
    return f"-PL0001-{n:012d}".encode()


def req(
    n: int,
    *,
    left: int = 1000,
    event: AnnounceEvent = AnnounceEvent.STARTED,
    info_hash: bytes = IH,
    port: int | None = None,
    **kw: Any,
) -> AnnounceRequest:
    """Peer ``n``'s announce (port 7000 + n unless given)."""
    return AnnounceRequest(
        info_hash, peer_id(n), 7000 + n if port is None else port, 0, 0, left, event, **kw
    )


def call(world: World, start: Callable[[Callable[[Any, Exception | None], None]], Any],
         timeout: float = WAIT_S) -> tuple[Any, Exception | None]:  # fmt: skip
    """Start a request with a ``done`` callback and run the world until it fires."""
    out: list[tuple[Any, Exception | None]] = []
    start(lambda r, e: out.append((r, e)))
    assert world.run_until(lambda: bool(out), timeout), "no callback in time"
    assert len(out) == 1
    return out[0]


def ok(world: World, start: Callable[[Callable[[Any, Exception | None], None]], Any]) -> Any:
    result, exc = call(world, start)
    assert exc is None, exc
    return result


def start_tracker(
    world: World, name: str = "tracker", store: Any = None, **cfg: Any
) -> tuple[Tracker, Runtime, RecordingObserver]:
    obs = RecordingObserver()
    rt = world.new_runtime(name, observer=obs)
    config = TrackerConfig(host=world.host(rt), **cfg)
    t = Tracker(rt, config, store)
    t.start()
    return t, rt, obs
