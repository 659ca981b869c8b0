// The server panel of the home view: live plots of the server's rates and
// gauges over the last few minutes, from GET /stats once a second. It
// needs no token in open mode and the admin right otherwise; without it
// the panel stays hidden.

import * as api from "./api.js";
import { Sparkline, quantile } from "./plot.js";

const SPAN_MS = 3 * 60 * 1000; // what the plots show
const P99_WINDOW_MS = 30 * 1000; // catch-up p99 over this much recent time

const PLOTS = [
  { key: "appends", label: "appends/s", fmt: rate },
  { key: "deliveries", label: "deliveries/s", fmt: rate },
  { key: "subscribers", label: "subscribers", fmt: count },
  { key: "channels", label: "open channels", fmt: count },
  { key: "persist-lag", label: "persist lag (msgs)", fmt: count },
  { key: "buffered", label: "buffered memory", fmt: bytes },
  { key: "catchup-p99", label: "catch-up p99", fmt: seconds },
];

/** ServerPanel polls the stats and draws them; start and stop it with the view. */
export class ServerPanel {
  constructor(section, { interval = 1000 } = {}) {
    this.section = section;
    this.interval = interval;
    this.samples = []; // raw stats, oldest first
    this.plots = {};
    this.values = {};
    const grid = section.querySelector(".plots");
    grid.replaceChildren();
    for (const p of PLOTS) {
      const fig = document.createElement("figure");
      const cap = document.createElement("figcaption");
      const name = document.createElement("span");
      name.textContent = p.label;
      const val = document.createElement("b");
      val.dataset.value = p.key;
      val.textContent = "–";
      cap.append(name, val);
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.dataset.plot = p.key;
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", p.label);
      fig.append(cap, svg);
      grid.append(fig);
      this.plots[p.key] = new Sparkline(svg, { minMax: p.key === "catchup-p99" ? 0.001 : 1 });
      this.values[p.key] = val;
    }
  }

  start() {
    if (this.timer) return;
    this.ctrl = new AbortController();
    const tick = async () => {
      try {
        const st = await api.getStats({ signal: this.ctrl.signal });
        this.add(st);
        this.section.hidden = false;
      } catch (e) {
        if (e.name === "AbortError") return;
        // 401 or 403: this token may not read the server's stats.
        if (e.status === 401 || e.status === 403 || e.status === 404) this.section.hidden = true;
      }
    };
    tick();
    this.timer = setInterval(tick, this.interval);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.ctrl?.abort();
  }

  add(st) {
    const s = this.samples;
    if (s.length && st.time <= s[s.length - 1].time) return;
    s.push(st);
    while (s.length > 2 && st.time - s[0].time > SPAN_MS + 5000) s.shift();
    this.draw();
  }

  draw() {
    const s = this.samples;
    const now = s[s.length - 1].time;
    // The plots fill their width from the first sample until they span
    // SPAN_MS, then scroll.
    const x0 = Math.max(now - SPAN_MS, s[0].time);
    const series = Object.fromEntries(PLOTS.map((p) => [p.key, []]));
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (i > 0) {
        const p = s[i - 1];
        const dt = (c.time - p.time) / 1000;
        series.appends.push([c.time, Math.max(0, (c.appended - p.appended) / dt)]);
        series.deliveries.push([c.time, Math.max(0, (c.delivered - p.delivered) / dt)]);
      }
      series.subscribers.push([c.time, c.subscribers]);
      series.channels.push([c.time, c.channels_open]);
      series["persist-lag"].push([c.time, c.persist_lag]);
      series.buffered.push([c.time, c.buffered_bytes]);
      const old = this.before(c.time - P99_WINDOW_MS, i);
      series["catchup-p99"].push([c.time, p99(old, c) ?? 0]);
    }
    const last = s[s.length - 1];
    for (const p of PLOTS) {
      const pts = series[p.key];
      const yMax = p.key === "buffered" ? last.max_buffered_bytes : null;
      this.plots[p.key].draw(pts, x0, now, yMax);
      const v = pts.length ? pts[pts.length - 1][1] : null;
      this.values[p.key].textContent = v === null ? "–" : p.fmt(v);
    }
    this.values.buffered.textContent = `${bytes(last.buffered_bytes)} / ${bytes(last.max_buffered_bytes)}`;
    const recent = p99(this.before(now - P99_WINDOW_MS, s.length - 1), last);
    this.values["catchup-p99"].textContent = recent === null ? "–" : seconds(recent);
  }

  // before returns the last sample at or before t among the first i.
  before(t, i) {
    let j = i;
    while (j > 0 && this.samples[j].time > t) j--;
    return this.samples[j];
  }
}

// p99 is the 99th percentile of the catch-ups that ended between a and b.
function p99(a, b) {
  if (!a || a === b || !b.catchup.le) return null;
  const per = [];
  let prevA = 0;
  let prevB = 0;
  for (let i = 0; i < b.catchup.counts.length; i++) {
    const ca = a.catchup.counts?.[i] ?? 0;
    const cb = b.catchup.counts[i];
    per.push(Math.max(0, cb - prevB - (ca - prevA)));
    prevA = ca;
    prevB = cb;
  }
  per.push(Math.max(0, b.catchup.count - prevB - ((a.catchup.count ?? 0) - prevA)));
  return quantile(0.99, b.catchup.le, per);
}

function rate(v) {
  return v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}

function count(v) {
  return String(Math.round(v));
}

function bytes(v) {
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)} GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)} KiB`;
  return `${Math.round(v)} B`;
}

function seconds(v) {
  return v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms` : `${v.toFixed(2)} s`;
}
