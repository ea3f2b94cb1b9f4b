"""Fixtures of the web page tests (helpers live in webkit.py beside this file)."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest runs with --import-mode=importlib, which puts no test folder on
# sys.path: make the helper module beside this file importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
