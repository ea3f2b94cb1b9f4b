// The page's entry point: session, live stream, tabs, status bar.
import { api, ApiError, el, humanRate, humanSize, setCsrf, setText, toast } from "./util.js";
import { initSearch } from "./search.js";
import { initTransfers } from "./transfers.js";
import { initNetwork } from "./network.js";
import { initLibrary } from "./library.js";

const EVENTS = ["transfers", "rate", "networks", "library", "scan", "results", "search_done", "monitor", "settings"];
/** Seconds between tries while the node is away (the stream retries by itself too). */
const RETRY_MS = [1000, 1000, 2000, 3000, 5000];

const handlers = new Map();
const ctx = {
  state: { node: {}, networks: [], searchNetworks: [], rates: [], library: null, settings: {} },
  on(event, fn) {
    if (!handlers.has(event)) handlers.set(event, []);
    handlers.get(event).push(fn);
  },
  emit(event, data) {
    for (const fn of handlers.get(event) || []) {
      try { fn(data); } catch (e) { console.error(`handler of ${event} failed`, e); }
    }
  },
};
window.peerlab = ctx; // for the browser tests and the curious

// ----------------------------------------------------------------------- tabs

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll(".panel")) {
    panel.hidden = panel.dataset.panel !== name;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  ctx.emit("tab", name);
}
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => showTab(tab.dataset.tab));
}
ctx.showTab = showTab;

// --------------------------------------------------------------- link state

const banner = document.getElementById("banner");
const linkState = document.getElementById("link-state");
let lostSince = null;
let bannerTimer = null;

function setLink(state) {
  linkState.dataset.state = state;
  setText(linkState, { live: "● live", lost: "● node not answering", connecting: "● connecting…" }[state]);
  clearTimeout(bannerTimer);
  if (state === "lost") {
    if (lostSince === null) lostSince = new Date();
    banner.dataset.kind = "error";
    setText(banner, `The node stopped answering at ${lostSince.toLocaleTimeString([], { hour12: false })}. ` +
      "Reconnecting by itself as soon as it is back…");
    banner.hidden = false;
  } else if (state === "live") {
    if (lostSince !== null) {
      banner.dataset.kind = "ok";
      setText(banner, "Reconnected to the node.");
      banner.hidden = false;
      bannerTimer = setTimeout(() => { banner.hidden = true; }, 4000);
    } else {
      banner.hidden = true;
    }
    lostSince = null;
  }
}

// -------------------------------------------------------------- live stream

let source = null;
let retry = 0;
let retryTimer = null;

async function refreshSession() {
  const session = await api("GET", "/api/web/session");
  setCsrf(session.csrf);
  ctx.state.session = session;
  return session;
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  const es = new EventSource("/api/web/events");
  source = es;
  es.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    retry = 0;
    setLink("live");
    ctx.state.node = snap.node || {};
    ctx.state.networks = snap.networks || [];
    ctx.state.searchNetworks = snap.search_networks || [];
    ctx.state.rates = snap.rates || [];
    ctx.state.library = snap.library;
    ctx.state.settings = snap.settings || {};
    ctx.emit("snapshot", snap);
    updateStats();
  });
  for (const name of EVENTS) {
    es.addEventListener(name, (e) => ctx.emit(name, JSON.parse(e.data)));
  }
  es.onerror = () => {
    if (source !== es) return;
    setLink("lost");
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      scheduleRetry();
    }
  };
}

function scheduleRetry() {
  clearTimeout(retryTimer);
  const wait = RETRY_MS[Math.min(retry, RETRY_MS.length - 1)];
  retry += 1;
  retryTimer = setTimeout(async () => {
    try {
      await refreshSession();
      connect();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        location.assign("/login?error=expired");
        return;
      }
      scheduleRetry();
    }
  }, wait);
}

// ------------------------------------------------------------- status + stats

const stats = document.getElementById("stats");
const concurrent = document.getElementById("concurrent");
const statusRates = document.getElementById("status-rates");
const statusNode = document.getElementById("status-node");

function updateStats() {
  const s = ctx.state;
  const rows = [];
  const lib = s.library;
  if (lib) {
    rows.push(["Files shared", `${lib.files.toLocaleString()}`]);
    rows.push(["Size", humanSize(lib.bytes)]);
  }
  for (const net of s.networks) {
    if (!net.joined) continue;
    rows.push([net.label, net.state]);
  }
  const last = s.rates[s.rates.length - 1];
  rows.push(["Down", last ? humanRate(last[1]) || "0 B/s" : "—"]);
  rows.push(["Up", last ? humanRate(last[2]) || "0 B/s" : "—"]);
  stats.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", null, k), el("dd", null, v)]));
  if (last) setText(statusRates, `↓ ${humanRate(last[1]) || "0 B/s"}   ↑ ${humanRate(last[2]) || "0 B/s"}`);
  const node = s.node || {};
  setText(statusNode, node.listen ? `peers on ${node.listen} · peerlab ${node.version}` : "");
}

ctx.on("rate", (sample) => {
  ctx.state.rates.push(sample);
  if (ctx.state.rates.length > 600) ctx.state.rates.shift();
  updateStats();
});
ctx.on("networks", (data) => {
  ctx.state.networks = data.networks;
  ctx.state.searchNetworks = data.search_networks;
  updateStats();
});
ctx.on("library", (lib) => { ctx.state.library = lib; updateStats(); });
ctx.on("concurrent", ({ downloads, uploads }) => {
  setText(concurrent, `Concurrent Downloads: ${downloads}  Concurrent Uploads: ${uploads}`);
  const badge = document.getElementById("badge-transfers");
  setText(badge, downloads + uploads ? String(downloads + uploads) : "");
});

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("POST", "/logout"); } catch (e) { /* gone already */ }
  location.assign("/login");
});

// ---------------------------------------------------------------------- start

initSearch(ctx);
initTransfers(ctx);
initNetwork(ctx);
initLibrary(ctx);
const first = (location.hash || "#search").slice(1);
showTab(["search", "transfers", "network", "library"].includes(first) ? first : "search");
refreshSession().then(connect, (e) => {
  if (e instanceof ApiError && e.status === 401) location.assign("/login?error=expired");
  else { setLink("lost"); scheduleRetry(); }
});
export { toast };
