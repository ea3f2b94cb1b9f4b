"""Logging in to the web page: the control token or a password, then a signed cookie.

* **Secrets** live in ``<data_dir>/web.json`` (mode 0600, written atomically):
  a random key that signs session cookies, and optionally a password hash
  (``hashlib.scrypt`` with a random salt).  The key outlives the node, so a
  page whose node restarts keeps its session and reconnects by itself.
* **Session cookie** ``peerlab_<port>`` (a name per port: cookies are
  shared by every port of 127.0.0.1): ``v1.<expiry>.<nonce>.<mac>``, the mac
  an HMAC-SHA256 of the rest.  ``HttpOnly`` (no script reads it) and
  ``SameSite=Strict``.
* **CSRF token**: an HMAC of the session's nonce under another label.  The
  page gets it from ``GET /api/web/session`` (a foreign page cannot read that
  answer) and sends it as ``X-CSRF-Token`` with every state-changing request;
  a cookie alone changes nothing.
* **Failed logins** are counted in a sliding window; past
  :data:`MAX_LOGIN_FAILURES` the form answers ``429`` until it slides on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerlab.apps.control import write_private_json
from peerlab.errors import ConfigError, StorageError
from peerlab.web.settings import check_password

WEB_FILE = "web.json"
COOKIE_PREFIX = "peerlab_"
CSRF_HEADER = "X-CSRF-Token"
#: How long a login lasts.
SESSION_SECONDS = 24 * 3600
#: Bytes of randomness in the signing key and in each session's nonce.
KEY_BYTES = 32
NONCE_BYTES = 16
#: scrypt cost (RFC 7914): n=2^14, r=8 is the common interactive setting
#: (16 MiB, a few tens of ms); the hash lives on the user's own machine.
SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
#: Failed logins allowed per window before the form refuses for a while:
#: bounds password guessing (and the CPU scrypt costs) to a trickle.
MAX_LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0
#: Sessions ended by "log out" remembered until they expire anyway.
MAX_REVOKED = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """A storable scrypt record of ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
    )  # fmt: skip
    return {"salt": salt.hex(), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "hash": digest.hex()}


def verify_password(password: str, record: dict[str, Any]) -> bool:
    """Does ``password`` match a :func:`hash_password` record?  (Slow on purpose.)"""
    try:
        salt = bytes.fromhex(str(record["salt"]))
        want = bytes.fromhex(str(record["hash"]))
        n, r, p = int(record["n"]), int(record["r"]), int(record["p"])
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM
        )
    except (KeyError, TypeError, ValueError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser."""

    nonce: str
    expires: int
    csrf: str


class WebSecrets:
    """The signing key and the password record of ``<data_dir>/web.json``."""

    def __init__(self, data_dir: Path, *, env_password: str | None = None) -> None:
        self.path = data_dir / WEB_FILE
        self._env_password = (
            hashlib.sha256(env_password.encode("utf-8")).digest() if env_password else None
        )
        stored = self._read()
        key = stored.get("key")
        if not isinstance(key, str) or len(key) < 2 * KEY_BYTES:
            key = secrets.token_hex(KEY_BYTES)
            stored["key"] = key
            self._write(stored)
        self._stored = stored
        self._key = bytes.fromhex(key)
        self._revoked: OrderedDict[str, int] = OrderedDict()
        self._failures: deque[float] = deque()

    # ------------------------------------------------------------- storage

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {self.path}: {e} (delete it to start afresh)") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path} is damaged (delete it to start afresh)")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        try:
            write_private_json(self.path, data)
        except OSError as e:
            raise StorageError(f"cannot write {self.path}: {e.strerror or e}") from None

    @property
    def has_password(self) -> bool:
        return self._env_password is not None or isinstance(self._stored.get("password"), dict)

    def check_password(self, password: str) -> bool:
        """The environment's password or the stored one (scrypt: call off the loop)."""
        if self._env_password is not None and hmac.compare_digest(
            hashlib.sha256(password.encode("utf-8")).digest(), self._env_password
        ):
            return True
        record = self._stored.get("password")
        return isinstance(record, dict) and verify_password(password, record)

    def set_password(self, password: str) -> None:
        """Store a new password and a new key: every other session ends."""
        check_password(password, "password")
        stored = dict(self._stored)
        stored["password"] = hash_password(password)
        stored["key"] = secrets.token_hex(KEY_BYTES)
        self._write(stored)
        self._stored = stored
        self._key = bytes.fromhex(stored["key"])

    # ------------------------------------------------------------ sessions

    def _mac(self, label: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{label}:{text}".encode(), hashlib.sha256).digest())

    def new_session(self, now: float | None = None) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        nonce = _b64(secrets.token_bytes(NONCE_BYTES))
        body = f"v1.{expires}.{nonce}"
        session = Session(nonce, expires, self._mac("csrf", nonce))
        return session, f"{body}.{self._mac('session', body)}"

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie value names, or ``None`` (forged, expired, logged out)."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac("session", body)):
            return None
        expires, nonce = int(parts[1]), parts[2]
        if expires < (now if now is not None else time.time()) or nonce in self._revoked:
            return None
        return Session(nonce, expires, self._mac("csrf", nonce))

    def revoke(self, session: Session) -> None:
        self._revoked[session.nonce] = session.expires
        now = time.time()
        while self._revoked and (
            len(self._revoked) > MAX_REVOKED or next(iter(self._revoked.values())) < now
        ):
            self._revoked.popitem(last=False)

    # --------------------------------------------------------- login limits

    def login_allowed(self, now: float) -> bool:
        while self._failures and self._failures[0] < now - LOGIN_WINDOW:
            self._failures.popleft()
        return len(self._failures) < MAX_LOGIN_FAILURES

    def login_failed(self, now: float) -> None:
        self._failures.append(now)
        while len(self._failures) > MAX_LOGIN_FAILURES:
            self._failures.popleft()


def cookie_name(port: int | str) -> str:
    return f"{COOKIE_PREFIX}{port}"


def random_id() -> str:
    return _b64(os.urandom(9))
