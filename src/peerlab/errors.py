"""The one exception hierarchy of peerlab.

Decoders never leak ``struct.error``, ``IndexError`` or ``UnicodeDecodeError``:
garbage in means :class:`RemoteProtocolError` out, and the connection (not the
node) pays for it.  The CLI turns every :class:`PeerlabError` into one readable
line and a non-zero exit status.
"""

from __future__ import annotations


class PeerlabError(Exception):
    """Base of every error peerlab raises on purpose."""


class ProtocolError(PeerlabError):
    """A protocol rule was broken.

    ``code`` carries the wire-level status that maps to the failure where the
    protocol has one (an HTTP status, a Gnutella Bye code...), else ``None``.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol forbids: a bug on our side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids: its fault, not ours."""


class NetworkError(PeerlabError):
    """A transport-level failure: refused, reset, unreachable, timed out."""


class ConnectionRefused(NetworkError):
    """Nobody listens at the address we tried to connect to."""


class AddressInUse(NetworkError):
    """The address we tried to listen on is taken."""


class ConfigError(PeerlabError):
    """The user's configuration or command line is wrong."""


class StorageError(PeerlabError):
    """The disk said no: full, unwritable, missing, or a path outside the shares."""


class IntegrityError(PeerlabError):
    """Data failed verification against its hash."""
