"""Napster index server under load (issue 3, Benchmark).

``make bench ONLY=napster``.  Two set-ups, each measured the same way:

* one ``peerlab napster-server`` on SQLite (figures ``napster.*``);
* a farm of two servers over one PostgreSQL 15 that this benchmark starts
  itself (``initdb`` + ``pg_ctl`` in a temporary folder, as the ``postgres``
  user, on 127.0.0.1 and a free port; removed afterwards), the users split
  across both servers (figures ``napster.farm_*``).

The clients are real TCP connections from load generator processes
(``napster_load.py``, asyncio, many connections each).  Phases, in order:

1. every user logs in (napster.txt 2; the server registers a nick at its
   first login), passwords hashed at scrypt cost ``2**PASSWORD_COST``:
   ``logins_per_s``;
2. every user shares its library of ``FILES_PER_USER`` files (one 100 frame
   each), a server stats request (214) after them on the same connection
   marking them taken: ``shares_per_s``;
3. searches (napster.txt 200, ``MAX_RESULTS`` 100 as the Napster client
   sent) from users idle for longest, for ``SECONDS`` each:

   * closed loop, ``CONCURRENCY`` searches always outstanding: the most the
     server answers, ``searches_per_s``;
   * open loop at the target rate (2,000/s; 80% of the measured maximum when
     that is lower, said in a note): ``search_p50_ms`` and ``search_p99_ms``
     from writing the 200 frame to reading the 202 (end of results).

``server_peak_mib`` is the server's peak resident set (``VmHWM`` in
``/proc/PID/status``); for the farm the larger of the two servers.

``default_cost_logins_per_s``: a login storm of ``STORM_USERS`` new users
against a fresh server at its default scrypt cost (2^14), where the hash is
the whole cost of a login.

``PEERLAB_BENCH_NAPSTER_PYSPY=/path/to/py-spy`` samples every server during
the closed-loop searches into ``benchmarks/.data/napster/profile-*.txt``.

Scale: the issue's 10,000 users with 100 files each (1,000,000 files) by
default; ``PEERLAB_BENCH_NAPSTER_USERS``, ``..._FILES_PER_USER``,
``..._SECONDS``, ``..._CONCURRENCY``, ``..._RATE``, ``..._PROCS`` (load
processes), ``..._MAX_RESULTS``, ``..._PASSWORD_COST``, ``..._STORM_USERS``,
``..._SINGLE=0`` (skip the single server) and ``..._FARM=0`` (skip the farm)
change it.
Everything runs on 127.0.0.1 and every process this benchmark starts is
stopped by its pid, also when a phase fails.
"""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
LOAD = HERE / "napster_load.py"


def _env(name: str, default: int) -> int:
    return int(os.environ.get(f"PEERLAB_BENCH_NAPSTER_{name}", default))


