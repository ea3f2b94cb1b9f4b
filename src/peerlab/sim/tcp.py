"""Simulated TCP: reliable, ordered byte streams over lossy simulated links.

Modelled after RFC 793 / RFC 9293 in the parts that shape timing, and
simplified where the simulator can see everything:

* **Handshake.**  SYN, SYN-ACK and the final ACK each take a one-way trip, so
  the connecting side is connected after one round trip and the accepting
  side half a round trip later, when its handler is created.  A SYN nobody
  listens for is answered with RST (``ConnectionRefused`` after one round
  trip); a SYN to an unknown host is lost and retried (1 s, 2 s, 4 s...,
  RFC 6298's initial RTO) until the connect timeout.
* **Segments.**  A stream is cut into segments as its host's uplink asks for
  them (about :data:`SEGMENT_TIME` of serialisation each, between an MSS and
  64 KiB).  At most a congestion window of bytes is in flight per stream
  (twice the path's bandwidth-delay product: it fills the pipe and keeps
  queues short) and never more than the receiver's window.
* **Acknowledgements** are not packets: when a segment reaches the receiver,
  the sender learns it one one-way latency later (with the receiver's window).
  Acknowledgements are tiny; their bandwidth is not modelled.
* **Loss.**  The simulator knows when a segment is lost; the sender
  retransmits it one retransmission timeout after it was sent, doubling per
  try (RFC 6298 section 5), and gives up after :data:`MAX_TRIES`.  The
  receiver delivers in order and holds later segments back (head-of-line
  blocking, as in real TCP).
* **Close.**  ``write_eof()`` sends FIN after the data; ``close()`` does the
  same (however long flushing takes) and then ignores, but acknowledges,
  what still arrives, until both FINs are through or :data:`LINGER_TIMEOUT`
  passes after its FIN; after that, segments to the closed port are
  answered with RST.  ``abort()`` drops everything and
  sends RST: the peer's handler sees ``connection_lost`` with a
  :class:`~peerlab.errors.NetworkError` ("connection reset").
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from typing import TYPE_CHECKING

from peerlab.errors import ConnectionRefused, LocalProtocolError, NetworkError
from peerlab.runtime.base import DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Address, StreamHandler
from peerlab.sim.net import DATA, RST, SYN, SYNACK, TCP_OVERHEAD, Packet

if TYPE_CHECKING:
    from peerlab.sim.engine import SimTimer
    from peerlab.sim.net import SimHost, SimListener

#: Smallest segment payload: the Ethernet MSS (1500-byte MTU minus 40 bytes of headers).
SEGMENT_MIN = 1460
#: Largest segment payload: a TSO/GRO super-segment.  Large segments keep the
#: event count per byte low on fast links.
SEGMENT_MAX = 64 << 10
#: Target serialisation time of one segment on the bottleneck: the quantum
#: by which streams of one host take turns on its uplink.
SEGMENT_TIME = 0.02
#: Receive window: bytes the receiver buffers beyond what its handler has
#: consumed (Linux autotunes to a few MiB).
RECEIVE_WINDOW = 4 << 20
#: Smallest congestion window, in segments (RFC 6928's initial window of 10
#: is for the first flight; a steady-state floor of 4 keeps short paths busy).
CWND_MIN_SEGMENTS = 4
#: Lower bound of the retransmission timeout (Linux's TCP_RTO_MIN).
MIN_RTO = 0.2
#: Upper bound of the backed-off retransmission timeout (Linux's TCP_RTO_MAX).
MAX_RTO = 120.0
#: Initial retransmission timeout of a SYN (RFC 6298 section 2.1).
SYN_RTO = 1.0
#: Connect timeout when the caller gives none (the classic BSD 75 s).
DEFAULT_CONNECT_TIMEOUT = 75.0
#: Transmissions of one segment before the connection is declared dead
#: (Linux's tcp_retries2 is 15 retransmissions).
MAX_TRIES = 16
#: How long a closed end waits for the peer's FIN before it forgets the
#: connection (Linux's tcp_fin_timeout).
LINGER_TIMEOUT = 60.0

# States.
CONNECTING = "connecting"
SYN_RCVD = "syn-rcvd"
OPEN = "open"
DEAD = "dead"

SendChunk = bytes | memoryview


class SimConnecting:
    """A pending outgoing simulated connection."""

    def __init__(self, stream: SimStream) -> None:
        self._stream = stream

    def cancel(self) -> None:
        s = self._stream
        if s.state == CONNECTING:
            s._die(
                NetworkError(f"connect to {s.remote_address[0]}:{s.remote_address[1]} cancelled"),
                later=True,
            )


class SimStream:
    """One end of a simulated TCP connection: the :class:`~peerlab.runtime.base.Stream`
    handed to handlers, and the sender/receiver state behind it."""

    # Slots: a simulation holds one per connection end, tens of thousands.
    __slots__ = (
        "_ack_delay",
        "_buf",
        "_buf_head",
        "_buf_size",
        "_closing",
        "_consumed",
        "_cwnd",
        "_eof_delivered",
        "_eof_wanted",
        "_expected",
        "_fin_acked",
        "_fin_received",
        "_fin_sent",
        "_in_flight",
        "_key",
        "_listener",
        "_local",
        "_lost",
        "_next_off",
        "_ooo",
        "_paused_writing",
        "_reading_paused",
        "_remote",
        "_retx",
        "_rto",
        "_seg",
        "_syn_delay",
        "_timers",
        "_unread",
        "_unread_size",
        "_window_end",
        "handler",
        "host",
        "peer",
        "queued",
        "sim",
        "state",
        "_tag",
    )

    def __init__(
        self, host: SimHost, local: Address, remote: Address, handler: StreamHandler | None
    ) -> None:
        self.host = host
        self.sim = host.sim
        self._local = local
        self._remote = remote
        self._key = (local[1], remote[0], remote[1])
        #: How the trace names this end (its addresses never change).
        self._tag = f"{local[1]} {remote}"
        self.handler = handler
        self.state = CONNECTING
        self.peer: SimStream | None = None
        self.queued = False  # in the uplink's round robin
        self._timers: list[SimTimer] = []
        self._syn_delay = SYN_RTO
        self._listener: SimListener | None = None
        # sending
        self._buf: deque[SendChunk] = deque()
        self._buf_head = 0  # bytes of _buf[0] already taken
        self._buf_size = 0
        self._next_off = 0
        self._in_flight = 0
        self._window_end = RECEIVE_WINDOW
        self._retx: deque[Packet] = deque()
        self._eof_wanted = False
        self._fin_sent = False
        self._fin_acked = False
        self._paused_writing = False
        self._seg = SEGMENT_MIN
        self._cwnd: float = float(CWND_MIN_SEGMENTS * SEGMENT_MIN)
        self._rto = SYN_RTO
        self._ack_delay = 0.0
        # receiving
        self._expected = 0
        self._ooo: dict[int, Packet] = {}
        self._reading_paused = False
        self._unread: deque[bytes] = deque()
        self._unread_size = 0
        self._consumed = 0
        self._fin_received = False
        self._eof_delivered = False
        # lifecycle
        self._closing = False
        self._lost = False

    # ------------------------------------------------------------ creation

    @classmethod
    def open(
        cls, host: SimHost, address: Address, handler: StreamHandler, timeout: float | None
    ) -> SimConnecting:
        """Start connecting to ``address`` (the runtime's ``connect``)."""
        port = host.ephemeral_port({})
        stream = cls(host, (host.ip, port), (address[0], address[1]), handler)
        host.add_conn(stream._key, stream)
        stream._send_syn()
        stream._timers.append(host.sim.call_at(host.sim.now + SYN_RTO, stream._retry_syn))
        limit = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
        stream._timers.append(host.sim.call_at(host.sim.now + limit, stream._connect_timed_out))
        return SimConnecting(stream)

    @classmethod
    def accept(cls, host: SimHost, listener: SimListener, syn: Packet) -> SimStream:
        """A SYN reached a listening port: answer it (the handler comes with the ACK)."""
        stream = cls(host, syn.dst, syn.src, None)
        stream.state = SYN_RCVD
        stream._listener = listener
        stream.peer = syn.conn
        assert syn.conn is not None
        stream._setup_path(syn.conn.host)
        host.send_control(Packet(SYNACK, stream._local, stream._remote, conn=stream))
        return stream

    def _send_syn(self) -> None:
        self.host.send_control(Packet(SYN, self._local, self._remote, conn=self))

    def _retry_syn(self) -> None:
        if self.state != CONNECTING:
            return
        self._send_syn()
        self._syn_delay = min(self._syn_delay * 2, MAX_RTO)
        self._timers.append(self.sim.call_at(self.sim.now + self._syn_delay, self._retry_syn))

    def _connect_timed_out(self) -> None:
        if self.state == CONNECTING:
            host, port = self._remote
            self._die(NetworkError(f"connect to {host}:{port} timed out"))

    def _setup_path(self, peer_host: SimHost) -> None:
        """Segment size, congestion window and RTO for the path to ``peer_host``."""
        bottleneck = min(self.host.up, peer_host.down)
        if math.isinf(bottleneck):
            self._seg = SEGMENT_MAX
        else:
            self._seg = max(SEGMENT_MIN, min(SEGMENT_MAX, int(bottleneck * SEGMENT_TIME)))
        wire = self._seg + TCP_OVERHEAD
        serialise = wire / self.host.up + wire / peer_host.down
        rtt = 2 * (self.host.latency + peer_host.latency)
        self._ack_delay = self.host.latency + peer_host.latency
        self._cwnd = max(CWND_MIN_SEGMENTS * self._seg, 2 * bottleneck * (rtt + serialise))
        self._rto = min(MAX_RTO, max(MIN_RTO, 2 * (rtt + serialise)))

    def synack_received(self, pkt: Packet) -> None:
        """SYN-ACK: the connecting side is connected (and ACKs the handshake)."""
        peer = pkt.conn
        if peer is None:
            return
        if self.state == CONNECTING:
            self.state = OPEN
            self.peer = peer
            self._cancel_timers()
            self._setup_path(peer.host)
            self.sim.schedule(self.sim.now + self._ack_delay, peer.handshake_acked)
            self.sim.trace(self.host.ip, "connected", f"{self._local[1]} {self._remote}")
            assert self.handler is not None
            self.handler.connection_made(self)
        elif self.state == OPEN and peer is self.peer:
            self.sim.schedule(self.sim.now + self._ack_delay, peer.handshake_acked)

    def syn_again(self) -> None:
        """A retransmitted SYN: our SYN-ACK was lost, send it again."""
        if self.state == SYN_RCVD:
            self.host.send_control(Packet(SYNACK, self._local, self._remote, conn=self))

    def handshake_acked(self, _: object = None) -> None:
        """The handshake's last ACK: the accepting side is connected."""
        if self.state != SYN_RCVD:
            return
        listener = self._listener
        self._listener = None
        if listener is None or listener.closed:
            self._send_rst()
            self._die(None)
            return
        self.state = OPEN
        self.sim.trace(self.host.ip, "accepted", f"{self._local[1]} {self._remote}")
        self.handler = listener.factory()
        self.handler.connection_made(self)
        if self._buf_size or self._eof_wanted:
            self.host.mark_ready(self)

    # ------------------------------------------------------------ Stream API

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote_address(self) -> Address:
        return self._remote

    @property
    def closing(self) -> bool:
        return self._closing or self._lost or self.state == DEAD

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or self.state == DEAD:  # self.closing, inlined
            return
        if self._eof_wanted:
            raise LocalProtocolError("write() after write_eof()")
        chunk: SendChunk
        if isinstance(data, bytes):
            chunk = data
        elif (
            isinstance(data, memoryview)
            and data.readonly
            and isinstance(data.obj, bytes)
            and data.c_contiguous
            and data.itemsize == 1
        ):
            chunk = data  # a view of immutable bytes: safe to keep without a copy
        else:
            chunk = bytes(data)
        n = len(chunk) if isinstance(chunk, bytes) else chunk.nbytes
        if not n:
            return
        self._buf.append(chunk)
        self._buf_size += n
        if self._buf_size > DEFAULT_HIGH_WATER and not self._paused_writing:
            self._paused_writing = True
            self.sim.schedule(self.sim.now, self._notify_pause)
        if self.state == OPEN:
            self.host.mark_ready(self)

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_eof(self) -> None:
        if self.closing or self._eof_wanted:
            return
        self._eof_wanted = True
        if self.state == OPEN:
            self.host.mark_ready(self)

    def close(self) -> None:
        if self.closing:
            return
        self._closing = True
        self._reading_paused = False
        self._unread.clear()
        self._unread_size = 0
        if self._fin_sent:
            self._lost = True
            self.sim.schedule(self.sim.now, self._notify_lost, None)
            self._start_linger()
        else:
            self._eof_wanted = True
            if self.state == OPEN:
                self.host.mark_ready(self)
        self._maybe_forget()

    def abort(self) -> None:
        if self._lost or self.state == DEAD:
            return
        self._closing = True
        if self.state == OPEN:
            self._send_rst()
        self._die(None, later=True)

    def pause_reading(self) -> None:
        if not self.closing:
            self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused and not self.closing:
            self._reading_paused = False
            self.sim.schedule(self.sim.now, self._drain_unread)

    def get_write_buffer_size(self) -> int:
        return self._buf_size

    # ------------------------------------------------------------ handler calls

    def _notify_pause(self, _: object = None) -> None:
        if self._paused_writing and not self._lost and self.handler is not None:
            self.handler.pause_writing()

    def _notify_resume(self, _: object = None) -> None:
        if not self._lost and self.handler is not None:
            self.handler.resume_writing()

    def _notify_lost(self, exc: NetworkError | None) -> None:
        self.sim.trace(self.host.ip, "closed", f"{self._local[1]} {self._remote} {exc}")
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def _die(self, exc: NetworkError | None, *, later: bool = False) -> None:
        """End this connection now: forget it, tell the handler once."""
        if self.state == DEAD:
            return
        was = self.state
        self.state = DEAD
        self.host.remove_conn(self._key, self)
        self._cancel_timers()
        self._buf.clear()
        self._buf_size = 0
        self._retx.clear()
        self._ooo.clear()
        self._unread.clear()
        if was == CONNECTING:
            assert exc is not None
            if later:
                self.sim.schedule(self.sim.now, self._notify_failed, exc)
            else:
                self._notify_failed(exc)
        elif was == OPEN and not self._lost:
            self._lost = True
            if later:
                self.sim.schedule(self.sim.now, self._notify_lost, exc)
            else:
                self._notify_lost(exc)

    def _notify_failed(self, exc: NetworkError) -> None:
        self.sim.trace(self.host.ip, "failed", f"{self._remote} {exc}")
        assert self.handler is not None
        self.handler.connection_failed(exc)

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    def _send_rst(self) -> None:
        self.host.send_control(Packet(RST, self._local, self._remote))

    def reset_received(self) -> None:
        """RST from the peer: refused while connecting, reset once open."""
        if self.state == CONNECTING:
            host, port = self._remote
            self._die(ConnectionRefused(f"connection to {host}:{port} refused"))
        elif self.state == SYN_RCVD:
            self._die(None)
        elif self.state == OPEN:
            self._die(NetworkError("connection reset by peer"))

    def _start_linger(self) -> None:
        """Closed and flushed: wait for the peer's FIN, but not for ever.
        (The wait starts after our FIN, so flushing a long close() over a slow
        link is never cut short.)"""
        self._timers.append(self.sim.call_at(self.sim.now + LINGER_TIMEOUT, self._linger_over))

    def _linger_over(self) -> None:
        if self.state != DEAD:
            self._die(None)

    def _maybe_forget(self) -> None:
        """A closed end whose FINs both went through is done."""
        if self._closing and self._fin_acked and self._fin_received and self.state == OPEN:
            self._die(None)

    # ------------------------------------------------------------ sending

    def wants_to_send(self) -> bool:
        if self._retx:
            return True
        if self.state != OPEN or self._fin_sent:
            return False
        if not self._buf_size:
            return self._eof_wanted
        return self._in_flight < self._cwnd and self._next_off < self._window_end

    def next_packet(self) -> Packet | None:
        """The uplink's turn: a retransmission, or the next new segment."""
        if self._retx:
            return self._retx.popleft()
        if self.state != OPEN or self._fin_sent:
            return None
        n = 0
        if self._buf_size and self._in_flight < self._cwnd:
            n = min(self._seg, self._buf_size, self._window_end - self._next_off)
            if n < 0:
                n = 0
        fin = self._eof_wanted and n == self._buf_size
        if not n and not fin:
            return None
        payload = self._take(n) if n else b""
        pkt = Packet(
            DATA,
            self._local,
            self._remote,
            payload,
            n + TCP_OVERHEAD,
            offset=self._next_off,
            fin=fin,
            conn=self,
        )
        self._next_off += n
        self._in_flight += n
        if self._paused_writing and self._buf_size <= DEFAULT_LOW_WATER:
            self._paused_writing = False
            self.sim.schedule(self.sim.now, self._notify_resume)
        if fin:
            self._fin_sent = True
            if self._closing and not self._lost:
                # close() flushed everything it had: the handler is done.
                self._lost = True
                self.sim.schedule(self.sim.now, self._notify_lost, None)
                self._start_linger()
        return pkt

    def _take(self, n: int) -> SendChunk:
        """The next ``n`` bytes of the send buffer, copied only when they
        span several writes."""
        buf = self._buf
        first = buf[0]
        off = self._buf_head
        size = len(first) if isinstance(first, bytes) else first.nbytes
        self._buf_size -= n
        if size - off >= n:
            if off == 0 and size == n:
                buf.popleft()
                return first
            out = memoryview(first)[off : off + n]
            off += n
            if off == size:
                buf.popleft()
                off = 0
            self._buf_head = off
            return out
        parts: list[SendChunk] = []
        need = n
        while need:
            first = buf[0]
            size = len(first) if isinstance(first, bytes) else first.nbytes
            avail = size - off
            if avail <= need:
                parts.append(memoryview(first)[off:] if off else first)
                buf.popleft()
                need -= avail
                off = 0
            else:
                parts.append(memoryview(first)[off : off + need])
                off += need
                need = 0
        self._buf_head = off
        return b"".join(parts)

    def segment_acked(self, pkt: Packet) -> None:
        """The peer got ``pkt`` (``pkt.window``: its window's end)."""
        if self.state == DEAD:
            return
        self._in_flight -= len(pkt.payload)
        if pkt.window > self._window_end:
            self._window_end = pkt.window
        if pkt.fin:
            self._fin_acked = True
            self._maybe_forget()
        # The first three: what wants_to_send() needs to be True at all (most
        # acknowledgements find nothing more to send: a call saved).
        if (
            (self._buf_size or self._retx or self._eof_wanted)
            and self.state == OPEN
            and self.wants_to_send()
        ):
            self.host.mark_ready(self)

    def window_update(self, end: int) -> None:
        """The peer's handler consumed data: its window moved to ``end``."""
        if self.state == OPEN and end > self._window_end:
            self._window_end = end
            if self.wants_to_send():
                self.host.mark_ready(self)

    def segment_lost(self, pkt: Packet) -> None:
        """One of our segments was lost: resend it after the (backed-off) RTO."""
        if self.state == DEAD:
            return
        if pkt.tries >= MAX_TRIES:
            self._die(NetworkError("connection timed out (retransmissions exhausted)"))
            return
        rto = min(MAX_RTO, self._rto * (1 << (pkt.tries - 1)))
        self.sim.schedule(max(self.sim.now, pkt.sent_at + rto), self._retransmit, pkt)

    def _retransmit(self, pkt: Packet) -> None:
        if self.state == DEAD:
            return
        self._retx.append(pkt)
        self.host.mark_ready(self)

    # ------------------------------------------------------------ receiving

    def segment_received(self, pkt: Packet) -> None:
        """A segment of the peer's stream arrived (in any order)."""
        if self.state == SYN_RCVD:
            self.handshake_acked()
        if self.state != OPEN:
            return
        if pkt.offset == self._expected:
            self._accept(pkt)
            ooo = self._ooo
            while self._expected in ooo and self.state == OPEN:
                self._accept(ooo.pop(self._expected))
        elif pkt.offset > self._expected:
            self._ooo[pkt.offset] = pkt
        peer = pkt.conn
        if peer is not None:
            pkt.window = self._consumed + RECEIVE_WINDOW
            self.sim.schedule(self.sim.now + self._ack_delay, peer.segment_acked, pkt)

    def _accept(self, pkt: Packet) -> None:
        data = pkt.payload
        n = len(data) if isinstance(data, bytes) else data.nbytes
        self._expected += n
        if n:
            if self._closing:
                self._consumed += n
            else:
                chunk = data if isinstance(data, bytes) else bytes(data)
                if self._reading_paused or self._unread:
                    self._unread.append(chunk)
                    self._unread_size += n
                else:
                    self._consumed += n
                    self._deliver(chunk)
        if pkt.fin:
            self._fin_received = True
            if not self._closing and not self._reading_paused and not self._unread:
                self._deliver_eof()
            self._maybe_forget()

    def _deliver(self, chunk: bytes) -> None:
        self.sim.trace(self.host.ip, "data", f"{self._tag} {len(chunk)} {zlib.crc32(chunk)}")
        assert self.handler is not None
        self.handler.data_received(chunk)

    def _deliver_eof(self) -> None:
        if self._eof_delivered or self.state != OPEN:
            return
        self._eof_delivered = True
        self.sim.trace(self.host.ip, "eof", f"{self._local[1]} {self._remote}")
        assert self.handler is not None
        self.handler.eof_received()

    def _drain_unread(self, _: object = None) -> None:
        """resume_reading(): hand over what arrived while paused."""
        before = self._consumed
        while self._unread and not self._reading_paused and not self.closing:
            chunk = self._unread.popleft()
            self._unread_size -= len(chunk)
            self._consumed += len(chunk)
            self._deliver(chunk)
        if (
            self._fin_received
            and not self._unread
            and not self._reading_paused
            and not self.closing
        ):
            self._deliver_eof()
        peer = self.peer
        if self._consumed != before and peer is not None and self.state == OPEN:
            self.sim.schedule(
                self.sim.now + self._ack_delay, peer.window_update, self._consumed + RECEIVE_WINDOW
            )

    def __repr__(self) -> str:
        return f"<SimStream {self._local} -> {self._remote} {self.state}>"
