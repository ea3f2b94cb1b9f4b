"""Helpers for the download tests: deterministic file bytes, and a small raw HTTP
source on any runtime that can misbehave in the ways a Gnutella peer does
(flip bytes, lie about ranges, sizes or the file, stall, send garbage, queue)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from peerlab.runtime.base import Address, BaseStreamHandler, Runtime, Stream
from peerlab.wire.chunks import ChunkList
from peerlab.wire.urn import b32, sha1_urn

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def make_data(n: int, seed: int = 1) -> bytes:
    """``n`` pseudo-random bytes (fast: SHA-256 blocks repeated)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 512
    return bytes(out[:n])


@dataclass
class Served:
    """A file as the fake sources serve it."""

    data: bytes
    chunk_size: int | None = None
    name: str = "song.mp3"
    index: int = 7

    def __post_init__(self) -> None:
        self.chunks = ChunkList.of_bytes(self.data, self.chunk_size)
        self.urn = sha1_urn(hashlib.sha1(self.data).digest())


@dataclass
class Behaviour:
    corrupt_chunks: set[int] = field(default_factory=set)
    corrupt_all: bool = False
    lie_range: bool = False
    lie_urn: bool = False
    lie_length: bool = False
    stall_after: int | None = None
    garbage: bool = False
    busy: int = 0
    retry_after: int = 1
    serve_list: bool = True
    wrong_list: bool = False
    list_delay: float = 0.0  # seconds before the chunk list is answered
    n2r_404: bool = False
    rate: float = 0.0  # body bytes/s, 0 = as fast as possible
    close_after_each: bool = False


class FakeSource:
    """A raw HTTP/1.1 source listening on ``runtime``; counts what it serves."""

    def __init__(
        self,
        runtime: Runtime,
        host: str,
        served: Served,
        behaviour: Behaviour,
        tracker: dict[str, int] | None = None,
    ) -> None:
        self.runtime = runtime
        #: Shared by several sources: connections open now and the most ever.
        self.tracker = tracker if tracker is not None else {"open": 0, "max": 0}
        self.served = served
        self.b = behaviour
        self.body_bytes = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self.ranges: list[tuple[int, int]] = []
        self.busy_left = behaviour.busy
        self.listener = runtime.listen((host, 0), lambda: _Handler(self))

    @property
    def address(self) -> Address:
        return self.listener.address

    def close(self) -> None:
        self.listener.close()


class _Handler(BaseStreamHandler):
    def __init__(self, src: FakeSource) -> None:
        self.src = src
        self.buf = bytearray()
        self.busy = False
        self.timer = None

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        t = self.src.tracker
        t["open"] += 1
        t["max"] = max(t["max"], t["open"])

    def connection_lost(self, exc: object) -> None:
        if self.stream is not None:
            self.src.tracker["open"] -= 1
        self.stream = None
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        if self.busy or self.stream is None:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        line, *fields = head.split("\r\n")
        method, target, _ = line.split(" ")
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        self.src.requests.append((method, target, headers.get("range")))
        self._answer(method, target, headers)

    def _send_head(self, status: str, pairs: list[tuple[str, str]]) -> None:
        assert self.stream is not None
        if self.src.b.close_after_each:
            pairs = [*pairs, ("Connection", "close")]
        text = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
        self.stream.write(text.encode("latin-1"))

    def _finish(self) -> None:
        self.busy = False
        if self.src.b.close_after_each and self.stream is not None:
            self.stream.close()
            return
        self._next()

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> None:
        src, b, served = self.src, self.src.b, self.src.served
        stream = self.stream
        assert stream is not None
        if b.garbage:
            stream.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 4)
            return
        if target.startswith("/uri-res/N2CH?"):
            if not b.serve_list:
                self._send_head("404 Not Found", [("Content-Length", "0")])
                self._finish()
                return
            listed = served.chunks
            if b.wrong_list:
                listed = ChunkList(listed.size, listed.chunk_size, bytes(len(listed.digests)))
            body = listed.encode()

            def answer() -> None:
                if self.stream is None:
                    return
                self._send_head("200 OK", [("Content-Length", str(len(body)))])
                self.stream.write(body)
                self._finish()

            if b.list_delay > 0:
                self.busy = True
                self.timer = src.runtime.call_later(b.list_delay, answer)
            else:
                answer()
            return
        if target.startswith("/uri-res/N2R?"):
            if b.n2r_404 or target[len("/uri-res/N2R?") :] != served.urn:
                self._send_head("404 Not Found", [("Content-Length", "9")])
                if method != "HEAD":
                    stream.write(b"not found")
                self._finish()
                return
        elif target.startswith("/get/"):
            _, _, idx, name = target.split("/", 3)
            if int(idx) != served.index or unquote(name) != served.name:
                self._send_head("404 Not Found", [("Content-Length", "0")])
                self._finish()
                return
        else:
            self._send_head("400 Bad Request", [("Content-Length", "0")])
            self._finish()
            return
        if src.busy_left > 0:
            src.busy_left -= 1
            self._send_head(
                "503 Busy",
                [
                    ("Retry-After", str(b.retry_after)),
                    ("X-Queue", f"position={src.busy_left + 1},length=3,pollMin=1,pollMax=60"),
                    ("Content-Length", "4"),
                ],
            )
            stream.write(b"busy")
            self._finish()
            return
        size = len(served.data)
        m = _RANGE.fullmatch(headers.get("range", ""))
        a, z = (int(m.group(1)), int(m.group(2))) if m else (0, size - 1)
        z = min(z, size - 1)
        src.ranges.append((a, z))
        body = bytearray(served.data[a : z + 1])
        cs = served.chunks.chunk_size
        for i in range(a // cs, z // cs + 1):
            if b.corrupt_all or i in b.corrupt_chunks:
                at = max(i * cs, a) - a
                body[at] ^= 0xFF
        shown_a = a + 1 if b.lie_range else a
        length = len(body) + (1 if b.lie_length else 0)
        urn = sha1_urn(bytes(20)) if b.lie_urn else served.urn
        self._send_head(
            "206 Partial Content",
            [
                ("Content-Range", f"bytes {shown_a}-{shown_a + len(body) - 1}/{size}"),
                ("Content-Length", str(length)),
                ("X-Gnutella-Content-URN", urn),
                ("X-Chunk-Root", b32(served.chunks.root)),
            ],
        )
        if method == "HEAD":
            self._finish()
            return
        self.busy = True
        self._stream_body(memoryview(bytes(body)))

    def _stream_body(self, body: memoryview) -> None:
        src, b = self.src, self.src.b
        if self.stream is None:
            return
        if b.stall_after is not None:
            allowed = max(0, b.stall_after - src.body_bytes)
            if allowed < len(body):
                self.stream.write(body[:allowed])
                src.body_bytes += allowed
                return  # and never another byte
        if b.rate <= 0:
            self.stream.write(body)
            src.body_bytes += len(body)
            self._finish()
            return
        piece = max(1024, int(b.rate / 20))
        self.stream.write(body[:piece])
        src.body_bytes += min(piece, len(body))
        rest = body[piece:]
        if not rest:
            self._finish()
            return
        self.timer = self.src.runtime.call_later(
            min(piece, len(body)) / b.rate, lambda: self._stream_body(rest)
        )


async def wait_for(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``pred`` on the running loop (bounded in time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def stream_of(handler: BaseStreamHandler) -> Stream | None:
    return handler.stream
