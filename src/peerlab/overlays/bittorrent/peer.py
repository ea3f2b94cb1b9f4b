"""One peer connection of a torrent: the wire machine, its driver, and what
the swarm logic keeps about the peer.

:class:`PeerLink` owns a :class:`~peerlab.proto.peer.PeerConnection` (BEP 3,
6, 9, 10, 11 on the wire) and the :class:`~peerlab.runtime.driver.StreamDriver`
that connects it to a stream of any runtime; it hands the machine's events to
its torrent (:mod:`peerlab.overlays.bittorrent.torrent`).  An incoming link
belongs to no torrent until the peer's handshake names one (the session
routes it by info-hash).

It is also what the choker sees of a peer
(:class:`~peerlab.overlays.bittorrent.choker.ChokerPeer`): interest, the rates
both ways, when it connected and when the last bytes of a block came.

Public API (used by the torrent and the session)::

    PeerLink(session, address, *, outgoing, torrent=None, source="incoming")
        .machine .driver .address .outgoing .source .torrent
        .bits (PieceBits | None) .seed .interesting  .listen_address
        .peer_interested .am_interested .download_rate .upload_rate
        .connected_at .last_block_at .snubbed .unchoke_kind
        .queue_depth(now, queue_time) -> int
        .block_gaps (SlidingAverage) .timed_out  .request_timeout(limit) -> float
        .flush() .flush_soon() .close(reason) .abort(reason) .closing (send nothing more) .closed
        .status(now) -> PeerStatus
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peerlab.errors import NetworkError, ProtocolError
from peerlab.overlays.bittorrent.choker import UnchokeKind
from peerlab.overlays.bittorrent.config import (
    MAX_REQUEST_QUEUE,
    MIN_REQUEST_QUEUE,
    MIN_REQUEST_TIMEOUT,
)
from peerlab.overlays.bittorrent.rate import RateMeter, SlidingAverage
from peerlab.proto.peer import ConnectionState, PeerConnection
from peerlab.runtime.base import Address, Connecting, Stream, Timer
from peerlab.runtime.driver import StreamDriver
from peerlab.storage.pieces import PieceBits
from peerlab.wire.peer import BLOCK_SIZE, Request

if TYPE_CHECKING:
    from peerlab.overlays.bittorrent.session import Session
    from peerlab.overlays.bittorrent.torrent import Torrent

__all__ = ["PeerLink", "PeerStatus"]


#: Gaps between blocks known before a peer's request timeout adapts to
#: them: the first few come while more and more peers unchoke a slow
#: downlink (each one's blocks come further apart), so libtorrent's 1.2 times
#: the first gap timed 56K modems out every few seconds.
MIN_GAP_SAMPLES = 3


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One connection as people (and tests) see it."""

    address: Address
    direction: str  # "out" (we dialled) or "in"
    source: str  # where we learnt the address: tracker, pex, magnet, direct, incoming
    peer_id: str | None
    client: str | None  # the peer's extended handshake "v"
    established: bool
    pieces: int  # how many pieces it has
    seed: bool
    am_choking: bool
    am_interested: bool
    peer_choking: bool
    peer_interested: bool
    snubbed: bool
    unchoke: str | None  # regular / optimistic / seeding while we unchoke it
    down_rate: float
    up_rate: float
    downloaded: int
    uploaded: int
    uploaded_regular: int
    uploaded_optimistic: int
    uploaded_seeding: int
    requests_out: int
    requests_in: int
    queue_depth: int
    hash_failures: int
    fast: bool
    extensions: tuple[str, ...]


