// Small live plots drawn as SVG: no framework, nothing fetched. A plot
// element carries data-plot (what it shows) and, once drawn, data-points
// (how many points it draws), which the browser tests read.

const NS = "http://www.w3.org/2000/svg";
const W = 240; // viewBox width
const H = 48; // viewBox height

/**
 * Sparkline draws one series of [x, y] points into an <svg> element as a
 * line over a filled area, scaled to the points' range (y from 0).
 */
export class Sparkline {
  constructor(svg, { minMax = 0 } = {}) {
    this.svg = svg;
    this.minMax = minMax; // the y scale's least top, so that noise stays flat
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.replaceChildren();
    this.area = el("path", { class: "area" });
    this.line = el("polyline", { class: "line", fill: "none" });
    this.marks = el("g", { class: "marks" });
    svg.append(this.area, this.line, this.marks);
    svg.dataset.points = "0";
  }

  /** draw shows points ([x, y] with x ascending) over [x0, x1] on the x axis. */
  draw(points, x0, x1, yMax = null) {
    const top = Math.max(this.minMax, yMax ?? 0, ...points.map((p) => p[1]));
    const span = x1 - x0 || 1;
    const xy = points.map(([x, y]) => [((x - x0) / span) * W, H - 2 - (top > 0 ? (y / top) * (H - 4) : 0)]);
    const pts = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    this.line.setAttribute("points", pts);
    this.area.setAttribute("d", xy.length ? `M${xy[0][0].toFixed(1)},${H} L${pts.replaceAll(" ", " L")} L${xy[xy.length - 1][0].toFixed(1)},${H} Z` : "");
    this.svg.dataset.points = String(points.length);
    this.svg.dataset.max = String(top);
  }
}

/**
 * Bars draws counts per bucket as bars into an <svg> element; a click
 * calls onPick with the fraction of the width clicked (0..1).
 */
export class Bars {
  constructor(svg, onPick) {
    this.svg = svg;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.replaceChildren();
    this.g = el("g", { class: "bars" });
    this.cursor = el("line", { class: "cursor", y1: "0", y2: String(H), x1: "-1", x2: "-1" });
    svg.append(this.g, this.cursor);
    svg.dataset.points = "0";
    svg.addEventListener("click", (ev) => {
      const r = svg.getBoundingClientRect();
      if (r.width > 0) onPick(Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)));
    });
  }

  /** draw shows counts, one bar each, scaled to the largest. */
  draw(counts) {
    const top = Math.max(1, ...counts);
    const bw = W / Math.max(1, counts.length);
    this.g.replaceChildren(...counts.map((c, i) => {
      const h = (c / top) * (H - 2);
      return el("rect", { x: (i * bw).toFixed(2), y: (H - h).toFixed(2), width: Math.max(0.5, bw - 0.5).toFixed(2), height: h.toFixed(2) });
    }));
    this.svg.dataset.points = String(counts.length);
  }

  /** mark puts the cursor at fraction f of the width (null hides it). */
  mark(f) {
    const x = f === null ? -1 : f * W;
    this.cursor.setAttribute("x1", String(x));
    this.cursor.setAttribute("x2", String(x));
  }
}

function el(name, attrs) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/**
 * quantile returns the q quantile of a histogram given as upper bounds and
 * counts per bucket (not cumulative), interpolating inside the bucket as
 * Prometheus's histogram_quantile does; null without observations.
 */
export function quantile(q, le, counts) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    if (seen + counts[i] >= rank) {
      const lo = i === 0 ? 0 : le[i - 1];
      const hi = i < le.length ? le[i] : le[le.length - 1];
      return lo + (hi - lo) * ((rank - seen) / (counts[i] || 1));
    }
    seen += counts[i];
  }
  return le[le.length - 1];
}
