// Network: one window per network of the lecture (Direct peers, Napster,
// Gnutella, Two-tier, BitTorrent).  A network lights up when the node reports
// it: state, index servers (which one is in use), connections and roles,
// messages per second by type; gtk-gnutella's Monitor of passing queries.
import { batched, el, setText, timeOfDay } from "./util.js";

const MONITOR_LINES = 200;

function table(head, rows, className) {
  return el("table", { className: `grid ${className || ""}` },
    el("thead", null, el("tr", null, ...head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", null, ...rows.map((cells) => el("tr", null, ...cells.map((c) => {
      if (c instanceof Node) return el("td", null, c);
      const td = el("td", null, c === null || c === undefined ? "" : String(c));
      if (typeof c === "number") td.className = "num";
      return td;
    })))));
}

export function initNetwork(ctx) {
  const panel = document.getElementById("panel-network");
  const grid = el("div", { className: "network-grid", id: "network-grid" });
  const monitorBody = el("tbody", { id: "monitor-body" });
  const frozen = el("input", { type: "checkbox", id: "monitor-freeze" });
  const monitorWin = el("div", { className: "window monitor-window", id: "monitor" },
    el("div", { className: "titlebar small" }, el("span", null, "Monitor — queries passing through this node"),
      el("label", { className: "titlebar-check" }, frozen, " Freeze")),
    el("div", { className: "scroll" }, el("table", { className: "grid monitor" },
      el("thead", null, el("tr", null, ...["Time", "Network", "From", "Query", "Hops", "TTL", "Hits"].map((h) => el("th", { scope: "col" }, h)))),
      monitorBody)));
  panel.append(grid, monitorWin);
  const monitor = [];

  function card(net) {
    const led = el("span", { className: `led ${net.joined ? (/(online|answered|\d+ peer)/.test(net.state) ? "on" : "warn") : "off"}` });
    const body = el("div", { className: "window-body" });
    body.append(el("p", { className: "about" }, net.about));
    if (!net.joined) {
      body.append(el("p", { className: "not-joined" }, `This node has not joined ${net.label}. Its panel lights up when the node reports it.`));
    } else {
      if (net.detail) body.append(el("p", { className: "detail" }, net.detail));
      if (net.facts.length) {
        body.append(el("dl", { className: "facts" }, ...net.facts.flatMap(([k, v]) => [el("dt", null, k), el("dd", null, v === null || v === undefined ? "" : String(v))])));
      }
      if (net.servers.length) {
        body.append(el("h3", null, "Index servers"), table(["Server", "In use", "State"],
          net.servers.map((s) => [s.address, s.in_use ? "✔ in use" : "", s.state]), "servers"));
      }
      if (net.connections.length) {
        const keys = ["address", "role", "state", "detail", "since"].filter((k) => net.connections.some((c) => k in c));
        const extra = Object.keys(net.connections[0]).filter((k) => !keys.includes(k)).slice(0, 4);
        const cols = [...keys, ...extra];
        body.append(el("h3", null, `Connections (${net.connections.length})`),
          table(cols.map((k) => k.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase())), net.connections.map((c) => cols.map((k) => c[k])), "connections"));
      }
      body.append(el("h3", null, "Messages per second"),
        net.rates.length
          ? table(["Type", "Per second", "Total"], net.rates.map(([name, rate, total]) => [name, rate, total]), "rates")
          : el("p", { className: "muted" }, "No messages yet."));
    }
    return el("section", { className: `window network-card${net.joined ? "" : " off"}`, dataset: { network: net.id } },
      el("div", { className: "titlebar small" }, led, el("span", { className: "net-label" }, net.label),
        el("span", { className: "net-state" }, net.state)), body);
  }

  let networks = [];
  const render = batched(() => {
    grid.replaceChildren(...networks.map(card));
  });
  const renderMonitor = batched(() => {
    monitorBody.replaceChildren(...(monitor.length ? monitor : [null]).map((m) => m
      ? el("tr", null, el("td", null, timeOfDay(m.time)), el("td", null, m.network), el("td", null, m.peer),
          el("td", { className: "query", title: m.query }, m.query),
          el("td", { className: "num hops" }, m.hops == null ? "" : String(m.hops)),
          el("td", { className: "num ttl" }, m.ttl == null ? "" : String(m.ttl)),
          el("td", { className: "num" }, m.results === null || m.results === undefined ? "" : String(m.results)))
      : el("tr", { className: "empty" }, el("td", { colSpan: 7 }, "No query has passed through this node yet."))));
  });

  ctx.on("snapshot", (snap) => {
    networks = snap.networks || [];
    monitor.length = 0;
    for (const m of (snap.monitor || []).slice().reverse()) monitor.push(m);
    render(); renderMonitor();
  });
  ctx.on("networks", (data) => {
    networks = data.networks;
    if (!panel.hidden) render();
  });
  ctx.on("monitor", (lines) => {
    if (frozen.checked) return;
    for (const m of lines) monitor.unshift(m);
    monitor.length = Math.min(monitor.length, MONITOR_LINES);
    renderMonitor();
  });
  ctx.on("tab", (name) => { if (name === "network") render(); });
}
