"""Fixtures every test directory may use: node processes (``home``,
``start_node``) and the CLI run in this process (``isolated``, ``cli``).
pytest runs with --import-mode=importlib, which puts no test folder on
sys.path: the shared kits in tests/kits/ go there (``import prockit``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_KITS = str(Path(__file__).resolve().parent / "kits")
if _KITS not in sys.path:
    sys.path.insert(0, _KITS)

from prockit import NodeProc, node_starter  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The per-user folders (XDG) of the node processes a test starts."""
    return tmp_path / "home"


@pytest.fixture
def start_node(tmp_path: Path, home: Path) -> Iterator[Callable[..., NodeProc]]:
    """``start_node(name, *args)`` starts a ``peerlab node`` process with data
    dir ``tmp_path/name``; every one is stopped at the end."""
    yield from node_starter(tmp_path, home)


@dataclass
class CliResult:
    """What ``peerlab ARGS`` did in this process."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


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
    from peerlab.cli.main import main  # here: most directories never run the CLI in-process

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
