"""The node's mainline DHT node (BEP 5), for its BitTorrent client (issue 6, item 5).

The node runs one :class:`~peerlab.overlays.dht.DhtNode` beside its
BitTorrent session and hands it to the session (``Session(..., dht=)``), so
torrents and magnet links with no tracker find their peers, and every
torrent is announced in the DHT beside its trackers.  Settings (the
``[bittorrent]`` table of the config file):

* ``dht`` (``bittorrent_dht``, default true): run it;
* ``dht_port`` (UDP; 0: any free port); unset: any free port at the first
  start, the same one at later starts while it is free (kept in
  :data:`PORT_FILE`), so peers and other nodes that saved our address find
  us again;
* ``dht_bootstrap``: ``host:port`` of nodes to join through, e.g. the
  public routers ``router.bittorrent.com:6881, dht.transmissionbt.com:6881``.
  Names are resolved once at start (a DHT answer must come from the address
  asked, so names cannot go on the wire).  Without any, the node joins
  through the routing table it saved last time, the PORT messages of the
  peers it meets (BEP 5) and the ``nodes`` of trackerless ``.torrent`` files.

The routing table (our node id and its good nodes) is saved to
``<data_dir>/bittorrent/dht.state`` every few minutes and when the node
stops, and read back at start: a restarted node keeps its id and rejoins
without a bootstrap node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from peerlab.errors import AddressInUse
from peerlab.overlays.dht import DhtConfig, DhtNode
from peerlab.overlays.dht.node import MAX_ROUTERS
from peerlab.runtime.base import Address, Runtime
from peerlab.storage.pieces import write_atomic

__all__ = [
    "PORT_FILE",
    "STATE_FILE",
    "dht_status",
    "resolve_bootstrap",
    "start_node_dht",
]

log = logging.getLogger("peerlab.dht")

#: The saved routing table, in the node's BitTorrent state folder.
STATE_FILE: Final = "dht.state"
#: The UDP port of the last run, in the same folder.
PORT_FILE: Final = "dht.port"
#: Seconds one bootstrap name may take to resolve before it is skipped: the
#: node must not wait long at start for a name server.
RESOLVE_TIMEOUT: Final = 5.0


async def resolve_bootstrap(entries: Sequence[tuple[str, int]]) -> tuple[Address, ...]:
    """Addresses of the bootstrap nodes (IPv4, as the DHT speaks it): IP
    literals as they are, names resolved; one that does not resolve is
    logged and skipped.  At most :data:`~peerlab.overlays.dht.node.MAX_ROUTERS`."""
    loop = asyncio.get_running_loop()
    out: dict[Address, None] = {}
    for host, port in entries[:MAX_ROUTERS]:
        try:
            out[(str(ipaddress.IPv4Address(host)), port)] = None
            continue
        except ValueError:
            pass
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM),
                RESOLVE_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            log.warning("dht: bootstrap node %s:%d not resolved (%s), skipped", host, port, exc)
            continue
        for *_, sockaddr in infos[:1]:
            out[(str(sockaddr[0]), int(sockaddr[1]))] = None
    return tuple(out)


def start_node_dht(
    runtime: Runtime,
    *,
    host: str,
    port: int | None,
    bootstrap: Sequence[Address],
    state_dir: Path,
) -> DhtNode:
    """Start the node's DHT node on ``host``:``port`` (None: the port of
    the last run if it is free, else any free one), its table kept in
    ``state_dir``.  Raises :class:`~peerlab.errors.AddressInUse` when an
    explicit port is taken."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = str(state_dir / STATE_FILE)
    port_file = state_dir / PORT_FILE

    def make(p: int) -> DhtNode:
        dht = DhtNode(runtime, DhtConfig(host=host, port=p, bootstrap=tuple(bootstrap),
                                         state_path=state))  # fmt: skip
        dht.start()
        return dht

    if port is not None:
        try:
            return make(port)
        except AddressInUse:
            raise AddressInUse(
                f"cannot run the DHT on UDP {host}:{port}: the port is in use "
                "(bittorrent dht_port, 0 for any free port)"
            ) from None
    dht: DhtNode | None = None
    last = _remembered_port(port_file)
    if last:
        with contextlib.suppress(AddressInUse):
            dht = make(last)
    if dht is None:
        dht = make(0)
    if dht.address is not None and dht.address[1] != last:
        try:
            write_atomic(port_file, b"%d\n" % dht.address[1])
        except OSError as exc:
            log.warning("dht: cannot remember the port: %s", exc)
    return dht


def _remembered_port(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() and 0 < int(text) <= 0xFFFF else 0


def dht_status(dht: DhtNode | None) -> dict[str, Any] | None:
    """The DHT at a glance, for ``peerlab status`` and the control API."""
    if dht is None:
        return None
    st = dht.stats()
    address = st.address
    return {
        "node_id": st.node_id.hex(),
        "address": f"{address[0]}:{address[1]}" if address is not None else None,
        "nodes": st.routing.nodes,
        "good_nodes": st.routing.good,
        "buckets": st.routing.buckets,
        "stored_info_hashes": st.stored_info_hashes,
        "stored_peers": st.stored_peers,
        "lookups": st.lookups,
    }
