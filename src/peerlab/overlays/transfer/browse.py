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

from peerlab.errors import NetworkError, PeerlabError, RemoteProtocolError
from peerlab.proto.http import (
    ClientConnection,
    Data,
    EndOfMessage,
    Headers,
    Request,
    Response,
)
from peerlab.runtime.base import Address, BaseStreamHandler, Connecting, Runtime, Stream, Timer
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


class BrowseRequest(BaseStreamHandler):
    """One browse in flight; :meth:`cancel` abandons it (``done`` is then
    called with a :class:`NetworkError`)."""

    def __init__(
        self,
        runtime: Runtime,
        address: Address,
        query: str,
        limit: int,
        done: BrowseDone,
        timeout: float,
    ) -> None:
        self.runtime = runtime
        self.address = address
        self._done: BrowseDone | None = done
        self.conn = ClientConnection()
        self.body = bytearray()
        self.status: int | None = None
        self.stream: Stream | None = None
        target = "/browse?" + urlencode({"q": query, "limit": str(max(0, int(limit)))})
        self.conn.send_request(
            Request(
                "GET",
                target,
                Headers([("Host", f"{address[0]}:{address[1]}"), ("Connection", "close")]),
            )
        )
        self._timer: Timer | None = runtime.call_later(timeout, self._timed_out)
        self._connecting: Connecting | None = runtime.connect(address, self, timeout=timeout)

    # ----------------------------------------------------------- finishing

    def _finish(self, files: list[RemoteFile] | None, exc: Exception | None) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.stream is not None:
            if exc is None:
                self.stream.close()
            else:
                self.stream.abort()
        elif self._connecting is not None:
            self._connecting.cancel()
        self.runtime.observer.event(
            "browse.done",
            peer=f"{self.address[0]}:{self.address[1]}",
            files=len(files) if files is not None else None,
            error=str(exc) if exc is not None else None,
        )
        done(files, exc)

    def cancel(self) -> None:
        self._finish(None, NetworkError("browse cancelled"))

    def _timed_out(self) -> None:
        self._timer = None
        self._finish(None, NetworkError(f"browse of {self.address[0]}:{self.address[1]} timed out"))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except PeerlabError as exc:
            self._finish(None, exc)
        except Exception as exc:  # the handler boundary: report, never raise
            self._finish(None, RemoteProtocolError(f"browse failed: {exc!r}"))

    # ---------------------------------------------------- runtime callbacks

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self._connecting = None
        if self._done is None:
            stream.abort()
            return
        self._guard(lambda: stream.write(self.conn.data_to_send()))

    def connection_failed(self, exc: NetworkError) -> None:
        self._connecting = None
        self._finish(None, exc)

    def data_received(self, data: bytes) -> None:
        self._guard(lambda: self._events(self.conn.receive_data(data)))

    def eof_received(self) -> None:
        self._guard(lambda: self._events(self.conn.receive_eof()))

    def connection_lost(self, exc: NetworkError | None) -> None:
        self.stream = None
        self._finish(None, exc or NetworkError("connection closed before the browse answer"))

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if self._done is None:
                return
            if isinstance(ev, Response):
                self.status = ev.status
                if ev.status != 200:
                    raise RemoteProtocolError(f"browse refused: {ev.status} {ev.reason}")
                length = ev.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > MAX_BROWSE_RESPONSE:
                    raise RemoteProtocolError("browse answer too large")
            elif isinstance(ev, Data):
                self.body += ev.data
                if len(self.body) > MAX_BROWSE_RESPONSE:
                    raise RemoteProtocolError("browse answer too large")
            elif isinstance(ev, EndOfMessage):
                files = parse_browse(bytes(self.body), self.address)
                self._finish(files, None)


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
