"""How the CLI shows things: sizes, rates, times, and the lecture's tables.

The transfer table copies the columns of Napster's transfer window in the
lecture (Filename, File Size, User, Status, Speed, Progress, Rate, Time
Left) and its closing line ``Concurrent Downloads: N  Concurrent Uploads: M``.
"Speed" there was the peer's declared line type (Cable, DSL, 56K), which
peerlab does not have; the measured rate stands in its place.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

_UNITS = ("B", "KB", "MB", "GB", "TB")
#: Download ids are the base32 SHA-1 (32 characters); the CLI shows the first
#: eight, and every command taking an id accepts such a prefix.
SHORT_ID = 8
#: Bounds of the file-name column of the transfer table, in characters.
MIN_FILE_WIDTH = 12
MAX_FILE_WIDTH = 60
#: Longest error shown in a status cell (the whole one is in ``--json``).
MAX_ERROR_CHARS = 14
#: Width of the progress bars of ``transfers --watch``.
BAR_WIDTH = 10

#: Status words as Napster's transfer window showed them.
STATUS_WORDS = {
    "queued": "Waiting...",
    "downloading": "Downloading...",
    "verifying": "Verifying...",
    "complete": "File Complete!",
    "paused": "Paused",
    "failed": "Failed",
    "uploading": "Uploading...",
    # BitTorrent rows (peerlab.apps.torrents)
    "metadata": "Fetching metadata...",
    "checking": "Checking...",
    "seeding": "Seeding",
    "stopped": "Stopped",
    "finished": "Finished seeding",
}
STATUS_STYLES = {
    "complete": "green",
    "failed": "red",
    "paused": "yellow",
    "queued": "yellow",
    "downloading": "cyan",
    "uploading": "magenta",
    "verifying": "cyan",
    "seeding": "green",
    "stopped": "yellow",
    "finished": "green",
}


def human_size(n: float | int | None) -> str:
    """``1536`` -> ``"1.5 KB"``, ``600000`` -> ``"586 KB"`` (powers of 1024, three digits)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def human_rate(bps: float | int | None) -> str:
    if not bps:
        return ""
    return human_size(bps) + "/s"


def clock(seconds: float | int | None) -> str:
    """Time left as the lecture's screenshot shows it: ``00:06:19``."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return ""
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def percent(done: int | None, size: int | None) -> str:
    if not size or done is None:
        return ""
    return f"{100 * done // size} %"


def _size_cell(done: int | None, size: int | None, status: str) -> str:
    """``"1.1 of 2.3 MB"``: the screenshot's "299,200 of 2,220,560", shorter."""
    if status == "complete" or done is None or done == size:
        return human_size(size)
    a, b = human_size(done), human_size(size)
    if a.split()[-1] == b.split()[-1]:
        return f"{a.split()[0]} of {b}"
    return f"{a} of {b}"


def _status_cell(item: dict[str, Any]) -> Text:
    status = str(item.get("status", ""))
    word = STATUS_WORDS.get(status, status)
    if status == "failed" and item.get("error"):
        error = str(item["error"])
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        word = f"Failed: {error}"
    position = item.get("queue_position") or item.get("position")
    if status == "queued" and position:
        word = f"Waiting... (#{position})"
    return Text(word, style=STATUS_STYLES.get(status, ""))


def _progress_cell(done: int | None, size: int | None, bars: bool) -> RenderableType:
    if not bars or not size:
        return percent(done, size)
    cell = Table.grid(padding=(0, 1))
    cell.add_column(width=BAR_WIDTH)
    cell.add_column(justify="right", width=5, no_wrap=True)
    cell.add_row(
        ProgressBar(total=float(size), completed=float(done or 0), width=BAR_WIDTH),
        percent(done, size),
    )
    return cell


def download_peer(d: dict[str, Any]) -> str:
    """The source's address, or "N sources" (each then gets a row of its own)."""
    sources = d.get("sources") or []
    if len(sources) == 1:
        return str(sources[0].get("address", ""))
    return f"{len(sources)} sources" if sources else ""


