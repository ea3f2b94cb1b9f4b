"""Shared helpers for the share-catalog tests: a small tagged music library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from peerlab.apps.media import write_mp3
from peerlab.storage.catalog import Catalog


@dataclass(frozen=True)
class Track:
    name: str
    title: str
    artist: str
    album: str
    genre: str
    bitrate: int = 128
    seconds: float = 3.0


TRACKS = (
    Track("Linkin_Park-Numb.mp3", "Numb", "Linkin Park", "Meteora", "Rock"),
    Track("Linkin_Park-In_The_End.mp3", "In the End", "Linkin Park", "Hybrid Theory", "Rock"),
    Track("Jay-Z - Encore.mp3", "Encore", "Jay-Z and Linkin Park", "Collision Course", "Hip-Hop"),
    Track(
        "numb covers vol 1.mp3",
        "Various",
        "Various Artists",
        "Numb Covers Collection Volume One",
        "Rock",
    ),  # fmt: skip
    Track("01 - Halo.mp3", "Halo", "Beyoncé", "I Am... Sasha Fierce", "Pop", bitrate=320),
    Track(
        "Daft Punk/Discovery/One More Time.mp3",
        "One More Time",
        "Daft Punk",
        "Discovery",
        "Electronic",
        bitrate=192,
    ),  # fmt: skip
)


def make_library(root: Path) -> dict[str, Path]:
    """The TRACKS as real tagged MP3s plus a few other files; name -> path."""
    made: dict[str, Path] = {}
    for seed, t in enumerate(TRACKS):
        p = write_mp3(
            root / t.name, title=t.title, artist=t.artist, album=t.album, genre=t.genre,
            seconds=t.seconds, bitrate_kbps=t.bitrate, seed=seed,
        )  # fmt: skip
        made[p.name] = p
    for name, data in (
        ("park_walk.txt", b"a walk in the park\n"),
        ("Annual_Report-2024.final.pdf", b"%PDF-1.4 not really\n"),
        ("MyHolidayVideo.mkv", b"\x1a\x45\xdf\xa3" + bytes(1000)),
    ):
        p = root / name
        p.write_bytes(data)
        made[name] = p
    return made


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    make_library(root)
    return root


@pytest.fixture
def catalog(tmp_path: Path):
    cat = Catalog(tmp_path / "data" / "catalog.db")
    yield cat
    cat.close()


@pytest.fixture
def tracks() -> tuple[Track, ...]:
    return TRACKS


@pytest.fixture(scope="module")
def searchable(tmp_path_factory: pytest.TempPathFactory):
    """One scanned library per test module, for tests that only search it."""
    base = tmp_path_factory.mktemp("searchable")
    root = base / "share"
    root.mkdir()
    make_library(root)
    cat = Catalog(base / "catalog.db")
    cat.add_folder(root)
    cat.scan()
    yield cat
    cat.close()
