// The watch view: one channel's content as it arrives, a status line, and
// the producer controls (publish, close, delete).

import * as api from "./api.js";
import { State, Subscription } from "./stream.js";
import { Bars, Sparkline } from "./plot.js";
import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);

const TEXT_NODE_MAX = 16384; // start a new text node past this many chars
const WINDOW_MS = 2000; // rate and latency window
const STICK_PX = 32; // "at the bottom" tolerance for auto-scroll
const MAX_LINES = 5000; // lines kept in the page; earlier ones on demand
const EARLIER_PAGE = 1000; // messages "show earlier" reads
const PLOT_SPAN_MS = 60 * 1000; // what the sparklines show

const STATE_LABEL = {
  [State.CONNECTING]: "connecting",
  [State.CATCHUP]: "catching up",
  [State.LIVE]: "live",
  [State.WAITING]: "reconnecting",
  [State.ENDED]: "ended",
  [State.FAILED]: "error",
};

/** Watcher shows one channel; start it once, stop it when leaving. */
export class Watcher {
  constructor(id, from = 0) {
    this.id = id;
    this.from = from; // the stream starts after this seq
    this.firstSeq = from + 1; // the first message in the page
    this.lines = 0; // lines in the page
    this.meta = new WeakMap(); // text node → {msgs, lines}
    this.perSecond = []; // [second, messages, latencies[]]
    this.out = $("output");
    this.status = $("status");
    this.pending = []; // strings and marker elements not yet in the DOM
    this.flushQueued = false;
    this.samples = []; // [ms, count, latencyMs|null]
    this.latency = null;
    this.stateInfo = {};
    this.ctrl = new AbortController();
    this.sub = new Subscription(id, {
      onState: (s, info) => this.onState(s, info),
      onHello: (f, resumed) => this.onHello(f, resumed),
      onMessages: (seq, times, data, live) => this.onMessages(seq, times, data, live),
      onLive: (seq, first) => this.onLive(seq, first),
      onEnd: (seq) => this.onEnd(seq),
      onReset: (f) => this.onReset(f),
      onProblem: (text) => this.notice(text),
    });
    this.sub.last = from;
  }

