"""BitTorrent throughput over 127.0.0.1 TCP (issue 6, "Benchmark").

A 512 MiB torrent (one file, 256 KiB pieces) moves from one seed to one
leecher, in one run:

* (a) libtorrent seeding to libtorrent   ``bittorrent.lt_to_lt_mb_s`` (the reference)
* (b) libtorrent seeding to peerlab      ``bittorrent.lt_to_peerlab_mb_s``
* (c) peerlab seeding to libtorrent      ``bittorrent.peerlab_to_lt_mb_s``
* (d) peerlab seeding to peerlab         ``bittorrent.peerlab_to_peerlab_mb_s``

and the ratios b/a, c/a, d/a (target: at least 0.9 each), with
``bittorrent.peerlab_cpu_s_per_gib``: CPU seconds (user + system, every
thread) peerlab spends per GiB moved, the mean of its downloading side in (b)
and its seeding side in (c).

Each peerlab peer runs in its own process (``python bench_bittorrent.py
peer ...``) on the asyncio runtime, so its CPU time is its own and the two
ends do not share an interpreter; libtorrent runs in this process (its own
threads).  libtorrent has uTP, DHT, LSD, UPnP and NAT-PMP off (uTP crawls on
loopback) and dials in plain text (it would otherwise try stream encryption
first, which peerlab does not speak, and redial after a delay).  A transfer
is timed from the moment the leecher is given the torrent and the seed's
address to the moment it holds every verified piece; the seed is ready
before (it has checked its files, libtorrent as peerlab: libtorrent's
``seed_mode`` would hash each piece inside the timed transfer).  The leecher
writes to a fresh folder every run, compared with the original afterwards;
the page cache is warm for the seed.  MB is 10**6 bytes.
Each figure is the best of :data:`RUNS` runs.

``PEERLAB_BENCH_BT_MIB`` shrinks the torrent while developing.
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

MIB = 1024 * 1024
GIB = 1024 * MIB
SIZE = int(os.environ.get("PEERLAB_BENCH_BT_MIB", "512")) * MIB
PIECE_LENGTH = 256 * 1024
RUNS = int(os.environ.get("PEERLAB_BENCH_BT_RUNS", "2"))
#: Longest one transfer may take before the benchmark gives up, seconds.
TRANSFER_TIMEOUT = 600.0
#: How long a finished download may take to reach the disk (libtorrent's
#: disk threads), seconds.
CHECK_TIMEOUT = 20.0
#: How often the libtorrent side is polled for completion, seconds.
POLL_S = 0.005
WRITE_BLOCK = 16 * MIB

LT_SETTINGS: dict[str, Any] = {
    "listen_interfaces": "127.0.0.1:0",
    "outgoing_interfaces": "127.0.0.1",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_tcp": True,
    "enable_incoming_tcp": True,
    "allow_multiple_connections_per_ip": True,
    # plaintext handshakes: libtorrent would first try BitTorrent's stream
    # encryption (MSE, which peerlab does not speak) and reconnect in plain
    # text only after that fails, a delay that is not throughput
    "out_enc_policy": 2,  # lt.enc_policy.pe_disabled
    "alert_mask": 0,
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------ the peerlab peer process


async def _peer(role: str, torrent: Path, folder: Path, peer: str | None) -> None:
    """One peerlab session: ``seed`` serves ``folder``; ``leech`` downloads
    into it from ``peer``.  Talks JSON lines on stdout; a line on stdin (or
    EOF) asks it to report its CPU time and exit."""
    from peerlab.overlays.bittorrent import Session, SessionConfig
    from peerlab.runtime.aio import AsyncioRuntime

    rt = AsyncioRuntime(workers=2)
    session = Session(rt, SessionConfig(listen_host="127.0.0.1", listen_port=0))
    session.start()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or stop.set_result(None))

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    if role == "seed":
        t = session.add_torrent(torrent.read_bytes(), save_path=folder)
        while not t.complete:
            await asyncio.sleep(0.01)
        cpu0 = _cpu()
        say(event="ready", port=session.listen_port)
        await stop
        say(event="done", cpu=_cpu() - cpu0, uploaded=t.uploaded)
    else:
        assert peer is not None
        host, port = peer.rsplit(":", 1)
        cpu0 = _cpu()
        start = time.perf_counter()
        t = session.add_torrent(torrent.read_bytes(), save_path=folder,
                                peers=[(host, int(port))])
        while not t.complete:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
        say(event="done", elapsed=elapsed, cpu=_cpu() - cpu0, downloaded=t.downloaded,
            hash_failures=t.counters["hash_failures"])
        await stop
    session.close()
    rt.close()


def _peer_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_bittorrent.py peer")
    ap.add_argument("role", choices=["seed", "leech"])
    ap.add_argument("torrent", type=Path)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--peer")
    args = ap.parse_args(argv)
    from peerlab.runtime.aio import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_peer(args.role, args.torrent, args.folder, args.peer))
    return 0


class _Proc:
    """A peerlab peer process and its JSON lines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "peer", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError("a peerlab peer process died")
        return dict(json.loads(line))

    def finish(self) -> dict[str, Any] | None:
        """Ask for the final report (a seed's CPU), wait for the exit."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        report = None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            report = json.loads(line)
        self.proc.wait(30)
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ------------------------------------------------------------ libtorrent


class _Lt:
    def __init__(self) -> None:
        import libtorrent as lt

        self.lt = lt
        self.session = lt.session(LT_SETTINGS)
        self.handle: Any = None

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def add(self, torrent: Path, folder: Path) -> None:
        """Add the torrent; a seed checks its files first (not libtorrent's
        seed_mode, which would hash each piece the first time it is sent,
        inside the timed transfer)."""
        lt = self.lt
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(torrent))
        atp.save_path = str(folder)
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        self.handle = self.session.add_torrent(atp)

    def seeding(self) -> bool:
        return bool(self.handle.status().is_seeding)

    def wait_seeding(self) -> float:
        start = time.perf_counter()
        deadline = start + TRANSFER_TIMEOUT
        while not self.seeding():
            if time.perf_counter() > deadline:
                raise RuntimeError("libtorrent did not finish in time")
            time.sleep(POLL_S)
        return time.perf_counter() - start

    def close(self) -> None:
        if self.handle is not None:
            self.session.remove_torrent(self.handle)
        self.session.pause()


# ------------------------------------------------------------ the four transfers


def _prepare(work: Path) -> tuple[Path, Path]:
    """The payload (random, kept between runs) and its .torrent."""
    from peerlab.storage.torrent_hash import hash_torrent
    from peerlab.wire.metainfo import Metainfo

    seed_dir = work / "seed"
    payload = seed_dir / "payload.bin"
    if not payload.exists() or payload.stat().st_size != SIZE:
        seed_dir.mkdir(parents=True, exist_ok=True)
        block = os.urandom(WRITE_BLOCK)
        with open(payload, "wb") as f:
            left, n = SIZE, 0
            while left:
                chunk = min(WRITE_BLOCK, left)
                f.write(n.to_bytes(8, "big") + block[8:chunk])
                left -= chunk
                n += 1
    torrent = work / f"payload-{SIZE // MIB}.torrent"
    if not torrent.exists():
        info = hash_torrent(payload, PIECE_LENGTH)
        torrent.write_bytes(Metainfo.create(info, created_by="peerlab bench").to_bytes())
    return payload, torrent


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _check(folder: Path, payload: Path) -> None:
    """The downloaded file is the original, byte for byte (outside the clock).
    libtorrent reports a piece once it is verified in memory; its disk
    threads may write it a moment later, so this waits a little for them."""
    got = folder / "payload.bin"
    deadline = time.monotonic() + CHECK_TIMEOUT
    while not filecmp.cmp(got, payload, shallow=False):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{got} differs from {payload}")
        time.sleep(0.2)


def lt_to_lt(work: Path, torrent: Path, payload: Path) -> float:
    seed, leech = _Lt(), _Lt()
    try:
        seed.add(torrent, work / "seed")
        seed.wait_seeding()  # its files checked, before the clock starts
        leech.add(torrent, _fresh(work / "leech"))
        leech.handle.connect_peer(("127.0.0.1", seed.port))
        elapsed = leech.wait_seeding()
        _check(work / "leech", payload)
        return elapsed
    finally:
        leech.close()
        seed.close()


def lt_to_peerlab(work: Path, torrent: Path, payload: Path) -> tuple[float, float]:
    seed = _Lt()
    proc: _Proc | None = None
    try:
        seed.add(torrent, work / "seed")
        seed.wait_seeding()  # its files checked, before the clock starts
        proc = _Proc("leech", str(torrent), str(_fresh(work / "leech")),
                     "--peer", f"127.0.0.1:{seed.port}")
        done = proc.read()
        if done.get("hash_failures"):
            raise RuntimeError("pieces failed their hash")
        proc.finish()
        _check(work / "leech", payload)
        return float(done["elapsed"]), float(done["cpu"])
    finally:
        if proc is not None:
            proc.kill()
        seed.close()


def peerlab_to_lt(work: Path, torrent: Path, payload: Path) -> tuple[float, float]:
    leech = _Lt()
    proc = _Proc("seed", str(torrent), str(work / "seed"))
    try:
        ready = proc.read()
        leech.add(torrent, _fresh(work / "leech"))
        leech.handle.connect_peer(("127.0.0.1", int(ready["port"])))
        elapsed = leech.wait_seeding()
        report = proc.finish() or {}
        _check(work / "leech", payload)
        return elapsed, float(report.get("cpu", 0.0))
    finally:
        proc.kill()
        leech.close()


def peerlab_to_peerlab(work: Path, torrent: Path, payload: Path) -> float:
    seed = _Proc("seed", str(torrent), str(work / "seed"))
    leech: _Proc | None = None
    try:
        ready = seed.read()
        leech = _Proc("leech", str(torrent), str(_fresh(work / "leech")),
                      "--peer", f"127.0.0.1:{ready['port']}")
        done = leech.read()
        leech.finish()
        seed.finish()
        _check(work / "leech", payload)
        return float(done["elapsed"])
    finally:
        if leech is not None:
            leech.kill()
        seed.kill()


def run(bench: Any) -> None:
    work = bench.workdir / "bittorrent"
    work.mkdir(parents=True, exist_ok=True)
    payload, torrent = _prepare(work)
    mb = SIZE / 1e6
    best: dict[str, float] = {}
    cpu_down: list[float] = []
    cpu_up: list[float] = []
    for _ in range(RUNS):
        best["a"] = min(best.get("a", 1e9), lt_to_lt(work, torrent, payload))
        elapsed, cpu = lt_to_peerlab(work, torrent, payload)
        best["b"] = min(best.get("b", 1e9), elapsed)
        cpu_down.append(cpu)
        elapsed, cpu = peerlab_to_lt(work, torrent, payload)
        best["c"] = min(best.get("c", 1e9), elapsed)
        cpu_up.append(cpu)
        best["d"] = min(best.get("d", 1e9), peerlab_to_peerlab(work, torrent, payload))
    shutil.rmtree(work / "leech", ignore_errors=True)
    rates = {k: mb / v for k, v in best.items()}
    bench.figure("bittorrent.lt_to_lt_mb_s", rates["a"], "MB/s")
    bench.figure("bittorrent.lt_to_peerlab_mb_s", rates["b"], "MB/s",
                 beside=["bittorrent.lt_to_lt_mb_s"])
    bench.figure("bittorrent.peerlab_to_lt_mb_s", rates["c"], "MB/s",
                 beside=["bittorrent.lt_to_lt_mb_s"])
    bench.figure("bittorrent.peerlab_to_peerlab_mb_s", rates["d"], "MB/s",
                 beside=["bittorrent.lt_to_lt_mb_s"])
    gib = SIZE / GIB
    per_gib = (min(cpu_down) + min(cpu_up)) / 2 / gib
    bench.figure("bittorrent.peerlab_cpu_s_per_gib", per_gib, "s/GiB")
    bench.note(
        f"ratios to lt->lt: b/a {rates['b'] / rates['a']:.2f}  c/a {rates['c'] / rates['a']:.2f}"
        f"  d/a {rates['d'] / rates['a']:.2f}  (target >= 0.9 each)"
    )
    bench.note(
        f"peerlab CPU per GiB: downloading {min(cpu_down) / gib:.2f} s, "
        f"seeding {min(cpu_up) / gib:.2f} s; {SIZE // MIB} MiB torrent, "
        f"{PIECE_LENGTH // 1024} KiB pieces, best of {RUNS}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        sys.exit(_peer_main(sys.argv[2:]))
    from run import Bench  # type: ignore[import-not-found]

    b = Bench(HERE / ".data")
    run(b)
