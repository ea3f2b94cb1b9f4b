"""``peerlab demo``'s Napster part: the lecture's search, a direct and a
firewalled download, fail-over; Ctrl-C during it leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from demokit import assert_ctrl_c_stops_everything, assert_left_nothing, run_demo


@pytest.mark.slow
def test_demo_napster_part(tmp_path: Path) -> None:
    p = run_demo(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    napster = out[out.index("Napster"):]
    for needle in (
        "search 'little toot'", "Filesize", "Bitrate", "Connection",
        "Maclean & Maclean - Little Toot.mp3", "4,005,062", "lefty", "Cable",
        "Andrews Sisters - Little Toot.mp3", "jane", "DSL",
        "jane connects out with SEND", "lefty (Cable)", "jane (DSL)",
        "logged in to server two", "fail-over to the second server",
    ):
        assert needle in napster, needle
    assert napster.count("Napster md5 matches; identical to the original, byte for byte") == 2
    assert_left_nothing(tmp_path)


@pytest.mark.slow
def test_ctrl_c_in_the_napster_part_stops_everything(tmp_path: Path) -> None:
    # 4 nodes, 2 index servers, 3 Napster peers.
    assert_ctrl_c_stops_everything(tmp_path, [], "search 'little toot'", processes=9)
