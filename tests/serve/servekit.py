"""Helpers for the upload service tests (imported by name: conftest.py puts this
folder on sys.path, as pytest's importlib mode does not): a real catalog over
generated shares, a service on 127.0.0.1 and a small raw HTTP client."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from peerlab.overlays.transfer.server import UploadConfig, UploadService
from peerlab.proto.http import ClientConnection, Data, EndOfMessage, Headers, Request, Response
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.runtime.base import RecordingObserver
from peerlab.storage.catalog import Catalog

#: Seconds any single network step of a test may take before it fails.
STEP_TIMEOUT = 20.0

BIG_SIZE = 3 * 1024 * 1024 + 12345
UNICODE_NAME = "Björk – Jóga (live).mp3"


def pattern(size: int, seed: int) -> bytes:
    """Deterministic, non-repeating-looking content."""
    return (bytes(range(256)) * (size // 256 + 2))[seed % 256 : seed % 256 + size]


@dataclass
class Shares:
    root: Path
    outside: Path
    contents: dict[str, bytes]
    catalog: Catalog

    def file(self, name: str):  # type: ignore[no-untyped-def]
        for f in self.catalog.files():
            if f.name == name:
                return f
        raise KeyError(name)


def make_shares(tmp_path: Path) -> Shares:
    root = tmp_path / "shared"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"TOP SECRET, never served\n")
    contents = {
        "big.bin": os.urandom(BIG_SIZE),
        "small.txt": b"hello from peerlab\n",
        UNICODE_NAME: pattern(70_000, 7),
        "empty.dat": b"",
        "swap-me.txt": b"innocent content\n",
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.add_folder(root)
    catalog.scan()
    assert catalog.count() == len(contents)
    return Shares(root, outside, contents, catalog)


@dataclass
class Server:
    runtime: AsyncioRuntime
    service: UploadService
    observer: RecordingObserver
    port: int
    shares: Shares
    listeners: list[object] = field(default_factory=list)


async def start_server(shares: Shares, config: UploadConfig | None = None) -> Server:
    observer = RecordingObserver()
    runtime = AsyncioRuntime(observer=observer)
    service = UploadService(runtime, shares.catalog, config or UploadConfig())
    listener = runtime.listen(("127.0.0.1", 0), service.handler_factory())
    return Server(runtime, service, observer, listener.address[1], shares, [listener])


def stop_server(srv: Server) -> None:
    srv.service.close()
    for listener in srv.listeners:
        listener.close()  # type: ignore[attr-defined]
    srv.runtime.close()


@dataclass
class Reply:
    response: Response
    body: bytes

    @property
    def status(self) -> int:
        return self.response.status

    def header(self, name: str) -> str | None:
        return self.response.headers.get(name)


class RawClient:
    """One TCP connection to the service, speaking through ClientConnection,
    or writing raw bytes for the attacks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = ClientConnection()
        self.eof = False
        self.finished = False
        self._pending = b""

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), STEP_TIMEOUT
        )
        return cls(reader, writer)

    def _begin(self, method: str, target: str = "/", headers: list[tuple[str, str]] | None = None
               ) -> bytes:  # fmt: skip
        if self.finished:
            self.conn.start_next_cycle()
            self.finished = False
        self.conn.send_request(Request(method, target, Headers([("Host", "x"), *(headers or [])])))
        return self.conn.data_to_send()

    async def get(
        self, target: str, headers: list[tuple[str, str]] | None = None, method: str = "GET"
    ) -> Reply:
        self.writer.write(self._begin(method, target, headers))
        return await self.read_reply()

    def send(
        self, target: str, headers: list[tuple[str, str]] | None = None, method: str = "GET"
    ) -> None:
        """Write a request without waiting for its reply (see :meth:`read_reply`)."""
        self.writer.write(self._begin(method, target, headers))

    async def raw(self, data: bytes, method: str = "GET") -> Reply:
        """Send raw request bytes; parse the answer as a reply to ``method``."""
        self._begin(method)
        self.writer.write(data)
        return await self.read_reply()

    async def get_next(self, method: str = "GET") -> Reply:
        """The reply to the next request already written (pipelining)."""
        self._begin(method)
        return await self.read_reply()

    async def read_reply_after(self, data: bytes) -> Reply:
        """:meth:`read_reply`, with ``data`` already read off the socket."""
        self._pending = data
        return await self.read_reply()

    async def read_reply(self) -> Reply:
        response: Response | None = None
        body = bytearray()
        # Bytes already buffered (pipelined replies, or read by the caller).
        data, self._pending = self._pending, b""
        events = self.conn.receive_data(data)
        while True:
            for ev in events:
                if isinstance(ev, Response):
                    response = ev
                elif isinstance(ev, Data):
                    body += ev.data
                elif isinstance(ev, EndOfMessage):
                    assert response is not None
                    self.finished = True
                    return Reply(response, bytes(body))
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 20), STEP_TIMEOUT)
            except ConnectionError:
                data = b""
            if not data:
                self.eof = True
                events = self.conn.receive_eof()
                if not any(isinstance(ev, EndOfMessage) for ev in events):
                    raise AssertionError("connection closed before a complete reply")
            else:
                events = self.conn.receive_data(data)

    async def closed_by_peer(self) -> bool:
        """Does the server close this connection (EOF or reset) soon?"""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 16), STEP_TIMEOUT)
        except (ConnectionError, TimeoutError):
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def fetch(port: int, target: str, headers: list[tuple[str, str]] | None = None,
                method: str = "GET") -> Reply:  # fmt: skip
    client = await RawClient.open(port)
    try:
        return await client.get(target, headers, method)
    finally:
        await client.close()


async def fetch_raw(port: int, data: bytes) -> tuple[Reply, bool]:
    """Raw request bytes; the reply and whether the server then closed."""
    client = await RawClient.open(port)
    try:
        reply = await client.raw(data)
        closed = client.eof or await client.closed_by_peer()
        return reply, closed
    finally:
        await client.close()
