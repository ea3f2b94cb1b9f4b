"""Processes for the tests that run peerlab as its user does: ``peerlab node``
and ``peerlab napster-server`` subprocesses on 127.0.0.1, each with its own
data dir and per-user folders, driven through the CLI.

One kit for every test directory that starts them (tests/node, tests/bt_node,
tests/bt_dht, tests/gnutella_node, tests/web, tests/napster_client, ...);
tests/conftest.py puts this folder on sys.path (pytest runs in importlib
mode, which puts no test folder there) and turns :func:`node_starter` into
the ``start_node`` fixture.  Every wait is bounded and none is asserted as a
timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

#: Bounds on every wait (never asserted as timings): a node's start and first
#: scan, one CLI call, and the interval between two looks.
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
POLL = 0.1
#: Seconds a process gets to exit after SIGTERM (and after SIGKILL).
STOP_TIMEOUT = 15.0
#: The line ``peerlab napster-server`` logs once it listens.
_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")

T = TypeVar("T")


def proc_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without PEERLAB_* variables, the per-user
    folders (XDG) under ``home``, a wide terminal, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):  # fmt: skip
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, as a user stops a node; SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def wait_until(
    check: Callable[[], T], what: str, timeout: float = START_TIMEOUT, poll: float = POLL
) -> T:
    """``check()`` until it returns something true (which is returned)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what} ({timeout:g} s)")


class NodeProc:
    """One ``peerlab node`` subprocess with its own data dir; its output goes
    to ``<data dir>.out`` beside the data dir.  ``env`` is added to the
    process's environment."""

    def __init__(self, home: Path, data_dir: Path, args: list[str],
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.home = home
        self.data_dir = data_dir
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.out"

    def node_args(self) -> list[str]:
        """The ``peerlab node`` options before the test's own."""
        return ["--listen-port", "0", "--exit-with-parent"]

    def start(self) -> NodeProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), "node",
               *self.node_args(), *self.args]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env=proc_env(self.home, self.env))  # fmt: skip
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``peerlab --data-dir <this node's> ARGS``; raises on failure with ``check``."""
        p = subprocess.run(
            [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=proc_env(self.home),
        )  # fmt: skip
        if check and p.returncode != 0:
            raise AssertionError(f"peerlab {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_ready(
        self, files: int = 0, *, napster: bool = False, shared: int | None = None
    ) -> dict[str, Any]:
        """Until the node answers and its scan has listed ``files`` files; with
        ``napster`` also until it is online on its Napster server sharing
        ``shared`` files there (default: ``files``).  Returns the status."""
        assert self.proc is not None
        want = files if shared is None else shared
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}:\n{self.output()}")
            if (self.data_dir / "control.json").exists():
                p = self.cli("status", "--json", check=False)
                if p.returncode == 0:
                    st: dict[str, Any] = json.loads(p.stdout)
                    nap = st.get("napster") or {}
                    if (not st["scan"]["running"] and st["shares"]["files"] >= files
                            and (not napster or (nap.get("state") == "online"
                                                 and nap.get("shared") == want))):  # fmt: skip
                        return st
            time.sleep(POLL)
        raise AssertionError(f"node not ready in {START_TIMEOUT} s:\n{self.output()}")

    def wait_for(self, what: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> None:
        """Until ``what(status)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what(self.json("status")):
                return
            time.sleep(POLL * 3)
        raise AssertionError(f"condition not met in {timeout} s: {self.json('status')}")

    @property
    def peer_address(self) -> str:
        return str(self.json("status")["listen"])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        stop_process(self.proc)


class ServerProc:
    """``peerlab napster-server`` on a free port with its own SQLite index;
    ``address`` once it listens."""

    def __init__(self, home: Path, root: Path, name: str) -> None:
        self.out = root / f"{name}.out"
        root.mkdir(parents=True, exist_ok=True)
        with self.out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peerlab.cli", "napster-server", "--port", "0",
                 "--database", f"sqlite:{root / name}.db", "--password-cost", "4",
                 "--exit-with-parent"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=proc_env(home),
            )  # fmt: skip

        def listening() -> re.Match[str] | None:
            m = _LISTENING.search(self.out.read_text(errors="replace"))
            assert m is not None or self.proc.poll() is None, self.out.read_text(errors="replace")
            return m

        m = wait_until(listening, "napster-server to listen")
        self.address = f"{m.group(1)}:{m.group(2)}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        stop_process(self.proc)


def node_starter(
    tmp_path: Path, home: Path, kind: type[NodeProc] = NodeProc
) -> Iterator[Callable[..., NodeProc]]:
    """The body of a ``start_node`` fixture: ``start(name, *args)`` starts a
    ``kind`` node with data dir ``tmp_path/name``; all are stopped at the end."""
    started: list[NodeProc] = []

    def start(name: str, *args: str) -> NodeProc:
        n = kind(home, tmp_path / name, list(args)).start()
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def open_gnutella(status: dict[str, Any]) -> int:
    """Gnutella connections of a node's status that are open."""
    g = status.get("gnutella") or {}
    return sum(c["state"] == "open" for c in g.get("connections", []))
