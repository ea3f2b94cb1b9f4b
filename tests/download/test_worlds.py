"""THE same two-node transfer test body in both worlds (issue 2, section 2).

One node shares a file with the real Catalog and serves it with UploadService;
the other fetches it with DownloadManager.  On real sockets (127.0.0.1) a
small file suffices; in the simulator a 100 MiB file over a 1 MB/s link takes
about 100 virtual seconds (virtual time, so asserting it is not a timing
assert) and far fewer real ones.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from dlkit import make_data

from peerlab.overlays.transfer.download import DownloadConfig, DownloadManager, Source
from peerlab.overlays.transfer.server import UploadConfig, UploadService
from peerlab.runtime.base import RecordingObserver
from peerlab.runtime.worlds import RealWorld, SimWorld, World
from peerlab.storage.catalog import Catalog

MIB = 1 << 20


def two_node_transfer(world: World, tmp_path: Path, size: int, timeout: float) -> float:
    """Share, serve, download, compare; returns the transfer's duration on the
    downloader's clock (virtual in the simulator)."""
    share = tmp_path / "share"
    share.mkdir()
    data = make_data(size, seed=size)
    (share / "big file.bin").write_bytes(data)
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.add_folder(share)
    catalog.scan()
    (shared,) = catalog.files()

    server = world.new_runtime("server")
    obs = RecordingObserver()
    client = world.new_runtime("client", observer=obs)
    service = UploadService(server, catalog, UploadConfig())
    listener = server.listen((world.host(server), 0), service.handler_factory())
    mgr = DownloadManager(
        client,
        incomplete_dir=tmp_path / "incomplete",
        download_dir=tmp_path / "downloads",
        config=DownloadConfig(),
    )
    start = client.now()
    mgr.add(
        shared.urn,
        name=shared.name,
        size=shared.size,
        sources=[Source(listener.address, shared.index, shared.name)],
        chunk_root=shared.chunk_root,
    )
    done = world.run_until(
        lambda: mgr.downloads()[0].status in ("complete", "failed"), timeout=timeout
    )
    elapsed = client.now() - start
    (info,) = mgr.downloads()
    assert done and info.status == "complete", info.error
    assert info.path == tmp_path / "downloads" / "big file.bin"
    got = info.path.read_bytes()
    assert len(got) == size and hashlib.sha1(got).digest() == shared.sha1 and got == data
    assert obs.counters["transfer.bytes_fetched"] == size
    assert obs.counters["transfer.chunks_verified"] == shared.size // shared.chunk_size + (
        1 if shared.size % shared.chunk_size else 0
    )
    assert [e["urn"] for e in obs.named("transfer.complete")] == [shared.urn]
    mgr.close()
    listener.close()
    service.close()
    catalog.close()
    world.close()
    return elapsed


def test_transfer_real_world(tmp_path: Path) -> None:
    two_node_transfer(RealWorld(), tmp_path, 8 * MIB + 12345, timeout=60)


def test_transfer_sim_world_100_mib_at_1_mb_s(tmp_path: Path) -> None:
    size = 100 * MIB
    world = SimWorld(seed=7, up=1_000_000.0, down=1_000_000.0, latency=0.02)
    t0 = time.monotonic()
    virtual = two_node_transfer(world, tmp_path, size, timeout=400)
    real = time.monotonic() - t0
    ideal = size / 1_000_000.0  # 104.9 s at the link's rate
    print(f"virtual {virtual:.2f} s, real {real:.2f} s")
    assert ideal * 0.98 <= virtual <= ideal * 1.15, virtual
    assert real < virtual / 2  # far fewer real seconds than virtual ones


def test_transfer_sim_world_small(tmp_path: Path) -> None:
    """The fast variant of the above for every run: 8 MiB at 1 MB/s."""
    size = 8 * MIB
    world = SimWorld(seed=3, up=1_000_000.0, down=1_000_000.0, latency=0.02)
    virtual = two_node_transfer(world, tmp_path, size, timeout=60)
    ideal = size / 1_000_000.0
    assert ideal * 0.98 <= virtual <= ideal * 1.25, virtual
