"""UploadService against a fake runtime with a virtual clock (DESIGN.md test
pyramid, level 3): flow control, stall and idle timeouts, the global rate limit
measured in virtual seconds, slots, the active queue and its expiry, and the
pure helpers (ranges, targets) driven by hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servekit import BIG_SIZE, FakeRuntime, FakeStream, Shares, fake_connection, parse_replies

from peerlab.overlays.transfer import server as srv
from peerlab.overlays.transfer.server import UploadConfig, UploadService, check_target, parse_range


def get(target: str, *headers: str, method: str = "GET") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def n2r(f: Any) -> str:
    return f"/uri-res/N2R?{f.urn}"


def make(shares: Shares, **cfg: Any) -> tuple[FakeRuntime, UploadService]:
    rt = FakeRuntime()
    return rt, UploadService(rt, shares.catalog, UploadConfig(**cfg))  # type: ignore[arg-type]


def drain_until_done(rt: FakeRuntime, stream: FakeStream, step: float = 0.01,
                     limit: float = 1000.0) -> float:  # fmt: skip
    """Keep draining (a fast reader) until the service closes or finishes the
    response; return the virtual time it took."""
    start = rt.now()
    while rt.now() - start < limit:
        stream.drain()
        rt.run(rt.now() + step)
        replies = parse_replies(bytes(stream.received))
        if replies and replies[-1].response.status < 300:
            return rt.now() - start
    raise AssertionError("response did not complete")


# ------------------------------------------------------------- flow control


def test_writes_stop_on_pause_writing_and_continue_on_resume(shares: Shares) -> None:
    rt, svc = make(shares, block_size=256 * 1024)
    f = shares.file("big.bin")
    h, s = fake_connection(svc)
    h.data_received(get(n2r(f)))
    assert s.paused
    written = len(s.received)
    assert 1 << 20 < written < (1 << 20) + 2 * 256 * 1024
    rt.run(rt.now() + 30)  # paused: nothing more, however long we wait
    assert len(s.received) == written
    for _ in range(100):
        if not s.paused:
            break
        s.drain()
        rt.run(rt.now() + 0.001)
    drain_until_done(rt, s)
    [reply] = parse_replies(bytes(s.received))
    assert reply.body == shares.contents["big.bin"]


def test_a_late_pause_still_bounds_the_send_buffer(shares: Shares) -> None:
    rt, svc = make(shares, block_size=256 * 1024)
    h, s = fake_connection(svc, sync_pause=False)
    h.data_received(get(n2r(shares.file("big.bin"))))
    written = len(s.received)
    assert written < (1 << 20) + 2 * 256 * 1024
    rt.run(rt.now() + 5)
    assert len(s.received) == written  # polls, does not write past the mark
    drain_until_done(rt, s)
    assert parse_replies(bytes(s.received))[0].body == shares.contents["big.bin"]


def test_a_stalled_reader_is_dropped(shares: Shares) -> None:
    rt, svc = make(shares, stall_timeout=20.0)
    h, s = fake_connection(svc)
    h.data_received(get(n2r(shares.file("big.bin"))))
    rt.run(19.0)
    assert not s.aborted
    rt.run(21.0)
    assert s.aborted
    assert rt.observer.named("upload.timeout")[0]["reason"] == "stalled"
    [row] = svc.uploads()
    assert row.status == "failed" and 0 < row.sent < BIG_SIZE
    assert svc.active == 0


def test_idle_and_trickling_connections_time_out(shares: Shares) -> None:
    rt, svc = make(shares, idle_timeout=10.0)
    h, s = fake_connection(svc)
    for i in range(9):  # one byte a second does not extend the deadline
        rt.run(float(i))
        h.data_received(b"G"[:1] if i == 0 else b"E")
    rt.run(10.5)
    assert s.closed
    assert rt.observer.named("upload.timeout")[0]["reason"] == "idle"


# ---------------------------------------------------------------- rate limit


def test_rate_limit_caps_throughput_in_virtual_time(shares: Shares) -> None:
    rate = 200_000.0
    rt, svc = make(shares, rate_limit=rate)
    h, s = fake_connection(svc)
    h.data_received(get(n2r(shares.file("big.bin"))))
    elapsed = drain_until_done(rt, s, step=0.05)
    burst = svc.bucket.burst
    assert (BIG_SIZE - burst) / rate - 0.5 <= elapsed <= BIG_SIZE / rate + 0.5
    assert parse_replies(bytes(s.received))[0].body == shares.contents["big.bin"]


def test_rate_limit_is_shared_by_all_connections(shares: Shares) -> None:
    rate = 400_000.0
    rt, svc = make(shares, rate_limit=rate)
    f = shares.file("big.bin")
    conns = [fake_connection(svc, peer=("10.0.0.9", 5000 + i)) for i in range(3)]
    for h, _ in conns:
        h.data_received(get(n2r(f)))
    start = rt.now()
    done: set[int] = set()
    rates: list[float] = []
    while len(done) < 3 and rt.now() - start < 100:
        for i, (_, s) in enumerate(conns):
            s.drain()
            if i not in done and parse_replies(bytes(s.received)):
                done.add(i)
        rt.run(rt.now() + 0.05)
        if abs(rt.now() - start - 4.0) < 0.026:
            rates = [row.rate for row in svc.uploads()]
    elapsed = rt.now() - start
    assert len(done) == 3
    assert elapsed >= (3 * BIG_SIZE - svc.bucket.burst) / rate - 0.5
    assert len(rates) == 3 and sum(rates) == pytest.approx(rate, rel=0.15)
    for _, s in conns:
        assert parse_replies(bytes(s.received))[0].body == shares.contents["big.bin"]


def test_rate_limited_uploads_share_the_limit_fairly(shares: Shares) -> None:
    """Two downloads under one global limit both progress (no starvation)."""
    rate = 300_000.0
    rt, svc = make(shares, rate_limit=rate)
    f = shares.file("big.bin")
    conns = [fake_connection(svc, peer=("10.0.0.9", 6000 + i)) for i in range(2)]
    for h, _ in conns:
        h.data_received(get(n2r(f)))
    while rt.now() < 3.0:
        for _, s in conns:
            s.drain()
        rt.run(rt.now() + 0.05)
    sent = sorted(row.sent for row in svc.uploads())
    assert sum(sent) == pytest.approx(3.0 * rate + svc.bucket.burst, rel=0.15)
    assert sent[0] >= 0.4 * sum(sent)


def test_changing_the_rate_limit_mid_transfer(shares: Shares) -> None:
    rt, svc = make(shares, rate_limit=100_000.0)
    h, s = fake_connection(svc)
    h.data_received(get(n2r(shares.file("big.bin"))))
    while rt.now() < 10.0:
        s.drain()
        rt.run(rt.now() + 0.05)
    sent = svc.uploads()[0].sent
    assert 0.9e6 < sent < 1.2e6
    svc.set_rate_limit(0)  # unlimited: the rest goes at once
    elapsed = drain_until_done(rt, s)
    assert elapsed < 1.0
    assert parse_replies(bytes(s.received))[0].body == shares.contents["big.bin"]


# ------------------------------------------------------------ slots, queue


def status_of(s: FakeStream) -> list[int]:
    return [r.status for r in parse_replies(bytes(s.received))]


def x_queue(s: FakeStream) -> dict[str, int] | None:
    reply = parse_replies(bytes(s.received))[-1]
    value = reply.header("X-Queue")
    if value is None:
        return None
    return {k: int(v) for k, v in (item.split("=") for item in value.split(","))}


def test_slots_queue_positions_and_order(shares: Shares) -> None:
    rt, svc = make(shares, slots=2, queue_limit=2, poll_min=5, poll_max=60, retry_after=99,
                   slot_linger=1000.0)  # fmt: skip
    f = shares.file("big.bin")
    ranged = get(n2r(f), "Range: bytes=0-9")
    a, sa = fake_connection(svc, peer=("10.0.0.1", 1))
    b, sb = fake_connection(svc, peer=("10.0.0.2", 1))
    a.data_received(ranged)
    b.data_received(ranged)
    assert status_of(sa) == [206] and status_of(sb) == [206]
    assert svc.active == 2
    c, sc = fake_connection(svc, peer=("10.0.0.3", 1))
    d, sd = fake_connection(svc, peer=("10.0.0.4", 1))
    c.data_received(ranged)
    d.data_received(ranged)
    assert status_of(sc) == [503] and status_of(sd) == [503]
    assert x_queue(sc) == dict(position=1, length=1, limit=2, pollMin=5, pollMax=60)
    assert x_queue(sd) == dict(position=2, length=2, limit=2, pollMin=5, pollMax=60)
    assert parse_replies(bytes(sc.received))[-1].header("Retry-After") == "5"
    assert not sc.closed and not sd.closed  # kept open for polling
    e, se = fake_connection(svc, peer=("10.0.0.5", 1))
    e.data_received(ranged)
    assert status_of(se) == [503] and x_queue(se) is None
    assert parse_replies(bytes(se.received))[-1].header("Retry-After") == "99"
    assert se.closed
    rows = svc.uploads()
    assert sorted(r.position for r in rows if r.status == "queued") == [1, 2]

    rt.run(6.0)
    a.connection_lost(None)  # a slot frees
    assert svc.active == 1
    d.data_received(ranged)  # D may not jump the queue
    assert status_of(sd)[-1] == 503 and x_queue(sd)["position"] == 2  # type: ignore[index]
    c.data_received(ranged)  # C, first in line, is served
    assert status_of(sc)[-1] == 206
    assert parse_replies(bytes(sc.received))[-1].body == shares.contents["big.bin"][:10]
    d.data_received(ranged)
    assert x_queue(sd)["position"] == 1  # type: ignore[index]
    b.connection_lost(None)
    d.data_received(ranged)
    assert status_of(sd)[-1] == 206
    assert svc.queued == 0 and svc.active == 2


def test_a_queued_peer_that_stops_polling_loses_its_place(shares: Shares) -> None:
    rt, svc = make(shares, slots=1, queue_limit=5, poll_min=5, poll_max=20, slot_linger=1000.0)
    ranged = get(n2r(shares.file("big.bin")), "Range: bytes=0-9")
    a, _ = fake_connection(svc, peer=("10.0.0.1", 1))
    a.data_received(ranged)
    c, sc = fake_connection(svc, peer=("10.0.0.3", 1))
    d, sd = fake_connection(svc, peer=("10.0.0.4", 1))
    c.data_received(ranged)
    d.data_received(ranged)
    rt.run(15.0)
    d.data_received(ranged)
    assert x_queue(sd)["position"] == 2  # type: ignore[index]
    rt.run(21.0)  # C last polled at 0: past pollMax
    assert sc.closed
    d.data_received(ranged)
    assert x_queue(sd)["position"] == 1  # type: ignore[index]
    assert rt.observer.named("upload.queue_expired")
    c2, sc2 = fake_connection(svc, peer=("10.0.0.3", 2))
    c2.data_received(ranged)
    assert x_queue(sc2)["position"] == 2  # type: ignore[index]


def test_a_queued_peer_reconnecting_keeps_its_place(shares: Shares) -> None:
    rt, svc = make(shares, slots=1, queue_limit=5, poll_min=5, poll_max=60, slot_linger=1000.0)
    f = shares.file("big.bin")
    ranged = get(n2r(f), "Range: bytes=0-9")
    a, _ = fake_connection(svc, peer=("10.0.0.1", 1))
    a.data_received(ranged)
    c, _ = fake_connection(svc, peer=("10.0.0.3", 1))
    d, _ = fake_connection(svc, peer=("10.0.0.4", 1))
    c.data_received(ranged)
    d.data_received(ranged)
    c.connection_lost(None)
    rt.run(10.0)
    c2, sc2 = fake_connection(svc, peer=("10.0.0.3", 2))
    c2.data_received(ranged)
    assert x_queue(sc2)["position"] == 1  # type: ignore[index]
    # Another file from the same host is a different queue entry.
    c3, sc3 = fake_connection(svc, peer=("10.0.0.3", 3))
    c3.data_received(get(n2r(shares.file("small.txt"))))
    assert x_queue(sc3)["position"] == 3  # type: ignore[index]


def test_head_and_chunk_lists_need_no_slot(shares: Shares) -> None:
    rt, svc = make(shares, slots=1, slot_linger=1000.0)
    f = shares.file("big.bin")
    a, _ = fake_connection(svc, peer=("10.0.0.1", 1))
    a.data_received(get(n2r(f), "Range: bytes=0-9"))
    b, sb = fake_connection(svc, peer=("10.0.0.2", 1))
    b.data_received(get(n2r(f), method="HEAD") + get(f"/uri-res/N2CH?{f.urn}"))
    assert [r.status for r in parse_replies(bytes(sb.received), ["HEAD", "GET"])] == [200, 200]
    assert svc.queued == 0


def test_a_slot_lingers_for_the_next_range_then_is_released(shares: Shares) -> None:
    rt, svc = make(shares, slots=1, slot_linger=5.0)
    f = shares.file("big.bin")
    a, sa = fake_connection(svc)
    for i in range(3):
        a.data_received(get(n2r(f), f"Range: bytes={i * 10}-{i * 10 + 9}"))
        rt.run(rt.now() + 4.0)
        assert svc.active == 1
    assert [r.body for r in parse_replies(bytes(sa.received))] == [
        shares.contents["big.bin"][i * 10 : i * 10 + 10] for i in range(3)
    ]
    rt.run(rt.now() + 2.0)
    assert svc.active == 0
    [row] = svc.uploads()
    assert (row.status, row.sent, row.length) == ("complete", 30, 30)


def test_too_many_connections_get_503(shares: Shares) -> None:
    rt, svc = make(shares, max_connections=2)
    streams = [fake_connection(svc, peer=("10.0.0.1", i))[1] for i in range(3)]
    assert not streams[0].closed and not streams[1].closed
    assert streams[2].closed and bytes(streams[2].received).startswith(b"HTTP/1.1 503 ")


# --------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("value", "size", "expect"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("BYTES = 1-2", 10, (1, 2)),
        ("bytes=1-2,4-5", 10, None),
        ("bytes=5-1", 10, None),
        ("lines=1-2", 10, None),
        ("bytes=١-٢", 10, None),
        ("bytes=" + "9" * 30 + "-", 10, None),
    ],
)
def test_parse_range(value: str | None, size: int, expect: tuple[int, int] | None) -> None:
    assert parse_range(value, size) == expect


@pytest.mark.parametrize(("value", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_parse_range_unsatisfiable(value: str, size: int) -> None:
    with pytest.raises(srv._Refusal) as info:
        parse_range(value, size)
    assert info.value.status == 416


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.from_regex(r"\Abytes=[0-9 ,-]{0,20}\Z"), st.integers(0, 10**6))
def test_parse_range_never_escapes_the_file(value: str, size: int) -> None:
    try:
        got = parse_range(value, size)
    except srv._Refusal as refusal:
        assert refusal.status == 416
        return
    if got is not None:
        first, last = got
        assert 0 <= first <= last < size


_SEGMENT = st.sampled_from(
    ["..", ".", "%2e%2e", "%2E.", "a", "b.mp3", "%2f", "%5c", "\\", "%00", "", "get", "1", "%C3%A9"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_SEGMENT, max_size=8), st.text(max_size=20))
def test_check_target_lets_no_traversal_through(segments: list[str], query: str) -> None:
    target = "/" + "/".join(segments) + ("?" + query if query else "")
    try:
        path, _ = check_target(target, 2048)
    except srv._Refusal as refusal:
        assert refusal.status in (400, 404)
        return
    from urllib.parse import unquote_to_bytes

    for seg in path.split("/")[1:]:
        decoded = unquote_to_bytes(seg)
        assert decoded not in (b".", b"..")
        assert b"/" not in decoded and b"\\" not in decoded and b"\x00" not in decoded


# The shares are only read; every example builds its own runtime and service.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600), st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"HEAD /get/1/"]))
def test_garbage_never_escapes_a_handler(shares: Shares, data: bytes, prefix: bytes) -> None:
    rt, svc = make(shares)
    h, s = fake_connection(svc)
    h.data_received(prefix + data)
    h.eof_received()
    rt.run(rt.now() + 1)
    h.connection_lost(None)
    assert rt.observer.named("upload.handler_error") == []
    for reply in parse_replies(bytes(s.received)):
        assert reply.status in (200, 206, 400, 404, 405, 416, 431, 501, 503, 505)
