"""Chunk hash lists: what lets every chunk of a file be verified on its own.

A shared file is cut into fixed-size chunks (the last one may be short).  Each
chunk's SHA-256 digest goes into the list; the list's *root* is the SHA-256 of
its header and digests, so a downloader that learnt the root from a search
result can check a list fetched from any source.  SHA-256 rather than SHA-1:
it is collision-resistant and, with SHA extensions, faster than SHA-1.

The whole file is still named by its ``urn:sha1`` (HUGE), which a download
checks once more when every chunk is in.

Wire form (served as ``application/x-peerlab-chunks``, all integers big-endian)::

    magic     4 bytes  b"PLCH"
    version   1 byte   1
    reserved  3 bytes  zero
    size      8 bytes  file size in bytes
    chunk     4 bytes  chunk size in bytes (a power of two)
    count     4 bytes  number of digests == ceil(size / chunk)
    digests   32 * count bytes
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from peerlab.errors import IntegrityError, RemoteProtocolError

MAGIC = b"PLCH"
VERSION = 1
DIGEST_SIZE = 32
_HEADER = struct.Struct(">4sB3sQII")

#: Smallest chunk: small enough that a bad source costs little, large enough
#: that per-chunk overhead (a hash call, a bookkeeping entry) stays invisible.
MIN_CHUNK_SIZE = 256 * 1024
#: Chunks double in size until a file has at most this many, so a list stays
#: under 256 KiB (8192 * 32) whatever the file's size.
TARGET_MAX_CHUNKS = 8192
#: Bounds a decoder accepts from the network.
WIRE_MIN_CHUNK_SIZE = 16 * 1024
WIRE_MAX_CHUNK_SIZE = 64 * 1024 * 1024
WIRE_MAX_CHUNKS = 1 << 20


def chunk_size_for(size: int) -> int:
    """The chunk size peerlab uses for a file of ``size`` bytes."""
    chunk = MIN_CHUNK_SIZE
    while -(-size // chunk) > TARGET_MAX_CHUNKS:
        chunk *= 2
    return chunk


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def chunk_digest(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class ChunkList:
    """The per-chunk digests of one file."""

    size: int
    chunk_size: int
    digests: bytes  # DIGEST_SIZE * count, concatenated

    def __post_init__(self) -> None:
        if len(self.digests) != DIGEST_SIZE * chunk_count(self.size, self.chunk_size):
            raise ValueError("digest count does not match size and chunk size")

    @property
    def count(self) -> int:
        return len(self.digests) // DIGEST_SIZE

    def digest(self, index: int) -> bytes:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]

    def span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index`` in the file."""
        if not 0 <= index < self.count:
            raise IndexError(index)
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def verify(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        """Does ``data`` match chunk ``index``, in length and digest?"""
        offset, length = self.span(index)
        return len(data) == length and chunk_digest(data) == self.digest(index)

    def check(self, index: int, data: bytes | bytearray | memoryview) -> None:
        """Like :meth:`verify`, raising :class:`IntegrityError` on a mismatch."""
        if not self.verify(index, data):
            raise IntegrityError(f"chunk {index} failed verification")

    @property
    def root(self) -> bytes:
        """SHA-256 over the encoded list: names the list itself."""
        return hashlib.sha256(self.encode()).digest()

    def encode(self) -> bytes:
        return (
            _HEADER.pack(MAGIC, VERSION, b"\0\0\0", self.size, self.chunk_size, self.count)
            + self.digests
        )

    @classmethod
    def decode(cls, data: bytes, *, expect_size: int | None = None) -> ChunkList:
        """Parse the wire form; garbage raises :class:`RemoteProtocolError` only."""
        if len(data) < _HEADER.size:
            raise RemoteProtocolError("chunk list shorter than its header")
        magic, version, _reserved, size, chunk, count = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise RemoteProtocolError("chunk list has a bad magic")
        if version != VERSION:
            raise RemoteProtocolError(f"chunk list version {version} unsupported")
        if not WIRE_MIN_CHUNK_SIZE <= chunk <= WIRE_MAX_CHUNK_SIZE or chunk & (chunk - 1):
            raise RemoteProtocolError(f"chunk list has a bad chunk size {chunk}")
        if count > WIRE_MAX_CHUNKS or count != chunk_count(size, chunk):
            raise RemoteProtocolError("chunk list count does not match its size")
        if len(data) != _HEADER.size + DIGEST_SIZE * count:
            raise RemoteProtocolError("chunk list length does not match its count")
        if expect_size is not None and size != expect_size:
            raise RemoteProtocolError(f"chunk list is for {size} bytes, expected {expect_size}")
        return cls(size, chunk, bytes(data[_HEADER.size :]))

    @classmethod
    def of_bytes(cls, data: bytes, chunk_size: int | None = None) -> ChunkList:
        """Hash an in-memory file (tests, small files)."""
        chunk = chunk_size or chunk_size_for(len(data))
        mv = memoryview(data)
        digests = b"".join(
            chunk_digest(mv[i : i + chunk]) for i in range(0, len(data), chunk)
        )
        return cls(len(data), chunk, digests)
