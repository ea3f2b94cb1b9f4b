"""The host cache: Gnutella servents this one may connect to, kept across runs.

A new servent joins by knowing one servent already in the network (the
lecture); from then on it learns addresses from every handshake (``X-Try``,
``X-Try-Ultrapeers``, the peer's own ``Listen-IP``: ``handshaking_0.6``
section 3 and ``ultra-peers`` 3.1), from Pongs (``ping-pong``; GGEP ``IPP``)
and from GWebCaches (``gwcache``), and keeps the freshest of them
(:data:`MAX_HOSTS`) for the next start, in a file replaced atomically
(written to a temporary file, fsynced, renamed over the old one, the folder
fsynced): a crash leaves the old list or the new one, never a torn file.

Hosts are kept in least-recently-seen order; when the cache is full the
stalest goes.  A host that failed us (refused, reset, a 503) is not tried
again before its back-off ends (:data:`RETRY_BACKOFF` doubling up to
:data:`MAX_RETRY_BACKOFF`); after :data:`MAX_FAILURES` failures in a row it
is forgotten.

Public API: :class:`HostCache`, :class:`HostEntry`, :func:`usable_address`,
:data:`MAX_HOSTS`, :data:`HOST_FILE_FORMAT`.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerlab.errors import StorageError
from peerlab.runtime.base import Address

#: Hosts kept.  LimeWire's host catcher kept 1,000 (10,000 ultrapeers in
#: later versions); a thousand fresh addresses is plenty to rejoin.
MAX_HOSTS = 1000
#: Seconds before a host that failed us is tried again (doubling per failure).
RETRY_BACKOFF = 30.0
#: Longest back-off.
MAX_RETRY_BACKOFF = 3600.0
#: Failures in a row after which a host is forgotten.
MAX_FAILURES = 5
#: Largest host file read back (a full cache is ~60 KB).
MAX_FILE_BYTES = 1024 * 1024
#: What the first key of the host file says.
HOST_FILE_FORMAT = "peerlab-gnutella-hosts"
HOST_FILE_VERSION = 1


def usable_address(address: Address) -> bool:
    """Can ``address`` be connected to at all?  IPv4 only (Gnutella's Pongs
    and Query Hits carry 4-byte addresses), never 0.0.0.0, broadcast or
    multicast, port 1-65535."""
    host, port = address
    if not isinstance(port, int) or not 0 < port < 65536:
        return False
    return _usable_host(host) if isinstance(host, str) else False


#: Hosts whose check is remembered: about the servents of a large network.
_HOST_CHECKS_KEPT = 16384


@functools.lru_cache(maxsize=_HOST_CHECKS_KEPT)
def _usable_host(host: str) -> bool:
    """The host half of :func:`usable_address`, remembered: every Pong and
    handshake asks it again about the same few thousand addresses."""
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return False
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        return False
    return not (octets[0] == 0 or octets[0] >= 224)


@dataclass(slots=True)
class HostEntry:
    """One known servent."""

    host: str
    port: int
    #: Wall-clock time (Unix seconds) we last heard of it.
    last_seen: float
    #: It said it is an ultrapeer (X-Try-Ultrapeers, Pong GGEP ``UP``, X-Ultrapeer).
    ultrapeer: bool = False
    #: Where we heard of it: bootstrap, handshake, x-try, pong, gwebcache, file.
    source: str = ""
    failures: int = 0
    #: Monotonic time before which we do not try it again (not saved).
    retry_at: float = 0.0

    @property
    def address(self) -> Address:
        return (self.host, self.port)


class HostCache:
    """Known servents, freshest last; optionally saved in ``path``."""

    def __init__(self, path: Path | str | None = None, max_hosts: int = MAX_HOSTS) -> None:
        self.path = Path(path) if path is not None else None
        self.max_hosts = max_hosts
        self._hosts: OrderedDict[Address, HostEntry] = OrderedDict()
        #: Changed since the last snapshot.
        self.dirty = False

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, address: object) -> bool:
        return address in self._hosts

    def get(self, address: Address) -> HostEntry | None:
        return self._hosts.get(address)

    def entries(self) -> list[HostEntry]:
        """Every host, freshest first."""
        return list(reversed(self._hosts.values()))

    def add(
        self, address: Address, *, seen: float, ultrapeer: bool = False, source: str = ""
    ) -> bool:
        """Record that ``address`` was heard of at wall time ``seen``; it
        becomes the freshest.  ``False`` when the address is unusable."""
        if not usable_address(address):
            return False
        entry = self._hosts.get(address)
        if entry is None:
            entry = HostEntry(address[0], address[1], seen, ultrapeer, source)
            self._hosts[address] = entry
            while len(self._hosts) > self.max_hosts:
                self._hosts.popitem(last=False)
        else:
            entry.last_seen = max(entry.last_seen, seen)
            entry.ultrapeer = entry.ultrapeer or ultrapeer
            if source and not entry.source:
                entry.source = source
            self._hosts.move_to_end(address)
        self.dirty = True
        return True

    def add_many(
        self, addresses: Iterable[Address], *, seen: float, ultrapeer: bool = False, source: str
    ) -> int:
        return sum(self.add(a, seen=seen, ultrapeer=ultrapeer, source=source) for a in addresses)

    def remove(self, address: Address) -> None:
        if self._hosts.pop(address, None) is not None:
            self.dirty = True

    def failed(self, address: Address, now: float) -> None:
        """A connection attempt failed: back off, forget it after too many."""
        entry = self._hosts.get(address)
        if entry is None:
            return
        entry.failures += 1
        if entry.failures >= MAX_FAILURES:
            self.remove(address)
            return
        backoff = min(RETRY_BACKOFF * (2 ** (entry.failures - 1)), MAX_RETRY_BACKOFF)
        entry.retry_at = now + backoff

    def busy(self, address: Address, now: float, backoff: float = RETRY_BACKOFF) -> None:
        """The host answered but had no room (503): try it in ``backoff`` s, keep it."""
        entry = self._hosts.get(address)
        if entry is not None:
            entry.retry_at = now + backoff

    def succeeded(self, address: Address, *, seen: float) -> None:
        entry = self._hosts.get(address)
        if entry is not None:
            entry.failures = 0
            entry.retry_at = 0.0
            entry.last_seen = max(entry.last_seen, seen)
            self._hosts.move_to_end(address)
            self.dirty = True

    def candidates(
        self,
        now: float,
        exclude: Iterable[Address] = (),
        limit: int = 10,
        *,
        ultrapeers_only: bool = False,
    ) -> list[Address]:
        """Up to ``limit`` hosts to try now, freshest first (only those known
        as ultrapeers when ``ultrapeers_only``: what a leaf dials)."""
        skip = set(exclude)
        out: list[Address] = []
        for address, entry in reversed(self._hosts.items()):
            if address in skip or entry.retry_at > now or (ultrapeers_only and not entry.ultrapeer):
                continue
            out.append(address)
            if len(out) >= limit:
                break
        return out

    def freshest(
        self, limit: int, exclude: Iterable[Address] = (), *, ultrapeers_only: bool = False
    ) -> list[Address]:
        """The ``limit`` freshest hosts (for X-Try headers and Pong answers)."""
        skip = set(exclude)
        out: list[Address] = []
        for address, entry in reversed(self._hosts.items()):
            if address in skip or (ultrapeers_only and not entry.ultrapeer):
                continue
            out.append(address)
            if len(out) >= limit:
                break
        return out

    # ---------------------------------------------------------- persistence

    def snapshot(self, wall: float) -> bytes:
        """The cache as the bytes of its file (oldest first, so that loading
        it back restores the order)."""
        doc = {
            "format": HOST_FILE_FORMAT,
            "version": HOST_FILE_VERSION,
            "saved_at": wall,
            "hosts": [[e.host, e.port, e.last_seen, e.ultrapeer] for e in self._hosts.values()],
        }
        self.dirty = False
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def load(self) -> int:
        """Read the file back (missing: nothing to do); returns hosts loaded.

        Raises :class:`~peerlab.errors.StorageError` when the file exists but
        is not a host file (we never overwrite what we cannot read)."""
        if self.path is None:
            return 0
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(
                f"cannot read the host cache {self.path}: {exc.strerror or exc}"
            ) from None
        if len(data) > MAX_FILE_BYTES:
            raise StorageError(f"host cache {self.path} is larger than {MAX_FILE_BYTES} bytes")
        try:
            doc: Any = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise StorageError(f"{self.path} is not a readable host cache: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != HOST_FILE_FORMAT:
            raise StorageError(f"{self.path} is not a peerlab host cache")
        hosts = doc.get("hosts")
        if not isinstance(hosts, list):
            raise StorageError(f"{self.path}: 'hosts' is not a list")
        n = 0
        for item in hosts[-self.max_hosts :]:
            if not (isinstance(item, list) and len(item) >= 3):
                continue
            host, port, seen = item[0], item[1], item[2]
            up = bool(item[3]) if len(item) > 3 else False
            if not (isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool)):
                continue
            if not isinstance(seen, int | float):
                continue
            if self.add((host, port), seen=float(seen), ultrapeer=up, source="file"):
                n += 1
        self.dirty = False
        return n

    def write(self, data: bytes) -> None:
        """Replace the file with ``data`` atomically (blocking: run it off
        the event loop)."""
        if self.path is None:
            return
        write_atomically(self.path, data)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same
    folder: fsync, rename over, fsync the folder."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise StorageError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
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


__all__ = [
    "HOST_FILE_FORMAT",
    "MAX_FAILURES",
    "MAX_HOSTS",
    "RETRY_BACKOFF",
    "HostCache",
    "HostEntry",
    "usable_address",
    "write_atomically",
]
