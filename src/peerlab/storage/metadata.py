"""What the share catalog knows about a file besides its hashes.

Issue 2, section 3 (share catalog): size and type for every file, and for
audio the title, artist, album, genre, bitrate and duration, read with
mutagen.  The kind and MIME type come from the file name alone (a fixed
table, so every machine classifies a file the same way, whatever its
``/etc/mime.types`` says); tags come from the file's contents.  Reading tags
never raises: a file with a broken or missing tag simply has no tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("audio", "video", "image", "document", "archive", "other")

#: Extension (lower case, no dot) -> (kind, MIME type).
_TYPES: dict[str, tuple[str, str]] = {
    # audio
    "mp3": ("audio", "audio/mpeg"),
    "mp2": ("audio", "audio/mpeg"),
    "m4a": ("audio", "audio/mp4"),
    "aac": ("audio", "audio/aac"),
    "ogg": ("audio", "audio/ogg"),
    "oga": ("audio", "audio/ogg"),
    "opus": ("audio", "audio/opus"),
    "flac": ("audio", "audio/flac"),
    "wav": ("audio", "audio/wav"),
    "aif": ("audio", "audio/aiff"),
    "aiff": ("audio", "audio/aiff"),
    "wma": ("audio", "audio/x-ms-wma"),
    "ape": ("audio", "audio/ape"),
    "mpc": ("audio", "audio/musepack"),
    "wv": ("audio", "audio/wavpack"),
    "mid": ("audio", "audio/midi"),
    "midi": ("audio", "audio/midi"),
    # video
    "mp4": ("video", "video/mp4"),
    "m4v": ("video", "video/mp4"),
    "mkv": ("video", "video/x-matroska"),
    "webm": ("video", "video/webm"),
    "avi": ("video", "video/x-msvideo"),
    "mov": ("video", "video/quicktime"),
    "mpg": ("video", "video/mpeg"),
    "mpeg": ("video", "video/mpeg"),
    "wmv": ("video", "video/x-ms-wmv"),
    "flv": ("video", "video/x-flv"),
    "ogv": ("video", "video/ogg"),
    "3gp": ("video", "video/3gpp"),
    # image
    "jpg": ("image", "image/jpeg"),
    "jpeg": ("image", "image/jpeg"),
    "png": ("image", "image/png"),
    "gif": ("image", "image/gif"),
    "bmp": ("image", "image/bmp"),
    "webp": ("image", "image/webp"),
    "tif": ("image", "image/tiff"),
    "tiff": ("image", "image/tiff"),
    "svg": ("image", "image/svg+xml"),
    "ico": ("image", "image/vnd.microsoft.icon"),
    "heic": ("image", "image/heic"),
    # documents
    "txt": ("document", "text/plain"),
    "md": ("document", "text/markdown"),
    "nfo": ("document", "text/plain"),
    "csv": ("document", "text/csv"),
    "html": ("document", "text/html"),
    "htm": ("document", "text/html"),
    "pdf": ("document", "application/pdf"),
    "epub": ("document", "application/epub+zip"),
    "doc": ("document", "application/msword"),
    "docx": (
        "document",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    "odt": ("document", "application/vnd.oasis.opendocument.text"),
    "rtf": ("document", "application/rtf"),
    "ps": ("document", "application/postscript"),
    "djvu": ("document", "image/vnd.djvu"),
    # archives
    "zip": ("archive", "application/zip"),
    "rar": ("archive", "application/vnd.rar"),
    "7z": ("archive", "application/x-7z-compressed"),
    "tar": ("archive", "application/x-tar"),
    "gz": ("archive", "application/gzip"),
    "tgz": ("archive", "application/gzip"),
    "bz2": ("archive", "application/x-bzip2"),
    "xz": ("archive", "application/x-xz"),
    "zst": ("archive", "application/zstd"),
    "iso": ("archive", "application/x-iso9660-image"),
    "torrent": ("other", "application/x-bittorrent"),
}
OCTET_STREAM = "application/octet-stream"

#: Tag text longer than this is cut: tags come from files anyone may have
#: written, and they end up in search results sent over the network.
MAX_TAG_CHARS = 256
#: Bitrates mutagen reports beyond this (kbps) are nonsense from a damaged
#: header; lossless formats stay far below it.
MAX_BITRATE_KBPS = 100_000
#: Durations beyond a week (seconds) are likewise nonsense.
MAX_DURATION_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class FileMetadata:
    """Type and tags of one file.  Tags are ``None`` when absent."""

    kind: str
    mime: str
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    bitrate: int | None = None  # kbps
    duration: float | None = None  # seconds
    sample_rate: int | None = None  # Hz


def classify(name: str) -> tuple[str, str]:
    """``(kind, mime)`` of a file from its name's extension."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return "other", OCTET_STREAM
    return _TYPES.get(name[dot + 1 :].lower(), ("other", OCTET_STREAM))


def _clean_text(value: Any) -> str | None:
    """First non-empty string of a tag value, made safe to store and show."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if item is None:
            continue
        text = str(item)
        text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
        if text:
            return text[:MAX_TAG_CHARS]
    return None


def _tag(tags: Any, key: str) -> str | None:
    try:
        value = tags.get(key) if hasattr(tags, "get") else None
    except Exception:  # mutagen tag containers can raise on odd keys
        return None
    return _clean_text(value) if value is not None else None


def _number(value: Any, upper: float) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x) or x <= 0 or x > upper:
        return None
    return x


def read_audio_tags(path: Path) -> dict[str, Any]:
    """Title/artist/album/genre, bitrate (kbps), duration (s), sample rate.

    Returns only the fields found.  Never raises: mutagen can raise many
    different exceptions on damaged files, and a damaged tag only means no
    tags.
    """
    try:
        import mutagen

        audio = mutagen.File(str(path), easy=True)
    except Exception:
        return {}
    if audio is None:
        return {}
    found: dict[str, Any] = {}
    tags = getattr(audio, "tags", None)
    if tags is not None:
        for key in ("title", "artist", "album", "genre"):
            text = _tag(tags, key)
            if text is not None:
                found[key] = text
    info = getattr(audio, "info", None)
    if info is not None:
        bitrate = _number(getattr(info, "bitrate", None), MAX_BITRATE_KBPS * 1000)
        if bitrate is not None and round(bitrate / 1000) > 0:
            found["bitrate"] = int(round(bitrate / 1000))
        duration = _number(getattr(info, "length", None), MAX_DURATION_S)
        if duration is not None:
            found["duration"] = round(duration, 3)
        rate = _number(getattr(info, "sample_rate", None), 10_000_000)
        if rate is not None:
            found["sample_rate"] = int(rate)
    return found


def read_metadata(path: Path) -> FileMetadata:
    """Kind, MIME type and (for audio) tags of the file at ``path``."""
    kind, mime = classify(path.name)
    if kind != "audio":
        return FileMetadata(kind, mime)
    return FileMetadata(kind, mime, **read_audio_tags(path))
