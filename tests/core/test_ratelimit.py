"""The token bucket holds the long-run rate exactly, whatever the write sizes."""

from __future__ import annotations

from peerlab.overlays.transfer.ratelimit import TokenBucket


def drain(bucket: TokenBucket, total: int, piece: int) -> float:
    """Send ``total`` bytes in ``piece``-sized writes, waiting as told; return the end time."""
    now = 0.0
    sent = 0
    while sent < total:
        now += bucket.delay(piece, now)
        bucket.consume(piece, now)
        sent += piece
    return now


def test_long_run_rate_is_the_configured_rate() -> None:
    for piece in (1000, 16_384, 1 << 20):
        bucket = TokenBucket(rate=100_000)
        end = drain(bucket, 10_000_000, piece)
        # 10 MB at 100 kB/s is 100 s, less the initial burst credit and one write.
        assert 100 - (bucket.burst + piece) / 100_000 - 1e-9 <= end <= 100.0


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(rate=0)
    assert drain(bucket, 10_000_000, 1 << 20) == 0.0


def test_idle_credit_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=1000, burst=2000)
    bucket.consume(2000, 0.0)
    # an hour idle earns at most `burst` bytes of credit, not 3.6 MB
    bucket.consume(3000, 3600.0)
    assert bucket.delay(1, 3600.0) == 1.0
    assert bucket.delay(1, 3601.5) == 0.0


def test_rate_change_keeps_accounting() -> None:
    bucket = TokenBucket(rate=1000, burst=1000)
    bucket.consume(3000, 0.0)  # 2000 bytes in debt
    assert bucket.delay(1, 0.0) == 2.0
    bucket.set_rate(2000, 0.0)
    assert bucket.delay(1, 0.0) == 1.0


def test_waiting_as_told_always_makes_progress() -> None:
    """Float rounding must never ask for a wait too small to move the clock."""
    bucket = TokenBucket(rate=3_000_000 / 7)
    now = 1e6  # a large clock value, where tiny delays vanish in rounding
    for _ in range(10_000):
        wait = bucket.delay(16_384, now)
        assert wait == 0.0 or now + wait > now
        now += wait
        bucket.consume(16_384, now)
