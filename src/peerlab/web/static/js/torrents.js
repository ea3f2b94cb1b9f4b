// Torrents on the page (issue 8): a torrent's detail under its Downloads row
// (the piece map, one cell per piece or per run of pieces, and every
// connected peer with libtorrent-style flags), and the Library's form that
// adds a .torrent file or a magnet link through POST /api/torrents.
import { api, el, grouped, humanRate, humanSize, setText, toast } from "./util.js";

const CELL_CLASS = { "#": "have", ">": "busy", "+": "part", ".": "avail", "_": "none" };
const CELL_TITLE = { "#": "verified", ">": "downloading", "+": "partly verified", ".": "a peer has it", "_": "nobody connected has it" };
const PEER_HEAD = ["Peer", "Client", "Flags", "Pieces", "Down", "Up", "Downloaded", "Uploaded", "From"];

/** Did anything the detail shows change? */
export function torrentChanged(old, row) {
  return old.piece_map !== row.piece_map || JSON.stringify(old.peers) !== JSON.stringify(row.peers);
}

/** The detail of a torrent row: facts, piece map, peers. */
export function torrentDetail(row) {
  const goal = [];
  if (row.seed_ratio) goal.push(`ratio ${row.seed_ratio}`);
  if (row.seed_time) goal.push(`${Math.round(row.seed_time / 60)} min`);
  const facts = el("div", { className: "torrent-facts" },
    el("span", null, `Info-hash ${row.info_hash}`),
    el("span", null, `Pieces ${row.pieces_have} of ${row.pieces === null || row.pieces === undefined ? "?" : row.pieces}`),
    el("span", null, `Seeds ${row.seeds}, leechers ${row.leechers}`),
    el("span", null, `Uploaded ${humanSize(row.uploaded)} (ratio ${Number(row.ratio || 0).toFixed(2)})`),
    el("span", null, `Up ${humanRate(row.up_rate) || "0 B/s"}`),
    el("span", null, goal.length ? `Seeding goal: ${goal.join(" or ")}${row.goal_reached ? " — reached" : ""}` : "Seeds until stopped"));
  const map = el("div", { className: "piece-map", attrs: { role: "img", "aria-label": `piece map: ${row.pieces_have} of ${row.pieces} pieces verified` } },
    ...Array.from(row.piece_map || "", (c) => el("span", { className: `cell ${CELL_CLASS[c] || "none"}`, title: CELL_TITLE[c] || "" })));
  const peers = row.peers || [];
  const table = el("table", { className: "grid sources torrent-peers" },
    el("thead", null, el("tr", null, ...PEER_HEAD.map((h) => el("th", null, h)))),
    el("tbody", null, ...(peers.length ? peers : [null]).map((p) => p === null
      ? el("tr", null, el("td", { colSpan: PEER_HEAD.length }, "no peer connected"))
      : el("tr", { className: "torrent-peer" }, el("td", null, p.address), el("td", null, p.client),
        el("td", { className: "flags" }, p.flags), el("td", { className: "num" }, p.seed ? "seed" : grouped(p.pieces)),
        el("td", { className: "num" }, humanRate(p.down_rate)), el("td", { className: "num" }, humanRate(p.up_rate)),
        el("td", { className: "num" }, grouped(p.downloaded)), el("td", { className: "num" }, grouped(p.uploaded)),
        el("td", null, p.source)))));
  return el("div", { className: "torrent-detail" }, facts,
    el("div", { className: "piece-map-label" }, row.piece_map_folded ? "Pieces (each cell a run of pieces):" : "Pieces:"), map, table);
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** Enable the Library's torrent form once the node runs BitTorrent. */
export function wireTorrentForm({ file, magnet, add, note }) {
  let wired = false;
  return function joined(isJoined) {
    for (const input of [file, magnet, add]) input.disabled = !isJoined;
    note.classList.toggle("unavailable", !isJoined);
    setText(note, isJoined ? "A .torrent file or a magnet link: the torrent shows in Transfers." : "Unavailable: BitTorrent is off on this node.");
    if (wired || !isJoined) return;
    wired = true;
    add.addEventListener("click", async () => {
      const body = {};
      try {
        if (file.files && file.files.length) body.torrent = base64(await file.files[0].arrayBuffer());
        else if (magnet.value.trim()) body.magnet = magnet.value.trim();
        else { toast("Choose a .torrent file or paste a magnet link.", "error"); return; }
        const answer = await api("POST", "/api/torrents", body);
        toast(`Torrent added: ${answer.torrent.name}`, "ok");
        magnet.value = "";
        file.value = "";
      } catch (e) { toast(`Cannot add the torrent: ${e.message}`, "error"); }
    });
  };
}
