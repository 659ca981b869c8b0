// The WebSocket subscription to one channel, with exact resume.
//
// A Subscription tracks the last seq it has delivered. Every message and
// batch frame must continue exactly at last+1; anything else is a protocol
// error, which is reported and answered by reconnecting with from=last, so
// the content shown never has a duplicated or a missing message. After a
// drop it reconnects by itself with exponential backoff and jitter, passing
// the epoch of the previous connection so that the server can tell if the
// channel's history changed (the "reset" error): then the subscription
// starts again from 0 and says so.

import { socketURL } from "./api.js";

/** States reported through onState. */
export const State = Object.freeze({
  CONNECTING: "connecting", // socket opening, no hello yet
  CATCHUP: "catchup", // receiving history
  LIVE: "live", // caught up, receiving live messages
  WAITING: "waiting", // disconnected, reconnect scheduled
  ENDED: "ended", // the channel is closed and everything was received
  FAILED: "failed", // gave up: the channel does not exist, bad request, diverged
});

/** CLOSE_PROTOCOL_ERROR is the close code the client uses when it drops a connection that broke the protocol. */
export const CLOSE_PROTOCOL_ERROR = 4000;

const isSeq = (v) => Number.isSafeInteger(v) && v >= 0;

/**
 * Subscription delivers a channel's content in order, exactly once.
 *
 * handlers (all optional):
 *   onState(state, info)        connection state changes; info has details
 *   onHello(frame, resumed)     a connection started (resumed: not the first)
 *   onMessages(seq, times, data, live)  data[i] has seq seq+i
 *   onLive(seq, first)          catch-up done up to seq (first: first time ever)
 *   onEnd(seq)                  the channel is closed; nothing more comes
 *   onReset(frame)              the history changed: clear, content restarts from 0
 *   onProblem(text)             something the person should know about
 *
 * options: WebSocket (constructor), url(id, from, epoch), random(),
 * baseDelay and maxDelay in ms, now() in ms.
 */
export class Subscription {
  constructor(id, handlers = {}, options = {}) {
    this.id = id;
    this.h = handlers;
    this.WS = options.WebSocket || globalThis.WebSocket;
    this.url = options.url || socketURL;
    this.random = options.random || Math.random;
    this.baseDelay = options.baseDelay ?? 250;
    this.maxDelay = options.maxDelay ?? 15000;
    this.now = options.now || (() => performance.now());

    this.last = 0; // last seq delivered
    this.epoch = ""; // epoch from the last hello
    this.everLive = false;
    this.connects = 0; // connections attempted
    this.attempt = 0; // consecutive failed attempts, for the backoff
    this.state = "";
    this.ws = null;
    this.conn = null;
    this.timer = null;
    this.stopped = true;
    this.ended = false;
    this.onOnline = () => {
      if (this.state === State.WAITING) this.reconnectNow();
    };
  }

