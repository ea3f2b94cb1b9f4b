"""Magnet URIs for BitTorrent: parse and build (BEP 9, section "magnet URI format").

BEP 9::

    magnet:?xt=urn:btih:<info-hash>&dn=<name>&tr=<tracker-url>&x.pe=<peer-address>

- ``xt``: the info-hash, "hex encoded, for a total of 40 characters.  For
  compatibility with existing links in the wild, clients should also support
  the 32 character base32 encoded info-hash."  BEP 52 adds the v2 form
  ``urn:btmh:<multihash>`` (``1220`` then the 64-hex-digit SHA-256): both may
  appear in one link (a hybrid torrent).  ``xt`` of other networks
  (``urn:sha1``, ``urn:ed2k``...) is ignored, but a link must carry at least one
  BitTorrent info-hash.
- ``dn``: the display name, "may be used by the client to display while
  waiting for metadata" -- never trusted as a file name (the name on disk
  comes from the verified info dictionary).
- ``tr``: tracker URLs, any number, percent-encoded.
- ``x.pe``: peer addresses ``hostname:port``, ``ipv4-literal:port`` or
  ``[ipv6-literal]:port`` (to connect to directly).
- ``ws``: web seeds (BEP 19), carried through.

Keys may carry a numeric suffix (``tr.1``, ``xt.2``) as in the magnet
convention; other parameters are ignored.  Values are percent-decoded with
``+`` as a space (as libtorrent does) and must be UTF-8.

Public API
==========

::

    Magnet(info_hash=None, info_hash_v2=None, display_name=None,
           trackers=(), peers=(), web_seeds=())      # frozen
        .to_uri() -> str
        .info_hash_hex -> str | None
    parse_magnet(uri: str) -> Magnet                 # RemoteProtocolError on garbage
    is_magnet(text: str) -> bool

Everything a link can grow is bounded (:data:`MAX_MAGNET_LENGTH`,
:data:`MAX_TRACKERS`, :data:`MAX_PEERS`, :data:`MAX_WEB_SEEDS`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

from peerlab.errors import LocalProtocolError, RemoteProtocolError

MAGNET_SCHEME = "magnet:"
BTIH_PREFIX = "urn:btih:"
BTMH_PREFIX = "urn:btmh:"
#: BEP 52: a v2 info-hash in a magnet is a multihash: 0x12 (sha2-256), 0x20 (32 bytes).
SHA256_MULTIHASH = bytes([0x12, 0x20])
SHA1_LENGTH = 20
SHA256_LENGTH = 32

#: Longest link we read.  Links carry a hash, a name and some trackers: a few
#: hundred bytes; 64 KiB leaves room for long tracker lists and refuses a
#: megabyte-sized "link" before any work is done on it.
MAX_MAGNET_LENGTH = 64 * 1024
#: Most ``tr`` parameters kept.  Public links carry up to a few dozen.
MAX_TRACKERS = 200
#: Most ``x.pe`` peer addresses kept.
MAX_PEERS = 200
#: Most ``ws`` web seeds kept.
MAX_WEB_SEEDS = 50
#: Longest single parameter value after decoding (a URL or the display name).
MAX_VALUE_LENGTH = 4096

# A DNS host name (letters, digits, hyphens, dots); IP literals are checked
# with the ipaddress module.
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")
_BASE32_32 = re.compile(r"[A-Za-z2-7]{32}")
_HEX_MULTIHASH = re.compile(r"1220[0-9A-Fa-f]{64}")
# A parameter name with the magnet convention's optional ".N" suffix.
_INDEXED = re.compile(r"(.+)\.[0-9]+")


def _valid_host(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOSTNAME.fullmatch(host) is not None


def _check_peer(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise LocalProtocolError(f"magnet: peer port {port} out of range")
    if not _valid_host(host):
        raise LocalProtocolError(f"magnet: bad peer host {host[:80]!r}")


@dataclass(frozen=True, slots=True)
class Magnet:
    """A magnet link's BitTorrent content (BEP 9); at least one info-hash."""

    info_hash: bytes | None = None
    info_hash_v2: bytes | None = None
    display_name: str | None = None
    trackers: tuple[str, ...] = ()
    peers: tuple[tuple[str, int], ...] = ()
    web_seeds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.info_hash is None and self.info_hash_v2 is None:
            raise LocalProtocolError("a magnet link needs an info-hash")
        if self.info_hash is not None and len(self.info_hash) != SHA1_LENGTH:
            raise LocalProtocolError(f"a v1 info-hash is {SHA1_LENGTH} bytes")
        if self.info_hash_v2 is not None and len(self.info_hash_v2) != SHA256_LENGTH:
            raise LocalProtocolError(f"a v2 info-hash is {SHA256_LENGTH} bytes")
        if self.display_name == "":
            object.__setattr__(self, "display_name", None)
        for host, port in self.peers:
            _check_peer(host, port)

    @property
    def info_hash_hex(self) -> str | None:
        return self.info_hash.hex() if self.info_hash is not None else None

    def to_uri(self) -> str:
        """The link, with the info-hash in hex (BEP 9) and every value percent-encoded."""
        parts: list[str] = []
        if self.info_hash is not None:
            parts.append("xt=" + BTIH_PREFIX + self.info_hash.hex())
        if self.info_hash_v2 is not None:
            parts.append("xt=" + BTMH_PREFIX + (SHA256_MULTIHASH + self.info_hash_v2).hex())
        if self.display_name is not None:
            parts.append("dn=" + quote(self.display_name, safe=""))
        parts.extend("tr=" + quote(url, safe="") for url in self.trackers)
        for host, port in self.peers:
            shown = f"[{host}]" if ":" in host else host
            parts.append(f"x.pe={quote(shown, safe='[]:')}:{port}")
        parts.extend("ws=" + quote(url, safe="") for url in self.web_seeds)
        return MAGNET_SCHEME + "?" + "&".join(parts)


