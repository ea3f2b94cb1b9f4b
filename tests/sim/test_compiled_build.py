"""The compiled build (``make fast``) behaves exactly like pure Python.

``.venv-fast`` holds a non-editable install whose flood-path modules mypyc
compiled (``setup.py``, ``PEERLAB_MYPYC=1``).  mypyc enforces annotations at
run time and has its own semantics for classes, so a compiled module could
drift from its source; a small flood run both ways must give the same trace
digest, deliveries and hits.  ``make test`` builds ``.venv-fast`` first.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peerlab.sim.topology import flood_scenario

ROOT = Path(__file__).resolve().parents[2]
FAST_PYTHON = ROOT / ".venv-fast" / "bin" / "python"
#: A few hundred servents and a few dozen queries: every message kind of a
#: flood (handshake pings and pongs, queries, hits), a second or two each way.
NODES, QUERIES = 300, 40
#: The child is killed after this long (it takes a few seconds).
CHILD_LIMIT_S = 120.0

CHILD = """
import importlib, json, sys
from peerlab.sim.topology import flood_scenario
names = json.loads(sys.argv[1])
files = {name: importlib.import_module(name).__file__ for name in names}
r = flood_scenario(int(sys.argv[2]), int(sys.argv[3]))
import peerlab
print(json.dumps({"files": files, "package": peerlab.__file__, "digest": r.digest,
                  "deliveries": r.deliveries, "hits": r.hits}))
"""


def compiled_modules() -> list[str]:
    """The module names ``setup.py`` hands to mypyc (its ``COMPILED`` list)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def test_compiled_flood_matches_pure(tmp_path: Path) -> None:
    if not FAST_PYTHON.exists():
        pytest.fail(f"{FAST_PYTHON} is missing: build the compiled venv with `make fast`")
    if Path(sys.prefix).resolve() == FAST_PYTHON.parents[1].resolve():
        pytest.skip("the suite itself runs compiled here: no pure run to compare with")
    names = compiled_modules()
    assert "peerlab.sim.net" in names and "peerlab.overlays.gnutella.servent" in names
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(FAST_PYTHON), "-c", CHILD, json.dumps(names), str(NODES), str(QUERIES)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=CHILD_LIMIT_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fast = json.loads(proc.stdout.strip().splitlines()[-1])

    # The child ran the installed package, its listed modules as extensions.
    assert not Path(fast["package"]).is_relative_to(ROOT / "src"), fast["package"]
    not_compiled = {n: f for n, f in fast["files"].items() if not f.endswith(".so")}
    assert not not_compiled, f"not compiled in .venv-fast (run `make fast`): {not_compiled}"

    # This interpreter runs the sources themselves.
    assert all(str(importlib.import_module(n).__file__).endswith(".py") for n in names)

    pure = flood_scenario(NODES, QUERIES)
    assert pure.deliveries > 10 * NODES and pure.hits > 0
    got = (fast["digest"], fast["deliveries"], fast["hits"])
    assert got == (pure.digest, pure.deliveries, pure.hits), (
        "compiled and pure floods differ (after a source change, rebuild with `make fast`)"
    )
