"""Torrents on the web page's Transfers tab (issue 8, item 3: "Torrents show
per-peer detail and piece map"; item 5: adding a ``.torrent`` or a magnet).

A torrent is a row of the Downloads table like any other
(:func:`peerlab.web.views.download_row`); :func:`torrent_fields` adds what only
a torrent has: each connected peer (address, client, libtorrent-style flags,
pieces, rates, bytes both ways) and the piece map, folded to at most
:data:`MAX_PIECE_CELLS` cells so that a torrent of a hundred thousand pieces
costs the page no more than a small one.  Adding goes through the control
API (``POST /api/torrents``, :mod:`peerlab.apps.control`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Cells of the piece map sent to the page: one per piece up to this many,
#: else each cell stands for a run of pieces (it stays a line or two wide).
MAX_PIECE_CELLS = 512
#: Peers listed per torrent (a torrent holds at most 50 by default; a
#: ``max_peers_per_torrent`` raised high must not bloat every update).
MAX_PEER_ROWS = 100
#: Status words of torrent rows (the HTTP rows' are in views.STATUS_WORDS).
TORRENT_STATUS_WORDS = {
    "metadata": "Fetching metadata...",
    "checking": "Checking...",
    "seeding": "Seeding",
    "stopped": "Stopped",
    "finished": "Finished seeding",
}
#: Piece map characters (see Torrent.piece_map), strongest first when cells fold.
_ORDER = "#>._"


def fold_piece_map(pieces: str, cells: int = MAX_PIECE_CELLS) -> str:
    """One character per cell: ``#`` every piece of it verified, ``>`` some
    downloading, ``.`` some available from a peer, ``_`` none anywhere;
    a partly verified run shows as ``+``."""
    n = len(pieces)
    if n <= cells:
        return pieces
    out = []
    for i in range(cells):
        run = pieces[i * n // cells : (i + 1) * n // cells]
        if not run:
            continue
        have = run.count("#")
        if have == len(run):
            out.append("#")
        elif ">" in run:
            out.append(">")
        elif have:
            out.append("+")
        elif "." in run:
            out.append(".")
        else:
            out.append("_")
    return "".join(out)


def torrent_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """What a torrent's Downloads row carries besides the common columns."""
    peers = list(d.get("peers") or [])
    piece_map = str(d.get("piece_map") or "")
    return {
        "peer": f"{len(peers)} peer{'s' if len(peers) != 1 else ''}",
        "status_text": TORRENT_STATUS_WORDS.get(str(d.get("status")), None),
        "info_hash": str(d.get("info_hash") or ""),
        "up_rate": float(d.get("up_rate") or 0.0),
        "uploaded": int(d.get("uploaded") or 0),
        "ratio": float(d.get("ratio") or 0.0),
        "seeds": int(d.get("seeds") or 0),
        "leechers": int(d.get("leechers") or 0),
        "pieces": d.get("pieces"),
        "pieces_have": int(d.get("pieces_have") or 0),
        "seed_ratio": d.get("seed_ratio"),
        "seed_time": d.get("seed_time"),
        "goal_reached": d.get("goal_reached"),
        "piece_map": fold_piece_map(piece_map),
        "piece_map_folded": len(piece_map) > MAX_PIECE_CELLS,
        "peers": [
            {"address": str(p.get("address")), "client": str(p.get("client") or ""),
             "flags": str(p.get("flags") or ""), "pieces": int(p.get("pieces") or 0),
             "seed": bool(p.get("seed")), "down_rate": float(p.get("down_rate") or 0.0),
             "up_rate": float(p.get("up_rate") or 0.0),
             "downloaded": int(p.get("downloaded") or 0),
             "uploaded": int(p.get("uploaded") or 0),
             "source": str(p.get("source") or "")}
            for p in peers[:MAX_PEER_ROWS]
        ],
    }  # fmt: skip
