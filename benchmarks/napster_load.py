#!/usr/bin/env python3
"""Napster load generator: many real TCP clients in one process (issue 3, Benchmark).

One process holds the connections of users ``--first-user`` ..
``--first-user + --users - 1``, spread round robin over ``--servers``, and
speaks the Napster client protocol (opennap-ng ``doc/napster.txt``) with the
codec of :mod:`peerlab.wire.napster`.  The benchmark (``bench_napster.py``)
starts one or more of these and steers them phase by phase through stdin, one
JSON object a line; each phase answers with one JSON line on stdout:

``{"cmd": "login"}``
    connect and log in every user (napster.txt 2, or 6 for a new user with
    ``--register``), at most :data:`LOGIN_CONCURRENCY` at once; answers the
    count logged in, the failures and the first distinct error texts.
``{"cmd": "prepare"}``
    encode every share and a pool of searches (before any clock starts).
``{"cmd": "share"}``
    every user shares its library (one 100 frame per file, written at once
    as a client does after login), then sends a server stats request (214)
    whose reply, processed after the shares on that connection, marks them
    taken; at most :data:`SHARE_CONCURRENCY` users at once.
``{"cmd": "stats"}``
    one server stats request (214) per server: users, files, gigabytes.
``{"cmd": "search", "mode": "closed", "concurrency": C, "seconds": S, "count": N}``
    keep ``C`` searches (napster.txt 200) outstanding, each from the user
    idle for longest (Napster has no search id, so one search at a time per
    connection), for ``S`` seconds or ``N`` searches: the saturation rate.
``{"cmd": "search", "mode": "open", "rate": R, "seconds": S}``
    send ``R`` searches a second on a fixed schedule whatever the replies:
    the latency at a given offered load.
``{"cmd": "quit"}``
    close every connection and exit.

A search's latency runs from writing its 200 frame to reading its 202 (end
of search results); results (201) are counted, not kept.

The library of each user and the search mix are seeded, so every run shares
the same files and asks the same questions: see :class:`Corpus`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import hashlib
import itertools
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from peerlab.errors import RemoteProtocolError  # noqa: E402
from peerlab.wire import napster as nap  # noqa: E402

#: Connections opening and logging in at once, per process (``--login-
#: concurrency``): within the listen backlog of a server, so the kernel never
#: drops a SYN (a dropped SYN costs a one-second retransmission and would
#: measure the backlog, not the server), and within the logins a server
#: hashes at once before it answers "server busy" (64 in peerlab's server).
LOGIN_CONCURRENCY = 64
#: Users sending their library at once, per process (bounds the bytes queued
#: in this process and in the server's buffers).
SHARE_CONCURRENCY = 64
#: Longest one phase may take before it reports what it has, seconds.
PHASE_TIMEOUT = 300.0
#: Longest a search may stay unanswered after the phase's time is up, seconds.
DRAIN_TIMEOUT = 10.0
#: Distinct search requests prepared, cycled through (more than the phases
#: of a run send, so that no search repeats).
QUERY_POOL = 100_000
#: Error texts reported per phase (the first distinct ones).
MAX_ERRORS = 8
#: Most latency samples one process reports for an open-loop phase.
MAX_SAMPLES = 200_000

# --------------------------------------------------------------------------
# The corpus: who shares what, and what people search for.

FIRST_NAMES = """benny glenn duke count artie tommy jimmy billie ella louis
sarah dinah peggy frank bing nat dean perry rosemary doris patti kay jo june
johnny buddy elvis jerry chuck fats little ray sam otis aretha marvin smokey
diana stevie james janis jimi bob joni carole neil paul john george ringo
mick keith david elton freddie brian roger kate annie cyndi madonna prince
whitney mariah celine britney christina justin kurt eddie chris layne scott
""".split()
SURNAMES = """goodman miller ellington basie shaw dorsey lunceford holiday
fitzgerald armstrong vaughan washington lee sinatra crosby cole martin como
clooney day page starr stafford christy cash holly presley lewis berry domino
richard charles cooke redding franklin gaye robinson ross wonder brown joplin
hendrix dylan mitchell king young simon lennon harrison starkey jagger
richards bowie john mercury may taylor bush lennox lauper jackson houston
carey dion spears aguilera timberlake cobain vedder cornell staley weiland
maclean""".split()
BAND_WORDS = """beatles stones doors byrds kinks who zombies animals eagles
ramones clash police cars smiths cure pixies nirvana soundgarden pearl jam
radiohead oasis blur pulp verve garbage hole weezer korn tool creed bush
live train cake phish wilco""".split()
TITLE_WORDS = """love baby heart night day time girl boy home road dream
blue moon sun rain fire river song dance world life tonight heaven away
again forever little toot rock roll blues sweet honey angel crazy wild
summer winter city lights train station highway star stars morning evening
yesterday tomorrow kiss touch feel cry tears smile lonely together alone
believe remember forget hold hand walk run fly fall rise down up back
street paradise stranger lover friend mother father sister brother king
queen golden silver diamond gold black white red green yellow purple
ocean sea sky wind storm thunder light dark shadow ghost devil saint
midnight sunday monday friday saturday summertime jump shout twist
shake rattle boogie woogie swing mood serenade rhapsody melody harmony
song ballad lullaby hymn prayer freedom money power glory wonderful
beautiful tender gentle broken young old new last first only true
""".split()
BITRATES = [(128, 55), (160, 10), (192, 12), (256, 5), (320, 8), (112, 4), (96, 4), (64, 2)]
FREQUENCIES = [(44100, 90), (48000, 6), (22050, 4)]
#: Link types of napster.txt 2 (login) and how common each is among users.
LINK_TYPES = [(4, 30), (7, 25), (8, 25), (9, 8), (6, 5), (3, 4), (10, 3)]
#: Share of users behind a firewall (data port 0: downloads go through 500/501).
FIREWALLED = 0.2


def _weighted(rng: random.Random, table: list[tuple[int, int]]) -> int:
    values, weights = zip(*table, strict=True)
    return rng.choices(values, weights)[0]


def _coin_words(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct pronounceable made-up words ("kavelo", "rudami")."""
    onsets = "b d f g k l m n p r s t v z br dr st tr sh ch".split()
    vowels = "a e i o u ai ou".split()
    out: dict[str, None] = {}
    for _ in range(count * 10):
        if len(out) >= count:
            break
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
        out[word] = None
    return list(out)


