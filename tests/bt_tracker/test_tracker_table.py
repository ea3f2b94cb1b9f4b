"""The swarm table on its own, time passed in: who is listed, who is handed
out, expiry, bounds, the allow-list, and snapshots across a restart."""

from __future__ import annotations

import random

import pytest
from trackerkit import IH, IH2, peer_id, req

from peerlab.errors import ConfigError
from peerlab.overlays.tracker.server import EXPIRY_FACTOR, SwarmTable, TrackerConfig
from peerlab.wire.tracker import AnnounceEvent, AnnounceResponse, Peer, TrackerFailure

SRC = "192.0.2.1"


def table(**cfg: object) -> tuple[SwarmTable, random.Random]:
    return SwarmTable(TrackerConfig(**cfg)), random.Random(7)  # type: ignore[arg-type]


def announce(t: SwarmTable, rng: random.Random, r: object, now: float = 0.0,
             src: str = SRC) -> AnnounceResponse:  # fmt: skip
    out = t.announce(r, src, now, rng.sample)  # type: ignore[arg-type]
    assert isinstance(out, AnnounceResponse), out
    return out


def ports(resp: AnnounceResponse) -> set[int]:
    return {p.port for p in resp.peers}


def test_leechers_get_everyone_but_themselves_seeders_only_leechers() -> None:
    t, rng = table()
    for n in range(1, 4):
        announce(t, rng, req(n, left=0))  # seeders 7001-7003
    for n in range(4, 7):
        announce(t, rng, req(n, left=5))  # leechers 7004-7006
    leech = announce(t, rng, req(4, left=5, event=AnnounceEvent.NONE))
    assert ports(leech) == {7001, 7002, 7003, 7005, 7006}
    assert (leech.complete, leech.incomplete, leech.interval) == (3, 3, 1800)
    seed = announce(t, rng, req(1, left=0, event=AnnounceEvent.NONE))
    assert ports(seed) == {7004, 7005, 7006}
    assert all(p.peer_id == peer_id(p.port - 7000) for p in seed.peers)


def test_numwant_default_and_cap() -> None:
    t, rng = table(default_numwant=3, max_numwant=5)
    for n in range(20):
        announce(t, rng, req(n))
    assert len(announce(t, rng, req(0, event=AnnounceEvent.NONE)).peers) == 3
    assert len(announce(t, rng, req(0, numwant=4)).peers) == 4
    assert len(announce(t, rng, req(0, numwant=500)).peers) == 5
    assert announce(t, rng, req(0, numwant=0)).peers == ()
    # numwant larger than the swarm: everyone else, each once.
    big, rng2 = table(max_numwant=200)
    for n in range(10):
        announce(big, rng2, req(n))
    got = announce(big, rng2, req(0, numwant=200)).peers
    assert sorted(p.port for p in got) == list(range(7001, 7010))


def test_random_choice_covers_the_swarm() -> None:
    t, rng = table(default_numwant=5)
    for n in range(50):
        announce(t, rng, req(n))
    seen: set[int] = set()
    for _ in range(60):
        seen |= ports(announce(t, rng, req(0, event=AnnounceEvent.NONE)))
    assert seen == set(range(7001, 7050))  # not always the same five


def test_expiry_after_the_named_multiple_of_the_interval() -> None:
    t, rng = table(interval=100)
    assert EXPIRY_FACTOR == 2.0 and t.config.expiry == 200.0
    announce(t, rng, req(1), now=0.0)
    announce(t, rng, req(2), now=150.0)
    r = announce(t, rng, req(3), now=199.0)
    assert ports(r) == {7001, 7002}
    r = announce(t, rng, req(3, event=AnnounceEvent.NONE), now=201.0)
    assert ports(r) == {7002}  # peer 1 is 201 s silent: gone
    assert t.expired == 1
    assert t.sweep(351.0) == 1  # peer 2 went at 350
    assert t.info(IH, 351.0) is not None
    assert t.sweep(500.0) == 1 and t.info(IH, 500.0) is None  # empty swarms are forgotten


def test_re_announce_keeps_a_peer_alive() -> None:
    t, rng = table(interval=100)
    for now in (0.0, 150.0, 300.0, 450.0):
        announce(t, rng, req(1, event=AnnounceEvent.NONE), now=now)
    announce(t, rng, req(2), now=450.0)
    assert t.sweep(600.0) == 0


def test_stopped_removes_completed_counts_once() -> None:
    t, rng = table()
    announce(t, rng, req(1, left=10))
    announce(t, rng, req(2, left=10))
    r = announce(t, rng, req(1, left=0, event=AnnounceEvent.COMPLETED))
    assert (r.complete, r.incomplete) == (1, 1)
    announce(t, rng, req(1, left=0, event=AnnounceEvent.COMPLETED))  # a repeat
    info = t.info(IH, 0.0)
    assert info is not None and (info.seeders, info.leechers, info.downloaded) == (1, 1, 1)
    gone = announce(t, rng, req(2, event=AnnounceEvent.STOPPED))
    assert gone.peers == () and (gone.complete, gone.incomplete) == (1, 0)
    announce(t, rng, req(3, left=0, event=AnnounceEvent.COMPLETED))
    info = t.info(IH, 0.0)
    assert info is not None and (info.seeders, info.leechers, info.downloaded) == (2, 0, 2)
    assert [p.port for p in info.peers] == [7001, 7003]


