"""The one address scheme of simulated networks.

Node ``i`` of a simulated network is at :func:`node_ip` ``(i)`` (10.0.0.1
upwards), server ``k`` (an index server, a tracker) at :func:`server_ip`
``(k)`` (10.255.0.1 upwards), whoever builds the network: the topology
builder, the scenario engine's networks, a test world.  Equal indices,
equal addresses, so a host's seeded randomness (derived from its IP) is
the same wherever it is built.
"""

from __future__ import annotations

from peerlab.errors import ConfigError

#: Nodes :func:`node_ip` numbers: 10.0.0.1 up to just below 10.255.0.0,
#: which :func:`server_ip` keeps for servers.
MAX_NODE_INDEX = (255 << 16) - 2

#: Servers :func:`server_ip` numbers: 10.255.0.1 to 10.255.0.254.
MAX_SERVERS = 254


def node_ip(index: int) -> str:
    """The IP of node ``index``: 10.x.y.z from index + 1 (10.0.0.1 upwards,
    some 16 million nodes)."""
    if not 0 <= index <= MAX_NODE_INDEX:
        raise ConfigError(f"node index {index} is outside 0..{MAX_NODE_INDEX}")
    n = index + 1
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def server_ip(k: int) -> str:
    """The IP of server ``k``: 10.255.0.1 upwards, apart from every node's."""
    if not 0 <= k < MAX_SERVERS:
        raise ConfigError(f"server index {k} is outside 0..{MAX_SERVERS - 1}")
    return f"10.255.0.{k + 1}"


__all__ = ["MAX_NODE_INDEX", "MAX_SERVERS", "node_ip", "server_ip"]
