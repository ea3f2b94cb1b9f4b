"""Real, tagged MP3 files for the demo and the tests.

Writes a genuine MPEG-1 Layer III stream (ISO/IEC 11172-3, section 2.4.1.3
frame header; 2.4.1.7 side information) at 44.1 kHz and constant bitrate,
preceded by an ID3v2.3 tag written with mutagen.  Every frame is a silent
frame: its side information is all zero (``main_data_begin`` 0 and
``part2_3_length`` 0 in every granule), so a decoder consumes no main data
and outputs silence; the rest of each frame is ancillary data, filled with
bytes from a ``random.Random(seed)`` so that files with different seeds have
different contents (and different ``urn:sha1``) while staying valid.

mutagen reads such a file back with its tags, its bitrate and (from the
stream's length and bitrate) its duration, as it would any CBR MP3.
"""

from __future__ import annotations

import random
from pathlib import Path

from mutagen.easyid3 import EasyID3

#: MPEG-1 Layer III bitrates in kbps, indexed by the header's 4-bit field
#: (index 0 is "free format", 15 is forbidden).
MPEG1_L3_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
SAMPLE_RATE = 44100
#: Header sample-rate index for 44.1 kHz in MPEG-1.
_SAMPLE_RATE_INDEX = 0
#: Samples per Layer III frame (MPEG-1).
SAMPLES_PER_FRAME = 1152
#: Side information size for a two-channel MPEG-1 frame.
_SIDE_INFO_STEREO = 32
_HEADER_SIZE = 4
#: Generated files are for tests and demos: an hour is plenty, and a bound
#: keeps a typo from filling the disk.
MAX_SECONDS = 3600.0


def _frame_header(bitrate_index: int, padding: bool) -> bytes:
    """Four header bytes: sync, MPEG-1, Layer III, no CRC, 44.1 kHz, stereo."""
    b1 = 0xFF
    b2 = 0xE0 | (0b11 << 3) | (0b01 << 1) | 0b1  # sync, MPEG-1, Layer III, no CRC
    b3 = (bitrate_index << 4) | (_SAMPLE_RATE_INDEX << 2) | (int(padding) << 1)
    b4 = (0b00 << 6) | 0b0000_0100  # stereo, no mode extension, original, no emphasis
    return bytes((b1, b2, b3, b4))


def mp3_stream(seconds: float, bitrate_kbps: int = 128, seed: int = 0) -> bytes:
    """The bytes of a silent CBR MPEG-1 Layer III stream (no tag)."""
    if bitrate_kbps not in MPEG1_L3_BITRATES[1:]:
        raise ValueError(
            f"{bitrate_kbps} kbps is not an MPEG-1 Layer III bitrate "
            f"(one of {', '.join(map(str, MPEG1_L3_BITRATES[1:]))})"
        )
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], not {seconds}")
    index = MPEG1_L3_BITRATES.index(bitrate_kbps)
    frames = max(1, round(seconds * SAMPLE_RATE / SAMPLES_PER_FRAME))
    # Frame length is 144 * bitrate / sample_rate bytes, plus one padding
    # byte on the frames that keep the average exact (2.4.3.1).
    numerator = 144 * bitrate_kbps * 1000
    base = numerator // SAMPLE_RATE
    step = numerator % SAMPLE_RATE
    rng = random.Random(seed)
    headers = (_frame_header(index, False), _frame_header(index, True))
    side_info = bytes(_SIDE_INFO_STEREO)
    filler = rng.randbytes((base + 1 - _HEADER_SIZE - _SIDE_INFO_STEREO) * frames)
    out = bytearray()
    rest = 0
    pos = 0
    for _ in range(frames):
        rest += step
        padding = rest >= SAMPLE_RATE
        if padding:
            rest -= SAMPLE_RATE
        ancillary = base + int(padding) - _HEADER_SIZE - _SIDE_INFO_STEREO
        out += headers[padding]
        out += side_info
        out += filler[pos : pos + ancillary]
        pos += ancillary
    return bytes(out)


def write_mp3(
    path: Path | str,
    *,
    title: str,
    artist: str,
    album: str,
    genre: str,
    seconds: float,
    bitrate_kbps: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tagged MP3 of ``seconds`` of silence at ``path``; return the path.

    The parent folder is created when missing.  The same arguments always
    give the same bytes.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(mp3_stream(seconds, bitrate_kbps, seed))
    tags = EasyID3()  # type: ignore[no-untyped-call]
    tags["title"] = title
    tags["artist"] = artist
    tags["album"] = album
    tags["genre"] = genre
    tags.save(str(p), v2_version=3)
    return p
