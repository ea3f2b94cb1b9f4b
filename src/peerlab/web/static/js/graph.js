// The rate graph: download and upload bytes per second over the last minutes,
// drawn on a canvas (one sample a second from the node's counters).
import { humanRate } from "./util.js";

const WINDOW_SECONDS = 300;
const DOWN = "#1f4fbf";
const UP = "#1d8a3a";

export class RateGraph {
  constructor(canvas) {
    this.canvas = canvas;
    this.samples = [];
    this.pending = false;
    window.addEventListener("resize", () => this.draw());
  }

  setSamples(samples) { this.samples = samples.slice(-WINDOW_SECONDS); this.schedule(); }

  add(sample) {
    this.samples.push(sample);
    if (this.samples.length > WINDOW_SECONDS) this.samples.shift();
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const c = this.canvas;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#ffffff"; g.fillRect(0, 0, w, h);
    const left = 70, right = 8, top = 8, bottom = 20;
    const pw = w - left - right, ph = h - top - bottom;
    let max = 1024;
    for (const [, d, u] of this.samples) max = Math.max(max, d, u);
    const step = niceStep(max / 3);
    max = step * Math.ceil(max / step);
    g.font = "11px Tahoma, Verdana, 'DejaVu Sans', sans-serif";
    g.strokeStyle = "#e3e1da"; g.fillStyle = "#555"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    for (let v = 0; v <= max + 1; v += step) {
      const y = top + ph - (v / max) * ph;
      g.beginPath(); g.moveTo(left, Math.round(y) + 0.5); g.lineTo(left + pw, Math.round(y) + 0.5); g.stroke();
      g.fillText(v ? humanRate(v) : "0", left - 6, y);
    }
    g.textAlign = "center"; g.textBaseline = "top";
    for (let m = 0; m <= 5; m++) {
      const x = left + pw - (m * 60 / WINDOW_SECONDS) * pw;
      g.beginPath(); g.moveTo(Math.round(x) + 0.5, top); g.lineTo(Math.round(x) + 0.5, top + ph); g.stroke();
      g.fillText(m ? `-${m} min` : "now", x, top + ph + 4);
    }
    g.strokeStyle = "#808080"; g.strokeRect(left + 0.5, top + 0.5, pw, ph);
    const now = this.samples.length ? this.samples[this.samples.length - 1][0] : Date.now() / 1000;
    const plot = (index, color, fill) => {
      const pts = this.samples.filter((s) => now - s[0] <= WINDOW_SECONDS)
        .map((s) => [left + pw - ((now - s[0]) / WINDOW_SECONDS) * pw, top + ph - (s[index] / max) * ph]);
      if (!pts.length) return;
      g.beginPath(); g.moveTo(pts[0][0], top + ph);
      for (const [x, y] of pts) g.lineTo(x, y);
      g.lineTo(pts[pts.length - 1][0], top + ph); g.closePath();
      g.fillStyle = fill; g.fill();
      g.beginPath();
      pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      g.strokeStyle = color; g.lineWidth = 1.5; g.stroke(); g.lineWidth = 1;
    };
    plot(1, DOWN, "rgba(31, 79, 191, 0.18)");
    plot(2, UP, "rgba(29, 138, 58, 0.18)");
  }
}

/** A round step for the axis, in the 1024-based units the labels use. */
function niceStep(x) {
  const unit = Math.pow(1024, Math.max(0, Math.floor(Math.log(x) / Math.log(1024))));
  const v = x / unit;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p * unit;
  return 10 * p * unit;
}
