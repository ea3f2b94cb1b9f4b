"""Helpers shared by the Gnutella wire tests: hypothesis strategies for every
message type, and a whole-then-bytewise feeder for stream decoders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from peerlab.wire.ggep import GGEP, Extension
from peerlab.wire.gnutella import (
    Bye,
    Ping,
    Pong,
    Push,
    Query,
    QueryHit,
    QueryHitResult,
    Unknown,
    VendorMessage,
)
from peerlab.wire.qrp import PatchTable, ResetTable

SHA1_URN = "urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB"  # the HUGE spec's example


def feed_whole_and_bytewise(make: Callable[[], Any], data: bytes) -> list[Any]:
    """Feed ``data`` to a fresh decoder whole, then to another one byte at a
    time; both must give the same items, which are returned."""
    whole = make().feed(data)
    dec = make()
    bytewise: list[Any] = []
    for i in range(len(data)):
        bytewise += dec.feed(data[i : i + 1])
    assert bytewise == whole
    return list(whole)


def chunks(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ports = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
guids = st.binary(min_size=16, max_size=16)
ext_ids = st.text(alphabet="ABCDEFGHXYZ0123456789", min_size=1, max_size=6).filter(
    lambda s: s != "LF"
)
ggeps = st.lists(st.builds(Extension, ext_ids, st.binary(max_size=40)), min_size=1, max_size=4).map(
    lambda e: GGEP(tuple(e))
)
maybe_ggep = st.none() | ggeps
texts = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40)
urns = st.sampled_from([SHA1_URN, "urn:", "urn:sha1:", "urn:bitprint:ABC.DEF"])
xmls = st.none() | texts.map(lambda t: "<audio title=" + t.replace("\x1c", "") + "/>")
extras = st.lists(
    st.binary(min_size=1, max_size=20).filter(
        lambda b: (
            0 not in b and 0x1C not in b and b[0] not in (0xC3, 0x3C) and b[:4].lower() != b"urn:"
        )
    ),
    max_size=2,
)

pings = st.builds(Ping, maybe_ggep)
pongs = st.builds(Pong, ports, ips, u32, u32, maybe_ggep)
header_names = st.text(alphabet="abcdefghXYZ-", min_size=1, max_size=10)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20).map(
    str.strip
)
byes = st.builds(
    Bye,
    st.integers(0, 0xFFFF),
    texts.map(lambda t: t.replace("\r", "").replace("\n", "")),
    st.lists(st.tuples(header_names, header_values), max_size=3).map(tuple),
)
pushes = st.builds(Push, guids, u32, ips, ports, maybe_ggep)
queries = st.builds(
    Query,
    texts,
    st.integers(0, 0xFFFF),
    st.lists(urns, max_size=3).map(tuple),
    xmls,
    maybe_ggep,
    extras.map(tuple),
)
results = st.builds(
    QueryHitResult,
    u32,
    st.integers(0, 2**40),
    texts,
    st.lists(urns, max_size=2).map(tuple),
    xmls,
    maybe_ggep,
    extras.map(tuple),
)
tri = st.none() | st.booleans()


@st.composite
def query_hits(draw: st.DrawFn) -> QueryHit:
    res = tuple(draw(st.lists(results, max_size=4)))
    base: dict[str, Any] = dict(
        port=draw(ports), ip=draw(ips), speed=draw(u32), results=res, servent_guid=draw(guids)
    )
    if draw(st.booleans()):
        ggep = draw(maybe_ggep)
        base.update(
            vendor=draw(st.sampled_from(["GTKG", "LIME", "BEAR", "RAZA"])),
            push=draw(tri),
            busy=draw(tri),
            stable=draw(tri),
            speed_measured=draw(tri),
            private_prefix=draw(
                st.binary(max_size=3).filter(lambda b: ggep is None or 0xC3 not in b)
            ),
            ggep=ggep,
            private_suffix=(
                draw(st.binary(max_size=3).filter(lambda b: b[:1] != b"\xc3"))
                if ggep is not None
                else b""
            ),
            xml=draw(st.none() | texts),
        )
    return QueryHit(**base)


vendor_messages = st.builds(
    VendorMessage,
    st.text(st.characters(max_codepoint=255), min_size=4, max_size=4),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=30),
    st.booleans(),
)
resets = st.builds(ResetTable, u32, st.integers(0, 255))
patches = st.builds(PatchTable, *[st.integers(0, 255)] * 4, st.binary(max_size=30))
unknowns = st.builds(Unknown, st.sampled_from([0x41, 0xCD, 0x99]), st.binary(max_size=30))

messages = st.one_of(
    pings, pongs, byes, pushes, queries, query_hits(), vendor_messages, resets, patches, unknowns
)
