"""The client of ``GET /browse``: list another node's shares directly.

peerlab's direct browse (served by
:mod:`peerlab.overlays.transfer.server`), used until the search networks land:
one HTTP/1.1 request on a fresh connection, a JSON answer bounded in size,
every field checked, and one callback with the result or the error.
Written only against :mod:`peerlab.runtime.base`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from peerlab.errors import RemoteProtocolError
from peerlab.overlays.httpget import HttpGet
from peerlab.proto.http import (
    Headers,
    Request,
    Response,
)
from peerlab.runtime.base import Address, Runtime
from peerlab.wire.urn import parse_sha1_urn, unb32

#: Largest browse answer read: a full listing (server cap 1000 files) with
#: long names and tags stays far below this, and a hostile peer cannot make us
#: buffer more.
MAX_BROWSE_RESPONSE = 8 * 1024 * 1024
#: Most files accepted from one answer (the server's own cap is lower).
MAX_BROWSE_FILES = 10_000
#: Longest file name or tag accepted from a peer, in characters.
MAX_FIELD_CHARS = 1024
#: Default number of files asked for.
DEFAULT_LIMIT = 200
_KINDS = frozenset({"audio", "video", "image", "document", "archive", "other"})


@dataclass(frozen=True)
class RemoteFile:
    """One file of a peer's browse answer: the JSON fields, plus where it is."""

    address: Address
    index: int
    name: str
    size: int
    urn: str
    #: Base32 of the file's ChunkList root, as sent (see ``chunk_root_bytes``).
    chunk_root: str
    kind: str
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    bitrate: int | None = None
    duration: float | None = None

    @property
    def sha1(self) -> bytes:
        return parse_sha1_urn(self.urn)

    @property
    def chunk_root_bytes(self) -> bytes:
        return unb32(self.chunk_root)


def _text(obj: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise RemoteProtocolError(f"browse entry has a bad {key!r}")
    return value


def _int(obj: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RemoteProtocolError(f"browse entry has a bad {key!r}")
    return value


def parse_browse(body: bytes, address: Address) -> list[RemoteFile]:
    """The files of a ``/browse`` JSON answer; garbage raises
    :class:`RemoteProtocolError` only."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RemoteProtocolError("browse answer is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise RemoteProtocolError("browse answer has no file list")
    entries = doc["files"]
    if len(entries) > MAX_BROWSE_FILES:
        raise RemoteProtocolError("browse answer lists too many files")
    files: list[RemoteFile] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise RemoteProtocolError("browse entry is not an object")
        name = _text(entry, "name")
        assert name is not None
        if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
            raise RemoteProtocolError(f"browse entry has an unsafe name {name[:80]!r}")
        urn = _text(entry, "urn")
        root = _text(entry, "chunk_root")
        assert urn is not None and root is not None
        parse_sha1_urn(urn)
        if len(unb32(root)) != 32:
            raise RemoteProtocolError("browse entry has a bad chunk_root")
        kind = _text(entry, "kind", optional=True) or "other"
        duration = entry.get("duration")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, int | float):
                raise RemoteProtocolError("browse entry has a bad duration")
            duration = float(duration)
            if not math.isfinite(duration) or duration < 0:
                raise RemoteProtocolError("browse entry has a bad duration")
        index = _int(entry, "index")
        size = _int(entry, "size")
        assert index is not None and size is not None
        files.append(
            RemoteFile(
                address=address,
                index=index,
                name=name,
                size=size,
                urn=urn,
                chunk_root=root,
                kind=kind if kind in _KINDS else "other",
                title=_text(entry, "title", optional=True),
                artist=_text(entry, "artist", optional=True),
                album=_text(entry, "album", optional=True),
                genre=_text(entry, "genre", optional=True),
                bitrate=_int(entry, "bitrate", optional=True),
                duration=duration,
            )
        )
    return files


BrowseDone = Callable[[list[RemoteFile] | None, Exception | None], None]


class BrowseRequest(HttpGet):
    """One browse in flight; :meth:`cancel` abandons it (``done`` is then
    called with a :class:`NetworkError`)."""

    closed_message = "connection closed before the browse answer"
    failed_prefix = "browse failed"
    too_large_message = "browse answer too large"
    cancelled_message = "browse cancelled"

    def __init__(
        self,
        runtime: Runtime,
        address: Address,
        query: str,
        limit: int,
        done: BrowseDone,
        timeout: float,
    ) -> None:
        self._done = done
        self.timeout_message = f"browse of {address[0]}:{address[1]} timed out"
        target = "/browse?" + urlencode({"q": query, "limit": str(max(0, int(limit)))})
        request = Request(
            "GET",
            target,
            Headers([("Host", f"{address[0]}:{address[1]}"), ("Connection", "close")]),
        )
        super().__init__(runtime, address, request, timeout=timeout, max_body=MAX_BROWSE_RESPONSE)

    def on_response(self, response: Response) -> None:
        if response.status != 200:
            raise RemoteProtocolError(f"browse refused: {response.status} {response.reason}")

    def on_body(self, body: bytes) -> list[RemoteFile]:
        return parse_browse(body, self.address)

    def deliver(self, files: list[RemoteFile] | None, exc: Exception | None) -> None:
        self.runtime.observer.event(
            "browse.done",
            peer=f"{self.address[0]}:{self.address[1]}",
            files=len(files) if files is not None else None,
            error=str(exc) if exc is not None else None,
        )
        self._done(files, exc)


def browse(
    runtime: Runtime,
    address: Address,
    query: str,
    limit: int,
    done: BrowseDone,
    timeout: float = 10.0,
) -> BrowseRequest:
    """List the files of the node at ``address`` matching ``query`` (empty:
    all, capped by the server).  ``done(files, None)`` or ``done(None, exc)``
    is called exactly once, from the runtime's loop, within ``timeout`` s."""
    return BrowseRequest(runtime, address, query, limit, done, timeout)
