"""Napster (issue 3): the OpenNap-compatible index server and its farm
(:mod:`peerlab.overlays.napster.server`), the client and the peer-to-peer
transfers (``client``, ``peer``).  The codec lives in
:mod:`peerlab.wire.napster`; the index store in
:mod:`peerlab.storage.napster_index`."""

from __future__ import annotations

from peerlab.overlays.napster.server import NapsterServer, NapsterServerConfig

__all__ = ["NapsterServer", "NapsterServerConfig"]