#: A search as typed: its keywords and (field, compare, value) constraints.
Query = tuple[list[str], list[tuple[str, str, int]]]
#: Called when a request is answered: (client, frame type or -1, payload).
Done = Callable[["Client", int, bytes | None], None]


@dataclass(frozen=True, slots=True)
class Song:
    artist: str
    title: str


class Corpus:
    """Songs with a Zipf popularity, users' libraries and the search mix.

    ``songs`` distinct tracks by about ``songs / 20`` artists (single artists
    and bands); a track's popularity falls as ``1 / rank ** ZIPF_S``, so a few
    hits are shared by thousands of users and most tracks by a handful, as on
    the real Napster.  Each user's library is ``files_per_user`` distinct
    tracks drawn by popularity, each with a bitrate, sample rate, length and
    size of its own rip (the md5 names the rip: users with the same rip share
    the md5, as napster.txt's MD5 section intends).
    """

    ZIPF_S = 0.6
    #: Made-up words beside the real ones (rarer words of titles, surnames),
    #: so that the vocabulary has a long tail as real filenames do.
    COINED_WORDS = 6000

    def __init__(self, seed: int = 1, songs: int = 100_000) -> None:
        rng = random.Random(f"corpus-{seed}")
        coined = _coin_words(rng, self.COINED_WORDS)
        surnames = SURNAMES + coined[: self.COINED_WORDS // 3]
        vocabulary = TITLE_WORDS + coined[self.COINED_WORDS // 3 :]
        # Title words by rank: the real, common ones first, then the long tail.
        word_cum = list(itertools.accumulate(1.0 / r for r in range(1, len(vocabulary) + 1)))
        artists: list[str] = []
        seen: set[str] = set()
        n_artists = max(10, songs // 20)
        for _ in range(n_artists * 4):
            if len(artists) >= n_artists:
                break
            if rng.random() < 0.25:
                name = "the " + " ".join(rng.sample(BAND_WORDS, rng.choice((1, 1, 2))))
            else:
                name = f"{rng.choice(FIRST_NAMES)} {rng.choice(surnames)}"
            if name not in seen:
                seen.add(name)
                artists.append(name)
        self.songs: list[Song] = []
        titles: set[tuple[str, str]] = set()
        for _ in range(songs * 4):
            if len(self.songs) >= songs:
                break
            # Some artists have many more tracks than others.
            artist = artists[int(len(artists) * rng.random() ** 2)]
            words = rng.choices(vocabulary, cum_weights=word_cum, k=rng.choice((1, 2, 2, 3, 3, 4)))
            title = " ".join(dict.fromkeys(words))
            if (artist, title) not in titles:
                titles.add((artist, title))
                self.songs.append(Song(artist, title))
        rng.shuffle(self.songs)
        total = 0.0
        self._cum: list[float] = []
        for rank in range(1, len(self.songs) + 1):
            total += 1.0 / rank**self.ZIPF_S
            self._cum.append(total)
        self.seed = seed
        self._rips: dict[tuple[int, int], tuple[str, str, int, int, int, int]] = {}

    def _pick(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cum, rng.random() * self._cum[-1])

    def _rip(self, song: int, rip: int) -> tuple[str, str, int, int, int, int]:
        """One rip of a track: its bitrate and length fix its size and md5."""
        key = (song, rip)
        found = self._rips.get(key)
        if found is None:
            rrng = random.Random(song * 8 + rip + self.seed * 1_000_003)
            bitrate = _weighted(rrng, BITRATES)
            freq = _weighted(rrng, FREQUENCIES)
            seconds = rrng.randint(120, 420)
            size = bitrate * 125 * seconds + rrng.randint(0, 4096)
            md5 = hashlib.md5(f"{self.seed}-{song}-{rip}".encode()).hexdigest()
            s = self.songs[song]
            name = f"{s.artist.title()} - {s.title.title()}.mp3"
            found = self._rips[key] = (name, md5, size, bitrate, freq, seconds)
        return found

    def library(self, user: int, files: int) -> list[tuple[str, str, int, int, int, int]]:
        """``files`` shares of user number ``user``: (filename, md5, size,
        bitrate, frequency, seconds), the fields of napster.txt 100."""
        rng = random.Random(user * 7919 + self.seed)
        picked: dict[int, None] = {}
        for _ in range(files * 20):
            if len(picked) >= files:
                break
            picked[self._pick(rng)] = None
        return [self._rip(i, rng.randrange(3)) for i in picked]

    def queries(self, count: int, seed: int) -> Iterator[Query]:
        """``count`` searches as people type them: (keywords, constraints).

        A track is picked by popularity; half the searches name its artist and
        a word of its title (the lecture's "little toot"), a quarter its whole
        title, a quarter the artist alone.  One in five adds a constraint
        (BITRATE at least 128, or LINESPEED at least cable).
        """
        rng = random.Random(f"queries-{self.seed}-{seed}")
        for _ in range(count):
            song = self.songs[self._pick(rng)]
            kind = rng.random()
            if kind < 0.5:
                words = song.artist.split()[-1:] + [rng.choice(song.title.split())]
            elif kind < 0.75:
                words = song.title.split()
            else:
                words = song.artist.split()
            words = [w for w in words if w != "the"] or words
            constraints: list[tuple[str, str, int]] = []
            extra = rng.random()
            if extra < 0.1:
                constraints.append(("BITRATE", "AT LEAST", 128))
            elif extra < 0.2:
                constraints.append(("LINESPEED", "AT LEAST", 7))
            yield words, constraints


# --------------------------------------------------------------------------
# Frames: peerlab.wire.napster does the encoding.


def login_frame(nick: str, password: str, port: int, link: int, register: bool) -> bytes:
    """napster.txt 2 (login), or 6 (new user login) to register the nick."""
    client = "peerlab-load 1"
    link_type = nap.LinkType(link)
    if register:
        email = f"{nick}@bench.invalid"
        return nap.encode(nap.NewUserLogin(nick, password, port, client, link_type, email))
    return nap.encode(nap.Login(nick, password, port, client, link_type))


def share_frame(share: tuple[str, str, int, int, int, int]) -> bytes:
    """napster.txt 100: one shared file."""
    return nap.encode(nap.ShareFile(*share))


def search_frame(
    words: list[str], constraints: list[tuple[str, str, int]], max_results: int
) -> bytes:
    """napster.txt 200: ``FILENAME CONTAINS "<words>" MAX_RESULTS <max>`` and constraints."""
    query = nap.SearchQuery(
        contains=(" ".join(words),),
        max_results=max_results,
        constraints=tuple(
            nap.Constraint(nap.SearchField(f), nap.Compare(c), v) for f, c, v in constraints
        ),
    )
    return nap.encode(nap.SearchRequest(query))


STATS_FRAME = nap.encode(nap.ServerStatsRequest())
STATS = nap.ServerStats.TYPE
LOGIN_ACK = nap.LoginAck.TYPE
#: Replies that end whatever request is outstanding: the login error (0) and
#: the error message to a logged-in client (404).
ERROR_TYPES = frozenset({nap.LoginError.TYPE, nap.ErrorMessage.TYPE})
RESULT = nap.SearchResult.TYPE
END_OF_RESULTS = nap.SearchEnd.TYPE


# --------------------------------------------------------------------------
# One client connection.


class Client(asyncio.Protocol):
    """One logged-in user: a TCP connection and the one request it awaits.

    Replies are split into frames by :class:`~peerlab.wire.napster.FrameDecoder`;
    a search's results (201) are counted, not decoded, so that this process
    keeps up with a server sending a hundred of them per search.
    """

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.transport: asyncio.Transport | None = None
        self.decoder = nap.FrameDecoder()
        self.waiting: int | None = None  # the frame type that completes the request
        self.on_done: Done | None = None
        self.results = 0
        self.sent_at = 0.0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes, until: int, on_done: Done) -> None:
        """Write ``data`` and call ``on_done(client, type, payload)`` when a frame of
        type ``until`` or an error frame arrives, or (type -1) when the
        connection drops."""
        assert self.transport is not None and self.waiting is None
        self.waiting = until
        self.on_done = on_done
        self.results = 0
        self.sent_at = time.perf_counter()
        self.transport.write(data)

    def _finish(self, kind: int, payload: bytes | None) -> None:
        done = self.on_done
        self.waiting = None
        self.on_done = None
        if done is not None:
            done(self, kind, payload)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self.error = f"bad frame from the server: {exc}"
            assert self.transport is not None
            self.transport.abort()
            return
        for kind, payload in frames:
            if kind == RESULT:
                self.results += 1
            elif self.waiting is not None and (kind == self.waiting or kind in ERROR_TYPES):
                self._finish(kind, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = self.error or f"connection lost: {exc or 'closed by server'}"
        if not self.closed.done():
            self.closed.set_result(None)
        if self.waiting is not None:
            self._finish(-1, None)


# --------------------------------------------------------------------------
# The phases.


@dataclass
class Users:
    """The users of this process and their connections."""

    first: int
    count: int
    servers: list[tuple[str, int]]
    files: int
    register: bool
    corpus: Corpus
    max_results: int
    login_concurrency: int = LOGIN_CONCURRENCY
    clients: list[Client] = field(default_factory=list)
    #: Prepared (untimed): each user's share frames and a stats request.
    share_blobs: dict[str, bytes] = field(default_factory=dict)
    share_files: int = 0
    #: Prepared (untimed): search frames, cycled through by every search phase.
    queries: Iterator[bytes] = field(default_factory=lambda: iter(()))

    def server_of(self, user: int) -> tuple[str, int]:
        return self.servers[user % len(self.servers)]


def _error_text(kind: int, payload: bytes | None) -> str:
    if kind == -1:
        return "connection lost"
    text = (payload or b"").decode("ascii", "replace")[:120]
    return f"{kind}: {text}"


def _note(errors: list[str], text: str) -> None:
    if len(errors) < MAX_ERRORS and text not in errors:
        errors.append(text)


async def phase_login(users: Users) -> dict[str, Any]:
    """Connect and log in every user of this process."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    gate = asyncio.Semaphore(users.login_concurrency)
    failed = 0
    ok: list[Client] = []

    async def one(user: int) -> None:
        nonlocal failed
        async with gate:
            nick = f"bench{user:06d}"
            rng = random.Random(f"user-{user}")
            link = _weighted(rng, LINK_TYPES)
            port = 0 if rng.random() < FIREWALLED else 6699
            host, sport = users.server_of(user)
            try:
                _, client = await loop.create_connection(lambda: Client(nick), host, sport)
            except OSError as exc:
                failed += 1
                _note(errors, f"connect: {exc}")
                return
            done: asyncio.Future[tuple[int, bytes | None]] = loop.create_future()

            def finished(_c: Client, kind: int, payload: bytes | None) -> None:
                if not done.done():
                    done.set_result((kind, payload))

            client.request(
                login_frame(nick, f"pw-{nick}", port, link, users.register), LOGIN_ACK, finished
            )
            kind, payload = await done
            if kind == LOGIN_ACK:
                ok.append(client)
            else:
                failed += 1
                _note(errors, _error_text(kind, payload))
                assert client.transport is not None
                client.transport.close()

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one(u)) for u in range(users.first, users.first + users.count)]
    _, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT)
    for t in pending:
        t.cancel()
    elapsed = time.perf_counter() - t0
    ok.sort(key=lambda c: c.nick)
    users.clients = ok
    return {"ok": len(ok), "failed": failed + len(pending), "errors": errors, "seconds": elapsed}


def phase_prepare(users: Users) -> dict[str, Any]:
    """Encode every share and a pool of searches before any clock starts:
    the load generator's own encoding is not the server's rate."""
    t0 = time.perf_counter()
    encoded: dict[tuple[str, str, int, int, int, int], bytes] = {}  # a rip's frame
    users.share_files = 0
    for c in users.clients:
        library = users.corpus.library(int(c.nick[5:]), users.files)
        frames = []
        for share in library:
            frame = encoded.get(share)
            if frame is None:
                frame = encoded[share] = share_frame(share)
            frames.append(frame)
        users.share_blobs[c.nick] = b"".join(frames) + STATS_FRAME
        users.share_files += len(library)
    pool = [
        search_frame(words, cons, users.max_results)
        for words, cons in users.corpus.queries(QUERY_POOL, users.first)
    ]
    users.queries = itertools.cycle(pool)
    # Everything allocated so far lives until the end: keep the collector
    # from scanning it again and again (a full collection over 10,000
    # clients would show up as a pause in the measured latencies).
    gc.collect()
    gc.freeze()
    return {"files": users.share_files, "queries": len(pool), "seconds": time.perf_counter() - t0}


async def phase_share(users: Users) -> dict[str, Any]:
    """Every logged-in user shares its library, then awaits a stats reply."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    blobs = users.share_blobs
    files = users.share_files
    gate = asyncio.Semaphore(SHARE_CONCURRENCY)
    taken = 0
    last_stats = ""

    async def one(client: Client) -> None:
        nonlocal taken, last_stats
        async with gate:
            if client.closed.done():
                _note(errors, client.error or "closed")
                return
            done: asyncio.Future[tuple[int, bytes | None]] = loop.create_future()

            def finished(_c: Client, kind: int, payload: bytes | None) -> None:
                if not done.done():
                    done.set_result((kind, payload))

            client.request(blobs[client.nick], STATS, finished)
            kind, payload = await done
            if kind == STATS:
                taken += 1
                last_stats = (payload or b"").decode("ascii", "replace")
            else:
                _note(errors, _error_text(kind, payload))

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one(c)) for c in users.clients]
    _, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT)
    for t in pending:
        t.cancel()
    elapsed = time.perf_counter() - t0
    return {
        "users": taken,
        "files": files,
        "errors": errors,
        "seconds": elapsed,
        "stats": last_stats,
    }


