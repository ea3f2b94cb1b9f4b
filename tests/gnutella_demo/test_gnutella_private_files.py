"""The node never shares its own files, the Gnutella host cache included.

Issue 4, section 2 keeps a persistent host cache in the data dir
(``gnutella_hosts.json``): it lists the addresses of the node's neighbours,
so a shared folder holding the data dir must not offer it to the network.
"""

from __future__ import annotations

from pathlib import Path

from peerlab.apps.config import NodeConfig
from peerlab.apps.node import GNUTELLA_HOSTS_FILE, open_catalog


def test_host_cache_is_never_shared(tmp_path: Path) -> None:
    data_dir = tmp_path / "share" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / GNUTELLA_HOSTS_FILE).write_text('{"hosts": []}')
    (data_dir / "node.log").write_text("log\n")
    (tmp_path / "share" / "The Big Lebowski.txt").write_text("the dude abides\n")
    catalog = open_catalog(NodeConfig(data_dir=data_dir))
    try:
        catalog.add_folder(tmp_path / "share")
        catalog.scan()
        names = sorted(f.name for f in catalog.files())
    finally:
        catalog.close()
    assert names == ["The Big Lebowski.txt"]
