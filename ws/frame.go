package ws

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Frame types sent by the server, one JSON object per WebSocket text message.
const (
	FrameHello   = "hello"
	FrameMessage = "message"
	FrameBatch   = "batch"
	FrameLive    = "live"
	FrameEnd     = "end"
	FrameError   = "error"
)

// Error codes carried by error frames, each followed by a close with the
// matching WebSocket status code.
const (
	CodeBadRequest  = "bad_request" // close 4400
	CodeNotFound    = "not_found"   // close 4404
	CodeReset       = "reset"       // close 4409
	CodeInternal    = "internal"    // close 4500
	CodeUnavailable = "unavailable" // close 4503: store unreachable or overloaded
)

// Frame is a decoded server frame. Which fields are set depends on Type:
//
//   - hello: Channel, Epoch, From, LastSeq, PersistedSeq, Open
//   - message: Seq, Time[0], Data[0]
//   - batch: Seq (of the first message), Time and Data (one entry per message)
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
}

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
}

// DecodeFrame parses one server frame and checks that it is well formed.
func DecodeFrame(b []byte) (Frame, error) {
	var w wireFrame
	if err := json.Unmarshal(b, &w); err != nil {
		return Frame{}, fmt.Errorf("ws: decode frame: %w", err)
	}
	f := Frame{Type: w.Type, Channel: w.Channel, Epoch: w.Epoch, Code: w.Code, Message: w.Message}
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
			return Frame{}, fmt.Errorf("ws: decode frame: %s frame without a valid seq", w.Type)
		}
	case FrameMessage:
		var t int64
		var d string
		if w.Seq == nil || f.Seq < 1 {
			return Frame{}, fmt.Errorf("ws: decode frame: message frame without a valid seq")
		}
		if err := json.Unmarshal(w.Time, &t); err != nil {
			return Frame{}, fmt.Errorf("ws: decode frame: message time: %w", err)
		}
		if err := json.Unmarshal(w.Data, &d); err != nil {
			return Frame{}, fmt.Errorf("ws: decode frame: message data: %w", err)
		}
		f.Time, f.Data = []int64{t}, []string{d}
	case FrameBatch:
		if w.Seq == nil || f.Seq < 1 {
			return Frame{}, fmt.Errorf("ws: decode frame: batch frame without a valid seq")
		}
		if err := json.Unmarshal(w.Time, &f.Time); err != nil {
			return Frame{}, fmt.Errorf("ws: decode frame: batch time: %w", err)
		}
		if err := json.Unmarshal(w.Data, &f.Data); err != nil {
			return Frame{}, fmt.Errorf("ws: decode frame: batch data: %w", err)
		}
		if len(f.Data) == 0 || len(f.Time) != len(f.Data) {
			return Frame{}, fmt.Errorf("ws: decode frame: batch has %d times and %d data", len(f.Time), len(f.Data))
		}
	default:
		return Frame{}, fmt.Errorf("ws: decode frame: unknown type %q", w.Type)
	}
	return f, nil
}

// message is a message as the hub holds it: immutable once built, shared by
// the buffer, every subscriber queue and the persist batch.
type message struct {
	seq  int64
	time int64 // Unix microseconds
	data []byte
	// frame is the encoded message frame; frame[dataAt:len(frame)-1] is the
	// data as a JSON string, reused to build batch frames.
	frame  []byte
	dataAt int
}

// newMessage builds a message and encodes its frame once.
func newMessage(seq, t int64, data []byte) *message {
	b := make([]byte, 0, len(data)+len(data)/8+72)
	b = append(b, `{"type":"message","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"data":`...)
	at := len(b)
	b = appendJSONString(b, data)
	b = append(b, '}')
	return &message{seq: seq, time: t, data: data, frame: b, dataAt: at}
}

// quoted returns the message data encoded as a JSON string.
func (m *message) quoted() []byte { return m.frame[m.dataAt : len(m.frame)-1] }

// appendBatchFrame appends one frame covering msgs, which are contiguous:
// a message frame for one message, a batch frame for more.
func appendBatchFrame(b []byte, msgs []*message) []byte {
	if len(msgs) == 1 {
		return append(b, msgs[0].frame...)
	}
	b = append(b, `{"type":"batch","seq":`...)
	b = strconv.AppendInt(b, msgs[0].seq, 10)
	b = append(b, `,"time":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, m.time, 10)
	}
	b = append(b, `],"data":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.quoted()...)
	}
	return append(b, "]}"...)
}

// appendSeqFrame appends a live or end frame.
func appendSeqFrame(b []byte, typ string, seq int64) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 never reaches
// here: the server refuses it on input.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
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
	return append(b, '"')
}
