"""Node settings: one documented dataclass, loaded from TOML, environment and flags.

Where a value comes from, strongest first::

    command-line flag  >  environment variable PEERLAB_<NAME>  >  config file  >  default

The config file is TOML at the usual per-user location
(``platformdirs.user_config_dir("peerlab")/config.toml``, e.g.
``~/.config/peerlab/config.toml`` on Linux); ``--config PATH`` (or
``PEERLAB_CONFIG``) names another one.  Its keys are the field names of
:class:`NodeConfig`; relative paths in it are taken relative to the file.

BitTorrent settings may sit in a ``[bittorrent]`` table (``listen_port``,
``download_dir``, ``upload_rate``, ``download_rate``, ``seed_ratio``,
``seed_time``, ``dht``, ``dht_port``, ``dht_bootstrap``, ``enabled``):
``[bittorrent] seed_ratio = 2`` is the field
``bittorrent_seed_ratio`` (environment ``PEERLAB_BITTORRENT_SEED_RATIO``).

Every mistake (an unknown key, a wrong type, a file that is not TOML, a port
out of range) raises :class:`~peerlab.errors.ConfigError` with one line that
names the file or variable and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from peerlab.errors import ConfigError

APP_NAME = "peerlab"
CONFIG_FILE_NAME = "config.toml"
ENV_PREFIX = "PEERLAB_"
#: Names the config file to read, like ``--config``.
CONFIG_ENV = ENV_PREFIX + "CONFIG"

#: Gnutella's customary servent port (the one LimeWire and gtk-gnutella use).
DEFAULT_PEER_PORT = 6346
#: Peers are served on loopback only until the user opens the node up on purpose.
DEFAULT_LISTEN_HOST = "127.0.0.1"
#: The control API never listens anywhere else: it is the node's remote control.
CONTROL_HOST = "127.0.0.1"
#: Upload slots and queue as the servents of the lecture's era shipped them.
DEFAULT_UPLOAD_SLOTS = 4
DEFAULT_QUEUE_LENGTH = 32
#: Upper bounds that keep a typo from asking for absurd resources.
MAX_UPLOAD_SLOTS = 1024
MAX_QUEUE_LENGTH = 100_000
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The data port Napster clients listened on for peer transfers (napster.txt
#: section 3, message 2's example: ``foo badpass 6699 "nap v0.8" 3``).
DEFAULT_NAPSTER_PORT = 6699
#: Napster link types (napster.txt, message 2 "login": 0 unknown ... 10 T3 or
#: greater), by the names a user may write in the config instead of the number.
NAPSTER_LINK_NAMES = {
    "unknown": 0, "14.4": 1, "28.8": 2, "33.6": 3, "56k": 4, "isdn-64k": 5,
    "isdn-128k": 6, "cable": 7, "dsl": 8, "t1": 9, "t3": 10,
}  # fmt: skip
#: Longest Napster nick or password accepted from the config (the server has
#: its own bound; this keeps a typo from sending a page of text).
MAX_NAPSTER_CREDENTIAL = 64
_NICK_RE = re.compile(r"^[A-Za-z0-9_\[\]{}\-@^!$]+$")

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)


def default_data_dir() -> Path:
    """The per-user data directory (catalog, partial downloads, control file)."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_config_path() -> Path:
    """Where the config file is looked for when none is named."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_FILE_NAME


@dataclass
class NodeConfig:
    """Everything a node needs to know before it starts.

    Rates are bytes per second; 0 means unlimited.
    """

    #: Catalog database, partial downloads, the node's log and control file.
    data_dir: Path = field(default_factory=default_data_dir)
    #: Folders shared with peers (added to the catalog at start; ``peerlab share
    #: add`` adds more, which the catalog remembers).
    shared: list[Path] = field(default_factory=list)
    #: Where finished, verified downloads go (default: ``<data_dir>/downloads``).
    download_dir: Path | None = None
    #: Where partial downloads and their state live (default: ``<data_dir>/incomplete``).
    incomplete_dir: Path | None = None
    #: Address peers connect to.  Loopback until configured otherwise.
    listen_host: str = DEFAULT_LISTEN_HOST
    #: Port peers connect to; 0 picks a free one (shown by ``peerlab status``).
    listen_port: int = DEFAULT_PEER_PORT
    #: Port of the control API on 127.0.0.1; 0 picks a free one (the CLI finds
    #: it in ``<data_dir>/control.json``).
    control_port: int = 0
    #: Uploads served at once; more requesters wait in the queue.
    upload_slots: int = DEFAULT_UPLOAD_SLOTS
    #: Requesters that may wait for a slot; beyond it they get 503 without a place.
    queue_length: int = DEFAULT_QUEUE_LENGTH
    #: Global upload limit, bytes/s (0: unlimited).  Accepts ``"500K"``, ``"2M"``.
    upload_rate: int = 0
    #: Global download limit, bytes/s (0: unlimited).
    download_rate: int = 0
    #: Other nodes to search and download from directly, as ``HOST:PORT``.
    peers: list[str] = field(default_factory=list)
    #: How much the node logs: debug, info, warning, error.
    log_level: str = "info"
    #: Napster index servers, ``HOST:PORT``, in fail-over order: the node logs
    #: in to the first that answers, shares its catalog there, and moves on
    #: to the next when it goes away.  Empty: the node does not join Napster.
    napster: list[str] = field(default_factory=list)
    #: The Napster nick (default: one generated once and kept in
    #: ``<data_dir>/napster.json``).
    napster_nick: str | None = None
    #: The Napster password the nick is registered with (default: one
    #: generated once and kept, mode 0600, in ``<data_dir>/napster.json``).
    napster_password: str | None = None
    #: Napster data port for peer transfers (``GET``/``SEND``) on
    #: ``listen_host``; 0 picks a free one.
    napster_port: int = DEFAULT_NAPSTER_PORT
    #: Behind a firewall: log in with data port 0, accept no connections and
    #: push uploads out (``SEND``) when the server relays a 501.
    napster_firewalled: bool = False
    #: The link type announced to Napster (0-10 or a name: unknown, 14.4, 28.8,
    #: 33.6, 56k, isdn-64k, isdn-128k, cable, dsl, t1, t3).
    napster_link: int = 0
    #: Gnutella servents to join through, ``HOST:PORT`` (issue 4, section 2):
    #: the node runs a Gnutella 0.6 servent sharing its catalog on its peer
    #: port (Gnutella, HTTP and GIV connections on one port, told apart by
    #: their first bytes).  Empty, with no GWebCache and ``gnutella_serve``
    #: off: the node does not join Gnutella.
    gnutella: list[str] = field(default_factory=list)
    #: GWebCache URLs (``http://host:port/path``) to ask for servents.
    gwebcache: list[str] = field(default_factory=list)
    #: Join Gnutella with no servent to dial: wait for others to connect
    #: (the first servent of a network).
    gnutella_serve: bool = False
    #: Behind a firewall on Gnutella: accept no incoming connection at all
    #: (Query Hits carry the push flag; uploads go out through Push/GIV).
    gnutella_firewalled: bool = False
    #: Run the BitTorrent client (issue 6, item 6): torrents added with
    #: ``peerlab torrent add`` download and seed on their own listener.
    bittorrent: bool = True
    #: Port BitTorrent peers connect to (0: any free port); unset: any free
    #: port at the first start, the same one at later starts while it is free.
    bittorrent_listen_port: int | None = None
    #: Where torrents' files go (default: the download dir).  Files are
    #: written piece by piece into their final layout, each piece only after
    #: its hash verified.
    bittorrent_download_dir: Path | None = None
    #: Global BitTorrent limits over every torrent, bytes/s (0: unlimited).
    bittorrent_upload_rate: int = 0
    bittorrent_download_rate: int = 0
    #: Default seeding goals of an added torrent: stop once the share ratio
    #: (uploaded / size) reaches this, or after this many seconds of
    #: seeding (unset: seed until stopped).
    bittorrent_seed_ratio: float | None = None
    bittorrent_seed_time: float | None = None
    #: The mainline DHT (BEP 5, :mod:`peerlab.apps.bt_dht`): torrents and
    #: magnets with no tracker find peers through it, every torrent is
    #: announced there too.  Its UDP port (0: any free port; unset: the last
    #: run's while free) and nodes to join through (HOST:PORT, e.g.
    #: router.bittorrent.com:6881; besides, the table saved last time).
    bittorrent_dht: bool = True
    bittorrent_dht_port: int | None = None
    bittorrent_dht_bootstrap: list[str] = field(default_factory=list)
    #: The servent's role (issue 5): ``auto`` (promoted or demoted by the
    #: measured capacity; without ``gnutella_upload_kbps`` a flat servent),
    #: ``ultrapeer`` or ``leaf``.
    gnutella_role: str = "auto"
    #: Upload capacity of this node's line in kbit/s, for the promotion policy
    #: (0: not measured).
    gnutella_upload_kbps: int = 0
    #: Seconds of uptime before an ``auto`` node may be promoted (the
    #: ultra-peers draft's "several minutes"; a demo uses seconds).
    gnutella_min_uptime: float = 300.0

    @property
    def gnutella_on(self) -> bool:
        """Does the node join Gnutella?"""
        return bool(
            self.gnutella or self.gwebcache or self.gnutella_serve or self.gnutella_firewalled
        )

    @property
    def downloads_path(self) -> Path:
        return self.download_dir if self.download_dir is not None else self.data_dir / "downloads"

    @property
    def torrent_download_path(self) -> Path:
        return self.bittorrent_download_dir or self.downloads_path

    @property
    def incomplete_path(self) -> Path:
        if self.incomplete_dir is not None:
            return self.incomplete_dir
        return self.data_dir / "incomplete"

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and TOML-friendly view (paths as strings, unset values left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = [str(v) for v in value]
            out[f.name] = value
        return out

    def to_display(self) -> dict[str, Any]:
        """:meth:`to_dict` with secrets (the Napster password) masked."""
        return {k: ("********" if k in SECRET_FIELDS else v) for k, v in self.to_dict().items()}


# ------------------------------------------------------------------ converters


def _where_key(where: str, key: str) -> str:
    return f"{where}: {key}"


def parse_rate(value: Any, where: str) -> int:
    """Bytes per second from an int or a string such as ``"500K"``, ``"2MB/s"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a rate in bytes/s, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        m = _RATE_RE.match(value)
        if not m:
            raise ConfigError(f"{where}: not a rate (try 500000, 500K or 2M): {value!r}")
        number = float(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise ConfigError(f"{where}: expected a rate in bytes/s, got {value!r}")
    if number < 0:
        raise ConfigError(f"{where}: a rate cannot be negative: {value!r}")
    return int(number)


def parse_address(text: str, where: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``) into ``(host, port)``."""
    s = text.strip()
    host, sep, port_s = s.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_s)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} is out of range 1-65535")
    return host, port


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value} is out of range {lo}-{hi}")
    return value


def _port(value: Any, where: str) -> int:
    return _int(value, where, 0, 65535)


def _path(value: Any, where: str, base: Path | None) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    return p.absolute()


def _string_list(value: Any, where: str, sep: str | None) -> list[str]:
    if isinstance(value, str):
        if sep is None:
            return [value]
        return [part for part in (p.strip() for p in value.split(sep)) if part]
    if isinstance(value, list | tuple) and all(isinstance(v, str | Path) for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"{where}: expected a list of strings, got {value!r}")


def _host(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ConfigError(f"{where}: expected a host name or address, got {value!r}")
    return value.strip()


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _link(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().lower() in NAPSTER_LINK_NAMES:
        return NAPSTER_LINK_NAMES[value.strip().lower()]
    if isinstance(value, str) and not value.strip().isdigit():
        names = ", ".join(NAPSTER_LINK_NAMES)
        raise ConfigError(f"{where}: expected a link type 0-10 or one of {names}, got {value!r}")
    return _int(value, where, 0, 10)


def _credential(value: Any, where: str, *, nick: bool) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAPSTER_CREDENTIAL:
        raise ConfigError(
            f"{where}: expected 1-{MAX_NAPSTER_CREDENTIAL} characters, got {value!r}"
        )
    if nick and not _NICK_RE.match(value):
        raise ConfigError(
            f"{where}: a Napster nick is letters, digits and _[]{{}}-@^!$ only, got {value!r}"
        )
    if not nick and (not value.isascii() or any(c.isspace() or not c.isprintable() for c in value)):
        raise ConfigError(f"{where}: a Napster password is printable ASCII without spaces")
    return value


def _url(value: str, where: str) -> str:
    """A GWebCache URL: ``http://`` or ``https://`` with a host, no spaces."""
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or any(
        c.isspace() for c in text
    ):
        raise ConfigError(f"{where}: expected an http:// URL, got {value!r}")
    return text


def _ratio(value: Any, where: str) -> float:
    """A non-negative number (a share ratio, seconds of seeding)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e12:
        raise ConfigError(f"{where}: expected a number of at least 0, got {value!r}")
    return float(value)
#: Gnutella roles ``gnutella_role`` takes (ServentConfig.role).
GNUTELLA_ROLES = ("auto", "ultrapeer", "leaf")
#: Largest line capacity we take (10 Gbit/s).
MAX_UPLOAD_KBPS = 10_000_000
#: Longest uptime asked before a promotion (a day).
MAX_MIN_UPTIME = 86_400


def _role(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in GNUTELLA_ROLES:
        raise ConfigError(f"{where}: expected one of {', '.join(GNUTELLA_ROLES)}, got {value!r}")
    return value.strip().lower()


def _level(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{where}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.lower()


#: How each field is read.  ``base`` is the directory relative paths hang off
#: (the config file's for file values, the working directory otherwise); list
#: values in environment variables are split on ``os.pathsep`` (paths) or commas.
_Converter = Callable[[Any, str, Path | None], Any]
_CONVERTERS: dict[str, _Converter] = {
    "data_dir": lambda v, w, b: _path(v, w, b),
    "shared": lambda v, w, b: [
        _path(p, w, b) for p in _string_list(v, w, os.pathsep if isinstance(v, str) else None)
    ],
    "download_dir": lambda v, w, b: _path(v, w, b),
    "incomplete_dir": lambda v, w, b: _path(v, w, b),
    "listen_host": lambda v, w, b: _host(v, w),
    "listen_port": lambda v, w, b: _port(v, w),
    "control_port": lambda v, w, b: _port(v, w),
    "upload_slots": lambda v, w, b: _int(v, w, 1, MAX_UPLOAD_SLOTS),
    "queue_length": lambda v, w, b: _int(v, w, 0, MAX_QUEUE_LENGTH),
    "upload_rate": lambda v, w, b: parse_rate(v, w),
    "download_rate": lambda v, w, b: parse_rate(v, w),
    "peers": lambda v, w, b: [
        format_address(parse_address(a, w)) for a in _string_list(v, w, ",")
    ],
    "log_level": lambda v, w, b: _level(v, w),
    "napster": lambda v, w, b: [
        format_address(parse_address(a, w)) for a in _string_list(v, w, ",")
    ],
    "napster_nick": lambda v, w, b: _credential(v, w, nick=True),
    "napster_password": lambda v, w, b: _credential(v, w, nick=False),
    "napster_port": lambda v, w, b: _port(v, w),
    "napster_firewalled": lambda v, w, b: _bool(v, w),
    "napster_link": lambda v, w, b: _link(v, w),
    "gnutella": lambda v, w, b: [
        format_address(parse_address(a, w)) for a in _string_list(v, w, ",")
    ],
    "gwebcache": lambda v, w, b: [_url(u, w) for u in _string_list(v, w, ",")],
    "gnutella_serve": lambda v, w, b: _bool(v, w),
    "gnutella_firewalled": lambda v, w, b: _bool(v, w),
    "bittorrent": lambda v, w, b: _bool(v, w),
    "bittorrent_listen_port": lambda v, w, b: _port(v, w),
    "bittorrent_download_dir": lambda v, w, b: _path(v, w, b),
    "bittorrent_upload_rate": lambda v, w, b: parse_rate(v, w),
    "bittorrent_download_rate": lambda v, w, b: parse_rate(v, w),
    "bittorrent_seed_ratio": lambda v, w, b: _ratio(v, w),
    "bittorrent_seed_time": lambda v, w, b: _ratio(v, w),
    "bittorrent_dht": lambda v, w, b: _bool(v, w),
    "bittorrent_dht_port": lambda v, w, b: _port(v, w),
    "bittorrent_dht_bootstrap": lambda v, w, b: [
        format_address(parse_address(a, w)) for a in _string_list(v, w, ",")
    ],
    "gnutella_role": lambda v, w, b: _role(v, w),
    "gnutella_upload_kbps": lambda v, w, b: _int(v, w, 0, MAX_UPLOAD_KBPS),
    "gnutella_min_uptime": lambda v, w, b: float(_int(v, w, 0, MAX_MIN_UPTIME)),
}
#: Config-file tables and the prefix their keys take (``[bittorrent]``).
TABLES = {"bittorrent": "bittorrent_"}
#: Keys of a table that name the section's switch itself.
_TABLE_SWITCH = "enabled"
#: Settings ``peerlab config`` shows masked.
SECRET_FIELDS = frozenset({"napster_password"})
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(NodeConfig))
assert set(_CONVERTERS) == set(FIELD_NAMES)


def env_name(key: str) -> str:
    """``upload_rate`` -> ``PEERLAB_UPLOAD_RATE``."""
    return ENV_PREFIX + key.upper()


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw table of a TOML config file, keys checked against :class:`NodeConfig`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in TABLES and isinstance(value, dict):
            for sub, sub_value in value.items():
                name = key if sub == _TABLE_SWITCH else TABLES[key] + sub
                if name not in _CONVERTERS:
                    raise ConfigError(f"config file {path}: unknown key {sub!r} in [{key}]")
                flat[name] = sub_value
        else:
            flat[key] = value
    table = flat
    for key, value in table.items():
        if key not in _CONVERTERS:
            known = ", ".join(FIELD_NAMES)
            raise ConfigError(f"config file {path}: unknown key {key!r} (known: {known})")
        if isinstance(value, dict):
            raise ConfigError(f"config file {path}: {key!r} must be a value, not a table")
    return table


def load_config(
    *,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Build the effective settings: flag > environment > file > default.

    ``config_path`` names the file explicitly (it must then exist); without
    it ``$PEERLAB_CONFIG`` or the per-user default is read if present.
    ``flags`` holds only the options the user actually gave (no ``None``s).
    """
    env = os.environ if env is None else env
    flags = flags or {}
    explicit = config_path is not None or bool(env.get(CONFIG_ENV))
    path = config_path or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else default_config_path())
    path = path.expanduser()
    values: dict[str, Any] = {}
    if explicit or path.exists():
        table = read_config_file(path)
        base = path.absolute().parent
        for key, raw in table.items():
            values[key] = _CONVERTERS[key](raw, _where_key(f"config file {path}", key), base)
    for key in FIELD_NAMES:
        name = env_name(key)
        raw_env = env.get(name)
        if raw_env is not None and raw_env != "":
            values[key] = _CONVERTERS[key](raw_env, f"environment variable {name}", None)
    for key, raw_flag in flags.items():
        if key not in _CONVERTERS:
            raise ConfigError(f"unknown setting {key!r}")
        if raw_flag is None:
            continue
        option = "--" + key.replace("_", "-")
        values[key] = _CONVERTERS[key](raw_flag, f"option {option}", None)
    return replace(NodeConfig(), **values)


def config_file_in_use(config_path: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The config file :func:`load_config` reads (or would read if it existed)."""
    env = os.environ if env is None else env
    if config_path is not None:
        return config_path.expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    return default_config_path()
