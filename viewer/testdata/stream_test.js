// Tests of the Subscription's resume logic against a scripted WebSocket,
// and of small UI helpers.
// run() resolves to a list of failures (empty: all passed). It is loaded by
// the Go test TestSubscriptionProtocol in a real browser.

import { Subscription, State, CLOSE_PROTOCOL_ERROR } from "/static/stream.js";
import { formatAge } from "/static/list.js";

class FakeSocket {
  constructor(url) {
    this.url = JSON.parse(url);
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  close(code, reason) {
    this.closedWith = { code, reason };
  }
  send(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  serverClose(code, reason = "") {
    this.onclose?.({ code, reason });
  }
}

// harness builds a subscription that records everything it reports.
function harness() {
  FakeSocket.all = [];
  const h = { text: "", seqs: [], states: [], delays: [], lives: [], ends: [], resets: 0, problems: [], hellos: [] };
  const sub = new Subscription("c1", {
    onState: (s, info) => {
      h.states.push(s);
      if (s === State.WAITING) h.delays.push(info.delay);
    },
    onHello: (f, resumed) => h.hellos.push({ from: f.from, resumed }),
    onMessages: (seq, times, data) => {
      data.forEach((d, i) => {
        h.text += d;
        h.seqs.push(seq + i);
      });
    },
    onLive: (seq, first) => h.lives.push({ seq, first }),
    onEnd: (seq) => h.ends.push(seq),
    onReset: () => {
      h.resets++;
      h.text = "";
      h.seqs = [];
    },
    onProblem: (p) => h.problems.push(p),
  }, {
    WebSocket: FakeSocket,
    url: (id, from, epoch) => JSON.stringify({ id, from, epoch }),
    random: () => 0.5,
    baseDelay: 8,
    maxDelay: 64,
  });
  h.sub = sub;
  h.sock = (i) => FakeSocket.all[i];
  h.socks = () => FakeSocket.all.length;
  return h;
}

async function until(what, cond) {
  const deadline = performance.now() + 2000;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const hello = (from, extra = {}) => ({ type: "hello", channel: "c1", epoch: "1", from, last_seq: 0, persisted_seq: 0, open: true, ...extra });
const msg = (seq) => ({ type: "message", seq, time: 1764300000000000 + seq, data: `${seq}: c1\n` });
const batch = (seq, n) => ({
  type: "batch", seq,
  time: Array.from({ length: n }, (_, i) => 1764300000000000 + seq + i),
  data: Array.from({ length: n }, (_, i) => `${seq + i}: c1\n`),
});
const lines = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => `${a + i}: c1\n`).join("");

function eq(fails, name, got, want) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) fails.push(`${name}: got ${g}, want ${w}`);
}

