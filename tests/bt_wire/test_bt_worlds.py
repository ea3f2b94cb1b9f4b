"""Two peerlab peer connections over the StreamDriver, in both worlds (real
sockets on 127.0.0.1 and the simulator): a whole download whose pieces verify,
keep-alives that keep an idle connection up, and the idle and handshake
timeouts that end a silent one.  Short timer settings keep the real world
quick; nothing here asserts a duration."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from peerlab.errors import RemoteProtocolError
from peerlab.proto.peer import (
    PEER_ID_PREFIX,
    ConnectionClosed,
    Event,
    PeerConfig,
    PeerConnection,
)
from peerlab.runtime.driver import StreamDriver
from peerlab.runtime.worlds import RealWorld, SimWorld, StreamRecorder, World
from peerlab.wire import peer as pw

PIECE_LENGTH = 65536
DATA = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(9000))[:270_001]
PIECES = [DATA[i : i + PIECE_LENGTH] for i in range(0, len(DATA), PIECE_LENGTH)]
HASHES = [hashlib.sha1(p).digest() for p in PIECES]
INFO_HASH = hashlib.sha1(b"".join(HASHES)).digest()
TIMERS: dict[str, Any] = {"keepalive_interval": 0.1, "idle_timeout": 0.5, "handshake_timeout": 0.5}


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=6)
    try:
        yield w
    finally:
        w.close()


def _config(tag: bytes) -> PeerConfig:
    return PeerConfig(peer_id=PEER_ID_PREFIX + tag.ljust(12, b"-"), **TIMERS)


def _seed_factory(world: World, runtime: Any, drivers: list[StreamDriver]) -> Any:
    def factory() -> StreamDriver:
        machine = PeerConnection.incoming(
            _config(b"seed"), lambda h: len(PIECES) if h == INFO_HASH else None, runtime.now()
        )

        def on_event(ev: Event) -> None:
            if isinstance(ev, pw.Handshake) and machine.fast:
                machine.send_have_all()
            elif isinstance(ev, pw.Handshake):
                machine.send_bitfield(pw.bitfield_from_pieces(range(len(PIECES)), len(PIECES)))
            elif isinstance(ev, pw.Interested):
                machine.unchoke()
            elif isinstance(ev, pw.Request):
                start = ev.index * PIECE_LENGTH + ev.begin
                machine.send_piece(ev.index, ev.begin, DATA[start : start + ev.length])
            elif isinstance(ev, ConnectionClosed):
                driver.close()  # BitTorrent has no use for a half-closed connection

        driver = StreamDriver(runtime, machine, on_event)
        drivers.append(driver)
        return driver

    return factory


def test_download_keepalive_and_idle_timeout(world: World) -> None:
    seed_rt, leech_rt = world.new_runtime("seed"), world.new_runtime("leech")
    seed_drivers: list[StreamDriver] = []
    listener = seed_rt.listen((world.host(seed_rt), 0), _seed_factory(world, seed_rt, seed_drivers))
    blocks: dict[tuple[int, int], bytes] = {}
    wanted = deque(
        (i, b, min(pw.BLOCK_SIZE, len(p) - b))
        for i, p in enumerate(PIECES)
        for b in range(0, len(p), pw.BLOCK_SIZE)
    )
    total_blocks = len(wanted)
    closed: list[Exception | None] = []
    machine = PeerConnection.outgoing(
        _config(b"leech"), INFO_HASH, leech_rt.now(), piece_count=len(PIECES)
    )

    def request_more() -> None:
        while wanted and not machine.peer_choking and machine.request_slots:
            machine.request(*wanted.popleft())

    def on_event(ev: Event) -> None:
        if isinstance(ev, pw.Handshake):
            machine.interested()
        elif isinstance(ev, pw.Unchoke):
            request_more()
        elif isinstance(ev, pw.Piece):
            blocks[(ev.index, ev.begin)] = bytes(ev.block)
            request_more()

    driver = StreamDriver(leech_rt, machine, on_event, on_closed=closed.append)
    leech_rt.connect(listener.address, driver)
    assert world.run_until(lambda: len(blocks) == total_blocks, timeout=20)
    for index, want in enumerate(HASHES):
        got = b"".join(v for (i, _), v in sorted(blocks.items()) if i == index)
        assert hashlib.sha1(got).digest() == want
    # Idle for many idle timeouts: keep-alives from both sides keep it up.
    world.run_for(2.0)
    assert not closed and not seed_drivers[0].finished
    assert machine.counters["keepalives_received"] >= 2
    assert seed_drivers[0].machine.counters["keepalives_received"] >= 2  # type: ignore[attr-defined]
    driver.close()
    assert world.run_until(lambda: bool(closed) and seed_drivers[0].finished, timeout=10)
    assert closed == [None]
    listener.close()


def test_silent_peers_time_out(world: World) -> None:
    silent_rt, our_rt = world.new_runtime("silent"), world.new_runtime("ours")
    # A listener that accepts and never says a word: our handshake times out.
    silent = silent_rt.listen((world.host(silent_rt), 0), StreamRecorder)
    closed: list[Exception | None] = []
    machine = PeerConnection.outgoing(_config(b"ours"), INFO_HASH, our_rt.now())
    our_rt.connect(silent.address, StreamDriver(our_rt, machine, lambda ev: None,
                                                on_closed=closed.append))
    assert world.run_until(lambda: bool(closed), timeout=10)
    assert isinstance(closed[0], RemoteProtocolError) and "handshake" in str(closed[0])

    # A peer that handshakes and then falls silent: the idle timeout ends it.
    seed_drivers: list[StreamDriver] = []
    listener = our_rt.listen((world.host(our_rt), 0), _seed_factory(world, our_rt, seed_drivers))
    mute = StreamRecorder()
    silent_rt.connect(listener.address, mute)
    assert world.run_until(lambda: mute.stream is not None, timeout=10)
    assert mute.stream is not None
    mute.stream.write(pw.encode_handshake(pw.Handshake(INFO_HASH, b"-XX0000-muted-peer!!")))
    assert world.run_until(lambda: bool(seed_drivers) and seed_drivers[0].finished, timeout=10)
    assert len(mute.data) > pw.HANDSHAKE_LENGTH  # our handshake, have all, keep-alives
    listener.close()
    silent.close()
