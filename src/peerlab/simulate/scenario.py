"""Scenario files: what a simulation runs, in TOML (issue 7, item 1).

A scenario names its experiment(s) and the world they run in::

    name = "search"
    seed = 1
    experiments = ["search"]          # or architecture = "bittorrent"

    [population]
    nodes = [100, 300]                # several sizes: how figures grow
    free_riders = 0.7                 # Adar and Huberman: ~70% share nothing
    links = { modem56k = 0.2, dsl = 0.4, cable = 0.3, t1 = 0.1 }

    [files]
    catalog = 400                     # distinct files in the world
    per_sharer = 10                   # files each sharing peer holds
    zipf = 1.0                        # popularity exponent (shares and queries)

    [topology]
    kind = "random"                   # "random" | "preferential"
    degree = 4                        # links per node (average degree)

    [queries]
    count = 60                        # queries per measurement
    interval = 0.05                   # seconds between two queries
    wait = 8.0                        # seconds a query collects hits

    [churn]
    session = "exponential"           # session length distribution
    mean_session = 60.0               # seconds online, on average
    mean_offline = 30.0
    duration = 120.0

    [[events]]                        # at T kill X
    at = 30.0
    kill = "index-server"             # "top-degree" | "random" | "ultrapeers" | "seed"
    count = 1
    on = ["napster-farm"]             # architectures it strikes (default: all)

    [search] / [resilience] / [bittorrent]   # each experiment's own settings

The engine hands experiment ``X`` the table ``[X]`` with every other
top-level table and key of the scenario filled in where ``[X]`` does not set
them (so ``config["population"]`` is always there).  :func:`load_scenario`
checks the common tables and fills their defaults; an experiment checks its
own table.  Every mistake is a :class:`~peerlab.errors.ConfigError` naming
the key, and so is a key nothing reads (a misspelt ``[populaton]`` must not
quietly run the defaults): the engine checks the whole file, every
experiment's table included, before it runs anything.  Values are bounded so
that every run ends (a simulation runs its timers to the last virtual
second: a link of a byte a second or a day's wait per query would not).

Link classes are the lecture's screenshots' (Napster's link speed column,
gtk-gnutella's): each has a one-way latency, up/down bandwidth in bytes/s and
a packet loss rate; the table is :data:`peerlab.sim.topology.LINK_CLASSES`,
the one every simulated network uses.  A scenario may add its own or
override one under ``[link_classes.NAME]`` (``up``, ``down``, ``latency``,
optional ``loss``).
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from peerlab.errors import ConfigError
from peerlab.sim.topology import LINK_CLASSES as LINK_CLASSES
from peerlab.sim.topology import LinkClass as LinkClass

#: The kill targets an event may name (issue 7, item 1).
KILL_TARGETS = ("index-server", "top-degree", "random", "ultrapeers", "seed")

#: Session-length distributions churn may draw from.
SESSION_DISTRIBUTIONS = ("exponential", "pareto", "fixed")

#: Topologies the overlay may be built as.
TOPOLOGIES = ("random", "preferential")

#: Most nodes a scenario may ask for: 10,000 is the issue's largest size;
#: twice that still fits the 4 GiB budget, more does not.
MAX_NODES = 20_000

#: Most queries per measurement (each one is a flood in Gnutella).
MAX_QUERIES = 10_000

#: Bounds on the rest.  A simulation runs every timer up to its last virtual
#: second, so an absurd value is not just a silly result but a run that never
#: ends: a catalog of a billion files, a link of one byte a second, a day of
#: waiting per query.  Each bound sits far past what an experiment needs.
MAX_CATALOG = 1_000_000
MAX_PER_SHARER = 1_000
MAX_ZIPF = 10.0
#: Seconds between two queries, or that one query collects hits.
MAX_QUERY_SECONDS = 3_600.0
#: Virtual seconds of churn (a day).
MAX_DURATION = 86_400.0
#: An access link's bandwidth, bytes/s: from a 0.8 kbit/s trickle to 80 Gbit/s.
MIN_BANDWIDTH = 100.0
MAX_BANDWIDTH = 1e10
#: One-way latency of an access link, seconds; its packet loss rate.
MAX_LATENCY = 10.0
MAX_LOSS = 0.5

#: The keys a scenario file may hold at its top level, besides one table per
#: experiment (checked by the experiment: :func:`check_keys`).
SCENARIO_KEYS = ("name", "seed", "experiments", "architecture", "description",
                 "population", "files", "topology", "queries", "churn", "events",
                 "link_classes")  # fmt: skip
#: The keys of the tables every experiment shares.  ``[churn]`` also holds the
#: churn experiment's own settings, which that experiment checks.
TABLE_KEYS: Mapping[str, tuple[str, ...]] = {
    "population": ("nodes", "free_riders", "links"),
    "files": ("catalog", "per_sharer", "zipf"),
    "topology": ("kind", "degree"),
    "queries": ("count", "interval", "wait"),
    "churn": ("session", "mean_session", "mean_offline", "duration"),
}
EVENT_KEYS = ("at", "kill", "count", "on")
LINK_CLASS_KEYS = ("up", "down", "latency", "loss")


@dataclass(frozen=True, slots=True)
class Population:
    """Who is in the network."""

    nodes: tuple[int, ...] = (200,)
    free_riders: float = 0.7
    links: tuple[tuple[str, float], ...] = (
        ("modem56k", 0.2), ("dsl", 0.4), ("cable", 0.3), ("t1", 0.1))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Files:
    """What they share: ``catalog`` distinct files, Zipf popularity."""

    catalog: int = 400
    per_sharer: int = 10
    zipf: float = 1.0


@dataclass(frozen=True, slots=True)
class Topology:
    """How the flat overlay is wired."""

    kind: str = "random"
    degree: int = 4


@dataclass(frozen=True, slots=True)
class Queries:
    """The query workload: ``count`` queries, one every ``interval`` s,
    each collecting hits for ``wait`` s."""

    count: int = 60
    interval: float = 0.05
    wait: float = 8.0


@dataclass(frozen=True, slots=True)
class Churn:
    """Peers leave after a session drawn from ``session`` with mean
    ``mean_session`` s, stay away ``mean_offline`` s (exponential), come
    back; ``duration`` s of it are simulated."""

    session: str = "exponential"
    mean_session: float = 60.0
    mean_offline: float = 30.0
    duration: float = 120.0


@dataclass(frozen=True, slots=True)
class Event:
    """``at`` seconds into the run, kill ``count`` nodes chosen as ``kill``."""

    at: float
    kill: str
    count: int = 1
    #: Architectures it strikes (empty: every one).
    on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, checked scenario file."""

    name: str
    seed: int
    experiments: tuple[str, ...]
    population: Population = field(default_factory=Population)
    files: Files = field(default_factory=Files)
    topology: Topology = field(default_factory=Topology)
    queries: Queries = field(default_factory=Queries)
    churn: Churn = field(default_factory=Churn)
    events: tuple[Event, ...] = ()
    link_classes: Mapping[str, LinkClass] = field(default_factory=lambda: dict(LINK_CLASSES))
    #: The whole file as parsed, for the experiments' own tables.
    raw: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def table(self, experiment: str) -> dict[str, Any]:
        """What experiment ``experiment`` is handed: its own table, with the
        scenario's other keys filled in where it does not set them."""
        out: dict[str, Any] = {k: v for k, v in self.raw.items() if k != experiment}
        own = self.raw.get(experiment, {})
        if isinstance(own, Mapping):
            out.update(own)
        out["name"] = self.name
        out["seed"] = self.seed
        out["_scenario"] = self
        return out