def test_stopped_of_unknown_peer_is_harmless() -> None:
    t, rng = table()
    r = announce(t, rng, req(9, event=AnnounceEvent.STOPPED))
    assert r.peers == () and len(t) == 0


def test_leecher_becomes_seeder_without_completed() -> None:
    t, rng = table()
    announce(t, rng, req(1, left=10))
    announce(t, rng, req(2, left=10))
    r = announce(t, rng, req(1, left=0, event=AnnounceEvent.NONE))
    assert (r.complete, r.incomplete) == (1, 1)
    info = t.info(IH, 0.0)
    assert info is not None and info.downloaded == 0


def test_bounded_swarms_and_peers() -> None:
    t, rng = table(max_swarms=2, max_peers_per_swarm=3)
    announce(t, rng, req(1, info_hash=IH))
    announce(t, rng, req(1, info_hash=IH2))
    refused = t.announce(req(1, info_hash=b"c" * 20), SRC, 0.0, rng.sample)
    assert isinstance(refused, TrackerFailure) and "full" in refused.reason
    assert t.table_full == 1 and len(t) == 2
    for n in (2, 3):
        announce(t, rng, req(n))
    extra = announce(t, rng, req(4))  # not listed, but served
    assert ports(extra) == {7001, 7002, 7003}
    info = t.info(IH, 0.0)
    assert info is not None and len(info.peers) == 3 and t.swarm_full == 1


def test_allow_list() -> None:
    t, rng = table(allowed=frozenset({IH}))
    announce(t, rng, req(1))
    refused = t.announce(req(1, info_hash=IH2), SRC, 0.0, rng.sample)
    assert refused == TrackerFailure("unregistered torrent")
    assert [h for h, _ in t.scrape([IH, IH2], 0.0)] == [IH]
    with pytest.raises(ConfigError):
        TrackerConfig(allowed=frozenset({b"short"}))


def test_peer_id_cannot_be_moved_without_its_key() -> None:
    t, rng = table()
    announce(t, rng, req(1, key="k1"), src="192.0.2.1")
    hijack = t.announce(req(1, key="other"), "198.51.100.9", 0.0, rng.sample)
    assert isinstance(hijack, TrackerFailure)
    stop = t.announce(req(1, event=AnnounceEvent.STOPPED), "198.51.100.9", 0.0, rng.sample)
    assert isinstance(stop, TrackerFailure)
    announce(t, rng, req(1, key="k1", event=AnnounceEvent.NONE), src="198.51.100.9")
    info = t.info(IH, 0.0)
    assert info is not None and [(p.ip, p.port) for p in info.peers] == [("198.51.100.9", 7001)]


def test_new_peer_id_on_a_listed_address_replaces_the_old_entry() -> None:
    t, rng = table()
    announce(t, rng, req(1, port=6881))
    announce(t, rng, req(2, port=6881))  # the client restarted with a new id
    info = t.info(IH, 0.0)
    assert info is not None and [p.peer_id for p in info.peers] == [peer_id(2)]


def test_ip_parameter_only_when_accepted() -> None:
    t, rng = table()
    announce(t, rng, req(1, ip="203.0.113.5"), src="192.0.2.1")
    t2, rng2 = table(accept_ip=True)
    announce(t2, rng2, req(1, ip="203.0.113.5"), src="192.0.2.1")
    a, b = t.info(IH, 0.0), t2.info(IH, 0.0)
    assert a is not None and b is not None
    assert a.peers[0].ip == "192.0.2.1" and b.peers[0].ip == "203.0.113.5"


def test_ipv6_peers_are_listed_and_handed_out() -> None:
    t, rng = table()
    announce(t, rng, req(1), src="2001:db8::7")
    r = announce(t, rng, req(2), src=SRC)
    assert r.peers == (Peer("2001:db8::7", 7001, peer_id(1)),)


def test_snapshot_and_restore_keep_ages_and_drop_the_expired() -> None:
    t, rng = table(interval=100)
    announce(t, rng, req(1, left=0, key="kk"), now=1000.0)
    announce(t, rng, req(2, left=0, event=AnnounceEvent.COMPLETED), now=1150.0)
    announce(t, rng, req(3), now=1190.0)
    snap = t.snapshot(now=1200.0, wall=50_000.0, generation=4)
    assert snap.generation == 4 and snap.saved_at == 50_000.0
    # The new process starts 30 wall seconds later with its own monotonic clock.
    fresh, _ = table(interval=100)
    assert fresh.restore(snap, now=7.0, wall=50_030.0) == 2  # peer 1 is 230 s old
    info = fresh.info(IH, 7.0)
    assert info is not None and info.downloaded == 1
    assert [(p.port, round(p.age)) for p in info.peers] == [(7002, 80), (7003, 40)]
    assert fresh.sweep(7.0 + 121.0) == 1  # peer 2 expires at 200 s of silence


def test_ipv4_mapped_sources_are_listed_as_ipv4() -> None:
    from peerlab.overlays.tracker.server import _peer_ip

    assert _peer_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert _peer_ip("2001:db8::1") == "2001:db8::1"
    assert _peer_ip("192.0.2.1") == "192.0.2.1"
