"""The page's live stream: server-sent events (issue 8, item 6).

One :class:`EventHub` per node.  Every connected page holds one
``GET /api/web/events`` stream (:class:`EventStream`); the hub pushes:

==================  ==============================================================
``snapshot``        everything at connect: transfers, rate history, networks,
                    library, settings, searches so far, recent monitor lines
``transfers``       rows that changed since the last tick, keys that went, and
                    the concurrent counts (every :data:`TICK` while pages watch)
``rate``            one sample of the rate graph (down/up bytes per second)
``networks``        the network panels, when they change
``library``         shared folders with file counts, after a scan or a change
``results``         a search's results as each network answers (grouped by file)
``search_done``     a search ended (count, error)
``monitor``         queries passing through the node (gtk-gnutella's Monitor)
``settings``        rate limits and upload slots after a change
==================  ==============================================================

A page that cannot keep up (its queue reaches :data:`MAX_QUEUED_EVENTS`)
is cut off; its browser reconnects and starts again from a snapshot.  The
rate graph is sampled every :data:`RATE_INTERVAL` even with no page open,
so a page opened later still shows the last minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from peerlab.apps.control import dumps
from peerlab.errors import ConfigError
from peerlab.web.auth import random_id
from peerlab.web.views import (
    DOWN_COUNTERS,
    MONITOR_EVENTS,
    UP_COUNTERS,
    WebNode,
    library_view,
    network_views,
    search_choices,
    transfer_rows,
)

log = logging.getLogger("peerlab.web")

#: Seconds between transfer pushes while a page watches.
TICK = 0.5
#: Seconds between rate-graph samples and network panel refreshes.
RATE_INTERVAL = 1.0
#: Samples kept for the rate graph: the last ten minutes.
RATE_HISTORY = 600
#: Window of the messages-per-second tables.
RATE_WINDOW = 5.0
#: Events waiting for one slow page before it is cut off (it then reconnects).
MAX_QUEUED_EVENTS = 512
#: Pages watching at once; more get 503 (each costs a queue and a socket).
MAX_STREAMS = 32
#: Monitor lines kept for a page that connects later, and pushed per tick.
MONITOR_BACKLOG = 200
#: Searches remembered (with their results) for pages that (re)connect.
MAX_KEPT_SEARCHES = 16
#: Searches running at once.
MAX_RUNNING_SEARCHES = 4
#: Most results a web search asks for and keeps (the page stays responsive).
MAX_WEB_RESULTS = 2000
#: Seconds between keep-alive comments on an idle stream (proxies and the
#: browser see the connection is alive; a dead one is noticed on write).
KEEPALIVE_SECONDS = 15.0
#: Longest query text shown in the monitor.
MAX_MONITOR_TEXT = 200


@dataclass
class WebSearch:
    """One search started from the page, with the results so far."""

    id: str
    text: str
    field: str
    networks: list[str]
    started: float
    results: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    done: bool = False
    error: str | None = None

    def summary(self, with_results: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "text": self.text, "field": self.field, "networks": self.networks,
            "done": self.done, "error": self.error, "count": len(self.results),
        }  # fmt: skip
        if with_results:
            out["results"] = list(self.results.values())
        return out


class EventStream:
    """One page's queue of formatted events."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED_EVENTS)
        self.closed = False

    def send(self, event: str, data: Any) -> None:
        if self.closed:
            return
        payload = f"event: {event}\ndata: {dumps(data)}\n\n".encode()
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.info("a page fell behind its event stream; cutting it off (it reconnects)")
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while True:  # make room for the end marker
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class EventHub:
    """Computes what changed and pushes it to every watching page."""

    def __init__(self, node: WebNode) -> None:
        self.node = node
        self.streams: set[EventStream] = set()
        self.searches: dict[str, WebSearch] = {}
        self._search_tasks: set[asyncio.Task[Any]] = set()
        self._rows: dict[str, str] = {}
        self._rates: deque[list[float]] = deque(maxlen=RATE_HISTORY)
        self._counter_history: deque[tuple[float, dict[str, int]]] = deque()
        self._networks: list[dict[str, Any]] = []
        self._networks_json = ""
        self._library: dict[str, Any] | None = None
        self._library_due = True
        self._library_task: asyncio.Task[Any] | None = None
        self._scan_json = ""
        self._folders: list[str] = []
        self._monitor: deque[dict[str, Any]] = deque(maxlen=MONITOR_BACKLOG)
        self._monitor_pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[Any] | None = None
        self._last_sample: tuple[float, int, int] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self.node.observer.listeners.append(self._on_event)
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.node.observer.listeners.remove(self._on_event)
        for stream in list(self.streams):
            stream.close()
        tasks = [t for t in (self._task, self._library_task, *self._search_tasks) if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._task = None

    def attach(self) -> EventStream:
        if len(self.streams) >= MAX_STREAMS:
            raise ConfigError(f"too many pages are watching this node (at most {MAX_STREAMS})")
        stream = EventStream()
        self.streams.add(stream)
        stream.send("snapshot", self.snapshot())
        return stream

    def detach(self, stream: EventStream) -> None:
        self.streams.discard(stream)
        stream.closed = True

    def broadcast(self, event: str, data: Any) -> None:
        for stream in list(self.streams):
            stream.send(event, data)
            if stream.closed:
                self.streams.discard(stream)

    # -------------------------------------------------------------- state

    def snapshot(self) -> dict[str, Any]:
        t = self.node.transfers()
        rows = transfer_rows(t)
        self._rows = {k: json.dumps(v, sort_keys=True, default=str) for k, v in rows.items()}
        if not self._networks:
            self._refresh_networks()
        return {
            "node": self._node_facts(),
            "transfers": {
                "rows": list(rows.values()),
                "concurrent_downloads": t.get("concurrent_downloads", 0),
                "concurrent_uploads": t.get("concurrent_uploads", 0),
            },
            "rates": list(self._rates),
            "networks": self._networks,
            "search_networks": search_choices(self.node),
            "library": self._library,
            "scan": self.node.scan_state(),
            "settings": self.node.settings(),
            "searches": [s.summary(True) for s in self.searches.values()],
            "monitor": list(self._monitor),
        }

    def _node_facts(self) -> dict[str, Any]:
        st = self.node.status()
        return {k: st.get(k) for k in ("version", "listen", "control_port", "data_dir",
                                       "download_dir", "pid", "shares")}  # fmt: skip

    # ---------------------------------------------------------------- loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = loop.time()
        while True:
            try:
                if self.streams:
                    self._push_transfers()
                    self._push_monitor()
                    self._check_scan()
                    if self._library_due:
                        self._refresh_library()
                if loop.time() >= next_sample:
                    next_sample += RATE_INTERVAL
                    self._sample_rates()
                    if self.streams:
                        self._push_networks()
            except Exception:  # keep the page alive; the details go to the log
                log.exception("web event tick failed")
            await asyncio.sleep(TICK)

    def _push_transfers(self) -> None:
        t = self.node.transfers()
        rows = transfer_rows(t)
        changed = []
        fresh: dict[str, str] = {}
        for key, row in rows.items():
            text = json.dumps(row, sort_keys=True, default=str)
            fresh[key] = text
            if self._rows.get(key) != text:
                changed.append(row)
        gone = [k for k in self._rows if k not in fresh]
        self._rows = fresh
        if changed or gone:
            self.broadcast("transfers", {
                "rows": changed, "gone": gone,
                "concurrent_downloads": t.get("concurrent_downloads", 0),
                "concurrent_uploads": t.get("concurrent_uploads", 0),
            })  # fmt: skip
            if any(r["status"] in ("complete", "failed") for r in changed):
                self._library_due = True

    def _sample_rates(self) -> None:
        counters = self.node.observer.counters
        now = time.monotonic()
        down = sum(counters.get(c, 0) for c in DOWN_COUNTERS)
        up = sum(counters.get(c, 0) for c in UP_COUNTERS)
        if self._last_sample is not None:
            then, d0, u0 = self._last_sample
            dt = max(now - then, 1e-3)
            sample = [round(time.time(), 1), round((down - d0) / dt), round((up - u0) / dt)]
            self._rates.append(sample)
            self.broadcast("rate", sample)
        self._last_sample = (now, down, up)
        self._counter_history.append((now, dict(counters)))
        while len(self._counter_history) > 1 and (
            now - self._counter_history[0][0] > RATE_WINDOW
        ):
            self._counter_history.popleft()

    def _refresh_networks(self) -> None:
        now_t, now_c = (
            self._counter_history[-1]
            if self._counter_history
            else (time.monotonic(), dict(self.node.observer.counters))
        )
        then_t, then_c = self._counter_history[0] if self._counter_history else (now_t, now_c)
        self._networks = network_views(
            self.node, self.node.status(), now_c, then_c, now_t - then_t
        )

    def _push_networks(self) -> None:
        self._refresh_networks()
        text = json.dumps(self._networks, sort_keys=True, default=str)
        if text != self._networks_json:
            self._networks_json = text
            self.broadcast("networks", {
                "networks": self._networks,
                "search_networks": search_choices(self.node),
            })  # fmt: skip

    def _check_scan(self) -> None:
        scan = self.node.scan_state()
        text = json.dumps(scan, sort_keys=True, default=str)
        if text != self._scan_json:
            self._scan_json = text
            self.broadcast("scan", scan)
            if not scan.get("running"):
                self._library_due = True
        folders = [str(f) for f in self.node.catalog.folders()]
        if folders != self._folders:
            self._folders = folders
            self._library_due = True

    def library_changed(self) -> None:
        """Shares were added or removed: recount the folders."""
        self._library_due = True

    def _refresh_library(self) -> None:
        if self._library_task is not None and not self._library_task.done():
            return
        self._library_due = False

        async def work() -> None:
            self._library = await asyncio.to_thread(library_view, self.node)
            self.broadcast("library", self._library)

        self._library_task = asyncio.ensure_future(work())

    # ------------------------------------------------------------- monitor

    def _on_event(self, name: str, fields: dict[str, Any]) -> None:
        spec = MONITOR_EVENTS.get(name)
        if spec is None:
            return
        network, key = spec
        query = str(fields.get(key, "")).strip()
        urns = fields.get("urns")
        if query in ("", "\\") and isinstance(urns, list) and urns:
            query = str(urns[0])  # a query by hash (HUGE section 4) shows its URN
        entry = {
            "time": round(time.time(), 1),
            "network": network,
            "query": query[:MAX_MONITOR_TEXT],
            "peer": str(fields.get("peer", "")),
            "results": fields.get("results"),
            # Gnutella (gnutella.query_seen): how far the query came, how far it may go.
            "hops": fields.get("hops"),
            "ttl": fields.get("ttl"),
        }
        self._monitor.append(entry)
        if len(self._monitor_pending) < MONITOR_BACKLOG:
            self._monitor_pending.append(entry)

    def _push_monitor(self) -> None:
        if self._monitor_pending:
            pending, self._monitor_pending = self._monitor_pending, []
            self.broadcast("monitor", pending)

    # ------------------------------------------------------------ searches

    def start_search(
        self,
        text: str,
        field: str,
        networks: Collection[str] | None,
        limit: int,
        *,
        min_bitrate: int | None = None,
        min_length: int | None = None,
    ) -> WebSearch:
        running = sum(not s.done for s in self.searches.values())
        if running >= MAX_RUNNING_SEARCHES:
            raise ConfigError(
                f"{running} searches are still running; wait for one to end (at most "
                f"{MAX_RUNNING_SEARCHES})"
            )
        if not text.strip():
            raise ConfigError("a search needs at least one word")
        can = self.node.search_networks()
        chosen = [n for n in can if networks is None or n in networks]
        if not chosen:
            raise ConfigError("choose at least one network this node has joined")
        search = WebSearch(random_id(), text.strip(), field, chosen, time.time())
        self.searches[search.id] = search
        while len(self.searches) > MAX_KEPT_SEARCHES:
            oldest = next(iter(self.searches))
            self.forget_search(oldest)
        limit = min(limit, MAX_WEB_RESULTS)

        def found(rows: list[dict[str, Any]]) -> None:
            fresh = []
            for row in rows:
                if row["id"] in search.results or len(search.results) < limit:
                    search.results[row["id"]] = row
                    fresh.append(row)
            if fresh:
                self.broadcast("results", {"search": search.id, "text": search.text,
                                           "networks": search.networks, "results": fresh})

        async def run() -> None:
            try:
                filters = {k: v for k, v in (("min_bitrate", min_bitrate),
                                              ("min_length", min_length)) if v}  # fmt: skip
                await self.node.search(
                    search.text, field, limit, networks=chosen, on_found=found, **filters
                )
            except asyncio.CancelledError:
                search.error = "cancelled"
                raise
            except ConfigError as e:
                search.error = str(e)
            except Exception as e:
                log.exception("web search %r failed", search.text)
                search.error = f"the search failed: {type(e).__name__}: {e}"
            finally:
                search.done = True
                self.broadcast("search_done", search.summary(False))

        task = asyncio.ensure_future(run())
        self._search_tasks.add(task)
        task.add_done_callback(self._search_tasks.discard)
        return search

    def forget_search(self, search_id: str) -> bool:
        return self.searches.pop(search_id, None) is not None
