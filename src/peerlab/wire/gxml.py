"""LimeWire XML metadata: the audio records of Query Hits and rich Queries.

Gnutella servents describe shared files with XML collections after the
LimeWire schemas (LimeWire's ``LimeXMLDocument``; gtk-gnutella's
``src/core/qhit.c`` and ``search.c`` read and write the same text)::

    <?xml version="1.0"?><audios xsi:noNamespaceSchemaLocation=
      "http://www.limewire.com/schemas/audio.xsd"><audio title="Numb"
      artist="Linkin Park" album="Meteora" genre="Rock" bitrate="192"
      seconds="187" index="0"/></audios>

A Query Hit carries one collection in the private area of its QHD (after the
open-data flags' XML size; ``index`` ties a record to the hit's result at
that position), optionally deflated behind a ``{deflate}`` prefix as
gtk-gnutella writes it when that is shorter.  A *rich query* carries a
collection with one record between the NULs of a Query (the XML extension
of ``huge`` section 3): the KaZaA-style search "Artist: linkin park" is
``<audios ...><audio artist="linkin park"/></audios>`` with the same words as
the Query's criteria, so servents that ignore XML still match on names.

:func:`parse_collection` is a small strict parser, not a general XML one: it
reads elements and attributes, refuses malformed markup, skips a DOCTYPE
without reading its declarations (so no entity is ever defined, let alone
expanded: only the five predefined entities and character references are
decoded), and is bounded in input size (:data:`MAX_XML_CHARS`), nesting
(:data:`MAX_DEPTH`), elements (:data:`MAX_ELEMENTS`) and attributes
(:data:`MAX_ATTRIBUTES`).  Any violation raises
:class:`~peerlab.errors.RemoteProtocolError`; callers drop that metadata only.

Rich-query matching (:class:`RichQuery`): text attributes (``title``,
``artist``, ``album``, ``genre``) must hold every word; the numeric
``bitrate`` (kbit/s) and ``seconds`` of a query record are *minimums* -- the
KaZaA form's "Quality at least" and "Length at least" (LimeWire compared them
for equality, which a search form's filter never wants; a servent that does
so still returns a subset, which the searcher filters again).

Public API: :data:`AUDIO_SCHEMA`, :data:`MAX_XML_RECORDS`, :class:`XmlRecord`,
:class:`Collection`, :func:`parse_collection`, :func:`parse_xml_records`,
:func:`build_xml_records`, :func:`hit_xml_text`, :class:`RichQuery`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from peerlab.errors import RemoteProtocolError

#: LimeWire's audio schema, the one the lecture's rich searches use.
AUDIO_SCHEMA = "http://www.limewire.com/schemas/audio.xsd"
#: Records we read from one collection: a Query Hit has at most 255 results.
MAX_XML_RECORDS = 255
#: Longest XML text we parse.  A Query Hit's XML size field is 16 bits (the
#: QHD open data), so 64 KiB is all a servent can legitimately send.
MAX_XML_CHARS = 65_536
#: Bytes a ``{deflate}`` collection may inflate to (the same 64 KiB: the
#: plain text would have had to fit the field too).
MAX_INFLATED_BYTES = MAX_XML_CHARS
#: Nesting allowed: collection > record > (a child element some schema
#: writers add); deeper is not metadata.
MAX_DEPTH = 4
#: Elements in one collection: a record per result plus the root, with room.
MAX_ELEMENTS = 2 * MAX_XML_RECORDS + 2
#: Attributes on one element (the audio schema has about twenty).
MAX_ATTRIBUTES = 32
#: Longest element or attribute name.
MAX_NAME_CHARS = 64
#: The prefix gtk-gnutella writes before deflated XML in a Query Hit.
DEFLATE_PREFIX = b"{deflate}"
#: The prefix it writes when it chose not to compress.
PLAIN_PREFIX = b"{plaintext}"
#: Text attributes a rich audio query can restrict (the KaZaA form's fields).
TEXT_FIELDS = ("title", "artist", "album", "genre")
#: Numeric attributes a rich audio query bounds from below.
MIN_FIELDS = ("bitrate", "seconds")

_NAME = re.compile(r"[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?")
_SPACE = " \t\r\n"
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_REF = re.compile(r"&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|[A-Za-z][\w.\-]*);")
_WORD = re.compile(r"\w+")


def _bad(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad XML metadata: {why}")


@dataclass(frozen=True, slots=True)
class XmlRecord:
    """One record of a collection, e.g. ``<audio title="..." bitrate="192"
    index="0"/>``: its element name, attributes in document order, and the
    collection's schema.  ``index`` ties it to a Query Hit's result."""

    element: str
    attributes: tuple[tuple[str, str], ...]
    schema: str | None = None

    def get(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    @property
    def index(self) -> int | None:
        value = self.get("index")
        return int(value) if value is not None and value.isdigit() else None

    def fields(self) -> dict[str, str]:
        """The attributes but ``index``, as a dict (the first of a repeated name)."""
        out: dict[str, str] = {}
        for key, value in self.attributes:
            if key != "index":
                out.setdefault(key, value)
        return out


@dataclass(frozen=True, slots=True)
class Collection:
    """A parsed collection: the root element, its schema, its records."""

    element: str
    schema: str | None
    records: tuple[XmlRecord, ...]


def _unescape(raw: str) -> str:
    """Decode the predefined entities and character references (XML 1.0
    section 4.6 and 4.1); any other reference is refused: no DTD is read, so
    no other entity exists."""
    if "&" not in raw:
        return raw
    out: list[str] = []
    pos = 0
    for m in _REF.finditer(raw):
        if "&" in raw[pos : m.start()]:
            raise _bad("a bare '&'")
        out.append(raw[pos : m.start()])
        ref = m.group(1)
        if ref.startswith("#"):
            code = int(ref[2:], 16) if ref[1:2] in ("x", "X") else int(ref[1:])
            if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0x10FFFF:
                if not 0xFFFE <= code <= 0xFFFF:
                    out.append(chr(code))
                    pos = m.end()
                    continue
            raise _bad(f"character reference {m.group(0)!r} is not a character")
        if ref not in _PREDEFINED:
            raise _bad(f"undefined entity {m.group(0)!r} (entities are never expanded)")
        out.append(_PREDEFINED[ref])
        pos = m.end()
    if "&" in raw[pos:]:
        raise _bad("a bare '&'")
    out.append(raw[pos:])
    return "".join(out)


class _Scanner:
    """The parser's cursor over one document."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        t, n = self.text, len(self.text)
        while self.pos < n and t[self.pos] in _SPACE:
            self.pos += 1

    def expect(self, s: str) -> None:
        if not self.text.startswith(s, self.pos):
            raise _bad(f"expected {s!r} at {self.pos}")
        self.pos += len(s)

    def until(self, end: str, what: str) -> str:
        at = self.text.find(end, self.pos)
        if at < 0:
            raise _bad(f"unterminated {what}")
        piece = self.text[self.pos : at]
        self.pos = at + len(end)
        return piece

    def name(self) -> str:
        m = _NAME.match(self.text, self.pos)
        if m is None or len(m.group(0)) > MAX_NAME_CHARS:
            raise _bad(f"expected a name at {self.pos}")
        self.pos = m.end()
        return m.group(0)

    def doctype(self) -> None:
        """Skip ``<!DOCTYPE ...>`` with its internal subset unread (XML 1.0
        section 2.8): declarations are never processed."""
        depth = 0
        t, n = self.text, len(self.text)
        while self.pos < n:
            c = t[self.pos]
            self.pos += 1
            if c in "\"'":
                self.until(c, "quoted text in the DOCTYPE")
            elif c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif c == ">" and depth <= 0:
                return
        raise _bad("unterminated DOCTYPE")

    def attributes(self) -> tuple[tuple[tuple[str, str], ...], bool]:
        """The attributes of a start tag up to its ``>`` (``True``: ``/>``)."""
        attrs: list[tuple[str, str]] = []
        seen: set[str] = set()
        while True:
            before = self.pos
            self.skip_space()
            if self.text.startswith("/>", self.pos):
                self.pos += 2
                return tuple(attrs), True
            if self.text.startswith(">", self.pos):
                self.pos += 1
                return tuple(attrs), False
            if self.pos == before:
                raise _bad(f"expected white space before an attribute at {self.pos}")
            key = self.name()
            if key in seen:
                raise _bad(f"attribute {key!r} repeated")
            seen.add(key)
            if len(attrs) >= MAX_ATTRIBUTES:
                raise _bad(f"more than {MAX_ATTRIBUTES} attributes on one element")
            self.skip_space()
            self.expect("=")
            self.skip_space()
            quote = self.text[self.pos : self.pos + 1]
            if quote not in ("'", '"'):
                raise _bad(f"attribute {key!r} value is not quoted")
            self.pos += 1
            raw = self.until(quote, f"attribute {key!r}")
            if "<" in raw:
                raise _bad(f"'<' in attribute {key!r}")
            attrs.append((key, _unescape(raw)))


