"""What the web page shows, computed from the node: transfer rows, network
panels, the library.  Plain JSON values; the page renders them as text.

:class:`WebNode` lists what the page asks of :class:`peerlab.apps.node.Node`.

**Networks** (issue 8, item 4).  Each panel is one dict::

    {"id": "napster", "label": "Napster", "joined": true, "state": "online",
     "detail": "...", "facts": [["Nick", "lefty"], ...],
     "servers": [{"address": ..., "in_use": true, "state": ...}],
     "connections": [{"address": ..., "role": ..., "state": ..., ...}],
     "rates": [["tx.search", 0.5, 12], ...],      # type, per second, total
     "monitor": false}

A network the node has not joined is listed with ``joined: false``; one that
the node reports in ``status()[id]`` as a dict lights up by itself (its
scalars become facts, its ``connections``/``servers`` lists become tables,
its counters under ``<id>.`` become the messages-per-second table).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from peerlab.storage.catalog import Catalog
from peerlab.web.torrents import torrent_fields

#: Napster's transfer window words (the lecture's screenshot), by status.
STATUS_WORDS = {
    "queued": "Waiting...",
    "downloading": "Downloading...",
    "verifying": "Verifying...",
    "complete": "File Complete!",
    "paused": "Paused",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "uploading": "Uploading...",
    "connecting": "Getting Info...",
}
#: Counters whose per-second difference is the rate graph.
DOWN_COUNTERS = ("transfer.bytes_fetched", "napster.download_bytes", "bt.download_bytes")
UP_COUNTERS = ("upload.bytes", "napster.upload_bytes", "bt.upload_bytes")
#: The networks of the lecture in the order the page lists them.  ``search``
#: is the node's name for the network in searches (None: not searchable yet).
NETWORKS: tuple[tuple[str, str, str | None, str], ...] = (
    ("peers", "Direct peers", "peers",
     "Other peerlab nodes named with --peer, searched and browsed over HTTP."),
    ("napster", "Napster", "napster",
     "A central index server (OpenNap protocol); transfers go peer to peer."),
    ("gnutella", "Gnutella", "gnutella",
     "Flooded queries over an overlay of equal servents (Gnutella 0.6)."),
    ("twotier", "Two-tier (KaZaA)", "twotier",
     "Leaves behind ultrapeers that route queries with QRP tables."),
    ("bittorrent", "BitTorrent", "dht",
     "Swarms per torrent, a tracker or the mainline DHT; no keyword search."),
)  # fmt: skip
#: Counter prefixes of each network's messages-per-second table.
COUNTER_PREFIXES: dict[str, tuple[str, ...]] = {
    "peers": ("http.", "event.upload.browse", "transfer.requests", "upload.connections"),
    "napster": ("napster.", "event.napster."),
    "gnutella": ("gnutella.",),
    "twotier": ("gnutella.qrp", "gnutella.rx.qrp", "gnutella.tx.qrp"),
    "bittorrent": ("bt.", "dht."),  # the session's counters (peerlab.overlays.bittorrent)
}
#: Observer events that are queries passing through the node (the Monitor):
#: event name -> (network, field holding the query text).
MONITOR_EVENTS: dict[str, tuple[str, str]] = {
    "upload.browse": ("peers", "query"),
    "gnutella.query_seen": ("gnutella", "text"),
}
#: Rows of a network's rate table (the busiest first).
MAX_RATE_ROWS = 24
#: Scalars of a future network's status shown as facts.
MAX_FACTS = 24
#: Connections / servers listed per network (a servent may hold hundreds).
MAX_TABLE_ROWS = 200


class _Observer(Protocol):
    counters: Counter[str]
    listeners: list[Callable[[str, dict[str, Any]], None]]


class _Config(Protocol):
    @property
    def downloads_path(self) -> Path: ...
    @property
    def incomplete_path(self) -> Path: ...


class WebNode(Protocol):
    """What the web page asks of the node."""

    peer_list: list[str]
    peer_state: dict[str, dict[str, Any]]
    catalog: Catalog

    @property
    def observer(self) -> _Observer: ...
    @property
    def config(self) -> _Config: ...
    def status(self) -> dict[str, Any]: ...
    def transfers(self) -> dict[str, Any]: ...
    def scan_state(self) -> dict[str, Any]: ...
    def search_networks(self) -> list[str]: ...
    async def search(
        self,
        text: str,
        field: str,
        limit: int,
        *,
        networks: Collection[str] | None = None,
        on_found: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]: ...
    def settings(self) -> dict[str, Any]: ...
    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]: ...


# ---------------------------------------------------------------- transfers


def _progress(done: int | None, size: int | None, status: str) -> float:
    if status == "complete":
        return 1.0
    if not size or done is None:
        return 0.0
    return max(0.0, min(1.0, done / size))


def download_row(d: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the Downloads table from a ``Node.transfers()`` download."""
    status = str(d.get("status", ""))
    sources = list(d.get("sources") or [])
    network = str(d.get("network") or "peers")
    if network == "napster":
        peer, speed = str(d.get("user") or ""), str(d.get("link") or "")
    else:
        active = [s for s in sources if s.get("status") not in ("idle", "failed", "dropped")]
        shown = active or sources
        peer = str(shown[0].get("address")) if len(shown) == 1 else f"{len(shown)} sources"
        speed = ""
    return {
        "key": f"d:{d.get('id')}",
        "id": str(d.get("id")),
        "network": network,
        "name": str(d.get("name") or ""),
        "size": d.get("size"),
        "done": int(d.get("done") or 0),
        "progress": _progress(d.get("done"), d.get("size"), status),
        "status": status,
        "status_text": STATUS_WORDS.get(status, status.capitalize()),
        "peer": peer,
        "speed": speed,
        "rate": float(d.get("rate") or 0.0),
        "eta": d.get("eta"),
        "error": d.get("error"),
        "sources": [
            {"address": str(s.get("address")), "status": str(s.get("status", "")),
             "bytes": int(s.get("bytes") or 0), "rate": float(s.get("rate") or 0.0),
             "error": s.get("error")}
            for s in sources[:MAX_TABLE_ROWS]
        ],
        **(_torrent(d) if network == "bittorrent" else {}),
    }  # fmt: skip


