"""peerlab.storage.catalog: folders, scans, rescans, search, safety rules."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.apps.media import write_mp3
from peerlab.errors import ConfigError, StorageError
from peerlab.storage import catalog as catalog_mod
from peerlab.storage import hashing
from peerlab.storage.catalog import (
    MAX_SEARCH_LIMIT,
    PROGRESS_EVERY_BYTES,
    Catalog,
    ScanProgress,
    SharedFile,
    fts_query,
)
from peerlab.wire.chunks import ChunkList
from peerlab.wire.urn import sha1_urn


def names(files: list[SharedFile]) -> list[str]:
    return [f.name for f in files]


def count_hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every path the catalog hands to the hasher."""
    seen: list[Path] = []
    real = catalog_mod.hash_files

    def spy(paths, **kw):  # type: ignore[no-untyped-def]
        def tap():  # type: ignore[no-untyped-def]
            for p in paths:
                seen.append(Path(p))
                yield p

        return real(tap(), **kw)

    monkeypatch.setattr(catalog_mod, "hash_files", spy)
    return seen


# ------------------------------------------------------------------ folders


def test_add_folder_refuses_missing_and_non_folders(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        catalog.add_folder(tmp_path / "nope")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        catalog.add_folder(f)
    assert catalog.folders() == []


def test_add_folder_resolves_and_is_idempotent(catalog: Catalog, share: Path) -> None:
    link = share.parent / "link"
    link.symlink_to(share)
    assert catalog.add_folder(link) == share.resolve()
    assert catalog.add_folder(share) == share.resolve()
    assert catalog.folders() == [share.resolve()]


def test_remove_folder_drops_its_files(catalog: Catalog, share: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    catalog.add_folder(share)
    catalog.add_folder(other)
    catalog.scan()
    assert catalog.count() == 10
    catalog.remove_folder(share)
    assert names(catalog.files()) == ["x.txt"]
    assert catalog.search("linkin") == []
    with pytest.raises(ConfigError, match="not a shared folder"):
        catalog.remove_folder(share)


# ------------------------------------------------------------------ scanning


def test_scan_lists_every_file_with_hashes_and_tags(catalog: Catalog, share: Path) -> None:
    root = catalog.add_folder(share)
    report = catalog.scan()
    assert (report.files, report.added, report.hashed, report.removed) == (9, 9, 9, 0)
    assert report.errors == () and report.skipped == ()
    files = catalog.files()
    assert len(files) == catalog.count() == 9
    assert report.bytes == sum(f.size for f in files) == catalog.total_size()
    for f in files:
        data = f.path.read_bytes()
        assert f.root == root and f.path.is_absolute() and f.name == f.path.name
        assert f.size == len(data)
        assert f.sha1 == hashlib.sha1(data).digest()
        assert f.urn == sha1_urn(f.sha1)
        expected = ChunkList.of_bytes(data)
        assert catalog.chunk_list(f) == expected
        assert f.chunk_root == expected.root and f.chunk_size == expected.chunk_size
        assert catalog.by_index(f.index) == f
    numb = next(f for f in files if f.name == "Linkin_Park-Numb.mp3")
    assert (numb.kind, numb.mime, numb.title, numb.artist, numb.album, numb.genre) == (
        "audio", "audio/mpeg", "Numb", "Linkin Park", "Meteora", "Rock",
    )  # fmt: skip
    assert numb.bitrate == 128 and numb.sample_rate == 44100
    assert numb.duration == pytest.approx(3.0, abs=0.05)
    pdf = next(f for f in files if f.kind == "document" and f.name.endswith(".pdf"))
    assert pdf.title is None and pdf.bitrate is None
    nested = next(f for f in files if f.name == "One More Time.mp3")
    assert nested.path == root / "Daft Punk" / "Discovery" / "One More Time.mp3"


def test_by_urn_accepts_every_spelling(catalog: Catalog, share: Path) -> None:
    catalog.add_folder(share)
    catalog.scan()
    f = catalog.files()[0]
    b32 = f.urn.split(":")[-1]
    for key in (f.urn, f.urn.upper(), b32, b32.lower(), f.sha1, "  " + f.urn + " "):
        assert catalog.by_urn(key) == f
    for junk in ("urn:sha1:", "urn:sha1:!!!!", "x" * 40, "", b"\x00" * 19, b"\x00" * 20):
        assert catalog.by_urn(junk) is None
    assert catalog.by_index(999999) is None


def test_rescan_rehashes_only_changed_files(
    catalog: Catalog, share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog.add_folder(share)
    catalog.scan()
    before = {f.name: f for f in catalog.files()}

    hashed = count_hashed(monkeypatch)
    report = catalog.scan()
    assert hashed == []
    assert (report.hashed, report.unchanged, report.added, report.changed) == (0, 9, 0, 0)
    assert {f.name: f for f in catalog.files()} == before

    # One file rewritten, one touched (same bytes), one new, one deleted.
    (share / "park_walk.txt").write_bytes(b"a longer walk in the park\n")
    halo = share / "01 - Halo.mp3"
    st = halo.stat()
    os.utime(halo, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    (share / "new.txt").write_text("new")
    (share / "MyHolidayVideo.mkv").unlink()

    report = catalog.scan()
    assert sorted(p.name for p in hashed) == ["01 - Halo.mp3", "new.txt", "park_walk.txt"]
    assert (report.hashed, report.added, report.changed, report.removed, report.unchanged) == (
        3, 1, 2, 1, 6,
    )  # fmt: skip
    after = {f.name: f for f in catalog.files()}
    assert "MyHolidayVideo.mkv" not in after
    assert catalog.by_urn(before["MyHolidayVideo.mkv"].sha1) is None
    assert catalog.by_index(before["MyHolidayVideo.mkv"].index) is None
    for name in before:
        if name not in ("park_walk.txt", "MyHolidayVideo.mkv", "01 - Halo.mp3"):
            assert after[name] == before[name]
    # Same content, new mtime: same index.  New content: a new index, never
    # an old one reused.
    assert after["01 - Halo.mp3"].index == before["01 - Halo.mp3"].index
    assert after["01 - Halo.mp3"].mtime_ns != before["01 - Halo.mp3"].mtime_ns
    walk = after["park_walk.txt"]
    assert walk.index > max(f.index for f in before.values())
    assert walk.sha1 == hashlib.sha1(b"a longer walk in the park\n").digest()
    assert catalog.by_index(before["park_walk.txt"].index) is None
    assert catalog.search("longer") == []  # names are indexed, not contents
    assert names(catalog.search("walk")) == ["park_walk.txt"]


def test_indexes_survive_a_restart_and_are_never_reused(share: Path, tmp_path: Path) -> None:
    db = tmp_path / "db" / "c.db"
    with Catalog(db) as cat:
        cat.add_folder(share)
        cat.scan()
        first = {f.name: f.index for f in cat.files()}
    top = max(first, key=lambda n: first[n])
    (share / top).unlink()
    (share / "fresh.txt").write_text("fresh")
    with Catalog(db) as cat:
        report = cat.scan()
        assert (report.unchanged, report.added, report.removed) == (8, 1, 1)
        now = {f.name: f.index for f in cat.files()}
    assert {n: i for n, i in now.items() if n != "fresh.txt"} == {
        n: i for n, i in first.items() if n != top
    }
    assert now["fresh.txt"] > first[top]


def test_progress_reports_drive_a_bar(catalog: Catalog, share: Path) -> None:
    big = share / "big.bin"
    big.write_bytes(os.urandom(2 * PROGRESS_EVERY_BYTES + 12345))
    catalog.add_folder(share)
    seen: list[ScanProgress] = []
    catalog.scan(progress=seen.append)
    total = sum(p.stat().st_size for p in share.rglob("*") if p.is_file())
    assert seen[0] == ScanProgress(0, 10, 0, total, None)
    assert seen[-1] == ScanProgress(10, 10, total, total, None)
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(seen, seen[1:], strict=False))
    assert all(a.files_done <= b.files_done for a, b in zip(seen, seen[1:], strict=False))
    during_big = [p for p in seen if p.current == big.resolve()]
    assert len(during_big) >= 3  # two mid-file reports, one as it finishes
    assert {p.files_done for p in seen} == set(range(11))
    # A rescan with nothing to do reports zero work.
    seen.clear()
    catalog.scan(progress=seen.append)
    assert seen[0] == seen[-1] == ScanProgress(0, 0, 0, 0, None)


# ------------------------------------------------------------------ safety


def test_symlinks_leading_out_are_skipped(catalog: Catalog, share: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwords.txt").write_text("hunter2")
    (share / "escape.txt").symlink_to(outside / "passwords.txt")
    (share / "escape_dir").symlink_to(outside)
    (share / "rel_escape.txt").symlink_to("../secret/passwords.txt")
    (share / "inside.txt").symlink_to(share / "park_walk.txt")
    (share / "loop").symlink_to(share)  # a directory loop, never followed
    (share / "dangling.txt").symlink_to(share / "gone.txt")
    catalog.add_folder(share)
    report = catalog.scan()
    listed = {f.name: f for f in catalog.files()}
    assert "escape.txt" not in listed and "rel_escape.txt" not in listed
    assert not any("passwords" in n for n in listed)
    assert all(str(f.path).startswith(str(share.resolve())) for f in listed.values())
    assert listed["inside.txt"].sha1 == listed["park_walk.txt"].sha1
    reasons = {p.name: r for p, r in report.skipped}
    assert reasons["escape.txt"] == reasons["rel_escape.txt"] == reasons["escape_dir"]
    assert "outside" in reasons["escape.txt"]
    assert "dangling.txt" in {p.name for p, _ in report.errors}
    assert catalog.count() == 10


def test_an_unreadable_file_is_reported_not_fatal(
    catalog: Catalog, share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = share / "locked.txt"
    locked.write_text("private")
    locked.chmod(0)
    if os.geteuid() == 0:
        # root reads through mode 0: make the open fail the way it would.
        real = hashing._open_regular

        def deny(path: Path):  # type: ignore[no-untyped-def]
            if Path(path).name == "locked.txt":
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(hashing, "_open_regular", deny)
    catalog.add_folder(share)
    report = catalog.scan()
    assert [(p.name, "Permission denied" in r) for p, r in report.errors] == [("locked.txt", True)]
    assert report.error_count == 1
    assert catalog.count() == 9 and "locked.txt" not in names(catalog.files())
    locked.chmod(0o644)
    monkeypatch.undo()
    report = catalog.scan()
    assert report.errors == () and report.added == 1
    assert "locked.txt" in names(catalog.files())


def test_special_files_are_skipped(catalog: Catalog, share: Path) -> None:
    os.mkfifo(share / "pipe.mp3")
    catalog.add_folder(share)
    report = catalog.scan()
    assert [(p.name, r) for p, r in report.skipped] == [("pipe.mp3", "not a regular file")]
    assert catalog.count() == 9


def test_excluded_and_hidden_paths_and_the_database_are_not_shared(
    share: Path, tmp_path: Path
) -> None:
    incomplete = share / "incomplete"
    incomplete.mkdir()
    (incomplete / "part.mp3.part").write_bytes(b"x" * 100)
    (share / ".hidden").mkdir()
    (share / ".hidden" / "h.txt").write_text("h")
    (share / ".DS_Store").write_text("junk")
    with Catalog(share / "db" / "catalog.db", exclude=[incomplete]) as cat:
        cat.add_folder(share)
        cat.scan()
        listed = names(cat.files())
        assert len(listed) == 9
        assert not any(n.startswith(("catalog.db", "part", ".")) for n in listed)
        assert not any(n.startswith("h.") for n in listed)


def test_invalid_utf8_names_are_skipped(catalog: Catalog, share: Path) -> None:
    with open(os.path.join(os.fsencode(share), b"bad\xffname.txt"), "wb") as f:
        f.write(b"x")
    catalog.add_folder(share)
    report = catalog.scan()
    assert [r for _, r in report.skipped] == ["name is not valid UTF-8"]
    assert catalog.count() == 9


def test_nested_shares_list_each_file_once(catalog: Catalog, share: Path) -> None:
    outer = catalog.add_folder(share)
    inner = catalog.add_folder(share / "Daft Punk")
    catalog.scan()
    files = catalog.files()
    assert len(files) == 9
    daft = next(f for f in files if f.name == "One More Time.mp3")
    assert daft.root == inner
    assert {f.root for f in files} == {outer, inner}


def test_chunk_list_of_a_vanished_file_raises(catalog: Catalog, share: Path) -> None:
    catalog.add_folder(share)
    catalog.scan()
    f = next(x for x in catalog.files() if x.name == "park_walk.txt")
    (share / "park_walk.txt").unlink()
    catalog.scan()
    with pytest.raises(StorageError, match="no longer shared"):
        catalog.chunk_list(f)


def test_the_database_is_in_wal_mode_and_readable_by_another_process(
    catalog: Catalog, share: Path
) -> None:
    catalog.add_folder(share)
    catalog.scan()
    con = sqlite3.connect(catalog.db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    with Catalog(catalog.db_path) as second:
        assert second.count() == 9
        assert names(second.search("numb", field="title")) == ["Linkin_Park-Numb.mp3"]


def test_a_corrupt_database_is_a_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match="cannot open the catalog"):
        Catalog(db)


def test_closed_catalog_raises_storage_error(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db")
    cat.close()
    cat.close()
    with pytest.raises(StorageError, match="closed"):
        cat.files()


def test_searches_keep_working_during_a_scan(catalog: Catalog, share: Path) -> None:
    for i in range(6):
        (share / f"bulk{i}.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    catalog.add_folder(share)
    errors: list[BaseException] = []
    done = threading.Event()

    def scan() -> None:
        try:
            catalog.scan()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=scan)
    t.start()
    rounds = 0
    while not done.is_set() and rounds < 10_000:
        catalog.search("linkin park")
        catalog.files()
        catalog.count()
        rounds += 1
    t.join(timeout=60)
    assert not t.is_alive() and errors == []
    assert catalog.count() == 15


# ------------------------------------------------------------------ search


@pytest.fixture
def scanned(catalog: Catalog, share: Path) -> Catalog:
    catalog.add_folder(share)
    catalog.scan()
    return catalog


def test_search_splits_file_names_on_punctuation(searchable: Catalog) -> None:
    assert names(searchable.search("annual report 2024")) == ["Annual_Report-2024.final.pdf"]
    assert names(searchable.search("report final")) == ["Annual_Report-2024.final.pdf"]
    assert names(searchable.search("holiday video")) == ["MyHolidayVideo.mkv"]
    assert names(searchable.search("myholidayvideo")) == ["MyHolidayVideo.mkv"]
    assert names(searchable.search("LINKIN_PARK numb")) == ["Linkin_Park-Numb.mp3"]


def test_search_ranks_by_match_quality(searchable: Catalog) -> None:
    hits = names(searchable.search("numb"))
    assert hits[0] == "Linkin_Park-Numb.mp3"  # name and title
    assert set(hits) == {"Linkin_Park-Numb.mp3", "numb covers vol 1.mp3"}
    hits = names(searchable.search("linkin park"))
    assert set(hits) == {
        "Linkin_Park-Numb.mp3", "Linkin_Park-In_The_End.mp3", "Jay-Z - Encore.mp3",
    }  # fmt: skip
    assert hits[-1] == "Jay-Z - Encore.mp3"  # only a long artist credit matches


def test_field_restricted_search(searchable: Catalog) -> None:
    assert set(names(searchable.search("park", field="artist"))) == {
        "Linkin_Park-Numb.mp3", "Linkin_Park-In_The_End.mp3", "Jay-Z - Encore.mp3",
    }  # fmt: skip
    assert "park_walk.txt" in names(searchable.search("park"))
    assert names(searchable.search("numb", field="title")) == ["Linkin_Park-Numb.mp3"]
    assert names(searchable.search("numb", field="album")) == ["numb covers vol 1.mp3"]
    assert names(searchable.search("discovery", field="album")) == ["One More Time.mp3"]
    assert searchable.search("meteora", field="title") == []
    with pytest.raises(ConfigError, match="unknown search field"):
        searchable.search("x", field="path")


def test_prefix_match_on_the_last_word(searchable: Catalog) -> None:
    assert len(searchable.search("linkin pa")) == 3
    assert searchable.search("linkin pa ") == []  # a finished word matches whole
    assert names(searchable.search("beyon")) == ["01 - Halo.mp3"]


def test_diacritics_fold(searchable: Catalog) -> None:
    assert names(searchable.search("beyonce")) == ["01 - Halo.mp3"]
    assert names(searchable.search("BEYONCÉ")) == ["01 - Halo.mp3"]


def test_search_filters(searchable: Catalog) -> None:
    assert names(searchable.search("", min_bitrate=300)) == ["01 - Halo.mp3"]
    assert set(names(searchable.search("", min_bitrate=150))) == {
        "01 - Halo.mp3",
        "One More Time.mp3",
    }
    assert names(searchable.search("rock", min_bitrate=150)) == []
    sizes = {f.name: f.size for f in searchable.files()}
    small = names(searchable.search("", max_size=1100))
    assert set(small) == {n for n, s in sizes.items() if s <= 1100}
    assert set(small) == {"park_walk.txt", "Annual_Report-2024.final.pdf", "MyHolidayVideo.mkv"}
    halo = sizes["01 - Halo.mp3"]
    assert names(searchable.search("", min_size=halo, max_size=halo)) == ["01 - Halo.mp3"]
    assert len(searchable.search("")) == 9
    assert len(searchable.search("", limit=2)) == 2
    assert searchable.search("linkin", limit=0) == []
    assert len(searchable.search("", limit=10**9)) == 9 <= MAX_SEARCH_LIMIT


GARBAGE = [
    '"', '""', "'", "numb\"", '"numb', "NEAR(numb park)", "numb OR", "AND", "OR", "NOT numb",
    "*", "numb*", "**", "(", ")", "((numb", "{title}:numb", "title:numb", "title : numb",
    "-numb", "^numb", "numb + park", "\x00", "🎵", "日本語", "   ", "ß", "İ", "\u0301",
    "a" * 10_000, " ".join(["numb"] * 500), "\\", "%", "_", "numb;DROP TABLE files",
    "\ud800", "col:", ":", "NEAR", "NEAR/3", "'numb'",
]  # fmt: skip


@pytest.mark.parametrize("text", GARBAGE)
@pytest.mark.parametrize("field", ["all", "title", "artist", "album"])
def test_garbage_search_input_never_raises(searchable: Catalog, text: str, field: str) -> None:
    assert isinstance(searchable.search(text, field=field), list)


def test_operators_typed_by_users_are_plain_words(searchable: Catalog) -> None:
    assert searchable.search("NOT numb") == []  # "not" is a word no file has
    assert names(searchable.search("numb*", field="title")) == ["Linkin_Park-Numb.mp3"]
    assert names(searchable.search('"in the end"')) == ["Linkin_Park-In_The_End.mp3"]
    assert fts_query('a"b NEAR(c') == '"a" "b" "NEAR" "c"*'
    assert fts_query("x y ", "title") == '{title} : ("x" "y")'
    assert fts_query(" ,.;!") is None


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60), field=st.sampled_from(["all", "title", "artist", "album"]))
def test_any_text_is_a_safe_query(searchable: Catalog, text: str, field: str) -> None:
    assert isinstance(searchable.search(text, field=field), list)


def test_search_sees_new_files_after_a_scan(scanned: Catalog, share: Path) -> None:
    write_mp3(
        share / "new" / "Crawling.mp3", title="Crawling", artist="Linkin Park",
        album="Hybrid Theory", genre="Rock", seconds=1.0, seed=99,
    )  # fmt: skip
    assert scanned.search("crawling") == []
    scanned.scan()
    (hit,) = scanned.search("crawling")
    assert hit.album == "Hybrid Theory"
    assert len(scanned.search("hybrid theory", field="album")) == 2


def test_a_progress_callback_that_raises_ends_the_scan_keeping_stored_files(
    catalog: Catalog, share: Path
) -> None:
    for i in range(4):
        (share / f"bulk{i}.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    catalog.add_folder(share)

    class Stop(Exception):
        pass

    calls = [0]

    def stop_soon(p: ScanProgress) -> None:
        calls[0] += 1
        if p.files_done >= 5:
            raise Stop

    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(Stop):
        catalog.scan(progress=stop_soon)
    leftover = [t for t in threading.enumerate() if t.ident not in before]
    assert leftover == []
    assert catalog.count() == 5  # what was hashed before the stop is kept
    report = catalog.scan()
    assert (report.unchanged, report.added, report.files) == (5, 8, 13)


def test_a_share_added_inside_another_takes_its_files(catalog: Catalog, share: Path) -> None:
    catalog.add_folder(share)
    catalog.scan()
    daft = next(f for f in catalog.files() if f.name == "One More Time.mp3")
    inner = catalog.add_folder(share / "Daft Punk")
    report = catalog.scan()
    assert (report.changed, report.unchanged) == (1, 8)
    moved = next(f for f in catalog.files() if f.name == "One More Time.mp3")
    assert moved.root == inner and moved.index == daft.index
    catalog.remove_folder(inner)
    assert "One More Time.mp3" not in names(catalog.files())
    catalog.scan()
    assert next(f for f in catalog.files() if f.name == "One More Time.mp3").root == share
