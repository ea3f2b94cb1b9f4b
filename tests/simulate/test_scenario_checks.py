"""A scenario is checked whole before anything runs: every key is one
something reads (a misspelt one is an error naming its nearest neighbour,
not a silent default), and every value is in a range that ends."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import ConfigError
from peerlab.simulate.engine import check_scenario, run_scenario
from peerlab.simulate.scenario import (
    EVENT_KEYS,
    LINK_CLASS_KEYS,
    MAX_BANDWIDTH,
    MIN_BANDWIDTH,
    TABLE_KEYS,
    check_keys,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)


def doc(experiment: str, **tables: Any) -> dict[str, Any]:
    return {"experiments": [experiment], **tables}


def checked(raw: dict[str, Any]) -> None:
    check_scenario(parse_scenario(raw))


def test_a_misspelt_key_names_its_nearest_neighbour() -> None:
    near = r"^population: unknown key 'node' \(did you mean 'nodes'\?\)$"
    with pytest.raises(ConfigError, match=near):
        check_keys({"node": 3}, TABLE_KEYS["population"], "population")
    far = r"unknown key 'colour' \(known: nodes, free_riders, links\)"
    with pytest.raises(ConfigError, match=far):
        check_keys({"colour": 3}, TABLE_KEYS["population"], "population")
    check_keys({"nodes": 3, "links": {}}, TABLE_KEYS["population"], "population")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        # keys nothing reads, at every level
        (doc("search", populaton={}), "scenario: unknown key 'populaton' (did"),
        (doc("search", serch={"ttls": [2]}), "did you mean 'search'?"),
        (doc("search", search={"ttl": [2]}), "search: unknown key 'ttl' (did you"),
        (doc("search", files={"zip": 1.0}), "files: unknown key 'zip'"),
        (doc("search", topology={"kind": "random", "degre": 3}), "topology: unknown key 'degre'"),
        (doc("search", queries={"waiting": 3}), "queries: unknown key 'waiting'"),
        (doc("search", events=[{"at": 1, "kill": "random", "cont": 2}]), "events[0]: unknown"),
        (doc("search", link_classes={"dsl": {"upload": 9000}}), "link_classes.dsl: unk"),
        (doc("resilience", resilience={"trails": 2}), "did you mean 'trials'?"),
        (doc("churn", churn={"samples": 2.0}), "did you mean 'sample'?"),
        # a [churn] table in a search scenario is still checked
        (doc("search", churn={"mean_sesion": 9.0}), "did you mean 'mean_session'?"),
        (doc("bittorrent", bittorrent={"flash_crowds": [10]}), "bittorrent: unknown key"),
        (doc("bittorrent", bittorrent={"pickers": {"strategy": [2]}}), "mean 'strategies'?"),
        (doc("bittorrent", bittorrent={"free_riders": {"chokers": "random"}}), "chokers: expected"),
        # values that would never end, or make no sense
        (doc("search", files={"catalog": 10**9}), "files.catalog"),
        (doc("search", files={"per_sharer": 50, "catalog": 40}), "per_sharer (50) is more"),
        (doc("search", files={"zipf": 1e300}), "files.zipf"),
        (doc("search", queries={"wait": 1e300}), "queries.wait"),
        (doc("search", queries={"wait": 0}), "queries.wait"),
        (doc("search", queries={"interval": math.nan}), "queries.interval"),
        (doc("search", churn={"duration": 1e12}), "churn.duration"),
        (doc("search", churn={"mean_session": math.inf}), "churn.mean_session"),
        (doc("search", link_classes={"dsl": {"up": 1e-9}}), "link_classes.dsl.up"),
        (doc("search", link_classes={"dsl": {"down": math.nan}}), "link_classes.dsl.down"),
        (doc("search", link_classes={"dsl": {"latency": 60}}), "link_classes.dsl.latency"),
        (doc("search", link_classes={"dsl": {"loss": 0.9}}), "link_classes.dsl.loss"),
        (doc("search", link_classes={"isdn": {"up": 8000, "down": 8000}}), "isdn.latency: missing"),
        (doc("search", events=[{"kill": "random"}]), "events[0].at: missing"),
        (doc("search", events=[{"at": 1, "kill": "random", "count": 0}]), "events[0].count"),
        (doc("search", search={"ttls": [True]}), "search.ttls"),
        (doc("resilience", resilience={"nodes": "many"}), "resilience.nodes"),
        (doc("resilience", resilience={"nodes": True}), "resilience.nodes"),
        (doc("resilience", resilience={"nodes": 1}), "resilience.nodes"),
        (doc("resilience", resilience={"recover": math.inf}), "resilience.recover"),
        (doc("resilience", resilience={"trials": 0}), "resilience.trials"),
        (doc("resilience", resilience={"fractions": [True]}), "resilience.fractions"),
        (doc("resilience", resilience={"ttl": True}), "resilience.ttl"),
        (doc("churn", churn={"sample": math.nan}), "churn.sample"),
        (doc("churn", churn={"sample": 1e-9}), "churn.sample"),
        (doc("churn", churn={"per_sample": False}), "churn.per_sample"),
        (doc("churn", churn={"nodes": 10**6}), "churn.nodes"),
        (doc("bittorrent", bittorrent={"link_classes": {"t1": {"up": math.nan}}}), "classes.t1.up"),
        (doc("bittorrent", bittorrent={"leecher_links": {"dsl": math.inf}}), "bittorrent.dsl"),
        # the name becomes the default output folder, simulate-<name>
        (doc("search", name="../../etc"), "scenario.name"),
        (doc("search", name="a\nb"), "scenario.name"),
    ],
)  # fmt: skip
def test_every_mistake_is_refused_before_anything_runs(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        checked(raw)
    assert words in str(caught.value)


def test_every_shipped_scenario_passes_its_checks() -> None:
    for name in shipped_scenarios():
        check_scenario(load_scenario(name))


def test_a_mistake_in_the_last_experiment_costs_no_run(tmp_path: Path) -> None:
    # search would run first and write its files; the typo is in [bittorrent]
    spec = tmp_path / "two.toml"
    spec.write_text(
        'experiments = ["search", "bittorrent"]\n'
        "[population]\nnodes = 20\n[queries]\ncount = 2\nwait = 1.0\n"
        '[search]\narchitectures = ["napster"]\nttls = [1]\n'
        "[bittorrent.free_riders]\nshare = 2.0\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"bittorrent\.share"):
        run_scenario(str(spec), out=out)
    assert not out.exists()


# -- any document: a checked scenario or a ConfigError, nothing else

LEAVES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1e6),
    st.sampled_from(["search", "napster", "gnutella", "random", "preferential", "t1", "dsl",
                     "exponential", "seed", "x/y", ""]),
)  # fmt: skip
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4), max_leaves=6)


def table(
    keys: tuple[str, ...] | list[str], values: st.SearchStrategy[Any] = VALUES
) -> st.SearchStrategy[dict[str, Any]]:
    """A table of mostly the right keys (now and then a wrong one)."""
    return st.dictionaries(st.sampled_from([*keys, "colour"]), values, max_size=len(keys) + 1)


LINKS = st.dictionaries(st.sampled_from(["dsl", "t1", "isdn"]), table(LINK_CLASS_KEYS), max_size=2)
DOCUMENTS = st.fixed_dictionaries(
    {"experiments": st.sampled_from([["search"], ["resilience"], ["churn"], ["bittorrent"]])},
    optional={
        "name": st.sampled_from(["x", "a b", "../x", "", "é"]),
        "seed": st.integers(min_value=-(2**40), max_value=2**40),
        **{name: table(keys) for name, keys in TABLE_KEYS.items() if name != "churn"},
        "churn": table([*TABLE_KEYS["churn"], "sample", "per_sample", "ttl", "nodes"]),
        "events": st.lists(table(EVENT_KEYS), max_size=3),
        "link_classes": LINKS,
        "search": table(["architectures", "ttls"]),
        "resilience": table(["architectures", "fractions", "ttl", "recover", "nodes", "trials"]),
        "bittorrent": table(["file_size", "sizes", "seed_link", "stagger", "time_limit",
                             "pickers", "free_riders", "link_classes"],
                            VALUES | table(["leechers", "share", "strategies", "up"]) | LINKS),
    },
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(DOCUMENTS)
def test_any_document_is_checked_or_refused_in_one_line(raw: dict[str, Any]) -> None:
    try:
        sc = parse_scenario(raw)
        check_scenario(sc)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    for lc in sc.link_classes.values():
        assert MIN_BANDWIDTH <= lc.up <= MAX_BANDWIDTH and math.isfinite(lc.latency)
    assert all(2 <= n for n in sc.population.nodes) and math.isfinite(sc.queries.wait)
