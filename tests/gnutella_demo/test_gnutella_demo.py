"""``peerlab demo``'s Gnutella part (issue 4, section 5), run alone with
``--only gnutella``: twelve servents, a TTL-1 flood that reaches only part of
the network and a TTL-7 one that reaches all of it, with message counts, then
a swarmed download with a firewalled source, verified; Ctrl-C during it
leaves nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from demokit import assert_ctrl_c_stops_everything, assert_left_nothing, run_demo

SERVENTS = 12
#: The flood table is read cell by cell: wide enough that no row wraps.
COLUMNS = 220


def _flood_row(out: str, ttl: int) -> list[int]:
    """The numbers of the flood table's row for ``ttl``."""
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == str(ttl) and len(cells) >= 10 and " of " in cells[1]:
            return [int(cells[1].split(" of ")[0])] + [int(c.replace(",", "")) for c in cells[3:]]
    raise AssertionError(f"no flood row for TTL {ttl} in:\n{out}")


@pytest.mark.slow
def test_demo_gnutella_part(tmp_path: Path) -> None:
    p = run_demo(tmp_path, "--only", "gnutella", columns=COLUMNS)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    for n in range(2, SERVENTS + 1):  # each told only one other, its parent
        assert f"g{n:02d} 127.0.0.1:" in out and f"knows --gnutella g{n // 2:02d}" in out
    assert "--gnutella-serve (the first)" in out and "firewalled knows" in out
    small, mid, large = _flood_row(out, 1), _flood_row(out, 2), _flood_row(out, 7)
    # reached, query sent/received/dup/TTL-dropped/routed, hit sent/routed
    assert 1 <= small[0] < SERVENTS - 1 and large[0] == SERVENTS - 1
    assert small[0] <= mid[0] <= large[0]
    assert small[1] == small[2] == small[0]  # TTL 1: one copy to each neighbour, no further
    assert small[3] == 0 and small[5] == 0  # no duplicates, nothing routed
    assert large[2] > large[0] and large[3] > 0 and large[5] > 0  # the flood's duplicates
    assert large[6] >= 3  # hits from the three sharers of the soundtrack at least
    assert "The Big Lebowski - The Man in Me.mp3" in out
    assert "SHA-1 matches urn:sha1:" in out
    assert "identical to the original, byte for byte" in out
    m = re.search(r"from (\d+) servents at once, ([\d,]+) of them pushed by a firewalled one", out)
    assert m is not None, out
    assert int(m.group(1)) >= 2 and int(m.group(2).replace(",", "")) > 0
    assert_left_nothing(tmp_path)


@pytest.mark.slow
def test_ctrl_c_in_the_gnutella_part_stops_everything(tmp_path: Path) -> None:
    assert_ctrl_c_stops_everything(
        tmp_path, ["--only", "gnutella"], "search 'lebowski'", SERVENTS, columns=COLUMNS
    )
