"""The commands from their own modules are reachable through ``peerlab``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from peerlab.cli.main import cli


def test_torrent_create_and_info_through_peerlab(tmp_path: Path) -> None:
    payload = tmp_path / "track.bin"
    payload.write_bytes(bytes(range(256)) * 1000)
    out = tmp_path / "track.torrent"
    runner = CliRunner()
    made = runner.invoke(
        cli, ["torrent", "create", str(payload), "--tracker", "http://127.0.0.1:6969/announce",
              "-o", str(out)]
    )
    assert made.exit_code == 0, made.output
    shown = runner.invoke(cli, ["torrent", "info", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.output)
    assert info["name"] == "track.bin" and info["size"] == 256_000


def test_server_commands_are_listed() -> None:
    listing = CliRunner().invoke(cli, ["--help"]).output
    for name in ("napster-server", "gwebcache", "torrent", "tracker"):
        assert f"  {name} " in listing
