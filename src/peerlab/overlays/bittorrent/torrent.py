"""One torrent in a session: its swarm, its pieces, its trackers (issue 6, 3-4).

Written only against the runtime interface (no asyncio, no clock, no global
randomness), so the same code runs on real sockets and by the hundreds in
the simulator.  The policies are separate units: whom to upload to is the
choker's (:mod:`.choker`), which blocks to ask for is the picker's
(:mod:`.picker`); pieces live in a :class:`~peerlab.storage.pieces.PieceStore`.

What a torrent does (BEP 3 unless noted):

* **Peers.**  It learns addresses from its trackers (:mod:`.announce`),
  from PEX (BEP 11), from a magnet link's ``x.pe`` and from
  :meth:`Torrent.add_peers`, keeps them in a bounded table
  (:data:`~.config.MAX_CANDIDATES`) and dials them up to
  ``max_peers_per_torrent`` connections; incoming connections reach it
  through the session's one listener, routed by info-hash.  A connection to
  ourselves (our peer id comes back) or a second connection to the same peer
  (the one dialled by the lower peer id is kept, on both ends) is closed.
* **Availability.**  Each peer's bitfield, have all (BEP 6) and haves feed
  the picker's availability counts; we are interested in a peer exactly
  while it has a piece we lack.
* **Downloading.**  While a peer unchokes us, the pipe is kept full:
  ``request_queue_time`` seconds of its measured rate are kept outstanding
  (at least :data:`~.config.MIN_REQUEST_QUEUE`, at most the peer's ``reqq``),
  refilled when a quarter has drained.  A peer that sends no block data
  (a whole block or part of one, as libtorrent's ``m_last_piece``) for
  longer than the gaps between its blocks explain (mean plus four
  deviations, at most ``request_timeout``: libtorrent's adaptive timeout)
  is snubbed: its newest request goes to others and it gets one request at
  a time until a block comes; silent a second time, all its requests go.
  Endgame duplicates are cancelled when their block arrives.
* **Verification.**  A whole piece is hashed before it counts or is written;
  a piece that fails gives its senders strikes, and a peer with
  ``ban_strikes`` is banned (its peer id and address) and disconnected.
* **Uploading.**  Requests are served from the store (a read cache answers
  the blocks of one piece from one disk read) while the choker unchokes the
  peer; requests outside the piece end the connection (BEP 3), requests for
  pieces we lack are rejected (BEP 6) or dropped; a peer whose refused
  requests exceed :data:`~.config.MAX_REFUSED_PER_WINDOW` in
  :data:`~.config.FLOOD_WINDOW` is disconnected.
* **Choking** every ``rechoke_interval`` and when interest changes.
* **Magnet links** (BEP 9): the info dictionary is fetched from peers with
  ut_metadata, checked against the info-hash, then the torrent starts as if
  it had been added from a file; we serve our metadata to others.
* **PEX** (BEP 11): every ``pex_interval`` each peer that speaks ut_pex gets
  the peers connected since the last message (at most 50) and those gone;
  peers it tells us of are dialled like tracker peers.  Not for private
  torrents (BEP 27).
* **Completion**: ``completed`` is announced, interest dropped, connections
  to other seeds closed, the choker switches to seeding.
* **Rate limits** (issue 6, item 6): blocks we send wait while the
  torrent's or the session's upload bucket is in debt (the queue is the
  peer's own ``serve_queue``); requests are not topped up while a download
  bucket is in debt, so received bytes follow the limit within one pipeline.
  Both buckets are :class:`~peerlab.overlays.transfer.ratelimit.TokenBucket`.
* **Seeding goals** (issue 6, item 6): a seeding torrent stops itself once
  its share ratio (bytes uploaded over every run / the torrent's size)
  reaches ``seed_ratio`` or it has seeded ``seed_time`` seconds over every
  run; ``goal_reached`` then says which.

Public API (the node calls these through :class:`~.session.Session`)::

    TorrentState: METADATA CHECKING DOWNLOADING SEEDING STOPPED ERROR
    Torrent
        .info_hash .info (None until a magnet's metadata arrives) .name
        .state .error .save_path .store .picker .choker .counters
        .start() .stop(done=None) .add_peers(addresses, source="direct")
        .status() -> TorrentStatus   .piece_map() -> str
        .uploaded_to(peer_id) -> {"regular": n, "optimistic": n, "seeding": n}
        .on_change: list[Callable[[Torrent], None]]   # state changes, completion
        .set_rate_limits(up=None, down=None)     # bytes/s, 0 unlimited
        .set_goals(seed_ratio=None, seed_time=None) .goal_reached
        .carry_over(uploaded, downloaded, seeding_seconds)  # totals of earlier runs
        .share_ratio() .seeding_seconds()
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from peerlab.errors import LocalProtocolError, RemoteProtocolError, StorageError
from peerlab.overlays.bittorrent.announce import Announcer, TrackerStatus
from peerlab.overlays.bittorrent.choker import Choker, ChokerPolicy
from peerlab.overlays.bittorrent.config import (
    FLOOD_WINDOW,
    MAGNET_LEFT,
    MAX_BANNED,
    MAX_CANDIDATES,
    MAX_CONNECT_ATTEMPTS,
    MAX_METADATA_REQUESTS,
    MAX_PENDING_HAVE_INDEX,
    MAX_REFUSED_PER_WINDOW,
    PEX_MAX_ADDED,
    PEX_MAX_DROPPED,
    PEX_MIN_INTERVAL,
    SessionConfig,
)
from peerlab.overlays.bittorrent.metadata import MetadataFetcher
from peerlab.overlays.bittorrent.peer import PeerLink, PeerStatus
from peerlab.overlays.bittorrent.picker import PickerConfig, PiecePicker
from peerlab.overlays.transfer.ratelimit import TokenBucket
from peerlab.proto.peer import ConnectionClosed, RequestsDropped
from peerlab.runtime.base import Address, Timer
from peerlab.storage.pieces import (
    FileLayout,
    FileStorage,
    MemoryStorage,
    PieceBits,
    PieceStore,
    Storage,
)
from peerlab.wire.metainfo import Info
from peerlab.wire.peer import (
    METADATA_PIECE_SIZE,
    UT_METADATA,
    UT_PEX,
    Bitfield,
    ExtendedHandshake,
    Have,
    HaveAll,
    Interested,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    PeerExchange,
    PexFlags,
    PexPeer,
    Piece,
    Port,
    RejectRequest,
    Request,
    Unchoke,
    check_bitfield,
    metadata_piece_count,
    metadata_piece_length,
)
from peerlab.wire.tracker import AnnounceEvent, AnnounceRequest

if TYPE_CHECKING:
    from peerlab.overlays.bittorrent.session import Session

__all__ = ["Torrent", "TorrentState", "TorrentStatus"]

#: Peers whose upload tally (bytes we sent them, by unchoke kind) is kept
#: after they disconnect; the oldest are forgotten beyond this.
MAX_UPLOAD_RECORDS = 1024
#: Rechokes triggered by interest changes (the regular ones come every
#: ``rechoke_interval`` besides) run at once, at most this many per
#: ``MIN_RECHOKE_GAP`` seconds: unchoking a newcomer into a free slot need not
#: wait 10 s, and a peer flapping its interest costs a few rechokes a second.
TRIGGERED_RECHOKES = 4
MIN_RECHOKE_GAP = 1.0
#: Seconds between connection attempts to one address, doubled per failure.
RECONNECT_DELAY = 30.0
#: Machine counters of requests the peer sent that we refused.
_REFUSED = ("requests_while_choked", "requests_over_queue", "duplicate_requests")


class TorrentState(Enum):
    METADATA = "metadata"  # a magnet link: fetching the info dictionary (BEP 9)
    CHECKING = "checking"  # finding verified pieces on disk (resume, re-check)
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    STOPPED = "stopped"
    ERROR = "error"


_RUNNING = (TorrentState.METADATA, TorrentState.CHECKING, TorrentState.DOWNLOADING,
            TorrentState.SEEDING)


@dataclass(frozen=True, slots=True)
class TorrentStatus:
    """A torrent at one moment, for people, the node and tests."""

    info_hash: str
    name: str
    state: str
    error: str | None
    save_path: str
    total_size: int | None
    piece_length: int | None
    piece_count: int | None
    pieces_have: int
    progress: float  # 0..1
    left: int | None
    downloaded: int  # payload bytes received this session (wasted included)
    uploaded: int
    wasted: int
    down_rate: float
    up_rate: float
    peers: tuple[PeerStatus, ...]
    connecting: int
    candidates: int
    seeds: int
    leechers: int
    piece_map: str  # see Torrent.piece_map
    trackers: tuple[TrackerStatus, ...]
    counters: dict[str, int]
    #: Seeding goals and rate limits (0 / None: none), totals over every run.
    seed_ratio: float | None = None
    seed_time: float | None = None
    goal_reached: str | None = None  # "ratio" or "time" once the torrent stopped for it
    share_ratio: float = 0.0
    seeding_seconds: float = 0.0
    total_uploaded: int = 0
    total_downloaded: int = 0
    up_limit: float = 0.0
    down_limit: float = 0.0


class _Candidate:
    __slots__ = ("source", "attempts", "next_try")

    def __init__(self, source: str, attempts: int = 0, next_try: float = 0.0) -> None:
        self.source = source
        self.attempts = attempts
        self.next_try = next_try


_T = TypeVar("_T")


def after(items: list[_T], last: _T | None) -> list[_T]:
    """``items`` in turn from the one after ``last`` (from the first when
    ``last`` is ``None`` or gone): who is served next in a round robin."""
    start = items.index(last) + 1 if last is not None and last in items else 0
    return items[start:] + items[:start]


class Torrent:
    """One torrent's swarm (see the module docstring)."""

    def __init__(
        self,
        session: Session,
        *,
        info_hash: bytes,
        info: Info | None,
        name: str,
        tiers: Sequence[Sequence[str]],
        save_path: Path | None,
        private: bool = False,
        seed_mode: bool = False,
        data: bytes | None = None,
        choker: ChokerPolicy | None = None,
        picker: PickerConfig | None = None,
    ) -> None:
        self.session = session
        self.runtime = session.runtime
        self.config: SessionConfig = session.config
        self.info_hash = info_hash
        self.info = info
        self.name = name
        self.save_path = save_path
        self.private = private or (info is not None and info.private)
        self.state = TorrentState.STOPPED
        self.error: str | None = None
        self.counters: Counter[str] = Counter()
        self.on_change: list[Callable[[Torrent], None]] = []
        self.store: PieceStore | None = None
        self.picker: PiecePicker | None = None
        self.choker: ChokerPolicy = choker or Choker(self.config.choker, self.runtime.rng)
        self._picker_config = picker or self.config.picker
        self._seed_mode = seed_mode
        self._data = data
        self.links: dict[PeerLink, None] = {}
        self.connecting: dict[PeerLink, None] = {}
        self._peer_ids: dict[bytes, PeerLink] = {}
        #: links by the address we dialled and the listen address they told
        self._by_address: dict[Address, PeerLink] = {}
        self._candidates: OrderedDict[Address, _Candidate] = OrderedDict()
        self._banned: OrderedDict[object, str] = OrderedDict()
        self._strikes: OrderedDict[object, int] = OrderedDict()
        self._self_addresses: set[Address] = set()
        #: where seeds listen (from their bitfields and PEX's seed flag): a
        #: complete torrent does not dial them (two seeds have nothing to
        #: trade; libtorrent skips them too), else every seed of a flash
        #: crowd redials every other one each time PEX names it
        self._seeds: OrderedDict[Address, None] = OrderedDict()
        self._upload_records: OrderedDict[bytes, Counter[str]] = OrderedDict()
        self.downloaded = 0
        self.uploaded = 0
        self.wasted = 0
        self._down_total = 0
        self._started_as_seed = False
        self._tick_timer: Timer | None = None
        self._next_rechoke = 0.0
        self._triggered: deque[float] = deque(maxlen=TRIGGERED_RECHOKES)
        self._rechoke_pending: Timer | None = None
        self._fetcher = MetadataFetcher(info_hash) if info is None else None
        self._tiers = [list(tier) for tier in tiers]
        self.announcer = self._new_announcer()
        #: Per-torrent limits (bytes/s; rate 0 is unlimited); the session's
        #: global buckets apply on top.
        self.up_bucket = TokenBucket(0.0)
        self.down_bucket = TokenBucket(0.0)
        self._throttle_timer: Timer | None = None
        self._throttle_at = 0.0
        #: The peer whose queued block went out last (:meth:`_serve_one`).
        self._served_last: PeerLink | None = None
        #: Seeding goals (None: seed until stopped) and totals of earlier runs.
        self.seed_ratio: float | None = None
        self.seed_time: float | None = None
        self.goal_reached: str | None = None
        self._uploaded_before = 0
        self._downloaded_before = 0
        self._seeded_before = 0.0
        self._seeding_since: float | None = None

    def _new_announcer(self) -> Announcer:
        return Announcer(
            self.runtime,
            self._tiers,
            self._announce_request,
            lambda peers: self.add_peers(peers, source="tracker"),
            timeout=self.config.announce_timeout,
            observe=self._count,
        )

    # ------------------------------------------------------------ facts

    @property
    def piece_count(self) -> int:
        return self.info.piece_count if self.info is not None else 0

    @property
    def metadata_size(self) -> int | None:
        return len(self.info.raw) if self.info is not None else None

    @property
    def complete(self) -> bool:
        return self.store is not None and self.store.complete

    @property
    def running(self) -> bool:
        return self.state in _RUNNING

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
        self.runtime.observer.count(f"bt.{name}", n)

    def _event(self, event_name: str, /, **fields: Any) -> None:
        self.runtime.observer.event(f"bt.{event_name}", info_hash=self.info_hash.hex(), **fields)

    def _set_state(self, state: TorrentState) -> None:
        if state is self.state:
            return
        now = self.runtime.now()
        if self._seeding_since is not None:
            self._seeded_before += now - self._seeding_since
            self._seeding_since = None
        if state is TorrentState.SEEDING:
            self._seeding_since = now
        self.state = state
        self._event("state", state=state.value)
        for fn in list(self.on_change):
            fn(self)

    def choker_snubbing(self, link: PeerLink, now: float) -> bool:
        choker = self.choker
        if isinstance(choker, Choker):
            return choker.is_snubbing(link, now)
        return False

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start (or resume) the torrent: check the files, announce, connect."""
        if self.running:
            return
        self.error = None
        self.goal_reached = None
        if self.announcer.closed:
            self.announcer = self._new_announcer()  # started again after a stop
        self._tick_timer = self.runtime.call_later(self.config.tick_interval, self._tick)
        if self.info is None:
            self._set_state(TorrentState.METADATA)
            self.announcer.start()
            self._connect_more(self.runtime.now())
        else:
            self._begin_checking()

    def stop(self, done: Callable[[], None] | None = None) -> None:
        """Stop: announce ``stopped``, close every connection, save the resume
        state.  ``done()`` once the tracker answered (or a few seconds)."""
        finish = done or (lambda: None)
        if not self.running:
            finish()
            return
        self._set_state(TorrentState.STOPPED)
        self._halt()
        self.announcer.stop(finish)

    def _halt(self) -> None:
        for timer in (self._tick_timer, self._rechoke_pending, self._throttle_timer):
            if timer is not None:
                timer.cancel()
        self._tick_timer = None
        self._rechoke_pending = None
        self._throttle_timer = None
        for link in [*self.links, *self.connecting]:
            link.close("torrent stopped")
        if self.store is not None:
            self.store.close()
            # a fresh store on the next start (resume state, re-check)
            self.store = None
            self.picker = None

    def _fail(self, error: str) -> None:
        self.error = error
        self._event("error", error=error)
        self._set_state(TorrentState.ERROR)
        self._halt()
        self.announcer.stop(lambda: None)

    def _make_storage(self, info: Info) -> Storage:
        layout = FileLayout(info)
        if self.config.storage == "memory":
            return MemoryStorage(layout, self._data)
        if self.save_path is None:
            raise StorageError("no download folder for this torrent")
        return FileStorage(layout, self.save_path)

    def _begin_checking(self) -> None:
        assert self.info is not None
        self._set_state(TorrentState.CHECKING)
        try:
            storage = self._make_storage(self.info)
        except StorageError as exc:
            self._fail(str(exc))
            return
        self.store = PieceStore(
            self.runtime,
            self.info,
            storage,
            resume_path=self.session.resume_path(self.info_hash),
            max_buffer_bytes=self.config.max_buffer_bytes,
            read_cache_bytes=self.config.read_cache_bytes,
        )
        if self._seed_mode:
            self.store.mark_all_verified()
            self._checked(None)
        else:
            self.store.check(self._checked)

    def _checked(self, exc: Exception | None) -> None:
        store = self.store
        if store is None or self.state is not TorrentState.CHECKING:
            return
        if exc is not None:
            self._fail(f"checking the files failed: {exc}")
            return
        info = self.info
        assert info is not None
        self.picker = PiecePicker(
            info.piece_count,
            info.piece_size,
            self.runtime.rng,
            self._picker_config,
            have=store.have,
            can_start=store.buffer_room,
        )
        self._event("checked", have=store.have.count, pieces=info.piece_count)
        self._started_as_seed = store.complete
        self._set_state(TorrentState.SEEDING if store.complete else TorrentState.DOWNLOADING)
        self.announcer.start()
        for link in list(self.links):
            self._link_ready(link)
        self._rechoke_soon()
        self._connect_more(self.runtime.now())

    def _link_ready(self, link: PeerLink) -> None:
        """The picker exists: count the peer's pieces, tell it ours, decide
        interest (after a magnet's metadata, or on the first check)."""
        picker = self.picker
        store = self.store
        assert picker is not None and store is not None
        if link.seed:
            picker.seed_joined()
        elif link.bits is not None:
            picker.peer_has_bits(link.bits)
        if link.closing:
            return
        m = link.machine
        # pieces found on disk after we told the peer have-none / nothing
        if not link.announced_pieces and store.have.count:
            for index in store.have:
                m.have(index)
        link.announced_pieces = True
        self._recount(link)
        self._update_interest(link)
        if link.seed and self.complete:
            link.close("both seeds")
            return
        self._fill(link)
        link.flush()

    # ------------------------------------------------------------ peers

    def add_peers(self, addresses: Iterable[Address], source: str = "direct") -> int:
        """Remember addresses to connect to; returns how many were new."""
        added = 0
        listen = self.session.listen_address
        for address in addresses:
            host, port = address
            if not 0 < port <= 0xFFFF:
                continue
            address = (host, port)
            if (
                address in self._candidates
                or (address in self._seeds and self.complete)
                or address in self._self_addresses
                or address == listen
                or address in self._banned
                or self._connected_to(address)
            ):
                continue
            self._candidates[address] = _Candidate(source)
            added += 1
            while len(self._candidates) > MAX_CANDIDATES:
                self._candidates.popitem(last=False)
                self._count("candidates_dropped")
        if added:
            self._count(f"peers_from_{source}", added)
            if self.running:
                self._connect_more(self.runtime.now())
        return added

    def _connected_to(self, address: Address) -> bool:
        link = self._by_address.get(address)
        return link is not None and not link.closed

    def _index_address(self, link: PeerLink, address: Address | None) -> None:
        if address is not None and address not in self._by_address:
            self._by_address[address] = link

    def _connect_more(self, now: float) -> None:
        if not self.running:
            return
        cfg = self.config
        room = (min(cfg.max_initiate, cfg.max_peers_per_torrent)
                - len(self.links) - len(self.connecting))
        if room <= 0 or not self._candidates:
            return
        # the first ``room`` addresses not waiting out a backoff, in order
        due: list[Address] = []
        stale: list[Address] = []
        for address, cand in self._candidates.items():
            if len(due) >= room:
                break
            if cand.next_try > now:
                continue
            (stale if self._connected_to(address) else due).append(address)
        for address in stale:
            del self._candidates[address]
        for address in due:
            if not self.session.can_dial():
                break
            chosen = self._candidates.get(address)
            if chosen is None:  # a failure dialling the one before took it
                continue
            del self._candidates[address]
            link = PeerLink(self.session, address, outgoing=True, torrent=self,
                            source=chosen.source)
            link.candidate = chosen
            self.connecting[link] = None
            self._index_address(link, address)
            self.session._dial(link)

    def _attach(self, link: PeerLink) -> bool:
        """The peer's handshake arrived on ``link`` (inside the Handshake
        event handler, so our availability goes first).  False if refused."""
        pid = link.peer_id
        assert pid is not None
        self.connecting.pop(link, None)
        if pid == self.session.peer_id:
            if link.address is not None:
                self._self_addresses.add(link.address)
            self._count("self_connections")
            link.close("connected to ourselves")
            return False
        if pid in self._banned or (link.address is not None and link.address in self._banned):
            self._count("banned_refused")
            link.abort("banned")
            return False
        if not self.running:
            link.abort("torrent stopped")
            return False
        existing = self._peer_ids.get(pid)
        if existing is not None and not existing.closing:
            self._count("duplicate_connections")
            # keep the connection dialled by the lower peer id (both ends agree)
            ours = self.session.peer_id
            keep_outgoing = ours < pid
            if existing.outgoing == link.outgoing or existing.outgoing == keep_outgoing:
                link.close("duplicate connection")
                return False
            existing.close("duplicate connection")
        if len(self.links) >= self.config.max_peers_per_torrent:
            self._count("refused_full")
            link.close("too many peers")
            return False
        link.established = True
        self.links[link] = None
        self._index_address(link, link.address)
        self._peer_ids[pid] = link
        if self.info is not None:
            link.bits = PieceBits(self.info.piece_count)
        m = link.machine
        store = self.store
        if store is not None and self.picker is not None and store.have.count:
            if m.fast and store.complete:
                m.send_have_all()
            else:
                m.send_bitfield(store.have.to_bytes())
            link.announced_pieces = True
        if m.extension_protocol:
            fields: dict[str, Any] = {}
            if self.info is not None:
                fields["metadata_size"] = len(self.info.raw)
            if link.address is not None and _is_ip(link.address[0]):
                fields["yourip"] = link.address[0]
            m.send_extended_handshake(**fields)
        self._count("connections")
        self._event("peer_connected", address=link.address, direction="out"
                    if link.outgoing else "in")
        if self.picker is not None:
            link.announced_pieces = True
        return True

    def _detach(self, link: PeerLink, exc: Exception | None) -> None:
        """``link`` closed (whatever the reason)."""
        was_connecting = self.connecting.pop(link, None) is not None or not link.established
        for address in (link.address, link.listen_address):
            if address is not None and self._by_address.get(address) is link:
                del self._by_address[address]
        if self._served_last is link:
            self._served_last = None
        if link in self.links:
            del self.links[link]
            pid = link.peer_id
            if pid is not None and self._peer_ids.get(pid) is link:
                del self._peer_ids[pid]
            picker = self.picker
            if picker is not None:
                picker.abort_peer(link)
                if link.seed:
                    picker.seed_left()
                elif link.bits is not None:
                    picker.peer_lost_bits(link.bits)
            self.choker.peer_left(link)
            if self._fetcher is not None:
                self._fetcher.remove_source(link)
            self._count("disconnections")
            self._event("peer_closed", address=link.address,
                        reason=link.close_reason or (str(exc) if exc else "closed"))
            if link.unchoke_kind is not None:
                self._rechoke_soon()
            # the blocks it had are for others now
            for other in self.links:
                if self._fill(other):
                    other.flush()
        elif was_connecting and link.outgoing and link.address is not None:
            cand = link.candidate
            self._count("connect_failures")
            if cand is not None and self.running:
                cand.attempts += 1
                if cand.attempts < MAX_CONNECT_ATTEMPTS and len(self._candidates) < MAX_CANDIDATES:
                    cand.next_try = self.runtime.now() + RECONNECT_DELAY * 2 ** (cand.attempts - 1)
                    self._candidates[link.address] = cand
        if self.running and not was_connecting:
            # a slot freed: fill it now; after a failed dial the next one
            # waits for the tick (a peer refused by a full swarm would
            # otherwise dial the whole candidate table back to back)
            self._connect_more(self.runtime.now())

    def _ban(self, link: PeerLink, reason: str) -> None:
        for key in (link.peer_id, link.address, link.listen_address):
            if key is not None:
                self._banned[key] = reason
        while len(self._banned) > MAX_BANNED:
            self._banned.popitem(last=False)
        self._count("banned_peers")
        self._event("peer_banned", address=link.address, reason=reason)
        link.abort(f"banned: {reason}")

    # ------------------------------------------------------------ events

    def _peer_event(self, link: PeerLink, ev: Any) -> None:
        t = type(ev)
        if t is Piece:
            self._on_piece(link, ev)
        elif t is Request:
            self._on_request(link, ev)
        elif t is Have:
            self._on_have(link, ev.index)
        elif t is Bitfield:
            self._on_bitfield(link, ev.bitfield)
        elif t is HaveAll:
            self._on_bitfield(link, None)
        elif t is Unchoke:
            link.waiting_since = None
            self._fill(link)
        elif t is RequestsDropped:
            picker = self.picker
            for r in ev.requests:
                if picker is not None:
                    picker.abort(link, (r.index, r.begin, r.length))
            link.waiting_since = None
        elif t is RejectRequest:
            if self.picker is not None:
                self.picker.abort(link, (ev.index, ev.begin, ev.length))
            self._count("rejected_requests")
            self._fill(link)
        elif t is Interested:
            if link.unchoke_kind is None and self._slot_free():
                self._rechoke_soon()
        elif t is NotInterested:
            if link.unchoke_kind is not None:
                self._rechoke_soon()
        elif t is ExtendedHandshake:
            self._on_extended_handshake(link, ev)
        elif t is MetadataRequest:
            self._on_metadata_request(link, ev.piece)
        elif t is MetadataData:
            self._on_metadata_data(link, ev)
        elif t is MetadataReject:
            if self._fetcher is not None:
                self._fetcher.rejected(link, ev.piece)
                self._request_metadata()
        elif t is PeerExchange:
            self._on_pex(link, ev)
        elif t is ConnectionClosed:
            link.close("peer closed")
        elif t is Port:
            self.session._peer_dht_port(link, ev.listen_port)

    # -- availability and interest

    def _recount(self, link: PeerLink) -> None:
        """How many pieces the peer has that we lack."""
        store = self.store
        if store is None or self.info is None:
            link.interesting = 0
            return
        if link.seed:
            link.interesting = self.info.piece_count - store.have.count
            return
        if link.bits is None:
            link.interesting = 0
            return
        theirs = int.from_bytes(link.bits.data, "big")
        ours = int.from_bytes(store.have.data, "big")
        link.interesting = (theirs & ~ours).bit_count()

    def _update_interest(self, link: PeerLink) -> None:
        want = self.state is TorrentState.DOWNLOADING and link.interesting > 0
        m = link.machine
        if want and not m.am_interested:
            m.interested()
        elif not want and m.am_interested:
            m.not_interested()

    def _on_have(self, link: PeerLink, index: int) -> None:
        if self.info is None:
            if index >= MAX_PENDING_HAVE_INDEX:
                link.abort("have beyond any torrent")
                return
            pending = link.pending_haves
            if pending is None:
                pending = link.pending_haves = bytearray()
            need = (index >> 3) + 1
            if len(pending) < need:
                pending.extend(bytes(need - len(pending)))
            pending[index >> 3] |= 0x80 >> (index & 7)
            return
        if link.seed or link.bits is None:
            return
        if not link.bits.add(index):
            self._count("redundant_haves")
            return
        if self.picker is not None:
            self.picker.peer_has(index)
        store = self.store
        if store is not None and index not in store.have:
            link.interesting += 1
            if link.interesting == 1:
                self._update_interest(link)
        if link.bits.complete:
            self._became_seed(link)

    def _became_seed(self, link: PeerLink) -> None:
        if self.picker is not None and link.bits is not None and not link.seed:
            self.picker.peer_lost_bits(link.bits)
            self.picker.seed_joined()
        link.seed = True
        self._seed_at(link.listen_address)
        if self.complete:
            link.close("both seeds")

    def _on_bitfield(self, link: PeerLink, bitfield: bytes | memoryview | None) -> None:
        """A bitfield (None: BEP 6 have all)."""
        info = self.info
        if info is None:
            if bitfield is None:
                link.seed = True
            else:
                link.pending_bitfield = bytes(bitfield)
            return
        n = info.piece_count
        bits = PieceBits.full(n) if bitfield is None else PieceBits(n, bitfield)
        if link.bits is not None and link.bits.count and self.picker is not None:
            # haves before the bitfield are refused by the machine; nothing to undo
            self.picker.peer_lost_bits(link.bits)
        link.bits = bits
        if bits.complete:
            link.seed = True
            self._seed_at(link.listen_address)
            if self.picker is not None:
                self.picker.seed_joined()
        elif self.picker is not None:
            self.picker.peer_has_bits(bits)
        self._recount(link)
        self._update_interest(link)
        if link.seed and self.complete:
            link.close("both seeds")

    def _seed_at(self, address: Address | None) -> None:
        """A seed listens at ``address`` (bounded like the candidates)."""
        if address is None:
            return
        self._seeds[address] = None
        while len(self._seeds) > MAX_CANDIDATES:
            self._seeds.popitem(last=False)

    # -- downloading

    def _fill(self, link: PeerLink) -> bool:
        """Keep the request pipeline to ``link`` full: top it up to the
        queue depth once a quarter of it has drained.  True if requests
        were queued (the caller flushes)."""
        link.blocks_since_fill = 0
        picker = self.picker
        if picker is None or self.state is not TorrentState.DOWNLOADING or link.closing:
            return False
        m = link.machine
        if m.peer_choking or not m.am_interested:
            return False
        now = self.runtime.now()
        wait = self._down_delay(now)
        if wait > 0:
            self._wake_at(now + wait)
            return False
        depth = link.queue_depth(now, self.config.request_queue_time)
        slots = m.request_slots
        out = min(m.config.max_requests, m.peer_reqq) - slots
        link.fill_every = max(1, depth // 4)
        want = min(depth - out, slots)
        if want <= 0 or (out and want < link.fill_every):
            return False
        blocks = picker.pick(link, None if link.seed else link.bits, want)
        if not blocks:
            return False
        if not out:
            link.waiting_since = now
        for block in blocks:
            try:
                m.request(*block)
            except LocalProtocolError:
                picker.abort(link, block)
        self._count("requests_sent", len(blocks))
        return True

    def _on_piece(self, link: PeerLink, ev: Piece) -> None:
        n = len(ev.block)
        now = self.runtime.now()
        link.down.add(n, now)
        self.downloaded += n
        self.down_bucket.consume(n, now)
        self.session.down_bucket.consume(n, now)
        self._count("download_bytes", n)
        picker = self.picker
        store = self.store
        block = (ev.index, ev.begin, n)
        result = picker.received(link, block) if picker is not None else None
        since = link.waiting_since
        if since is not None:
            link.block_gaps.add(now - since)
        link.timed_out = False
        link.waiting_since = now
        link.blocks_since_fill += 1
        if result is None or store is None:
            self.wasted += n
            self._count("wasted_bytes", n)
            self._fill(link)
            return
        self._count("blocks_received")
        for other in result.others:
            if isinstance(other, PeerLink) and not other.closing:
                other.machine.cancel(*block)
                other.flush()
                self._count("cancels_sent")
        store.put_block(ev.index, ev.begin, ev.block)
        if result.piece_complete:
            store.submit(ev.index, self._piece_done)
        if link.blocks_since_fill >= link.fill_every:
            self._fill(link)

    def _piece_done(self, index: int, ok: bool, error: StorageError | None) -> None:
        store = self.store
        picker = self.picker
        if store is None or picker is None or not self.running:
            return
        if error is not None:
            self._fail(f"writing piece {index} failed: {error}")
            return
        if ok:
            picker.piece_passed(index)
            self._count("pieces_verified")
            for link in self.links:
                if link.closing:
                    continue
                if link.seed or (link.bits is not None and index in link.bits):
                    # it has the piece: a have would tell it nothing it can
                    # use (redundant haves are suppressed, as libtorrent can)
                    link.interesting -= 1
                    if link.interesting <= 0:
                        self._update_interest(link)
                        link.flush()
                    self._count("haves_suppressed")
                    continue
                link.machine.have(index)
                link.flush()
            if store.complete:
                self._completed()
            return
        senders = picker.piece_failed(index)
        self._count("hash_failures")
        self._event("piece_failed", piece=index)
        peers = list(dict.fromkeys(senders.values()))
        weight = 2 if len(peers) == 1 else 1
        for peer in peers:
            if not isinstance(peer, PeerLink):
                continue
            peer.hash_failures += 1
            key: object = peer.peer_id or peer.address
            strikes = self._strikes.pop(key, 0) + weight
            self._strikes[key] = strikes
            while len(self._strikes) > MAX_BANNED:
                self._strikes.popitem(last=False)
            if strikes >= self.config.ban_strikes and not peer.closing:
                self._ban(peer, f"{peer.hash_failures} pieces failed their hash")
        for link in self.links:
            self._fill(link)
            link.flush()

    def _completed(self) -> None:
        for address in [a for a in self._candidates if a in self._seeds]:
            del self._candidates[address]
        self._set_state(TorrentState.SEEDING)
        self._event("completed", downloaded=self.downloaded, uploaded=self.uploaded)
        self._count("completed")
        if not self._started_as_seed:
            self.announcer.completed()
        for link in list(self.links):
            if link.closing:
                continue
            self._update_interest(link)
            if link.seed:
                link.close("both seeds")
            else:
                link.flush()
        self._rechoke_soon()

    # -- uploading

    def _on_request(self, link: PeerLink, ev: Request) -> None:
        store = self.store
        info = self.info
        m = link.machine
        if info is not None and (
            ev.index >= info.piece_count
            or ev.begin < 0
            or ev.begin + ev.length > info.piece_size(ev.index)
        ):
            self._count("bad_requests")
            link.abort(f"request {ev.index}/{ev.begin}+{ev.length} outside the piece (BEP 3)")
            return
        if store is None or ev.index not in store.have:
            self._count("requests_unavailable")
            if m.fast:
                m.reject_request(ev.index, ev.begin, ev.length)
            return
        cached = store.read_cached(ev.index, ev.begin, ev.length)
        if cached is not None and not link.serve_queue and link.writable and not (
            self._up_throttled()
        ):
            # the driver flushes once after this batch of events
            self._send_block(link, ev, cached)
            return
        link.reads_in_flight += 1
        store.read_block(
            ev.index,
            ev.begin,
            ev.length,
            lambda data, exc: self._block_read(link, ev, data, exc),
        )

    def _block_read(
        self, link: PeerLink, req: Request, data: bytes | None, exc: BaseException | None
    ) -> None:
        link.reads_in_flight -= 1
        if link.closing:
            return
        if data is None:
            self._count("read_failures")
            self._event("read_failed", error=str(exc))
            return
        if link.serve_queue or not link.writable or self._up_throttled():
            link.serve_queue.append((req, data))
            return
        self._send_block(link, req, data)
        link.flush_soon()

    def _send_block(self, link: PeerLink, req: Request, data: bytes) -> None:
        if not link.machine.send_piece(req.index, req.begin, data):
            self._count("requests_withdrawn")
            return
        n = len(data)
        now = self.runtime.now()
        link.up.add(n, now)
        self.uploaded += n
        self.up_bucket.consume(n, now)
        self.session.up_bucket.consume(n, now)
        self._count("upload_bytes", n)
        kind = link.unchoke_kind
        label = kind.value if kind is not None else "allowed_fast"
        if kind is not None:
            link.uploaded_by_kind[kind] += n
        self._count(f"uploaded_{label}", n)
        pid = link.peer_id
        if pid is not None:
            record = self._upload_records.get(pid)
            if record is None:
                record = self._upload_records[pid] = Counter()
                if len(self._upload_records) > MAX_UPLOAD_RECORDS:
                    self._upload_records.popitem(last=False)
            record[label] += n
        self._count("blocks_sent")

    def _serve_queued(self, link: PeerLink) -> None:
        queue = link.serve_queue
        while queue and link.writable and not link.closing:
            if self._up_throttled():
                return
            req, data = queue.popleft()
            self._send_block(link, req, data)
            link.flush()

    # -- rate limits

    def set_rate_limits(self, up: float | None = None, down: float | None = None) -> None:
        """This torrent's upload and download limits in bytes/s (0:
        unlimited; None: unchanged).  The session's global limits still apply."""
        now = self.runtime.now()
        if up is not None:
            self.up_bucket.set_rate(max(0.0, float(up)), now)
        if down is not None:
            self.down_bucket.set_rate(max(0.0, float(down)), now)
        self._throttle_wake()

    def _down_delay(self, now: float) -> float:
        return max(self.down_bucket.delay(1, now), self.session.down_bucket.delay(1, now))

    def _up_throttled(self) -> bool:
        """Is an upload bucket in debt?  If so, a wake-up is set for when
        it is paid and blocks wait in their peers' ``serve_queue``."""
        now = self.runtime.now()
        wait = max(self.up_bucket.delay(1, now), self.session.up_bucket.delay(1, now))
        if wait <= 0:
            return False
        self._count("upload_throttled")
        self._wake_at(now + wait)
        return True

    def _wake_at(self, when: float) -> None:
        """One timer per torrent: at ``when`` serve the queued blocks and
        top up the request pipelines again."""
        timer = self._throttle_timer
        if timer is not None and self._throttle_at <= when:
            return
        if timer is not None:
            timer.cancel()
        self._throttle_at = when
        self._throttle_timer = self.runtime.call_at(when, self._throttle_wake)

    def _throttle_wake(self) -> None:
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
        self._throttle_timer = None
        if not self.running:
            return
        self.session._serve_uploads()
        for link in list(self.links):
            if link.closing:
                continue
            self._fill(link)
            link.flush()

    def _serve_one(self) -> bool:
        """Send one queued block, of the first peer after the one served last
        that has one waiting; False when none has or an upload bucket is in
        debt.  The session calls it torrent by torrent in turn
        (:meth:`Session._serve_uploads`), so a limited upload goes round
        the peers waiting for it, as libtorrent's bandwidth manager hands its
        quota round, rather than to whichever peer or torrent came first."""
        if not self.running or self._up_throttled():
            return False
        # (a peer that closed while its block went out may still be ``last``)
        for link in after(list(self.links), self._served_last):
            if link.serve_queue and link.writable and not link.closing:
                req, data = link.serve_queue.popleft()
                self._send_block(link, req, data)
                link.flush()
                self._served_last = link
                return True
        return False

    # -- seeding goals

    def set_goals(self, seed_ratio: float | None = None, seed_time: float | None = None) -> None:
        """Seed until the share ratio reaches ``seed_ratio`` or for
        ``seed_time`` seconds (None or 0: no such goal); checked every tick."""
        self.seed_ratio = seed_ratio if seed_ratio else None
        self.seed_time = seed_time if seed_time else None
        self._check_goals()

    def carry_over(self, uploaded: int, downloaded: int, seeding_seconds: float) -> None:
        """Totals of earlier runs (the node keeps them), so that goals count
        from the first run on."""
        self._uploaded_before = max(0, uploaded)
        self._downloaded_before = max(0, downloaded)
        self._seeded_before = max(0.0, seeding_seconds)

    @property
    def total_uploaded(self) -> int:
        return self._uploaded_before + self.uploaded

    @property
    def total_downloaded(self) -> int:
        return self._downloaded_before + self.downloaded

    def seeding_seconds(self) -> float:
        extra = self.runtime.now() - self._seeding_since if self._seeding_since is not None else 0.0
        return self._seeded_before + extra

    def share_ratio(self) -> float:
        """Bytes uploaded over every run per byte of the torrent."""
        size = self.info.total_size if self.info is not None else 0
        return self.total_uploaded / size if size else 0.0

    def _check_goals(self) -> None:
        if self.state is not TorrentState.SEEDING:
            return
        reached = None
        if self.seed_ratio is not None and self.share_ratio() >= self.seed_ratio:
            reached = "ratio"
        elif self.seed_time is not None and self.seeding_seconds() >= self.seed_time:
            reached = "time"
        if reached is None:
            return
        self._event("goal_reached", goal=reached, ratio=round(self.share_ratio(), 3),
                    seeding_seconds=round(self.seeding_seconds(), 1))
        self._count(f"goal_{reached}")
        self.stop()
        self.goal_reached = reached

    # -- choking

    def _rechoke_soon(self) -> None:
        """Rechoke now-ish (a slot freed, or an interested peer may take a
        free one), at most once per :data:`MIN_RECHOKE_GAP`."""
        if self._rechoke_pending is None and self.running:
            recent = self._triggered
            now = self.runtime.now()
            when = now
            if len(recent) == recent.maxlen and recent[0] > now - MIN_RECHOKE_GAP:
                when = recent[0] + MIN_RECHOKE_GAP
            recent.append(when)
            self._rechoke_pending = self.runtime.call_at(when, self._rechoke_now)

    def _slot_free(self) -> bool:
        slots = self.config.choker.regular_slots + self.config.choker.optimistic_slots
        return sum(1 for link in self.links if link.unchoke_kind is not None) < slots

    def _rechoke_now(self) -> None:
        self._rechoke_pending = None
        self._rechoke()

    def _rechoke(self) -> None:
        if self.store is None or self.state not in (TorrentState.DOWNLOADING,
                                                    TorrentState.SEEDING):
            return
        now = self.runtime.now()
        self._next_rechoke = now + self.config.choker.rechoke_interval
        peers = [link for link in self.links if not link.closing]
        decisions = self.choker.rechoke(peers, now, seeding=self.state is TorrentState.SEEDING)
        for link in peers:
            kind = decisions.get(link)
            m = link.machine
            if kind is None:
                link.unchoke_kind = None
                if not m.am_choking:
                    m.choke()
                    link.serve_queue.clear()
                    self._count("chokes")
                    link.flush()
                continue
            if link.unchoke_kind is not kind:
                self._count(f"unchokes_{kind.value}")
            link.unchoke_kind = kind
            if m.am_choking:
                m.unchoke()
                link.flush()

    # -- extension protocol: BEP 10, 9, 11

    def _on_extended_handshake(self, link: PeerLink, ev: ExtendedHandshake) -> None:
        if ev.p is not None:
            link.listen_port = ev.p
            self._index_address(link, link.listen_address)
        fetcher = self._fetcher
        if (
            fetcher is not None
            and self.info is None
            and ev.metadata_size is not None
            and UT_METADATA in link.machine.remote_extensions
        ):
            fetcher.add_source(link, ev.metadata_size)
            self._request_metadata()

    def _request_metadata(self) -> None:
        fetcher = self._fetcher
        if fetcher is None or self.info is not None:
            return
        now = self.runtime.now()
        for link in self.links:
            if link.closing:
                continue
            for piece in fetcher.wanted(link, now):
                link.machine.send_metadata(MetadataRequest(piece))
                self._count("metadata_requests_sent")
            link.flush()

    def _on_metadata_request(self, link: PeerLink, piece: int) -> None:
        m = link.machine
        if UT_METADATA not in m.remote_extensions:
            self._count("metadata_requests_unanswerable")
            return
        link.metadata_requests += 1
        info = self.info
        if info is None or link.metadata_requests > MAX_METADATA_REQUESTS:
            if link.metadata_requests > MAX_METADATA_REQUESTS:
                self._count("metadata_request_flood")
            m.send_metadata(MetadataReject(piece))
            return
        total = len(info.raw)
        if piece >= metadata_piece_count(total):
            m.send_metadata(MetadataReject(piece))
            return
        start = piece * METADATA_PIECE_SIZE
        end = start + metadata_piece_length(piece, total)
        m.send_metadata(MetadataData(piece, total, info.raw[start:end]))
        self._count("metadata_pieces_sent")

    def _on_metadata_data(self, link: PeerLink, ev: MetadataData) -> None:
        fetcher = self._fetcher
        if fetcher is None or self.info is not None:
            self._count("metadata_unexpected")
            return
        raw = fetcher.received(link, ev.piece, ev.total_size, ev.data)
        if raw is None:
            if fetcher.failed_senders:
                senders = [p for p in fetcher.failed_senders if isinstance(p, PeerLink)]
                fetcher.failed_senders = set()
                self._count("metadata_hash_failures")
                if len(senders) == 1:
                    self._ban(senders[0], "sent metadata that does not match the info-hash")
            self._request_metadata()
            return
        try:
            info = Info.from_bytes(raw)
        except RemoteProtocolError as exc:
            self._fail(f"the torrent's metadata is unusable: {exc}")
            return
        self._metadata_ready(info)

    def _metadata_ready(self, info: Info) -> None:
        self.info = info
        self.name = info.name
        self.private = self.private or info.private
        self._fetcher = None
        self._count("metadata_received")
        self._event("metadata", name=info.name, pieces=info.piece_count, size=info.total_size)
        self.session._metadata_fetched(self, info)
        n = info.piece_count
        for link in list(self.links):
            if link.closing:
                continue
            m = link.machine
            try:
                m.set_piece_count(n)
                if link.seed:
                    bits = PieceBits.full(n)
                else:
                    raw = link.pending_bitfield
                    if raw is not None:
                        check_bitfield(raw, n)
                        bits = PieceBits(n, raw)
                    else:
                        bits = PieceBits(n)
                    pending = link.pending_haves
                    if pending is not None:
                        for index in PieceBits(len(pending) * 8, pending):
                            if index >= n:
                                raise RemoteProtocolError(f"have {index} of {n} pieces")
                            bits.add(index)
                    if bits.complete:
                        link.seed = True
            except (RemoteProtocolError, LocalProtocolError) as exc:
                self._count("bad_availability")
                link.abort(f"availability does not fit the metadata: {exc}")
                continue
            link.bits = bits
            link.pending_bitfield = None
            link.pending_haves = None
            if m.extension_protocol:
                m.send_extended_handshake(metadata_size=len(info.raw))
                link.flush()
        self._begin_checking()

    def _on_pex(self, link: PeerLink, ev: PeerExchange) -> None:
        if self.private or not self.config.pex:
            self._count("pex_ignored")
            return
        now = self.runtime.now()
        last = link.pex_last_received
        link.pex_last_received = now
        if last is not None and now - last < PEX_MIN_INTERVAL:
            self._count("pex_flood")
            return
        self._count("pex_received")
        added = []
        for p in ev.added[:PEX_MAX_ADDED]:
            if p.flags & PexFlags.SEED:
                self._seed_at(p.address)
            added.append(p.address)
        self.add_peers(added, source="pex")

    def _send_pex(self, link: PeerLink, now: float) -> None:
        current: dict[Address, PexFlags] = {}
        for other in self.links:
            if other is link or other.closing:
                continue
            address = other.listen_address
            if address is None:
                continue
            flags = PexFlags(0)
            if other.seed:
                flags |= PexFlags.SEED
            if other.outgoing:
                flags |= PexFlags.REACHABLE
            current[address] = flags
        added = [a for a in current if a not in link.pex_sent][:PEX_MAX_ADDED]
        dropped = sorted(a for a in link.pex_sent if a not in current)[:PEX_MAX_DROPPED]
        link.pex_last_sent = now
        if not added and not dropped:
            return
        try:
            link.machine.send_pex(
                PeerExchange(tuple(PexPeer(a, current[a]) for a in added), tuple(dropped))
            )
        except LocalProtocolError:
            return
        link.pex_sent.update(added)
        link.pex_sent.difference_update(dropped)
        self._count("pex_sent")
        link.flush()

    # ------------------------------------------------------------ housekeeping

    def _tick(self) -> None:
        self._tick_timer = self.runtime.call_later(self.config.tick_interval, self._tick)
        now = self.runtime.now()
        self._connect_more(now)
        cfg = self.config
        picker = self.picker
        for link in list(self.links):
            if link.closing:
                continue
            m = link.machine
            # a peer silent for longer than its pace explains is snubbed;
            # part of a block arriving is not silence (a slow downlink
            # shared by many peers' blocks finishes each one late)
            since = link.waiting_since
            last = link.last_block_at
            if since is not None and last is not None and last > since:
                since = last
            if (
                picker is not None
                and since is not None
                and link.requests_out
                and now - since >= link.request_timeout(cfg.request_timeout)
            ):
                self._request_timed_out(link, picker, now)
            # floods of refused requests
            if now - link.refused_checked_at >= FLOOD_WINDOW:
                refused = sum(m.counters[k] for k in _REFUSED)
                if refused - link.refused_seen > MAX_REFUSED_PER_WINDOW:
                    self._count("flood_disconnects")
                    link.abort("request flood")
                    continue
                link.refused_seen = refused
                link.refused_checked_at = now
            # PEX
            if (
                cfg.pex
                and not self.private
                and UT_PEX in m.remote_extensions
                and (link.pex_last_sent is None or now - link.pex_last_sent >= cfg.pex_interval)
            ):
                self._send_pex(link, now)
        if self._fetcher is not None:
            self._fetcher.expire(now)
            self._request_metadata()
        if now >= self._next_rechoke:
            self._rechoke()
        if picker is not None and self.state is TorrentState.DOWNLOADING:
            for link in self.links:
                if self._fill(link):
                    link.flush()
        self._check_goals()

    def _request_timed_out(self, link: PeerLink, picker: PiecePicker, now: float) -> None:
        """No block from ``link`` for its request timeout (libtorrent's
        ``snub_peer``): it gets one request at a time from now on, and its
        newest request (the one it would send last) goes to others; the rest
        may still come.  Silent for a second timeout, all its requests go."""
        m = link.machine
        if link.timed_out:
            blocks = picker.abort_peer(link)
        else:
            link.timed_out = True
            mine = set(picker.requested_from(link))
            blocks = []
            for r in reversed(m.requests_outstanding):
                block = (r.index, r.begin, r.length)
                if block in mine:
                    picker.abort(link, block)
                    blocks.append(block)
                    break
        for block in blocks:
            m.cancel(*block)
        link.waiting_since = now
        self._count("request_timeouts", len(blocks))
        link.flush()

    def _announce_request(self, event: AnnounceEvent) -> AnnounceRequest:
        store = self.store
        if self.info is None:
            left = MAGNET_LEFT
        elif store is None:
            left = self.info.total_size
        else:
            left = sum(
                self.info.piece_size(i) for i in store.have.missing()
            ) if not store.complete else 0
        return AnnounceRequest(
            info_hash=self.info_hash,
            peer_id=self.session.peer_id,
            port=self.session.announce_port,
            uploaded=self.uploaded,
            downloaded=self.downloaded,
            left=left,
            event=event,
            compact=True,
            numwant=0 if event is AnnounceEvent.STOPPED else self.config.numwant,
            key=self.session.announce_key,
        )

    # ------------------------------------------------------------ status

    def uploaded_to(self, peer_id: bytes) -> dict[str, int]:
        """Bytes we sent the peer with this id over every connection, by why
        it was unchoked: ``regular`` (it reciprocates), ``optimistic``,
        ``seeding`` (we were a seed); the last :data:`MAX_UPLOAD_RECORDS` peers."""
        return dict(self._upload_records.get(peer_id, {}))

    def piece_map(self) -> str:
        """One character per piece: ``#`` verified, ``>`` downloading,
        ``.`` missing but some connected peer has it, ``_`` nobody has it
        (empty while a magnet's metadata is unknown)."""
        if self.info is None:
            return ""
        store = self.store
        picker = self.picker
        have = store.have if store is not None else PieceBits(self.info.piece_count)
        busy = set(picker.downloading) if picker is not None else set()
        out = []
        for i in range(self.info.piece_count):
            if i in have:
                out.append("#")
            elif i in busy:
                out.append(">")
            elif picker is not None and picker.availability(i):
                out.append(".")
            else:
                out.append("_")
        return "".join(out)

    def status(self) -> TorrentStatus:
        now = self.runtime.now()
        info = self.info
        store = self.store
        peers = tuple(
            link.status(now, self.config.request_queue_time)
            for link in self.links
            if not link.closing
        )
        have = store.have.count if store is not None else 0
        if info is not None:
            left = None if store is None else (
                0 if store.complete else sum(info.piece_size(i) for i in store.have.missing())
            )
            progress = have / info.piece_count
        else:
            left = None
            progress = 0.0
        return TorrentStatus(
            info_hash=self.info_hash.hex(),
            name=self.name,
            state=self.state.value,
            error=self.error,
            save_path=str(self.save_path) if self.save_path is not None else "",
            total_size=info.total_size if info is not None else None,
            piece_length=info.piece_length if info is not None else None,
            piece_count=info.piece_count if info is not None else None,
            pieces_have=have,
            progress=progress,
            left=left,
            downloaded=self.downloaded,
            uploaded=self.uploaded,
            wasted=self.wasted,
            down_rate=sum(p.down_rate for p in peers),
            up_rate=sum(p.up_rate for p in peers),
            peers=peers,
            connecting=len(self.connecting),
            candidates=len(self._candidates),
            seeds=sum(1 for p in peers if p.seed),
            leechers=sum(1 for p in peers if not p.seed),
            piece_map=self.piece_map(),
            trackers=tuple(self.announcer.trackers),
            counters=dict(self.counters),
            seed_ratio=self.seed_ratio,
            seed_time=self.seed_time,
            goal_reached=self.goal_reached,
            share_ratio=self.share_ratio(),
            seeding_seconds=self.seeding_seconds(),
            total_uploaded=self.total_uploaded,
            total_downloaded=self.total_downloaded,
            up_limit=self.up_bucket.rate,
            down_limit=self.down_bucket.rate,
        )

    def __repr__(self) -> str:
        return f"<Torrent {self.name!r} {self.info_hash.hex()[:8]} {self.state.value}>"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

