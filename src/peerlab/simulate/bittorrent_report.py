"""CSV files, plots and the Markdown section of the BitTorrent experiments.

:func:`build` turns the swarms :mod:`peerlab.simulate.bittorrent` ran into
the report's parts.  Numbers are written with fixed decimals so that equal
runs give equal CSV bytes; plots are drawn with matplotlib's Agg canvas (no
display, no pyplot global state) and carry no software version or date.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from peerlab.simulate.base import Figure
from peerlab.wire.peer import BLOCK_SIZE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from peerlab.simulate.bittorrent import BtConfig, PeerResult, SwarmResult

__all__ = ["BtReport", "build"]

#: Plot size (inches) and resolution: readable in a Markdown page.
FIG_SIZE: Final = (7.0, 4.2)
FIG_SIZE_TALL: Final = (7.0, 6.4)
DPI: Final = 110
#: PNG metadata: none of matplotlib's (its version would differ between machines).
PNG_METADATA: Final[dict[str, Any]] = {"Software": None}

#: A downlink busy this share of a leecher's download time was its bottleneck.
SATURATED: Final = 0.9
#: Names the report uses for the policies.
CHOKER_TITLES: Final = {"tit-for-tat": "tit-for-tat", "random": "random unchoke"}
STRATEGY_TITLES: Final = {
    "rarest": "rarest first",
    "random": "random",
    "sequential": "sequential",
}
#: The summary table's columns (every row has them all; "" = not measured).
COLUMNS: Final = (
    "experiment",
    "variant",
    "leechers",
    "completed",
    "median_s",
    "p90_s",
    "max_s",
    "client_server_median_s",
    "lower_bound_s",
    "seed_upload_copies",
    "spread_at_copies",
)


@dataclass(slots=True)
class BtReport:
    """The parts :func:`build` makes."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    markdown: str = ""
    figures: list[Figure] = field(default_factory=list)
    csv: list[Path] = field(default_factory=list)


def _pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1), linear between ranks; nan when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _f(x: float | None, digits: int = 1) -> str:
    """A number for CSV and Markdown: fixed decimals; "" when unknown."""
    if x is None or math.isnan(x) or math.isinf(x):
        return ""
    return f"{x:.{digits}f}"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def _figure(size: tuple[float, float] = FIG_SIZE) -> MplFigure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: MplFigure, path: Path) -> None:
    fig.savefig(path, format="png", metadata=PNG_METADATA)


