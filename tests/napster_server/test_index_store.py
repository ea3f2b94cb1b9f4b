"""The Napster index store, both backends: accounts, sessions, shares,
search with every constraint, browse, mail, heartbeats and reaping."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from peerlab.errors import ConfigError
from peerlab.storage.napster_index import (
    Account,
    Constraint,
    IndexQuery,
    IndexStore,
    NewSession,
    OnlineUser,
    PostgresIndexStore,
    ScryptCost,
    SharedEntry,
    SqliteIndexStore,
    hash_password,
    new_salt,
    open_index_store,
    query_terms,
    verify_password,
)

MD5 = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[IndexStore]:
    if request.param == "sqlite":
        s: IndexStore = SqliteIndexStore(":memory:")
    else:
        s = PostgresIndexStore(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def login(
    store: IndexStore, nick: str, server: int, session: int, *, link: int = 7, port: int = 6699,
    ip: int = 16777343,
) -> OnlineUser:
    store.open_session(NewSession(nick, session, server, ip, port, link, "test 1.0", 1000.0))
    user = store.find_user(nick)
    assert user is not None
    return user


def entry(name: str, size: int = 1000, bitrate: int = 128, freq: int = 44100,
          duration: int = 200) -> SharedEntry:
    return SharedEntry(name, MD5, size, bitrate, freq, duration)


def names(hits: list[tuple[object, ...]]) -> set[object]:
    return {h[0] for h in hits}


def test_password_hash_round_trip() -> None:
    cost = ScryptCost(log2_n=4)
    stored = hash_password("s3cret", new_salt(random.Random(1)), cost)
    assert stored.startswith("scrypt$4$8$1$")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3creT", stored)
    # a different salt gives a different hash of the same password
    other = hash_password("s3cret", new_salt(random.Random(2)), cost)
    assert other != stored and verify_password("s3cret", other)
    for broken in ("", "scrypt$", "md5$x", "scrypt$99$8$1$AA$AA", "scrypt$4$8$1$!!$AA"):
        assert not verify_password("s3cret", broken)


def test_query_terms_fold_and_bound() -> None:
    assert query_terms(["Little  Toot", "café_Ólé.mp3"]) == ("little", "toot", "cafe", "ole", "mp3")
    assert len(query_terms([" ".join(f"w{i}" for i in range(50))])) == 8
    assert query_terms(['"*) OR (', "-"]) == ("or",)


def test_accounts_are_case_insensitive(store: IndexStore) -> None:
    acct = Account("Alice", "scrypt$x", "a@example.org", "User", 1.0, 1.0)
    assert store.create_account(acct)
    assert not store.create_account(Account("ALICE", "scrypt$y", "", "User", 2.0, 2.0))
    got = store.get_account("aLiCe")
    assert got is not None and got.nick == "Alice" and got.password_hash == "scrypt$x"
    store.touch_account("alice", 50.0)
    got = store.get_account("alice")
    assert got is not None and got.last_seen == 50.0
    assert store.get_account("bob") is None


def test_share_search_and_constraints(store: IndexStore) -> None:
    sid = store.register_server("a", 100.0)
    slow = login(store, "slow", sid, 1, link=2)
    fast = login(store, "fast", sid, 2, link=9)
    assert store.add_files(slow, [
        entry("Little Toot - Disney.mp3", size=3_000_000, bitrate=96, freq=22050, duration=180),
        entry("other song.mp3"),
    ]) == 2
    assert store.add_files(fast, [
        entry("C:\\Music\\little_toot (remix).mp3", size=5_000_000, bitrate=192, freq=44100,
              duration=240),
        entry("little toot.mp3", size=4_000_000, bitrate=128, freq=48000, duration=200),
    ]) == 2
    # sharing a name again is ignored
    assert store.add_files(fast, [entry("little toot.mp3")]) == 0
    assert store.find_user("fast").shared == 2  # type: ignore[union-attr]

    def q(*constraints: Constraint, limit: int = 100, terms: str = "little toot") -> set[object]:
        return names(store.search(IndexQuery(query_terms([terms]), limit, constraints)))

    everything = {"Little Toot - Disney.mp3", "C:\\Music\\little_toot (remix).mp3",
                  "little toot.mp3"}
    assert q() == everything
    assert q(terms="REMIX") == {"C:\\Music\\little_toot (remix).mp3"}
    assert q(terms="toot nothere") == set()
    assert len(q(limit=2)) == 2
    assert q(Constraint("link", ">=", 8)) == everything - {"Little Toot - Disney.mp3"}
    assert q(Constraint("link", "<=", 2)) == {"Little Toot - Disney.mp3"}
    assert q(Constraint("link", "=", 9), Constraint("bitrate", "=", 128)) == {"little toot.mp3"}
    assert q(Constraint("bitrate", ">=", 128)) == everything - {"Little Toot - Disney.mp3"}
    assert q(Constraint("bitrate", "<=", 128)) == everything - {
        "C:\\Music\\little_toot (remix).mp3"}
    assert q(Constraint("frequency", "=", 48000)) == {"little toot.mp3"}
    assert q(Constraint("frequency", "<=", 22050)) == {"Little Toot - Disney.mp3"}
    assert q(Constraint("size", ">=", 4_000_000)) == everything - {"Little Toot - Disney.mp3"}
    assert q(Constraint("size", "<=", 3_000_000)) == {"Little Toot - Disney.mp3"}
    assert q(Constraint("duration", ">=", 240)) == {"C:\\Music\\little_toot (remix).mp3"}
    with pytest.raises(ConfigError):
        store.search(IndexQuery(("x",), 5, (Constraint("nick", "=", 1),)))  # type: ignore[arg-type]

    hit = next(h for h in store.search(IndexQuery(("disney",), 10)))
    assert hit == ("Little Toot - Disney.mp3", MD5, 3_000_000, 96, 22050, 180, "slow",
                   16777343, 2)

    # the link type follows a change (napster.txt 700)
    store.update_user(slow.session_id, link=10, data_port=0)
    assert q(Constraint("link", "=", 10)) == {"Little Toot - Disney.mp3"}
    moved = store.find_user("slow")
    assert moved is not None and moved.link == 10 and moved.data_port == 0

    assert store.session_totals(fast.session_id) == (2, 9_000_000)
    ex = store.search(IndexQuery(("little", "toot"), 10, excludes=("remix", "disney")))
    assert names(ex) == {"little toot.mp3"}
    assert names(store.search(IndexQuery(("toot",), 10, server_id=sid + 1))) == set()
    assert len(store.search(IndexQuery(("toot",), 10, server_id=sid))) == 3

    assert store.remove_file(fast.session_id, "little toot.mp3") == 4_000_000
    assert store.remove_file(fast.session_id, "little toot.mp3") is None
    assert q() == everything - {"little toot.mp3"}
    assert store.remove_all_files(fast.session_id) == 1
    assert q() == {"Little Toot - Disney.mp3"}
    assert store.find_user("fast").shared == 0  # type: ignore[union-attr]


def test_browse_find_file_and_transfers(store: IndexStore) -> None:
    sid = store.register_server("a", 100.0)
    u = login(store, "Lefty", sid, 7)
    store.add_files(u, [entry(f"song {i}.mp3", size=i) for i in range(5)])
    listing = store.browse("lefty", 3)
    assert [r[0] for r in listing] == ["song 0.mp3", "song 1.mp3", "song 2.mp3"]
    assert listing[1] == ("song 1.mp3", MD5, 1, 128, 44100, 200)
    found = store.find_file("LEFTY", "song 3.mp3")
    assert found is not None
    user, f = found
    assert user.nick == "Lefty" and user.data_port == 6699 and f.size == 3
    assert store.find_file("lefty", "nope.mp3") is None
    assert store.find_file("nobody", "song 3.mp3") is None
    store.count_transfer(u.session_id, "download", 1)
    store.count_transfer(u.session_id, "download", 1)
    store.count_transfer(u.session_id, "download", -1)
    store.count_transfer(u.session_id, "upload", -1)  # never below zero
    after = store.find_user("lefty")
    assert after is not None
    assert (after.downloads, after.total_downloads, after.uploads, after.total_uploads) == (
        1, 2, 0, 0)


def test_ghost_session_is_replaced(store: IndexStore) -> None:
    a = store.register_server("a", 100.0)
    b = store.register_server("b", 100.0)
    old = login(store, "bob", a, 11)
    store.add_files(old, [entry("bob song.mp3")])
    replaced = store.open_session(NewSession("BOB", 22, b, 1, 2, 3, "x", 5.0))
    assert replaced is not None
    assert (replaced.nick, replaced.session_id, replaced.server_id) == ("bob", 11, a)
    assert store.search(IndexQuery(("bob",), 10)) == []
    now = store.find_user("bob")
    assert now is not None and now.session_id == 22 and now.server_id == b
    # the old session's logout must not remove the new one
    assert store.close_session(11) == 0
    assert store.find_user("bob") is not None


def test_mail_is_per_server_and_in_order(store: IndexStore) -> None:
    a = store.register_server("a", 100.0)
    b = store.register_server("b", 100.0)
    store.post(b, 5, 501, "first")
    store.post(a, 6, 404, "for a")
    store.post(b, 5, 748, "", close=True)
    got = store.take_mail(b)
    assert [(m.session_id, m.msg_type, m.payload, m.close) for m in got] == [
        (5, 501, "first", False), (5, 748, "", True)]
    assert store.take_mail(b) == []
    assert [m.payload for m in store.take_mail(a)] == ["for a"]


def test_dead_server_is_hidden_then_reaped(store: IndexStore) -> None:
    # The PostgreSQL backend uses the database's clock, so the test uses real
    # time there: a heartbeat far in the past stands for a dead server.
    import time

    now = time.time()
    live = store.register_server("live", now)
    dead = store.register_server("dead", now)
    u1 = login(store, "alive1", live, 1)
    u2 = login(store, "dying2", dead, 2)
    store.add_files(u1, [entry("common alive.mp3")])
    store.add_files(u2, [entry("common dying.mp3"), entry("common dying 2.mp3")])
    store.post(dead, 2, 205, "lost")
    assert store.heartbeat(live, now, 1, 1, 1000)
    assert store.heartbeat(dead, now, 1, 2, 2000)
    assert store.stale_servers(now, 30.0) == []
    stats = store.farm_stats(now, 30.0)
    assert (stats.users, stats.files, stats.bytes) == (2, 3, 3000)

    assert names(store.search(IndexQuery(("common",), 10), exclude_servers=[dead])) == {
        "common alive.mp3"}
    # no reap while the heartbeat is fresh
    assert store.reap_server(dead, now, 30.0) == 0
    # seen from an hour later, both are stale; reaping "dead" takes its rows
    later = now + 3600.0
    if isinstance(store, PostgresIndexStore):
        # the database clock cannot be moved: age the row instead
        with store._tx() as c:
            c.execute("UPDATE servers SET heartbeat = heartbeat - 3600 WHERE id = ?", (dead,))
        later = now
    assert dead in store.stale_servers(later, 30.0)
    assert store.reap_server(dead, later, 30.0) == 2
    assert store.reap_server(dead, later, 30.0) == 0
    assert names(store.search(IndexQuery(("common",), 10))) == {"common alive.mp3"}
    assert store.find_user("dying2") is None
    assert store.take_mail(dead) == []
    assert not store.heartbeat(dead, later, 0, 0, 0)  # it learns it was declared dead
    store.unregister_server(live)
    assert store.find_user("alive1") is None
    assert store.search(IndexQuery(("common",), 10)) == []


def test_open_index_store_urls(tmp_path: object) -> None:
    s = open_index_store("sqlite::memory:")
    assert isinstance(s, SqliteIndexStore)
    s.close()
    for bad in ("mysql://x/y", "sqlite:", "postgresql://"):
        with pytest.raises(ConfigError):
            open_index_store(bad)
