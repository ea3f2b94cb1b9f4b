// Search: KaZaA's form (All / Title / Artist, more options) over the networks
// the node has joined; results arrive live, grouped by file (gtk-gnutella's
// list: one line per file with its sources below it), sortable, virtualised.
import { api, batched, duration, el, humanSize, setText, toast } from "./util.js";

/** Height of one results line in pixels (the virtual list needs a fixed one). */
const ROW_H = 24;
/** Lines drawn above and below the visible ones. */
const OVERSCAN = 12;
/** Napster link types (napster.txt, login): the connection-speed filter. */
const LINKS = ["Unknown", "14.4", "28.8", "33.6", "56K", "ISDN-64K", "ISDN-128K", "Cable", "DSL", "T1", "T3+"];
const NETWORK_LABELS = { local: "My shares", peers: "Direct peers", napster: "Napster", gnutella: "Gnutella" };
/** The Length filter's choices, seconds (KaZaA's "Length at least"). */
const LENGTHS = [0, 30, 60, 120, 180, 300, 600];

const COLUMNS = [
  { id: "expand", label: "", width: "28px", sort: null },
  { id: "name", label: "File", width: "26%", sort: (r) => r.name.toLowerCase() },
  { id: "title", label: "Title", width: "13%", sort: (r) => (r.title || "").toLowerCase() },
  { id: "artist", label: "Artist", width: "12%", sort: (r) => (r.artist || "").toLowerCase() },
  { id: "album", label: "Album", width: "10%", sort: (r) => (r.album || "").toLowerCase() },
  { id: "size", label: "Size", width: "7%", sort: (r) => r.size, num: true },
  { id: "bitrate", label: "Quality", width: "6%", sort: (r) => r.bitrate || 0, num: true },
  { id: "duration", label: "Length", width: "6%", sort: (r) => r.duration || 0, num: true },
  { id: "sources", label: "Sources", width: "7%", sort: (r) => r.sources.length, num: true },
  { id: "speed", label: "Speed", width: "7%", sort: (r) => bestLink(r) },
  { id: "action", label: "", width: "88px", sort: null },
];

/** The lowest stated speed (kbit/s) of each Napster link class from ISDN-64K
 *  up, to place a Gnutella servent's Query Hit speed among them. */
const LINK_KBPS = [[5, 64], [6, 128], [7, 384], [8, 768], [9, 1544], [10, 44736]];

function linkOfSpeed(kbps) {
  let link = kbps >= 56 ? 4 : kbps >= 33 ? 3 : kbps >= 28 ? 2 : kbps > 0 ? 1 : 0;
  for (const [cls, low] of LINK_KBPS) if (kbps >= low) link = cls;
  return link;
}

function bestLink(r) {
  let best = -1;
  for (const u of r.users || []) best = Math.max(best, Number(u.link_type || 0));
  for (const h of r.hosts || []) if (h.speed != null) best = Math.max(best, linkOfSpeed(Number(h.speed)));
  return best;
}

/** Sources that came in Gnutella Query Hits: their hosts (and push keys). */
function gnutellaKeys(r) {
  const keys = new Set();
  for (const h of r.hosts || []) if (h.host) keys.add(h.host);
  return keys;
}

function networksOf(r) {
  const nets = new Set();
  const gnut = gnutellaKeys(r);
  for (const key of r.sources) {
    if (key === "local") nets.add("My shares");
    else if (key.startsWith("napster:")) nets.add("Napster");
    else if (gnut.has(key) || key.startsWith("push:")) nets.add("Gnutella");
    else nets.add("Direct peers");
  }
  return [...nets];
}