def _plain_log(axis: Any) -> None:
    """Log scale with plain numbers at 1-2-5 steps (matplotlib's default
    labels every minor tick as a power of ten, and they overlap)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _share(x: float) -> str:
    """A share as a whole percentage; "" when unknown."""
    return "" if math.isnan(x) else f"{x:.0%}"


def _cdf(ax: Axes, values: Sequence[float], total: int, **style: Any) -> None:
    """Fraction of ``total`` leechers done by each time (a step curve)."""
    xs = sorted(values)
    if not xs:
        return
    ys = [(i + 1) / total for i in range(len(xs))]
    ax.step([0.0, *xs], [0.0, *ys], where="post", **style)


def rider_findings(found: dict[str, tuple[float, int, int, float, float]]) -> list[str]:
    """What the free-rider table says, in words, from its figures."""
    out = []
    tft = found.get("tit-for-tat")
    if tft is not None and not math.isnan(tft[0]):
        ratio, slower, n, _, _ = tft
        out.append(
            f"Under tit-for-tat a free rider gets only optimistic unchokes and the seed's "
            f"slots: it took {ratio:.2f}× the contributors' time"
            + (f" (longer in {slower} of {n} swarms)." if n > 1 else "."))
    rnd = found.get("random")
    if rnd is not None and not math.isnan(rnd[0]):
        ratio, slower, n, busy_c, busy_f = rnd
        runs = f" (in {n - slower} of {n} swarms)" if n > 1 else ""
        if ratio < 1:
            out.append(
                f"Under random unchoking nothing is earned, and free riders finished "
                f"*sooner*: {ratio:.2f}× the contributors' time{runs}. A contributor's "
                f"uplink carries its uploads (busy {_share(busy_c)} of its download "
                f"time, a free rider's {_share(busy_f)}), and its own requests wait "
                "their turn on it behind its uploads' segments, while a free rider's go "
                "out at once: when nobody pays uploads back, uploading costs download "
                "speed. Tit-for-tat turns that around.")
        else:
            out.append(f"Under random unchoking a free rider is served like everyone "
                       f"else: {ratio:.2f}× the contributors' time.")
    return [" ".join(out), ""] if out else []


class _Builder:
    def __init__(self, cfg: BtConfig, seed: int, out: Path, command: str,
                 results: dict[str, SwarmResult]) -> None:
        self.cfg = cfg
        self.seed = seed
        self.out = out
        self.command = command
        self.results = results
        self.report = BtReport()
        self.md: list[str] = []

    # -- helpers

    def figure(self, fig: MplFigure, name: str, caption: str) -> None:
        """Save a plot; the scenario engine shows it under the section with
        its caption and command (``peerlab.simulate.engine.section``)."""
        path = self.out / name
        _save(fig, path)
        self.report.figures.append(Figure(path=path, caption=caption, command=self.command))

    def row(self, **values: Any) -> None:
        self.report.rows.append({c: values.get(c, "") for c in COLUMNS})

    def baseline(self, r: SwarmResult) -> list[float]:
        from peerlab.simulate.bittorrent import client_server_times

        size = r.spec.file_size or self.cfg.file_size
        return client_server_times(
            size,
            self.cfg.link(self.cfg.seed_link).up,
            [p.started for p in r.peers],
            [self.cfg.link(p.link).down for p in r.peers],
        )

    def bound(self, r: SwarmResult) -> float:
        from peerlab.simulate.bittorrent import p2p_lower_bound

        size = r.spec.file_size or self.cfg.file_size
        return p2p_lower_bound(
            size,
            self.cfg.link(self.cfg.seed_link).up,
            [self.cfg.link(p.link).up for p in r.peers if not p.rider],
            [self.cfg.link(p.link).down for p in r.peers],
        )

    def copies(self, r: SwarmResult, n: int | None) -> float | None:
        size = r.spec.file_size or self.cfg.file_size
        return None if n is None else n / size

    # -- sections

    def setup(self) -> None:
        cfg = self.cfg
        mix = ", ".join(f"{name} {share:g}" for name, share in cfg.leecher_links)
        used = [cfg.seed_link, *(n for n, _ in cfg.leecher_links)]
        self.md += [
            "Every peer below is peerlab's own BitTorrent `Session` (the class the "
            "node runs, pieces in memory) on a simulated host, introduced by peerlab's "
            "tracker; one seed, and leechers that all arrive in the first seconds "
            f"({cfg.stagger:g} s apart). The file is {cfg.file_size:,} bytes in pieces of "
            f"{cfg.piece_length:,} bytes. The seed is on a {cfg.seed_link} link; the "
            f"leechers' links are drawn in the shares {mix}. Choker and picker are the "
            "engine's policies, swapped per run: tit-for-tat (`Choker`: 4 regular slots "
            "by reciprocation every 10 s, 1 optimistic slot rotated every 30 s), random "
            "unchoking (`RandomUnchoke`: the same 5 slots, redrawn every 10 s, nothing "
            "earned), a free rider's `NeverUnchoke`; rarest first (4 random first "
            "pieces), random, sequential. Seed: "
            f"`{self.seed}`.",
            "",
            "| link class | up (bytes/s) | down (bytes/s) | latency (ms) |",
            "|---|---:|---:|---:|",
        ]
        for name in dict.fromkeys(used):
            c = cfg.link(name)
            self.md.append(f"| {name} | {c.up:,.0f} | {c.down:,.0f} | {c.latency * 1000:g} |")
        self.md.append("")

    def flash(self) -> None:
        cfg = self.cfg
        flash = [self.results[f"flash-{n}"] for n in cfg.sizes if f"flash-{n}" in self.results]
        if not flash:
            return
        rows: list[list[object]] = []
        fig = _figure()
        ax = fig.add_subplot()
        colors = _colors(len(flash))
        scaling: list[tuple[int, float, float, float, float, float]] = []
        for color, r in zip(colors, flash, strict=True):
            n = r.spec.leechers
            base = self.baseline(r)
            times = r.times()
            for p, b in zip(r.peers, base, strict=True):
                done = p.finished is not None
                rows.append([n, p.index, p.link, _f(p.started, 3), _f(p.download_time, 3),
                             _f(b, 3), p.down_bytes if done else "",
                             p.duplicate_bytes if done else "",
                             p.endgame_requests if done else ""])  # fmt: skip
            _cdf(ax, times, n, color=color, label=f"BitTorrent, N={n}")
            _cdf(ax, base, n, color=color, linestyle="--", label=f"client-server, N={n}")
            bound = self.bound(r)
            scaling.append((n, _pct(times, 0.5), max(times, default=math.nan),
                            _pct(base, 0.5), max(base), bound))
            self.row(experiment="flash crowd", variant=f"N={n}", leechers=n,
                     completed=r.completed, median_s=_f(_pct(times, 0.5)),
                     p90_s=_f(_pct(times, 0.9)), max_s=_f(max(times, default=math.nan)),
                     client_server_median_s=_f(_pct(base, 0.5)), lower_bound_s=_f(bound),
                     seed_upload_copies=_f(self.copies(r, r.seed_uploaded), 2),
                     spread_at_copies=_f(self.copies(r, r.spread_at), 2))
        self.report.csv.append(_write_csv(
            self.out / "bt_flash_crowd.csv",
            ["leechers", "peer", "link", "started_s", "download_s", "client_server_s",
             "down_bytes", "duplicate_bytes", "endgame_requests"], rows))
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.set_xlabel("download time (s, log scale)")
        ax.set_ylabel("fraction of leechers done")
        ax.set_title("Flash crowd: BitTorrent vs a client-server with the seed's upload")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncols=2)

        big = flash[-1]
        bt = big.times()
        base = self.baseline(big)
        self.md += [
            "### Flash crowd: download times against client-server",
            "",
            "The client-server baseline is an ideal server with the seed's upload "
            f"({cfg.link(cfg.seed_link).up:,.0f} bytes/s), shared fairly among the clients "
            "under each client's downlink, with no latency and no header bytes, the same "
            "arrivals (computed exactly, `client_server_times`): it flatters client-server. "
            "The lower bound is Kumar and Ross's minimum distribution time for any "
            "peer-to-peer scheme: max(S/u_seed, S/d_min, N·S/(u_seed + Σu_i)).",
            "",
            f"With N={big.spec.leechers} leechers, BitTorrent's median download took "
            f"**{_f(_pct(bt, 0.5))} s** and the last one {_f(max(bt, default=math.nan))} s; "
            f"the client-server median is **{_f(_pct(base, 0.5))} s** "
            f"({_f(_pct(base, 0.5) / _pct(bt, 0.5))}× longer). The seed uploaded "
            f"{_f(self.copies(big, big.seed_uploaded), 2)} copies of the file while the "
            f"leechers downloaded {big.spec.leechers}: the rest they gave each other.",
            "",
        ]
        self.figure(fig, "bt_download_times.png",
                    "Download-time distribution (fraction of leechers done by each time), "
                    "BitTorrent (solid) and the client-server baseline (dashed).")

        fig = _figure()
        ax = fig.add_subplot()
        ns = [s[0] for s in scaling]
        ax.plot(ns, [s[1] for s in scaling], "o-", color="C0", label="BitTorrent median")
        ax.plot(ns, [s[2] for s in scaling], "o:", color="C0", label="BitTorrent last")
        ax.plot(ns, [s[3] for s in scaling], "s--", color="C1", label="client-server median")
        ax.plot(ns, [s[4] for s in scaling], "s:", color="C1", label="client-server last")
        ax.plot(ns, [s[5] for s in scaling], "k-", alpha=0.4, label="P2P lower bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        from matplotlib.ticker import NullFormatter, NullLocator

        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("leechers N (log)")
        ax.set_ylabel("download time (s, log)")
        ax.set_title("How download time grows with the crowd")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize="small")
        self.md += [
            "| N | BitTorrent median (s) | BitTorrent last (s) | client-server median (s) "
            "| client-server last (s) | P2P lower bound (s) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        self.md += [f"| {n} | {_f(a)} | {_f(b)} | {_f(c)} | {_f(d)} | {_f(e)} |"
                    for n, a, b, c, d, e in scaling]
        self.md.append("")
        self.figure(fig, "bt_scaling.png",
                    "Download time against the size of the flash crowd (log-log), with the "
                    "peer-to-peer lower bound.")
        self.completion(big, base)
        self.downlinks(big)

    def downlinks(self, r: SwarmResult) -> None:
        """Per link class: how busy the leechers' downlinks were while they
        downloaded, and how much of what they carried was the file."""
        size = r.spec.file_size or self.cfg.file_size
        classes: dict[str, list[PeerResult]] = {}
        for p in r.peers:
            if p.download_time is not None and p.down_bytes > 0:
                classes.setdefault(p.link, []).append(p)
        if not classes:
            return
        self.md += [
            f"### Where the leechers' downlinks went (N={r.spec.leechers})",
            "",
            "A leecher's downlink carries the file's blocks and also everything else: "
            "other messages (HAVEs above all), IP and TCP headers, blocks that come twice, "
            "and blocks still on their way when it completes. *Busy* is the share of its "
            "download time its downlink was carrying bytes (bytes ÷ (downlink rate × "
            "download time)); *file* is the share of those bytes that was the file (file "
            "size ÷ bytes). Medians per link class:",
            "",
            "| link class | leechers | download (s) | floor S/d (s) | busy | file "
            "| endgame requests | blocks got twice | request timeouts |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        whole, rest = divmod(size, self.cfg.piece_length)
        blocks = (whole * math.ceil(self.cfg.piece_length / BLOCK_SIZE)
                  + math.ceil(rest / BLOCK_SIZE))  # fmt: skip
        worst: tuple[float, str, float, float, float, float] | None = None
        for name, peers in sorted(classes.items(),
                                  key=lambda kv: -self.cfg.link(kv[0]).down):  # fmt: skip
            down = self.cfg.link(name).down
            times = [p.download_time or 0.0 for p in peers]
            busy = _pct([p.down_bytes / (down * (p.download_time or 1.0)) for p in peers], 0.5)
            useful = _pct([size / p.down_bytes for p in peers], 0.5)
            endgame = _pct([float(p.endgame_requests) for p in peers], 0.5)
            twice = _pct([p.duplicate_bytes / BLOCK_SIZE for p in peers], 0.5)
            timeouts = _pct([float(p.counters.get("request_timeouts", 0)) for p in peers], 0.5)
            self.md.append(
                f"| {name} | {len(peers)} | {_f(_pct(times, 0.5))} | {_f(size / down)} "
                f"| {busy:.0%} | {useful:.0%} | {endgame:g} | {twice:g} | {timeouts:g} |"
            )
            if worst is None or useful < worst[0]:
                worst = (useful, name, busy, endgame, twice, timeouts)
        assert worst is not None
        useful, name, busy, endgame, twice, timeouts = worst
        counts = (f" The median one sent {endgame:g} endgame requests (for a block already "
                  f"requested from another peer) for a file of {blocks:,} blocks, got "
                  f"{twice:g} blocks twice, and saw {timeouts:g} of its requests time out.")
        if twice and endgame and busy >= SATURATED:
            why = (counts + " Every peer that unchokes it gets at least two of its requests "
                   "(libtorrent's minimum queue), so on a slow downlink shared by many "
                   "peers its requests soon cover every block left and it is in endgame "
                   "early: a peer with nothing else to send it is asked for a block another "
                   "peer is already sending (libtorrent's strict endgame), and the copy "
                   "that finishes second is waste.")
        elif twice and endgame:
            why = (counts + " Those duplicates are endgame's: near the end a block is asked "
                   "of a second peer with nothing else to send (libtorrent's strict "
                   "endgame), and the copy that finishes second is waste.")
        elif twice:
            why = counts + " Those duplicates are blocks asked for again after a timeout."
        else:
            why = (" None got a block twice: the rest was messages, headers and blocks in "
                   "flight at completion.")
        self.md += [
            "",
            f"Of what the {name} leechers' downlinks carried, the least was the file: "
            f"{useful:.0%}, with the downlink busy {busy:.0%} of the time they "
            f"downloaded.{why}",
            "",
        ]

    def completion(self, r: SwarmResult, base: Sequence[float]) -> None:
        cfg = self.cfg
        n = r.spec.leechers
        fig = _figure(FIG_SIZE_TALL)
        top, bottom = fig.subplots(2, 1, sharex=True)
        ts = [s.t for s in r.samples]
        top.plot(ts, [s.complete / n for s in r.samples], label="BitTorrent")
        finish = sorted(p.started + b for p, b in zip(r.peers, base, strict=True))
        _cdf(top, finish, n, linestyle="--", label="client-server")
        top.set_ylabel("fraction of leechers done")
        top.set_title(f"Completion over time, N={n}")
        top.grid(True, alpha=0.3)
        top.legend(fontsize="small")
        rates = _rates(r, cfg.piece_length)
        bottom.plot(ts, [x / 1000 for x in rates], label="swarm download rate")
        bottom.axhline(cfg.link(cfg.seed_link).up / 1000, color="k", linestyle="--",
                       alpha=0.6, label="seed upload (= client-server rate)")
        bottom.set_xlabel("time (s)")
        bottom.set_ylabel("kB/s")
        bottom.grid(True, alpha=0.3)
        bottom.legend(fontsize="small")
        peak = max(rates, default=0.0)
        peak_at = ts[rates.index(peak)] if rates else math.nan
        first = min(r.times(), default=math.nan)
        seed_up = cfg.link(cfg.seed_link).up
        self.md += [
            '### "Only slow in the beginning": completion over time',
            "",
            f"In the first second the swarm downloaded {_f(_first_second(r, cfg.piece_length))} "
            f"kB/s (the seed uploads {_f(seed_up / 1000)} kB/s); as pieces spread the "
            f"leechers upload too, and the swarm's rate peaked at **{_f(peak / 1000)} kB/s** "
            f"after {_f(peak_at)} s, {_f(peak / seed_up)}× the seed's upload, which is all "
            f"a server ever has. The first leecher was done after {_f(first)} s and the last "
            f"after {_f(max(r.times(), default=math.nan))} s; the client-server's first "
            f"after {_f(min(base, default=math.nan))} s and its last after "
            f"{_f(max(base, default=math.nan))} s.",
            "",
        ]
        self.figure(fig, "bt_completion.png",
                    "Top: fraction of leechers done over time. Bottom: the swarm's aggregate "
                    "download rate (verified pieces) against the seed's upload.")
        rows = [[label, _f(s.t, 3), s.complete, s.pieces, s.distinct, s.rarest, s.seed_uploaded]
                for label, res in sorted(self.results.items()) for s in res.samples]
        self.report.csv.append(_write_csv(
            self.out / "bt_timeline.csv",
            ["run", "t_s", "complete", "pieces", "distinct_pieces", "rarest_copies",
             "seed_uploaded"], rows))

    def riders(self) -> None:
        from peerlab.simulate.bittorrent import rider_label

        cfg = self.cfg
        groups = [(c, [self.results[rider_label(c, k)] for k in range(cfg.rider_runs)
                       if rider_label(c, k) in self.results])
                  for c in cfg.chokers]  # fmt: skip
        groups = [(c, rs) for c, rs in groups if rs]
        if not groups:
            return
        fig = _figure()
        ax = fig.add_subplot()
        rows: list[list[object]] = []
        lines = []
        many = cfg.rider_runs > 1
        found: dict[str, tuple[float, int, int, float, float]] = {}
        for color, (choker, runs) in zip(_colors(len(groups)), groups, strict=True):
            title = CHOKER_TITLES[choker]
            peers = [p for r in runs for p in r.peers]
            # the swarms' own figures, the same for both groups: medians over the runs
            client_server = _f(_pct([_pct(self.baseline(r), 0.5) for r in runs], 0.5))
            seed_copies = _f(_pct([self.copies(r, r.seed_uploaded) or 0.0 for r in runs], 0.5), 2)
            spread_at = _f(_pct([c for r in runs
                                 if (c := self.copies(r, r.spread_at)) is not None], 0.5), 2)
            medians: dict[bool, float] = {}
            for riders, style in ((False, "-"), (True, ":")):
                times = [t for r in runs for t in r.times(riders=riders)]
                medians[riders] = _pct(times, 0.5)
                group = "free riders" if riders else "contributors"
                total = sum(1 for p in peers if p.rider is riders)
                _cdf(ax, times, total, color=color, linestyle=style, label=f"{title}: {group}")
                self.row(experiment="free riders", variant=f"{title}: {group}",
                         leechers=total, completed=len(times),
                         median_s=_f(medians[riders]), p90_s=_f(_pct(times, 0.9)),
                         max_s=_f(max(times, default=math.nan)),
                         client_server_median_s=client_server,
                         seed_upload_copies=seed_copies, spread_at_copies=spread_at)
            ratios = [_pct(r.times(riders=True), 0.5) / _pct(r.times(riders=False), 0.5)
                      for r in runs]
            ratios = [x for x in ratios if not math.isnan(x)]
            ratio = _pct(ratios, 0.5)
            busy_c = _pct(self.uplink_busy(peers, riders=False), 0.5)
            busy_f = _pct(self.uplink_busy(peers, riders=True), 0.5)
            slower = sum(1 for x in ratios if x > 1)
            found[choker] = (ratio, slower, len(ratios), busy_c, busy_f)
            spread = (f" | {len(runs)}", f" | {_f(min(ratios, default=math.nan), 2)} "
                      f"| {_f(max(ratios, default=math.nan), 2)}") if many else ("", "")
            lines.append(
                f"| {title}{spread[0]} | {_f(medians[False])} | {_f(medians[True])} "
                f"| {_f(ratio, 2)}{spread[1]} | {_share(busy_c)} | {_share(busy_f)} |")
            for k, r in enumerate(runs, start=1):
                for p in r.peers:
                    rows.append([choker, k, p.index, p.link, int(p.rider),
                                 _f(p.download_time, 3), p.uploaded, p.downloaded,
                                 p.up_bytes])  # fmt: skip
        self.report.csv.append(_write_csv(
            self.out / "bt_free_riders.csv",
            ["choker", "run", "peer", "link", "free_rider", "download_s", "uploaded",
             "downloaded", "up_bytes"], rows))
        ax.set_xlabel("download time (s)")
        ax.set_ylabel("fraction of the group done")
        ax.set_title("Free riders against contributors")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        r0 = groups[0][1][0]
        size = r0.spec.file_size or cfg.file_size
        swarms = (f"Each choker ran {cfg.rider_runs} swarms (their own links, arrivals and "
                  "draws): the times are medians over all their leechers, the ratio is free "
                  "riders' median over contributors' in each swarm (the median swarm's, and "
                  "the lowest and highest), and *uplink busy* is the share of a leecher's "
                  "download time its uplink was sending (bytes ÷ (uplink rate × download "
                  "time), median)" if many else
                  "Median download times; *uplink busy* is the share of a leecher's download "
                  "time its uplink was sending (bytes ÷ (uplink rate × download time), "
                  "median)")
        self.md += [
            "### Tit-for-tat against free riders",
            "",
            f"{r0.spec.leechers} leechers fetch a file of {size:,} bytes; "
            f"{_f(cfg.rider_share * 100, 0)}% of them are free riders (they upload nothing: "
            "`NeverUnchoke`)"
            + (", and every leecher leaves as soon as it is done, so nobody seeds for the "
               "free riders but the original seed" if r0.spec.leave_when_done else "")
            + f". {swarms}:",
            "",
            "| choker" + (" | swarms" if many else "") + " | contributors (s) | free riders (s) "
            "| free riders / contributors" + (" | lowest | highest" if many else "")
            + " | uplink busy: contributors | free riders |",
            "|---" + "|---:" * (8 if many else 5) + "|",
            *lines,
            "",
            *rider_findings(found),
        ]
        self.figure(fig, "bt_free_riders.png",
                    "Download times of contributors (solid) and free riders (dotted), with "
                    "the tit-for-tat choker and with random unchoking"
                    + (f" (all {cfg.rider_runs} swarms of each)." if many else "."))

    def uplink_busy(self, peers: Sequence[PeerResult], *, riders: bool) -> list[float]:
        """Each completed leecher's uplink busy share (of ``riders`` or not)."""
        return [p.up_bytes / (self.cfg.link(p.link).up * p.download_time) for p in peers
                if p.rider is riders and p.download_time and p.up_bytes]

    def pickers(self) -> None:
        cfg = self.cfg
        runs = [(s, self.results[f"picker-{s}"]) for s in cfg.strategies
                if f"picker-{s}" in self.results]
        if not runs:
            return
        fig = _figure(FIG_SIZE_TALL)
        a, b, c = fig.subplots(3, 1, sharex=True)
        lines = []
        colors = _colors(len(runs))
        for color, (strategy, r) in zip(colors, runs, strict=True):
            title = STRATEGY_TITLES[strategy]
            n = r.spec.leechers
            ts = [s.t for s in r.samples]
            a.plot(ts, [s.distinct / r.piece_count for s in r.samples], color=color,
                   label=title)
            b.plot(ts, [s.rarest for s in r.samples], color=color, label=title)
            c.plot(ts, [s.complete / n for s in r.samples], color=color, label=title)
            if r.seed_left_at is not None:
                for ax in (a, b, c):
                    ax.axvline(r.seed_left_at, color=color, linestyle=":", alpha=0.7)
            times = r.times()
            leaves = (f"seed leaves after {_f(r.spec.seed_leaves_after, 1)} copies"
                      if r.spec.seed_leaves_after else "seed stays")
            last = r.samples[-1] if r.samples else None
            self.row(experiment="piece selection", variant=f"{title} ({leaves})",
                     leechers=n, completed=r.completed, median_s=_f(_pct(times, 0.5)),
                     p90_s=_f(_pct(times, 0.9)), max_s=_f(max(times, default=math.nan)),
                     client_server_median_s=_f(_pct(self.baseline(r), 0.5)),
                     seed_upload_copies=_f(self.copies(r, r.seed_uploaded), 2),
                     spread_at_copies=_f(self.copies(r, r.spread_at), 2))
            lines.append(
                f"| {title} | {_f(self.copies(r, r.spread_at), 2) or 'never'} | "
                f"{_f(r.seed_left_at)} | {r.completed} of {n} | "
                f"{last.distinct if last else 0} of {r.piece_count} |")
        a.set_ylabel("pieces present")
        a.set_title("Piece selection: diversity among the leechers (dotted: seed leaves)")
        b.set_ylabel("copies of rarest")
        c.set_ylabel("leechers done")
        c.set_xlabel("time (s)")
        for ax in (a, b, c):
            ax.grid(True, alpha=0.3)
        a.legend(fontsize="small")
        r0 = runs[0][1]
        self.md += [
            "### Piece selection: rarest first, random, sequential",
            "",
            f"{r0.spec.leechers} leechers; the seed leaves once it has uploaded "
            f"{_f(r0.spec.seed_leaves_after or 0, 1)} copies of the file. *Spread* is how "
            "many copies the seed had uploaded when every piece was first somewhere among "
            "the leechers: from then on the swarm can finish without it.",
            "",
            "| picker | spread at (copies) | seed left at (s) | leechers done | "
            "pieces among the leechers at the end |",
            "|---|---:|---:|---:|---:|",
            *lines,
            "",
        ]
        self.figure(fig, "bt_pieces.png",
                    "Piece diversity over time: the share of pieces present among the "
                    "leechers, the copies of the rarest piece, and completion, for each "
                    "picker; dotted lines mark the seed's departure.")

    def build(self) -> BtReport:
        self.out.mkdir(parents=True, exist_ok=True)
        self.setup()
        self.flash()
        self.riders()
        self.pickers()
        self.report.csv.append(_write_csv(
            self.out / "bt_summary.csv", COLUMNS,
            [[row[c] for c in COLUMNS] for row in self.report.rows]))
        self.report.markdown = "\n".join(self.md).rstrip() + "\n"
        return self.report


def _first_second(r: SwarmResult, piece_length: int) -> float:
    """kB/s of verified pieces over the run's first sample at or after 1 s."""
    for s in r.samples:
        if s.t >= 1.0:
            return s.pieces * piece_length / s.t / 1000
    return math.nan


def _rates(r: SwarmResult, piece_length: int) -> list[float]:
    """The swarm's download rate (bytes/s of verified pieces) per sample."""
    out: list[float] = []
    prev_t, prev_p = 0.0, 0
    for s in r.samples:
        dt = s.t - prev_t
        out.append(max(0, s.pieces - prev_p) * piece_length / dt if dt > 0 else 0.0)
        prev_t, prev_p = s.t, s.pieces
    return out


def _colors(n: int) -> list[str]:
    """``n`` distinct colours of matplotlib's default cycle."""
    cycle = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    return [cycle[i % len(cycle)] for i in range(n)]


def build(cfg: BtConfig, seed: int, out: Path, command: str,
          results: dict[str, SwarmResult]) -> BtReport:
    """CSV files and plots in ``out``, the summary rows and the Markdown."""
    return _Builder(cfg, seed, out, command, results).build()
