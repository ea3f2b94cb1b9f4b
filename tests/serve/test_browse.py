"""The /browse route and its client (peerlab.overlays.transfer.browse) over
real sockets, plus the client's answers to hostile or silent servers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servekit import STEP_TIMEOUT, UNICODE_NAME, Server, fetch

from peerlab.errors import ConnectionRefused, NetworkError, RemoteProtocolError
from peerlab.overlays.transfer.browse import (
    MAX_BROWSE_RESPONSE,
    RemoteFile,
    browse,
    parse_browse,
)
from peerlab.runtime.aio import AsyncioRuntime
from peerlab.wire.urn import b32


async def run_browse(
    runtime: AsyncioRuntime, port: int, query: str = "", limit: int = 100, timeout: float = 10.0
) -> tuple[list[RemoteFile] | None, Exception | None]:
    fut: asyncio.Future[tuple[list[RemoteFile] | None, Exception | None]] = (
        asyncio.get_running_loop().create_future()
    )
    calls: list[int] = []

    def done(files: list[RemoteFile] | None, exc: Exception | None) -> None:
        calls.append(1)
        if not fut.done():
            fut.set_result((files, exc))

    browse(runtime, ("127.0.0.1", port), query, limit, done, timeout=timeout)
    result = await asyncio.wait_for(fut, STEP_TIMEOUT)
    await asyncio.sleep(0.05)
    assert len(calls) == 1  # exactly once
    return result


async def test_browse_lists_every_shared_file(server: Server) -> None:
    files, exc = await run_browse(server.runtime, server.port)
    assert exc is None and files is not None
    catalog = {f.name: f for f in server.shares.catalog.files()}
    assert {f.name for f in files} == set(catalog)
    for rf in files:
        sf = catalog[rf.name]
        assert rf.address == ("127.0.0.1", server.port)
        assert (rf.index, rf.size, rf.urn, rf.kind) == (sf.index, sf.size, sf.urn, sf.kind)
        assert rf.chunk_root == b32(sf.chunk_root) and rf.chunk_root_bytes == sf.chunk_root
        assert rf.sha1 == sf.sha1


async def test_browse_query_and_limit(server: Server) -> None:
    files, exc = await run_browse(server.runtime, server.port, "bjork")
    assert exc is None and files is not None
    assert [f.name for f in files] == [UNICODE_NAME]
    files, _ = await run_browse(server.runtime, server.port, "", limit=2)
    assert files is not None and len(files) == 2
    files, _ = await run_browse(server.runtime, server.port, "no such words at all")
    assert files == []
    assert server.observer.named("upload.browse")


async def test_browse_json_shape(server: Server) -> None:
    reply = await fetch(server.port, "/browse?q=small&limit=5")
    assert reply.status == 200 and reply.header("Content-Type") == "application/json"
    doc = json.loads(reply.body)
    [entry] = doc["files"]
    assert set(entry) == {"index", "name", "size", "urn", "chunk_root", "kind", "title",
                          "artist", "album", "genre", "bitrate", "duration"}  # fmt: skip
    assert entry["name"] == "small.txt" and entry["size"] == 19
    assert (await fetch(server.port, "/browse?limit=-1")).status == 400
    assert (await fetch(server.port, "/browse?q=%FF")).status == 400


async def test_browse_of_a_closed_port_fails_cleanly(server: Server) -> None:
    server.listeners[0].close()  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    files, exc = await run_browse(server.runtime, server.port)
    assert files is None and isinstance(exc, ConnectionRefused)


async def _fake_server(answer: bytes | None) -> tuple[asyncio.Server, int]:
    """A server that reads the request and sends ``answer`` (None: silence)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is None:
            await asyncio.sleep(STEP_TIMEOUT)
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, NetworkError),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!", RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", RemoteProtocolError),
        (b"garbage\r\n\r\n", RemoteProtocolError),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BROWSE_RESPONSE + 1),
            RemoteProtocolError,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b" " * (MAX_BROWSE_RESPONSE + 10), RemoteProtocolError),
        (b'HTTP/1.1 200 OK\r\n\r\n{"files": [{"name": "../../x"}]}', RemoteProtocolError),
    ],
)
async def test_browse_client_against_hostile_servers(
    answer: bytes | None, error: type[Exception]
) -> None:
    srv, port = await _fake_server(answer)
    runtime = AsyncioRuntime()
    try:
        files, exc = await run_browse(runtime, port, timeout=0.5)
        assert files is None and isinstance(exc, error)
    finally:
        srv.close()
        runtime.close()


GOOD_ENTRY: dict[str, Any] = {
    "index": 1,
    "name": "a.mp3",
    "size": 3,
    "urn": "urn:sha1:" + "A" * 32,
    "chunk_root": b32(bytes(32)),
    "kind": "audio",
    "title": None,
    "artist": "x",
    "album": None,
    "genre": None,
    "bitrate": 128,
    "duration": 1.5,
}


def test_parse_browse_accepts_the_contract_shape() -> None:
    [rf] = parse_browse(json.dumps({"files": [GOOD_ENTRY]}).encode(), ("10.0.0.1", 6346))
    assert rf.name == "a.mp3" and rf.bitrate == 128 and rf.duration == 1.5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("index", -1),
        ("index", "1"),
        ("size", True),
        ("name", ""),
        ("name", "a/b"),
        ("name", ".."),
        ("urn", "urn:sha1:short"),
        ("chunk_root", "!!"),
        ("duration", float("nan")),
        ("bitrate", 1.5),
        ("title", 7),
    ],
)
def test_parse_browse_rejects_bad_fields(key: str, value: Any) -> None:
    entry = dict(GOOD_ENTRY, **{key: value})
    with pytest.raises(RemoteProtocolError):
        parse_browse(json.dumps({"files": [entry]}).encode(), ("10.0.0.1", 6346))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                              max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | _json.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(list(GOOD_ENTRY)), _json).map(
        lambda e: json.dumps({"files": [dict(GOOD_ENTRY, **e)]}).encode()
    )
)
def test_parse_browse_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        parse_browse(data, ("10.0.0.1", 6346))
    except RemoteProtocolError:
        pass
