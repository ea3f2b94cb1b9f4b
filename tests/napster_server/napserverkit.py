"""A throw-away PostgreSQL server for tests (issue 3, "Done when": the farm test).

``initdb`` and ``pg_ctl`` from the PostgreSQL 15 binaries build a cluster in a
temporary directory and start it on 127.0.0.1 with a free port; everything
runs as the ``postgres`` system user because PostgreSQL refuses to run as
root.  :func:`temporary_postgres` stops the server and removes the directory
at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peerlab.wire.napster import (
    FrameDecoder,
    LinkType,
    Login,
    LoginAck,
    LoginError,
    Message,
    NewUserLogin,
    SearchEnd,
    SearchQuery,
    SearchRequest,
    SearchResult,
    ShareFile,
    decode,
    encode,
)

PG_BIN = Path(os.environ.get("PEERLAB_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
#: Seconds initdb / pg_ctl start / stop may take (bounded waits).
PG_TIMEOUT = 60


def missing_reason() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL binaries not found ({PG_BIN / tool} is missing)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} system user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *argv]
    return argv


def _run(argv: list[str]) -> None:
    proc = subprocess.run(
        _as_postgres(argv), capture_output=True, text=True, timeout=PG_TIMEOUT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """Start a private PostgreSQL server; yields its connection URL."""
    reason = missing_reason()
    if reason is not None:
        raise RuntimeError(reason)
    # Not under pytest's tmp_path: that is private to root (mode 0700 parents),
    # and the postgres user must reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="peerlab-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        for p in (root, sock):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    port = free_port()
    started = False
    try:
        _run([
            str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        ])
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        _run([
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
            "-w", "-t", str(PG_TIMEOUT), "start",
        ])
        started = True
        yield f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            try:
                _run([
                    str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                    "-t", str(PG_TIMEOUT), "stop",
                ])
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ a test client

#: Seconds any single wait for the server may take in a test.
WAIT = 10.0


class Closed(Exception):
    """The server closed the connection."""


class NapClient:
    """A minimal Napster client on asyncio streams and the wire codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.inbox: list[Message] = []

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> NapClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), WAIT)
        return cls(reader, writer)

    def send(self, *msgs: Message) -> None:
        for m in msgs:
            self.writer.write(encode(m))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = WAIT) -> Message:
        """The next message from the server (Closed at EOF)."""
        while not self.inbox:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise Closed("server closed the connection")
            for frame in self.decoder.feed(data):
                self.inbox.append(decode(frame.type, frame.payload))
        return self.inbox.pop(0)

    async def expect(self, kind: type[Message], timeout: float = WAIT) -> Message:
        """Skip messages until one of ``kind`` arrives; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if isinstance(msg, kind):
                return msg

    async def until_closed(self, timeout: float = WAIT) -> list[Message]:
        """Every message until the server closes the connection."""
        got: list[Message] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                got.append(await self.recv(max(0.01, deadline - loop.time())))
            except (Closed, ConnectionError):
                return got

    async def login(
        self, nick: str, password: str = "pw", *, port: int = 6699,
        link: LinkType = LinkType.CABLE, new: bool = False, email: str = "x@example.org",
    ) -> Message:
        """Log in; returns the LoginAck or LoginError."""
        if new:
            self.send(NewUserLogin(nick, password, port, "peerlab-test 1.0", link, email))
        else:
            self.send(Login(nick, password, port, "peerlab-test 1.0", link))
        while True:
            msg = await self.recv()
            if isinstance(msg, LoginAck | LoginError):
                return msg

    def share(self, *files: ShareFile) -> None:
        self.send(*files)

    async def search(self, query: SearchQuery | str, timeout: float = WAIT) -> list[SearchResult]:
        """Search; the results up to the end-of-results message."""
        if isinstance(query, str):
            query = SearchQuery(contains=(query,))
        self.send(SearchRequest(query))
        results: list[SearchResult] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if isinstance(msg, SearchResult):
                results.append(msg)
            elif isinstance(msg, SearchEnd):
                return results

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
        except (ConnectionError, TimeoutError):
            pass


def share_file(name: str, *, size: int = 1000, bitrate: int = 128, freq: int = 44100,
               duration: int = 200, md5: str = "0123456789abcdef0123456789abcdef") -> ShareFile:
    return ShareFile(name, md5, size, bitrate, freq, duration)