def parse_collection(xml: str) -> Collection:
    """Parse one LimeWire collection (see the module docstring for what is
    accepted).  The records are the root's child elements; a lone record
    with no collection around it is its own single record."""
    if len(xml) > MAX_XML_CHARS:
        raise _bad(f"longer than {MAX_XML_CHARS} characters")
    s = _Scanner(xml)
    stack: list[str] = []
    root: tuple[str, tuple[tuple[str, str], ...]] | None = None
    records: list[XmlRecord] = []
    elements = 0
    closed_root = False
    n = len(xml)
    while True:
        at = xml.find("<", s.pos)
        text = xml[s.pos : at if at >= 0 else n]
        if text.strip(_SPACE) and (not stack or "&" in text):
            if not stack:
                raise _bad("text outside the root element")
            _unescape(text)  # element content is ignored but must be well formed
        if at < 0:
            break
        s.pos = at
        if xml.startswith("<?", at):
            s.pos += 2
            s.until("?>", "processing instruction")
        elif xml.startswith("<!--", at):
            s.pos += 4
            s.until("-->", "comment")
        elif xml.startswith("<!DOCTYPE", at):
            if root is not None:
                raise _bad("DOCTYPE after the root element")
            s.pos += 9
            s.doctype()
        elif xml.startswith("<![CDATA[", at):
            if not stack:
                raise _bad("CDATA outside the root element")
            s.pos += 9
            s.until("]]>", "CDATA section")
        elif xml.startswith("<!", at):
            raise _bad(f"markup declaration {xml[at : at + 12]!r} outside a DOCTYPE")
        elif xml.startswith("</", at):
            s.pos += 2
            name = s.name()
            s.skip_space()
            s.expect(">")
            if not stack or stack[-1] != name:
                raise _bad(f"end tag </{name}> does not close the open element")
            stack.pop()
            if not stack:
                closed_root = True
        else:
            s.pos += 1
            name = s.name()
            attrs, empty = s.attributes()
            elements += 1
            if elements > MAX_ELEMENTS:
                raise _bad(f"more than {MAX_ELEMENTS} elements")
            if not stack:
                if root is not None or closed_root:
                    raise _bad("a second root element")
                root = (name, attrs)
            elif len(stack) == 1 and len(records) < MAX_XML_RECORDS:
                records.append(XmlRecord(name, attrs))
            if empty:
                if not stack:
                    closed_root = True
            else:
                stack.append(name)
                if len(stack) > MAX_DEPTH:
                    raise _bad(f"nested deeper than {MAX_DEPTH}")
    if root is None:
        raise _bad("no element")
    if stack:
        raise _bad(f"element <{stack[-1]}> is not closed")
    root_name, root_attrs = root
    schema = dict(root_attrs).get("xsi:noNamespaceSchemaLocation")
    if not records and root_attrs and schema is None:
        records.append(XmlRecord(root_name, root_attrs))
    return Collection(
        root_name, schema, tuple(XmlRecord(r.element, r.attributes, schema) for r in records)
    )


