"""Messages from other clients are read with unsorted keys allowed (as libtorrent
reads them); metainfo stays strict; repeated keys are refused either way."""

from __future__ import annotations

import pytest

from peerlab.errors import RemoteProtocolError
from peerlab.wire import bencode
from peerlab.wire.peer import ExtendedHandshake, decode_extended_handshake

LENIENT = bencode.BencodeLimits(sorted_keys=False)


def test_unsorted_keys_strict_and_lenient() -> None:
    data = b"d4:spam4:eggs3:cow3:mooe"
    with pytest.raises(RemoteProtocolError, match="sorted order"):
        bencode.decode(data)
    assert bencode.decode(data, LENIENT) == {b"spam": b"eggs", b"cow": b"moo"}


@pytest.mark.parametrize(
    "data",
    [b"d3:cow3:moo3:cow3:mooe", b"d3:cow3:moo1:a1:b3:cowi1ee", b"d1:ai1e1:bi2e1:ai3ee"],
)
def test_repeated_keys_refused_even_when_lenient(data: bytes) -> None:
    for limits in (bencode.DEFAULT_LIMITS, LENIENT):
        with pytest.raises(RemoteProtocolError):
            bencode.decode(data, limits)


def test_an_unsorted_extended_handshake_is_accepted() -> None:
    payload = b"d1:v6:Other01:md11:ut_metadatai3ee1:pi6881ee"
    hs = decode_extended_handshake(payload)
    assert isinstance(hs, ExtendedHandshake)
    assert hs.p == 6881 and hs.v == "Other0" and hs.m == {"ut_metadata": 3}