const cases = {
  async "binary channels: base64 frames shown as bytes"(f) {
    const h = harness();
    h.sub.start();
    const s = h.sock(0);
    s.send(hello(0, { last_seq: 2, content_type: "application/octet-stream" }));
    s.send({ type: "batch", seq: 1, time: [1, 2], encoding: "base64", data: ["AP8=", "aGk="] });
    s.send({ type: "message", seq: 3, time: 3, encoding: "base64", data: "" });
    eq(f, "text", h.text, "[2 bytes] 00 ff\n[2 bytes] 68 69\n[0 bytes] \n");
    eq(f, "seqs", h.seqs, [1, 2, 3]);
    s.send({ type: "message", seq: 4, time: 4, encoding: "base64", data: "!!" });
    eq(f, "bad base64 is a protocol error", s.closedWith && s.closedWith.code, CLOSE_PROTOCOL_ERROR);
    const h2 = harness();
    h2.sub.start();
    h2.sock(0).send(hello(0));
    h2.sock(0).send({ type: "message", seq: 1, time: 1, encoding: "rot13", data: "a" });
    eq(f, "unknown encoding is a protocol error", h2.sock(0).closedWith && h2.sock(0).closedWith.code, CLOSE_PROTOCOL_ERROR);
    h.sub.stop();
    h2.sub.stop();
  },

  async "channel ages"(f) {
    const s = 1000, m = 60 * s, h = 60 * m;
    for (const [ms, want] of [[-5, "0s"], [999, "0s"], [59 * s, "59s"], [61 * s, "1m 1s"],
      [h + 2 * m, "1h 2m"], [26 * h, "1d 2h"]]) {
      eq(f, `formatAge(${ms})`, formatAge(ms), want);
    }
  },

  async "history, live and end"(f) {
    const h = harness();
    h.sub.start();
    const s = h.sock(0);
    eq(f, "first url", s.url, { id: "c1", from: 0, epoch: "" });
    s.send(hello(0, { last_seq: 3 }));
    s.send(batch(1, 2));
    s.send(msg(3));
    s.send({ type: "live", seq: 3 });
    s.send(msg(4));
    s.send({ type: "end", seq: 4 });
    eq(f, "text", h.text, lines(1, 4));
    eq(f, "lives", h.lives, [{ seq: 3, first: true }]);
    eq(f, "ends", h.ends, [4]);
    eq(f, "states", h.states, ["connecting", "catchup", "live", "ended"]);
    eq(f, "closed by client", s.closedWith && s.closedWith.code, 1000);
    s.serverClose(1000);
    await new Promise((r) => setTimeout(r, 30));
    eq(f, "no reconnect after end", h.socks(), 1);
  },

  async "gap is a protocol error and resumes from the last seq"(f) {
    const h = harness();
    h.sub.start();
    h.sock(0).send(hello(0, { epoch: "7" }));
    h.sock(0).send(msg(1));
    h.sock(0).send(msg(3));
    eq(f, "closed with protocol error", h.sock(0).closedWith && h.sock(0).closedWith.code, CLOSE_PROTOCOL_ERROR);
    eq(f, "a problem is reported", h.problems.length, 1);
    h.sock(0).send(msg(2)); // late frame of the dropped socket: ignored
    await until("reconnect", () => h.socks() === 2);
    eq(f, "resume url", h.sock(1).url, { id: "c1", from: 1, epoch: "7" });
    h.sock(1).send(hello(1, { epoch: "7" }));
    h.sock(1).send(batch(2, 3));
    eq(f, "text", h.text, lines(1, 4));
    eq(f, "seqs", h.seqs, [1, 2, 3, 4]);
    eq(f, "hellos", h.hellos, [{ from: 0, resumed: false }, { from: 1, resumed: true }]);
    h.sub.stop();
  },

  async "duplicate is a protocol error"(f) {
    const h = harness();
    h.sub.start();
    h.sock(0).send(hello(0));
    h.sock(0).send(batch(1, 3));
    h.sock(0).send(msg(2));
    await until("reconnect", () => h.socks() === 2);
    eq(f, "resume from", h.sock(1).url.from, 3);
    eq(f, "seqs", h.seqs, [1, 2, 3]);
    h.sub.stop();
  },

  async "wrong live, wrong hello, early end, bad frames"(f) {
    const bad = [
      [hello(0), msg(1), { type: "live", seq: 2 }],
      [hello(5)],
      [msg(1)],
      [hello(0), msg(1), { type: "end", seq: 3 }],
      [hello(0), { type: "batch", seq: 1, time: [1], data: ["a", "b"] }],
      [hello(0), { type: "message", seq: 1, time: 1, data: 5 }],
      [hello(0), { type: "wat" }],
      [hello(0), "not json"],
      [hello(0), hello(0)],
      [hello(0), { type: "live", seq: 0 }, { type: "live", seq: 0 }],
    ];
    for (const [i, frames] of bad.entries()) {
      const h = harness();
      h.sub.start();
      for (const fr of frames) h.sock(0).send(fr);
      eq(f, `case ${i}: closed with protocol error`, h.sock(0).closedWith && h.sock(0).closedWith.code, CLOSE_PROTOCOL_ERROR);
      eq(f, `case ${i}: state`, h.sub.state, State.WAITING);
      h.sub.stop();
    }
  },

  async "drop resumes with from and epoch, no duplicate"(f) {
    const h = harness();
    h.sub.start();
    h.sock(0).send(hello(0, { epoch: "3" }));
    h.sock(0).send(batch(1, 5));
    h.sock(0).send({ type: "live", seq: 5 });
    h.sock(0).send(msg(6));
    h.sock(0).serverClose(1006);
    await until("reconnect", () => h.socks() === 2);
    eq(f, "resume url", h.sock(1).url, { id: "c1", from: 6, epoch: "3" });
    h.sock(1).send(hello(6, { epoch: "3" }));
    h.sock(1).send(batch(7, 2));
    h.sock(1).send({ type: "live", seq: 8 });
    h.sock(1).send(msg(9));
    eq(f, "text", h.text, lines(1, 9));
    eq(f, "lives", h.lives, [{ seq: 5, first: true }, { seq: 8, first: false }]);
    h.sock(1).serverClose(1001);
    await until("second reconnect", () => h.socks() === 3);
    eq(f, "resume after going away", h.sock(2).url.from, 9);
    h.sub.stop();
  },

  async "reset restarts from zero without epoch"(f) {
    const h = harness();
    h.sub.start();
    h.sock(0).send(hello(0, { epoch: "1" }));
    h.sock(0).send(batch(1, 4));
    h.sock(0).serverClose(1006);
    await until("reconnect", () => h.socks() === 2);
    h.sock(1).send({ type: "error", code: "reset", message: "epoch changed", last_seq: 2 });
    h.sock(1).serverClose(4409, "reset");
    await until("restart", () => h.socks() === 3);
    eq(f, "resets", h.resets, 1);
    eq(f, "restart url", h.sock(2).url, { id: "c1", from: 0, epoch: "" });
    h.sock(2).send(hello(0, { epoch: "2" }));
    h.sock(2).send(batch(1, 3));
    eq(f, "text", h.text, lines(1, 3));
    h.sub.stop();
  },

  async "not found gives up"(f) {
    const h = harness();
    h.sub.start();
    h.sock(0).send({ type: "error", code: "not_found", message: "no channel c1" });
    h.sock(0).serverClose(4404);
    await new Promise((r) => setTimeout(r, 30));
    eq(f, "state", h.sub.state, State.FAILED);
    eq(f, "no reconnect", h.socks(), 1);
  },

  async "deleted gives up, with or without the error frame"(f) {
    for (const frame of [true, false]) {
      const h = harness();
      h.sub.start();
      h.sock(0).send(hello(0));
      if (frame) h.sock(0).send({ type: "error", code: "deleted", message: "channel c1 was deleted" });
      h.sock(0).serverClose(4410);
      await new Promise((r) => setTimeout(r, 30));
      eq(f, `state (frame ${frame})`, h.sub.state, State.FAILED);
      eq(f, `no reconnect (frame ${frame})`, h.socks(), 1);
    }
  },

  async "backoff grows, is capped, and resets after progress"(f) {
    const h = harness();
    h.sub.start();
    for (let i = 0; i < 5; i++) {
      await until(`socket ${i}`, () => h.socks() === i + 1);
      h.sock(i).serverClose(1006);
    }
    // random() = 0.5: delay = cap/2 + cap/4 with cap = min(64, 8·2^n).
    eq(f, "delays", h.delays, [6, 12, 24, 48, 48]);
    await until("socket 5", () => h.socks() === 6);
    h.sock(5).send(hello(0));
    h.sock(5).send(msg(1));
    h.sock(5).serverClose(1006);
    eq(f, "delay after progress", h.delays[5], 6);
    h.sub.stop();
  },
};

export async function run() {
  const fails = [];
  for (const [name, fn] of Object.entries(cases)) {
    const before = fails.length;
    try {
      await fn(fails);
    } catch (e) {
      fails.push(`${e}`);
    }
    for (let i = before; i < fails.length; i++) fails[i] = `${name}: ${fails[i]}`;
  }
  return fails;
}
