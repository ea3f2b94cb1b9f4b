"""Hypothesis strategies and helpers shared by the bt_wire tests."""

from __future__ import annotations

from hypothesis import strategies as st

from peerlab.proto.peer import Event, PeerConfig, PeerConnection
from peerlab.wire import peer as pw

u32 = st.integers(0, 0xFFFFFFFF)
indices = st.integers(0, 5000)
blocks = st.binary(max_size=64)
hashes20 = st.binary(min_size=20, max_size=20)

fixed_messages = st.sampled_from(
    [pw.KeepAlive(), pw.Choke(), pw.Unchoke(), pw.Interested(), pw.NotInterested(),
     pw.HaveAll(), pw.HaveNone()]
)

messages: st.SearchStrategy[pw.Message] = st.one_of(
    fixed_messages,
    st.builds(pw.Have, u32),
    st.builds(pw.Bitfield, st.binary(min_size=1, max_size=40)),
    st.builds(pw.Request, u32, u32, u32),
    st.builds(pw.Piece, u32, u32, blocks),
    st.builds(pw.Cancel, u32, u32, u32),
    st.builds(pw.Port, st.integers(0, 0xFFFF)),
    st.builds(pw.SuggestPiece, u32),
    st.builds(pw.RejectRequest, u32, u32, u32),
    st.builds(pw.AllowedFast, u32),
    st.builds(pw.Extended, st.integers(0, 255), st.binary(max_size=64)),
    st.builds(
        pw.Unknown,
        st.integers(0, 255).filter(lambda i: i not in set(pw.MessageId)),
        st.binary(max_size=64),
    ),
)

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addresses = st.tuples(st.one_of(ipv4, ipv6), st.integers(0, 0xFFFF))
pex_messages = st.builds(
    pw.PeerExchange,
    st.lists(
        st.builds(pw.PexPeer, addresses, st.integers(0, 0x1F).map(pw.PexFlags)), max_size=20
    ).map(tuple),
    st.lists(addresses, max_size=20).map(tuple),
)
names = st.text(min_size=1, max_size=20)
extended_handshakes = st.builds(
    pw.ExtendedHandshake,
    m=st.dictionaries(names, st.integers(0, 255), max_size=8),
    p=st.none() | st.integers(1, 0xFFFF),
    v=st.none() | st.text(max_size=30),
    reqq=st.none() | st.integers(1, 10_000),
    metadata_size=st.none() | st.integers(1, pw.MAX_METADATA_SIZE),
    yourip=st.none() | ipv4 | ipv6,
)


@st.composite
def metadata_messages(draw: st.DrawFn) -> pw.MetadataMessage:
    kind = draw(st.sampled_from(["request", "data", "reject"]))
    if kind == "data":
        total = draw(st.integers(1, 5 * pw.METADATA_PIECE_SIZE))
        piece = draw(st.integers(0, pw.metadata_piece_count(total) - 1))
        size = pw.metadata_piece_length(piece, total)
        return pw.MetadataData(piece, total, bytes([piece & 0xFF]) * size)
    piece = draw(st.integers(0, 3000))
    return pw.MetadataRequest(piece) if kind == "request" else pw.MetadataReject(piece)


def feed_bytewise(decoder: pw.MessageDecoder, data: bytes) -> list[pw.Message]:
    out: list[pw.Message] = []
    for i in range(len(data)):
        out.extend(decoder.feed(data[i : i + 1]))
    return out


INFO_HASH = bytes(range(20))
PIECES = 8


def config(name: bytes, **kw: object) -> PeerConfig:
    return PeerConfig(peer_id=(b"-PL0100-" + name * 12)[:20], **kw)  # type: ignore[arg-type]


class Pair:
    """Two machines wired back to back (a dials b), with an explicit clock."""

    def __init__(
        self,
        a_cfg: PeerConfig | None = None,
        b_cfg: PeerConfig | None = None,
        *,
        piece_count: int = PIECES,
    ) -> None:
        self.now = 0.0
        self.a = PeerConnection.outgoing(
            a_cfg or config(b"a"), INFO_HASH, self.now, piece_count=piece_count
        )
        self.b = PeerConnection.incoming(
            b_cfg or config(b"b"),
            lambda h: piece_count if h == INFO_HASH else None,
            self.now,
        )
        self.a_events: list[Event] = []
        self.b_events: list[Event] = []

    def pump(self) -> None:
        """Move bytes both ways until nothing is left to send (bounded)."""
        for _ in range(50):
            ab = self.a.data_to_send()
            ba = self.b.data_to_send()
            if not ab and not ba:
                return
            if ab:
                self.b_events += self.b.receive_data(ab, self.now)
            if ba:
                self.a_events += self.a.receive_data(ba, self.now)
        raise AssertionError("the machines kept talking")

    def take(self) -> tuple[list[Event], list[Event]]:
        a, b = self.a_events, self.b_events
        self.a_events, self.b_events = [], []
        return a, b
