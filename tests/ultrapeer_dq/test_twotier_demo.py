"""``peerlab demo --only twotier`` (issue 5, item 5): servents of four link
classes start equal, the strong become ultrapeers, the weak their leaves; a
search by artist finds the Linkin Park tracks; the two-tier search costs
fewer messages than the flat one on the same servents."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_TIMEOUT = 240.0


@pytest.mark.slow
def test_twotier_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    env.update(TMPDIR=str(tmp_path), COLUMNS="200")
    p = subprocess.run(
        [sys.executable, "-m", "peerlab.cli", "demo", "--only", "twotier"],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT, env=env,
    )  # fmt: skip
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    # Roles: every cable/T1 line that became something is an ultrapeer or a
    # leaf; no modem or DSL line is an ultrapeer.
    rows = re.findall(r"(n\d\d)\s+│\s+(56K modem|DSL|cable|T1)\s+│[^│]+│\s+(ultrapeer|leaf)", out)
    assert len(rows) == 24, out
    assert all(role == "leaf" for _, link, role in rows if link in ("56K modem", "DSL")), out
    assert any(role == "ultrapeer" for _, link, role in rows if link in ("cable", "T1")), out
    # By artist: the four Linkin Park files, not the tribute by another band.
    assert out.count("Linkin Park │") >= 4 and "The Covers Band" not in out, out
    m = re.search(r"Two-tier: the same (\d+) files for ([\d,]+) messages instead of ([\d,]+)", out)
    assert m is not None, out
    tier, flat = (int(g.replace(",", "")) for g in m.group(2, 3))
    assert 0 < tier < flat
