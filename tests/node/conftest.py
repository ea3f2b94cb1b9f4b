"""Helpers for node tests: ``peerlab node`` subprocesses on 127.0.0.1 and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peerlab.apps.control import ControlClient

#: Bounds on every wait in these tests (never asserted as timings).
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
POLL = 0.1


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["COLUMNS"] = "200"
    return env


class NodeProc:
    """One ``peerlab node`` subprocess with its own data dir."""

    def __init__(self, home: Path, data_dir: Path, args: list[str]) -> None:
        self.home = home
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.out"

    def start(self) -> NodeProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), "node",
            "--listen-port", "0", "--exit-with-parent", *self.args,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_env(self.home),
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=_env(self.home),
        )
        if check and p.returncode != 0:
            raise AssertionError(f"peerlab {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_ready(self, files: int = 0) -> dict[str, Any]:
        """Until the node answers and its scan has listed ``files`` files."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}:\n{self.output()}")
            if (self.data_dir / "control.json").exists():
                p = self.cli("status", "--json", check=False)
                if p.returncode == 0:
                    st = json.loads(p.stdout)
                    if not st["scan"]["running"] and st["shares"]["files"] >= files:
                        return st  # type: ignore[no-any-return]
            time.sleep(POLL)
        raise AssertionError(f"node not ready in {START_TIMEOUT} s:\n{self.output()}")

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
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def start_node(tmp_path: Path, home: Path) -> Iterator[Callable[..., NodeProc]]:
    """``start_node(name, *args)`` starts a node; every one is stopped at the end."""
    started: list[NodeProc] = []

    def start(name: str, *args: str) -> NodeProc:
        n = NodeProc(home, tmp_path / name, list(args)).start()
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


@pytest.fixture
def run_cli(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "peerlab.cli", *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=_env(home),
        )

    return run


def api(node: NodeProc, call: Callable[[ControlClient], Awaitable[Any]]) -> Any:
    """One control-API call in this process (quicker than a CLI subprocess)."""

    async def go() -> Any:
        async with ControlClient(node.data_dir, timeout=10.0) as c:
            return await call(c)

    return asyncio.run(go())


@pytest.fixture
def node_api() -> Callable[..., Any]:
    return api
