package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Frame is a decoded server frame. Which fields are set depends on Type:
//
//   - hello: Channel, Epoch, From, LastSeq, PersistedSeq, Open, and
//     ContentType for a channel created with one
//   - message: Seq, Time[0], Data[0]
//   - batch: Seq (of the first message), Time and Data (one entry per message)
//
// Data holds the message bytes: a frame with "encoding":"base64" (a binary
// channel's) is decoded, and Encoding says it was.
//   - live, end: Seq
//   - error: Code, Message, and for reset LastSeq (the last durable seq)
//
// The zero value is an empty frame.
type Frame struct {
	Type         string
	Channel      string
	Epoch        string
	From         int64
	LastSeq      int64
	PersistedSeq int64
	Open         bool
	Seq          int64
	Time         []int64
	Data         []string
	Code         string
	Message      string
	ContentType  string
	Encoding     string
}

// EncodingBase64 is the encoding of the data of a binary channel's message
// and batch frames.
const EncodingBase64 = "base64"

// wireFrame is the JSON shape of a frame; time and data are a single value
// in message frames and arrays in batch frames.
type wireFrame struct {
	Type         string          `json:"type"`
	Channel      string          `json:"channel,omitempty"`
	Epoch        string          `json:"epoch,omitempty"`
	From         *int64          `json:"from,omitempty"`
	LastSeq      *int64          `json:"last_seq,omitempty"`
	PersistedSeq *int64          `json:"persisted_seq,omitempty"`
	Open         *bool           `json:"open,omitempty"`
	Seq          *int64          `json:"seq,omitempty"`
	Time         json.RawMessage `json:"time,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`
	Code         string          `json:"code,omitempty"`
	Message      string          `json:"message,omitempty"`
	ContentType  string          `json:"content_type,omitempty"`
	Encoding     string          `json:"encoding,omitempty"`
}

// DecodeFrame parses one server frame and checks that it is well formed.
func DecodeFrame(b []byte) (Frame, error) {
	if f, ok := decodeCanonical(b); ok {
		return f, nil
	}
	return decodeGeneral(b)
}

// decodeGeneral decodes any valid encoding of a frame with encoding/json.
func decodeGeneral(b []byte) (Frame, error) {
	var w wireFrame
	if err := json.Unmarshal(b, &w); err != nil {
		return Frame{}, fmt.Errorf("wire: decode frame: %w", err)
	}
	f := Frame{Type: w.Type, Channel: w.Channel, Epoch: w.Epoch, Code: w.Code, Message: w.Message,
		ContentType: w.ContentType, Encoding: w.Encoding}
	if w.From != nil {
		f.From = *w.From
	}
	if w.LastSeq != nil {
		f.LastSeq = *w.LastSeq
	}
	if w.PersistedSeq != nil {
		f.PersistedSeq = *w.PersistedSeq
	}
	if w.Open != nil {
		f.Open = *w.Open
	}
	if w.Seq != nil {
		f.Seq = *w.Seq
	}
	switch w.Type {
	case FrameHello, FrameError:
	case FrameLive, FrameEnd:
		if w.Seq == nil || f.Seq < 0 {
			return Frame{}, fmt.Errorf("wire: decode frame: %s frame without a valid seq", w.Type)
		}
	case FrameMessage:
		var t int64
		var d string
		if w.Seq == nil || f.Seq < 1 {
			return Frame{}, fmt.Errorf("wire: decode frame: message frame without a valid seq")
		}
		if err := json.Unmarshal(w.Time, &t); err != nil {
			return Frame{}, fmt.Errorf("wire: decode frame: message time: %w", err)
		}
		if err := json.Unmarshal(w.Data, &d); err != nil {
			return Frame{}, fmt.Errorf("wire: decode frame: message data: %w", err)
		}
		f.Time, f.Data = []int64{t}, []string{d}
	case FrameBatch:
		if w.Seq == nil || f.Seq < 1 {
			return Frame{}, fmt.Errorf("wire: decode frame: batch frame without a valid seq")
		}
		if err := json.Unmarshal(w.Time, &f.Time); err != nil {
			return Frame{}, fmt.Errorf("wire: decode frame: batch time: %w", err)
		}
		if err := json.Unmarshal(w.Data, &f.Data); err != nil {
			return Frame{}, fmt.Errorf("wire: decode frame: batch data: %w", err)
		}
		if len(f.Data) == 0 || len(f.Time) != len(f.Data) {
			return Frame{}, fmt.Errorf("wire: decode frame: batch has %d times and %d data", len(f.Time), len(f.Data))
		}
	default:
		return Frame{}, fmt.Errorf("wire: decode frame: unknown type %q", w.Type)
	}
	return decodeData(f)
}

// decodeData decodes the data of a message or batch frame per its
// encoding.
func decodeData(f Frame) (Frame, error) {
	switch f.Encoding {
	case "":
		return f, nil
	case EncodingBase64:
		if f.Type != FrameMessage && f.Type != FrameBatch {
			return f, nil
		}
		for i, d := range f.Data {
			b, err := base64.StdEncoding.DecodeString(d)
			if err != nil {
				return Frame{}, fmt.Errorf("wire: decode frame: base64 data: %w", err)
			}
			f.Data[i] = string(b)
		}
		return f, nil
	}
	return Frame{}, fmt.Errorf("wire: decode frame: unknown encoding %q", f.Encoding)
}

