"""Catalog hashing throughput (issue 2, Benchmark (a)).

Three figures over the same ~1 GiB of files, page cache warm:

* ``catalog.sha1sum_mb_s``: coreutils ``sha1sum`` over every file;
* ``catalog.hashlib_sha1_mb_s``: one plain ``hashlib.sha1`` pass per file on
  one thread: the ceiling;
* ``catalog.hash_mb_s``: a full :class:`~peerlab.storage.catalog.Catalog`
  scan into a fresh database, i.e. everything the catalog computes per file
  (SHA-1, chunk list, tags, the database and its FTS index).

Each is the best of :data:`RUNS` interleaved rounds; the catalog figure
times ``scan()`` alone (opening the database is not per-file work).  MB is 10**6 bytes.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from peerlab.apps.media import write_mp3  # noqa: E402
from peerlab.storage.catalog import Catalog  # noqa: E402

MIB = 1024 * 1024
#: Rounds; each figure is the best of its rounds.
RUNS = 4
#: The corpus: a few large files, some mid-sized ones, and tagged MP3s.
LARGE = [("large", 3, 256 * MIB)]
MEDIUM = [("medium", 32, 4 * MIB)]
MP3S = 32  # ~4 MB each: 100 s at 320 kbps
MP3_SECONDS = 100.0
WRITE_PIECE = 16 * MIB


def _make_corpus(root: Path) -> list[Path]:
    """Create the files once; reuse them when already there and whole."""
    root.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for prefix, count, size in LARGE + MEDIUM:
        for i in range(count):
            p = root / f"{prefix}_{i:02d}.bin"
            if not p.exists() or p.stat().st_size != size:
                rng = random.Random(f"{prefix}{i}")
                with open(p, "wb") as f:
                    left = size
                    while left:
                        n = min(WRITE_PIECE, left)
                        f.write(rng.randbytes(n))
                        left -= n
            paths.append(p)
    music = root / "music"
    for i in range(MP3S):
        p = music / f"Artist_{i % 5:02d}-Track_{i:02d}.mp3"
        if not p.exists() or p.stat().st_size < 1_000_000:
            write_mp3(
                p,
                title=f"Track {i}",
                artist=f"Artist {i % 5}",
                album=f"Album {i % 3}",
                genre="Electronic",
                seconds=MP3_SECONDS,
                bitrate_kbps=320,
                seed=i,
            )
        paths.append(p)
    return paths


def _warm(paths: list[Path]) -> None:
    buf = bytearray(8 * MIB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def run(bench) -> None:  # type: ignore[no-untyped-def]
    root = bench.workdir / "catalog"
    data = root / "files"
    paths = _make_corpus(data)
    total = sum(p.stat().st_size for p in paths)
    bench.note(f"{len(paths)} files, {total / MIB:.0f} MiB in {data}")
    _warm(paths)

    def sha1sum() -> None:
        out = subprocess.run(
            ["sha1sum", *map(str, paths)], check=True, capture_output=True, text=True
        ).stdout
        assert out.count("\n") == len(paths)

    def plain_sha1() -> None:
        buf = bytearray(4 * MIB)
        view = memoryview(buf)
        for p in paths:
            h = hashlib.sha1()
            with open(p, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
            h.digest()

    scratch = Path(tempfile.mkdtemp(prefix="db-", dir=root))
    runs = [0]
    rescan_s = [0.0]

    def scan() -> float:
        """Seconds for one full scan into a fresh database."""
        runs[0] += 1
        with Catalog(scratch / f"run{runs[0]}.db") as cat:
            cat.add_folder(data)
            t0 = time.perf_counter()
            report = cat.scan()
            elapsed = time.perf_counter() - t0
            assert report.hashed == len(paths) and report.errors == (), report
            t0 = time.perf_counter()
            again = cat.scan()
            rescan_s[0] = time.perf_counter() - t0
            assert again.hashed == 0
        return elapsed

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    # The three are interleaved, round after round, so that a machine busy
    # with something else for a while weighs on all of them alike.
    have_sha1sum = shutil.which("sha1sum") is not None
    if not have_sha1sum:
        bench.note("sha1sum not installed (make deps): no reference figure")
    best = {"sha1sum": float("inf"), "hashlib": float("inf"), "catalog": float("inf")}
    try:
        for _ in range(RUNS):
            if have_sha1sum:
                best["sha1sum"] = min(best["sha1sum"], timed(sha1sum))
            best["hashlib"] = min(best["hashlib"], timed(plain_sha1))
            best["catalog"] = min(best["catalog"], scan())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if have_sha1sum:
        bench.figure("catalog.sha1sum_mb_s", total / best["sha1sum"] / 1e6, "MB/s")
    bench.figure("catalog.hashlib_sha1_mb_s", total / best["hashlib"] / 1e6, "MB/s")
    bench.figure(
        "catalog.hash_mb_s",
        total / best["catalog"] / 1e6,
        "MB/s",
        beside=["catalog.sha1sum_mb_s", "catalog.hashlib_sha1_mb_s"],
    )
    ratio = best["hashlib"] / best["catalog"]
    bench.note(f"catalog scan at {ratio:.0%} of one plain SHA-1 pass's rate")
    bench.note(f"rescan with nothing changed: {rescan_s[0] * 1000:.0f} ms")
