"""Content URNs as Gnutella's HUGE spec writes them.

HUGE (gtk-gnutella ``doc/gnutella/huge``, section 3): a SHA-1 URN is
``urn:sha1:`` followed by the 32-character RFC 4648 base32 encoding of the
20-byte digest.  The prefix is case-insensitive; the base32 part is upper case
when we write it and accepted in either case when we read it.
"""

from __future__ import annotations

import base64
import binascii

from peerlab.errors import RemoteProtocolError

SHA1_PREFIX = "urn:sha1:"
#: 20 bytes of SHA-1 in base32 is exactly 32 characters, no padding.
SHA1_BASE32_LEN = 32


def sha1_urn(digest: bytes) -> str:
    """``urn:sha1:BASE32`` for a 20-byte SHA-1 digest."""
    if len(digest) != 20:
        raise ValueError(f"a SHA-1 digest is 20 bytes, not {len(digest)}")
    return SHA1_PREFIX + base64.b32encode(digest).decode("ascii")


def parse_sha1_urn(text: str) -> bytes:
    """The 20-byte digest named by ``urn:sha1:...`` (or a bare base32 string).

    Raises :class:`RemoteProtocolError` for anything else: these strings come
    from the network and from users.
    """
    s = text.strip()
    if s[: len(SHA1_PREFIX)].lower() == SHA1_PREFIX:
        s = s[len(SHA1_PREFIX) :]
    if len(s) != SHA1_BASE32_LEN:
        raise RemoteProtocolError(f"not a urn:sha1: {text[:80]!r}")
    try:
        digest = base64.b32decode(s.upper())
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(f"bad base32 in urn:sha1: {text[:80]!r}") from None
    return digest


def b32(data: bytes) -> str:
    """Unpadded RFC 4648 base32, upper case (for roots and short ids)."""
    return base64.b32encode(data).decode("ascii").rstrip("=")


def unb32(text: str) -> bytes:
    """Inverse of :func:`b32`; raises :class:`RemoteProtocolError` on garbage."""
    s = text.strip().upper()
    s += "=" * (-len(s) % 8)
    try:
        return base64.b32decode(s)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(f"bad base32: {text[:80]!r}") from None
