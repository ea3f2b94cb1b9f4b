"""Saving the routing table between runs (BEP 5 "Routing Table": "The routing
table should be saved between invocations of the client software").

What is kept: our node id (so the nodes that know us keep finding us where
they expect) and the good nodes of the table, as compact node info.  The
file is a bencoded dictionary::

    {"format": "peerlab-dht", "version": 1, "id": <20 bytes>,
     "nodes": <26 bytes per node>}

It is replaced atomically: written to a temporary file in the same folder,
fsynced, renamed over the old one, and the folder fsynced, so a crash at any
moment leaves either the old file or the new one.  On start the saved nodes
are not trusted as good: they are the first contacts of the bootstrap lookup,
and enter the table only by answering it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from peerlab.errors import LocalProtocolError, RemoteProtocolError, StorageError
from peerlab.wire.bencode import BencodeLimits
from peerlab.wire.bencode import decode as bdecode
from peerlab.wire.bencode import encode as bencode
from peerlab.wire.krpc import (
    COMPACT_NODE_BYTES,
    NODE_ID_BYTES,
    NodeInfo,
    decode_compact_peer,
)
from peerlab.wire.krpc import encode_compact_nodes as _encode_nodes

STATE_FORMAT = b"peerlab-dht"
STATE_VERSION = 1
#: Most nodes saved: a full table of 160 buckets of 8 (about 33 kB).
MAX_SAVED_NODES = 160 * 8
#: Largest state file we read.
MAX_STATE_BYTES = 64 * 1024
_LIMITS = BencodeLimits(max_depth=2, max_string_length=MAX_STATE_BYTES, max_list_length=16,
                        max_tokens=64)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DhtState:
    """Our node id and the nodes worth contacting first next time."""

    node_id: bytes
    nodes: tuple[NodeInfo, ...]


def encode_state(state: DhtState) -> bytes:
    nodes = state.nodes[:MAX_SAVED_NODES]
    return bencode({b"format": STATE_FORMAT, b"version": STATE_VERSION,
                    b"id": state.node_id, b"nodes": _encode_nodes(nodes)})  # fmt: skip


def decode_state(data: bytes) -> DhtState:
    """Parse a state file; :class:`~peerlab.errors.StorageError` if it is not one."""
    try:
        if len(data) > MAX_STATE_BYTES:
            raise RemoteProtocolError(f"{len(data)} bytes")
        doc = bdecode(data, _LIMITS)
    except RemoteProtocolError as exc:
        raise StorageError(f"not a DHT state file ({exc})") from None
    if not isinstance(doc, dict) or doc.get(b"format") != STATE_FORMAT:
        raise StorageError("not a DHT state file")
    if doc.get(b"version") != STATE_VERSION:
        raise StorageError(f"DHT state file version {doc.get(b'version')!r} is not supported")
    node_id, raw = doc.get(b"id"), doc.get(b"nodes")
    if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_BYTES:
        raise StorageError("DHT state file: bad node id")
    if not isinstance(raw, bytes) or len(raw) % COMPACT_NODE_BYTES:
        raise StorageError("DHT state file: bad node list")
    nodes = []
    for i in range(0, min(len(raw), MAX_SAVED_NODES * COMPACT_NODE_BYTES), COMPACT_NODE_BYTES):
        entry = raw[i : i + COMPACT_NODE_BYTES]
        nodes.append(NodeInfo(entry[:NODE_ID_BYTES], decode_compact_peer(entry[NODE_ID_BYTES:])))
    return DhtState(node_id, tuple(nodes))


def load_state(path: str | os.PathLike[str]) -> DhtState | None:
    """The saved state, None when there is no file; StorageError when it is
    unreadable or not a state file."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read the DHT state {p}: {exc.strerror or exc}") from None
    try:
        return decode_state(data)
    except StorageError as exc:
        raise StorageError(f"{p}: {exc}") from None


def save_state(path: str | os.PathLike[str], state: DhtState) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync folder)."""
    p = Path(path)
    try:
        data = encode_state(state)
    except LocalProtocolError as exc:
        raise StorageError(f"cannot encode the DHT state: {exc}") from None
    folder = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise StorageError(f"cannot write the DHT state in {folder}: "
                           f"{exc.strerror or exc}") from None  # fmt: skip
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write the DHT state {p}: {exc.strerror or exc}") from None
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


__all__ = ["MAX_SAVED_NODES", "DhtState", "decode_state", "encode_state", "load_state",
           "save_state"]  # fmt: skip