  /** start opens the first connection. */
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    globalThis.addEventListener?.("online", this.onOnline);
    this.connect();
  }

  /** stop closes the connection and cancels any reconnect. */
  stop() {
    this.stopped = true;
    globalThis.removeEventListener?.("online", this.onOnline);
    clearTimeout(this.timer);
    this.timer = null;
    this.detach(1000, "viewer closed");
  }

  /** reconnectNow skips the remaining backoff delay. */
  reconnectNow() {
    if (this.stopped || this.ended || this.state !== State.WAITING) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  setState(state, info = {}) {
    this.state = state;
    this.h.onState?.(state, info);
  }

  connect() {
    this.timer = null;
    this.connects++;
    const conn = { hello: false, live: false, progress: false, error: null, opened: this.now() };
    this.conn = conn;
    this.setState(State.CONNECTING, { attempt: this.attempt });
    let ws;
    try {
      ws = new this.WS(this.url(this.id, this.last, this.epoch));
    } catch (err) {
      this.retry(conn, `cannot open a WebSocket: ${err.message}`);
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.conn === conn) this.frame(conn, ev.data);
    };
    ws.onclose = (ev) => {
      if (this.conn === conn) this.closed(conn, ev);
    };
    ws.onerror = () => {}; // a close event always follows
  }

  // detach forgets the current socket (its late events are ignored) and
  // closes it.
  detach(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.conn = null;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  // protocolError drops the connection and resumes from the last seq.
  protocolError(conn, msg) {
    this.h.onProblem?.(`Protocol error: ${msg}. Reconnecting from seq ${this.last}.`);
    this.detach(CLOSE_PROTOCOL_ERROR, "protocol error");
    this.retry(conn, `protocol error: ${msg}`);
  }

  // fail gives up for good.
  fail(msg) {
    this.detach(1000, "giving up");
    this.stopped = true;
    this.setState(State.FAILED, { reason: msg });
  }

  frame(conn, raw) {
    let f;
    try {
      if (typeof raw !== "string") throw new Error("binary");
      f = JSON.parse(raw);
      if (f === null || typeof f !== "object") throw new Error("not an object");
    } catch {
      this.protocolError(conn, "a frame is not a JSON object");
      return;
    }
    if (!conn.hello && f.type !== "hello" && f.type !== "error") {
      this.protocolError(conn, `"${f.type}" frame before hello`);
      return;
    }
    switch (f.type) {
      case "hello":
        this.hello(conn, f);
        return;
      case "message":
        if (typeof f.data !== "string" || typeof f.time !== "number") {
          this.protocolError(conn, "malformed message frame");
          return;
        }
        this.deliverEncoded(conn, f.seq, [f.time], [f.data], f.encoding);
        return;
      case "batch":
        if (!Array.isArray(f.data) || !Array.isArray(f.time) || f.data.length === 0 ||
            f.data.length !== f.time.length || !f.data.every((d) => typeof d === "string")) {
          this.protocolError(conn, "malformed batch frame");
          return;
        }
        this.deliverEncoded(conn, f.seq, f.time, f.data, f.encoding);
        return;
      case "live":
        if (conn.live) {
          this.protocolError(conn, "a second live frame");
        } else if (f.seq !== this.last) {
          this.protocolError(conn, `live at seq ${f.seq} but the last seq received is ${this.last}`);
        } else {
          conn.live = true;
          const first = !this.everLive;
          this.everLive = true;
          this.h.onLive?.(f.seq, first);
          this.setState(State.LIVE, { seq: f.seq });
        }
        return;
      case "end":
        this.end(conn, f);
        return;
      case "error":
        this.error(conn, f);
        return;
      default:
        this.protocolError(conn, `unknown frame type "${f.type}"`);
    }
  }

  hello(conn, f) {
    if (conn.hello) {
      this.protocolError(conn, "a second hello");
      return;
    }
    if (f.from !== this.last) {
      this.protocolError(conn, `hello from seq ${f.from}, but seq ${this.last} was asked`);
      return;
    }
    conn.hello = true;
    const resumed = this.connects > 1;
    if (this.epoch && f.epoch !== this.epoch) {
      this.h.onProblem?.(`The channel restarted (epoch ${this.epoch} → ${f.epoch}); everything shown so far is still valid.`);
    }
    this.epoch = typeof f.epoch === "string" ? f.epoch : String(f.epoch ?? "");
    this.h.onHello?.(f, resumed);
    this.setState(State.CATCHUP, { lastSeq: f.last_seq, open: f.open });
  }

  // deliverEncoded delivers the messages of a frame, those of a binary
  // channel ("encoding":"base64") shown as their size and first bytes in hex.
  deliverEncoded(conn, seq, times, data, encoding) {
    if (encoding !== undefined) {
      try {
        data = data.map((d) => binaryText(encoding, d));
      } catch (e) {
        this.protocolError(conn, e.message);
        return;
      }
    }
    this.deliver(conn, seq, times, data);
  }

  deliver(conn, seq, times, data) {
    if (!isSeq(seq) || seq !== this.last + 1) {
      this.protocolError(conn, `expected seq ${this.last + 1}, got ${seq}`);
      return;
    }
    this.last = seq + data.length - 1;
    conn.progress = true;
    this.h.onMessages?.(seq, times, data, conn.live);
  }

  end(conn, f) {
    if (!isSeq(f.seq) || f.seq > this.last) {
      // Messages are missing: the server still has them.
      this.protocolError(conn, `end at seq ${f.seq} but the last seq received is ${this.last}`);
      return;
    }
    if (f.seq < this.last) {
      this.fail(`the channel ended at seq ${f.seq} but seq ${this.last} was already shown`);
      return;
    }
    this.ended = true;
    this.detach(1000, "ended");
    this.stopped = true;
    globalThis.removeEventListener?.("online", this.onOnline);
    this.h.onEnd?.(f.seq);
    this.setState(State.ENDED, { seq: f.seq });
  }

  error(conn, f) {
    conn.error = f;
    if (f.code === "reset") this.reset(conn, f);
    // The server closes the socket next; closed() decides what to do.
  }

  reset(conn, f) {
    this.last = 0;
    this.epoch = "";
    this.everLive = false;
    this.attempt = 0;
    this.h.onReset?.(f);
  }

  closed(conn, ev) {
    this.ws = null;
    this.conn = null;
    if (this.stopped) return;
    const e = conn.error;
    if (ev.code === 4409 || (e && e.code === "reset")) {
      if (!e || e.code !== "reset") this.reset(conn, { code: "reset", message: ev.reason });
      this.connect();
      return;
    }
    // Not found, deleted (4410: the history is gone) or a bad request: a
    // new connection would get the same.
    if ([4400, 4404, 4410].includes(ev.code) || (e && ["not_found", "deleted", "bad_request"].includes(e.code))) {
      this.fail(e ? e.message || e.code : ev.reason || `closed with ${ev.code}`);
      return;
    }
    let reason;
    if (e) reason = `${e.code}${e.message ? ": " + e.message : ""}`;
    else if (ev.code === 1001) reason = "the server is going away";
    else if (ev.code === 1006) reason = "connection lost";
    else reason = `closed with code ${ev.code}${ev.reason ? " (" + ev.reason + ")" : ""}`;
    this.retry(conn, reason);
  }

  // retry schedules the next connection with exponential backoff and
  // jitter. A connection that made progress or stayed up a while resets the
  // backoff.
  retry(conn, reason) {
    if (conn.progress || this.now() - conn.opened > 5000) this.attempt = 0;
    const cap = Math.min(this.maxDelay, this.baseDelay * 2 ** this.attempt);
    const delay = Math.round(cap / 2 + this.random() * (cap / 2));
    this.attempt++;
    this.setState(State.WAITING, { delay, reason, attempt: this.attempt, at: this.now() + delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

// binaryText shows one message of a binary channel, carried base64-encoded,
// as a line: its size and its first 64 bytes in hex.
export function binaryText(encoding, d) {
  if (encoding !== "base64") throw new Error(`unknown data encoding "${encoding}"`);
  let bin;
  try {
    bin = atob(d);
  } catch {
    throw new Error("a binary message is not valid base64");
  }
  const shown = [];
  for (let i = 0; i < Math.min(bin.length, 64); i++) {
    shown.push(bin.charCodeAt(i).toString(16).padStart(2, "0"));
  }
  return `[${bin.length} bytes] ${shown.join(" ")}${bin.length > 64 ? " …" : ""}\n`;
}
