// Small helpers shared by the panels.  Every piece of data reaches the DOM
// through textContent or an attribute set by property, never through HTML:
// a file called "<script>alert(1)</script>.mp3" is shown as those characters.

/** Build an element: el("td", {className: "num", title: t}, "text", child...). */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "attrs") for (const [a, v] of Object.entries(value)) node.setAttribute(a, v);
      else node[key] = value;
    }
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Set text only when it changed (keeps layout work down on live tables). */
export function setText(node, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1536 -> "1.5 KB" (powers of 1024, three digits). */
export function humanSize(n) {
  if (n === undefined || n === null) return "?";
  let value = Number(n);
  for (const unit of UNITS) {
    if (Math.abs(value) < 1000 || unit === "TB") {
      if (unit === "B") return `${Math.round(value)} B`;
      return Math.abs(value) >= 100 ? `${value.toFixed(0)} ${unit}` : `${value.toFixed(1)} ${unit}`;
    }
    value /= 1024;
  }
  return `${value.toFixed(1)} TB`;
}

/** Bytes with thousands separators, as Napster's window showed them. */
export function grouped(n) {
  if (n === undefined || n === null) return "?";
  return Math.round(Number(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function humanRate(bps) {
  if (!bps) return "";
  return `${humanSize(bps)}/s`;
}

/** Seconds as the lecture's "Time Left": 00:06:19. */
export function clock(seconds) {
  if (seconds === undefined || seconds === null || !isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  const pad = (x) => String(x).padStart(2, "0");
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/** Track length: 0:03:47. */
export function duration(seconds) {
  if (!seconds) return "";
  const s = Math.round(seconds);
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

export function timeOfDay(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** Parse "500K", "2M", "1.5G", "0" into bytes (null when not a size). */
export function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$/i.exec(text || "");
  if (!m) return null;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()];
  return Math.round(parseFloat(m[1]) * mult);
}

// ------------------------------------------------------------------ API calls

let csrf = null;
export function setCsrf(token) { csrf = token; }

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

/** One JSON request to the node; state-changing ones carry the CSRF token. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf || "";
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError("the node is not answering", 0);
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = data && typeof data.error === "string" ? data.error : `the node answered ${response.status}`;
    throw new ApiError(message, response.status);
  }
  return data;
}

// --------------------------------------------------------------------- toasts

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = el("div", { className: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(item);
  while (box.childElementCount > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** Run fn at most once per animation frame, with the latest arguments. */
export function batched(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; fn(); });
  };
}

/** A progress bar (Napster-like blue blocks) as a div whose inner width moves. */
export function progressBar() {
  const fill = el("div", { className: "bar-fill" });
  const label = el("span", { className: "bar-label" });
  const bar = el("div", { className: "bar", attrs: { role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" } }, fill, label);
  return {
    node: bar,
    set(fraction, text) {
      const pct = Math.max(0, Math.min(100, Math.floor(fraction * 100)));
      const width = `${pct}%`;
      if (fill.style.width !== width) fill.style.width = width;
      bar.setAttribute("aria-valuenow", String(pct));
      setText(label, text === undefined ? `${pct} %` : text);
    },
  };
}