def is_magnet(text: str) -> bool:
    """Does ``text`` look like a magnet link (rather than a file name)?"""
    return text[: len(MAGNET_SCHEME)].lower() == MAGNET_SCHEME


def _btih(value: str) -> bytes:
    digits = value[len(BTIH_PREFIX) :]
    if _HEX40.fullmatch(digits):
        return bytes.fromhex(digits)
    if _BASE32_32.fullmatch(digits):
        try:
            return base64.b32decode(digits.upper())
        except (binascii.Error, ValueError):
            pass
    raise RemoteProtocolError(
        f"magnet: urn:btih needs 40 hex or 32 base32 characters, not {digits[:80]!r}"
    )


def _btmh(value: str) -> bytes:
    digits = value[len(BTMH_PREFIX) :]
    if not _HEX_MULTIHASH.fullmatch(digits):
        raise RemoteProtocolError(
            f"magnet: urn:btmh needs a SHA-256 multihash (1220 and 64 hex digits), "
            f"not {digits[:80]!r}"
        )
    return bytes.fromhex(digits)[len(SHA256_MULTIHASH) :]


def parse_peer(text: str) -> tuple[str, int]:
    """``host:port``, ``a.b.c.d:port`` or ``[v6]:port`` (BEP 9 ``x.pe``)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise RemoteProtocolError(f"magnet: bad peer address {text[:80]!r}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise RemoteProtocolError(f"magnet: bad IPv6 peer address {text[:80]!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or _HOSTNAME.fullmatch(host) is None:
            raise RemoteProtocolError(f"magnet: bad peer address {text[:80]!r}")
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise RemoteProtocolError(f"magnet: bad peer port in {text[:80]!r}")
    return host, int(port_text)


def parse_magnet(uri: str) -> Magnet:
    """Parse a magnet link (BEP 9); :class:`RemoteProtocolError` if it is not a usable one."""
    if len(uri) > MAX_MAGNET_LENGTH:
        raise RemoteProtocolError(f"magnet: link longer than {MAX_MAGNET_LENGTH} characters")
    text = uri.strip()
    if not is_magnet(text) or text[len(MAGNET_SCHEME) : len(MAGNET_SCHEME) + 1] != "?":
        raise RemoteProtocolError(f"not a magnet link: {uri[:80]!r}")
    info_hash: bytes | None = None
    info_hash_v2: bytes | None = None
    name: str | None = None
    trackers: list[str] = []
    peers: list[tuple[str, int]] = []
    web_seeds: list[str] = []
    for param in text[len(MAGNET_SCHEME) + 1 :].split("&"):
        if not param:
            continue
        key, _, raw = param.partition("=")
        indexed = _INDEXED.fullmatch(key)
        if indexed is not None:
            key = indexed.group(1)
        try:
            value = unquote_plus(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"magnet: {key} is not UTF-8") from None
        if len(value) > MAX_VALUE_LENGTH:
            raise RemoteProtocolError(f"magnet: {key} longer than {MAX_VALUE_LENGTH} characters")
        if key == "xt":
            lowered = value[: len(BTIH_PREFIX)].lower()
            if lowered == BTIH_PREFIX:
                digest = _btih(value)
                if info_hash is not None and info_hash != digest:
                    raise RemoteProtocolError("magnet: two different v1 info-hashes")
                info_hash = digest
            elif lowered == BTMH_PREFIX:
                digest = _btmh(value)
                if info_hash_v2 is not None and info_hash_v2 != digest:
                    raise RemoteProtocolError("magnet: two different v2 info-hashes")
                info_hash_v2 = digest
        elif key == "dn":
            name = value or None
        elif key == "tr":
            if value and len(trackers) < MAX_TRACKERS:
                trackers.append(value)
        elif key == "x.pe":
            if len(peers) < MAX_PEERS:
                peers.append(parse_peer(value))
        elif key == "ws":
            if value and len(web_seeds) < MAX_WEB_SEEDS:
                web_seeds.append(value)
    if info_hash is None and info_hash_v2 is None:
        raise RemoteProtocolError("magnet: no BitTorrent info-hash (xt=urn:btih:...)")
    return Magnet(info_hash, info_hash_v2, name, tuple(trackers), tuple(peers),
                  tuple(web_seeds))
