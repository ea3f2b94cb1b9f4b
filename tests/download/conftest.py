"""Makes the download tests' helper module (dlkit.py, beside this file) and
the Push/GIV tests' kit (tests/transfer_push/pushkit.py) importable: pytest
runs with --import-mode=importlib, which puts no test folder on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _dir in (_HERE, _HERE.parent / "transfer_push"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))
