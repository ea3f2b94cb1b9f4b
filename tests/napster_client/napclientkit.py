"""Helpers for the Napster client tests: index servers and peers in one world.

A :class:`NapPeer` is the Napster half of a node built from the cores only (a
catalog, the share index, a :class:`NapsterClient` and
:class:`NapsterTransfers`), so the same test body runs on real sockets
(:class:`RealWorld`) and in the simulator (:class:`SimWorld`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerlab.apps.media import write_mp3
from peerlab.overlays.napster.client import ClientConfig, NapsterClient, NapsterHit
from peerlab.overlays.napster.peer import NapsterSource, NapsterTransfers, ShareIndex
from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig
from peerlab.runtime.base import Address, Listener, RecordingObserver, Runtime
from peerlab.runtime.worlds import World
from peerlab.storage.catalog import Catalog
from peerlab.storage.napster_index import ScryptCost, SqliteIndexStore
from peerlab.wire.napster import LinkType, SearchQuery

#: Bounds on every wait (seconds, real or virtual; never asserted as timings).
WAIT = 30.0


class IndexServer:
    """A NapsterServer on its own runtime with an in-memory SQLite index."""

    def __init__(self, world: World, name: str, **overrides: Any) -> None:
        self.runtime = world.new_runtime(name, observer=RecordingObserver())
        self.store = SqliteIndexStore(":memory:")
        settings: dict[str, Any] = {
            "host": world.host(self.runtime), "port": 0, "password_cost": ScryptCost(log2_n=4),
            "motd": (f"Welcome to {name}.",),
        }
        settings.update(overrides)
        self.server = NapsterServer(self.runtime, self.store, NapsterServerConfig(**settings))
        self.server.start()
        self.address: Address = self.server.address

    def close(self) -> None:
        self.server.close()


def little_toot(folder: Path, seconds: float = 30.0, seed: int = 1) -> Path:
    """The lecture's track, tagged, about 1.2 MB at 320 kbps."""
    return write_mp3(
        folder / "Maclean & Maclean - Little Toot.mp3", title="Little Toot",
        artist="Maclean & Maclean", album="The Gross Manual", genre="Comedy",
        seconds=seconds, bitrate_kbps=320, seed=seed,
    )  # fmt: skip


class NapPeer:
    """One Napster user: catalog, share index, client and transfers."""

    def __init__(
        self,
        world: World,
        root: Path,
        name: str,
        servers: list[Address],
        *,
        firewalled: bool = False,
        password: str | None = None,
        link: LinkType = LinkType.CABLE,
        files: Callable[[Path], object] | None = None,
    ) -> None:
        self.world = world
        self.name = name
        self.observer = RecordingObserver()
        self.runtime: Runtime = world.new_runtime(name, observer=self.observer)
        self.dir = root / name
        self.share_dir = self.dir / "share"
        self.share_dir.mkdir(parents=True)
        if files is not None:
            files(self.share_dir)
        self.catalog = Catalog(self.dir / "catalog.db")
        self.catalog.add_folder(self.share_dir)
        self.catalog.scan()
        self.index = ShareIndex()
        self.index.rebuild(self.catalog.files())
        self.listener: Listener | None = None
        transfers: list[NapsterTransfers] = []
        if not firewalled:
            self.listener = self.runtime.listen(
                (world.host(self.runtime), 0), lambda: transfers[0].handler_factory()()
            )
        port = self.listener.address[1] if self.listener is not None else 0
        self.client = NapsterClient(
            self.runtime,
            ClientConfig(servers=list(servers), nick=name, password=password or f"pw-{name}",
                         data_port=port, link_type=link, retry_min=0.2, retry_max=1.0),
            shares=lambda: self.index.messages,
        )
        self.transfers = NapsterTransfers(
            self.runtime, self.client, self.catalog, self.index,
            incomplete_dir=self.dir / "incomplete", download_dir=self.dir / "downloads",
        )  # fmt: skip
        transfers.append(self.transfers)
        self.client.on_online = self.transfers.online
        self.client.on_push_request = self.transfers.push_requested
        self.client.on_upload_request = self.transfers.upload_requested
        self.client.on_link_speed = self.transfers.link_speed

    def start(self) -> NapPeer:
        self.client.start()
        return self

    def wait_online(self) -> None:
        assert self.world.run_until(lambda: self.client.online, WAIT), (
            f"{self.name} not online: {self.client.state} {self.client.detail}"
        )

    def search(self, words: str, limit: int = 100) -> list[NapsterHit]:
        hits: list[NapsterHit] = []
        done: list[str | None] = []
        self.client.search(SearchQuery(contains=(words,), max_results=limit),
                           hits.append, done.append)
        assert self.world.run_until(lambda: bool(done), WAIT), "search did not end"
        assert done == [None], done
        return hits

    def download(self, hit: NapsterHit, name: str | None = None) -> str:
        dl = self.transfers.add(
            name=name or hit.filename.rsplit("\\", 1)[-1], size=hit.size, md5=hit.md5,
            sources=[NapsterSource(hit.nick, hit.filename, int(hit.link_type))],
        )  # fmt: skip
        return dl.id

    def wait_download(self, download_id: str, statuses: tuple[str, ...] = ("complete", "failed")
                      ) -> Any:
        def ended() -> bool:
            dl = self.transfers.get(download_id)
            return dl is not None and dl.status in statuses

        assert self.world.run_until(ended, WAIT), self.transfers.downloads()
        dl = self.transfers.get(download_id)
        assert dl is not None
        return dl.info(self.runtime.now())

    def close(self) -> None:
        self.transfers.close()
        self.client.close()
        if self.listener is not None:
            self.listener.close()
        self.catalog.close()


