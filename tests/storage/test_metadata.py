"""peerlab.storage.metadata and peerlab.apps.media: types, tags, real MP3s."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from peerlab.apps.media import MPEG1_L3_BITRATES, mp3_stream, write_mp3
from peerlab.storage.metadata import MAX_TAG_CHARS, classify, read_audio_tags, read_metadata


def test_classify_by_extension() -> None:
    assert classify("Numb.MP3") == ("audio", "audio/mpeg")
    assert classify("a.flac") == ("audio", "audio/flac")
    assert classify("film.mkv") == ("video", "video/x-matroska")
    assert classify("x.jpeg") == ("image", "image/jpeg")
    assert classify("paper.pdf") == ("document", "application/pdf")
    assert classify("bundle.tar.gz") == ("archive", "application/gzip")
    assert classify("README") == ("other", "application/octet-stream")
    assert classify(".hidden") == ("other", "application/octet-stream")
    assert classify("trailing.") == ("other", "application/octet-stream")
    assert classify("x.unknownext") == ("other", "application/octet-stream")


def frames_of(data: bytes, start: int) -> list[tuple[int, int, bool]]:
    """Walk an MPEG-1 Layer III stream: (bitrate kbps, sample rate, padded) per frame."""
    rates = (44100, 48000, 32000)
    out = []
    pos = start
    while pos < len(data):
        (h,) = struct.unpack_from(">I", data, pos)
        assert h >> 21 == 0x7FF, f"no frame sync at {pos}"
        assert (h >> 19) & 3 == 0b11, "not MPEG-1"
        assert (h >> 17) & 3 == 0b01, "not Layer III"
        bitrate = MPEG1_L3_BITRATES[(h >> 12) & 0xF]
        rate = rates[(h >> 10) & 3]
        padded = bool((h >> 9) & 1)
        length = 144 * bitrate * 1000 // rate + padded
        side_info = data[pos + 4 : pos + 4 + 32]
        assert side_info == bytes(32), "side info of a silent frame is all zero"
        out.append((bitrate, rate, padded))
        pos += length
    assert pos == len(data), "the last frame ends exactly at the end of the file"
    return out


def id3_size(data: bytes) -> int:
    assert data[:3] == b"ID3"
    s = data[6:10]
    return 10 + ((s[0] << 21) | (s[1] << 14) | (s[2] << 7) | s[3])


@pytest.mark.parametrize("bitrate", [32, 128, 192, 320])
def test_write_mp3_is_a_genuine_tagged_stream(tmp_path: Path, bitrate: int) -> None:
    p = write_mp3(
        tmp_path / "deep" / "Numb.mp3", title="Numb", artist="Linkin Park", album="Meteora",
        genre="Rock", seconds=4.0, bitrate_kbps=bitrate, seed=7,
    )  # fmt: skip
    data = p.read_bytes()
    frames = frames_of(data, id3_size(data))
    assert len(frames) == round(4.0 * 44100 / 1152)
    assert {(b, r) for b, r, _ in frames} == {(bitrate, 44100)}
    # Padding keeps the average frame length exact: 144 * bitrate / 44.1k.
    payload = len(data) - id3_size(data)
    assert abs(payload - len(frames) * 144 * bitrate * 1000 / 44100) < 1

    audio = MP3(p)
    assert audio.info.bitrate == bitrate * 1000
    assert audio.info.sample_rate == 44100
    assert audio.info.length == pytest.approx(len(frames) * 1152 / 44100, abs=0.05)
    meta = read_metadata(p)
    assert (meta.kind, meta.mime) == ("audio", "audio/mpeg")
    assert (meta.title, meta.artist, meta.album, meta.genre) == (
        "Numb", "Linkin Park", "Meteora", "Rock",
    )  # fmt: skip
    assert meta.bitrate == bitrate and meta.sample_rate == 44100
    assert meta.duration == pytest.approx(4.0, abs=0.05)


def test_write_mp3_is_deterministic_per_seed(tmp_path: Path) -> None:
    kw = dict(title="T", artist="A", album="B", genre="G", seconds=1.0)
    a = write_mp3(tmp_path / "a.mp3", seed=1, **kw).read_bytes()  # type: ignore[arg-type]
    b = write_mp3(tmp_path / "b.mp3", seed=1, **kw).read_bytes()  # type: ignore[arg-type]
    c = write_mp3(tmp_path / "c.mp3", seed=2, **kw).read_bytes()  # type: ignore[arg-type]
    assert a == b
    assert a != c and len(a) == len(c)


def test_write_mp3_refuses_a_bitrate_layer_iii_lacks() -> None:
    with pytest.raises(ValueError, match="not an MPEG-1 Layer III bitrate"):
        mp3_stream(1.0, bitrate_kbps=100)
    with pytest.raises(ValueError):
        mp3_stream(0, bitrate_kbps=128)


def test_unicode_tags_round_trip(tmp_path: Path) -> None:
    p = write_mp3(
        tmp_path / "halo.mp3", title="Halo ♪", artist="Beyoncé", album="日本語",
        genre="Pop", seconds=1.0,
    )  # fmt: skip
    meta = read_metadata(p)
    assert (meta.title, meta.artist, meta.album) == ("Halo ♪", "Beyoncé", "日本語")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage" * 100,
        b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\x00" * 50,  # tag claims 256 MiB
        b"ID3\x03\x00\x00\x00\x00\x01\x00TIT2\x00\x00\xff\xff\x00\x00\x01",  # frame overruns
        b"\xff\xfb\x90\x00" * 3,  # headers without frames
        b"fLaC\x00\x00\x00\x22" + b"\xff" * 10,  # truncated FLAC stream info
    ],
)
@pytest.mark.parametrize("ext", ["mp3", "flac", "ogg", "m4a"])
def test_a_broken_audio_file_has_no_tags_and_never_raises(
    tmp_path: Path, data: bytes, ext: str
) -> None:
    p = tmp_path / f"broken.{ext}"
    p.write_bytes(data)
    meta = read_metadata(p)
    assert meta.kind == "audio"
    assert meta.title is None and meta.artist is None


def test_a_truncated_mp3_keeps_what_can_be_read(tmp_path: Path) -> None:
    p = write_mp3(tmp_path / "t.mp3", title="T", artist="A", album="B", genre="G", seconds=2)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert read_metadata(p).title == "T"
    p.write_bytes(data[:20])  # the tag itself cut short
    assert read_metadata(p).title is None


def test_missing_file_means_no_tags(tmp_path: Path) -> None:
    assert read_audio_tags(tmp_path / "nope.mp3") == {}
    assert read_metadata(tmp_path / "nope.txt").kind == "document"


def test_tag_text_is_cleaned_and_bounded(tmp_path: Path) -> None:
    p = write_mp3(
        tmp_path / "x.mp3", title="  a\x07b\nc  ", artist="x" * 5000, album="", genre="G",
        seconds=1.0,
    )  # fmt: skip
    meta = read_metadata(p)
    assert meta.title == "a b c"
    assert meta.artist == "x" * MAX_TAG_CHARS
    assert meta.album is None


def test_non_audio_files_are_not_parsed(tmp_path: Path) -> None:
    # An MP3 under another extension: typed by name, so no tags are read.
    p = write_mp3(tmp_path / "song.txt", title="T", artist="A", album="B", genre="G", seconds=1)
    meta = read_metadata(p)
    assert (meta.kind, meta.mime, meta.title, meta.bitrate) == (
        "document", "text/plain", None, None,
    )  # fmt: skip
