"""Same scenario, same seed: the same trace digest and byte-identical CSV
(issue 7, item 1); another seed gives another trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerlab.simulate.engine import run_scenario


@pytest.mark.slow
def test_same_seed_same_trace_and_bytes(tiny: Path, tmp_path: Path) -> None:
    one = run_scenario(str(tiny), out=tmp_path / "one")
    two = run_scenario(str(tiny), out=tmp_path / "two")
    other = run_scenario(str(tiny), seed=6, out=tmp_path / "other")
    d1, d2, d3 = (r.reports[0].trace_digest for r in (one, two, other))
    assert len(d1) == 32 and d1 == d2
    assert d3 != d1
    csv1 = (tmp_path / "one" / "search.csv").read_bytes()
    assert csv1 == (tmp_path / "two" / "search.csv").read_bytes()
    assert csv1 != (tmp_path / "other" / "search.csv").read_bytes()
    assert (tmp_path / "one" / "digest.txt").read_text() == f"search {d1}\n"
    # 2 sizes x (napster, farm, gnutella at TTL 1 and 3)
    assert csv1.count(b"\n") == 1 + 2 * 4