// decodeCanonical decodes message and batch frames laid out exactly as this
// server writes them, without reflection: they are nearly every frame a
// subscriber reads. Anything else (another field order, whitespace, an
// unusual escape) reports false and takes the general path, which accepts
// every valid encoding.
func decodeCanonical(b []byte) (Frame, bool) {
	const msgPrefix, batchPrefix = `{"type":"message","seq":`, `{"type":"batch","seq":`
	switch {
	case bytes.HasPrefix(b, []byte(msgPrefix)):
		p := cursor{b: b, i: len(msgPrefix), ok: true}
		seq := p.int()
		t := p.lit(`,"time":`).int()
		enc := p.encoding()
		d := p.lit(`,"data":`).str()
		if !p.lit("}").end() || seq < 1 {
			return Frame{}, false
		}
		return canonical(Frame{Type: FrameMessage, Seq: seq, Time: []int64{t}, Data: []string{d}, Encoding: enc})
	case bytes.HasPrefix(b, []byte(batchPrefix)):
		p := cursor{b: b, i: len(batchPrefix), ok: true}
		seq := p.int()
		p.lit(`,"time":[`)
		var times []int64
		for p.ok {
			times = append(times, p.int())
			if p.peek() != ',' {
				break
			}
			p.i++
		}
		p.lit(`]`)
		enc := p.encoding()
		p.lit(`,"data":[`)
		// All the data goes into one string, which the messages share: one
		// allocation per frame rather than one per message. What is left of
		// the frame bounds its size.
		var all strings.Builder
		all.Grow(len(b) - p.i)
		ends := make([]int, 0, len(times))
		for p.ok {
			p.strTo(&all)
			ends = append(ends, all.Len())
			if p.peek() != ',' {
				break
			}
			p.i++
		}
		if !p.lit("]}").end() || seq < 1 || len(times) == 0 || len(times) != len(ends) {
			return Frame{}, false
		}
		data := make([]string, len(ends))
		joined, start := all.String(), 0
		for i, end := range ends {
			data[i], start = joined[start:end], end
		}
		return canonical(Frame{Type: FrameBatch, Seq: seq, Time: times, Data: data, Encoding: enc})
	}
	return Frame{}, false
}

// canonical finishes a canonically decoded frame: its data is decoded per
// its encoding; invalid data takes the general path, which reports it.
func canonical(f Frame) (Frame, bool) {
	f, err := decodeData(f)
	return f, err == nil
}

// encoding reads an optional `,"encoding":"base64"`.
func (c *cursor) encoding() string {
	const lit = `,"encoding":"base64"`
	if c.ok && bytes.HasPrefix(c.b[c.i:], []byte(lit)) {
		c.i += len(lit)
		return EncodingBase64
	}
	return ""
}

// cursor scans a canonical frame; any mismatch clears ok and the rest of
// the scan is a no-op.
type cursor struct {
	b  []byte
	i  int
	ok bool
}

func (c *cursor) peek() byte {
	if !c.ok || c.i >= len(c.b) {
		return 0
	}
	return c.b[c.i]
}

func (c *cursor) lit(s string) *cursor {
	if c.ok && bytes.HasPrefix(c.b[c.i:], []byte(s)) {
		c.i += len(s)
	} else {
		c.ok = false
	}
	return c
}

// int reads a non-negative decimal integer without leading zeros.
func (c *cursor) int() int64 {
	start := c.i
	var n int64
	for c.ok && c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
		if n > (1<<63-1-9)/10 {
			c.ok = false
			return 0
		}
		n = n*10 + int64(c.b[c.i]-'0')
		c.i++
	}
	if c.i == start || (c.i-start > 1 && c.b[start] == '0') {
		c.ok = false
	}
	return n
}

// str reads a JSON string.
func (c *cursor) str() string {
	var b strings.Builder
	b.Grow(len(c.b) - c.i)
	c.strTo(&b)
	return b.String()
}

// strTo reads a JSON string and appends its value to dst. The escapes the
// server writes for control characters, quotes and backslashes are undone
// here; a string with a \u escape is unescaped by encoding/json.
func (c *cursor) strTo(dst *strings.Builder) {
	if c.peek() != '"' {
		c.ok = false
		return
	}
	start := c.i
	escaped := false
	for c.i++; c.i < len(c.b); c.i++ {
		switch ch := c.b[c.i]; {
		case ch == '\\':
			escaped = true
			c.i++
		case ch == '"':
			c.i++
			raw := c.b[start:c.i]
			switch {
			case !utf8.Valid(raw):
				c.ok = false
			case !escaped:
				dst.Write(raw[1 : len(raw)-1])
			default:
				c.ok = unescapeTo(dst, raw)
			}
			return
		case ch < 0x20:
			c.ok = false
			return
		}
	}
	c.ok = false
}

// unescapeTo appends the value of raw, a quoted JSON string of valid UTF-8
// whose every backslash starts an escape, to b.
func unescapeTo(b *strings.Builder, raw []byte) bool {
	in := raw[1 : len(raw)-1]
	if bytes.Contains(in, []byte(`\u`)) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return false
		}
		b.WriteString(s)
		return true
	}
	for {
		i := bytes.IndexByte(in, '\\')
		if i < 0 {
			b.Write(in)
			return true
		}
		b.Write(in[:i])
		switch ch := in[i+1]; ch {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '"', '\\', '/':
			b.WriteByte(ch)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		default:
			return false
		}
		in = in[i+2:]
	}
}

// end reports whether the whole input was read.
func (c *cursor) end() bool { return c.ok && c.i == len(c.b) }