/** Each source of a grouped result as a line: host, speed, network, info. */
function sourceLines(r) {
  const users = new Map((r.users || []).map((u) => [u.nick, u]));
  return r.sources.map((key) => {
    if (key === "local") return { host: "(my shares)", speed: "", network: "My shares", info: "already shared by this node" };
    if (key.startsWith("napster:")) {
      const u = users.get(key.slice(8)) || {};
      return { host: key.slice(8), speed: u.link || "Unknown", network: "Napster", info: u.filename || "" };
    }
    const hit = (r.hosts || []).find((h) => h.host === key);
    if (hit || key.startsWith("push:")) {
      const flags = hit ? ["push", "busy", "stable"].filter((f) => hit[f]).join(" ") : "push";
      return { host: key, speed: hit && hit.speed != null ? `${hit.speed} kbit/s` : "", network: "Gnutella",
               info: `${flags || "-"}${hit && hit.vendor ? ` · ${hit.vendor}` : ""}${hit && hit.distance ? ` · ${hit.distance} hop(s)` : ""}` };
    }
    return { host: key, speed: "", network: "Direct peers", info: r.urn || "" };
  });
}

export function initSearch(ctx) {
  const panel = document.getElementById("panel-search");
  const searches = new Map(); // id -> {id, text, done, error, results: Map, stopped}
  let current = null;
  let sortCol = "sources";
  let sortDesc = true;
  const expanded = new Set();
  const started = new Map(); // result id -> download started (for the button)

  // ------------------------------------------------------------------ form
  const text = el("input", { id: "search-text", type: "search", title: "little toot", autocomplete: "off", attrs: { "aria-label": "Search for" } });
  const fields = ["all", "title", "artist"].map((value, i) =>
    el("label", { className: "radio" },
      el("input", { type: "radio", name: "field", value, checked: i === 0 }),
      ` ${value[0].toUpperCase()}${value.slice(1)}`));
  const go = el("button", { type: "submit", id: "search-go", className: "default" }, "Search Now");
  const stop = el("button", { type: "button", id: "search-stop" }, "Stop Search");
  const nets = el("div", { className: "net-choices", id: "net-choices" });
  const minSpeed = el("select", { id: "filter-speed" },
    ...LINKS.map((label, i) => el("option", { value: String(i) }, i === 0 ? "any" : `${label} or faster`)));
  const minBitrate = el("select", { id: "filter-bitrate" },
    ...[0, 64, 96, 128, 160, 192, 256, 320].map((b) => el("option", { value: String(b) }, b ? `${b} kbps or more` : "any")));
  const minLength = el("select", { id: "filter-length" },
    ...LENGTHS.map((t) => el("option", { value: String(t) }, t ? `${duration(t)} or longer` : "any")));
  const minSize = el("input", { id: "filter-min-size", type: "number", min: "0", step: "0.1", title: "0" });
  const maxSize = el("input", { id: "filter-max-size", type: "number", min: "0", step: "0.1", title: "any" });
  const more = el("details", { className: "more-options", id: "more-options" },
    el("summary", null, "More Search Options »"),
    el("div", { className: "filters" },
      el("label", null, "Minimum connection speed ", minSpeed),
      el("label", null, "Minimum bitrate ", minBitrate),
      el("label", null, "Minimum length ", minLength),
      el("label", null, "Size from ", minSize, " MB"),
      el("label", null, " to ", maxSize, " MB")));
  const form = el("form", { className: "window-body search-form", id: "search-form" },
    el("div", { className: "form-row" },
      el("label", { htmlFor: "search-text", className: "form-label" }, "Search for:"), text,
      el("span", { className: "radios", role: "radiogroup", attrs: { "aria-label": "Field" } }, ...fields),
      go, stop),
    el("div", { className: "form-row" }, el("span", { className: "form-label" }, "Networks:"), nets),
    more);
  const tip = el("p", { className: "search-tip" },
    "Type in what you are looking for. If you are looking for an artist or a title, check the corresponding button. " +
    "Results are grouped by file: one line per file, with how many sources have it; open a line to see them. One click downloads from all sources.");

  const chips = el("div", { className: "search-chips", id: "search-chips", attrs: { "aria-label": "Active searches" } });
  const summary = el("div", { className: "search-summary", id: "search-summary" }, "No search yet.");

  // --------------------------------------------------------------- results
  const colgroup = el("colgroup", null, ...COLUMNS.map((c) => { const col = el("col"); col.style.width = c.width; return col; }));
  const headCells = COLUMNS.map((c) => {
    const th = el("th", { scope: "col", className: c.num ? "num" : "", dataset: { col: c.id } }, c.label);
    if (c.sort) {
      th.classList.add("sortable");
      th.tabIndex = 0;
      th.addEventListener("click", () => sortBy(c.id));
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(c.id); });
    }
    return th;
  });
  const tbody = el("tbody", { id: "results-body" });
  const table = el("table", { className: "grid results", id: "results" }, colgroup, el("thead", null, el("tr", null, ...headCells)), tbody);
  const scroller = el("div", { className: "vscroll", id: "results-scroll" }, table);
  const resultsWin = el("div", { className: "window results-window" },
    el("div", { className: "titlebar small" }, el("span", { id: "results-title" }, "Results")), scroller);

  panel.append(
    el("div", { className: "window search-window" }, el("div", { className: "titlebar small" }, "Search for Audio Files"), form, tip),
    chips, summary, resultsWin);

  // ------------------------------------------------------------ behaviour
  let choicesShown = "";
  function renderNetworkChoices() {
    const shape = JSON.stringify(ctx.state.searchNetworks);
    if (shape === choicesShown) return; // redraw only when a network comes or goes
    choicesShown = shape;
    const checked = new Set([...nets.querySelectorAll("input:checked")].map((i) => i.value));
    const first = nets.childElementCount === 0;
    nets.replaceChildren(...ctx.state.searchNetworks.map((n) => {
      const box = el("input", { type: "checkbox", value: n.id, disabled: !n.enabled, checked: n.enabled && (first || checked.has(n.id)) });
      return el("label", { className: `net-choice${n.enabled ? "" : " disabled"}`, title: n.enabled ? "" : "this node has not joined this network" },
        box, ` ${n.label}`);
    }));
  }

  function filtered(s) {
    const speed = Number(minSpeed.value);
    const bitrate = Number(minBitrate.value);
    const length = Number(minLength.value);
    const lo = minSize.value ? Number(minSize.value) * 1048576 : 0;
    const hi = maxSize.value ? Number(maxSize.value) * 1048576 : Infinity;
    const out = [];
    for (const r of s.results.values()) {
      if (speed > 0 && bestLink(r) < speed) continue;
      if (bitrate > 0 && !(r.bitrate >= bitrate)) continue;
      if (length > 0 && !(r.duration >= length)) continue;
      if (r.size < lo || r.size > hi) continue;
      out.push(r);
    }
    const col = COLUMNS.find((c) => c.id === sortCol);
    if (col && col.sort) {
      const key = col.sort;
      out.sort((a, b) => {
        const x = key(a), y = key(b);
        const cmp = x < y ? -1 : x > y ? 1 : a.id - b.id;
        return sortDesc ? -cmp : cmp;
      });
    }
    return out;
  }

  let lines = [];
  function rebuild() {
    const s = current ? searches.get(current) : null;
    lines = [];
    if (s) {
      for (const r of filtered(s)) {
        lines.push({ kind: "group", r });
        if (expanded.has(r.id)) for (const src of sourceLines(r)) lines.push({ kind: "source", r, src });
      }
    }
    for (const th of headCells) {
      th.classList.toggle("sorted", th.dataset.col === sortCol);
      th.classList.toggle("desc", th.dataset.col === sortCol && sortDesc);
      if (th.dataset.col === sortCol) th.setAttribute("aria-sort", sortDesc ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
    renderSummary(s);
    draw();
  }
  const schedule = batched(rebuild);

  function renderSummary(s) {
    if (!s) { setText(summary, "No search yet."); return; }
    const shown = lines.filter((l) => l.kind === "group").length;
    const total = s.results.size;
    let sources = 0;
    for (const r of s.results.values()) sources += r.sources.length;
    let state = s.done ? (s.error ? `ended: ${s.error}` : "done") : s.stopped ? "stopped" : `searching ${s.networks.map((n) => NETWORK_LABELS[n] || n).join(", ")}…`;
    setText(summary, `${total} item${total === 1 ? "" : "s"} found (${sources} source${sources === 1 ? "" : "s"})` +
      (shown !== total ? `, ${shown} shown after filters` : "") + ` · ${state}`);
    setText(document.getElementById("results-title"), `Results for “${s.text}”`);
  }

  function cell(text, className, title) {
    return el("td", { className: className || "", title: title || (text ? String(text) : "") }, text);
  }

  function draw() {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(lines.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const rows = [];
    const before = el("tr", { className: "spacer" }); before.style.height = `${first * ROW_H}px`;
    rows.push(before);
    for (let i = first; i < last; i++) rows.push(lines[i].kind === "group" ? groupRow(lines[i].r) : sourceRow(lines[i].r, lines[i].src));
    const after = el("tr", { className: "spacer" }); after.style.height = `${(lines.length - last) * ROW_H}px`;
    rows.push(after);
    if (!lines.length) {
      const s = current ? searches.get(current) : null;
      rows.push(el("tr", { className: "empty" }, el("td", { colSpan: COLUMNS.length }, s ? (s.done ? "Nothing found." : "Waiting for answers…") : "Search for a title, an artist or words of a file name.")));
    }
    tbody.replaceChildren(...rows);
  }
  scroller.addEventListener("scroll", batched(draw), { passive: true });
  window.addEventListener("resize", batched(draw));

  function groupRow(r) {
    const open = expanded.has(r.id);
    const expander = el("button", { type: "button", className: "expander", title: open ? "hide sources" : "show sources",
      attrs: { "aria-expanded": String(open), "aria-label": `sources of ${r.name}` } }, open ? "▾" : "▸");
    expander.addEventListener("click", (e) => { e.stopPropagation(); toggle(r.id); });
    const users = r.users || [];
    const best = bestLink(r);
    const startedState = started.get(r.id);
    const button = el("button", { type: "button", className: "download-button", disabled: Boolean(startedState) || (r.local && r.sources.length === 1),
      title: r.local && r.sources.length === 1 ? "already in your shares" : `download from all ${r.sources.length} source(s)` },
      startedState || "Download");
    button.addEventListener("click", (e) => { e.stopPropagation(); download(r); });
    const tr = el("tr", { className: `result-row${r.local ? " local" : ""}`, dataset: { id: String(r.id) } },
      el("td", { className: "expand" }, expander),
      cell(r.name, "col-name"),
      cell(r.title || "", "col-title"),
      cell(r.artist || "", "col-artist"),
      cell(r.album || "", "col-album"),
      cell(humanSize(r.size), "num", `${r.size.toLocaleString()} bytes`),
      cell(r.bitrate ? `${r.bitrate}` : "", "num"),
      cell(duration(r.duration), "num"),
      cell(String(r.sources.length), "num col-sources", `${r.sources.length} source(s): ${networksOf(r).join(", ")}`),
      cell(best >= 0 ? LINKS[best] || "" : users.length || (r.hosts || []).length ? "Unknown" : "", "col-speed"),
      el("td", { className: "action" }, button));
    tr.addEventListener("dblclick", () => download(r));
    return tr;
  }

  function sourceRow(r, src) {
    return el("tr", { className: "source-row", dataset: { id: String(r.id) } },
      el("td", { className: "expand" }),
      cell(`↳ ${src.host}`, "col-name source-host"),
      cell(src.network, "col-network"),
      el("td", { className: "source-info", colSpan: 5, title: src.info }, src.info),
      cell("", "num"),
      cell(src.speed, "col-speed"),
      el("td", { className: "action" }));
  }

  function toggle(id) {
    if (expanded.has(id)) expanded.delete(id); else expanded.add(id);
    schedule();
  }

  function sortBy(col) {
    if (sortCol === col) sortDesc = !sortDesc;
    else { sortCol = col; sortDesc = ["size", "bitrate", "duration", "sources", "speed"].includes(col); }
    schedule();
  }

  async function download(r) {
    if (started.get(r.id)) return;
    started.set(r.id, "Starting…");
    schedule();
    try {
      const answer = await api("POST", "/api/downloads", { ref: String(r.id) });
      started.set(r.id, "Queued ✓");
      const n = answer.download && answer.download.sources ? answer.download.sources.length : r.sources.length;
      toast(`Downloading ${r.name} from ${n} source${n === 1 ? "" : "s"}.`, "ok");
    } catch (e) {
      started.delete(r.id);
      toast(`Cannot download ${r.name}: ${e.message}`, "error");
    }
    schedule();
  }

  function renderChips() {
    const items = [...searches.values()].map((s) => {
      const chip = el("button", { type: "button", className: `chip${s.id === current ? " current" : ""}${s.done ? "" : " running"}`,
        attrs: { "aria-pressed": String(s.id === current) } }, `${s.text} (${s.results.size})`);
      chip.addEventListener("click", () => { current = s.id; renderChips(); schedule(); });
      const close = el("button", { type: "button", className: "chip-close", title: "close this search", attrs: { "aria-label": `close ${s.text}` } }, "×");
      close.addEventListener("click", async () => {
        searches.delete(s.id);
        if (current === s.id) current = searches.size ? [...searches.keys()].pop() : null;
        renderChips(); schedule();
        try { await api("DELETE", `/api/web/search/${encodeURIComponent(s.id)}`); } catch (e) { /* forgotten anyway */ }
      });
      return el("span", { className: "chip-box" }, chip, close);
    });
    chips.replaceChildren(el("span", { className: "chips-label" }, items.length ? "Active searches:" : ""), ...items);
  }
  const scheduleChips = batched(renderChips);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const words = text.value.trim();
    if (!words) { text.focus(); return; }
    const field = form.querySelector("input[name=field]:checked").value;
    const networks = [...nets.querySelectorAll("input:checked")].map((i) => i.value);
    if (!networks.length) { toast("Choose at least one network.", "error"); return; }
    go.disabled = true;
    try {
      // The filters travel with the search (Napster's BITRATE/DURATION clauses,
      // Gnutella's rich query) and also apply to what is shown, live.
      const body = { text: words, field, networks };
      if (Number(minBitrate.value) > 0) body.min_bitrate = Number(minBitrate.value);
      if (Number(minLength.value) > 0) body.min_length = Number(minLength.value);
      const answer = await api("POST", "/api/web/search", body);
      known(answer.search, words, answer.networks);
      current = answer.search;
      renderChips(); schedule();
    } catch (err) {
      toast(`Search failed: ${err.message}`, "error");
    } finally {
      go.disabled = false;
    }
  });
  stop.addEventListener("click", () => {
    const s = current ? searches.get(current) : null;
    if (s && !s.done) { s.stopped = true; schedule(); }
  });
  for (const input of [minSpeed, minBitrate, minLength, minSize, maxSize]) input.addEventListener("input", schedule);

  // ---------------------------------------------------------------- events
  ctx.on("snapshot", (snap) => {
    renderNetworkChoices();
    const known = new Set();
    for (const s of snap.searches || []) {
      known.add(s.id);
      const mine = searches.get(s.id) || { id: s.id, text: s.text, results: new Map() };
      Object.assign(mine, { networks: s.networks, done: s.done, error: s.error });
      for (const r of s.results || []) mine.results.set(r.id, r);
      searches.set(s.id, mine);
    }
    for (const id of [...searches.keys()]) if (!known.has(id)) searches.delete(id);
    if (current && !searches.has(current)) current = searches.size ? [...searches.keys()].pop() : null;
    renderChips(); schedule();
  });
  ctx.on("networks", renderNetworkChoices);
  function known(id, text, networks) {
    let s = searches.get(id);
    if (!s) {
      s = { id, text: text || "…", networks: networks || [], done: false, error: null, results: new Map() };
      searches.set(id, s);
      if (!current) current = id;
    }
    return s;
  }
  ctx.on("results", ({ search, text: words, networks, results }) => {
    const s = known(search, words, networks);
    if (s.stopped) return;
    for (const r of results) s.results.set(r.id, r);
    scheduleChips();
    if (search === current) schedule();
  });
  ctx.on("search_done", (info) => {
    const s = known(info.id, info.text, info.networks);
    s.done = true;
    s.error = info.error;
    scheduleChips();
    if (info.id === current) schedule();
  });
  ctx.on("tab", (name) => { if (name === "search") { schedule(); text.focus(); } });
  rebuild();
}
