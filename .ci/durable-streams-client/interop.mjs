// Interoperability test: the official Durable Streams TypeScript client
// (pinned in package.json) against a running messages server. It exits
// non-zero, naming the mismatch, on any difference from what was written.
//
//   node interop.mjs http://127.0.0.1:PORT
import { DurableStream, IdempotentProducer, stream } from "@durable-streams/client"

const base = process.argv[2]
if (!base) {
  console.error("usage: node interop.mjs BASE_URL")
  process.exit(2)
}
const run = Date.now().toString(36)
const streamURL = (name) => `${base}/v1/stream/interop-${run}-${name}`

function fail(msg) {
  console.error(`interop: FAIL: ${msg}`)
  process.exit(1)
}

// within fails the test if p does not settle within ms.
function within(ms, what, p) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

// checkItems fails unless items are exactly want, in order.
function checkItems(what, items, want) {
  if (items.length !== want.length) {
    fail(`${what}: ${items.length} items, want ${want.length}`)
  }
  for (let i = 0; i < want.length; i++) {
    const a = JSON.stringify(items[i])
    const b = JSON.stringify(want[i])
    if (a !== b) fail(`${what}: item ${i} is ${a}, want ${b}`)
  }
  console.log(`interop: ok: ${what}: ${items.length} items`)
}

// liveJSON starts a live reader of url in mode ("sse" or "long-poll") and
// returns its items and a promise that resolves when the stream closes.
async function liveJSON(url, mode) {
  const res = await stream({ url, offset: "-1", live: mode })
  const items = []
  res.subscribeJson((batch) => {
    items.push(...batch.items)
  })
  return { items, closed: res.closed }
}

// JSON: an IdempotentProducer writes 5,000 items, then 50,000 small ones in
// a burst (one request of ~600 KB); SSE and long-poll readers started
// before the writes and a catch-up-only read must see all of them.
async function jsonStream() {
  const url = streamURL("json")
  const handle = await DurableStream.create({ url, contentType: "application/json" })
  const sse = await liveJSON(url, "sse")
  const longPoll = await liveJSON(url, "long-poll")

  const want = []
  const errors = []
  const producer = new IdempotentProducer(handle, "interop-producer", {
    onError: (err) => errors.push(err),
  })
  const pad = "p".repeat(100)
  for (let i = 0; i < 5000; i++) {
    const v = { n: i, pad }
    want.push(v)
    producer.append(JSON.stringify(v))
    if (i % 250 === 249) {
      // Let the linger timer send what is pending: many requests.
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  await producer.flush()
  for (let i = 0; i < 50000; i++) {
    const v = { i }
    want.push(v)
    producer.append(JSON.stringify(v))
  }
  await within(120_000, "JSON producer close", producer.close())
  if (errors.length > 0) fail(`JSON producer: ${errors[0]}`)

  const res = await stream({ url, offset: "-1", live: false })
  checkItems("JSON catch-up read (live: false)", await res.json(), want)
  if (!res.upToDate) fail("JSON catch-up read: not up to date")
  if (!res.streamClosed) fail("JSON catch-up read: stream not reported closed")

  await within(60_000, "JSON SSE reader", sse.closed)
  checkItems("JSON SSE reader started before the writes", sse.items, want)
  await within(60_000, "JSON long-poll reader", longPoll.closed)
  checkItems("JSON long-poll reader started before the writes", longPoll.items, want)

  // A producer's append after the close is refused (the producer reports
  // its errors to onError).
  const lateErrors = []
  const late = new IdempotentProducer(handle, "interop-late", { onError: (err) => lateErrors.push(err) })
  late.append(JSON.stringify({ late: true }))
  await late.flush().catch((err) => lateErrors.push(err))
  if (lateErrors.length === 0) fail("JSON append after close: accepted, want it refused")
  const after = await stream({ url, offset: "-1", live: false })
  checkItems("JSON stream after the refused append", await after.json(), want)
  console.log(`interop: ok: JSON append after close refused (${lateErrors[0].name}: ${lateErrors[0].message})`)
}

// Text: appends through the stream handle, SSE and long-poll text readers
// started before them, a catch-up read, the close, and an append after the
// close refused with 409.
async function textStream() {
  const url = streamURL("text")
  const handle = await DurableStream.create({ url, contentType: "text/plain" })
  const readers = {}
  for (const mode of ["sse", "long-poll"]) {
    const res = await stream({ url, offset: "-1", live: mode })
    const parts = []
    res.subscribeText((chunk) => {
      parts.push(chunk.text)
    })
    readers[mode] = { parts, closed: res.closed }
  }
  let want = ""
  for (let i = 0; i < 200; i++) {
    const line = `line ${i}: ünïcödé ✓\n`
    want += line
    await handle.append(line)
  }
  const res = await stream({ url, offset: "-1", live: false })
  const text = await res.text()
  if (text !== want) fail(`text catch-up read: ${text.length} chars, want ${want.length}`)
  console.log(`interop: ok: text catch-up read: ${text.length} chars`)

  await handle.close()
  for (const [mode, r] of Object.entries(readers)) {
    await within(60_000, `text ${mode} reader`, r.closed)
    const got = r.parts.join("")
    if (got !== want) fail(`text ${mode} reader: ${got.length} chars, want ${want.length}`)
    console.log(`interop: ok: text ${mode} reader started before the writes: ${got.length} chars`)
  }

  const refused = await handle.append("too late\n").then(() => null, (err) => err)
  if (!refused) fail("text append after close: accepted, want 409")
  if (refused.status !== 409) fail(`text append after close: ${refused}, want status 409`)
  console.log("interop: ok: text append after close refused with 409")
}

try {
  await jsonStream()
  await textStream()
} catch (err) {
  fail(err?.stack ?? String(err))
}
console.log("interop: all checks passed")
