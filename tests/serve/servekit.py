"""Helpers for the upload service tests (imported by name: conftest.py puts this
folder on sys.path, as pytest's importlib mode does not): a real catalog over
generated shares, a service on 127.0.0.1 and a small raw HTTP client."""

from __future__ import annotations

import asyncio
import heapq
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------ fake runtime


class FakeTimer:
    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn: Callable[[], None] | None = fn

    @property
    def cancelled(self) -> bool:
        return self.fn is None

    def cancel(self) -> None:
        self.fn = None


class FakeRuntime:
    """A virtual clock and a timer heap: time moves only when a test says so."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.observer = RecordingObserver()
        self.rng = random.Random(0)
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._seq = 0

    def now(self) -> float:
        return self.clock

    def wall_time(self) -> float:
        return 1_700_000_000.0 + self.clock

    def call_at(self, when: float, fn: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(when, fn)
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, timer))
        return timer

    def call_later(self, delay: float, fn: Callable[[], None]) -> FakeTimer:
        return self.call_at(self.clock + delay, fn)

    def call_soon(self, fn: Callable[[], None]) -> FakeTimer:
        return self.call_at(self.clock, fn)

    def run(self, until: float, *, max_steps: int = 1_000_000) -> None:
        """Fire every timer due up to ``until`` (bounded), then set the clock."""
        steps = 0
        while self._timers and self._timers[0][0] <= until and steps < max_steps:
            when, _, timer = heapq.heappop(self._timers)
            self.clock = max(self.clock, when)
            fn, timer.fn = timer.fn, None
            if fn is not None:
                fn()
                steps += 1
        assert steps < max_steps, "runaway timers"
        self.clock = max(self.clock, until)

    def pending(self) -> int:
        return sum(1 for *_, t in self._timers if not t.cancelled)


class FakeStream:
    """A stream whose send buffer drains only when the test says so.

    Like asyncio's transports, ``write`` calls ``pause_writing`` on the handler
    at once when the buffer goes over ``high``; ``drain`` empties it and calls
    ``resume_writing`` (``sync_pause=False`` never pauses, to model a runtime
    that reports late).
    """

    def __init__(self, handler: Any, *, high: int = 1 << 20, sync_pause: bool = True,
                 peer: tuple[str, int] = ("10.0.0.9", 5555)) -> None:  # fmt: skip
        self.handler = handler
        self.high = high
        self.sync_pause = sync_pause
        self.buffered = 0
        self.received = bytearray()
        self.paused = False
        self.closed = False
        self.aborted = False
        self.local_address = ("10.0.0.1", 6346)
        self.remote_address = peer

    @property
    def closing(self) -> bool:
        return self.closed or self.aborted

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        self.received += data
        self.buffered += len(data)
        if self.sync_pause and not self.paused and self.buffered > self.high:
            self.paused = True
            self.handler.pause_writing()

    def writelines(self, chunks: list[bytes]) -> None:
        for c in chunks:
            self.write(c)

    def drain(self) -> None:
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.handler.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def fake_connection(service: Any, *, peer: tuple[str, int] = ("10.0.0.9", 5555),
                    sync_pause: bool = True) -> tuple[Any, FakeStream]:  # fmt: skip
    handler = service.handler_factory()()
    stream = FakeStream(handler, peer=peer, sync_pause=sync_pause)
    handler.connection_made(stream)
    return handler, stream


def parse_replies(data: bytes, methods: list[str] | None = None) -> list[Reply]:
    """Every complete reply in ``data`` (each to a GET unless ``methods`` says)."""
    conn = ClientConnection()
    replies: list[Reply] = []
    response: Response | None = None
    body = bytearray()
    methods = list(methods or [])
    conn.send_request(Request(methods.pop(0) if methods else "GET", "/", Headers()))
    events = conn.receive_data(data)
    while True:
        for ev in events:
            if isinstance(ev, Response):
                response = ev
            elif isinstance(ev, Data):
                body += ev.data
            elif isinstance(ev, EndOfMessage):
                assert response is not None
                replies.append(Reply(response, bytes(body)))
                body = bytearray()
        if not replies or not isinstance(events[-1:] and events[-1], EndOfMessage):
            return replies
        if not conn.keep_alive:
            return replies
        conn.start_next_cycle()
        conn.send_request(Request(methods.pop(0) if methods else "GET", "/", Headers()))
        events = conn.receive_data(b"")
        if not events:
            return replies


class GetHandler:
    """A runtime-level HTTP client for one GET (works in either world)."""

    def __init__(self, runtime: Any, target: str, headers: list[tuple[str, str]] | None = None
                 ) -> None:  # fmt: skip
        self.runtime = runtime
        self.conn = ClientConnection()
        self.conn.send_request(Request("GET", target, Headers([("Host", "x"), *(headers or [])])))
        self.response: Response | None = None
        self.body = bytearray()
        self.done_at: float | None = None
        self.started_at: float | None = None
        self.error: BaseException | None = None
        self.stream: Any = None

    def connection_made(self, stream: Any) -> None:
        self.stream = stream
        self.started_at = self.runtime.now()
        stream.write(self.conn.data_to_send())

    def connection_failed(self, exc: BaseException) -> None:
        self.error = exc

    def data_received(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, Response):
                self.response = ev
            elif isinstance(ev, Data):
                self.body += ev.data
            elif isinstance(ev, EndOfMessage):
                self.done_at = self.runtime.now()
                self.stream.close()

    def eof_received(self) -> None:
        self.conn.receive_eof()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done_at is None and self.error is None:
            self.error = exc or ConnectionError("closed early")

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass
