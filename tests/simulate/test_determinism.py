"""Same scenario, same seed: the same trace digest and byte-identical CSV
(issue 7, item 1); another seed gives another trace."""

from __future__ import annotations

import os
import subprocess
import sys
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


#: A Napster network whose index server dies (the resilience and churn
#: experiments' event): the digest of its trace, printed.
_KILL_SERVER = """
from peerlab.sim import Simulator
from peerlab.simulate.nets import NapsterNet
from peerlab.simulate.population import build_population
from peerlab.simulate.scenario import load_scenario

pop = build_population(load_scenario({path!r}), 40, 1)
sim = Simulator(7)
net = NapsterNet(sim, pop)
assert net.wait_connected()
net.kill_server(0)
sim.run(sim.now + 5)
print(sim.trace_digest())
"""


def test_a_server_dying_traces_the_same_in_every_process(tiny: Path) -> None:
    """The server closes its clients' connections in the order they came,
    not in a set's order (object addresses: another order in each process)."""
    code = _KILL_SERVER.format(path=str(tiny))
    digests = set()
    for run in range(3):
        env = dict(os.environ, PYTHONHASHSEED=str(run))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1
