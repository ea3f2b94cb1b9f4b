// Transfers: Napster's transfer window (Filename, File Size, User, Status,
// Speed, Progress, Rate, Time Left), Downloads above Uploads, live; the
// "Concurrent Downloads: N  Concurrent Uploads: M" line; a rate graph.
import { api, batched, clock, el, grouped, humanRate, progressBar, setText, toast } from "./util.js";
import { RateGraph } from "./graph.js";
import { torrentChanged, torrentDetail } from "./torrents.js";

const HEAD = ["", "Filename", "File Size", "User", "Status", "Speed", "Progress", "Rate", "Time Left", ""];
const WIDTHS = ["24px", "25%", "16%", "11%", "11%", "6%", "12%", "7%", "7%", "118px"];
const FINISHED = new Set(["complete", "failed", "cancelled"]);
// Rows the Pause button resumes (a torrent's stop is its pause).
const PAUSED = new Set(["paused", "stopped", "finished"]);

function sizeText(row) {
  if (row.size === null || row.size === undefined) return grouped(row.done);
  if (row.status === "complete" || row.done >= row.size || !row.done) return grouped(row.size);
  return `${grouped(row.done)} of ${grouped(row.size)}`;
}

export function initTransfers(ctx) {
  const panel = document.getElementById("panel-transfers");
  const rows = new Map(); // key -> {row, tr, cells, bar, detail}
  const expanded = new Set();
  const pending = new Map();
  const gone = new Set();

  function makeTable(id, title) {
    const colgroup = el("colgroup", null, ...WIDTHS.map((w) => { const c = el("col"); c.style.width = w; return c; }));
    const tbody = el("tbody");
    const empty = el("tr", { className: "empty" }, el("td", { colSpan: HEAD.length }, id === "downloads" ? "No downloads. Start one from a search result." : "No uploads yet."));
    tbody.append(empty);
    const table = el("table", { className: "grid transfers", id }, colgroup,
      el("thead", null, el("tr", null, ...HEAD.map((h, i) => el("th", { scope: "col", className: [2, 7, 8].includes(i) ? "num" : "" }, h)))), tbody);
    const win = el("div", { className: `window transfers-window ${id}-window` },
      el("div", { className: "titlebar small" }, el("span", null, title), el("span", { className: "count", id: `${id}-count` })),
      el("div", { className: "scroll" }, table));
    return { win, tbody, empty };
  }
  const down = makeTable("downloads", "Downloads");
  const up = makeTable("uploads", "Uploads");

  const concurrent = el("span", { className: "concurrent", id: "transfers-concurrent" }, "Concurrent Downloads: 0  Concurrent Uploads: 0");
  const clear = el("button", { type: "button", id: "clear-finished" }, "Clear Finished");
  clear.addEventListener("click", async () => {
    try {
      const answer = await api("POST", "/api/downloads/clear");
      toast(`Cleared ${answer.cleared} finished download${answer.cleared === 1 ? "" : "s"}.`);
    } catch (e) { toast(`Cannot clear: ${e.message}`, "error"); }
  });
  const canvas = el("canvas", { id: "rate-graph", className: "rate-graph", attrs: { role: "img", "aria-label": "transfer rates over the last minutes" } });
  const legend = el("div", { className: "legend" },
    el("span", { className: "key key-down" }, "Download"), el("span", { className: "key key-up" }, "Upload"),
    el("span", { className: "legend-now", id: "rate-now" }));
  const graphWin = el("div", { className: "window graph-window" },
    el("div", { className: "titlebar small" }, "Bandwidth — last 5 minutes"), el("div", { className: "graph-body" }, canvas, legend));
  const totals = el("div", { className: "totals" }, concurrent, el("div", { className: "buttons" }, clear));
  panel.append(down.win, up.win, totals, graphWin);
  const graph = new RateGraph(canvas);

  // ------------------------------------------------------------------ rows
  async function act(row, action) {
    try {
      await api("POST", `/api/downloads/${encodeURIComponent(row.id)}/${action}`);
    } catch (e) { toast(`Cannot ${action} ${row.name}: ${e.message}`, "error"); }
  }

  function build(row) {
    const isDown = row.key.startsWith("d:");
    const cells = {};
    const bar = progressBar();
    const td = (name, className) => (cells[name] = el("td", { className: `col-${name} ${className || ""}` }));
    const expander = el("button", { type: "button", className: "expander", attrs: { "aria-label": "sources" } }, "▸");
    expander.addEventListener("click", () => {
      if (expanded.has(row.key)) expanded.delete(row.key); else expanded.add(row.key);
      const entry = rows.get(row.key);
      if (entry) update(entry, entry.row, true);
    });
    const pause = el("button", { type: "button", className: "small act-pause" }, "Pause");
    pause.addEventListener("click", () => { const r = rows.get(row.key).row; act(r, PAUSED.has(r.status) ? "resume" : "pause"); });
    const cancel = el("button", { type: "button", className: "small act-cancel" }, "Cancel");
    cancel.addEventListener("click", () => act(rows.get(row.key).row, "cancel"));
    const tr = el("tr", { className: "transfer-row", dataset: { key: row.key, id: row.id, network: row.network } },
      el("td", { className: "expand" }, isDown ? expander : null),
      td("name"), td("size", "num"), td("peer"), td("status"), td("speed"),
      el("td", { className: "col-progress" }, bar.node), td("rate", "num"), td("eta", "num"),
      el("td", { className: "actions" }, isDown ? pause : null, isDown ? cancel : null));
    const detail = el("tr", { className: "detail-row", hidden: true }, el("td"), el("td", { colSpan: HEAD.length - 1 }));
    return { row, tr, cells, bar, detail, expander, pause, cancel, isDown };
  }

  function update(entry, row, force) {
    const old = entry.row;
    entry.row = row;
    const c = entry.cells;
    setText(c.name, row.name); c.name.title = row.name;
    setText(c.size, sizeText(row));
    setText(c.peer, row.peer); c.peer.title = row.peer;
    setText(c.status, row.status === "failed" && row.error ? `Failed: ${row.error}` : row.status_text);
    c.status.title = row.error || row.status_text;
    entry.tr.dataset.status = row.status;
    setText(c.speed, row.speed || (row.network === "napster" ? "Unknown" : "—"));
    entry.bar.set(row.progress);
    setText(c.rate, row.status === "downloading" || row.status === "uploading" ? humanRate(row.rate) : "");
    setText(c.eta, clock(row.eta));
    if (entry.isDown) {
      setText(entry.pause, PAUSED.has(row.status) ? "Resume" : "Pause");
      entry.pause.disabled = FINISHED.has(row.status) || row.status === "verifying";
      entry.cancel.disabled = FINISHED.has(row.status);
      const open = expanded.has(row.key);
      setText(entry.expander, open ? "▾" : "▸");
      entry.expander.setAttribute("aria-expanded", String(open));
      entry.detail.hidden = !open;
      const torrent = row.network === "bittorrent";
      if (open && torrent && (force || torrentChanged(old, row))) {
        entry.detail.lastElementChild.replaceChildren(torrentDetail(row));
      } else if (open && !torrent && (force || JSON.stringify(old.sources) !== JSON.stringify(row.sources))) {
        const box = entry.detail.lastElementChild;
        box.replaceChildren(el("table", { className: "grid sources" },
          el("thead", null, el("tr", null, ...["Source", "Status", "Bytes", "Rate", "Note"].map((h) => el("th", null, h)))),
          el("tbody", null, ...(row.sources.length ? row.sources : [{ address: "no source yet", status: "", bytes: 0, rate: 0 }]).map((s) =>
            el("tr", null, el("td", null, s.address), el("td", null, s.status), el("td", { className: "num" }, grouped(s.bytes)),
              el("td", { className: "num" }, humanRate(s.rate)), el("td", null, s.error || ""))))));
      }
    }
  }

  function flush() {
    for (const key of gone) {
      const entry = rows.get(key);
      if (entry) { entry.tr.remove(); entry.detail.remove(); rows.delete(key); }
    }
    gone.clear();
    for (const [key, row] of pending) {
      let entry = rows.get(key);
      if (!entry) {
        entry = build(row);
        rows.set(key, entry);
        const body = entry.isDown ? down.tbody : up.tbody;
        body.append(entry.tr, entry.detail);
      }
      update(entry, row, false);
    }
    pending.clear();
    let nd = 0, nu = 0;
    for (const e of rows.values()) { if (e.isDown) nd++; else nu++; }
    down.empty.hidden = nd > 0;
    up.empty.hidden = nu > 0;
    setText(document.getElementById("downloads-count"), nd ? `${nd}` : "");
    setText(document.getElementById("uploads-count"), nu ? `${nu}` : "");
  }
  const scheduleFlush = batched(flush);

  function counts(d, u) {
    setText(concurrent, `Concurrent Downloads: ${d}  Concurrent Uploads: ${u}`);
    ctx.emit("concurrent", { downloads: d, uploads: u });
  }

  ctx.on("snapshot", (snap) => {
    const t = snap.transfers;
    const keys = new Set(t.rows.map((r) => r.key));
    for (const key of rows.keys()) if (!keys.has(key)) gone.add(key);
    for (const r of t.rows) pending.set(r.key, r);
    counts(t.concurrent_downloads, t.concurrent_uploads);
    scheduleFlush();
    graph.setSamples(snap.rates || []);
  });
  ctx.on("transfers", (t) => {
    for (const key of t.gone) { gone.add(key); pending.delete(key); }
    for (const r of t.rows) { pending.set(r.key, r); gone.delete(r.key); }
    counts(t.concurrent_downloads, t.concurrent_uploads);
    scheduleFlush();
  });
  ctx.on("rate", (sample) => {
    graph.add(sample);
    setText(document.getElementById("rate-now"), `now ↓ ${humanRate(sample[1]) || "0 B/s"}  ↑ ${humanRate(sample[2]) || "0 B/s"}`);
  });
  ctx.on("tab", (name) => { if (name === "transfers") graph.draw(); });
}
