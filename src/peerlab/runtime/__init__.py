"""The runtime interface and its observers; implementations live in
:mod:`peerlab.runtime.aio` (real sockets) and :mod:`peerlab.sim` (virtual)."""

from peerlab.runtime.base import (
    Address,
    BaseStreamHandler,
    Connecting,
    DatagramEndpoint,
    DatagramHandler,
    FanoutObserver,
    Listener,
    LoggingObserver,
    NullObserver,
    Observer,
    RecordingObserver,
    Runtime,
    Stream,
    StreamHandler,
    Timer,
)

__all__ = [
    "Address",
    "BaseStreamHandler",
    "Connecting",
    "DatagramEndpoint",
    "DatagramHandler",
    "FanoutObserver",
    "Listener",
    "LoggingObserver",
    "NullObserver",
    "Observer",
    "RecordingObserver",
    "Runtime",
    "Stream",
    "StreamHandler",
    "Timer",
]
