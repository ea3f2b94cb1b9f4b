#!/usr/bin/env python3
"""Run peerlab's benchmarks: ``make bench`` (every area) or ``make bench ONLY=area``.

Each ``benchmarks/bench_<area>.py`` defines ``run(bench: Bench) -> None`` and
reports figures with ``bench.figure("area.name", value, unit, beside=[...])``;
``beside`` names the reference figures measured in the same run that this one
is to be read against.  Every figure is printed as one line and all of them are
written to ``benchmarks/latest.json``, a flat object keyed ``area.figure``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.figures: dict[str, float] = {}
        self.units: dict[str, str] = {}
        self.pending: list[tuple[str, list[str]]] = []

    def figure(self, key: str, value: float, unit: str, beside: list[str] | None = None) -> None:
        self.figures[key] = round(float(value), 2)
        self.units[key] = unit
        line = f"{key:32s} {value:12.1f} {unit}"
        refs = [r for r in (beside or []) if r in self.figures]
        if refs:
            line += "   (" + ", ".join(
                f"{r} {self.figures[r]:.1f} {self.units[r]}" for r in refs
            ) + ")"
        print(line, flush=True)

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run only the areas whose name starts with this")
    ap.add_argument("--workdir", type=Path, default=HERE / ".data")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.workdir)
    modules = sorted(HERE.glob("bench_*.py"))
    ran = 0
    for path in modules:
        area = path.stem[len("bench_") :]
        if args.only and not area.startswith(args.only):
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{area}", path)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(f"== {area}", flush=True)
        t0 = time.perf_counter()
        mod.run(bench)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
        ran += 1
    if not ran:
        print(f"no benchmark area matches {args.only!r}", file=sys.stderr)
        return 2
    out = HERE / "latest.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(bench.figures)
    out.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
