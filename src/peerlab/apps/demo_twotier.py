"""``peerlab demo --only twotier``: the KaZaA architecture (issue 5, item 5).

Twenty-four servents on 127.0.0.1 with the lecture's link classes -- 56K
modems, DSL, cable and T1 lines, each servent told its measured upload
(:meth:`~peerlab.overlays.gnutella.servent.Servent.set_capacity` through
``ServentConfig.upload_bps``) -- start as equals: every one begins as a leaf
and dials the others it knows.  The promotion policy (:mod:`peerlab.overlays.
gnutella.roles`) makes the strong, reachable ones ultrapeers; the rest attach
to them as leaves and send them their QRP tables.  A modem leaf then searches
"linkin park" and keeps the results whose artist is Linkin Park (the audio
metadata their hits carry), as the lecture's KaZaA screenshot does; the
ultrapeers run the query dynamically and pass it only to leaves whose table
matches.  The same search runs on a flat Gnutella network of the same
servents and shares (every one a 0.6 servent flooding with TTL 7), and the
messages each query cost are printed side by side.

The servents run in this process on one event loop (real TCP connections
on 127.0.0.1, ports chosen by the system), so the part needs no node
processes; timings are shortened where 127.0.0.1 allows (promotion after
seconds instead of minutes, dynamic queries waiting 0.5 s per hop instead
of 2.4 s, a refused dial retried after 2 s instead of 30 s) and said so on
screen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from peerlab.overlays.gnutella.dynquery import DqSettings
from peerlab.overlays.gnutella.roles import RolePolicy
from peerlab.overlays.gnutella.search import Search
from peerlab.overlays.gnutella.servent import Servent, ServentConfig
from peerlab.runtime.worlds import RealWorld

#: Upload bit rates of the lecture's link classes (the upstream of each).
LINK_CLASSES: dict[str, float] = {
    "56K modem": 33_600.0,
    "DSL": 128_000.0,
    "cable": 384_000.0,
    "T1": 1_544_000.0,
}
#: The classes of the 24 servents, in start order (a third strong).
SERVENT_CLASSES = (["DSL", "DSL", "cable", "56K modem", "DSL", "T1", "DSL", "56K modem"] * 3)
#: Promotion on 127.0.0.1: the policy's thresholds, minutes made seconds.
DEMO_POLICY = RolePolicy(min_uptime=2.0, orphan_grace=2.0, idle_grace=30.0, hold=2.0)
#: Dynamic querying on 127.0.0.1, where hits come back in milliseconds.
DEMO_DQ = DqSettings(wait_per_hop=0.5, probe_extra_per_connection=0.2)
#: A host that answered 503 is tried again after this many seconds (30 s in
#: the daemon).  Every servent starts as a leaf, so the first dials between
#: the future ultrapeers are all refused; with the daemon's back-off an
#: ultrapeer could sit alone with its leaves for half a minute.
DEMO_BUSY_RETRY = 2.0
#: The flat network's query TTL (the classic default; 24 servents are well within).
FLAT_TTL = 7
#: The searcher: the last servent (a modem).
QUERY = "linkin park"
ARTIST = "Linkin Park"
#: Bounds on the waits (seconds of real time).
SETTLE_TIMEOUT = 60.0
SEARCH_TIMEOUT = 60.0
#: The search is over when no Query or Query Hit moved for this long.
QUIET = 2.0
POLL = 0.25

#: (servent number, title, artist, album, bitrate kbps, seconds).
TRACKS: tuple[tuple[int, str, str, str, int, int], ...] = (
    (1, "Numb", "Linkin Park", "Meteora", 192, 185),
    (9, "Numb", "Linkin Park", "Meteora", 128, 185),
    (13, "In the End", "Linkin Park", "Hybrid Theory", 320, 216),
    (17, "Crawling", "Linkin Park", "Hybrid Theory", 160, 209),
    (21, "Linkin Park tribute medley", "The Covers Band", "Tributes", 128, 402),
    (5, "Clocks", "Coldplay", "A Rush of Blood to the Head", 192, 307),
    (10, "Seven Nation Army", "The White Stripes", "Elephant", 192, 232),
    (15, "In Da Club", "50 Cent", "Get Rich or Die Tryin'", 160, 193),
)


class DemoFile:
    """A shared file as the servent reads one (catalog-like fields)."""

    __slots__ = ("index", "name", "size", "sha1", "title", "artist", "album", "bitrate",
                 "duration")  # fmt: skip

    def __init__(self, index: int, title: str, artist: str, album: str, bitrate: int,
                 seconds: int) -> None:  # fmt: skip
        self.index = index
        self.name = f"{artist} - {title}.mp3"
        self.size = bitrate * 125 * seconds
        self.sha1 = hashlib.sha1(f"{artist}/{title}/{bitrate}".encode()).digest()
        self.title, self.artist, self.album = title, artist, album
        self.bitrate, self.duration = bitrate, float(seconds)


class DemoShares:
    """One servent's shares in memory: a query matches a file when each of
    its words is in the file's name (what the node's catalog does)."""

    def __init__(self, files: list[DemoFile]) -> None:
        self.files = files

    def search(self, text: str, *, limit: int = 100) -> list[DemoFile]:
        words = text.lower().split()
        return [f for f in self.files if all(w in f.name.lower() for w in words)][:limit]

    def count(self) -> int:
        return len(self.files)

    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def _shares() -> list[DemoShares]:
    out = [DemoShares([]) for _ in SERVENT_CLASSES]
    for number, title, artist, album, bitrate, seconds in TRACKS:
        files = out[number].files
        files.append(DemoFile(len(files) + 1, title, artist, album, bitrate, seconds))
    return out


def _start(world: RealWorld, two_tier: bool) -> list[Servent]:
    """The servents, started one by one, each knowing some before it."""
    servents: list[Servent] = []
    for number, (link, shares) in enumerate(zip(SERVENT_CLASSES, _shares(), strict=True)):
        rt = world.new_runtime(f"{'t' if two_tier else 'f'}{number}")
        # Two-tier: each dials every earlier one (refused while all are leaves,
        # but the dialled learn they are reachable); flat: the first and the
        # previous one, then whoever Pongs and X-Try name, up to 4 links.
        known = [s.address for s in servents]
        if not two_tier:
            known = list(dict.fromkeys(known[:1] + known[-1:]))
        cfg = ServentConfig(
            listen_host=world.host(rt), listen_port=0, target_degree=4,
            bootstrap=tuple(known),
            upload_bps=LINK_CLASSES[link] if two_tier else None,
            role_policy=DEMO_POLICY, dynamic_query=DEMO_DQ, search_ttl=FLAT_TTL,
            keepalive_interval=600.0, busy_retry=DEMO_BUSY_RETRY,
        )  # fmt: skip
        s = Servent(rt, cfg, shares)
        s.start()
        servents.append(s)
    return servents


def _connected(servents: list[Servent]) -> bool:
    """Do the open links between ``servents`` that are not leaf links join
    them all into one overlay?  (Each connection is counted from the end that
    dialled it, whose peer address is the other servent's listening one.)"""
    if not servents:
        return False
    edges: dict[tuple[str, int], set[tuple[str, int]]] = {s.address: set() for s in servents}
    for s in servents:
        for link in s.ultrapeer_links():
            if link.outgoing and link.address in edges:
                edges[s.address].add(link.address)
                edges[link.address].add(s.address)
    reached, todo = {servents[0].address}, [servents[0].address]
    while todo:
        for peer in edges[todo.pop()] - reached:
            reached.add(peer)
            todo.append(peer)
    return len(reached) == len(edges)


def _settled(servents: list[Servent]) -> Callable[[], bool]:
    """Every strong servent an ultrapeer, every weak one a leaf attached to an
    ultrapeer, and the ultrapeers one connected overlay: an ultrapeer alone
    with its leaves would hide their files from everyone else's searches."""

    def check() -> bool:
        ups = [s for s in servents if s.role == "ultrapeer"]
        if not ups:
            return False
        for s in servents:
            strong = (s.config.upload_bps or 0.0) >= DEMO_POLICY.min_upload_bps
            if s.role == "leaf" and not s.ultrapeer_links():
                return False
            if not strong and s.role != "leaf":
                return False
        return _connected(ups)

    return check


def _messages(servents: list[Servent]) -> dict[str, int]:
    """Search traffic so far: Query/Query Hit sent, dynamic queries' status
    messages, and what the modem and DSL servents handled (sent + received)."""
    keys = ("tx.query", "tx.query_hit", "dq.status_requests", "dq.status_answered")
    out = {k: sum(s.counters[k] for s in servents) for k in keys}
    weak = [s for i, s in enumerate(servents)
            if LINK_CLASSES[SERVENT_CLASSES[i]] < DEMO_POLICY.min_upload_bps]  # fmt: skip
    load = ("tx.query", "rx.query", "tx.query_hit", "rx.query_hit")
    out["weak"] = sum(s.counters[k] for s in weak for k in load)
    return out


def _tables_in(ups: list[Servent]) -> bool:
    """Does every ultrapeer hold a QRP table from each of its leaves?"""
    return all(s.tier.leaf_tables.get(leaf.id) is not None
               for s in ups for leaf in s.leaf_links())  # fmt: skip


def _search(world: RealWorld, servents: list[Servent], ttl: int) -> tuple[Search, dict[str, int]]:
    before = _messages(servents)
    search = servents[-1].search(QUERY, ttl=ttl)
    last, seen = world.loop.time(), before
    deadline = last + SEARCH_TIMEOUT
    while world.loop.time() < deadline:
        world.run_for(POLL)
        now_seen = _messages(servents)
        running = sum(len(s.dq.running()) for s in servents)
        if now_seen != seen or running:
            seen, last = now_seen, world.loop.time()
        elif world.loop.time() - last >= QUIET:
            break
    after = _messages(servents)
    search.cancel()
    return search, {k: after[k] - before[k] for k in after}


def _by_artist(search: Search) -> list[tuple[dict[str, str], int, str, int]]:
    """(metadata, size, name, sources) of the results whose artist is ARTIST."""
    rows = []
    for r in search.results.values():
        if r.metadata.get("artist", "").lower() == ARTIST.lower():
            rows.append((r.metadata, r.size, r.name, len(r.sources)))
    return sorted(rows, key=lambda row: row[0].get("title", ""))


def twotier_story(console: Console) -> bool:
    """Run the part; ``False`` when something the story claims did not happen."""
    console.rule("[bold]KaZaA: ultrapeers and leaves")
    console.print(f"Starting {len(SERVENT_CLASSES)} servents on 127.0.0.1, all equal, each "
                  "told its measured upload; every one starts as a leaf ...")
    console.print("[dim](127.0.0.1: promotion after 2 s of uptime instead of 5 min; dynamic "
                  "queries wait 0.5 s per hop instead of 2.4 s; a refused dial is retried "
                  f"after {DEMO_BUSY_RETRY:g} s instead of 30 s)[/]")
    world = RealWorld()
    try:
        servents = _start(world, two_tier=True)
        names = {s.address: f"n{i:02d}" for i, s in enumerate(servents)}
        settled = world.run_until(_settled(servents), SETTLE_TIMEOUT)
        roles = Table(title="Who became what (roles.py: measured upload, uptime, reachable)",
                      pad_edge=False)  # fmt: skip
        for col in ("Servent", "Link", "Upload", "Role", "Leaves", "Ultrapeer links"):
            roles.add_column(col)
        for s in servents:
            link = SERVENT_CLASSES[servents.index(s)]
            roles.add_row(names[s.address], link, f"{LINK_CLASSES[link] / 1000:,.1f} kbit/s",
                          f"[bold]{s.role}[/]" if s.role == "ultrapeer" else s.role,
                          str(len(s.leaf_links())), str(len(s.ultrapeer_links())))  # fmt: skip
        console.print(roles)
        ups = [s for s in servents if s.role == "ultrapeer"]
        weak_up = [names[s.address] for s in ups
                   if (s.config.upload_bps or 0) < DEMO_POLICY.min_upload_bps]  # fmt: skip
        if not settled or weak_up:
            console.print("[red]the roles did not settle in time: weak ultrapeers "
                          f"{weak_up or 'none'}, ultrapeers connected: {_connected(ups)}[/]")
            return False
        console.print(f"{len(ups)} ultrapeers (cable and T1 lines), "
                      f"{len(servents) - len(ups)} leaves (modems and DSL)")
        # The leaves' links and QRP tables settle (a second, as before), and
        # every leaf's table has reached its ultrapeers before the search: a
        # leaf whose table is still on its way is not asked.
        world.run_for(1.0)
        world.run_until(lambda: _tables_in(ups), SETTLE_TIMEOUT)
        me = names[servents[-1].address]
        console.print(f"\n[bold]{me}[/] ({SERVENT_CLASSES[-1]}, a leaf): search {QUERY!r}, "
                      f"artist {ARTIST!r}")
        tier_search, tier_msgs = _search(world, servents, FLAT_TTL)
        for s in servents:
            s.close()
        world.run_for(0.5)

        flat = _start(world, two_tier=False)
        world.run_until(lambda: all(s.open_count >= 2 for s in flat) and _connected(flat),
                        SETTLE_TIMEOUT)  # fmt: skip
        flat_search, flat_msgs = _search(world, flat, FLAT_TTL)
        for s in flat:
            s.close()
        world.run_for(0.5)
    finally:
        world.close()

    rows = _by_artist(tier_search)
    results = Table(title=f"Artist {ARTIST!r}", pad_edge=False)
    for col in ("Title", "Artist", "Album", "Quality", "Length", "Size", "Sources"):
        results.add_column(col, justify="right" if col in ("Size", "Sources") else "left")
    for meta, size, _name, sources in rows:
        secs = int(meta.get("seconds", "0") or 0)
        results.add_row(meta.get("title", ""), meta.get("artist", ""), meta.get("album", ""),
                        f"{meta.get('bitrate', '?')} kbps", f"{secs // 60}:{secs % 60:02d}",
                        f"{size:,}", str(sources))  # fmt: skip
    console.print(results)
    others = len(tier_search.results) - len(rows)
    if others:
        console.print(f"({others} other file(s) matched the words but not the artist)")

    cost = Table(title=f"One search for {QUERY!r} on {len(SERVENT_CLASSES)} servents",
                 pad_edge=False)  # fmt: skip
    for col in ("Network", "Query sent", "QueryHit sent", "Status msgs", "Messages",
                "At modems + DSL", "Files found"):  # fmt: skip
        cost.add_column(col, justify="left" if col == "Network" else "right")
    for label, msgs, search in (
        (f"flat Gnutella (TTL {FLAT_TTL})", flat_msgs, flat_search),
        ("two-tier (QRP + dynamic query)", tier_msgs, tier_search),
    ):
        status = msgs["dq.status_requests"] + msgs["dq.status_answered"]
        total = msgs["tx.query"] + msgs["tx.query_hit"] + status
        cost.add_row(label, f"{msgs['tx.query']:,}", f"{msgs['tx.query_hit']:,}",
                     f"{status:,}", f"{total:,}", f"{msgs['weak']:,}",
                     str(len(search.results)))  # fmt: skip
    console.print(cost)
    flat_total = flat_msgs["tx.query"] + flat_msgs["tx.query_hit"]
    tier_total = sum(v for k, v in tier_msgs.items() if k != "weak")
    ok = bool(rows) and len(tier_search.results) >= len(flat_search.results) > 0
    ok = ok and tier_total < flat_total
    if ok:
        console.print(f"[bold green]Two-tier: the same {len(tier_search.results)} files for "
                      f"{tier_total:,} messages instead of {flat_total:,}; the modems and DSL "
                      f"lines handled {tier_msgs['weak']:,} instead of {flat_msgs['weak']:,}[/]")
    else:
        console.print("[red]the two-tier search did not find as much for fewer messages[/]")
    return ok