def same_bytes(a: Path, b: Path) -> bool:
    return os.path.getsize(a) == os.path.getsize(b) and a.read_bytes() == b.read_bytes()


# ------------------------------------------------------- processes (CLI tests)

import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

#: Bounds on the waits of the process tests (never asserted as timings).
START_TIMEOUT = 60.0
CLI_TIMEOUT = 120.0
POLL = 0.1
_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")


def proc_env(home: Path) -> dict[str, str]:
    """No PEERLAB_* from the caller; per-user folders under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["COLUMNS"] = "200"
    return env


class ServerProc:
    """``peerlab napster-server`` on a free port with its own SQLite index."""

    def __init__(self, home: Path, root: Path, name: str) -> None:
        self.out = root / f"{name}.out"
        root.mkdir(parents=True, exist_ok=True)
        with self.out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peerlab.cli", "napster-server", "--port", "0",
                 "--database", f"sqlite:{root / name}.db", "--password-cost", "4",
                 "--exit-with-parent"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=proc_env(home),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            m = _LISTENING.search(self.out.read_text(errors="replace"))
            if m:
                self.address = f"{m.group(1)}:{m.group(2)}"
                return
            assert self.proc.poll() is None, self.out.read_text()
            assert time.monotonic() < deadline, "napster-server did not start"
            time.sleep(POLL)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class NodeProc:
    """One ``peerlab node`` subprocess with its own data dir."""

    def __init__(self, home: Path, data_dir: Path, args: list[str]) -> None:
        self.home = home
        self.data_dir = data_dir
        self.log = data_dir.parent / f"{data_dir.name}.out"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peerlab.cli", "--data-dir", str(data_dir), "node",
                 "--listen-port", "0", "--napster-port", "0", "--exit-with-parent", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=proc_env(home),
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [sys.executable, "-m", "peerlab.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, env=proc_env(self.home),
        )
        if check and p.returncode != 0:
            raise AssertionError(f"peerlab {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_ready(self, files: int = 0, shared: int | None = None) -> dict[str, Any]:
        """Until the node answers, has scanned ``files`` files and is on Napster
        with ``shared`` files shared there (default: ``files``)."""
        want = files if shared is None else shared
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}:\n{self.output()}")
            if (self.data_dir / "control.json").exists():
                p = self.cli("status", "--json", check=False)
                if p.returncode == 0:
                    st: dict[str, Any] = json.loads(p.stdout)
                    nap = st.get("napster") or {}
                    if (not st["scan"]["running"] and st["shares"]["files"] >= files
                            and nap.get("state") == "online" and nap.get("shared") == want):
                        return st
            time.sleep(POLL)
        raise AssertionError(f"node not ready in {START_TIMEOUT} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