class PeerLink:
    """A connection to one peer (see the module docstring)."""

    def __init__(
        self,
        session: Session,
        address: Address | None,
        *,
        outgoing: bool,
        torrent: Torrent | None = None,
        source: str = "incoming",
    ) -> None:
        self.session = session
        self.runtime = session.runtime
        now = self.runtime.now()
        self.address: Address | None = address
        self.outgoing = outgoing
        self.source = source
        self.torrent: Torrent | None = torrent
        if outgoing:
            assert torrent is not None
            self.machine = PeerConnection.outgoing(
                session.peer_config,
                torrent.info_hash,
                now,
                piece_count=torrent.piece_count,
                metadata_size=torrent.metadata_size,
            )
        else:
            self.machine = PeerConnection.incoming(session.peer_config, session.accept, now)
        self.driver = StreamDriver(
            self.runtime,
            self.machine,
            self._on_event,
            on_connected=self._on_connected,
            on_closed=self._on_closed,
            on_writable=self._on_writable,
        )
        self.connected_at = now
        self.established = False
        self.closing = False  # close asked for (or the peer closed): send nothing more
        self.closed = False
        self.close_reason: str | None = None
        self.bits: PieceBits | None = None
        self.seed = False
        self.interesting = 0  # pieces it has that we lack
        self.pending_bitfield: bytes | None = None  # before a magnet's metadata
        self.pending_haves: bytearray | None = None
        self.down = RateMeter(now)
        self.up = RateMeter(now)
        self.waiting_since: float | None = None  # requests outstanding, no block since
        #: seconds between two of its blocks while requests waited there
        self.block_gaps = SlidingAverage()
        #: its requests timed out and no block came since (libtorrent's
        #: "snubbed"): one request at a time
        self.timed_out = False
        self.blocks_since_fill = 0  # blocks received since the pipeline was topped up
        self.fill_every = 1  # ... and how many drain before it is topped up again
        self.unchoke_kind: UnchokeKind | None = None
        self.uploaded_by_kind: Counter[UnchokeKind] = Counter()
        self.hash_failures = 0
        self.serve_queue: deque[tuple[Request, bytes]] = deque()
        self.reads_in_flight = 0
        self.listen_port: int | None = None
        self.metadata_requests = 0
        self.pex_sent: set[Address] = set()
        self.pex_last_sent: float | None = None
        self.pex_last_received: float | None = None
        self.refused_seen = 0
        self.refused_checked_at = now
        self.was_unchoked = False
        self._connecting: Connecting | None = None
        self._flush_timer: Timer | None = None
        self.half_open = False  # counted in the session's dials in flight
        self.candidate: Any = None  # the torrent's address record we dialled
        self.announced_pieces = False  # our pieces were told (bitfield or haves)

    # -- ChokerPeer

    @property
    def peer_interested(self) -> bool:
        return self.machine.peer_interested

    @property
    def am_interested(self) -> bool:
        return self.machine.am_interested

    @property
    def download_rate(self) -> float:
        return self.down.rate(self.runtime.now())

    @property
    def upload_rate(self) -> float:
        return self.up.rate(self.runtime.now())

    # -- facts

    @property
    def peer_id(self) -> bytes | None:
        remote = self.machine.remote
        return remote.peer_id if remote is not None else None

    @property
    def listen_address(self) -> Address | None:
        """Where the peer accepts connections (for PEX): the address we
        dialled, or its IP with the port of its extended handshake."""
        if self.address is None:
            return None
        if self.outgoing:
            return self.address
        if self.listen_port:
            return (self.address[0], self.listen_port)
        return None

    @property
    def last_block_at(self) -> float | None:
        """When the last bytes of a block came from it, a whole block or part
        of one (libtorrent's ``m_last_piece``): a block crossing a slow
        downlink is progress, not silence."""
        return self.machine.block_data_at

    @property
    def requests_out(self) -> int:
        m = self.machine
        cap = min(m.config.max_requests, m.peer_reqq)
        return max(0, cap - m.request_slots)

    def queue_depth(self, now: float, queue_time: float) -> int:
        """Requests to keep outstanding: ``queue_time`` seconds of the
        measured download rate, at least :data:`MIN_REQUEST_QUEUE`, at most
        :data:`MAX_REQUEST_QUEUE` and the peer's ``reqq`` (BEP 10); one
        while the peer is :attr:`timed_out`."""
        m = self.machine
        cap = min(MAX_REQUEST_QUEUE, m.config.max_requests, m.peer_reqq)
        if self.timed_out:
            return min(1, cap)
        want = int(self.down.rate(now) * queue_time / BLOCK_SIZE)
        return max(min(MIN_REQUEST_QUEUE, cap), min(want, cap))

    def request_timeout(self, limit: float) -> float:
        """Seconds the peer may go without a block while our requests wait
        there: the mean gap between its blocks plus four mean deviations
        (``limit`` until :data:`MIN_GAP_SAMPLES` gaps are known), within
        [:data:`MIN_REQUEST_TIMEOUT`, ``limit``] (libtorrent's
        ``peer_connection::request_timeout``).  A modem that sends a block
        every 20 s is slow, not gone; a LAN peer silent for 10 s is stuck."""
        gaps = self.block_gaps
        if gaps.samples < MIN_GAP_SAMPLES:
            return limit
        return max(MIN_REQUEST_TIMEOUT, min(limit, gaps.mean + 4 * gaps.deviation))

    # -- driving

    def connect(self, timeout: float) -> None:
        assert self.address is not None
        self._connecting = self.runtime.connect(self.address, self.driver, timeout=timeout)

    def flush(self) -> None:
        if not self.closed:
            self.driver.flush()

    def flush_soon(self) -> None:
        """Flush once the current burst of callbacks is over (blocks read
        from disk arrive one by one; they leave in one write)."""
        if self._flush_timer is None and not self.closed:
            self._flush_timer = self.runtime.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_timer = None
        self.flush()

    def close(self, reason: str) -> None:
        """Close after sending what is queued."""
        self.closing = True
        if self.close_reason is None:
            self.close_reason = reason
        if self.driver.stream is None:
            self.abort(reason)
            return
        self.driver.close()

    def abort(self, reason: str) -> None:
        """Drop the connection now."""
        self.closing = True
        if self.close_reason is None:
            self.close_reason = reason
        if self.driver.stream is None:
            connecting, self._connecting = self._connecting, None
            if connecting is not None:
                # the driver hears connection_failed, then _on_closed runs
                connecting.cancel()
            elif not self.closed:
                self.closed = True
                self.session._link_closed(self, NetworkError(reason))
            return
        self.driver.abort()

    @property
    def writable(self) -> bool:
        return self.driver.writable

    # -- StreamDriver callbacks

    def _on_connected(self, driver: StreamDriver) -> None:
        stream: Stream | None = driver.stream
        if stream is not None and self.address is None:
            self.address = stream.remote_address
        self.session._link_connected(self)

    def _on_event(self, event: Any) -> None:
        if self.closing:
            return
        try:
            if not self.established:
                self.session._link_handshake(self, event)
            elif self.torrent is not None:
                self.torrent._peer_event(self, event)
        except ProtocolError as exc:
            # the peer broke a rule our checks found late, or we tried to
            # send what the connection's state forbids: this connection pays
            self.runtime.observer.event(
                "bt.connection_error", address=self.address, error=str(exc)
            )
            self.abort(str(exc))

    def _on_closed(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.closing = True
        self.session._link_closed(self, exc)

    def _on_writable(self, writable: bool) -> None:
        if writable and self.torrent is not None and not self.closing:
            self.torrent._serve_queued(self)

    # -- status

    def status(self, now: float, queue_time: float) -> PeerStatus:
        m = self.machine
        pid = self.peer_id
        remote_hs = m.remote_handshake
        pieces = (
            self.bits.size if self.seed and self.bits is not None
            else self.bits.count if self.bits is not None else 0
        )
        return PeerStatus(
            address=self.address or ("", 0),
            direction="out" if self.outgoing else "in",
            source=self.source,
            peer_id=pid.decode("latin-1") if pid is not None else None,
            client=remote_hs.v if remote_hs is not None else None,
            established=m.state is ConnectionState.ESTABLISHED,
            pieces=pieces,
            seed=self.seed,
            am_choking=m.am_choking,
            am_interested=m.am_interested,
            peer_choking=m.peer_choking,
            peer_interested=m.peer_interested,
            snubbed=self.snubbed(now),
            unchoke=self.unchoke_kind.value if self.unchoke_kind is not None else None,
            down_rate=self.down.rate(now),
            up_rate=self.up.rate(now),
            downloaded=self.down.total,
            uploaded=self.up.total,
            uploaded_regular=self.uploaded_by_kind[UnchokeKind.REGULAR],
            uploaded_optimistic=self.uploaded_by_kind[UnchokeKind.OPTIMISTIC],
            uploaded_seeding=self.uploaded_by_kind[UnchokeKind.SEEDING],
            requests_out=self.requests_out,
            requests_in=len(m.peer_requests),
            queue_depth=self.queue_depth(now, queue_time),
            hash_failures=self.hash_failures,
            fast=m.fast,
            extensions=tuple(sorted(m.remote_extensions)),
        )

    def snubbed(self, now: float) -> bool:
        torrent = self.torrent
        if torrent is None:
            return False
        return torrent.choker_snubbing(self, now)

    def __repr__(self) -> str:
        where = f"{self.address[0]}:{self.address[1]}" if self.address else "?"
        return f"<PeerLink {'out' if self.outgoing else 'in'} {where}>"