# ------------------------------------------------------------------ checking


def check_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """A :class:`ConfigError` for the first key of ``table`` that is not in
    ``known``: a misspelt key must not leave its setting at the default
    without a word.  Names the known key it is closest to, when one is."""
    names = tuple(known)
    for key in table:
        if key in names:
            continue
        near = difflib.get_close_matches(str(key), names, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(names)}"
        raise ConfigError(f"{where}: unknown key {key!r} ({hint})")


def get_int(table: Mapping[str, Any], key: str, default: int, where: str, *, low: int,
            high: int) -> int:  # fmt: skip
    """``table[key]`` (or ``default``): a whole number in ``low..high``."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: a whole number in {low:,}..{high:,} (got {value!r})")
    return value


def get_float(table: Mapping[str, Any], key: str, default: float, where: str, *, low: float,
              high: float, above: bool = False) -> float:  # fmt: skip
    """``table[key]`` (or ``default``): a finite number in ``[low, high]``
    (``(low, high]`` when ``above``)."""
    value = table.get(key, default)
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (low < value if above else low <= value)
        and value <= high
    )
    if not ok:
        span = f"{'(' if above else '['}{low:g}, {high:g}]"
        raise ConfigError(f"{where}.{key}: a number in {span} (got {value!r})")
    return float(value)


def experiment_nodes(config: Mapping[str, Any], sc: Scenario, where: str) -> int:
    """The size of the one network an experiment builds: its table's
    ``nodes``, or the scenario's largest size."""
    return get_int(config, "nodes", sc.population.nodes[-1], where, low=2, high=MAX_NODES)


