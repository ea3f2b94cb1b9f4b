"""The simulated world: virtual time, in-memory hosts and links.

``Simulator(seed)`` holds one event heap and the hosts;
``sim.add_host(ip, up=..., down=..., latency=..., loss=...)`` returns a
:class:`SimHost` whose ``runtime`` is a :class:`~peerlab.runtime.base.Runtime`
that protocol and node code run on unchanged.  ``sim.run(until)`` and
``sim.run_until(pred, timeout)`` drive it; ``sim.trace_digest()`` fingerprints
everything delivered, so equal seeds give equal digests.

:mod:`peerlab.sim.topology` builds networks of real Gnutella servents in one
simulator (link classes, random/ring/line topologies, in-memory shares) and
runs the flooding scenario of the ``sim`` benchmark.
"""

from peerlab.sim.engine import DEFAULT_EPOCH, SimTimer, Simulator, derive_seed
from peerlab.sim.net import (
    Packet,
    PacketHook,
    PacketSink,
    SimDatagramEndpoint,
    SimHost,
    SimListener,
)
from peerlab.sim.runtime import SimRuntime
from peerlab.sim.tcp import SimConnecting, SimStream

__all__ = [
    "DEFAULT_EPOCH",
    "Packet",
    "PacketHook",
    "PacketSink",
    "SimConnecting",
    "SimDatagramEndpoint",
    "SimHost",
    "SimListener",
    "SimRuntime",
    "SimStream",
    "SimTimer",
    "Simulator",
    "derive_seed",
]
