"""Every user mistake is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peerlab.apps.media import write_mp3

Cli = Callable[..., Any]


def assert_one_line(result: Any, needle: str, code: int = 1) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err_lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("peerlab: ")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("transfers",),
        ("search", "anything"),
        ("download", "1"),
        ("peer",),
        ("stop",),
    ],
)
def test_node_not_running(cli: Cli, tmp_path: Path, args: tuple[str, ...]) -> None:
    r = cli("--data-dir", str(tmp_path / "d"), *args)
    assert_one_line(r, "no node is running")


def test_stale_control_file_means_not_running(cli: Cli, tmp_path: Path) -> None:
    # A node killed with -9 leaves control.json behind; nothing answers on its port.
    d = tmp_path / "d"
    d.mkdir()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (d / "control.json").write_text(json.dumps({"port": port, "token": "t", "pid": 1}))
    assert_one_line(cli("--data-dir", str(d), "status"), "no node is running")


def test_bad_config_file(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("upload_slots = 'many'\n")
    r = cli("--config", str(bad), "status")
    assert_one_line(r, "upload_slots")
    assert str(bad) in r.err
    bad.write_text("what is this\n")
    assert_one_line(cli("--config", str(bad), "status"), "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    assert_one_line(cli("--config", str(unknown), "status"), "unknown key 'colour'")
    assert_one_line(cli("--config", str(tmp_path / "none.toml"), "status"), "does not exist")


def test_bad_env_value(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERLAB_LISTEN_PORT", "port")
    assert_one_line(cli("--data-dir", str(tmp_path), "config"), "PEERLAB_LISTEN_PORT")


def test_unknown_folder(cli: Cli, tmp_path: Path) -> None:
    r = cli("--data-dir", str(tmp_path / "d"), "share", "add", str(tmp_path / "nope"))
    assert_one_line(r, "no such folder")
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_one_line(cli("--data-dir", str(tmp_path / "d"), "share", "add", str(f)), "not a folder")


def test_usage_mistakes_are_one_line_too(cli: Cli, tmp_path: Path) -> None:
    assert_one_line(cli("download"), "Missing argument", code=2)
    assert_one_line(cli("frobnicate"), "No such command", code=2)
    assert_one_line(cli("node", "--upload-slotz", "3"), "No such option", code=2)
    r = cli("--data-dir", str(tmp_path), "search", "--artist", "a", "--title", "b")
    assert_one_line(r, "either WORDS or one of")


def test_browse_nobody_there(cli: Cli, tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = cli("--data-dir", str(tmp_path / "d"), "browse", f"127.0.0.1:{port}")
    assert_one_line(r, f"cannot browse 127.0.0.1:{port}")
    assert_one_line(cli("browse", "nonsense"), "HOST:PORT")


def test_unexpected_error_names_the_log(
    cli: Cli, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peerlab.cli.main as m

    def boom(**kw: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(m, "load_config", boom)
    r = cli("status")
    assert_one_line(r, "unexpected error: RuntimeError: boom")
    log = Path(r.err.split("details in ")[1].rstrip(")\n"))
    assert log.is_file() and "Traceback" in log.read_text()
    assert str(log).startswith(str(isolated))


def test_share_commands_work_without_a_node(cli: Cli, tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    write_mp3(music / "a.mp3", title="Little Toot", artist="Maclean & Maclean",
              album="Toot", genre="Comedy", seconds=2, seed=1)
    d = str(tmp_path / "d")
    r = cli("--data-dir", d, "share", "add", str(music))
    assert r.code == 0, r.err
    assert "sharing" in r.out and "scan done" in r.out
    r = cli("--data-dir", d, "share", "list", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["folders"] == [str(music.resolve())]
    (f,) = data["files"]
    assert f["name"] == "a.mp3" and f["artist"] == "Maclean & Maclean"
    assert f["urn"].startswith("urn:sha1:")
    r = cli("--data-dir", d, "share", "scan", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["files"] == 1 and report["hashed"] == 0 and report["unchanged"] == 1
    r = cli("--data-dir", d, "share", "remove", str(music))
    assert r.code == 0, r.err
    assert json.loads(cli("--data-dir", d, "share", "list", "--json").out)["folders"] == []
    assert_one_line(cli("--data-dir", d, "share", "remove", str(music)), "not a shared folder")


def test_console_script_exits_non_zero_with_one_line(isolated: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLAB_")}
    p = subprocess.run(
        [sys.executable, "-m", "peerlab.cli", "--data-dir", str(tmp_path / "d"), "status"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "no node is running" in p.stderr