def link_class(name: str, spec: object, base: LinkClass | None, where: str, *, loss: bool = True,
               required: tuple[str, ...] = LINK_CLASS_KEYS[:3]) -> LinkClass:  # fmt: skip
    """Link class ``name`` from its table ``spec``: ``up`` and ``down`` in
    bytes/s, ``latency`` in seconds, ``loss`` (when the experiment models
    it) a probability.  Keys it leaves out are ``base``'s when it overrides
    a class; a new class names the ``required`` ones (the rest are 0)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a table with up, down, latency")
    check_keys(spec, LINK_CLASS_KEYS if loss else LINK_CLASS_KEYS[:3], where)
    if base is None:
        for key in required:
            if key not in spec:
                raise ConfigError(f"{where}.{key}: missing (a new link class names "
                                  f"{', '.join(required)})")  # fmt: skip
    up, down, latency, lost = (base.up, base.down, base.latency, base.loss) if base else (0.0,) * 4
    return LinkClass(
        name,
        get_float(spec, "up", up, where, low=MIN_BANDWIDTH, high=MAX_BANDWIDTH),
        get_float(spec, "down", down, where, low=MIN_BANDWIDTH, high=MAX_BANDWIDTH),
        get_float(spec, "latency", latency, where, low=0.0, high=MAX_LATENCY),
        get_float(spec, "loss", lost, where, low=0.0, high=MAX_LOSS) if loss else 0.0,
    )


def _get(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any,
         where: str) -> Any:  # fmt: skip
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}.{key}: expected {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table")
    return value


def _link_classes(raw: Mapping[str, Any]) -> dict[str, LinkClass]:
    classes = dict(LINK_CLASSES)
    for name, spec in _table(raw, "link_classes").items():
        classes[name] = link_class(name, spec, classes.get(name), f"link_classes.{name}")
    return classes


def _population(raw: Mapping[str, Any], classes: Mapping[str, LinkClass]) -> Population:
    t, w = _table(raw, "population"), "population"
    check_keys(t, TABLE_KEYS[w], w)
    d = Population()
    nodes_value = t.get("nodes", list(d.nodes))
    nodes_list = [nodes_value] if isinstance(nodes_value, int) else nodes_value
    if (
        not isinstance(nodes_list, list)
        or not nodes_list
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in nodes_list)
    ):
        raise ConfigError(f"{w}.nodes: expected a number or a list of numbers")
    for n in nodes_list:
        if not 2 <= n <= MAX_NODES:
            raise ConfigError(f"{w}.nodes: {n} is outside 2..{MAX_NODES}")
    free = get_float(t, "free_riders", d.free_riders, w, low=0.0, high=1.0)
    links_t = t.get("links", dict(d.links))
    if not isinstance(links_t, Mapping) or not links_t:
        raise ConfigError(f"{w}.links: expected a table of link class = share")
    links: list[tuple[str, float]] = []
    for name in links_t:
        if name not in classes:
            raise ConfigError(
                f"{w}.links: unknown link class {name!r} (known: {', '.join(sorted(classes))})"
            )
        links.append((name, get_float(links_t, name, 0.0, f"{w}.links", low=0.0, high=1e9)))
    if sum(s for _, s in links) <= 0:
        raise ConfigError(f"{w}.links: the shares add up to 0")
    return Population(tuple(nodes_list), free, tuple(links))


def _files(raw: Mapping[str, Any]) -> Files:
    t, w, d = _table(raw, "files"), "files", Files()
    check_keys(t, TABLE_KEYS[w], w)
    catalog = get_int(t, "catalog", d.catalog, w, low=1, high=MAX_CATALOG)
    per = get_int(t, "per_sharer", d.per_sharer, w, low=1, high=MAX_PER_SHARER)
    if per > catalog:
        raise ConfigError(f"{w}: per_sharer ({per}) is more than the catalog holds ({catalog})")
    zipf = get_float(t, "zipf", d.zipf, w, low=0.0, high=MAX_ZIPF)
    return Files(catalog, per, zipf)


def _topology(raw: Mapping[str, Any]) -> Topology:
    t, w, d = _table(raw, "topology"), "topology", Topology()
    check_keys(t, TABLE_KEYS[w], w)
    kind = _get(t, "kind", str, d.kind, w)
    if kind not in TOPOLOGIES:
        raise ConfigError(f"{w}.kind: {kind!r} is not one of {', '.join(TOPOLOGIES)}")
    degree = _get(t, "degree", int, d.degree, w)
    if not 1 <= degree <= 32:
        raise ConfigError(f"{w}.degree: must be in 1..32 (a servent's connection cap)")
    return Topology(kind, degree)


def _queries(raw: Mapping[str, Any]) -> Queries:
    t, w, d = _table(raw, "queries"), "queries", Queries()
    check_keys(t, TABLE_KEYS[w], w)
    count = _get(t, "count", int, d.count, w)
    if not 1 <= count <= MAX_QUERIES:
        raise ConfigError(f"{w}.count: must be in 1..{MAX_QUERIES}")
    interval = get_float(t, "interval", d.interval, w, low=0.0, high=MAX_QUERY_SECONDS)
    wait = get_float(t, "wait", d.wait, w, low=0.0, high=MAX_QUERY_SECONDS, above=True)
    return Queries(count, interval, wait)


def _churn(raw: Mapping[str, Any]) -> Churn:
    # Its other keys are the churn experiment's (it checks them).
    t, w, d = _table(raw, "churn"), "churn", Churn()
    session = _get(t, "session", str, d.session, w)
    if session not in SESSION_DISTRIBUTIONS:
        raise ConfigError(f"{w}.session: {session!r} is not one of "
                          f"{', '.join(SESSION_DISTRIBUTIONS)}")  # fmt: skip
    return Churn(
        session,
        get_float(t, "mean_session", d.mean_session, w, low=0.0, high=1e9, above=True),
        get_float(t, "mean_offline", d.mean_offline, w, low=0.0, high=1e9, above=True),
        get_float(t, "duration", d.duration, w, low=0.0, high=MAX_DURATION, above=True),
    )


def _events(raw: Mapping[str, Any]) -> tuple[Event, ...]:
    items = raw.get("events", [])
    if not isinstance(items, list):
        raise ConfigError("events: expected [[events]] tables")
    out = []
    for i, ev in enumerate(items):
        w = f"events[{i}]"
        if not isinstance(ev, Mapping):
            raise ConfigError(f"{w}: expected a table")
        check_keys(ev, EVENT_KEYS, w)
        if "at" not in ev:
            raise ConfigError(f"{w}.at: missing (the event's time, seconds)")
        at = get_float(ev, "at", 0.0, w, low=0.0, high=MAX_DURATION)
        kill = _get(ev, "kill", str, None, w)
        if kill not in KILL_TARGETS:
            raise ConfigError(f"{w}.kill: {kill!r} is not one of {', '.join(KILL_TARGETS)}")
        count = get_int(ev, "count", 1, w, low=1, high=MAX_NODES)
        on = ev.get("on", [])
        if isinstance(on, str):
            on = [on]
        if not isinstance(on, list) or not all(isinstance(a, str) for a in on):
            raise ConfigError(f"{w}.on: a list of architecture names")
        out.append(Event(at, kill, count, tuple(on)))
    return tuple(sorted(out, key=lambda e: e.at))


def parse_scenario(raw: Mapping[str, Any], *, source: str = "") -> Scenario:
    """Check a parsed TOML document and fill in the defaults."""
    name = _get(raw, "name", str, Path(source).stem or "scenario", "scenario")
    if not name or len(name) > 100 or any(c in name for c in "/\\") or not name.isprintable():
        # It names the default output folder, simulate-<name>: no path in it.
        raise ConfigError(f"scenario.name: {name!r} must be printable, at most 100 characters, "
                          "without / or \\")  # fmt: skip
    seed = _get(raw, "seed", int, 1, "scenario")
    exps = raw.get("experiments")
    arch = raw.get("architecture")
    if exps is None and arch is not None:
        # ``architecture = "bittorrent"``: a scenario of one experiment.
        exps = [arch] if isinstance(arch, str) else arch
    if exps is None:
        raise ConfigError("scenario: name its experiments (experiments = [\"search\", ...]) "
                          "or its architecture (architecture = \"bittorrent\")")  # fmt: skip
    if isinstance(exps, str):
        exps = [exps]
    if not isinstance(exps, list) or not exps or not all(isinstance(e, str) for e in exps):
        raise ConfigError("scenario.experiments: expected a list of experiment names")
    classes = _link_classes(raw)
    return Scenario(
        name=name,
        seed=seed,
        experiments=tuple(exps),
        population=_population(raw, classes),
        files=_files(raw),
        topology=_topology(raw),
        queries=_queries(raw),
        churn=_churn(raw),
        events=_events(raw),
        link_classes=classes,
        raw=dict(raw),
        source=source,
    )


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``peerlab/simulate/scenarios``."""
    folder = resources.files("peerlab.simulate") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def scenario_path(spec: str) -> Path:
    """A file path, or the name of a shipped scenario (``search``).  A
    folder of that name does not hide the shipped scenario: ``peerlab
    simulate search --out search`` can be run again from the same place."""
    path = Path(spec)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"no scenario file {spec}")
        return path
    shipped = resources.files("peerlab.simulate") / "scenarios" / f"{spec}.toml"
    if not shipped.is_file():
        what = f"{spec} is a folder, not a scenario file" if path.exists() else (
            f"no scenario {spec!r}")  # fmt: skip
        raise ConfigError(f"{what}: give a .toml file or one of {', '.join(shipped_scenarios())}")
    return Path(str(shipped))


def load_scenario(spec: str) -> Scenario:
    """Read and check a scenario file (or a shipped scenario by name)."""
    path = scenario_path(spec)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read scenario {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"scenario {path} is not valid TOML: {e}") from e
    return parse_scenario(raw, source=str(path))


def config_scenario(config: Mapping[str, Any]) -> Scenario:
    """The :class:`Scenario` behind an experiment's config (the engine puts
    it under ``_scenario``; a bare table, e.g. from a test, is parsed)."""
    sc = config.get("_scenario")
    if isinstance(sc, Scenario):
        return sc
    raw = {k: v for k, v in config.items() if not k.startswith("_")}
    raw.setdefault("experiments", ["search"])
    return parse_scenario(raw)
