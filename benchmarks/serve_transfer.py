#!/usr/bin/env python3
"""Serve one folder over peerlab's HTTP (UploadService on the real runtime), for
``bench_transfer.py``: run as its own process so the server and the downloader
do not share a core's event loop.

Usage: ``serve_transfer.py FOLDER DB_PATH``.  Prints one JSON line
``{"port", "files": [{"urn", "index", "name", "size", "chunk_root"}]}`` when
listening on 127.0.0.1, then serves until its standard input closes.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from peerlab.overlays.transfer.server import UploadConfig, UploadService  # noqa: E402
from peerlab.runtime.aio import AsyncioRuntime, new_event_loop  # noqa: E402
from peerlab.storage.catalog import Catalog  # noqa: E402
from peerlab.wire.urn import b32  # noqa: E402


def main() -> int:
    folder, db_path = Path(sys.argv[1]), Path(sys.argv[2])
    catalog = Catalog(db_path)
    catalog.add_folder(folder)
    catalog.scan()
    loop = new_event_loop()
    runtime = AsyncioRuntime(loop)
    service = UploadService(runtime, catalog, UploadConfig(slots=8))
    listener = runtime.listen(("127.0.0.1", 0), service.handler_factory())
    files = [
        {
            "urn": f.urn,
            "index": f.index,
            "name": f.name,
            "size": f.size,
            "chunk_root": b32(f.chunk_root),
        }
        for f in catalog.files()
    ]
    print(json.dumps({"port": listener.address[1], "files": files}), flush=True)

    def wait_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=wait_stdin, daemon=True).start()
    try:
        loop.run_forever()
    finally:
        listener.close()
        service.close()
        runtime.close()
        catalog.close()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
