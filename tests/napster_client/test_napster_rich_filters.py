"""``peerlab search --min-bitrate/--min-length`` through a node on Napster
(issue 5 item 4 where Napster's protocol has the filters: message 200's
``BITRATE "AT LEAST"`` and ``DURATION "AT LEAST"`` clauses): the index
server leaves out the files below the floors, real processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from napclientkit import NodeProc, ServerProc

from peerlab.apps.media import write_mp3

#: An index server and two node processes: over ten seconds.
pytestmark = pytest.mark.slow


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for p in reversed(started):
        p.stop()


def test_bitrate_and_length_floors_reach_the_index_server(
    tmp_path: Path, procs: list[Any]
) -> None:
    share = tmp_path / "share"
    for i, (name, seconds, kbps) in enumerate([("numb live.mp3", 9, 192),
                                                ("numb demo.mp3", 9, 96),
                                                ("numb edit.mp3", 3, 256)]):  # fmt: skip
        write_mp3(share / name, title="Numb", artist="Linkin Park", album="Meteora",
                  genre="Rock", seconds=seconds, bitrate_kbps=kbps, seed=i)  # fmt: skip
    server = ServerProc(tmp_path / "home", tmp_path / "servers", "one")
    procs.append(server)
    lefty = NodeProc(tmp_path / "home", tmp_path / "lefty",
                     ["--share", str(share), "--napster", server.address, "--napster-nick",
                      "lefty", "--napster-link", "cable"])  # fmt: skip
    procs.append(lefty)
    mred = NodeProc(tmp_path / "home", tmp_path / "mred",
                    ["--napster", server.address, "--napster-nick", "mred"])  # fmt: skip
    procs.append(mred)
    lefty.wait_ready(files=3, shared=3)
    mred.wait_ready()

    everything = {r["name"]: r["bitrate"] for r in mred.json("search", "numb")}
    assert everything == {"numb live.mp3": 192, "numb demo.mp3": 96, "numb edit.mp3": 256}
    floor = {r["name"] for r in mred.json("search", "numb", "--min-bitrate", "128")}
    assert floor == {"numb live.mp3", "numb edit.mp3"}
    both = mred.json("search", "numb", "--min-bitrate", "128", "--min-length", "5")
    assert [r["name"] for r in both] == ["numb live.mp3"]
    assert both[0]["users"][0]["nick"] == "lefty"