def _torrent(d: Mapping[str, Any]) -> dict[str, Any]:
    """A torrent's peers and piece map (:mod:`peerlab.web.torrents`)."""
    fields = torrent_fields(d)
    if fields["status_text"] is None:
        del fields["status_text"]
    return fields


def upload_row(u: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the Uploads table from a ``Node.transfers()`` upload."""
    status = str(u.get("status", ""))
    network = str(u.get("network") or "peers")
    length = int(u.get("length") or 0)
    sent = int(u.get("sent") or 0)
    rate = float(u.get("rate") or 0.0)
    peer = str(u.get("peer") or "")
    speed = ""
    if network == "napster" and peer.endswith(")") and " (" in peer:
        peer, _, speed = peer[:-1].rpartition(" (")
    eta = (length - sent) / rate if status == "uploading" and rate > 0 else None
    return {
        "key": f"u:{network}:{u.get('id')}",
        "id": str(u.get("id")),
        "network": network,
        "name": str(u.get("name") or ""),
        "size": length or u.get("size"),
        "done": sent,
        "progress": _progress(sent, length, status),
        "status": status,
        "status_text": STATUS_WORDS.get(status, status.capitalize()),
        "peer": peer,
        "speed": speed,
        "rate": rate,
        "eta": eta,
        "error": u.get("error"),
        "position": u.get("position"),
    }


def transfer_rows(t: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every row keyed ``d:<id>`` / ``u:<network>:<id>``."""
    rows = [download_row(d) for d in t.get("downloads", [])]
    rows += [upload_row(u) for u in t.get("uploads", [])]
    return {r["key"]: r for r in rows}


# ----------------------------------------------------------------- networks


def counter_rates(
    now: Mapping[str, int],
    then: Mapping[str, int],
    seconds: float,
    prefixes: tuple[str, ...],
    strip: str = "",
) -> list[list[Any]]:
    """``[type, per second, total]`` for the counters under ``prefixes``
    (``strip``, the network's own prefix, is left out of the type)."""
    rows: list[list[Any]] = []
    for name, total in now.items():
        if not name.startswith(prefixes) or name.endswith("bytes"):
            continue
        rate = (total - then.get(name, 0)) / seconds if seconds > 0 else 0.0
        label = name.removeprefix("event.")
        if strip and label.startswith(strip):
            label = label[len(strip):]
        rows.append([label, round(rate, 2), total])
    rows.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return rows[:MAX_RATE_ROWS]


def _when(at: float | None) -> str | None:
    if not at:
        return None
    return time.strftime("%H:%M:%S", time.localtime(at))


def _peers_view(node: WebNode) -> dict[str, Any]:
    rows = []
    for address in node.peer_list[:MAX_TABLE_ROWS]:
        st = node.peer_state.get(address)
        state = "not asked yet" if st is None else ("answered" if st["ok"] else "no answer")
        rows.append({
            "address": address, "role": "peer", "state": state,
            "detail": st["detail"] if st else "", "since": _when(st["at"]) if st else None,
        })  # fmt: skip
    n = len(node.peer_list)
    return {
        "joined": True,
        "state": f"{n} peer{'s' if n != 1 else ''}" if n else "no peers",
        "detail": "add peers with --peer HOST:PORT or 'peerlab peer add'",
        "facts": [],
        "connections": rows,
        "servers": [],
        "monitor": True,
    }


def _napster_view(st: Mapping[str, Any]) -> dict[str, Any]:
    in_use = st.get("server")
    refusals = st.get("refusals") or {}
    servers = []
    for address in st.get("servers") or []:
        if address == in_use:
            state = str(st.get("state") or "connected")
        elif address in refusals:
            state = f"refused: {refusals[address]}"
        else:
            state = "standby"
        servers.append({"address": address, "in_use": address == in_use, "state": state})
    motd = [str(line) for line in (st.get("motd") or [])][:3]
    data_port = "none (firewalled: uploads pushed)" if st.get("firewalled") else st.get("data_port")
    facts = [
        ["Nick", st.get("nick")],
        ["Link type", st.get("link")],
        ["Data port", data_port],
        ["Files shared", f"{st.get('shared', 0)} of {st.get('shareable', 0)}"],
        ["Logins", st.get("logins")],
    ]
    facts += [["Message of the day", line] for line in motd]
    return {
        "joined": True,
        "state": str(st.get("state") or ""),
        "detail": str(st.get("detail") or ""),
        "facts": facts,
        "servers": servers,
        "connections": [],
        "monitor": False,
    }


def _generic_view(st: Mapping[str, Any]) -> dict[str, Any]:
    """A network the page has no special panel for: its scalars and tables."""
    facts = [
        [str(k).replace("_", " ").capitalize(), v]
        for k, v in st.items()
        if isinstance(v, str | int | float | bool) and k not in ("state", "detail")
    ][:MAX_FACTS]

    def table(key: str) -> list[dict[str, Any]]:
        value = st.get(key)
        if not isinstance(value, list):
            return []
        return [
            {str(k): v for k, v in row.items() if isinstance(v, str | int | float | bool)}
            for row in value[:MAX_TABLE_ROWS] if isinstance(row, dict)
        ]  # fmt: skip

    return {
        "joined": True,
        "state": str(st.get("state") or "joined"),
        "detail": str(st.get("detail") or ""),
        "facts": facts,
        "servers": table("servers"),
        "connections": table("connections"),
        "monitor": bool(st.get("monitor", False)),
    }


def network_views(
    node: WebNode,
    status: Mapping[str, Any],
    counters_now: Mapping[str, int],
    counters_then: Mapping[str, int],
    seconds: float,
) -> list[dict[str, Any]]:
    """Every network panel, joined or not (see the module docstring)."""
    out = []
    for net_id, label, _search, about in NETWORKS:
        st = status.get(net_id)
        if net_id == "peers":
            view = _peers_view(node)
        elif net_id == "napster" and isinstance(st, dict):
            view = _napster_view(st)
        elif isinstance(st, dict):
            view = _generic_view(st)
        else:
            view = {"joined": False, "state": "not joined", "detail": "", "facts": [],
                    "servers": [], "connections": [], "monitor": False}  # fmt: skip
        prefixes = COUNTER_PREFIXES.get(net_id, (net_id + ".",))
        view.update(
            id=net_id, label=label, about=about,
            rates=counter_rates(counters_now, counters_then, seconds, prefixes, net_id + ".")
            if view["joined"] else [],
        )  # fmt: skip
        out.append(view)
    return out


def search_choices(node: WebNode) -> list[dict[str, Any]]:
    """The search form's network checkboxes: every network, enabled when joined."""
    can = set(node.search_networks())
    choices = [{"id": "local", "label": "My shares", "enabled": "local" in can}]
    for _net_id, label, search, _about in NETWORKS:
        if search is not None:
            choices.append({"id": search, "label": label, "enabled": search in can})
    return choices


# ------------------------------------------------------------------ library


def library_view(node: WebNode) -> dict[str, Any]:
    """Shared folders with their file counts and sizes (call off the event loop)."""
    folders: dict[str, dict[str, Any]] = {
        str(p): {"path": str(p), "files": 0, "bytes": 0} for p in node.catalog.folders()
    }
    total_files = total_bytes = 0
    for f in node.catalog.files():
        total_files += 1
        total_bytes += f.size
        row = folders.get(str(f.root))
        if row is not None:
            row["files"] += 1
            row["bytes"] += f.size
    return {
        "folders": list(folders.values()),
        "files": total_files,
        "bytes": total_bytes,
        "download_dir": str(node.config.downloads_path),
        "incomplete_dir": str(node.config.incomplete_path),
    }
