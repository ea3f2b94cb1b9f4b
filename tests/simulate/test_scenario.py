"""Scenario files: defaults, checks naming the key, shipped scenarios."""

from __future__ import annotations

import tomllib

import pytest

from peerlab.errors import ConfigError
from peerlab.simulate.scenario import (
    LINK_CLASSES,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)


def test_defaults_and_the_experiment_table() -> None:
    sc = parse_scenario({"experiments": ["search"], "search": {"ttls": [2]},
                         "queries": {"count": 7}})  # fmt: skip
    assert sc.seed == 1 and sc.population.free_riders == 0.7
    assert sc.queries.count == 7 and sc.topology.kind == "random"
    table = sc.table("search")
    assert table["ttls"] == [2] and table["queries"] == {"count": 7}
    assert table["_scenario"] is sc


def test_link_classes_are_the_lectures() -> None:
    assert set(LINK_CLASSES) >= {"modem14k", "modem56k", "dsl", "cable", "t1"}
    assert LINK_CLASSES["modem14k"].down == 1800.0  # 14.4 kbit/s in bytes/s
    assert LINK_CLASSES["t1"].up == LINK_CLASSES["t1"].down == 193_000.0
    sc = parse_scenario({"experiments": ["search"],
                         "link_classes": {"isdn": {"up": 8000, "down": 8000, "latency": 0.03}},
                         "population": {"links": {"isdn": 1}}})  # fmt: skip
    assert sc.population.links == (("isdn", 1.0),)
    assert sc.link_classes["isdn"].latency == 0.03


def test_architecture_bittorrent_is_an_experiment_of_its_own() -> None:
    sc = parse_scenario({"architecture": "bittorrent", "bittorrent": {"leechers": 10}})
    assert sc.experiments == ("bittorrent",)
    assert sc.table("bittorrent")["leechers"] == 10


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({}, "experiments"),
        ({"experiments": ["search"], "population": {"nodes": 1}}, "population.nodes"),
        ({"experiments": ["search"], "population": {"links": {"carrier-pigeon": 1}}},
         "carrier-pigeon"),
        ({"experiments": ["search"], "population": {"free_riders": 1.5}}, "free_riders"),
        ({"experiments": ["search"], "events": [{"at": 1, "kill": "everyone"}]},
         "events[0].kill"),
        ({"experiments": ["search"], "churn": {"session": "weibull"}}, "churn.session"),
        ({"experiments": ["search"], "topology": {"kind": "ring"}}, "topology.kind"),
        ({"experiments": ["search"], "files": {"catalog": 3, "per_sharer": 5}}, "files"),
        ({"experiments": ["search"], "queries": {"count": "many"}}, "queries.count"),
    ],
)
def test_mistakes_name_the_key(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(raw)


def test_events_sorted_and_aimed() -> None:
    sc = parse_scenario({"experiments": ["churn"], "events": [
        {"at": 50, "kill": "random", "count": 3},
        {"at": 10, "kill": "index-server", "on": "napster"},
    ]})  # fmt: skip
    assert [(e.at, e.kill, e.count, e.on) for e in sc.events] == [
        (10.0, "index-server", 1, ("napster",)), (50.0, "random", 3, ())]  # fmt: skip


def test_every_shipped_scenario_loads() -> None:
    names = shipped_scenarios()
    assert {"search", "resilience", "churn", "growth"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.experiments
    assert load_scenario("growth").population.nodes == (1000, 3000, 10000)


def test_files_and_bad_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="no scenario"):
        load_scenario("no-such-scenario")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(str(bad))
    good = tmp_path / "g.toml"
    good.write_text('experiments = ["search"]\n', encoding="utf-8")
    assert load_scenario(str(good)).name == "g"
    assert tomllib.loads(good.read_text())["experiments"] == ["search"]


def test_a_folder_does_not_hide_a_shipped_scenario(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # `peerlab simulate search --out search`, then the same again from there.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "search").mkdir()
    assert load_scenario("search").name == "search"
    (tmp_path / "mine").mkdir()
    with pytest.raises(ConfigError, match="mine is a folder, not a scenario file"):
        load_scenario("mine")
    (tmp_path / "search.toml").mkdir()
    with pytest.raises(ConfigError, match="no scenario file search.toml"):
        load_scenario("search.toml")
