"""DownloadManager behaviour on the simulator, where time is virtual and runs are
reproducible: the global rate limit, the endgame, pause/resume/cancel, and
blaming a chunk list that does not add up to the file."""

from __future__ import annotations

from pathlib import Path

from dlkit import Behaviour, FakeSource, Served, make_data

from peerlab.overlays.transfer.download import (
    DownloadConfig,
    DownloadInfo,
    DownloadManager,
    Source,
)
from peerlab.runtime.base import RecordingObserver, Runtime
from peerlab.runtime.worlds import SimWorld

MB = 1_000_000
CHUNK = 64 * 1024


class Rig:
    """A simulated downloader and any number of fake sources of one file."""

    def __init__(
        self,
        tmp_path: Path,
        size: int,
        *,
        link: float = 10 * MB,
        chunk: int | None = CHUNK,
        **cfg: object,
    ) -> None:
        self.world = SimWorld(seed=11, up=link, down=link, latency=0.01)
        self.served = Served(make_data(size, seed=size), chunk_size=chunk)
        self.obs = RecordingObserver()
        self.rt: Runtime = self.world.new_runtime("downloader", observer=self.obs)
        self.sources: list[FakeSource] = []
        self.tracker = {"open": 0, "max": 0}
        self.mgr = DownloadManager(
            self.rt,
            incomplete_dir=tmp_path / "inc",
            download_dir=tmp_path / "dl",
            config=DownloadConfig(**cfg),  # type: ignore[arg-type]
        )
        self.changes: list[DownloadInfo] = []
        self.mgr.on_change = self.changes.append
        self.tmp_path = tmp_path

    def source(self, behaviour: Behaviour, served: Served | None = None) -> Source:
        rt = self.world.new_runtime(f"src{len(self.sources)}")
        src = FakeSource(rt, self.world.host(rt), served or self.served, behaviour, self.tracker)
        self.sources.append(src)
        return Source(src.address)

    def add(self, sources: list[Source], **kw: object) -> str:
        s = self.served
        return self.mgr.add(s.urn, name="f.bin", size=len(s.data), sources=sources, **kw).id  # type: ignore[arg-type]

    def info(self) -> DownloadInfo:
        (info,) = self.mgr.downloads()
        return info

    def run(self, timeout: float) -> bool:
        return self.world.run_until(lambda: self.info().status in ("complete", "failed"), timeout)

    def assert_complete(self) -> None:
        info = self.info()
        assert info.status == "complete", info.error
        assert info.path is not None and info.path.read_bytes() == self.served.data


def test_global_rate_limit(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 4 * MB, rate_limit=500_000)
    rig.add([rig.source(Behaviour()), rig.source(Behaviour())])
    start = rig.rt.now()
    assert rig.run(60)
    rig.assert_complete()
    elapsed = rig.rt.now() - start
    # 4 MB at 0.5 MB/s: 8 s, whatever the two 10 MB/s sources could do.
    assert 7.5 <= elapsed <= 9.0, elapsed
    # Raising the limit at run time speeds the next download up.
    rig.mgr.set_rate_limit(0)
    assert rig.mgr.bucket.unlimited


def test_endgame_does_not_wait_for_a_slow_source(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 2 * MB)
    slow = rig.source(Behaviour(rate=5_000))
    fast = rig.source(Behaviour())
    rig.add([slow, fast])
    start = rig.rt.now()
    assert rig.run(120)
    rig.assert_complete()
    # The slow source's first chunk alone would take 13 s at its rate.
    assert rig.rt.now() - start < 3.0
    assert rig.obs.counters["transfer.endgame_requests"] >= 1
    assert rig.obs.counters["transfer.chunks_verified"] == rig.served.chunks.count


def test_rates_and_eta_reported(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 3 * MB, link=1 * MB)
    rig.add([rig.source(Behaviour())])
    rig.world.run_for(1.5)
    info = rig.info()
    assert info.status == "downloading"
    assert 0 < info.done < info.size  # type: ignore[operator]
    assert 0.7 * MB <= info.rate <= 1.05 * MB
    assert info.eta is not None and 1.0 <= info.eta <= 3.0
    (src,) = info.sources
    assert src.status == "downloading" and src.bytes > 0 and src.rate > 0
    assert rig.run(30)
    rig.assert_complete()
    statuses = [c.status for c in rig.changes]
    assert statuses[0] == "downloading" and statuses[-1] == "complete"
    assert "verifying" in statuses


def test_pause_resume_cancel(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 3 * MB, link=1 * MB)
    src = rig.source(Behaviour())
    dl_id = rig.add([src])
    rig.world.run_for(1.0)
    rig.mgr.pause(dl_id)
    done_at_pause = rig.info().done
    fetched = rig.obs.counters["transfer.bytes_fetched"]
    rig.world.run_for(3.0)
    assert rig.info().status == "paused"
    assert rig.obs.counters["transfer.bytes_fetched"] - fetched < 2 * CHUNK  # in flight only
    rig.mgr.resume(dl_id[:6])  # an id prefix is enough
    assert rig.run(30)
    rig.assert_complete()
    assert rig.obs.counters["transfer.bytes_fetched"] <= len(rig.served.data) + 2 * CHUNK
    assert done_at_pause > 0
    rig.mgr.clear_finished()
    assert rig.mgr.downloads() == []

    # Cancel removes the download and its partial.
    rig.add([src])
    rig.world.run_for(0.5)
    rig.mgr.cancel(rig.served.urn)
    assert rig.mgr.downloads() == []
    assert not list((tmp_path / "inc").iterdir())


