// The timeline of a channel's history: messages over time, from the
// stored append times of a few sampled messages (one history read of one
// message each), drawn as bars. A click maps the time clicked back to the
// seq appended then, and the watch view opens the stream from there.

import * as api from "./api.js";

const SAMPLES = 48; // messages whose times are read
const BUCKETS = 60; // bars

/** Timeline loads and draws one channel's history over time. */
export class Timeline {
  constructor(id, bars, info, signal) {
    this.id = id;
    this.bars = bars;
    this.info = info;
    this.signal = signal;
    this.points = []; // [time µs, seq], ascending
    this.loading = false;
  }

  /** load reads the samples again and redraws. */
  async load() {
    if (this.loading) return;
    this.loading = true;
    try {
      const ch = await api.getChannel(this.id, { signal: this.signal });
      const last = ch.last_seq || 0;
      if (last === 0) {
        this.points = [];
        this.bars.draw([]);
        this.info.textContent = "no messages yet";
        return;
      }
      const seqs = new Set();
      for (let k = 0; k < SAMPLES; k++) seqs.add(1 + Math.round((k * (last - 1)) / (SAMPLES - 1)));
      const pages = await Promise.all([...seqs].map((s) => api.historyPage(this.id, s - 1, 1, { signal: this.signal })));
      const points = [];
      for (const p of pages) {
        const m = p.messages?.[0];
        if (m && typeof m.time === "number") points.push([m.time, m.seq]);
      }
      points.sort((a, b) => a[1] - b[1]);
      this.points = points;
      this.draw();
    } catch (e) {
      if (e.name !== "AbortError") this.info.textContent = `cannot read the history: ${e.message}`;
    } finally {
      this.loading = false;
    }
  }

  draw() {
    const p = this.points;
    if (p.length === 0) return;
    const t0 = p[0][0];
    const t1 = p[p.length - 1][0];
    const counts = [];
    let prev = this.seqAtTime(t0) - 1;
    for (let b = 1; b <= BUCKETS; b++) {
      const s = this.seqAtTime(t0 + ((t1 - t0) * b) / BUCKETS);
      counts.push(Math.max(0, s - prev));
      prev = s;
    }
    this.bars.draw(counts);
    this.bars.svg.dataset.first = String(p[0][1]);
    this.bars.svg.dataset.last = String(p[p.length - 1][1]);
    const fmt = (t) => new Date(t / 1000).toLocaleString();
    this.info.textContent = `${fmt(t0)} – ${fmt(t1)} · seq ${p[0][1]}–${p[p.length - 1][1]}`;
  }

  // seqAtTime is the last seq appended by time t (µs), interpolated
  // between the samples.
  seqAtTime(t) {
    const p = this.points;
    if (t <= p[0][0]) return p[0][1];
    for (let i = 1; i < p.length; i++) {
      if (t <= p[i][0]) {
        const [ta, sa] = p[i - 1];
        const [tb, sb] = p[i];
        return tb === ta ? sb : Math.round(sa + ((sb - sa) * (t - ta)) / (tb - ta));
      }
    }
    return p[p.length - 1][1];
  }

  /** seqAt is the seq at fraction f (0..1) of the timeline; null when empty. */
  seqAt(f) {
    const p = this.points;
    if (p.length === 0) return null;
    const t0 = p[0][0];
    const t1 = p[p.length - 1][0];
    this.bars.mark(f);
    return Math.max(1, this.seqAtTime(t0 + (t1 - t0) * f));
  }
}