def transfers_table(data: dict[str, Any], *, bars: bool = False, width: int = 100) -> Group:
    """Downloads then uploads, one row each, and the lecture's closing line.

    A download with several sources gets one indented row per source, with
    the bytes and rate that source delivered.  The file name takes what the
    other columns leave of ``width`` (the terminal's), so the short columns
    stay whole on an 80-column terminal.
    """
    downloads = data.get("downloads", [])
    uploads = data.get("uploads", [])
    footer = Text(
        f"Concurrent Downloads: {data.get('concurrent_downloads', 0)}  "
        f"Concurrent Uploads: {data.get('concurrent_uploads', 0)}"
    )
    if not downloads and not uploads:
        return Group(Text("No transfers.", style="dim"), footer)

    rows: list[tuple[str, str, str, Text, tuple[int | None, int | None] | None, str, str]] = []
    for d in downloads:
        status = str(d.get("status", ""))
        done, size = d.get("done"), d.get("size")
        eta = d.get("eta") if status == "downloading" else None
        rows.append((
            f"[{str(d.get('id'))[:SHORT_ID]}] ↓ {d.get('name', '')}",
            _size_cell(done, size, status),
            download_peer(d),
            _status_cell(d),
            (done, size),
            human_rate(d.get("rate")) if status == "downloading" else "",
            clock(eta),
        ))
        sources = d.get("sources") or []
        if len(sources) > 1 and status != "complete":
            for src in sources:
                rows.append((
                    "",
                    human_size(src.get("bytes")),
                    str(src.get("address", "")),
                    Text(str(src.get("status", "")), style="dim"),
                    None,
                    human_rate(src.get("rate")),
                    "",
                ))
    for u in uploads:
        # An uploader sends the ranges a downloader asked for (part of the
        # file when it fetches from several sources): progress is of those.
        status = str(u.get("status", ""))
        done, size = u.get("sent"), u.get("size")
        asked = u.get("length") or size
        rate = u.get("rate") or 0
        eta = (asked - done) / rate if rate and asked and done is not None else None
        rows.append((
            f"↑ {u.get('name', '')}",
            _size_cell(done, size, status),
            str(u.get("peer", "")),
            _status_cell(u),
            (done, asked),
            human_rate(rate) if status == "uploading" else "",
            clock(eta) if status == "uploading" else "",
        ))

    headers = ("File", "Size", "Peer", "Status", "Progress", "Rate", "Time Left")
    progress_width = BAR_WIDTH + 6 if bars else 5
    fixed = [
        max(len(headers[i]), *(len(str(r[i])) for r in rows)) for i in (1, 2, 3)
    ] + [max(len(headers[4]), progress_width)] + [
        max(len(headers[i]), *(len(str(r[i])) for r in rows)) for i in (5, 6)
    ]
    # Two characters between columns (collapsed padding, no vertical lines).
    room = width - sum(fixed) - 2 * (len(headers) - 1)
    file_width = max(MIN_FILE_WIDTH, min(MAX_FILE_WIDTH, room))
    table = Table(
        box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True, expand=False
    )
    table.add_column("File", overflow="ellipsis", no_wrap=True, max_width=file_width)
    table.add_column("Size", no_wrap=True)
    table.add_column("Peer", no_wrap=True, overflow="ellipsis")
    table.add_column("Status", no_wrap=True, overflow="ellipsis")
    table.add_column("Progress", no_wrap=True)
    table.add_column("Rate", justify="right", no_wrap=True)
    table.add_column("Time Left", justify="right", no_wrap=True)
    for name, size_cell, peer, status_cell, prog, rate_cell, left in rows:
        table.add_row(
            name, size_cell, peer, status_cell,
            _progress_cell(prog[0], prog[1], bars) if prog else "",
            rate_cell, left,
        )
    return Group(table, footer)


def results_table(results: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, pad_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("File", overflow="fold", max_width=50)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Artist", overflow="fold", max_width=24)
    table.add_column("Title", overflow="fold", max_width=28)
    table.add_column("Bitrate", justify="right", no_wrap=True)
    table.add_column("Sources", justify="right")
    for r in results:
        sources = r.get("sources") or []
        where = "local" if r.get("local") and len(sources) == 1 else str(len(sources))
        table.add_row(
            str(r.get("id", "")),
            str(r.get("name", "")),
            human_size(r.get("size")),
            str(r.get("artist") or ""),
            str(r.get("title") or ""),
            f"{r['bitrate']} kbps" if r.get("bitrate") else "",
            where,
        )
    return table


def files_table(files: list[dict[str, Any]]) -> Table:
    table = Table(pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("File", overflow="fold", max_width=50)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Kind")
    table.add_column("Artist", overflow="fold", max_width=24)
    table.add_column("Title", overflow="fold", max_width=28)
    table.add_column("urn:sha1", no_wrap=True)
    for f in files:
        urn = str(f.get("urn", ""))
        table.add_row(
            str(f.get("index", "")),
            str(f.get("name", "")),
            human_size(f.get("size")),
            str(f.get("kind") or ""),
            str(f.get("artist") or ""),
            str(f.get("title") or ""),
            urn.removeprefix("urn:sha1:")[:12] + "…",
        )
    return table


def _hit_flags(host: dict[str, Any]) -> str:
    """The QHD open-data flags as gtk-gnutella's search pane shows them:
    ``push``, ``busy``, ``stable`` when stated and set, ``-`` when none is."""
    words = [name for name in ("push", "busy", "stable") if host.get(name)]
    return " ".join(words) or "-"


def gnutella_table(results: list[dict[str, Any]]) -> Table:
    """Results with Gnutella sources (issue 4, section 3; the lecture's
    gtk-gnutella screenshot): one row per file, grouped by ``urn:sha1``, then
    one row per servent offering it with its host, stated speed, the QHD
    flags (busy / stable / push: issue 4 section 1), vendor and hops away."""
    table = Table(pad_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("File / host", overflow="fold", max_width=50)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Speed", justify="right", no_wrap=True)
    table.add_column("Flags", no_wrap=True)
    table.add_column("Vendor", no_wrap=True)
    table.add_column("Hops", justify="right")
    table.add_column("Sources", justify="right")
    table.add_column("urn:sha1", no_wrap=True)
    for r in results:
        sources = r.get("sources") or []
        where = "local" if r.get("local") and len(sources) == 1 else str(len(sources))
        urn = str(r.get("urn") or "")
        table.add_row(
            str(r.get("id", "")),
            str(r.get("name", "")),
            human_size(r.get("size")),
            "", "", "", "",
            where,
            urn.removeprefix("urn:sha1:")[:12] + "…" if urn else "",
        )  # fmt: skip
        for h in r.get("hosts") or []:
            speed = h.get("speed")
            table.add_row(
                "",
                f"  {h.get('host') or '?'}",
                "",
                f"{speed} kbit/s" if speed is not None else "",
                _hit_flags(h),
                str(h.get("vendor") or ""),
                str(h.get("distance") or ""),
                "",
                "",
            )
    return table
