"""The peers of a scenario: link classes, free riders, files, queries, overlay.

Everything here is drawn from one ``random.Random`` seeded from the scenario
seed and the purpose (:func:`peerlab.sim.derive_seed`), so every
architecture of one experiment gets *the same* peers, files and queries:
the comparison is between architectures, not between draws.

* **Files**: ``catalog`` distinct files (:class:`~peerlab.sim.topology.SimFile`,
  held in :class:`~peerlab.sim.topology.MemoryShares`), file *k* (0-based rank) with
  popularity proportional to ``1 / (k + 1) ** zipf``.  Each sharing peer
  holds ``per_sharer`` distinct files drawn by popularity; a free rider (a
  share ``free_riders`` of the peers, Adar and Huberman's ~70%) holds none.
* **Queries**: ``count`` queries, each from a random peer for one file drawn
  by the same popularity, searched by the file's unique title word, so a
  query matches exactly the copies of that file.
* **Overlay** (the flat network's wiring; the builder is swappable):
  ``random`` -- node *i* links to ``degree // 2`` distinct earlier nodes
  chosen uniformly (average degree ``degree``); ``preferential`` --
  Barabasi-Albert attachment (each earlier node chosen with probability
  proportional to its degree + 1), the heavy-tailed degrees measured in
  Gnutella crawls, which is what makes a targeted attack bite.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

from peerlab.sim import derive_seed
from peerlab.sim.topology import LinkClass, SimFile, sim_file
from peerlab.simulate.scenario import Scenario

#: Bytes of a simulated file (an MP3 of four minutes at 128 kbit/s); the
#: search experiments never transfer it, hits only quote it.
FILE_SIZE = 3_840_000

#: Most links one node gets in a generated overlay: a servent's default
#: connection cap (``ServentConfig.max_connections``), as a real hub has.
MAX_DEGREE = 32

#: Draws tried for one peer's distinct files before taking the most popular
#: missing ones (Zipf with a large exponent repeats the head a lot).
MAX_DRAWS_PER_FILE = 50


def title_word(rank: int) -> str:
    """The word that names catalog file ``rank`` and nothing else."""
    return f"song{rank:05d}"


def catalog_file(rank: int, index: int) -> SimFile:
    """Catalog file ``rank`` as the ``index``-th file of a peer's shares."""
    return sim_file(index, f"{title_word(rank)} artist{rank % 97:02d}.mp3", FILE_SIZE + rank, rank)


