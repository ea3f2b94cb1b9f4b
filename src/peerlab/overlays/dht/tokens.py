"""Write tokens for announce_peer (BEP 5 "Overview" and "announce_peer").

A get_peers answer carries an opaque token; an announce_peer is accepted only
with a token that was handed to the same IP address.  As BEP 5 describes the
BitTorrent implementation: the token is the SHA-1 of the IP address
concatenated onto a secret, the secret changes every five minutes, and tokens
made with the current or the previous secret are accepted (so a token lives
between five and ten minutes).  Secrets come from ``runtime.rng``; time is
passed in.  No per-requester state is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import random

#: How long one secret is used (BEP 5: "a secret that changes every five minutes").
TOKEN_ROTATION_S = 300.0
#: Bytes of SHA-1 a token keeps: BEP 5 asks for "a short binary string", and
#: 8 bytes make guessing hopeless.
TOKEN_BYTES = 8
#: Bytes of each secret.
SECRET_BYTES = 16


class TokenSecrets:
    """The current and the previous secret; :meth:`token` and :meth:`valid`."""

    def __init__(self, rng: random.Random, now: float, rotation: float = TOKEN_ROTATION_S) -> None:
        self._rng = rng
        self.rotation = rotation
        self._current = rng.randbytes(SECRET_BYTES)
        self._previous: bytes | None = None
        self._rotated_at = now

    def _rotate(self, now: float) -> None:
        periods = int((now - self._rotated_at) // self.rotation)
        if periods <= 0:
            return
        # After a long quiet spell the old secrets are both stale.
        self._previous = self._current if periods == 1 else self._rng.randbytes(SECRET_BYTES)
        self._current = self._rng.randbytes(SECRET_BYTES)
        self._rotated_at += periods * self.rotation

    @staticmethod
    def _make(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + ip.encode("ascii", "replace")).digest()[:TOKEN_BYTES]

    def token(self, ip: str, now: float) -> bytes:
        """The token to hand to ``ip`` in a get_peers answer."""
        self._rotate(now)
        return self._make(self._current, ip)

    def valid(self, token: bytes, ip: str, now: float) -> bool:
        """Was ``token`` handed to ``ip`` under the current or previous secret?"""
        self._rotate(now)
        if hmac.compare_digest(token, self._make(self._current, ip)):
            return True
        return self._previous is not None and hmac.compare_digest(
            token, self._make(self._previous, ip)
        )


__all__ = ["SECRET_BYTES", "TOKEN_BYTES", "TOKEN_ROTATION_S", "TokenSecrets"]
