"""Fixtures of the web page tests (helpers live in webkit.py beside this file):
a headless Chromium per module, a fresh page per test, and the screenshots."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on
# sys.path: make the helper module beside this file importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from webkit import WAIT_MS, chromium, screenshot_folder, take_screenshot  # noqa: E402


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder this run's screenshots go to: docs/screenshots/ under
    ``make screenshots`` (PEERLAB_SCREENSHOTS), else a temporary one."""
    return screenshot_folder(os.environ, tmp_path_factory.mktemp("screenshots"))


@pytest.fixture
def screenshot(screenshots: Path) -> Callable[[Any, str], Path]:
    """``screenshot(page, name)`` saves ``name.png`` of the page there."""
    return lambda page, name: take_screenshot(page, screenshots, name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new page; its dialogs are dismissed (their messages kept in
    ``page.dialogs``) and a script error on it fails the test."""
    p = browser.new_page()
    p.set_default_timeout(WAIT_MS)
    p.dialogs = []
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))
    p.errors = []
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    yield p
    assert not p.errors, p.errors
    p.close()
