"""Trackerless ``.torrent`` files carry DHT nodes (BEP 5 "Torrent File
Extensions": ``nodes``): ``peerlab torrent create --dht-node`` writes them,
``torrent info`` shows them, and a session with a DHT pings them and takes
those that answer into its routing table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dhtswarmkit import Peer, routers

from peerlab.cli.torrent import main
from peerlab.runtime.worlds import World
from peerlab.wire.metainfo import Metainfo


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out.out, out.err


def test_torrent_nodes_are_written_shown_and_joined(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rs = routers(world, 2)
    addresses = [n.address for n in rs]
    assert all(a is not None for a in addresses)
    (tmp_path / "song.bin").write_bytes(bytes(range(256)) * 300)
    target = tmp_path / "song.torrent"
    args = ["create", str(tmp_path / "song.bin"), "-o", str(target)]
    for host, port in addresses:  # type: ignore[misc]
        args += ["--dht-node", f"{host}:{port}"]
    code, _, err = _run(capsys, *args)
    assert code == 0, err
    meta = Metainfo.from_bytes(target.read_bytes())
    assert meta.trackers == () and list(meta.nodes) == addresses
    code, out, _ = _run(capsys, "info", str(target))
    assert code == 0 and "dht node" in out
    for host, port in addresses:  # type: ignore[misc]
        assert f"{host}:{port}" in out
    code, out, _ = _run(capsys, "info", str(target), "--json")
    assert json.loads(out)["dht_nodes"] == [f"{h}:{p}" for h, p in addresses]  # type: ignore[misc]
    code, _, err = _run(capsys, "create", str(tmp_path / "song.bin"), "-o",
                        str(tmp_path / "x.torrent"), "--dht-node", "nonsense")  # fmt: skip
    assert code == 1 and "--dht-node" in err and "Traceback" not in err

    # a peer whose DHT knows nobody joins through the torrent's nodes
    p = Peer(world, "peer", storage="memory")
    try:
        assert len(p.dht.routing_table) == 0
        p.session.add_torrent(meta)
        assert p.session.counters["dht_nodes_from_torrents"] == 2
        assert world.run_until(lambda: len(p.dht.routing_table) >= 2, 30.0)
        for a in addresses:
            assert p.dht.routing_table.find_address(a) is not None  # type: ignore[arg-type]
    finally:
        p.close()
        for n in rs:
            n.close()
