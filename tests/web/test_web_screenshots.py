"""Where the browser tests' screenshots go: a plain test run leaves the
tracked docs/screenshots/*.png alone (a clean clone stays clean after
``make test``); ``make screenshots`` names that folder to refresh them."""

from __future__ import annotations

import os
from pathlib import Path

from webkit import SCREENSHOTS_ENV, screenshot_folder

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_a_plain_run_writes_to_the_scratch_folder(tmp_path: Path) -> None:
    assert screenshot_folder({}, tmp_path) == tmp_path
    assert screenshot_folder({SCREENSHOTS_ENV: ""}, tmp_path) == tmp_path
    assert screenshot_folder({"PATH": "/usr/bin"}, tmp_path) == tmp_path


def test_make_screenshots_names_the_folder(tmp_path: Path) -> None:
    assert screenshot_folder({SCREENSHOTS_ENV: str(DOCS)}, tmp_path) == DOCS


def test_this_run_writes_outside_the_repository_unless_asked(screenshots: Path) -> None:
    if os.environ.get(SCREENSHOTS_ENV):
        assert screenshots == Path(os.environ[SCREENSHOTS_ENV])
    else:
        repo = DOCS.parents[1]
        assert repo != screenshots and repo not in screenshots.parents
