"""A peerlab leecher as its own process, for the SIGKILL test:
``python leech_process.py TORRENT SAVE_DIR STATE_DIR HOST PORT`` downloads the
torrent from the peer at HOST:PORT until it completes (or is killed)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from peerlab.overlays.bittorrent import Session, SessionConfig
from peerlab.runtime.aio import AsyncioRuntime, new_event_loop


async def main(torrent: Path, save: Path, state: Path, host: str, port: int) -> None:
    rt = AsyncioRuntime()
    s = Session(rt, SessionConfig(state_dir=state))
    s.start()
    t = s.add_torrent(torrent.read_bytes(), save_path=save, peers=[(host, port)])
    print("started", flush=True)
    while not t.complete:
        await asyncio.sleep(0.05)
    print("complete", flush=True)


if __name__ == "__main__":
    torrent, save, state, host, port = sys.argv[1:6]
    loop = new_event_loop()
    loop.run_until_complete(main(Path(torrent), Path(save), Path(state), host, int(port)))
