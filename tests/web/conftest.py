"""Fixtures of the web page tests (helpers live in webkit.py beside this file)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on
# sys.path: make the helper module beside this file importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from webkit import screenshot_folder, take_screenshot  # noqa: E402


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder this run's screenshots go to: docs/screenshots/ under
    ``make screenshots`` (PEERLAB_SCREENSHOTS), else a temporary one."""
    return screenshot_folder(os.environ, tmp_path_factory.mktemp("screenshots"))


@pytest.fixture
def screenshot(screenshots: Path) -> Callable[[Any, str], Path]:
    """``screenshot(page, name)`` saves ``name.png`` of the page there."""
    return lambda page, name: take_screenshot(page, screenshots, name)