async def phase_stats(users: Users) -> dict[str, Any]:
    """One server stats (214) per server, from this process's users."""
    loop = asyncio.get_running_loop()
    out: dict[str, str] = {}
    for host, port in users.servers:
        client = next(
            (
                c
                for c in users.clients
                if c.transport is not None
                and c.transport.get_extra_info("peername")[1] == port
                and not c.closed.done()
            ),
            None,
        )
        if client is None:
            continue
        done: asyncio.Future[tuple[int, bytes | None]] = loop.create_future()

        def finished(_c: Client, kind: int, payload: bytes | None, done: Any = done) -> None:
            if not done.done():
                done.set_result((kind, payload))

        client.request(STATS_FRAME, STATS, finished)
        try:
            kind, payload = await asyncio.wait_for(done, DRAIN_TIMEOUT)
        except TimeoutError:
            continue
        out[f"{host}:{port}"] = _error_text(kind, payload)
    return {"stats": out}


async def phase_search(users: Users, cmd: dict[str, Any]) -> dict[str, Any]:
    """Searches, closed loop (``concurrency`` outstanding) or open loop (``rate``/s)."""
    loop = asyncio.get_running_loop()
    queries = users.queries
    idle: deque[Client] = deque(c for c in users.clients if not c.closed.done())
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"sent": 0, "done": 0, "failed": 0, "results": 0, "starved": 0}
    seconds = float(cmd.get("seconds", 10.0))
    limit = int(cmd.get("count", 10**9))
    closed = cmd.get("mode", "closed") == "closed"
    outstanding = 0
    drained = loop.create_future()
    stopping = False

    def send() -> bool:
        nonlocal outstanding
        if not idle:
            counts["starved"] += 1
            return False
        client = idle.popleft()
        counts["sent"] += 1
        outstanding += 1
        client.request(next(queries), END_OF_RESULTS, finished)
        return True

    def finished(client: Client, kind: int, payload: bytes | None) -> None:
        nonlocal outstanding
        outstanding -= 1
        if kind == END_OF_RESULTS:
            counts["done"] += 1
            counts["results"] += client.results
            if len(latencies) < MAX_SAMPLES:
                latencies.append((time.perf_counter() - client.sent_at) * 1000.0)
        else:
            counts["failed"] += 1
            _note(errors, _error_text(kind, payload))
        if kind != -1:
            idle.append(client)
        if stopping:
            if outstanding == 0 and not drained.done():
                drained.set_result(None)
        elif closed and counts["sent"] < limit:
            send()

    t0 = time.perf_counter()
    deadline = t0 + seconds
    if closed:
        for _ in range(min(int(cmd.get("concurrency", 32)), limit)):
            if not send():
                break
        while time.perf_counter() < deadline and counts["sent"] < limit:
            await asyncio.sleep(0.01)
    else:
        rate = float(cmd["rate"])
        while True:
            now = time.perf_counter()
            if now >= deadline or counts["sent"] >= limit:
                break
            due = min(int((now - t0) * rate), limit)
            while counts["sent"] + counts["starved"] < due:
                send()
            await asyncio.sleep(0.0005)
    stopping = True
    sent_for = time.perf_counter() - t0
    if outstanding:
        try:
            await asyncio.wait_for(asyncio.shield(drained), DRAIN_TIMEOUT)
        except TimeoutError:
            _note(errors, f"{outstanding} searches unanswered {DRAIN_TIMEOUT:.0f} s after the end")
    elapsed = time.perf_counter() - t0
    return {
        **counts,
        "unanswered": outstanding,
        "errors": errors,
        "seconds": elapsed,
        "sent_for": sent_for,
        "latencies_ms": [round(x, 3) for x in latencies],
    }


