package wire

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message is a message as the server holds it: immutable once built, shared
// by the channel's buffer, every subscriber queue and the persist batch.
// Its frame is encoded once, by NewMessage, and written as is to every
// subscriber. A Message is safe for concurrent reads.
type Message struct {
	Seq  int64
	Time int64 // Unix microseconds
	Data []byte
	// frame is the encoded message frame; frame[dataAt:len(frame)-1] is the
	// data as a JSON string, reused to build batch frames.
	frame []byte
	// run makes the Message a run (see NewRun); nil: one message. Behind a
	// pointer, so that a message stays in the allocator's 80-byte class.
	run    *run
	dataAt int32
	binary bool // data is carried base64-encoded
}

// run is the rest of a run: message i of it is Data[ends[i-1]-base :
// ends[i]-base], the first from 0 (base is not 0 in a Slice of a run).
type run struct {
	ends []uint32
	base uint32
}

// NewRun builds a run: the n = len(ends) messages seq, seq+1, …, seq+n-1
// of one append, with one time, held as one Message whose Data is their
// bodies end to end (message i ends at ends[i]; ends grow, the last is
// len(data)). A run has no frame of its own: its frames are encoded when
// sent (AppendMessages), so that a large batch of small messages costs
// about its bytes, not a Message and a frame per message. binary is the
// channel's kind. With one end, it is NewMessage or NewBinaryMessage.
func NewRun(seq, t int64, data []byte, ends []uint32, binary bool) *Message {
	if len(ends) == 1 {
		if binary {
			return NewBinaryMessage(seq, t, data)
		}
		return NewMessage(seq, t, data)
	}
	return &Message{Seq: seq, Time: t, Data: data, binary: binary, run: &run{ends: ends}}
}

// Len returns how many messages m holds: the length of a run, else 1.
func (m *Message) Len() int {
	if m.run == nil {
		return 1
	}
	return len(m.run.ends)
}

// Last returns the seq of m's last message.
func (m *Message) Last() int64 { return m.Seq + int64(m.Len()) - 1 }

// At returns the data of message Seq+i of m (0 ≤ i < Len).
func (m *Message) At(i int) []byte {
	if m.run == nil {
		return m.Data
	}
	r := m.run
	from := uint32(0)
	if i > 0 {
		from = r.ends[i-1] - r.base
	}
	return m.Data[from : r.ends[i]-r.base : r.ends[i]-r.base]
}

// Ends returns, for a run, the end offsets in Data of its messages (the
// first starts at 0); nil for one message. The caller must not modify it.
func (m *Message) Ends() []uint32 {
	if m.run == nil {
		return nil
	}
	if m.run.base == 0 {
		return m.run.ends
	}
	out := make([]uint32, len(m.run.ends))
	for i, e := range m.run.ends {
		out[i] = e - m.run.base
	}
	return out
}

// Slice returns the messages i..j-1 of m (0 ≤ i < j ≤ Len) as a Message
// sharing m's memory: a run of them, or one message with its own frame.
func (m *Message) Slice(i, j int) *Message {
	if i == 0 && j == m.Len() {
		return m
	}
	if j-i == 1 {
		if m.binary {
			return NewBinaryMessage(m.Seq+int64(i), m.Time, m.At(i))
		}
		return NewMessage(m.Seq+int64(i), m.Time, m.At(i))
	}
	r := m.run
	from := r.base
	if i > 0 {
		from = r.ends[i-1]
	}
	return &Message{Seq: m.Seq + int64(i), Time: m.Time, Data: m.Data[from-r.base : r.ends[j-1]-r.base],
		binary: m.binary, run: &run{ends: r.ends[i:j], base: from}}
}

// From returns the messages of m from seq on (m.Seq ≤ seq ≤ m.Last()), as
// Slice does.
func (m *Message) From(seq int64) *Message { return m.Slice(int(seq-m.Seq), m.Len()) }

// NewMessage builds a message of a text channel and encodes its frame once.
// The server refuses anything but UTF-8 on a text channel's input; data that
// is not valid UTF-8 all the same (stored before that rule) is encoded as
// NewBinaryMessage encodes it, base64 with "encoding":"base64", since a
// JSON string in a WebSocket text message cannot carry it byte for byte.
func NewMessage(seq, t int64, data []byte) *Message {
	// slices.Grow rounds the capacity up to the allocator's size class,
	// so MemSize is what the frame really occupies.
	b := slices.Grow([]byte(nil), len(data)+len(data)/8+72)
	b = append(b, `{"type":"message","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"data":`...)
	at := len(b)
	b, ok := appendText(b, data)
	if !ok {
		return NewBinaryMessage(seq, t, data)
	}
	b = append(b, '}')
	return &Message{Seq: seq, Time: t, Data: data, frame: b, dataAt: int32(at)}
}

