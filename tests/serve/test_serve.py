"""UploadService on real sockets (127.0.0.1, AsyncioRuntime) with a real Catalog:
routes, ranges, HEAD, chunk lists, Gnutella headers, traversal refusals,
symlinks swapped in after a scan, garbage and oversized headers, curl."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from servekit import (
    BIG_SIZE,
    STEP_TIMEOUT,
    UNICODE_NAME,
    RawClient,
    Server,
    fetch,
    fetch_raw,
    start_server,
    stop_server,
)

from peerlab.overlays.transfer.server import UploadConfig
from peerlab.wire.chunks import ChunkList
from peerlab.wire.urn import b32


def n2r(f) -> str:  # type: ignore[no-untyped-def]
    return f"/uri-res/N2R?{f.urn}"


async def test_full_get_by_urn_is_byte_exact_with_gnutella_headers(server: Server) -> None:
    f = server.shares.file("big.bin")
    reply = await fetch(server.port, n2r(f))
    assert reply.status == 200
    assert reply.body == server.shares.contents["big.bin"]
    assert reply.header("Content-Length") == str(BIG_SIZE)
    assert reply.header("X-Gnutella-Content-URN") == f.urn
    assert reply.header("X-Peerlab-Chunks") == f"/uri-res/N2CH?{f.urn}"
    assert reply.header("X-Chunk-Root") == b32(f.chunk_root)
    assert reply.header("Accept-Ranges") == "bytes"
    assert reply.header("Server") == "peerlab/0.1"
    assert server.observer.counters["upload.bytes"] == BIG_SIZE


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=1000-2000000", 1000, 2000000),
        ("bytes=3000000-", 3000000, BIG_SIZE - 1),
        ("bytes=-777", BIG_SIZE - 777, BIG_SIZE - 1),
        ("bytes=5-99999999999", 5, BIG_SIZE - 1),
        ("bytes=-99999999999", 0, BIG_SIZE - 1),
    ],
)
async def test_range_get_is_byte_exact(server: Server, spec: str, first: int, last: int) -> None:
    f = server.shares.file("big.bin")
    reply = await fetch(server.port, n2r(f), [("Range", spec)])
    assert reply.status == 206
    assert reply.header("Content-Range") == f"bytes {first}-{last}/{BIG_SIZE}"
    assert reply.body == server.shares.contents["big.bin"][first : last + 1]


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-", "bytes"])
async def test_ranges_we_ignore_serve_the_whole_file(server: Server, spec: str) -> None:
    f = server.shares.file("small.txt")
    reply = await fetch(server.port, n2r(f), [("Range", spec)])
    assert reply.status == 200 and reply.body == server.shares.contents["small.txt"]


@pytest.mark.parametrize("spec", ["bytes=19-", "bytes=100-200", "bytes=-0"])
async def test_unsatisfiable_range_is_416(server: Server, spec: str) -> None:
    f = server.shares.file("small.txt")  # 19 bytes
    reply = await fetch(server.port, n2r(f), [("Range", spec)])
    assert reply.status == 416
    assert reply.header("Content-Range") == "bytes */19"


async def test_head_then_get_on_one_connection(server: Server) -> None:
    f = server.shares.file("big.bin")
    client = await RawClient.open(server.port)
    head = await client.get(n2r(f), method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(BIG_SIZE)
    assert head.header("X-Gnutella-Content-URN") == f.urn
    ranged = await client.get(n2r(f), [("Range", "bytes=10-19")], method="HEAD")
    assert ranged.status == 206 and ranged.header("Content-Length") == "10"
    got = await client.get(n2r(f), [("Range", "bytes=10-19")])
    assert got.body == server.shares.contents["big.bin"][10:20]
    await client.close()


async def test_empty_file(server: Server) -> None:
    reply = await fetch(server.port, n2r(server.shares.file("empty.dat")))
    assert reply.status == 200 and reply.body == b"" and reply.header("Content-Length") == "0"


async def test_n2ch_serves_the_chunk_list(server: Server) -> None:
    f = server.shares.file("big.bin")
    reply = await fetch(server.port, f"/uri-res/N2CH?{f.urn}")
    assert reply.status == 200
    assert reply.header("Content-Type") == "application/x-peerlab-chunks"
    chunks = ChunkList.decode(reply.body, expect_size=BIG_SIZE)
    assert chunks == server.shares.catalog.chunk_list(f)
    assert chunks.root == f.chunk_root
    data = server.shares.contents["big.bin"]
    for i in range(chunks.count):
        off, n = chunks.span(i)
        assert chunks.verify(i, data[off : off + n])


async def test_get_by_index_and_encoded_name(server: Server) -> None:
    f = server.shares.file(UNICODE_NAME)
    reply = await fetch(server.port, f"/get/{f.index}/{quote(UNICODE_NAME)}")
    assert reply.status == 200 and reply.body == server.shares.contents[UNICODE_NAME]


@pytest.mark.parametrize(
    "name",
    ["small.txt", "Bj%C3%B6rk", quote(UNICODE_NAME.upper()), quote(UNICODE_NAME) + "x", "%FF%FE"],
)
async def test_get_with_the_wrong_name_is_refused(server: Server, name: str) -> None:
    f = server.shares.file(UNICODE_NAME)
    reply = await fetch(server.port, f"/get/{f.index}/{name}")
    assert reply.status in (400, 404)
    assert reply.body != server.shares.contents[UNICODE_NAME]


async def test_unknown_urn_and_paths_are_404(server: Server) -> None:
    assert (await fetch(server.port, "/uri-res/N2R?urn:sha1:" + "A" * 32)).status == 404
    assert (await fetch(server.port, "/uri-res/N2R?urn:sha1:nonsense")).status == 400
    assert (await fetch(server.port, "/get/999999/x")).status == 404
    assert (await fetch(server.port, "/index.html")).status == 404
    reply = await fetch(
        server.port, "/uri-res/N2R?urn%3Asha1%3A" + server.shares.file("small.txt").urn[9:]
    )
    assert reply.status == 200 and reply.body == server.shares.contents["small.txt"]


async def test_other_methods_are_405(server: Server) -> None:
    f = server.shares.file("small.txt")
    reply = await fetch(server.port, n2r(f), method="DELETE")
    assert reply.status == 405 and reply.header("Allow") == "GET, HEAD"
    assert (server.shares.root / "small.txt").exists()


TRAVERSALS = [
    "/get/1/../../outside/secret.txt",
    "/get/1/..%2f..%2foutside%2fsecret.txt",
    "/get/1/%2e%2e/%2e%2e/outside/secret.txt",
    "/get/1/%2E%2E%2F%2E%2E%2Foutside%2Fsecret.txt",
    "/get/1/..",
    "/get/1/%2e%2e",
    "/get/1//etc/passwd",
    "/get/1/%2Fetc%2Fpasswd",
    "/uri-res/../../etc/passwd",
    "/get/1/..\\..\\outside\\secret.txt",
    "/get/1/..%5c..%5coutside%5csecret.txt",
    "/get/1/secret.txt%00.mp3",
    "/get/1/%00",
    "http://127.0.0.1/get/1/secret.txt",
    "*",
    "/get/1/" + "a" * 5000,
    "/get/1/" + "../" * 600 + "etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_attempts_are_refused_and_reported(server: Server, target: str) -> None:
    raw = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    reply, closed = await fetch_raw(server.port, raw)
    assert reply.status in (400, 404)
    assert b"SECRET" not in reply.body and b"root:" not in reply.body
    assert closed
    reports = server.observer.named("upload.traversal")
    assert len(reports) == 1 and reports[0]["status"] == reply.status
    # The service keeps serving everyone else.
    ok = await fetch(server.port, n2r(server.shares.file("small.txt")))
    assert ok.status == 200 and ok.body == server.shares.contents["small.txt"]


async def test_raw_nul_and_spaces_in_the_request_line_are_400(server: Server) -> None:
    for raw in (b"GET /get/1/a\x00b HTTP/1.1\r\n\r\n", b"GET /get/1/a b.txt HTTP/1.1\r\n\r\n"):
        reply, closed = await fetch_raw(server.port, raw)
        assert reply.status == 400 and closed
    assert len(server.observer.named("upload.bad_request")) == 2


async def test_symlink_swapped_in_after_the_scan_is_refused(server: Server) -> None:
    shares = server.shares
    f = shares.file("swap-me.txt")
    target = shares.root / "swap-me.txt"
    target.unlink()
    target.symlink_to(shares.outside / "secret.txt")
    for path in (n2r(f), f"/get/{f.index}/swap-me.txt"):
        for method in ("GET", "HEAD"):
            reply = await fetch(server.port, path, method=method)
            assert reply.status == 404
            assert b"SECRET" not in reply.body
    assert len(server.observer.named("upload.traversal")) == 4
    # Files that were not swapped are still served.
    ok = await fetch(server.port, n2r(shares.file("small.txt")))
    assert ok.status == 200


async def test_shared_folder_replaced_by_a_symlink_is_refused(server: Server) -> None:
    shares = server.shares
    f = shares.file("small.txt")
    moved = shares.root.parent / "moved"
    shares.root.rename(moved)
    evil = shares.outside
    (evil / "small.txt").write_bytes(b"SECRET same length!")  # 19 bytes, like small.txt
    shares.root.symlink_to(evil)
    reply = await fetch(server.port, n2r(f))
    assert reply.status == 404 and b"SECRET" not in reply.body
    shares.root.unlink()
    moved.rename(shares.root)


async def test_changed_file_is_not_served_under_its_old_urn(server: Server) -> None:
    shares = server.shares
    f = shares.file("small.txt")
    (shares.root / "small.txt").write_bytes(b"changed content, longer than before\n")
    reply = await fetch(server.port, n2r(f))
    assert reply.status == 404


async def test_garbage_and_oversized_headers_cost_only_their_connection(
    server: Server,
) -> None:
    f = server.shares.file("big.bin")
    downloader = await RawClient.open(server.port)
    downloader.send(n2r(f))
    # Read only a little of the body, then attack on other connections.
    first = await asyncio.wait_for(downloader.reader.read(65536), STEP_TIMEOUT)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    attacks = [
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 40_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: y\r\n" * 500 + b"\r\n", 431),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
    ]
    for raw, status in attacks:
        reply, closed = await fetch_raw(server.port, raw)
        assert reply.status == status and closed
    assert len(server.observer.named("upload.bad_request")) == len(attacks)
    # The first download still completes byte for byte.
    rest = await downloader.read_reply_after(first)
    assert rest.status == 200 and rest.body == server.shares.contents["big.bin"]
    await downloader.close()


async def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    small = server.shares.file("small.txt")
    big = server.shares.file("big.bin")
    client = await RawClient.open(server.port)
    raw = (
        f"GET {n2r(big)} HTTP/1.1\r\nRange: bytes=0-99999\r\n\r\n"
        f"GET {n2r(small)} HTTP/1.1\r\n\r\n"
        f"HEAD {n2r(small)} HTTP/1.1\r\n\r\n"
    ).encode()
    first = await client.raw(raw)
    assert first.status == 206 and first.body == server.shares.contents["big.bin"][:100000]
    second = await client.get_next()
    assert second.body == server.shares.contents["small.txt"]
    third = await client.get_next("HEAD")
    assert third.status == 200 and third.body == b""
    await client.close()


async def test_idle_connection_is_closed(shares) -> None:  # type: ignore[no-untyped-def]
    srv = await start_server(shares, UploadConfig(idle_timeout=0.2))
    try:
        client = await RawClient.open(srv.port)
        client.writer.write(b"GET / HT")  # a head that never completes
        assert await client.closed_by_peer()
        assert srv.observer.named("upload.timeout")[0]["reason"] == "idle"
        await client.close()
    finally:
        stop_server(srv)


async def test_uploads_table(server: Server) -> None:
    f = server.shares.file("big.bin")
    client = await RawClient.open(server.port)
    await client.get(n2r(f), [("Range", "bytes=0-999")])
    await client.get(n2r(f), [("Range", "bytes=1000-1999")])
    rows = server.service.uploads()
    assert len(rows) == 1
    row = rows[0]
    assert (row.name, row.size, row.sent, row.length, row.status) == (
        "big.bin",
        BIG_SIZE,
        2000,
        2000,
        "uploading",
    )
    assert row.progress == 1.0 and row.peer.startswith("127.0.0.1:")
    await client.close()
    for _ in range(200):
        if server.service.uploads()[0].status != "uploading":
            break
        await asyncio.sleep(0.01)
    row = server.service.uploads()[0]
    assert row.status == "complete" and row.sent == 2000 and row.rate == 0.0


async def test_curl_downloads_byte_for_byte(server: Server, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    f = server.shares.file("big.bin")
    out = tmp_path / "curl.out"
    proc = await asyncio.create_subprocess_exec(
        curl, "-s", "-f", "-o", str(out), f"http://127.0.0.1:{server.port}{n2r(f)}"
    )
    assert await asyncio.wait_for(proc.wait(), STEP_TIMEOUT) == 0
    assert out.read_bytes() == server.shares.contents["big.bin"]
    part = tmp_path / "curl.part"
    proc = await asyncio.create_subprocess_exec(
        curl, "-s", "-f", "-r", "100-199", "-o", str(part),
        f"http://127.0.0.1:{server.port}/get/{f.index}/big.bin",
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), STEP_TIMEOUT) == 0
    assert part.read_bytes() == server.shares.contents["big.bin"][100:200]


async def test_handler_errors_are_contained(server: Server) -> None:
    catalog = server.shares.catalog
    original = catalog.by_index

    def broken(index: int):  # type: ignore[no-untyped-def]
        if index == 424242:
            raise RuntimeError("catalog exploded")
        return original(index)

    catalog.by_index = broken  # type: ignore[method-assign]
    client = await RawClient.open(server.port)
    client.writer.write(b"GET /get/424242/x HTTP/1.1\r\n\r\n")
    assert await client.closed_by_peer()
    await client.close()
    errors = server.observer.named("upload.handler_error")
    assert len(errors) == 1 and "catalog exploded" in errors[0]["error"]
    ok = await fetch(server.port, n2r(server.shares.file("small.txt")))
    assert ok.status == 200


async def test_service_close_refuses_new_connections(server: Server) -> None:
    server.service.close()
    reply, closed = await fetch_raw(server.port, b"GET / HTTP/1.1\r\n\r\n")
    assert reply.status == 503 and closed
    assert os.path.exists(server.shares.root / "small.txt")


def queue_fields(reply) -> dict[str, int] | None:  # type: ignore[no-untyped-def]
    value = reply.header("X-Queue")
    if value is None:
        return None
    return {k: int(v) for k, v in (item.split("=") for item in value.split(","))}


async def wait_for(pred, steps: int = 500) -> None:  # type: ignore[no-untyped-def]
    for _ in range(steps):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_slots_and_active_queue_over_sockets(shares) -> None:  # type: ignore[no-untyped-def]
    cfg = UploadConfig(slots=2, queue_limit=2, poll_min=1, poll_max=60, retry_after=45,
                       slot_linger=60.0)  # fmt: skip
    srv = await start_server(shares, cfg)
    try:
        f = shares.file("big.bin")
        rng = [("Range", "bytes=0-9")]
        want = shares.contents["big.bin"][:10]
        a, b, c, d, e = [await RawClient.open(srv.port) for _ in range(5)]
        assert (await a.get(n2r(f), rng)).status == 206
        assert (await b.get(n2r(f), rng)).status == 206
        rc, rd = await c.get(n2r(f), rng), await d.get(n2r(f), rng)
        assert (rc.status, rd.status) == (503, 503)
        assert queue_fields(rc) == dict(position=1, length=1, limit=2, pollMin=1, pollMax=60)
        assert queue_fields(rd) == dict(position=2, length=2, limit=2, pollMin=1, pollMax=60)
        assert rc.header("Retry-After") == "1"
        re_ = await e.get(n2r(f), rng)
        assert re_.status == 503 and queue_fields(re_) is None
        assert re_.header("Retry-After") == "45"
        assert e.eof or await e.closed_by_peer()
        assert queue_fields(await c.get(n2r(f), rng))["position"] == 1  # type: ignore[index]

        await a.close()
        await wait_for(lambda: srv.service.active == 1)
        polled = await d.get(n2r(f), rng)  # D may not jump ahead of C
        assert polled.status == 503 and queue_fields(polled)["position"] == 2  # type: ignore[index]
        served = await c.get(n2r(f), rng)
        assert served.status == 206 and served.body == want
        await b.close()
        await wait_for(lambda: srv.service.active == 1)
        served = await d.get(n2r(f), rng)
        assert served.status == 206 and served.body == want
        assert srv.service.queued == 0
        for client in (c, d, e):
            await client.close()
    finally:
        stop_server(srv)
