"""Magnet URIs (BEP 9; BEP 52's urn:btmh): the spec's forms, refusals,
round-trips and garbage."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire.magnet import (
    MAX_MAGNET_LENGTH,
    MAX_TRACKERS,
    Magnet,
    is_magnet,
    parse_magnet,
    parse_peer,
)

HEX = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
DIGEST = bytes.fromhex(HEX)
V2 = bytes(range(32))


def test_bep9_hex_form_with_everything() -> None:
    m = parse_magnet(
        f"magnet:?xt=urn:btih:{HEX}&dn=Little%20Toot+1&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce"
        "&tr=udp%3a%2f%2ftracker%3a80&x.pe=192.0.2.1:6881&x.pe=[2001:db8::1]:51413"
        "&x.pe=peer.example:1&ws=http%3A%2F%2Fseed%2F"
    )
    assert m.info_hash == DIGEST
    assert m.info_hash_hex == HEX
    assert m.info_hash_v2 is None
    assert m.display_name == "Little Toot 1"
    assert m.trackers == ("http://127.0.0.1:6969/announce", "udp://tracker:80")
    assert m.peers == (("192.0.2.1", 6881), ("2001:db8::1", 51413), ("peer.example", 1))
    assert m.web_seeds == ("http://seed/",)


def test_base32_and_upper_case_hex_forms() -> None:
    b32 = base64.b32encode(DIGEST).decode()
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32}").info_hash == DIGEST
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32.lower()}").info_hash == DIGEST
    assert parse_magnet(f"MAGNET:?xt=URN:BTIH:{HEX.upper()}").info_hash == DIGEST


def test_v2_and_hybrid_links() -> None:
    v2 = "1220" + V2.hex()
    assert parse_magnet(f"magnet:?xt=urn:btmh:{v2}").info_hash_v2 == V2
    m = parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:{v2}&dn=x")
    assert (m.info_hash, m.info_hash_v2) == (DIGEST, V2)
    assert m.to_uri() == f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:{v2}&dn=x"


def test_indexed_keys_other_networks_and_unknown_parameters() -> None:
    m = parse_magnet(f"magnet:?xt.1=urn:sha1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567&xt.2=urn:btih:{HEX}"
                     "&tr.1=http://a/&tr.2=http://b/&xl=123&so=0-3&&foo")
    assert m.info_hash == DIGEST
    assert m.trackers == ("http://a/", "http://b/")
    # The same hash twice is one hash.
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{HEX.upper()}").info_hash == DIGEST


def test_build_is_bep9() -> None:
    m = Magnet(DIGEST, display_name="a&b=c d", trackers=("http://t/a?x=1&y=2",),
               peers=(("::1", 6881), ("10.0.0.1", 1)), web_seeds=("http://s/",))
    assert m.to_uri() == (
        f"magnet:?xt=urn:btih:{HEX}&dn=a%26b%3Dc%20d&tr=http%3A%2F%2Ft%2Fa%3Fx%3D1%26y%3D2"
        "&x.pe=[::1]:6881&x.pe=10.0.0.1:1&ws=http%3A%2F%2Fs%2F"
    )
    assert parse_magnet(m.to_uri()) == m
    assert Magnet(DIGEST, display_name="").display_name is None


@pytest.mark.parametrize("uri", [
    "",
    "http://example.com/",
    "magnet:",
    "magnet:xt=urn:btih:" + HEX,
    "magnet:?dn=only-a-name",
    "magnet:?xt=urn:sha1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    "magnet:?xt=urn:btih:" + HEX[:-1],
    "magnet:?xt=urn:btih:" + HEX + "0",
    "magnet:?xt=urn:btih:" + "g" * 40,
    "magnet:?xt=urn:btih:" + "1" * 32,  # '1' is not base32
    "magnet:?xt=urn:btih:",
    "magnet:?xt=urn:btmh:1120" + "00" * 32,  # sha1 multihash code, not sha2-256
    "magnet:?xt=urn:btmh:1220" + "00" * 31,
    f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{'0' * 40}",
    f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4",
    f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:0",
    f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:65536",
    f"magnet:?xt=urn:btih:{HEX}&x.pe=[::1:1",
    f"magnet:?xt=urn:btih:{HEX}&x.pe=[nothex]:1",
    f"magnet:?xt=urn:btih:{HEX}&x.pe=bad host:1",
    f"magnet:?xt=urn:btih:{HEX}&dn=%FF%FE",  # not UTF-8
    f"magnet:?xt=urn:btih:{HEX}&tr=" + "a" * 5000,
    f"magnet:?xt=urn:btih:{HEX}&dn=" + "a" * MAX_MAGNET_LENGTH,
])
def test_refused(uri: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_magnet(uri)


def test_bounds_keep_the_first_trackers() -> None:
    uri = f"magnet:?xt=urn:btih:{HEX}" + "".join(f"&tr=http://t{i}/" for i in range(300))
    m = parse_magnet(uri)
    assert len(m.trackers) == MAX_TRACKERS
    assert m.trackers[0] == "http://t0/"


def test_our_own_bad_values_are_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        Magnet()
    with pytest.raises(LocalProtocolError):
        Magnet(b"short")
    with pytest.raises(LocalProtocolError):
        Magnet(info_hash_v2=DIGEST)
    with pytest.raises(LocalProtocolError):
        Magnet(DIGEST, peers=(("h", 0),))
    with pytest.raises(LocalProtocolError):
        Magnet(DIGEST, peers=(("bad host", 1),))


def test_is_magnet_and_parse_peer() -> None:
    assert is_magnet("Magnet:?xt=...") and not is_magnet("file.torrent")
    assert parse_peer("[::ffff:1.2.3.4]:5") == ("::ffff:102:304", 5)
    assert parse_peer("a-b.example:65535") == ("a-b.example", 65535)


# ------------------------------------------------------------------ properties

hostnames = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)
hosts = (hostnames | st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str))
text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
magnets = st.builds(
    Magnet,
    info_hash=st.binary(min_size=20, max_size=20),
    info_hash_v2=st.none() | st.binary(min_size=32, max_size=32),
    display_name=st.none() | text,
    trackers=st.lists(text, max_size=4).map(tuple),
    peers=st.lists(st.tuples(hosts, st.integers(1, 65535)), max_size=4).map(tuple),
    web_seeds=st.lists(text, max_size=3).map(tuple),
)


@settings(deadline=None)
@given(magnets)
def test_round_trip(m: Magnet) -> None:
    assert parse_magnet(m.to_uri()) == m


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=120))
def test_garbage_raises_only_remote_protocol_error(uri: str) -> None:
    try:
        parse_magnet(uri)
    except RemoteProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([
    "magnet:?", "xt=", "urn:btih:", HEX, "urn:btmh:1220", "&", "=", "%", "%2", "%C3%A9", "dn",
    "tr", "x.pe", "[", "]", ":", "1", "::1", "+", "ws", ".1"]), max_size=14).map("".join))
def test_magnet_shaped_garbage_raises_only_remote_protocol_error(uri: str) -> None:
    try:
        m = parse_magnet(uri)
    except RemoteProtocolError:
        return
    assert parse_magnet(m.to_uri()) == m