// NewBinaryMessage builds a message of a binary channel: its frame carries
// the data base64-encoded, with "encoding":"base64" before it.
func NewBinaryMessage(seq, t int64, data []byte) *Message {
	n := base64.StdEncoding.EncodedLen(len(data))
	// As in NewMessage, the capacity is the allocator's size class.
	b := slices.Grow([]byte(nil), n+96)
	b = append(b, `{"type":"message","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"encoding":"base64","data":`...)
	at := len(b)
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, data)
	b = append(b, '"', '}')
	return &Message{Seq: seq, Time: t, Data: data, frame: b, dataAt: int32(at), binary: true}
}

// MemSize returns the bytes the message's data and encoded frame occupy
// (their capacities), without the fixed cost of the Message itself. It
// covers a binary message's base64 frame as well.
// A run's offsets count too.
func (m *Message) MemSize() int64 {
	if m.run != nil {
		return int64(cap(m.Data) + 4*cap(m.run.ends) + runSize)
	}
	return int64(cap(m.Data) + cap(m.frame))
}

// runSize is the size of a run's struct.
const runSize = 32

// Encoded returns the message's frame. The caller must not modify it. A
// run's frame (a batch frame) is encoded on each call.
func (m *Message) Encoded() []byte {
	if m.run != nil {
		return appendRuns(nil, []*Message{m})
	}
	return m.frame
}

// quoted returns the message data encoded as a JSON string.
func (m *Message) quoted() []byte { return m.frame[m.dataAt : len(m.frame)-1] }

// AppendMessages appends one frame covering msgs, which are contiguous, not
// empty and of one channel: a message frame for one message, a batch frame
// for more. A batch of binary messages carries "encoding":"base64"; so does
// one where any message is (a text channel's message that is not valid
// UTF-8), with every data base64.
//
// Runs (NewRun) among msgs count as their messages, encoded here.
func AppendMessages(b []byte, msgs []*Message) []byte {
	if slices.ContainsFunc(msgs, func(m *Message) bool { return m.run != nil }) {
		return appendRuns(b, msgs)
	}
	if len(msgs) == 1 {
		return append(b, msgs[0].frame...)
	}
	if slices.ContainsFunc(msgs, func(m *Message) bool { return m.binary != msgs[0].binary }) {
		return appendBase64Batch(b, msgs[0].Seq, len(msgs), func(i int) (int64, []byte) { return msgs[i].Time, msgs[i].Data })
	}
	b = append(b, `{"type":"batch","seq":`...)
	b = strconv.AppendInt(b, msgs[0].Seq, 10)
	b = append(b, `,"time":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, m.Time, 10)
	}
	if msgs[0].binary {
		b = append(b, `],"encoding":"base64","data":[`...)
	} else {
		b = append(b, `],"data":[`...)
	}
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.quoted()...)
	}
	return append(b, "]}"...)
}

// appendRuns is AppendMessages for msgs among which are runs.
func appendRuns(b []byte, msgs []*Message) []byte {
	n := 0
	binary := false
	for _, m := range msgs {
		n += m.Len()
		binary = binary || (m.binary && m.run != nil) // a binary channel's run
	}
	c := runCursor{msgs: msgs}
	if !binary {
		return AppendRun(b, msgs[0].Seq, n, c.at)
	}
	return appendBase64Batch(b, msgs[0].Seq, n, c.at)
}

// runCursor reads the messages of a list of Messages and runs by index, for
// AppendRun: in order, from 0 again whenever asked for an earlier one.
type runCursor struct {
	msgs    []*Message
	e, k, i int // message i is message k of msgs[e]
}

func (c *runCursor) at(i int) (int64, []byte) {
	if i < c.i {
		c.e, c.k, c.i = 0, 0, 0
	}
	for ; c.i < i; c.i++ {
		if c.k++; c.k == c.msgs[c.e].Len() {
			c.e, c.k = c.e+1, 0
		}
	}
	m := c.msgs[c.e]
	return m.Time, m.At(c.k)
}

// AppendRun appends one frame covering the n contiguous messages seq,
// seq+1, ..., seq+n-1 (n ≥ 1): a message frame for one, a batch frame for
// more, byte for byte what AppendMessages writes for the same messages of
// a text channel (binary ones are encoded through NewBinaryMessage).
// at(i) returns the time and data of message seq+i; if any data is not
// valid UTF-8, the frame carries them all base64-encoded, as AppendMessages
// does. It encodes straight from stored rows, without a Message per row.
func AppendRun(b []byte, seq int64, n int, at func(i int) (t int64, data []byte)) []byte {
	begin := len(b)
	if n == 1 {
		t, d := at(0)
		b = append(b, `{"type":"message","seq":`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, t, 10)
		b = append(b, `,"data":`...)
		var ok bool
		if b, ok = appendText(b, d); !ok {
			return append(b[:begin], NewBinaryMessage(seq, t, d).frame...)
		}
		return append(b, '}')
	}
	b = appendBatchHead(b, seq, n, at)
	b = append(b, `],"data":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		_, d := at(i)
		var ok bool
		if b, ok = appendText(b, d); !ok {
			return appendBase64Batch(b[:begin], seq, n, at)
		}
	}
	return append(b, "]}"...)
}