  start() {
    const sig = { signal: this.ctrl.signal };
    $("watch-title").textContent = this.id;
    this.out.textContent = "";
    delete this.out.dataset.lastSeq;
    this.notice("");
    $("jump").hidden = true;
    $("publish-form").hidden = false;
    $("close-btn").hidden = false;
    $("close-btn").disabled = false;
    $("close-btn").textContent = "Close channel";
    $("delete-btn").disabled = false;
    $("delete-btn").textContent = "Delete channel";
    this.setPublishError("");
    $("publish-result").textContent = "";
    this.out.addEventListener("scroll", () => this.onScroll(), sig);
    $("jump").addEventListener("click", () => this.scrollToEnd(), sig);
    $("retry").addEventListener("click", () => this.sub.reconnectNow(), sig);
    $("publish-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.publish();
    }, sig);
    $("publish-text").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        this.publish();
      }
    }, sig);
    $("close-btn").addEventListener("click", () => this.closeClicked(), sig);
    $("delete-btn").addEventListener("click", () => this.deleteClicked(), sig);
    $("text-link").href = api.textURL(this.id);
    $("show-earlier").addEventListener("click", () => this.showEarlier(), sig);
    this.rate = new Sparkline(document.querySelector('[data-plot="rate"]'), { minMax: 1 });
    this.lat = new Sparkline(document.querySelector('[data-plot="latency"]'), { minMax: 1 });
    this.timeline = new Timeline(this.id, new Bars(document.querySelector('[data-plot="timeline"]'), (f) => this.pick(f)),
      $("tl-info"), this.ctrl.signal);
    this.ticker = setInterval(() => this.renderStatus(), 250);
    this.plotTicker = setInterval(() => this.drawPlots(), 1000);
    this.timelineTicker = setInterval(() => {
      if (this.sub.state === State.LIVE) this.timeline.load();
    }, 10000);
    if (this.from > 0) this.mark("from", `from seq ${this.from + 1} · earlier messages above on demand`);
    this.updateEarlier();
    this.sub.start();
    this.probe();
    this.renderStatus();
    $("watch-title").focus();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.flushTimer);
    this.sub.stop();
    this.ctrl.abort();
    clearInterval(this.ticker);
    clearInterval(this.plotTicker);
    clearInterval(this.timelineTicker);
    clearTimeout(this.closeArm);
    clearTimeout(this.deleteArm);
    clearTimeout(this.noticeTimer);
  }

  // --- stream events ---

  // probe asks for the channel over HTTP: a browser does not tell why a
  // WebSocket was refused, but a 401 here brings up the token prompt (see
  // api.onUnauthorized), and a 403 is said at once.
  probe() {
    if (this.probing || this.stopped) return;
    this.probing = true;
    api.getChannel(this.id, { signal: this.ctrl.signal })
      .catch((e) => {
        if (e.status === 403) this.notice(`Cannot watch this channel: ${e.message}.`, { bad: true });
      })
      .finally(() => {
        this.probing = false;
      });
  }

  onState(s, info) {
    this.stateInfo = info;
    if (s === State.WAITING) this.probe();
    this.flush(); // the status line never runs ahead of the content shown
    if (s === State.FAILED) this.notice(`Cannot watch this channel: ${info.reason}.`, { bad: true });
    if (s === State.ENDED || s === State.FAILED) this.producerDone();
    this.renderStatus();
  }

  onHello(f, resumed) {
    if (resumed) {
      this.mark("resume", `reconnected, resuming after seq ${f.from}`);
      this.notice(`Reconnected; resuming after seq ${f.from}.`, { transient: true });
    }
    if (!f.open) this.producerDone();
  }

  onMessages(seq, times, data, live) {
    for (const d of data) this.pending.push(d);
    const now = Date.now();
    let lat = null;
    if (live) {
      // time is the server's append time in µs.
      lat = Math.max(0, now - times[times.length - 1] / 1000);
      this.latency = lat;
    }
    this.samples.push([now, data.length, lat]);
    const sec = Math.floor(now / 1000);
    let b = this.perSecond[this.perSecond.length - 1];
    if (!b || b[0] !== sec) {
      b = [sec, 0, []];
      this.perSecond.push(b);
      while (this.perSecond.length > PLOT_SPAN_MS / 1000 + 2) this.perSecond.shift();
    }
    b[1] += data.length;
    if (lat !== null) b[2].push(lat);
    this.queueFlush();
  }

  onLive(seq, first) {
    // The timeline's reads wait until the stream has caught up, so that
    // they do not slow down what the person came for.
    if (first) this.timeline.load();
    if (first) {
      this.mark("live", seq === 0 ? "live (no history yet)" : `history up to seq ${seq} · live from here`);
    }
  }

  onEnd(seq) {
    if (!this.timeline.points.length) this.timeline.load();
    this.mark("end", `channel closed at seq ${seq}`);
    this.notice("");
  }

  onReset(f) {
    this.pending = [];
    this.out.textContent = "";
    this.lines = 0;
    this.firstSeq = 1;
    this.updateEarlier();
    this.latency = null;
    this.mark("reset", "history changed on the server · restarted from the beginning");
    this.notice(`The channel's history changed on the server (${f.message || "epoch changed"}); showing it again from the beginning.`);
  }

  // --- rendering ---

  mark(kind, label) {
    const m = document.createElement("span");
    m.className = `marker ${kind}`;
    m.dataset.kind = kind;
    m.dataset.seq = String(this.sub.last);
    m.dataset.label = label;
    m.setAttribute("role", "separator");
    m.setAttribute("aria-label", label);
    this.pending.push(m);
    this.queueFlush();
  }

  queueFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // rAF batches DOM work per frame; the timer covers hidden tabs.
    const run = () => this.flush();
    requestAnimationFrame(run);
    this.flushTimer = setTimeout(run, 100);
  }

  flush() {
    if (!this.flushQueued || this.stopped) return;
    this.flushQueued = false;
    clearTimeout(this.flushTimer);
    const items = this.pending;
    this.pending = [];
    if (items.length === 0) return;
    const out = this.out;
    // Measured before appending: follow only if the person is at the end.
    const stick = this.atEnd();
    let text = "";
    let msgs = 0;
    const putText = () => {
      if (text === "") return;
      let node = out.lastChild;
      if (node && node.nodeType === Node.TEXT_NODE && node.length + text.length <= TEXT_NODE_MAX && this.meta.has(node)) {
        node.appendData(text);
      } else {
        node = out.appendChild(document.createTextNode(text));
        this.meta.set(node, { msgs: 0, lines: 0 });
      }
      const m = this.meta.get(node);
      const lines = countLines(text);
      m.msgs += msgs;
      m.lines += lines;
      this.lines += lines;
      text = "";
      msgs = 0;
    };
    for (const it of items) {
      if (typeof it === "string") {
        text += it;
        msgs++;
        if (text.length >= TEXT_NODE_MAX) putText();
      } else {
        putText();
        out.appendChild(it);
      }
    }
    putText();
    this.trim();
    if (stick) this.scrollToEnd();
    else $("jump").hidden = false;
    out.dataset.lastSeq = String(this.sub.last);
    this.renderStatus();
  }

  // trim keeps about MAX_LINES lines in the page, dropping the oldest
  // text nodes; "show earlier" reads them again from the history.
  trim() {
    const out = this.out;
    while (this.lines > MAX_LINES && out.firstChild && out.firstChild !== out.lastChild) {
      const n = out.firstChild;
      const m = this.meta.get(n);
      if (m) {
        this.lines -= m.lines;
        this.firstSeq += m.msgs;
      }
      n.remove();
    }
    this.updateEarlier();
  }

  updateEarlier() {
    const b = $("show-earlier");
    b.hidden = this.firstSeq <= 1;
    b.textContent = `Show earlier (before seq ${this.firstSeq})`;
    this.out.dataset.firstSeq = String(this.firstSeq);
  }

  // showEarlier reads the page of history before the first message shown
  // and puts it at the top.
  async showEarlier() {
    const b = $("show-earlier");
    if (b.disabled || this.firstSeq <= 1) return;
    b.disabled = true;
    try {
      const end = this.firstSeq - 1;
      const start = Math.max(0, end - EARLIER_PAGE);
      const page = await api.historyPage(this.id, start, end - start, { signal: this.ctrl.signal });
      const msgs = (page.messages || []).filter((m) => m.seq > start && m.seq <= end);
      if (msgs.length === 0 || msgs[0].seq !== start + 1) throw new Error("the history page is not where it was asked");
      const text = msgs.map((m) => (page.encoding === "base64" ? atob(m.data) : m.data)).join("");
      const height = this.out.scrollHeight;
      const node = document.createTextNode(text);
      this.meta.set(node, { msgs: msgs.length, lines: countLines(text) });
      this.out.insertBefore(node, this.out.firstChild);
      this.firstSeq = start + 1;
      this.out.scrollTop += this.out.scrollHeight - height; // keep the view where it was
      this.updateEarlier();
    } catch (e) {
      if (e.name !== "AbortError") this.notice(`Cannot read earlier messages: ${e.message}`, { bad: true });
    } finally {
      b.disabled = false;
    }
  }

  // pick opens the stream from the point of the timeline clicked.
  pick(f) {
    const seq = this.timeline.seqAt(f);
    if (seq === null) return;
    location.hash = `#/watch/${encodeURIComponent(this.id)}?from=${Math.max(0, seq - 1)}`;
  }

  drawPlots() {
    const now = Date.now();
    const first = this.perSecond.length ? this.perSecond[0][0] * 1000 : now;
    const x0 = Math.max(now - PLOT_SPAN_MS, Math.min(first, now - 10000)); // fills up, then scrolls
    const rate = [];
    const lat = [];
    for (const [sec, n, lats] of this.perSecond) {
      rate.push([sec * 1000, n]);
      if (lats.length) {
        lats.sort((a, b) => a - b);
        lat.push([sec * 1000, lats[lats.length >> 1]]);
      }
    }
    this.rate.draw(rate, x0, now);
    this.lat.draw(lat, x0, now);
  }

  atEnd() {
    const o = this.out;
    return o.scrollHeight - o.scrollTop - o.clientHeight <= STICK_PX;
  }

  onScroll() {
    if (this.atEnd()) $("jump").hidden = true;
  }

  scrollToEnd() {
    this.out.scrollTop = this.out.scrollHeight;
    $("jump").hidden = true;
  }

  renderStatus() {
    const now = Date.now();
    while (this.samples.length && now - this.samples[0][0] > WINDOW_MS) this.samples.shift();
    let count = 0;
    const lats = [];
    for (const [, n, lat] of this.samples) {
      count += n;
      if (lat !== null) lats.push(lat);
    }
    const s = this.sub.state;
    this.status.dataset.state = s;
    this.status.dataset.connects = String(this.sub.connects);
    $("st-state").textContent = STATE_LABEL[s] || s;
    $("st-seq").textContent = String(this.sub.last);
    $("st-rate").textContent = (count / (WINDOW_MS / 1000)).toFixed(count ? 1 : 0);
    lats.sort((a, b) => a - b);
    const lat = lats.length ? lats[lats.length >> 1] : this.latency;
    $("st-lat").textContent = lat === null ? "–" : `${lat < 10 ? lat.toFixed(1) : Math.round(lat)} ms`;
    $("st-lat-wrap").classList.toggle("stale", lats.length === 0);
    let detail = "";
    const info = this.stateInfo;
    if (s === State.CATCHUP && info.lastSeq > 0) detail = `${this.sub.last} of ${info.lastSeq}`;
    if (s === State.WAITING) {
      const left = Math.max(0, (info.at - performance.now()) / 1000);
      detail = `in ${left.toFixed(1)} s · ${info.reason}`;
    }
    if (s === State.ENDED) detail = `closed at seq ${info.seq}`;
    $("st-detail").textContent = detail;
    $("retry").hidden = s !== State.WAITING;
  }

  // notice tells the person about an event; transient ones fade after a
  // while, the others stay until replaced.
  notice(text, { transient = false, bad = false } = {}) {
    clearTimeout(this.noticeTimer);
    $("notice").textContent = text;
    $("notice").classList.toggle("bad", bad);
    if (transient) this.noticeTimer = setTimeout(() => ($("notice").textContent = ""), 8000);
  }

  // --- producer controls ---

  producerDone() {
    $("publish-form").hidden = true;
    $("close-btn").hidden = true;
  }

  setPublishError(text) {
    $("publish-error").textContent = text;
  }

  async publish() {
    const ta = $("publish-text");
    const button = $("publish-send");
    let data = ta.value;
    if ($("publish-nl").checked) data += "\n";
    this.setPublishError("");
    if (data === "") {
      this.setPublishError("Type a message first.");
      return;
    }
    button.disabled = true;
    try {
      const r = await api.publish(this.id, data);
      ta.value = "";
      $("publish-result").textContent = `Sent as seq ${r.seq}.`;
    } catch (e) {
      this.setPublishError(`Not sent: ${e.message}`);
    } finally {
      button.disabled = false;
      ta.focus();
    }
  }

  async closeClicked() {
    const b = $("close-btn");
    if (b.dataset.armed !== "1") {
      // A second click confirms; no modal dialog.
      b.dataset.armed = "1";
      b.textContent = "Click again to close";
      this.closeArm = setTimeout(() => {
        b.dataset.armed = "";
        b.textContent = "Close channel";
      }, 4000);
      return;
    }
    clearTimeout(this.closeArm);
    b.dataset.armed = "";
    b.disabled = true;
    try {
      const r = await api.closeChannel(this.id);
      b.textContent = `Closed at seq ${r.last_seq}`;
    } catch (e) {
      this.setPublishError(`Cannot close: ${e.message}`);
      b.disabled = false;
      b.textContent = "Close channel";
    }
  }

  // deleteClicked deletes the channel on a second click. Its stream then
  // ends with "deleted"; errors (a token without admin: 403) are told in
  // the notice line, which stays visible on a closed channel.
  async deleteClicked() {
    const b = $("delete-btn");
    if (b.dataset.armed !== "1") {
      b.dataset.armed = "1";
      b.textContent = "Click again to delete";
      this.deleteArm = setTimeout(() => {
        b.dataset.armed = "";
        b.textContent = "Delete channel";
      }, 4000);
      return;
    }
    clearTimeout(this.deleteArm);
    b.dataset.armed = "";
    b.disabled = true;
    try {
      await api.deleteChannel(this.id);
      b.textContent = "Deleted";
      this.notice("Channel deleted, with its history.");
    } catch (e) {
      this.notice(`Cannot delete: ${e.message}`, { bad: true });
      b.disabled = false;
      b.textContent = "Delete channel";
    }
  }
}

function countLines(text) {
  let n = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n++;
  return n;
}
