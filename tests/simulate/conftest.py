"""Small scenarios for the simulate tests: a few dozen peers, so each run
takes a second or two."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """
name = "tiny"
seed = 5
experiments = ["search"]

[population]
nodes = [24, 40]
free_riders = 0.5
links = { dsl = 0.5, cable = 0.5 }

[files]
catalog = 40
per_sharer = 4
zipf = 1.0

[topology]
kind = "random"
degree = 4

[queries]
count = 12
interval = 0.05
wait = 5.0

[search]
architectures = ["napster", "napster-farm", "gnutella"]
ttls = [1, 3]
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A tiny search scenario file."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path