#: The issue's scale: 10,000 users sharing 100 files each.
USERS = _env("USERS", 10_000)
FILES_PER_USER = _env("FILES_PER_USER", 100)
#: Seconds of each search phase.
SECONDS = _env("SECONDS", 10)
#: Searches outstanding in the closed-loop phase (over all load processes).
CONCURRENCY = _env("CONCURRENCY", 32)
#: The issue's target: 2,000 searches/s, p99 under 50 ms, one server.
TARGET_RATE = _env("RATE", 2000)
TARGET_P99_MS = 50.0
#: Load generator processes.
PROCS = _env("PROCS", 1)
#: MAX_RESULTS of each search: the Napster client's 100 (napster.txt 200).
MAX_RESULTS = _env("MAX_RESULTS", 100)
#: Run the single server on SQLite (``..._SINGLE=0`` skips it).
SINGLE = _env("SINGLE", 1)
#: Run the PostgreSQL farm as well (needs the PostgreSQL 15 binaries).
FARM = _env("FARM", 1)
#: Seconds of closed-loop searching before the measured phases (caches).
WARMUP_SECONDS = 2.0
#: Longest a server may take to accept connections after it is started.
START_TIMEOUT = 60.0
#: Longest a load phase may take (its own bound is 300 s, plus the drain).
PHASE_TIMEOUT = 330.0
#: Longest the servers' stats may take to count every share (a farm server's
#: stats are the farm's totals as of its last heartbeat), seconds.
STATS_SETTLE = 5.0
#: Longest a process is given to exit after it was asked to, seconds.
STOP_TIMEOUT = 10.0
#: scrypt cost (log2 N) of the users' passwords.  The server's default, 14,
#: costs about 28 ms of CPU per login here, so 10,000 logins alone would take
#: minutes on two cores: the population logs in at this lower cost, and a
#: separate short login storm (``STORM_USERS``) measures the default cost.
PASSWORD_COST = _env("PASSWORD_COST", 10)
DEFAULT_PASSWORD_COST = 14
STORM_USERS = _env("STORM_USERS", 400)
READY = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    """Child set-up: as many descriptors as the hard limit allows (10,000 clients)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _stop(proc: subprocess.Popen[Any], how: int = signal.SIGTERM) -> None:
    """Stop one process this benchmark started, by its pid."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(how)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def _peak_mib(pid: int) -> float:
    """The peak resident set of a live process: VmHWM of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM for pid {pid}")


# --------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster for the farm.


class Postgres:
    """A PostgreSQL 15 cluster in a temporary folder on 127.0.0.1.

    PostgreSQL refuses to run as root, so as root every command runs as the
    ``postgres`` system user (``runuser``).  Authentication is ``trust``: the
    cluster listens on 127.0.0.1 only and lives for one benchmark.
    ``synchronous_commit=off``: the index is rebuilt from the clients' shares
    anyway, so a commit need not wait for the disk.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="peerlab-bench-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.started = False
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/peerlab"

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        cmd = [str(PG_BIN / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {out.stderr.strip() or out.stdout.strip()}")

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )
        options = " ".join(
            [
                f"-h {LOOPBACK} -p {self.port} -k {self.root}",
                "-c synchronous_commit=off -c shared_buffers=256MB",
                "-c max_connections=200 -c fsync=on",
            ]
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
            "-o", options, "start",
        )
        self.started = True
        self._run("createdb", "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres", "peerlab")

    def close(self) -> None:
        try:
            if self.started:
                try:
                    self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """pg_ctl could not stop it: kill the postmaster named in its pid file."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------
# The server and the load generators.


def _server_argv(database: str, password_cost: int) -> list[str]:
    """``peerlab napster-server`` on a free port of 127.0.0.1 with ``database``."""
    return [
        sys.executable, "-m", "peerlab.cli", "napster-server",
        "--host", LOOPBACK, "--port", "0", "--database", database,
        "--password-cost", str(password_cost), "--log-level", "warning",
        # Belt and braces: the server stops by itself if this process dies.
        "--exit-with-parent",
    ]


class Server:
    """A server process this benchmark started, and where it listens."""

    # (No dataclasses here: run.py loads this file without registering it in
    # sys.modules, which dataclasses need for string annotations.)
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def peak_mib(self) -> float:
        return _peak_mib(self.proc.pid)


def _start_server(database: str, log: Path, password_cost: int = PASSWORD_COST) -> Server:
    """Start a server; it says ``... listening on HOST:PORT`` when it is ready."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _server_argv(database, password_cost),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_raise_nofile,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = READY.search(log.read_text(errors="replace"))
            if match:
                return Server(proc, int(match.group(1)), log)
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}): {_tail(log)}")
            time.sleep(0.05)
        raise RuntimeError(f"the server did not listen within {START_TIMEOUT:.0f} s: {_tail(log)}")
    except BaseException:
        _stop(proc)
        raise


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Load:
    """One load generator process, steered one JSON line at a time."""

    def __init__(
        self, servers: list[int], first: int, users: int, *, files: int = FILES_PER_USER,
        songs: int | None = None,
    ) -> None:
        argv = [
            sys.executable,
            str(LOAD),
            "--servers",
            ",".join(f"{LOOPBACK}:{p}" for p in servers),
            "--first-user",
            str(first),
            "--users",
            str(users),
            "--files-per-user",
            str(files),
            "--max-results",
            str(MAX_RESULTS),
            # The server hashes at most 64 logins at once: share them out.
            "--login-concurrency",
            str(max(1, 64 // PROCS)),
            *(["--songs", str(songs)] if songs else []),
        ]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_raise_nofile,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def reply(self, deadline: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError("a load generator did not answer in time") from None
        if line is None:
            raise RuntimeError(f"a load generator exited ({self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(timeout=STOP_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _stop(self.proc)


def _phase(loads: list[Load], cmd: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """Run one phase in every load process at once: the replies and the wall time."""
    t0 = time.perf_counter()
    for load in loads:
        load.send(cmd)
    deadline = time.monotonic() + PHASE_TIMEOUT
    replies = [load.reply(deadline) for load in loads]
    return replies, time.perf_counter() - t0


def _settled_stats(load: Load, servers: int, files: int) -> dict[str, str]:
    """Each server's stats (214) once they count ``files`` (a farm server
    reports the farm's totals, refreshed at its heartbeat), or the last seen
    after :data:`STATS_SETTLE` seconds."""
    deadline = time.monotonic() + STATS_SETTLE
    while True:
        (reply,), _ = _phase([load], {"cmd": "stats"})
        stats: dict[str, str] = reply["stats"]
        counts = []
        for text in stats.values():
            parts = text.split()
            counts.append(int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else -1)
        if len(counts) == servers and min(counts) >= files:
            return stats
        if time.monotonic() >= deadline:
            return stats
        time.sleep(0.5)


def _errors(replies: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in replies:
        for e in r.get("errors", []):
            seen[e] = None
    return list(seen)


def _percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[k]


class Measured:
    """The figures of one set-up, and what to say about them."""

    def __init__(self) -> None:
        self.logins_per_s = 0.0
        self.shares_per_s = 0.0
        self.searches_per_s = 0.0
        self.p50_ms = float("nan")
        self.p99_ms = float("nan")
        self.offered_per_s = 0.0
        self.notes: list[str] = []


@contextmanager
def _profiled(servers: list[Server], out: Path | None) -> Iterator[None]:
    """With ``PEERLAB_BENCH_NAPSTER_PYSPY`` naming a py-spy binary, sample
    every server for the duration of the block (py-spy's raw format, one file
    per server, for flame graphs or a top-functions summary)."""
    spy = os.environ.get("PEERLAB_BENCH_NAPSTER_PYSPY")
    if not spy or out is None:
        yield
        return
    procs = [
        subprocess.Popen(
            [spy, "record", "--pid", str(s.proc.pid), "--format", "raw", "--rate", "200",
             "--nonblocking", "--output", str(out.with_name(f"{out.name}-{s.port}.txt"))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for s in servers
    ]
    try:
        yield
    finally:
        for p in procs:
            _stop(p, signal.SIGINT)


def _measure(servers: list[Server], profile: Path | None = None) -> Measured:
    """Log in, share and search against ``servers``; the figures of one set-up."""
    m = Measured()
    ports = [s.port for s in servers]
    with ExitStack() as stack:
        loads: list[Load] = []
        per = -(-USERS // PROCS)
        for i in range(PROCS):
            first, count = i * per, min(per, USERS - i * per)
            if count > 0:
                load = Load(ports, first, count)
                stack.callback(load.close)
                loads.append(load)

        replies, wall = _phase(loads, {"cmd": "login"})
        ok = sum(r["ok"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        m.logins_per_s = ok / wall
        m.notes.append(f"{ok} users logged in in {wall:.1f} s ({failed} failed)")
        for e in _errors(replies):
            m.notes.append(f"login error: {e}")
        if ok == 0:
            raise RuntimeError(f"no user could log in: {_errors(replies)}")

        _phase(loads, {"cmd": "prepare"})
        replies, wall = _phase(loads, {"cmd": "share"})
        files = sum(r["files"] for r in replies)
        m.shares_per_s = files / wall
        m.notes.append(f"{files} files shared in {wall:.1f} s")
        for e in _errors(replies):
            m.notes.append(f"share error: {e}")
        for addr, text in _settled_stats(loads[0], len(servers), files).items():
            m.notes.append(f"server stats (214) from {addr}: {text}")

        _phase(loads, {"cmd": "search", "mode": "closed", "seconds": WARMUP_SECONDS,
                       "concurrency": max(1, CONCURRENCY // len(loads))})
        with _profiled(servers, profile):
            replies, wall = _phase(loads, {
                "cmd": "search", "mode": "closed", "seconds": SECONDS,
                "concurrency": max(1, CONCURRENCY // len(loads)),
            })
        done = sum(r["done"] for r in replies)
        elapsed = max(r["seconds"] for r in replies)
        m.searches_per_s = done / elapsed
        results = sum(r["results"] for r in replies)
        lat = sorted(x for r in replies for x in r["latencies_ms"])
        m.notes.append(
            f"closed loop, {CONCURRENCY} outstanding: {done} searches in {elapsed:.1f} s, "
            f"{results / max(done, 1):.1f} results each, p50 {_percentile(lat, 50):.1f} ms, "
            f"p99 {_percentile(lat, 99):.1f} ms, {sum(r['failed'] for r in replies)} failed"
        )
        for e in _errors(replies):
            m.notes.append(f"search error: {e}")

        rate = float(TARGET_RATE)
        if m.searches_per_s < rate:
            rate = round(0.8 * m.searches_per_s, 1)
            m.notes.append(
                f"the server answers fewer than {TARGET_RATE}/s: latency measured at {rate}/s"
            )
        m.offered_per_s = rate
        replies, wall = _phase(loads, {
            "cmd": "search", "mode": "open", "seconds": SECONDS, "rate": rate / len(loads),
        })
        lat = sorted(x for r in replies for x in r["latencies_ms"])
        m.p50_ms = _percentile(lat, 50)
        m.p99_ms = _percentile(lat, 99)
        done = sum(r["done"] for r in replies)
        m.notes.append(
            "load average (1 min) of the machine: "
            f"{os.getloadavg()[0]:.1f} after the search phases, on 2 cores shared by "
            f"the server(s), the load generator and anything else running"
        )
        m.notes.append(
            f"open loop at {rate:.0f}/s: {done} answered, "
            f"{sum(r['unanswered'] for r in replies)} unanswered, "
            f"{sum(r['starved'] for r in replies)} not sent (no idle user), "
            f"mean {statistics.fmean(lat) if lat else float('nan'):.1f} ms, max "
            f"{lat[-1] if lat else float('nan'):.1f} ms"
        )
        for e in _errors(replies):
            m.notes.append(f"search error: {e}")
    return m


def _report(bench: Any, prefix: str, m: Measured, peak: float) -> None:
    key = f"napster.{prefix}"
    bench.figure(f"{key}logins_per_s", m.logins_per_s, "logins/s")
    bench.figure(f"{key}shares_per_s", m.shares_per_s, "files/s")
    bench.figure(f"{key}searches_per_s", m.searches_per_s, "searches/s")
    bench.figure(f"{key}search_offered_per_s", m.offered_per_s, "searches/s")
    bench.figure(f"{key}search_p50_ms", m.p50_ms, "ms", beside=[f"{key}search_offered_per_s"])
    bench.figure(f"{key}search_p99_ms", m.p99_ms, "ms", beside=[f"{key}search_offered_per_s"])
    bench.figure(f"{key}server_peak_mib", peak, "MiB")
    for n in m.notes:
        bench.note(n)


def _login_storm(work: Path) -> tuple[float, int]:
    """Logins per second of ``STORM_USERS`` new users at the server's default
    scrypt cost (a fresh server), and how many logged in."""
    with ExitStack() as stack:
        server = _start_server(
            f"sqlite:{work / 'storm.db'}", work / "storm.log", DEFAULT_PASSWORD_COST
        )
        stack.callback(_stop, server.proc)
        load = Load([server.port], 0, STORM_USERS)
        stack.callback(load.close)
        replies, wall = _phase([load], {"cmd": "login"})
    ok = sum(r["ok"] for r in replies)
    return ok / wall, ok


def run(bench: Any) -> None:
    work = Path(bench.workdir) / "napster"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _run(bench, work)
    finally:
        # The logs (and py-spy profiles) stay; the indexes (~200 MB) go.
        for db in work.glob("*.db*"):
            db.unlink()


def _run(bench: Any, work: Path) -> None:
    bench.note(
        f"{USERS} users x {FILES_PER_USER} files = {USERS * FILES_PER_USER} files; "
        f"searches with MAX_RESULTS {MAX_RESULTS}, {SECONDS} s per phase, "
        f"{PROCS} load process(es); passwords at scrypt cost 2^{PASSWORD_COST}"
    )
    bench.note(
        f"target (issue 3): >= {TARGET_RATE} searches/s with p99 < {TARGET_P99_MS:.0f} ms "
        "at 1,000,000 files on one server"
    )

    if SINGLE:
        with ExitStack() as stack:
            server = _start_server(f"sqlite:{work / 'index.db'}", work / "server.log")
            stack.callback(_stop, server.proc)
            m = _measure([server], work / "profile-single")
            peak = server.peak_mib()
        _report(bench, "", m, peak)
        met = m.offered_per_s >= TARGET_RATE and m.p99_ms < TARGET_P99_MS
        bench.note(
            f"target {'met' if met else 'not met'}: p99 {m.p99_ms:.1f} ms at "
            f"{m.offered_per_s:.0f} searches/s offered (most answered: "
            f"{m.searches_per_s:.0f}/s)"
        )

    if STORM_USERS > 0:
        rate, ok = _login_storm(work)
        bench.figure(
            "napster.default_cost_logins_per_s", rate, "logins/s",
            beside=["napster.logins_per_s"],
        )
        bench.note(
            f"{ok} of {STORM_USERS} new users logged in to a fresh server at its default "
            f"scrypt cost 2^{DEFAULT_PASSWORD_COST}"
        )

    if not FARM:
        bench.note("farm skipped (PEERLAB_BENCH_NAPSTER_FARM=0)")
        return
    if not (PG_BIN / "initdb").exists():
        bench.note(f"farm skipped: no PostgreSQL 15 binaries in {PG_BIN} (make deps)")
        return
    with ExitStack() as stack:
        pg = Postgres()
        stack.callback(pg.close)
        pg.start()
        servers = []
        for i in range(2):
            s = _start_server(pg.url, work / f"farm{i}.log")
            stack.callback(_stop, s.proc)
            servers.append(s)
        m = _measure(servers, work / "profile-farm")
        peaks = [s.peak_mib() for s in servers]
    m.notes.append("server peaks: " + ", ".join(f"{p:.0f} MiB" for p in peaks))
    _report(bench, "farm_", m, max(peaks))
