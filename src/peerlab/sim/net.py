"""Simulated hosts, their access links, and the packets that cross them.

The network model (all figures per host, set in
:meth:`~peerlab.sim.engine.Simulator.add_host`):

* **Uplink.**  A host sends one packet at a time; a packet of ``size`` bytes
  occupies the uplink for ``size / up`` seconds (serialisation delay).  The
  uplink takes turns, round robin, among its *sources*: every stream with
  something it may send, and one queue for datagrams and connection control
  (SYN, SYN-ACK, RST).  So a bulk transfer cannot starve a small message on
  another connection of the same host, and nothing piles up unboundedly in
  front of the link: a stream releases a segment only when the uplink asks.
* **Propagation.**  A packet reaches the destination's downlink
  ``latency(src) + latency(dst)`` seconds after it left the uplink.
* **Downlink.**  A FIFO with a next-free time: a packet starts after the one
  before it is through and occupies the downlink for ``size / down`` seconds.
* **Loss.**  Each of the two link directions a packet crosses drops it with
  that host's ``loss`` probability, drawn from the host's own network
  :class:`random.Random` (never the one handed to protocol code, so protocol
  randomness does not depend on traffic).  Streams retransmit lost segments
  (see :mod:`peerlab.sim.tcp`); datagrams stay lost.

**Pluggable packet path.**  Every packet passes a host's :attr:`SimHost.egress`
hooks after it leaves the uplink and its :attr:`SimHost.ingress` hooks before
the host's stack sees it; a hook returns the packet (possibly rewritten) or
``None`` to drop it.  Packets are routed by destination IP through
:attr:`Simulator.routes <peerlab.sim.engine.Simulator.routes>`, where anything
with ``latency`` and ``packet_arrived(packet)`` (a :class:`PacketSink`) may
take an address over: that is where NAT boxes and relays plug in.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from peerlab.errors import AddressInUse, NetworkError
from peerlab.runtime.base import Address, DatagramHandler, Observer, StreamHandler

if TYPE_CHECKING:
    from peerlab.sim.engine import Simulator
    from peerlab.sim.runtime import SimRuntime
    from peerlab.sim.tcp import SimStream

# Packet kinds.  Strings, so the trace and repr() read well.
SYN = "SYN"
SYNACK = "SYNACK"
RST = "RST"
DATA = "DATA"
DGRAM = "DGRAM"

#: Bytes an IPv4 + TCP header adds to every segment (RFC 791, RFC 793; no options).
TCP_OVERHEAD = 40
#: Bytes an IPv4 + UDP header adds to every datagram (RFC 791, RFC 768).
UDP_OVERHEAD = 28
#: Size on the wire of SYN, SYN-ACK and RST (headers plus the usual options).
CONTROL_SIZE = 60
#: Largest UDP payload over IPv4 (65535 minus the IP and UDP headers).
MAX_DATAGRAM = 65507
#: Bytes of datagrams and control packets a host queues in front of its
#: uplink; beyond this a datagram is dropped at the sender, as a kernel drops
#: it when the socket's send buffer is full (Linux's default is ~200 KiB).
CONTROL_QUEUE_LIMIT = 256 << 10
#: The dynamic port range (RFC 6335 section 6) for ephemeral ports.
EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 65535

#: Rewrites a packet or drops it (returns None): NATs, relays, firewalls.
PacketHook = Callable[["Packet"], "Packet | None"]


class PacketSink(Protocol):
    """Anything packets can be routed to by IP: a host, later a NAT box."""

    latency: float

    def packet_arrived(self, packet: Packet) -> None: ...


class Packet:
    """One segment, datagram or control packet in flight.

    ``size`` is the size on the wire (payload plus headers).  For stream
    segments ``offset`` is the stream offset of the first payload byte,
    ``fin`` marks the end of the stream, ``conn`` is the sending end (the
    simulator acknowledges segments to it directly, without ACK packets),
    ``window`` carries the receiver's window back with the acknowledgement,
    and ``tries`` counts transmissions.
    """

    __slots__ = (
        "kind",
        "src",
        "dst",
        "payload",
        "size",
        "offset",
        "fin",
        "conn",
        "window",
        "sent_at",
        "tries",
    )

    def __init__(
        self,
        kind: str,
        src: Address,
        dst: Address,
        payload: bytes | memoryview = b"",
        size: int = CONTROL_SIZE,
        *,
        offset: int = 0,
        fin: bool = False,
        conn: SimStream | None = None,
    ) -> None:
        self.kind = kind
        self.src = src
        self.dst = dst
        self.payload = payload
        self.size = size
        self.offset = offset
        self.fin = fin
        self.conn = conn
        self.window = 0
        self.sent_at = 0.0
        self.tries = 0

    def __repr__(self) -> str:
        fin = " FIN" if self.fin else ""
        return (
            f"<Packet {self.kind}{fin} {self.src[0]}:{self.src[1]} -> "
            f"{self.dst[0]}:{self.dst[1]} len={len(self.payload)} off={self.offset}>"
        )


class _Source(Protocol):
    """Something the uplink takes packets from, one per turn."""

    queued: bool

    def wants_to_send(self) -> bool: ...

    def next_packet(self) -> Packet | None: ...


class _ControlQueue:
    """Datagrams and connection control packets of one host, in order."""

    __slots__ = ("queued", "packets", "bytes")

    def __init__(self) -> None:
        self.queued = False
        self.packets: deque[Packet] = deque()
        self.bytes = 0

    def wants_to_send(self) -> bool:
        return bool(self.packets)

    def next_packet(self) -> Packet | None:
        if not self.packets:
            return None
        pkt = self.packets.popleft()
        self.bytes -= pkt.size
        return pkt


class SimListener:
    """A listening port on a simulated host."""

    def __init__(self, host: SimHost, port: int, factory: Callable[[], StreamHandler]) -> None:
        self.host = host
        self.port = port
        self.factory = factory
        self.closed = False

    @property
    def address(self) -> Address:
        return (self.host.ip, self.port)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.host.listeners.get(self.port) is self:
                del self.host.listeners[self.port]

    def __repr__(self) -> str:
        return f"<SimListener {self.host.ip}:{self.port}>"


class SimDatagramEndpoint:
    """A bound UDP port on a simulated host."""

    def __init__(self, host: SimHost, port: int, handler: DatagramHandler) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.closed = False

    @property
    def address(self) -> Address:
        return (self.host.ip, self.port)

    def send_to(self, data: bytes, addr: Address) -> None:
        if self.closed:
            return
        if len(data) > MAX_DATAGRAM:
            err = NetworkError(f"datagram of {len(data)} bytes is too long (max {MAX_DATAGRAM})")
            self.host.sim.schedule(self.host.sim.now, self._report, err)
            return
        payload = bytes(data)
        pkt = Packet(DGRAM, (self.host.ip, self.port), addr, payload, len(payload) + UDP_OVERHEAD)
        self.host.send_control(pkt)

    def _report(self, err: NetworkError) -> None:
        if not self.closed:
            self.handler.error_received(err)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.host.udp.get(self.port) is self:
                del self.host.udp[self.port]

    def __repr__(self) -> str:
        return f"<SimDatagramEndpoint {self.host.ip}:{self.port}>"


class SimHost:
    """A host in the simulated network: an IP, an access link, a TCP/UDP stack.

    :attr:`runtime` is the :class:`~peerlab.runtime.base.Runtime` to hand to
    code that should run on this host.
    """

    def __init__(
        self,
        sim: Simulator,
        ip: str,
        *,
        up: float,
        down: float,
        latency: float,
        loss: float,
        observer: Observer | None,
    ) -> None:
        from peerlab.sim.engine import derive_seed
        from peerlab.sim.runtime import SimRuntime

        self.sim = sim
        self.ip = ip
        self.up = float(up)
        self.down = float(down)
        self.latency = float(latency)
        self.loss = float(loss)
        #: The generator for link losses (protocol code gets ``runtime.rng``).
        self.net_rng = random.Random(derive_seed(sim.seed, ip, "net"))
        self.listeners: dict[int, SimListener] = {}
        self.udp: dict[int, SimDatagramEndpoint] = {}
        #: Streams by (local port, remote ip, remote port).
        self.conns: dict[tuple[int, str, int], SimStream] = {}
        self.egress: list[PacketHook] = []
        self.ingress: list[PacketHook] = []
        self._ports_used: dict[int, int] = {}
        self._next_port = EPHEMERAL_FIRST
        self._ready: deque[_Source] = deque()
        self._up_busy = False
        self._down_free = 0.0
        self._control = _ControlQueue()
        #: Counters: bytes on the wire each way, packets lost on this host's links.
        self.bytes_up = 0
        self.bytes_down = 0
        self.packets_lost = 0
        self.runtime: SimRuntime = SimRuntime(self, observer, derive_seed(sim.seed, ip, "rng"))

    # -- ports

    def check_local(self, host: str) -> None:
        if host not in ("", "0.0.0.0", self.ip):
            raise NetworkError(f"cannot assign requested address {host} on host {self.ip}")

    def ephemeral_port(self, taken: Mapping[int, object]) -> int:
        """A free port from the dynamic range (round robin, like Linux)."""
        span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = port + 1 if port < EPHEMERAL_LAST else EPHEMERAL_FIRST
            if port not in taken and port not in self._ports_used and port not in self.listeners:
                return port
        raise NetworkError(f"host {self.ip}: no free ephemeral port")

    def add_listener(self, port: int, factory: Callable[[], StreamHandler]) -> SimListener:
        if port == 0:
            port = self.ephemeral_port(self.listeners)
        elif port in self.listeners:
            raise AddressInUse(f"TCP address {self.ip}:{port} is already in use")
        listener = SimListener(self, port, factory)
        self.listeners[port] = listener
        return listener

    def add_udp(self, port: int, handler: DatagramHandler) -> SimDatagramEndpoint:
        if port == 0:
            port = self.ephemeral_port(self.udp)
        elif port in self.udp:
            raise AddressInUse(f"UDP address {self.ip}:{port} is already in use")
        endpoint = SimDatagramEndpoint(self, port, handler)
        self.udp[port] = endpoint
        return endpoint

    def add_conn(self, key: tuple[int, str, int], conn: SimStream) -> None:
        self.conns[key] = conn
        self._ports_used[key[0]] = self._ports_used.get(key[0], 0) + 1

    def remove_conn(self, key: tuple[int, str, int], conn: SimStream) -> None:
        if self.conns.get(key) is conn:
            del self.conns[key]
            left = self._ports_used[key[0]] - 1
            if left:
                self._ports_used[key[0]] = left
            else:
                del self._ports_used[key[0]]

    # -- uplink

    def send_control(self, pkt: Packet) -> None:
        """Queue a datagram or control packet for the uplink."""
        q = self._control
        if q.bytes + pkt.size > CONTROL_QUEUE_LIMIT:
            self.sim.trace(self.ip, "drop-queue", f"{pkt.kind} {pkt.dst}")
            return
        q.packets.append(pkt)
        q.bytes += pkt.size
        self.mark_ready(q)

    def mark_ready(self, source: _Source) -> None:
        """``source`` may have something to send: give it a turn."""
        if not source.queued:
            source.queued = True
            self._ready.append(source)
        if not self._up_busy:
            self._start_next()

    def _start_next(self) -> None:
        ready = self._ready
        while ready:
            source = ready.popleft()
            source.queued = False
            pkt = source.next_packet()
            if pkt is None:
                continue
            if source.wants_to_send():
                source.queued = True
                ready.append(source)
            self._up_busy = True
            pkt.sent_at = now = self.sim.now
            pkt.tries += 1
            self.sim.schedule(now + pkt.size / self.up, self._transmitted, pkt)
            return
        self._up_busy = False

    def _transmitted(self, pkt: Packet) -> None:
        self.bytes_up += pkt.size
        self._start_next()
        if self.loss and self.net_rng.random() < self.loss:
            self.lose(pkt, "uplink")
            return
        for hook in self.egress:
            out = hook(pkt)
            if out is None:
                self.lose(pkt, "egress")
                return
            pkt = out
        self.route(pkt)

    def route(self, pkt: Packet) -> None:
        """Send a packet that left this host towards its destination."""
        sim = self.sim
        sink = sim.routes.get(pkt.dst[0])
        if sink is None:
            self.lose(pkt, "no-route")
            return
        sim.schedule(sim.now + self.latency + sink.latency, sink.packet_arrived, pkt)

    def lose(self, pkt: Packet, where: str) -> None:
        """A packet is gone: streams retransmit, everything else stays lost."""
        self.packets_lost += 1
        self.sim.trace(self.ip, "lost", f"{where} {pkt.kind} {pkt.src} {pkt.dst} {pkt.offset}")
        if pkt.kind == DATA and pkt.conn is not None:
            pkt.conn.segment_lost(pkt)

    # -- downlink

    def packet_arrived(self, pkt: Packet) -> None:
        """A packet reached this host's downlink (after propagation)."""
        if self.loss and self.net_rng.random() < self.loss:
            self.lose(pkt, "downlink")
            return
        now = self.sim.now
        start = self._down_free if self._down_free > now else now
        self._down_free = done = start + pkt.size / self.down
        self.sim.schedule(done, self._received, pkt)

    def _received(self, pkt: Packet) -> None:
        self.bytes_down += pkt.size
        for hook in self.ingress:
            got = hook(pkt)
            if got is None:
                self.lose(pkt, "ingress")
                return
            pkt = got
        kind = pkt.kind
        if kind == DATA:
            conn = self.conns.get((pkt.dst[1], pkt.src[0], pkt.src[1]))
            if conn is None:
                self._reset_reply(pkt)
            else:
                conn.segment_received(pkt)
        elif kind == DGRAM:
            endpoint = self.udp.get(pkt.dst[1])
            if endpoint is not None:
                payload = bytes(pkt.payload)
                self.sim.trace(
                    self.ip,
                    "dgram",
                    f"{pkt.src} {pkt.dst[1]} {len(payload)} {zlib.crc32(payload)}",
                )
                endpoint.handler.datagram_received(payload, pkt.src)
        elif kind == SYN:
            self._syn_received(pkt)
        elif kind == SYNACK:
            conn = self.conns.get((pkt.dst[1], pkt.src[0], pkt.src[1]))
            if conn is None:
                self._reset_reply(pkt)
            else:
                conn.synack_received(pkt)
        elif kind == RST:
            conn = self.conns.get((pkt.dst[1], pkt.src[0], pkt.src[1]))
            if conn is not None:
                conn.reset_received()

    def _reset_reply(self, pkt: Packet) -> None:
        self.send_control(Packet(RST, pkt.dst, pkt.src))

    def _syn_received(self, pkt: Packet) -> None:
        from peerlab.sim.tcp import SimStream

        key = (pkt.dst[1], pkt.src[0], pkt.src[1])
        conn = self.conns.get(key)
        if conn is not None:
            conn.syn_again()
            return
        listener = self.listeners.get(pkt.dst[1])
        if listener is None or pkt.conn is None:
            self.sim.trace(self.ip, "refuse", f"{pkt.src} {pkt.dst[1]}")
            self._reset_reply(pkt)
            return
        conn = SimStream.accept(self, listener, pkt)
        self.add_conn(key, conn)

    def __repr__(self) -> str:
        return (
            f"<SimHost {self.ip} up={self.up:g} down={self.down:g} "
            f"latency={self.latency:g} loss={self.loss:g}>"
        )
