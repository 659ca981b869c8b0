// The README's example: the official Durable Streams client against the
// messages server's /v1/stream/ route. CI runs it (see run.sh):
//
//   node example.mjs http://127.0.0.1:3000

import { DurableStream, IdempotentProducer, stream } from "@durable-streams/client"

const base = process.argv[2] ?? "http://127.0.0.1:3000"
const url = `${base}/v1/stream/chat-${Date.now()}`

// Create a JSON stream: each appended value is one message.
const chat = await DurableStream.create({ url, contentType: "application/json" })

// A live reader (server-sent events), started before anything is written.
const live = await chat.stream({ offset: "-1", live: "sse" })
const seen = []
live.subscribeJson((batch) => {
  seen.push(...batch.items)
})

// Write exactly once: appends are batched, a resent batch is recognised
// as a duplicate, and a producer with a higher epoch fences the old one.
const producer = new IdempotentProducer(chat, "writer-1")
for (let i = 1; i <= 3; i++) {
  producer.append(JSON.stringify({ user: "ann", text: `message ${i}` }))
}
await producer.close() // flushes, then closes the stream: readers end

// A catch-up read: everything up to the tail, in one response.
const res = await stream({ url, offset: "-1", live: false })
const history = await res.json()
console.log(history.map((m) => `${m.user}: ${m.text}`).join("\n"))

await live.closed // the live reader ends with the stream
console.log(`live reader saw ${seen.length} messages`)
