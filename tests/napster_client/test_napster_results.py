"""Search results: a Napster hit joins the result of the same file (Napster md5
and size) whoever found it first; the JSON carries Napster's columns."""

from __future__ import annotations

from peerlab.apps.node import Results, SourceRef

MD5 = "c6ce338ced8b0ace6d67ccb29eddf3fb"
URN = "urn:sha1:WJUVFVU4SYYCEOVZBBABPKSFX3B7MJI6"


def _napster(results: Results, nick: str, size: int = 1000, md5: str = MD5, link: int = 7) -> int:
    r = results.note(
        urn=None, name="Little Toot.mp3", size=size,
        source=SourceRef(None, None, "Little Toot.mp3", nick=nick, link=link,
                         filename=f"share\\{nick}\\Little Toot.mp3", bitrate=320, md5=md5),
        chunk_root=None, meta={"bitrate": 320}, napster_md5=md5,
    )  # fmt: skip
    return r.id


def test_napster_users_of_one_file_are_one_result() -> None:
    results = Results()
    a = _napster(results, "lefty")
    b = _napster(results, "jane", link=8)
    c = _napster(results, "mred", size=1001)  # another size: another file
    d = _napster(results, "bob", md5="0" * 31 + "1")  # another md5
    assert a == b and len({a, c, d}) == 3
    r = results.by_id(a)
    assert r is not None
    js = r.to_json()
    assert js["urn"] is None and js["napster_md5"] == MD5
    assert js["sources"] == ["napster:lefty", "napster:jane"]
    assert [(u["nick"], u["link"], u["bitrate"]) for u in js["users"]] == [
        ("lefty", "Cable", 320), ("jane", "DSL", 320)
    ]
    assert (js["user"], js["link"]) == ("lefty", "Cable")


def test_a_napster_hit_joins_the_file_we_know_by_urn() -> None:
    results = Results()
    local = results.note(urn=URN, name="x.mp3", size=1000, source=SourceRef(None, 3, "x.mp3"),
                         chunk_root=None, meta={}, napster_md5=MD5.upper())
    http = results.note(urn=URN, name="x.mp3", size=1000,
                        source=SourceRef(("127.0.0.1", 6346), 1, "x.mp3"), chunk_root=None,
                        meta={})
    nap = _napster(results, "lefty")
    assert local.id == http.id == nap
    r = results.by_urn(URN)
    assert r is not None and r.urn == URN
    assert list(r.sources) == ["local", "127.0.0.1:6346", "napster:lefty"]
    assert r.to_json()["users"][0]["nick"] == "lefty"


def test_a_urn_learnt_later_names_a_napster_result() -> None:
    results = Results()
    nap = _napster(results, "lefty")
    local = results.note(urn=URN, name="x.mp3", size=1000, source=SourceRef(None, 3, "x.mp3"),
                         chunk_root=None, meta={}, napster_md5=MD5)
    assert local.id == nap and results.by_urn(URN) is local


def test_forgetting_old_results_forgets_their_md5() -> None:
    results = Results(limit=2)
    first = _napster(results, "lefty", size=1)
    _napster(results, "lefty", size=2)
    _napster(results, "lefty", size=3)
    assert results.by_id(first) is None
    assert _napster(results, "jane", size=1) not in (first,)
