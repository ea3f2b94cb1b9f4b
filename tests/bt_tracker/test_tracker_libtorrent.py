"""Interop: libtorrent (the engine under qBittorrent and Deluge) announces to
and scrapes our tracker, over HTTP and over UDP, and a libtorrent seeder and
leecher find each other through it and complete the transfer.

Everything on 127.0.0.1: each session listens on 127.0.0.1:0 with uTP, DHT,
LSD, UPnP and NAT-PMP off, so the tracker is the only way the two can meet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmkit import LT_SETTINGS, written

from peerlab.overlays.tracker.server import Tracker, TrackerConfig
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import RealWorld

lt = pytest.importorskip("libtorrent")

#: Seconds any one step may take (announce, transfer, scrape); loopback
#: needs well under one.
STEP_S = 30.0
PAYLOAD_BYTES = 3 * 262_144 + 12_345  # four pieces, the last one short
PIECE_BYTES = 262_144


def lt_session() -> Any:
    """libtorrent on loopback (swarmkit's settings) reporting tracker,
    error and status alerts."""
    return lt.session(
        {
            **LT_SETTINGS,
            "alert_mask": lt.alert.category_t.tracker_notification
            | lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification,
        }
    )


def make_torrent(folder: Path, url: str) -> tuple[Any, bytes, bytes]:
    """A v1 torrent of one random file, announcing to ``url``; (info, hash, data)."""
    data = os.urandom(PAYLOAD_BYTES)
    (folder / "payload.bin").write_bytes(data)
    ct = lt.create_torrent(
        lt.list_files(str(folder / "payload.bin")), PIECE_BYTES, lt.create_torrent.v1_only
    )
    ct.add_tracker(url)
    lt.set_piece_hashes(ct, str(folder))
    ti = lt.torrent_info(lt.bencode(ct.generate()))
    return ti, bytes.fromhex(str(ti.info_hashes().v1)), data


def add(session: Any, ti: Any, save_path: Path) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(ti)
    atp.save_path = str(save_path)
    return session.add_torrent(atp)


class Alerts:
    """Every alert of some sessions, copied out as it is popped (a libtorrent
    alert object dies at the next ``pop_alerts``)."""

    def __init__(self, *sessions: Any) -> None:
        self.sessions = sessions
        self.seen: list[tuple[str, str, dict[str, int]]] = []

    def poll(self) -> None:
        for s in self.sessions:
            for a in s.pop_alerts():
                kind = type(a).__name__
                fields = {}
                if kind == "scrape_reply_alert":
                    fields = {"complete": a.complete, "incomplete": a.incomplete}
                self.seen.append((kind, a.message(), fields))

    def of(self, kind: str) -> list[dict[str, int]]:
        return [f for k, _, f in self.seen if k == kind]

    def errors(self) -> list[str]:
        bad = ("tracker_error_alert", "scrape_failed_alert", "tracker_warning_alert")
        return [m for k, m, _ in self.seen if k in bad]


@pytest.fixture
def world() -> Iterator[RealWorld]:
    w = RealWorld()
    yield w
    w.close()


#: libtorrent keeps BEP 15 connection ids process-wide per tracker address, and
#: every test's tracker answers at 127.0.0.1: they share one key, as trackers
#: behind one address must (tests/bt_swarm uses the same value).
SHARED_SECRET = b"peerlab tests: trackers at 127.0.0.1 share this key"[:32]


@pytest.mark.parametrize("scheme", ["http", "udp"])
def test_libtorrent_swarm_meets_through_our_tracker(
    scheme: str, world: RealWorld, tmp_path: Path
) -> None:
    obs = RecordingObserver()
    rt = world.new_runtime("tracker", observer=obs)
    tracker = Tracker(
        rt, TrackerConfig(host="127.0.0.1", interval=60, connection_secret=SHARED_SECRET)
    )
    tracker.start()
    url = tracker.announce_url if scheme == "http" else tracker.udp_url
    assert url is not None
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    ti, info_hash, data = make_torrent(seed_dir, url)

    seeder, leecher = lt_session(), lt_session()
    alerts = Alerts(seeder, leecher)

    def table_ports() -> set[tuple[int, bool]]:
        info = tracker.swarm(info_hash)
        return {(p.port, p.seeder) for p in info.peers} if info is not None else set()

    def until(pred: Any) -> bool:
        def check() -> bool:
            alerts.poll()
            return bool(pred())

        return world.run_until(check, STEP_S)

    try:
        h_seed = add(seeder, ti, seed_dir)
        assert until(lambda: table_ports() == {(seeder.listen_port(), True)}), (
            alerts.errors(), dict(obs.counters))

        h_leech = add(leecher, ti, leech_dir)
        assert until(lambda: h_leech.status().is_seeding), alerts.errors()
        # libtorrent counts a piece once its hash checks, which can be before
        # its disk thread has written it: compare the file until it matches.
        assert until(written(leech_dir / "payload.bin", data)), "file differs"

        # The leecher announced completed: both are seeders in the table now.
        both = {(seeder.listen_port(), True), (leecher.listen_port(), True)}
        assert until(lambda: table_ports() == both), (table_ports(), alerts.errors())
        info = tracker.swarm(info_hash)
        assert info is not None and info.downloaded == 1
        assert all(p.peer_id.startswith(b"-LT") and p.ip == "127.0.0.1" for p in info.peers)
        leech_row = next(p for p in info.peers if p.port == leecher.listen_port())
        assert leech_row.downloaded >= PAYLOAD_BYTES

        # libtorrent's scrape reads our figures (BEP 48 over HTTP, BEP 15 over UDP).
        h_leech.scrape_tracker()
        assert until(lambda: alerts.of("scrape_reply_alert")), alerts.errors()
        assert alerts.of("scrape_reply_alert")[-1] == {"complete": 2, "incomplete": 0}

        # Removing a torrent announces stopped: the peer leaves the table.
        leecher.remove_torrent(h_leech)
        assert until(lambda: table_ports() == {(seeder.listen_port(), True)}), alerts.errors()
        seeder.remove_torrent(h_seed)
        assert until(lambda: tracker.swarm(info_hash) is None), alerts.errors()
    finally:
        seeder.pause()
        leecher.pause()
        tracker.close()

    assert alerts.errors() == []
    counters = obs.counters
    assert counters[f"tracker.announces_{scheme}"] >= 5  # 2 started, completed, 2 stopped
    events = sorted(f["event"] for f in obs.named("tracker.peer_event"))
    assert events == ["completed", "started", "started", "stopped", "stopped"]
    if scheme == "udp":
        # libtorrent may reuse a connection id that an earlier test's tracker
        # minted (same address, shared key): a connect is not certain here,
        # but every id it used must have been one we accept.
        assert counters["tracker.udp_scrapes"] >= 1
        assert counters["tracker.udp_bad_connection_id"] == 0
    else:
        assert counters["tracker.scrapes"] >= 1
