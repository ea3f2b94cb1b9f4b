"""Header parsers and the rate meter of peerlab.overlays.transfer.download."""

from __future__ import annotations

import pytest

from peerlab.errors import RemoteProtocolError
from peerlab.overlays.transfer.download import (
    RateMeter,
    parse_content_range,
    parse_retry_after,
    parse_x_queue,
)


def test_content_range() -> None:
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range(" bytes 5-5/*") == (5, 5, None)
    for bad in ["bytes 9-1/10", "bytes 0-10/10", "0-1/2", "bytes -1-2/3", "bytes 1-2/x", ""]:
        with pytest.raises(RemoteProtocolError):
            parse_content_range(bad)


def test_retry_after_and_x_queue() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None
    assert parse_x_queue("position=3,length=9, limit=4,pollMin=10,pollMax=60") == {
        "position": 3, "length": 9, "limit": 4, "pollmin": 10, "pollmax": 60,
    }
    assert parse_x_queue("position=x,junk,=5") == {}
    assert parse_x_queue("position=" + "9" * 40) == {}  # bounded digits


def test_rate_meter_sliding_window() -> None:
    m = RateMeter(window=2.0)
    assert m.rate(0.0) == 0.0
    for i in range(40):  # 100 kB every 0.1 s for 4 s: 1 MB/s
        m.add(100_000, i * 0.1)
    assert 0.9e6 <= m.rate(4.0) <= 1.1e6
    assert m.rate(10.0) == 0.0  # nothing in the last window
    assert m.total == 4_000_000