async def serve(users: Users) -> None:
    """Read commands from stdin, run each phase, answer on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            name = cmd.get("cmd")
            if name == "login":
                reply = await phase_login(users)
            elif name == "prepare":
                reply = phase_prepare(users)
            elif name == "share":
                reply = await phase_share(users)
            elif name == "stats":
                reply = await phase_stats(users)
            elif name == "search":
                reply = await phase_search(users, cmd)
            elif name == "quit":
                break
            else:
                reply = {"errors": [f"unknown command {name!r}"]}
            reply["cmd"] = name
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        for c in users.clients:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host != "127.0.0.1":
        raise argparse.ArgumentTypeError(f"{text}: the load generator only talks to 127.0.0.1")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", required=True, help="127.0.0.1:PORT[,127.0.0.1:PORT...]")
    ap.add_argument("--first-user", type=int, default=0)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--files-per-user", type=int, default=100)
    ap.add_argument("--songs", type=int, default=100_000, help="distinct tracks in the corpus")
    ap.add_argument("--max-results", type=int, default=100, help="MAX_RESULTS of each search")
    ap.add_argument("--register", action="store_true", help="log in as new users (6)")
    ap.add_argument("--login-concurrency", type=int, default=LOGIN_CONCURRENCY,
                    help="connections logging in at once")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    servers = [_address(s) for s in args.servers.split(",")]
    users = Users(
        first=args.first_user,
        count=args.users,
        servers=servers,
        files=args.files_per_user,
        register=args.register,
        corpus=Corpus(args.seed, args.songs),
        max_results=args.max_results,
        login_concurrency=max(1, args.login_concurrency),
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(users))
    return 0


if __name__ == "__main__":
    sys.exit(main())
