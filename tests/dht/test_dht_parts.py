"""The DHT node's parts on their own: tokens, the peer store, the rate
limiter, the lookup bookkeeping and the state file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from dhtkit import nid, top

from peerlab.errors import StorageError
from peerlab.overlays.dht.lookup import Traversal
from peerlab.overlays.dht.peer_store import PeerStore
from peerlab.overlays.dht.ratelimit import SourceRateLimiter
from peerlab.overlays.dht.state import DhtState, decode_state, encode_state, load_state, save_state
from peerlab.overlays.dht.tokens import TOKEN_BYTES, TOKEN_ROTATION_S, TokenSecrets
from peerlab.wire.krpc import NodeInfo

IH = bytes(range(20))

# ---------------------------------------------------------------- tokens


def test_token_is_valid_for_the_current_and_previous_secret_only() -> None:
    """BEP 5: a secret that changes every five minutes, tokens up to ten
    minutes old accepted."""
    s = TokenSecrets(random.Random(1), now=0.0)
    tok = s.token("10.0.0.1", 10.0)
    assert len(tok) == TOKEN_BYTES
    assert s.valid(tok, "10.0.0.1", 10.0)
    assert not s.valid(tok, "10.0.0.2", 10.0)  # bound to the IP
    assert s.token("10.0.0.1", 200.0) == tok  # same secret within the period
    assert s.valid(tok, "10.0.0.1", TOKEN_ROTATION_S + 1)  # previous secret
    assert s.token("10.0.0.1", TOKEN_ROTATION_S + 1) != tok
    assert not s.valid(tok, "10.0.0.1", 2 * TOKEN_ROTATION_S + 1)  # two rotations on
    # A long silence: both secrets are new.
    tok2 = s.token("10.0.0.1", 2 * TOKEN_ROTATION_S + 1)
    assert not s.valid(tok2, "10.0.0.1", 10 * TOKEN_ROTATION_S)
    assert not s.valid(b"", "10.0.0.1", 10 * TOKEN_ROTATION_S)


def test_token_secrets_come_from_the_rng() -> None:
    a = TokenSecrets(random.Random(7), 0.0).token("1.2.3.4", 0.0)
    b = TokenSecrets(random.Random(7), 0.0).token("1.2.3.4", 0.0)
    c = TokenSecrets(random.Random(8), 0.0).token("1.2.3.4", 0.0)
    assert a == b != c


# ---------------------------------------------------------------- peer store


def test_peer_store_bounds_and_expiry() -> None:
    rng = random.Random(2)
    store = PeerStore(peer_ttl=100.0, max_peers_per_info_hash=3, max_info_hashes=2, max_peers=5)
    for i in range(4):
        assert store.announce(IH, ("10.0.0.1", 1000 + i), float(i))
    # Per info-hash bound: the oldest announce gave way.
    assert sorted(store.peers(IH, 4.0, 10, rng)) == [("10.0.0.1", p) for p in (1001, 1002, 1003)]
    assert store.total_peers == 3
    # A re-announce refreshes (moves to the back), so 1002 is now the oldest.
    assert store.announce(IH, ("10.0.0.1", 1001), 5.0)
    assert store.announce(IH, ("10.0.0.1", 1004), 6.0)
    assert ("10.0.0.1", 1002) not in store.peers(IH, 6.0, 10, rng)
    # Info-hash bound.
    assert store.announce(nid(1), ("10.0.0.2", 1), 7.0)
    assert not store.announce(nid(2), ("10.0.0.3", 1), 7.0)
    assert len(store) == 2
    # Total bound: 3 + 1 stored, room for one more, then refused.
    assert store.announce(nid(1), ("10.0.0.2", 2), 8.0)
    assert not store.announce(nid(1), ("10.0.0.2", 3), 8.0)
    assert store.total_peers == 5
    # A sample when more are stored than asked for.
    assert len(store.peers(IH, 8.0, 2, rng)) == 2
    # Expiry: peers not announced for peer_ttl vanish from answers at once
    # and from the store at the next sweep.
    # Announced at: 1003 t=3, 1001 t=5, 1004 t=6.
    assert sorted(store.peers(IH, 104.5, 10, rng)) == [("10.0.0.1", 1001), ("10.0.0.1", 1004)]
    assert store.expire(104.5) == 1
    assert store.total_peers == 4
    assert store.expire(200.0) == 4
    assert len(store) == 0 and store.total_peers == 0


# ---------------------------------------------------------------- rate limit


def test_rate_limiter_per_source_address() -> None:
    lim = SourceRateLimiter(rate=2.0, burst=4.0, max_sources=3)
    a, b = ("10.0.0.1", 1), ("10.0.0.1", 2)
    assert [lim.allow(a, 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert lim.allow(b, 0.0)  # another port of the same IP has its own bucket
    assert not lim.allow(a, 0.25)  # half a token
    assert lim.allow(a, 0.5)  # one token after 0.5 s at 2/s
    assert not lim.allow(a, 0.5)
    # Bounded: a fourth source pushes out the least recently heard.
    lim.allow(("10.0.0.3", 1), 1.0)
    lim.allow(("10.0.0.4", 1), 1.0)
    assert len(lim) == 3
    # Sources whose bucket refilled are forgotten.
    assert lim.forget_idle(100.0) == 3 and len(lim) == 0


# ---------------------------------------------------------------- traversal


def addr(n: int) -> tuple[str, int]:
    return (f"10.1.0.{n}", 6881)


def test_traversal_queries_closest_first_alpha_at_a_time() -> None:
    target = top(0x00)
    tr = Traversal(target, k=2, alpha=3)
    for i, b in enumerate((0x70, 0x10, 0x40, 0x20, 0x80)):
        tr.add(top(b), addr(i), 1)
    first = tr.next_queries()
    assert [c.id for c in first] == [top(0x10), top(0x20), top(0x40)]
    assert tr.next_queries() == []  # alpha in flight
    # 0x10 answers with a closer node (hop 2).
    tr.responded(first[0], top(0x10))
    assert tr.add(top(0x08), addr(9), 2)
    assert not tr.add(top(0x08), addr(10), 2)  # same id
    assert not tr.add(top(0x09), addr(9), 2)  # same address
    nxt = tr.next_queries()
    assert [c.id for c in nxt] == [top(0x08)]
    # A stall frees a slot without ending the query.
    tr.stall(first[1])
    assert [c.id for c in tr.next_queries()] == [top(0x70)]
    assert not tr.done
    tr.responded(nxt[0], top(0x08))
    # The two closest (0x08, 0x10) answered: done, even with others in flight.
    assert tr.done
    st = tr.stats()
    assert st.queries == 5 and st.responses == 2 and st.hops == 2


def test_traversal_ends_when_nothing_is_left_and_learns_ids() -> None:
    tr = Traversal(top(0x00), k=8, alpha=3)
    tr.add(None, addr(1), 1)  # a bootstrap address: asked first
    tr.add(top(0x01), addr(2), 1)
    q = tr.next_queries()
    assert [c.address for c in q] == [addr(1), addr(2)]
    tr.responded(q[0], top(0x50))  # now its id is known and it sorts by it
    assert [c.id for c in tr.closest_responded(8)] == [top(0x50)]
    assert not tr.done
    tr.failed(q[1])
    assert tr.done and tr.stats().timeouts == 1


def test_traversal_is_bounded() -> None:
    tr = Traversal(top(0x00), k=8, alpha=3, max_candidates=10, max_queries=4)
    for i in range(30):
        tr.add(nid(1000 - i), addr(i), 1)
    assert len(tr) == 10
    sent = []
    for _ in range(10):
        batch = tr.next_queries()
        for c in batch:
            tr.failed(c)
        sent += batch
    assert len(sent) == 4
    # The closest ten were kept (ids 971..980) and the closest four asked.
    assert [int.from_bytes(c.id or b"", "big") for c in sent] == [971, 972, 973, 974]
    assert tr.done


# ---------------------------------------------------------------- state file


def test_state_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dht.state"
    state = DhtState(nid(42), (NodeInfo(top(0x80), ("10.0.0.1", 6881)),
                               NodeInfo(top(0x40), ("10.0.0.2", 6882))))  # fmt: skip
    assert load_state(path) is None
    save_state(path, state)
    assert load_state(path) == state
    save_state(path, DhtState(nid(43), ()))
    assert load_state(path) == DhtState(nid(43), ())
    assert [p.name for p in path.parent.iterdir()] == ["dht.state"]  # no temp file left
    raw = encode_state(state)
    assert raw.startswith(b"d6:format11:peerlab-dht2:id20:")
    assert decode_state(raw) == state


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"d6:format11:peerlab-dht2:id3:abc5:nodes0:7:versioni1ee",
     b"d6:format5:other2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes0:7:versioni1ee",
     b"d6:format11:peerlab-dht2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes3:abc7:versioni1ee",
     b"d6:format11:peerlab-dht2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes0:7:versioni9ee"],
)  # fmt: skip
def test_bad_state_files_raise_storage_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "dht.state"
    path.write_bytes(data)
    with pytest.raises(StorageError):
        load_state(path)
