"""Hypothesis strategies for Napster messages (shared by the napster_wire tests)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from hypothesis import strategies as st

from peerlab.wire import napster as nap

_CONTROLS: tuple[Literal["Cc"]] = ("Cc",)
# Printable latin-1 without the double quote: what a quoted field can hold.
_SAFE_CHARS = st.characters(
    codec="latin-1", exclude_characters='"\x7f', exclude_categories=_CONTROLS
)
_SAFE_CHARS_WITH_TAB = st.one_of(_SAFE_CHARS, st.just("\t"))
_TEXT_CHARS = st.one_of(_SAFE_CHARS_WITH_TAB, st.just('"'))

nicks = st.text(
    st.characters(codec="latin-1", exclude_characters=' "\x7f', exclude_categories=_CONTROLS),
    min_size=1,
    max_size=nap.MAX_NICK_BYTES,
)
words = st.text(
    st.characters(codec="latin-1", exclude_characters=' "\x7f\t', exclude_categories=_CONTROLS),
    min_size=1,
    max_size=40,
)
md5s = st.one_of(st.text("0123456789abcdef", min_size=32, max_size=32), words)
filenames = st.text(_SAFE_CHARS_WITH_TAB, min_size=1, max_size=nap.MAX_FILENAME_BYTES)
quoted = st.text(_SAFE_CHARS_WITH_TAB, max_size=60)
free_text = st.text(_TEXT_CHARS, max_size=200)
u32 = st.integers(0, nap.MAX_UINT32)
sizes = st.integers(0, nap.MAX_FILE_SIZE)
ports = st.integers(0, nap.MAX_PORT)
links = st.sampled_from(list(nap.LinkType))
phrases = st.text(_SAFE_CHARS, max_size=40)

compares = st.sampled_from(list(nap.Compare))
search_fields = st.sampled_from(list(nap.SearchField))


@st.composite
def constraints(draw: st.DrawFn) -> nap.Constraint:
    field = draw(search_fields)
    top = {
        nap.SearchField.LINESPEED: 10,
        nap.SearchField.SIZE: nap.MAX_FILE_SIZE,
    }.get(field, nap.MAX_UINT32)
    return nap.Constraint(field, draw(compares), draw(st.integers(0, top)))


search_queries = st.builds(
    nap.SearchQuery,
    contains=st.lists(phrases, max_size=3).map(tuple),
    max_results=st.none() | st.integers(0, 1000),
    constraints=st.lists(constraints(), max_size=5).map(tuple),
    excludes=st.lists(phrases, max_size=2).map(tuple),
    content_type=st.none() | st.sampled_from(["audio/mp3", "video", "ANY"]),
    local_only=st.booleans(),
)

# Strategy by field name; a few names mean different things per message.
_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "nick": nicks,
    "password": words,
    "port": ports,
    "client_info": quoted,
    "link_type": links,
    "build": words,
    "email": words,
    "filename": filenames,
    "md5": md5s,
    "size": sizes,
    "bitrate": u32,
    "frequency": u32,
    "duration": u32,
    "ip": u32,
    "weight": st.integers(-(2**63), 2**63 - 1),
    "users": u32,
    "files": u32,
    "gigabytes": u32,
    "level": quoted,
    "online_seconds": u32,
    "channels": quoted,
    "status": quoted,
    "shared": u32,
    "downloads": u32,
    "uploads": u32,
    "total_downloads": u32,
    "total_uploads": u32,
    "connecting_port": ports,
    "data_port": ports,
    "last_seen": u32,
    "limit": u32,
    "server": words,
    "query": search_queries,
    "text": free_text,
    "message": free_text,
}
_OVERRIDES: dict[tuple[type[Any], str], st.SearchStrategy[Any]] = {
    (nap.LoginAck, "email"): free_text,
    (nap.WhoisResponse, "ip"): words,
    (nap.WhowasResponse, "level"): words,
}


@st.composite
def messages_of(draw: st.DrawFn, cls: type[nap.Message]) -> nap.Message:
    """A valid instance of ``cls``: optional trailing fields present as a prefix."""
    if cls is nap.Unknown:
        return nap.Unknown(
            draw(st.integers(0, 0xFFFF).filter(lambda t: t not in nap.MESSAGE_TYPES)),
            draw(st.binary(max_size=300)),
        )
    values: dict[str, Any] = {}
    # Optional trailing fields are present as a prefix; 604's six extras go together.
    if cls is nap.WhoisResponse:
        keep_optionals = draw(st.sampled_from([0, 6, 7]))
    else:
        keep_optionals = draw(st.integers(0, 2))
    optionals = 0
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.default is None:
            optionals += 1
            if optionals > keep_optionals:
                continue
        values[field.name] = draw(_OVERRIDES.get((cls, field.name), _BY_NAME[field.name]))
    return cls(**values)


ALL_MESSAGE_CLASSES: list[type[nap.Message]] = sorted(
    {*nap.MESSAGE_TYPES.values(), nap.ServerStatsRequest, nap.Unknown},
    key=lambda c: c.__name__,
)
