"""The load generator's corpus: seeded libraries and searches that find them."""

from __future__ import annotations

import re

import napster_load
from napster_load import Corpus

from peerlab.wire import napster as nap


def test_same_seed_same_libraries_and_queries() -> None:
    a, b = Corpus(seed=7, songs=2000), Corpus(seed=7, songs=2000)
    assert a.library(3, 50) == b.library(3, 50)
    assert list(a.queries(100, seed=1)) == list(b.queries(100, seed=1))
    assert Corpus(seed=8, songs=2000).library(3, 50) != a.library(3, 50)


def test_library_is_distinct_valid_shares() -> None:
    corpus = Corpus(seed=1, songs=2000)
    files = corpus.library(42, 100)
    assert len(files) == 100
    assert len({f[0] for f in files}) == 100
    for name, md5, size, bitrate, freq, seconds in files:
        assert re.fullmatch(r"[0-9a-f]{32}", md5)
        assert name.endswith(".mp3") and " - " in name
        # The size is the bitrate times the length, give or take a header.
        assert 0 <= size - bitrate * 125 * seconds <= 4096
        assert freq in (22050, 44100, 48000)
        # Each share encodes to one frame the server can decode back.
        frame = napster_load.share_frame((name, md5, size, bitrate, freq, seconds))
        (decoded,) = nap.FrameDecoder().feed(frame)
        assert nap.decode_frame(decoded) == nap.ShareFile(name, md5, size, bitrate, freq, seconds)


def test_popular_songs_are_shared_by_many() -> None:
    corpus = Corpus(seed=1, songs=2000)
    counts: dict[str, int] = {}
    for user in range(200):
        for f in corpus.library(user, 20):
            counts[f[0]] = counts.get(f[0], 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    # A Zipf-ish head: the top file is far more common than the median one.
    assert ranked[0] >= 10 * ranked[len(ranked) // 2]


def test_queries_find_shared_files() -> None:
    corpus = Corpus(seed=1, songs=2000)
    names = [f[0].lower() for user in range(300) for f in corpus.library(user, 20)]
    found = 0
    for words, constraints in corpus.queries(200, seed=3):
        frame = napster_load.search_frame(words, constraints, 100)
        (decoded,) = nap.FrameDecoder().feed(frame)
        query = nap.decode_frame(decoded)
        assert isinstance(query, nap.SearchRequest)
        assert query.query.max_results == 100
        assert len(query.query.constraints) == len(constraints)
        terms = query.query.keywords()
        assert terms
        if any(all(re.search(rf"\b{t}\b", n) for t in terms) for n in names):
            found += 1
    # Searches ask for what people share (a few rare tracks may be unshared).
    assert found >= 180
