"""Helpers for the Napster client tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peerlab.cli.main import main
from peerlab.runtime.worlds import RealWorld, SimWorld, World

# pytest runs with --import-mode=importlib, which puts no test folder on
# sys.path: make the helper module beside this file importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["real", "sim"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test body on 127.0.0.1 and in the simulator."""
    w: World = RealWorld() if request.param == "real" else SimWorld(seed=7)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def real_world() -> Iterator[World]:
    w = RealWorld()
    try:
        yield w
    finally:
        w.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No PEERLAB_* variables, and per-user folders inside tmp_path."""
    for name in list(os.environ):
        if name.startswith("PEERLAB_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("COLUMNS", "200")
    return home


@pytest.fixture
def cli(isolated: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``peerlab ARGS`` in this process; returns exit code, stdout, stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:
            code = 0
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
