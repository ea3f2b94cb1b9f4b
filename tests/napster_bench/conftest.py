"""The Napster benchmark's modules live in benchmarks/, which is no package:
put that folder on sys.path so the tests can import the load generator and
the benchmark's process helpers."""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parents[2] / "benchmarks")
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)