def parse_xml_records(xml: str) -> list[XmlRecord]:
    """The records of a collection (a Query Hit's private area, a result's
    own XML); malformed XML raises :class:`RemoteProtocolError`."""
    return list(parse_collection(xml).records)


def _xml_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _clean(value: str) -> str:
    """Characters XML 1.0 cannot carry at all are dropped (section 2.2)."""
    return "".join(
        c for c in value
        if c in "\t\n\r" or 0x20 <= ord(c) <= 0xD7FF or 0xE000 <= ord(c) <= 0xFFFD
        or ord(c) >= 0x10000
    )  # fmt: skip


def build_xml_records(
    records: Iterable[tuple[int | None, Mapping[str, str]]],
    *,
    element: str = "audio",
    schema: str = AUDIO_SCHEMA,
) -> str:
    """A LimeWire collection: one ``element`` per ``(index, attributes)``
    (``index`` ``None``: a rich query's record, tied to no result)."""
    items = []
    for index, attrs in records:
        pairs = "".join(f' {k}="{_xml_attr(_clean(v))}"' for k, v in attrs.items() if k != "index")
        tail = f' index="{index}"' if index is not None else ""
        items.append(f"<{element}{pairs}{tail}/>")
    return (
        f'<?xml version="1.0"?><{element}s xsi:noNamespaceSchemaLocation="{schema}">'
        f"{''.join(items)}</{element}s>"
    )


