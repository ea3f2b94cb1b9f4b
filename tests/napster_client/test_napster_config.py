"""Napster settings: config file, environment, flags; secrets masked in ``peerlab config``."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerlab.apps.config import DEFAULT_NAPSTER_PORT, load_config
from peerlab.errors import ConfigError


def test_defaults_do_not_join_napster() -> None:
    cfg = load_config(env={})
    assert cfg.napster == []
    assert cfg.napster_nick is None and cfg.napster_password is None
    assert cfg.napster_port == DEFAULT_NAPSTER_PORT == 6699
    assert cfg.napster_firewalled is False and cfg.napster_link == 0


def test_file_env_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'napster = ["127.0.0.1:8888", "127.0.0.1:7777"]\nnapster_nick = "lefty"\n'
        'napster_link = "cable"\nnapster_firewalled = true\n',
        encoding="utf-8",
    )
    cfg = load_config(config_path=f, env={"PEERLAB_NAPSTER_PASSWORD": "s3cret"})
    assert cfg.napster == ["127.0.0.1:8888", "127.0.0.1:7777"]
    assert cfg.napster_nick == "lefty" and cfg.napster_password == "s3cret"
    assert cfg.napster_link == 7 and cfg.napster_firewalled is True
    assert cfg.to_display()["napster_password"] == "********"
    assert cfg.to_dict()["napster_password"] == "s3cret"
    cfg = load_config(
        config_path=f,
        env={"PEERLAB_NAPSTER": "127.0.0.1:1,127.0.0.1:2", "PEERLAB_NAPSTER_FIREWALLED": "no"},
        flags={"napster_link": "9", "napster_port": "0"},
    )
    assert cfg.napster == ["127.0.0.1:1", "127.0.0.1:2"]
    assert cfg.napster_firewalled is False
    assert cfg.napster_link == 9 and cfg.napster_port == 0


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("napster", '["nohost"]', "HOST:PORT"),
        ("napster_nick", '"has space"', "nick"),
        ("napster_password", '"two words"', "password"),
        ("napster_link", '"warp"', "link type"),
        ("napster_link", "11", "out of range"),
        ("napster_firewalled", '"maybe"', "true or false"),
    ],
)
def test_bad_napster_values_are_one_line(tmp_path: Path, key: str, value: str, needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(f"{key} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(config_path=f, env={})
    assert needle in str(e.value) and key in str(e.value) and "\n" not in str(e.value)


def test_config_command_masks_the_password(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.toml"
    f.write_text('napster_password = "hunter22"\nnapster = ["127.0.0.1:8888"]\n')
    r = cli("--config", str(f), "config")
    assert r.code == 0, r.err
    assert "hunter22" not in r.out and "napster_password = '********'" in r.out
    assert "napster = ['127.0.0.1:8888']" in r.out
