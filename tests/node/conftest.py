"""Helpers for node tests: ``peerlab node`` subprocesses on 127.0.0.1 (the
shared kit tests/kits/prockit.py; ``home`` and ``start_node`` come from
tests/conftest.py), the CLI, and the control API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prockit import CLI_TIMEOUT, NodeProc, proc_env

from peerlab.apps.control import ControlClient


@pytest.fixture
def run_cli(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``peerlab ARGS`` in a subprocess with the test's per-user folders."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "peerlab.cli", *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=proc_env(home),
        )  # fmt: skip

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