def hit_xml_text(raw: bytes) -> str:
    """The XML text of a Query Hit's private area: plain, ``{plaintext}``, or
    ``{deflate}`` + zlib data inflated to at most :data:`MAX_INFLATED_BYTES`.
    Text is UTF-8, else Latin-1 as older servents wrote it."""
    if raw.startswith(PLAIN_PREFIX):
        raw = raw[len(PLAIN_PREFIX) :]
    elif raw.startswith(DEFLATE_PREFIX):
        d = zlib.decompressobj()
        try:
            raw = d.decompress(raw[len(DEFLATE_PREFIX) :], MAX_INFLATED_BYTES)
        except zlib.error as exc:
            raise _bad(f"deflated XML does not inflate: {exc}") from None
        if d.unconsumed_tail:
            raise _bad(f"deflated XML inflates beyond {MAX_INFLATED_BYTES} bytes")
        raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


@dataclass(frozen=True, slots=True)
class RichQuery:
    """What a rich audio query asks: words per text field, minimum bitrate
    (kbit/s) and length (seconds).  Built from the search form
    (:meth:`from_form`) or from a Query's XML (:meth:`from_xml`)."""

    fields: tuple[tuple[str, str], ...] = ()
    min_bitrate: int | None = None
    min_seconds: int | None = None

    @classmethod
    def from_form(
        cls,
        field: str,
        text: str,
        min_bitrate: int | None = None,
        min_seconds: int | None = None,
    ) -> RichQuery:
        """The form's choice: ``field`` "all" (no field), or one of
        :data:`TEXT_FIELDS` holding ``text``."""
        fields = ((field, text.strip()),) if field in TEXT_FIELDS and text.strip() else ()
        return cls(fields, min_bitrate or None, min_seconds or None)

    @classmethod
    def from_xml(cls, xml: str) -> RichQuery | None:
        """The rich query of a Query's XML (``None``: not an audio query, or
        nothing it constrains); malformed XML raises RemoteProtocolError."""
        coll = parse_collection(xml)
        if coll.schema not in (None, AUDIO_SCHEMA) or not coll.records:
            return None
        rec = coll.records[0]
        if rec.element != "audio":
            return None
        attrs = rec.fields()
        fields = tuple((k, attrs[k]) for k in TEXT_FIELDS if attrs.get(k, "").strip())
        mins = [_number(attrs.get(k)) for k in MIN_FIELDS]
        q = cls(fields, mins[0], mins[1])
        return q if q.constrains else None

    @property
    def constrains(self) -> bool:
        return bool(self.fields) or bool(self.min_bitrate) or bool(self.min_seconds)

    @property
    def field(self) -> str:
        """The one text field the query restricts ("all" when none or several)."""
        return self.fields[0][0] if len(self.fields) == 1 else "all"

    @property
    def words(self) -> str:
        """Every word the query's fields hold (the Query's criteria)."""
        return " ".join(v for _, v in self.fields)

    def to_xml(self) -> str:
        """The query's collection, one ``audio`` record."""
        attrs = dict(self.fields)
        if self.min_bitrate:
            attrs["bitrate"] = str(self.min_bitrate)
        if self.min_seconds:
            attrs["seconds"] = str(self.min_seconds)
        return build_xml_records([(None, attrs)])

    def admits(self, meta: Mapping[str, object]) -> bool:
        """Does a file with metadata ``meta`` (``title``... ``bitrate`` in
        kbit/s, ``seconds`` or ``duration`` in seconds) answer the query?
        Missing metadata fails every constraint on it."""
        for key, value in self.fields:
            have = meta.get(key)
            if not isinstance(have, str) or not set(_words(value)) <= set(_words(have)):
                return False
        if self.min_bitrate:
            bitrate = _number(meta.get("bitrate"))
            if bitrate is None or bitrate < self.min_bitrate:
                return False
        if self.min_seconds:
            seconds = _number(meta.get("seconds", meta.get("duration")))
            if seconds is None or seconds < self.min_seconds:
                return False
        return True


def _number(value: object) -> int | None:
    """A whole non-negative number from metadata (``"192"``, 192, 187.4)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if 0 <= value < 1e12 else None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        return int(value.strip())
    return None


__all__ = [
    "AUDIO_SCHEMA",
    "DEFLATE_PREFIX",
    "MAX_ATTRIBUTES",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_INFLATED_BYTES",
    "MAX_XML_CHARS",
    "MAX_XML_RECORDS",
    "MIN_FIELDS",
    "TEXT_FIELDS",
    "Collection",
    "RichQuery",
    "XmlRecord",
    "build_xml_records",
    "hit_xml_text",
    "parse_collection",
    "parse_xml_records",
]
