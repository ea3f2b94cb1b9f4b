"""Node settings: precedence flag > env > file > default, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerlab.apps.config import (
    DEFAULT_PEER_PORT,
    NodeConfig,
    default_config_path,
    load_config,
    parse_address,
    parse_rate,
)
from peerlab.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_loopback_and_gnutella_port(isolated: Path) -> None:
    cfg = load_config(env={})
    assert cfg.listen_host == "127.0.0.1"
    assert cfg.listen_port == DEFAULT_PEER_PORT == 6346
    assert cfg.control_port == 0
    assert cfg.upload_rate == 0 and cfg.download_rate == 0
    assert cfg.peers == [] and cfg.shared == []
    # The per-user locations follow XDG (set by the fixture).
    assert str(cfg.data_dir).startswith(str(isolated / "data"))
    assert str(default_config_path()).startswith(str(isolated / "config"))
    assert cfg.downloads_path == cfg.data_dir / "downloads"
    assert cfg.incomplete_path == cfg.data_dir / "incomplete"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.toml",
        'listen_port = 7000\nupload_slots = 3\nupload_rate = "1M"\ndata_dir = "d"\n'
        'peers = ["127.0.0.1:9000"]\n',
    )
    env = {"PEERLAB_UPLOAD_SLOTS": "5", "PEERLAB_LISTEN_PORT": "7001"}
    cfg = load_config(config_path=f, env=env, flags={"listen_port": "7002"})
    assert cfg.listen_port == 7002  # flag
    assert cfg.upload_slots == 5  # env
    assert cfg.upload_rate == 1 << 20  # file
    assert cfg.queue_length == NodeConfig().queue_length  # default
    assert cfg.data_dir == tmp_path / "d"  # relative to the file
    assert cfg.peers == ["127.0.0.1:9000"]


def test_default_file_is_read_when_present(isolated: Path) -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, "upload_slots = 9\n")
    assert load_config(env={}).upload_slots == 9


def test_env_lists_and_config_env_var(tmp_path: Path) -> None:
    f = write(tmp_path / "other.toml", "queue_length = 7\n")
    env = {
        "PEERLAB_CONFIG": str(f),
        "PEERLAB_PEERS": "127.0.0.1:1, 127.0.0.1:2",
        "PEERLAB_SHARED": f"{tmp_path}/a:{tmp_path}/b",
        "PEERLAB_DOWNLOAD_RATE": "250K",
    }
    cfg = load_config(env=env)
    assert cfg.queue_length == 7
    assert cfg.peers == ["127.0.0.1:1", "127.0.0.1:2"]
    assert cfg.shared == [tmp_path / "a", tmp_path / "b"]
    assert cfg.download_rate == 250 * 1024


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ('listen_port = "high"\n', "listen_port"),
        ("listen_port = 70000\n", "out of range"),
        ("upload_slots = 0\n", "upload_slots"),
        ("listen_port = [\n", "not valid TOML"),
        ('peers = ["nohost"]\n', "HOST:PORT"),
        ('upload_rate = "fast"\n', "upload_rate"),
        ('peers = { a = 1 }\n', "'peers' must be a value"),
        ('log_level = "loud"\n', "log_level"),
    ],
)
def test_bad_file_is_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    f = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as e:
        load_config(config_path=f, env={})
    message = str(e.value)
    assert needle in message and str(f) in message
    assert "\n" not in message


def test_bad_env_and_flag_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PEERLAB_UPLOAD_SLOTS"):
        load_config(env={"PEERLAB_UPLOAD_SLOTS": "many"})
    with pytest.raises(ConfigError, match="--listen-port"):
        load_config(env={}, flags={"listen_port": "-1"})


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_path=tmp_path / "missing.toml", env={})


def test_rate_and_address_parsing() -> None:
    assert parse_rate("2M", "x") == 2 << 20
    assert parse_rate("1.5K/s", "x") == 1536
    assert parse_rate("100kb/s", "x") == 100 * 1024
    assert parse_rate(300, "x") == 300
    with pytest.raises(ConfigError):
        parse_rate(-1, "x")
    assert parse_address("127.0.0.1:6346") == ("127.0.0.1", 6346)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("127.0.0.1", ":80", "h:0", "h:99999", "h:x"):
        with pytest.raises(ConfigError):
            parse_address(bad)
