"""Helpers for the Gnutella node tests: ``peerlab node`` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Bounds on every wait (never asserted as timings).
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
POLL = 0.1


def proc_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):  # fmt: skip
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["COLUMNS"] = "200"
    return env


def make_file(folder: Path, name: str, size: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


class GNode:
    """One ``peerlab node`` subprocess with its own data dir."""

    def __init__(self, home: Path, data_dir: Path, args: list[str]) -> None:
        self.home = home
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.out"

    def start(self) -> GNode:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), "node",
               "--listen-port", "0", "--exit-with-parent", *self.args]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=proc_env(self.home))
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=proc_env(self.home),
        )
        if check and p.returncode != 0:
            raise AssertionError(f"peerlab {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_ready(self, files: int = 0) -> dict[str, Any]:
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

    def wait_for(self, what: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> None:
        """Until ``what(status)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what(self.json("status")):
                return
            time.sleep(POLL * 3)
        raise AssertionError(f"condition not met in {timeout} s: {self.json('status')}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def open_gnutella(status: dict[str, Any]) -> int:
    g = status.get("gnutella") or {}
    return sum(c["state"] == "open" for c in g.get("connections", []))