// appendBatchHead appends the start of a batch frame covering the
// messages seq..seq+n-1, up to the end of its times: at(i) returns the
// time of message seq+i.
func appendBatchHead(b []byte, seq int64, n int, at func(i int) (t int64, data []byte)) []byte {
	b = append(b, `{"type":"batch","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"time":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		t, _ := at(i)
		b = strconv.AppendInt(b, t, 10)
	}
	return b
}

// appendBase64Batch appends a batch frame (n ≥ 2) covering the messages
// seq..seq+n-1 with their data base64-encoded; at(i) returns the time and
// data of message seq+i.
func appendBase64Batch(b []byte, seq int64, n int, at func(i int) (t int64, data []byte)) []byte {
	b = appendBatchHead(b, seq, n, at)
	b = append(b, `],"encoding":"base64","data":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		_, d := at(i)
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, d)
		b = append(b, '"')
	}
	return append(b, "]}"...)
}

// AppendSeq appends a frame that carries only a seq: typ is FrameLive or
// FrameEnd.
func AppendSeq(b []byte, typ string, seq int64) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

// AppendHello appends a hello frame from f's Channel, Epoch, From, LastSeq,
// PersistedSeq, Open and ContentType (left out when empty).
func AppendHello(b []byte, f Frame) []byte {
	b = append(b, `{"type":"hello","channel":`...)
	b = AppendJSONString(b, []byte(f.Channel))
	b = append(b, `,"epoch":`...)
	b = AppendJSONString(b, []byte(f.Epoch))
	b = append(b, `,"from":`...)
	b = strconv.AppendInt(b, f.From, 10)
	b = append(b, `,"last_seq":`...)
	b = strconv.AppendInt(b, f.LastSeq, 10)
	b = append(b, `,"persisted_seq":`...)
	b = strconv.AppendInt(b, f.PersistedSeq, 10)
	b = append(b, `,"open":`...)
	b = strconv.AppendBool(b, f.Open)
	if f.ContentType != "" {
		b = append(b, `,"content_type":`...)
		b = AppendJSONString(b, []byte(strings.ToValidUTF8(f.ContentType, "\uFFFD")))
	}
	return append(b, '}')
}

// AppendError appends an error frame from f's Code and Message; a reset
// also carries Epoch and LastSeq (the last durable seq of that epoch).
func AppendError(b []byte, f Frame) []byte {
	b = append(b, `{"type":"error","code":`...)
	b = AppendJSONString(b, []byte(f.Code))
	b = append(b, `,"message":`...)
	b = AppendJSONString(b, []byte(strings.ToValidUTF8(f.Message, "\uFFFD")))
	if f.Code == CodeReset {
		b = append(b, `,"epoch":`...)
		b = AppendJSONString(b, []byte(f.Epoch))
		b = append(b, `,"last_seq":`...)
		b = strconv.AppendInt(b, f.LastSeq, 10)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s, valid UTF-8, as a JSON string, escaping what
// encoding/json escapes except HTML characters. Bytes of s that are not
// UTF-8 become U+FFFD, as with encoding/json: the frame stays valid.
func AppendJSONString(b []byte, s []byte) []byte {
	begin := len(b)
	b, ok := appendText(b, s)
	if !ok {
		b, _ = appendText(b[:begin], bytes.ToValidUTF8(s, []byte("\uFFFD")))
	}
	return b
}

// appendText appends s as a JSON string, as AppendJSONString, and reports
// whether s is valid UTF-8. If it is not, it stops there: what it appended
// is no JSON string, and the caller discards it. ASCII costs nothing more:
// the rest of s is checked at its first byte above 0x7F, at once.
func appendText(b []byte, s []byte) ([]byte, bool) {
	b = append(b, '"')
	start, checked := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				continue
			}
			if !checked {
				if !utf8.Valid(s[i:]) {
					return b, false
				}
				checked = true
			}
			if c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2]&^1 == 0xA8 {
				// U+2028 and U+2029 are escaped, as encoding/json does.
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hexDigits[s[i+2]&0xF])
				i += 2
				start = i + 1
			}
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}
