"""The node's ``[bittorrent]`` settings (issue 6, item 6): a table in the
config file, environment variables, flags; mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerlab.apps.config import load_config
from peerlab.errors import ConfigError


def test_table_in_the_file_env_and_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'listen_port = 7000\n[bittorrent]\nlisten_port = 7001\nupload_rate = "1M"\n'
        'download_rate = 300000\nseed_ratio = 2\nseed_time = "3600"\ndownload_dir = "films"\n'
    )
    c = load_config(config_path=cfg, env={})
    assert c.listen_port == 7000 and c.bittorrent_listen_port == 7001
    assert c.bittorrent_upload_rate == 1 << 20 and c.bittorrent_download_rate == 300000
    assert c.bittorrent_seed_ratio == 2.0 and c.bittorrent_seed_time == 3600.0
    assert c.torrent_download_path == tmp_path / "films"
    assert c.bittorrent is True
    env = {"PEERLAB_BITTORRENT_SEED_RATIO": "0.5", "PEERLAB_BITTORRENT": "false"}
    c = load_config(config_path=cfg, env=env, flags={"bittorrent_listen_port": "0"})
    assert c.bittorrent_seed_ratio == 0.5 and c.bittorrent is False
    assert c.bittorrent_listen_port == 0
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    d = load_config(config_path=empty, env={})
    assert d.bittorrent_listen_port is None  # a free port, remembered
    assert d.torrent_download_path == d.downloads_path


@pytest.mark.parametrize(("text", "needle"), [
    ("[bittorrent]\nspeed = 3\n", "unknown key 'speed' in [bittorrent]"),
    ("[bittorrent]\nseed_ratio = -1\n", "bittorrent_seed_ratio"),
    ("[bittorrent]\nlisten_port = 70000\n", "out of range"),
    ("[bittorrent]\nenabled = 'perhaps'\n", "true or false"),
    ("[gnutella_table]\nx = 1\n", "unknown key"),
])  # fmt: skip
def test_mistakes_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(config_path=cfg, env={})
    assert needle in str(e.value) and "\n" not in str(e.value)