@dataclass(frozen=True, slots=True)
class Peer:
    index: int
    link: LinkClass
    free_rider: bool
    files: tuple[SimFile, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """Peer ``origin`` searches for catalog file ``rank``."""

    origin: int
    rank: int

    @property
    def text(self) -> str:
        return title_word(self.rank)


class Zipf:
    """Draws ranks 0..n-1 with probability proportional to ``1/(k+1)**s``."""

    def __init__(self, n: int, s: float) -> None:
        self.n = n
        self.cum = list(accumulate(1.0 / (k + 1) ** s for k in range(n)))

    def draw(self, rng: random.Random) -> int:
        return min(bisect.bisect_right(self.cum, rng.random() * self.cum[-1]), self.n - 1)


@dataclass(frozen=True, slots=True)
class Population:
    """``n`` peers with their files and the overlay edges between them."""

    peers: tuple[Peer, ...]
    edges: tuple[tuple[int, int], ...]

    @property
    def n(self) -> int:
        return len(self.peers)

    def holders(self, rank: int, alive: Iterable[int] | None = None) -> list[int]:
        """Peers sharing file ``rank`` (among ``alive`` when given)."""
        pool = range(self.n) if alive is None else alive
        return [i for i in pool if any(f.rank == rank for f in self.peers[i].files)]


def build_population(scenario: Scenario, n: int, seed: int) -> Population:
    """``n`` peers for ``scenario`` (see the module docstring)."""
    rng = random.Random(derive_seed(seed, "population", str(n)))
    pop, files = scenario.population, scenario.files
    names = [name for name, _ in pop.links]
    cum = list(accumulate(share for _, share in pop.links))
    zipf = Zipf(files.catalog, files.zipf)
    free = set(rng.sample(range(n), round(n * pop.free_riders)))
    peers = []
    for i in range(n):
        pick = bisect.bisect_right(cum, rng.random() * cum[-1])
        link = scenario.link_classes[names[min(pick, len(names) - 1)]]
        held: list[int] = []
        if i not in free:
            seen: set[int] = set()
            for _ in range(files.per_sharer * MAX_DRAWS_PER_FILE):
                if len(held) == files.per_sharer:
                    break
                rank = zipf.draw(rng)
                if rank not in seen:
                    seen.add(rank)
                    held.append(rank)
            for rank in range(files.catalog):
                if len(held) >= files.per_sharer:
                    break
                if rank not in seen:
                    seen.add(rank)
                    held.append(rank)
        peers.append(Peer(i, link, i in free,
                          tuple(catalog_file(r, k + 1) for k, r in enumerate(held))))  # fmt: skip
    edges = build_overlay(scenario.topology.kind, n, scenario.topology.degree, rng)
    return Population(tuple(peers), tuple(edges))


def build_queries(
    scenario: Scenario,
    population: Population,
    seed: int,
    tag: str = "",
    count: int | None = None,
    origins: Iterable[int] | None = None,
) -> list[Query]:
    """The query workload: origins uniform (among ``origins`` when given),
    files by Zipf popularity."""
    rng = random.Random(derive_seed(seed, "queries", str(population.n), tag))
    zipf = Zipf(scenario.files.catalog, scenario.files.zipf)
    k = scenario.queries.count if count is None else count
    pool = list(range(population.n)) if origins is None else sorted(origins)
    if not pool:
        return []
    return [Query(pool[rng.randrange(len(pool))], zipf.draw(rng)) for _ in range(k)]


# ------------------------------------------------------------------ overlays


def build_overlay(kind: str, n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """Edges ``(newer, older)`` of a ``kind`` overlay on nodes 0..n-1."""
    m = max(1, degree // 2)
    edges: list[tuple[int, int]] = []
    if kind == "random":
        for i in range(1, n):
            for j in sorted(rng.sample(range(i), min(m, i))):
                edges.append((i, j))
        return edges
    # Preferential attachment: a node list with each node repeated once per
    # link end, plus once for itself (so a node of degree 0 can be chosen).
    ends: list[int] = [0]
    deg = [0] * n
    for i in range(1, n):
        chosen: set[int] = set()
        for _ in range(MAX_DRAWS_PER_FILE * m):
            if len(chosen) >= min(m, i):
                break
            pick = ends[rng.randrange(len(ends))]
            if deg[pick] < MAX_DEGREE:
                chosen.add(pick)
        for j in sorted(chosen):
            edges.append((i, j))
            ends.append(j)
            ends.append(i)
            deg[i] += 1
            deg[j] += 1
        ends.append(i)
    return edges


def largest_component(
    nodes: Iterable[int], edges: Iterable[tuple[int, int]], *, peers_only: bool = False
) -> int:
    """Size of the largest connected part of the graph on ``nodes`` (edges
    touching other nodes ignored): union-find.  ``peers_only`` counts only
    nodes >= 0 (index servers are numbered below 0)."""
    parent: dict[int, int] = {v: v for v in nodes}

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in edges:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
    sizes: dict[int, int] = {}
    for v in parent:
        r = find(v)
        sizes[r] = sizes.get(r, 0) + (0 if peers_only and v < 0 else 1)
    return max(sizes.values(), default=0)


def by_degree(n: int, edges: Iterable[tuple[int, int]]) -> list[int]:
    """Nodes 0..n-1, highest degree first (ties: lower index first)."""
    deg = [0] * n
    for a, b in edges:
        deg[a] += 1
        deg[b] += 1
    return sorted(range(n), key=lambda v: (-deg[v], v))


#: Leaves one ultrapeer serves and ultrapeers one leaf keeps: LimeWire's 30
#: and 3 (the servent's ``max_leaves`` and ``ultrapeers_per_leaf``).
LEAVES_PER_ULTRAPEER = 30
ULTRAPEERS_PER_LEAF = 3


@dataclass(frozen=True, slots=True)
class Tiers:
    """A two-tier overlay: which peers are ultrapeers, and every link
    (``(dialler, listener)``: leaves dial their ultrapeers)."""

    ultrapeers: frozenset[int]
    edges: tuple[tuple[int, int], ...]


def build_tiers(population: Population, *, fraction: float, degree: int, seed: int) -> Tiers:
    """Ultrapeers: the ``fraction`` of peers with the fastest uplinks (ties
    by index; at least enough to hold every leaf's three links with room),
    wired among themselves as the scenario's overlay kind would be with
    ``degree``; each leaf links to :data:`ULTRAPEERS_PER_LEAF` distinct
    ultrapeers with room, at random."""
    rng = random.Random(derive_seed(seed, "tiers", str(population.n)))
    n = population.n
    need = -(-(n * ULTRAPEERS_PER_LEAF) // int(LEAVES_PER_ULTRAPEER * 0.8))
    count = min(n, max(round(n * fraction), need, ULTRAPEERS_PER_LEAF + 1))
    ranked = sorted(range(n), key=lambda i: (-population.peers[i].link.up, i))
    ups = sorted(ranked[:count])
    edges = [(ups[a], ups[b]) for a, b in build_overlay("random", len(ups), degree, rng)]
    room = {u: LEAVES_PER_ULTRAPEER for u in ups}
    for leaf in range(n):
        if leaf in room:
            continue
        free = [u for u in ups if room[u] > 0]
        for u in rng.sample(free, min(ULTRAPEERS_PER_LEAF, len(free))):
            room[u] -= 1
            edges.append((leaf, u))
    return Tiers(frozenset(ups), tuple(edges))
