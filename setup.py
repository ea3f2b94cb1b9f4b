"""peerlab's optional compiled build (``make fast``), the way black ships mypyc wheels.

Everything about the package lives in ``pyproject.toml``; this file only adds
C extensions, and only when the environment says ``PEERLAB_MYPYC=1``: then
mypyc (it comes with mypy) compiles the simulator's flood path -- its
event loop, simulated network and TCP model, the runtime's timer and stream
driver, Gnutella's connection machine, the servent with its flow control
and routing table -- into extension modules that
stand in for those ``.py`` files in the installed package.  Without the
variable this is a plain setuptools build: ``.venv``'s editable install and
the tests run pure Python.

Compiled and pure builds behave the same, trace digest for trace digest
(``tests/sim/test_compiled_build.py`` checks it).  Build it non-editable
(``pip install --no-build-isolation .``): an in-place or editable build
would put the ``.so`` files beside the sources, where they would shadow the
``.py`` files in the editable venv, so this file refuses those.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

#: setuptools commands that build extensions into the source tree.
IN_PLACE = {"develop", "editable_wheel", "--inplace", "-i"}

#: The modules mypyc compiles, relative to this file: the query phase's hot
#: path.  Chosen by measurement (README, "The simulator at scale").  Left
#: out, and why: ``wire/ggep.py`` and the servent's pong cache, host cache,
#: counters and search (compiled, no gain); ``wire/gnutella.py`` (mypyc makes
#: a dataclass's ``ClassVar`` a field, mypyc issue 1122, and its messages
#: carry ``TYPE`` that way).  ``runtime/timers.py`` holds the one class of
#: the runtime interface the simulator's timers extend (a compiled class can
#: only extend a compiled one); the rest of ``runtime/base.py`` is
#: ``@runtime_checkable`` protocols, which mypyc cannot compile.
COMPILED = [
    "src/peerlab/runtime/timers.py",
    "src/peerlab/runtime/driver.py",
    "src/peerlab/sim/engine.py",
    "src/peerlab/sim/net.py",
    "src/peerlab/sim/tcp.py",
    "src/peerlab/sim/runtime.py",
    "src/peerlab/proto/gnutella.py",
    "src/peerlab/overlays/gnutella/servent.py",
    "src/peerlab/overlays/gnutella/flow.py",
    "src/peerlab/overlays/gnutella/router.py",
]


def ext_modules() -> list[object]:
    """mypyc's extension modules when ``PEERLAB_MYPYC=1``, else none."""
    if os.environ.get("PEERLAB_MYPYC") != "1":
        return []
    if IN_PLACE & set(sys.argv[1:]):
        raise SystemExit(
            "PEERLAB_MYPYC=1 builds only non-editable installs (`make fast`): compiled "
            "modules in src/ would shadow the sources"
        )
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise SystemExit(
            "PEERLAB_MYPYC=1 needs mypyc (pip install mypy) in the building environment: "
            "build with `make fast`, or pip install --no-build-isolation"
        ) from exc

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=ext_modules())
