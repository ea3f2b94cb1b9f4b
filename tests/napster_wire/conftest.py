"""Make the helper module beside this file (napwirekit) importable: pytest runs
with --import-mode=importlib, which puts no test folder on sys.path."""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