def test_add_is_idempotent_and_adds_sources(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 2 * MB, link=1 * MB)
    a = rig.source(Behaviour())
    first = rig.mgr.add(rig.served.urn, name="f.bin", size=len(rig.served.data), sources=[a])
    b = rig.source(Behaviour())
    again = rig.mgr.add(rig.served.urn.lower().replace("urn:sha1:", "urn:sha1:"),
                        name="other.bin", size=None, sources=[b])
    assert again is first and len(rig.mgr.downloads()) == 1
    assert {s.address for s in rig.info().sources} == {a.address, b.address}
    assert rig.mgr.get(first.id) is first and rig.mgr.get(rig.served.urn) is first
    assert rig.run(30)
    rig.assert_complete()


def test_lying_chunk_list_is_blamed_on_whole_file_mismatch(tmp_path: Path) -> None:
    """A source serves another file of the same size under our urn, with a chunk
    list that matches its data: every chunk verifies, the SHA-1 does not.  The
    list's provider is banned and the file refetched from the honest source."""
    rig = Rig(tmp_path, 1 * MB, max_whole_file_attempts=3)
    impostor = Served(make_data(1 * MB, seed=99), chunk_size=CHUNK)
    impostor.urn = rig.served.urn
    liar = rig.source(Behaviour(), served=impostor)
    rig.add([liar])  # no chunk root known: the list cannot be checked up front
    rig.world.run_for(5.0)
    honest = rig.source(Behaviour(rate=400_000))
    rig.mgr.add_sources(rig.served.urn, [honest])
    assert rig.run(60)
    rig.assert_complete()
    assert rig.obs.counters["transfer.whole_file_mismatches"] >= 1
    bans = rig.obs.named("transfer.source_banned")
    assert [b["source"] for b in bans] == [f"{liar.address[0]}:{liar.address[1]}"]
    assert "SHA-1" in bans[0]["reason"]


def test_connections_per_download_are_capped(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 4 * MB, link=2 * MB, max_connections_per_download=2)
    rig.add([rig.source(Behaviour(rate=300_000)) for _ in range(5)])
    assert rig.run(60)
    rig.assert_complete()
    assert rig.tracker["max"] == 2
    served = [s.body_bytes for s in rig.sources]
    assert sum(1 for b in served if b) >= 2


def test_late_chunk_list_is_adopted_and_checks_earlier_data(tmp_path: Path) -> None:
    """A foreign source (no chunk list) starts the download unverified; when a
    peerlab source's list arrives, what was fetched is re-verified against it
    and from then on every chunk is checked (a bad one bans its sender)."""
    rig = Rig(tmp_path, 4 * MB, chunk=None)  # the chunk size peerlab uses: 256 KiB
    foreign = rig.source(Behaviour(serve_list=False, rate=400_000, corrupt_chunks={8, 9, 10}))
    peer = rig.source(Behaviour(list_delay=2.0, rate=400_000))
    rig.add([foreign, peer], chunk_root=rig.served.chunks.root)
    assert rig.run(60)
    rig.assert_complete()
    c = rig.obs.counters
    assert c["transfer.chunks_received"] > 0  # fetched before the list was known
    assert c["transfer.chunks_recovered"] > 0  # and re-verified once it was
    assert c["transfer.chunks_failed"] >= 1
    (ban,) = rig.obs.named("transfer.source_banned")
    assert ban["source"] == f"{foreign.address[0]}:{foreign.address[1]}"


def test_unconfirmed_list_does_not_get_honest_sources_banned(tmp_path: Path) -> None:
    """No chunk root known; an impostor's list arrives first.  The honest
    source's chunks disagree with it, so it is set aside, not banned; the
    whole-file SHA-1 then refutes the list, the impostor is banned, and the
    honest source brings the download home."""
    rig = Rig(tmp_path, 1 * MB, chunk=None)
    impostor = Served(make_data(1 * MB, seed=98))
    impostor.urn = rig.served.urn
    liar = rig.source(Behaviour(rate=200_000), served=impostor)
    honest = rig.source(Behaviour(serve_list=False, rate=2 * MB))
    rig.add([liar, honest])
    assert rig.run(60)
    rig.assert_complete()
    bans = rig.obs.named("transfer.source_banned")
    assert [b["source"] for b in bans] == [f"{liar.address[0]}:{liar.address[1]}"]
    assert rig.obs.counters["transfer.whole_file_mismatches"] == 1
    assert rig.obs.counters["transfer.chunks_failed"] >= 1
    (aside,) = rig.obs.named("transfer.source_dropped")
    assert aside["source"] == f"{honest.address[0]}:{honest.address[1]}"
    assert "unconfirmed" in aside["reason"]


def test_load_skips_unreadable_and_orphaned_states(tmp_path: Path) -> None:
    from peerlab.storage.partial import PartialFile, PartialState

    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "GARBAGE.state").write_bytes(b"{not json")
    served = Served(make_data(300_000, seed=4))
    state = PartialState(urn=served.urn, name="gone.bin", size=len(served.data))
    state.set_layout(len(served.data), served.chunks)
    state.have.set(0)  # type: ignore[union-attr]
    orphan = PartialFile(inc, state)
    orphan.save_state()  # a state whose .part is gone (moved away before the crash)
    rig = Rig(tmp_path, 1 * MB)
    assert rig.mgr.load() == []
    assert [e["path"] for e in rig.obs.named("transfer.state_unreadable")] == [
        str(inc / "GARBAGE.state")
    ]
    assert len(rig.obs.named("transfer.state_orphaned")) == 1
    assert not orphan.state_path.exists()
    assert (inc / "GARBAGE.state").exists()  # left for a person to look at
