// The channel list: polled from GET /channels while it is on screen, open
// channels first, newest first, filtered by id in the browser.

import * as api from "./api.js";

const REFRESH_MS = 2000;
const PAGE = 200;
const MAX_CHANNELS = 1000;

/** formatAge is a short human duration: 4s, 2m 5s, 3h 4m, 2d 3h. */
export function formatAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function cell(tr, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

/** ChannelList keeps the table in step with the server while started. */
export class ChannelList {
  constructor(el) {
    this.el = el;
    this.tbody = el.table.tBodies[0];
    this.rows = new Map(); // id → {tr, link, state, seq, subs, age, ch}
    this.filter = "";
    this.timer = null;
    this.abort = null;
    this.running = false;
    this.capped = false;
    this.onVisible = () => {
      if (!document.hidden && this.running) this.refresh();
    };
  }

  start() {
    if (this.running) return;
    this.running = true;
    document.addEventListener("visibilitychange", this.onVisible);
    this.refresh();
  }

  stop() {
    this.running = false;
    document.removeEventListener("visibilitychange", this.onVisible);
    clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    this.abort = null;
  }

  setFilter(f) {
    this.filter = f;
    if (this.el.filter.value !== f) this.el.filter.value = f;
    this.applyFilter();
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    try {
      const all = [];
      let after = "";
      do {
        const page = await api.listChannels({ after, limit: PAGE, signal: abort.signal });
        all.push(...(page.channels || []));
        after = page.next || "";
      } while (after && all.length < MAX_CHANNELS);
      if (abort.signal.aborted) return;
      this.capped = after !== "";
      this.el.error.textContent = "";
      this.render(all);
    } catch (e) {
      if (abort.signal.aborted) return;
      this.el.error.textContent = `Cannot load the channels: ${e.message}. Retrying…`;
    }
    if (this.running && this.abort === abort) {
      this.timer = setTimeout(() => {
        if (!document.hidden) this.refresh();
      }, REFRESH_MS);
    }
  }

  render(channels) {
    const now = Date.now();
    channels.sort((a, b) => (b.open - a.open) || (Date.parse(b.created_at) - Date.parse(a.created_at)) ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const seen = new Set();
    let ref = this.tbody.firstChild;
    for (const ch of channels) {
      seen.add(ch.id);
      let row = this.rows.get(ch.id);
      if (!row) row = this.newRow(ch.id);
      this.update(row, ch, now);
      // Move rows only when out of place, so a focused link keeps focus.
      if (row.tr === ref) ref = ref.nextSibling;
      else this.tbody.insertBefore(row.tr, ref);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    this.applyFilter();
  }

  newRow(id) {
    const tr = document.createElement("tr");
    const name = cell(tr, "id");
    const link = document.createElement("a");
    link.href = `#/watch/${encodeURIComponent(id)}`;
    link.textContent = id;
    name.appendChild(link);
    const stateCell = cell(tr);
    const state = document.createElement("span");
    stateCell.appendChild(state);
    const row = { tr, id, state, seq: cell(tr, "num"), subs: cell(tr, "num"), age: cell(tr, "num") };
    this.rows.set(id, row);
    return row;
  }

  update(row, ch, now) {
    const open = Boolean(ch.open);
    row.state.className = `pill ${open ? "open" : "closed"}`;
    row.state.textContent = open ? "open" : "closed";
    row.seq.textContent = String(ch.last_seq ?? 0);
    row.subs.textContent = String(ch.subscribers ?? 0);
    const created = Date.parse(ch.created_at);
    row.age.textContent = Number.isFinite(created) ? formatAge(now - created) : "–";
    let title = `created ${ch.created_at}`;
    if (ch.closed_at) title += `\nclosed ${ch.closed_at}`;
    if (ch.generator) title += `\ngenerator: ${ch.generator.max} lines at ${ch.generator.freq}/s`;
    row.age.title = title;
  }

  applyFilter() {
    const f = this.filter.trim().toLowerCase();
    let shown = 0;
    for (const row of this.rows.values()) {
      const hide = f !== "" && !row.id.toLowerCase().includes(f);
      row.tr.hidden = hide;
      if (!hide) shown++;
    }
    const total = this.rows.size;
    let info = f ? `${shown} of ${total}` : `${total}`;
    info += total === 1 ? " channel" : " channels";
    if (this.capped) info += ` (first ${MAX_CHANNELS} by id)`;
    this.el.info.textContent = info;
    this.el.empty.hidden = total !== 0;
    this.el.empty.textContent = "No channels yet. Start a stream above.";
    if (total !== 0 && shown === 0) {
      this.el.empty.hidden = false;
      this.el.empty.textContent = "No channel matches the filter.";
    }
  }
}
