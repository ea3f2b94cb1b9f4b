"""Smoke test of the Napster load generator against a tiny real server.

A ``peerlab napster-server`` on SQLite in a temporary folder, one load
generator process with a few users: every user logs in and shares, and
searches come back with results.  Everything on 127.0.0.1, every process
stopped by its pid at the end.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import bench_napster as bn

USERS = 12
FILES = 20


def test_load_generator_logs_in_shares_and_searches(tmp_path: Path) -> None:
    with ExitStack() as stack:
        # The cheapest scrypt cost: this test is about the load generator.
        server = bn._start_server(f"sqlite:{tmp_path / 'index.db'}", tmp_path / "server.log", 1)
        stack.callback(bn._stop, server.proc)
        load = bn.Load([server.port], 0, USERS, files=FILES, songs=300)
        stack.callback(load.close)

        (login,), _ = bn._phase([load], {"cmd": "login"})
        assert login["ok"] == USERS, login
        assert login["failed"] == 0 and login["errors"] == []

        (prepared,), _ = bn._phase([load], {"cmd": "prepare"})
        assert prepared["files"] == USERS * FILES
        (share,), _ = bn._phase([load], {"cmd": "share"})
        assert share["users"] == USERS and share["files"] == USERS * FILES, share
        assert share["errors"] == []
        stats = bn._settled_stats(load, 1, USERS * FILES)
        ((_, text),) = stats.items()
        # 214: <users> <files> <gigabytes>
        assert text.split()[1:3] == [str(USERS), str(USERS * FILES)]

        (closed,), _ = bn._phase(
            [load], {"cmd": "search", "mode": "closed", "concurrency": 4, "seconds": 5,
                     "count": 60},
        )
        assert closed["sent"] == 60 and closed["done"] == 60, closed
        assert closed["failed"] == 0 and closed["unanswered"] == 0
        assert closed["results"] > 0
        assert len(closed["latencies_ms"]) == 60

        (opened,), _ = bn._phase(
            [load], {"cmd": "search", "mode": "open", "rate": 40, "seconds": 1},
        )
        assert opened["done"] == opened["sent"] > 0, opened
        assert opened["failed"] == 0 and opened["starved"] == 0
        assert opened["results"] > 0
    assert server.proc.poll() is not None and load.proc.poll() is not None
