// Library & settings: shared folders (add, remove, rescan, file counts), the
// scan's progress, rate limits and upload slots, the web password, and the
// place BitTorrent's .torrent files and magnet links will go.
import { api, el, grouped, humanRate, humanSize, parseSize, progressBar, setCsrf, setText, toast } from "./util.js";
import { wireTorrentForm } from "./torrents.js";

export function initLibrary(ctx) {
  const panel = document.getElementById("panel-library");

  // ----------------------------------------------------------- shared folders
  const folderBody = el("tbody", { id: "folders-body" });
  const folderInput = el("input", { id: "folder-path", type: "text", title: "/home/you/Music", attrs: { "aria-label": "folder to share" } });
  const addButton = el("button", { type: "submit", id: "folder-add" }, "Share folder");
  const rescan = el("button", { type: "button", id: "rescan" }, "Rescan all");
  const scanBar = progressBar();
  const scanText = el("span", { className: "scan-text", id: "scan-text" });
  const totals = el("p", { className: "library-totals", id: "library-totals" });
  const dirs = el("p", { className: "muted", id: "library-dirs" });
  const addForm = el("form", { className: "form-row" }, el("label", { htmlFor: "folder-path", className: "form-label" }, "Folder:"), folderInput, addButton, rescan);
  const sharesWin = el("div", { className: "window" },
    el("div", { className: "titlebar small" }, "Shared folders"),
    el("div", { className: "window-body" },
      el("table", { className: "grid folders", id: "folders" },
        el("thead", null, el("tr", null, ...["Folder", "Files", "Size", ""].map((h, i) => el("th", { scope: "col", className: i === 1 || i === 2 ? "num" : "" }, h)))),
        folderBody),
      totals, addForm, el("div", { className: "scan-row" }, el("span", { className: "form-label" }, "Scan:"), scanBar.node, scanText), dirs));

  addForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const path = folderInput.value.trim();
    if (!path) return;
    addButton.disabled = true;
    try {
      const answer = await api("POST", "/api/shares", { path });
      toast(`Sharing ${answer.added}; scanning…`, "ok");
      folderInput.value = "";
    } catch (err) { toast(`Cannot share ${path}: ${err.message}`, "error"); }
    addButton.disabled = false;
  });
  rescan.addEventListener("click", async () => {
    try { await api("POST", "/api/scan"); toast("Rescanning the shared folders."); } catch (err) { toast(err.message, "error"); }
  });

  function renderLibrary(lib) {
    if (!lib) return;
    folderBody.replaceChildren(...(lib.folders.length ? lib.folders.map((f) => {
      const remove = el("button", { type: "button", className: "small" }, "Remove");
      remove.addEventListener("click", async () => {
        try { await api("DELETE", "/api/shares", { path: f.path }); toast(`Stopped sharing ${f.path}.`); } catch (err) { toast(err.message, "error"); }
      });
      const again = el("button", { type: "button", className: "small" }, "Rescan");
      again.addEventListener("click", async () => {
        try { await api("POST", "/api/scan"); toast("Rescanning."); } catch (err) { toast(err.message, "error"); }
      });
      return el("tr", { dataset: { path: f.path } }, el("td", { title: f.path }, f.path), el("td", { className: "num" }, grouped(f.files)),
        el("td", { className: "num" }, humanSize(f.bytes)), el("td", { className: "actions" }, again, remove));
    }) : [el("tr", { className: "empty" }, el("td", { colSpan: 4 }, "No shared folder yet."))]));
    setText(totals, `${grouped(lib.files)} file${lib.files === 1 ? "" : "s"} shared, ${humanSize(lib.bytes)} in all.`);
    setText(dirs, `Finished downloads go to ${lib.download_dir}; partial ones wait in ${lib.incomplete_dir}.`);
  }

  function renderScan(scan) {
    if (!scan) return;
    const p = scan.progress;
    if (scan.running) {
      const frac = p && p.bytes_total ? p.bytes_done / p.bytes_total : 0;
      scanBar.set(frac);
      setText(scanText, p ? `hashing ${p.files_done} of ${p.files_total} new or changed file(s)` : "listing files…");
    } else if (scan.error) {
      scanBar.set(0, "");
      setText(scanText, `last scan: ${scan.error}`);
    } else {
      scanBar.set(scan.finished ? 1 : 0, scan.finished ? "done" : "");
      const r = scan.report;
      setText(scanText, r ? `last scan: ${r.files ?? ""} file(s) listed, ${r.hashed ?? 0} hashed` : "");
    }
  }

  // ----------------------------------------------------------------- settings
  const upRate = el("input", { id: "set-upload-rate", type: "text", title: "0 = unlimited" });
  const downRate = el("input", { id: "set-download-rate", type: "text", title: "0 = unlimited" });
  const slots = el("input", { id: "set-upload-slots", type: "number", min: "1", max: "1024" });
  const btUp = el("input", { id: "set-bt-upload-rate", type: "text", title: "0 = unlimited" });
  const btDown = el("input", { id: "set-bt-download-rate", type: "text", title: "0 = unlimited" });
  const btRows = [
    el("label", { hidden: true }, el("span", null, "BitTorrent upload limit"), btUp, el("small", { id: "now-bt-upload-rate" })),
    el("label", { hidden: true }, el("span", null, "BitTorrent download limit"), btDown, el("small", { id: "now-bt-download-rate" })),
  ];
  const rateText = (n) => (n ? humanSize(n).replace(" ", "").replace("B", "") : "0");
  const apply = el("button", { type: "submit", id: "settings-apply" }, "Apply");
  const settingsForm = el("form", { className: "window-body settings-form" },
    el("label", null, el("span", null, "Upload rate limit"), upRate, el("small", { id: "now-upload-rate" })),
    el("label", null, el("span", null, "Download rate limit"), downRate, el("small", { id: "now-download-rate" })),
    el("label", null, el("span", null, "Upload slots"), slots, el("small", null, "uploads served at once")),
    ...btRows,
    el("p", { className: "muted" }, "Rates in bytes per second: 500K, 2M; 0 is unlimited. These last until the node stops."),
    el("div", { className: "buttons" }, apply));
  function renderSettings(s) {
    if (!s) return;
    if (document.activeElement !== upRate) upRate.value = s.upload_rate ? humanSize(s.upload_rate).replace(" ", "").replace("B", "") : "0";
    if (document.activeElement !== downRate) downRate.value = s.download_rate ? humanSize(s.download_rate).replace(" ", "").replace("B", "") : "0";
    if (document.activeElement !== slots) slots.value = String(s.upload_slots);
    setText(document.getElementById("now-upload-rate"), s.upload_rate ? `now ${humanRate(s.upload_rate)}` : "now unlimited");
    setText(document.getElementById("now-download-rate"), s.download_rate ? `now ${humanRate(s.download_rate)}` : "now unlimited");
    const bt = s.bittorrent_upload_rate !== undefined;
    for (const r of btRows) r.hidden = !bt;
    if (!bt) return;
    if (document.activeElement !== btUp) btUp.value = rateText(s.bittorrent_upload_rate);
    if (document.activeElement !== btDown) btDown.value = rateText(s.bittorrent_download_rate);
    setText(document.getElementById("now-bt-upload-rate"), s.bittorrent_upload_rate ? `now ${humanRate(s.bittorrent_upload_rate)}` : "now unlimited");
    setText(document.getElementById("now-bt-download-rate"), s.bittorrent_download_rate ? `now ${humanRate(s.bittorrent_download_rate)}` : "now unlimited");
  }
  settingsForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const changes = {};
    const u = parseSize(upRate.value), d = parseSize(downRate.value);
    if (u === null || d === null) { toast("A rate is a number of bytes per second: 500K, 2M or 0.", "error"); return; }
    changes.upload_rate = u; changes.download_rate = d; changes.upload_slots = Number(slots.value);
    if (!btRows[0].hidden) {
      const bu = parseSize(btUp.value), bd = parseSize(btDown.value);
      if (bu === null || bd === null) { toast("A rate is a number of bytes per second: 500K, 2M or 0.", "error"); return; }
      changes.bittorrent_upload_rate = bu; changes.bittorrent_download_rate = bd;
    }
    try { ctx.state.settings = await api("POST", "/api/web/settings", changes); renderSettings(ctx.state.settings); toast("Settings applied.", "ok"); }
    catch (err) { toast(`Cannot apply: ${err.message}`, "error"); }
  });

  const password = el("input", { id: "web-password", type: "password", autocomplete: "new-password", minLength: 8 });
  const passwordForm = el("form", { className: "window-body settings-form" },
    el("label", null, el("span", null, "New web password"), password, el("small", { id: "password-state" })),
    el("p", { className: "muted" }, "Log in with it instead of the control token. Setting it ends every other session."),
    el("div", { className: "buttons" }, el("button", { type: "submit", id: "password-set" }, "Set password")));
  passwordForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const answer = await api("POST", "/api/web/password", { password: password.value });
      password.value = "";
      if (answer.csrf) setCsrf(answer.csrf);
      toast("Web password set.", "ok");
      setText(document.getElementById("password-state"), "a password is set");
    } catch (err) { toast(`Cannot set the password: ${err.message}`, "error"); }
  });

  // ---------------------------------------------------------------- torrents
  const torrentFile = el("input", { type: "file", id: "torrent-file", accept: ".torrent", disabled: true });
  const magnet = el("input", { type: "text", id: "magnet-link", title: "magnet:?xt=urn:btih:…", disabled: true });
  const torrentAdd = el("button", { type: "button", id: "torrent-add", disabled: true }, "Add");
  const torrentNote = el("p", { className: "unavailable", id: "torrent-note" },
    "Unavailable: this node has not joined BitTorrent yet. Adding a .torrent file or a magnet link works once it does.");
  const torrentWin = el("div", { className: "window torrent-window off" },
    el("div", { className: "titlebar small" }, "BitTorrent — add a torrent"),
    el("div", { className: "window-body settings-form" },
      el("label", null, el("span", null, ".torrent file"), torrentFile),
      el("label", null, el("span", null, "Magnet link"), magnet),
      torrentNote, el("div", { className: "buttons" }, torrentAdd)));

  const torrentJoined = wireTorrentForm({ file: torrentFile, magnet, add: torrentAdd, note: torrentNote });

  panel.append(el("div", { className: "library-grid" }, sharesWin,
    el("div", { className: "library-side" },
      el("div", { className: "window" }, el("div", { className: "titlebar small" }, "Bandwidth and slots"), settingsForm),
      el("div", { className: "window" }, el("div", { className: "titlebar small" }, "Web page login"), passwordForm),
      torrentWin)));

  ctx.on("snapshot", (snap) => {
    renderLibrary(snap.library); renderScan(snap.scan); renderSettings(snap.settings);
    const bt = (snap.networks || []).find((n) => n.id === "bittorrent");
    setText(document.getElementById("password-state"), ctx.state.session && ctx.state.session.has_password ? "a password is set" : "no password yet: token only");
    torrentJoined(Boolean(bt && bt.joined));
  });
  ctx.on("library", renderLibrary);
  ctx.on("scan", renderScan);
  ctx.on("settings", (s) => { ctx.state.settings = s; renderSettings(s); });
}
