"""``peerlab demo`` (what ``make demo`` runs): exits 0 after a verified
multi-source download, and Ctrl-C at any moment leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from demokit import assert_ctrl_c_stops_everything, assert_left_nothing, run_demo


def test_demo_exits_0_after_a_verified_multi_source_download(tmp_path: Path) -> None:
    p = run_demo(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SHA-1 matches urn:sha1:" in p.stdout
    assert "identical to the original, byte for byte" in p.stdout
    assert "from 3 sources at once" in p.stdout
    assert "Concurrent Downloads: 0  Concurrent Uploads: 0" in p.stdout
    assert_left_nothing(tmp_path)  # its temp folder is gone, and every process


def test_ctrl_c_stops_the_demo_and_every_node(tmp_path: Path) -> None:
    # Interrupted once the nodes run (the downloader is told its peers then).
    assert_ctrl_c_stops_everything(tmp_path, [], "listens on", processes=4)
