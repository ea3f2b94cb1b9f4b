"""Per-torrent and global rate limits, and seeding until a ratio or a time
goal (issue 6, item 6), in the simulator: virtual seconds, so the byte
counts over a span are exact behaviour, not timings."""

from __future__ import annotations

from swarmkit import content, session, single_file

from peerlab.overlays.bittorrent import Torrent, TorrentState
from peerlab.runtime.worlds import SimWorld

KIB = 1024
#: Link speed of every simulated host: far above the limits under test.
LINK = 2_000_000.0
#: One pipeline of 16 KiB blocks may be in flight when a limit bites, and a
#: bucket holds 64 KiB of burst: the slack allowed over limit x time.
SLACK = 64 * KIB + 64 * 16 * KIB


def _pair(seed: int, size: int, **seed_cfg: float) -> tuple[SimWorld, Torrent, Torrent, bytes]:
    world = SimWorld(seed, up=LINK, down=LINK, latency=0.01)
    data = content(size, b"limits")
    info = single_file(data, 16 * KIB)
    seeder, _, _ = session(world, "seed", storage="memory", **seed_cfg)
    st = seeder.add_torrent(info, data=data, seed_mode=True)
    leecher, _, _ = session(world, "leech", storage="memory")
    lt = leecher.add_torrent(info, peers=[seeder.listen_address])  # type: ignore[list-item]
    return world, st, lt, data


def test_unlimited_is_fast_per_torrent_upload_limit_holds() -> None:
    world, st, lt, data = _pair(41, 2048 * KIB)
    assert world.run_until(lambda: lt.complete, 60)
    fast = world.sim.now

    world, st, lt, data = _pair(41, 2048 * KIB)
    limit = 100 * KIB
    st.set_rate_limits(up=limit)
    t0 = world.sim.now
    world.run_for(10.0)
    sent = st.uploaded
    assert 0 < sent <= limit * (world.sim.now - t0) + SLACK
    assert sent >= limit * 5  # it does flow, near the limit
    assert not lt.complete
    assert st.counters["upload_throttled"] > 0
    # lifting the limit lets it finish
    st.set_rate_limits(up=0)
    assert world.run_until(lambda: lt.complete, 60)
    assert fast < 10.0
    assert lt.store.storage.read(0, len(data)) == data


def test_per_torrent_download_limit_holds() -> None:
    world, st, lt, data = _pair(42, 2048 * KIB)
    limit = 80 * KIB
    lt.set_rate_limits(down=limit)
    world.run_for(10.0)
    got = lt.downloaded
    assert limit * 5 <= got <= limit * world.sim.now + SLACK
    lt.set_rate_limits(down=0)
    assert world.run_until(lambda: lt.complete, 60)
    assert lt.store.storage.read(0, len(data)) == data


def test_global_upload_limit_spans_torrents() -> None:
    world = SimWorld(43, up=LINK, down=LINK, latency=0.01)
    limit = 100 * KIB
    seeder, _, _ = session(world, "seed", storage="memory", upload_rate=float(limit))
    leeches = []
    for i in range(2):
        data = content(1024 * KIB, bytes([i]))
        info = single_file(data, 16 * KIB, f"f{i}.bin")
        seeder.add_torrent(info, data=data, seed_mode=True)
        s, _, _ = session(world, f"leech{i}", storage="memory")
        leeches.append(s.add_torrent(info, peers=[seeder.listen_address]))  # type: ignore[list-item]
    world.run_for(10.0)
    total = sum(t.uploaded for t in seeder.torrents)
    assert limit * 5 <= total <= limit * world.sim.now + 2 * SLACK
    # Both torrents got a fair share: the global limit goes round them (the
    # one whose wake-up fired first used to take all of it).
    shares = sorted(t.uploaded for t in seeder.torrents)
    assert shares[0] >= 0.6 * shares[1], shares
    assert all(t.downloaded > 0 for t in leeches)


def test_seed_stops_at_its_ratio_goal() -> None:
    world, st, lt, data = _pair(44, 512 * KIB)
    st.set_goals(seed_ratio=1.0)
    assert world.run_until(lambda: st.state is TorrentState.STOPPED, 60)
    assert st.goal_reached == "ratio"
    assert st.total_uploaded >= len(data)
    assert st.status().goal_reached == "ratio"
    assert lt.complete


def test_ratio_counts_earlier_runs_and_time_goal_stops() -> None:
    world, st, lt, data = _pair(45, 256 * KIB)
    # an earlier run already uploaded 3x: ratio 3 reached at once
    st.carry_over(uploaded=3 * len(data), downloaded=0, seeding_seconds=0.0)
    st.set_goals(seed_ratio=3.0)
    assert world.run_until(lambda: st.state is TorrentState.STOPPED, 5)
    assert st.goal_reached == "ratio"

    world, st, lt, data = _pair(46, 256 * KIB)
    assert world.run_until(lambda: lt.complete, 60)
    lt.set_goals(seed_time=20.0)
    t0 = world.sim.now
    assert world.run_until(lambda: lt.state is TorrentState.STOPPED, 60)
    assert lt.goal_reached == "time"
    assert lt.seeding_seconds() >= 20.0
    assert world.sim.now - t0 <= 20.0 + 2.0  # the tick notices within a second or two


def test_a_limited_upload_is_shared_fairly_among_the_peers_waiting_for_it() -> None:
    # Four leechers of one seed whose upload is limited: all four hold
    # unchoke slots and keep requests queued, so each should get about a
    # quarter of the limit, as libtorrent's bandwidth manager hands its
    # quota round the peers waiting for it -- not the first peer connected
    # everything while the others wait.
    world = SimWorld(44, up=LINK, down=LINK, latency=0.01)
    data = content(4096 * KIB, b"fair")
    info = single_file(data, 16 * KIB)
    limit = 200 * KIB
    seeder, _, _ = session(world, "seed", storage="memory")
    st = seeder.add_torrent(info, data=data, seed_mode=True)
    st.set_rate_limits(up=limit)
    for i in range(4):
        s, _, _ = session(world, f"leech{i}", storage="memory", upload_rate=1.0)
        s.add_torrent(info, peers=[seeder.listen_address])  # type: ignore[list-item]
    world.run_for(20.0)
    sent = sorted(link.up.total for link in st.links)
    assert len(sent) == 4 and sum(sent) >= limit * 10
    assert sent[0] >= 0.6 * sent[-1], sent
