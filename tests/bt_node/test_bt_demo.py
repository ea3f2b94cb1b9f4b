"""``peerlab demo --only bittorrent`` (issue 6, item 7): a tracker, one seed
and a flash crowd of leechers on 127.0.0.1; every copy verified, and the
seed uploads far less than the crowd downloads (the leechers trade)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Bound of the whole demo run (never asserted as a timing).
DEMO_TIMEOUT = 300.0
_SIZE = re.compile(r"([\d.]+) (B|KB|MB|GB)")
_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes(text: str) -> float:
    m = _SIZE.fullmatch(text.strip())
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


@pytest.mark.slow
def test_flash_crowd_demo_seed_uploads_far_less_than_downloaded(
    tmp_path: Path, home: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    (tmp_path / "tmp").mkdir()
    env.update(TMPDIR=str(tmp_path / "tmp"), COLUMNS="200",
               XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
    p = subprocess.run(
        [sys.executable, "-m", "peerlab.cli", "demo", "--only", "bittorrent"],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT, env=env, stdin=subprocess.DEVNULL,
    )
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "identical to the original, byte for byte" in out
    # per-peer progress: a bar for each leecher, all at 100%
    for i in range(1, 7):
        assert re.search(rf"leech{i}\s.*100%", out), out
    m = re.search(r"downloaded ([\d.]+ \w+) in all; the seed uploaded only ([\d.]+ \w+) "
                  r"\((\d+)%\), the leechers uploaded ([\d.]+ \w+) to each other", out)
    assert m, out
    crowd_down, seed_up, crowd_up = _bytes(m.group(1)), _bytes(m.group(2)), _bytes(m.group(4))
    assert seed_up <= 0.5 * crowd_down
    assert crowd_up >= 0.4 * crowd_down  # most of it came from other leechers
    assert list((tmp_path / "tmp").iterdir()) == []  # the demo cleaned up
