package durable

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
)

// PosNow asks Backend.Read for the tail: no messages, the stream's info.
var PosNow = Pos{Epoch: -1}

// readQuery is a GET's parsed query.
type readQuery struct {
	from   Pos
	now    bool // offset=now
	live   string
	cursor string
}

func parseReadQuery(r *http.Request) (readQuery, error) {
	q := r.URL.Query()
	rq := readQuery{live: q.Get("live"), cursor: q.Get("cursor")}
	offsets, hasOffset := q["offset"]
	switch {
	case len(offsets) > 1:
		return rq, errors.New("give offset once")
	case !hasOffset && rq.live != "":
		return rq, errors.New("live reads need an offset (-1 for the start, now for the tail)")
	case !hasOffset || offsets[0] == "-1":
	case offsets[0] == "now":
		rq.now = true
	default:
		p, err := ParseOffset(offsets[0])
		if err != nil {
			return rq, err
		}
		rq.from = p
	}
	switch rq.live {
	case "", "long-poll", "sse":
	default:
		return rq, errors.New("live must be long-poll or sse")
	}
	return rq, nil
}

func (h *Handler) read(w http.ResponseWriter, r *http.Request, name string) {
	rq, err := parseReadQuery(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if rq.live == "sse" {
		h.sse(w, r, name, rq)
		return
	}
	from := rq.from
	var rng Range
	var info Info
	if rq.live == "" && !rq.now {
		// Catch-up: everything up to the tail as of now, up to the cap,
		// streamed a page at a time.
		rng, info, err = h.cfg.Backend.Catchup(r.Context(), name, from, h.cfg.MaxCatchupBytes)
	} else {
		from, rng, info, err = h.readHeld(r.Context(), name, rq)
		if err == nil && rq.live == "long-poll" {
			// A long-poll whose context ended while it waited serves
			// nothing, not even what came meanwhile: the client went
			// away, or the server ended the request (its token expired).
			err = r.Context().Err()
		}
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	next := rng.End
	upToDate := next.Seq >= info.Tail.Seq
	hd := w.Header()
	hd.Set("Content-Type", info.ContentType)
	hd.Set(hNextOffset, next.String())
	if upToDate {
		hd.Set(hUpToDate, "true")
		if info.Closed {
			hd.Set(hClosed, "true")
		}
	}
	if rq.live == "long-poll" {
		hd.Set(hCursor, nextCursor(h.now(), rq.cursor))
		if next.Seq == from.Seq {
			hd.Del("Content-Type")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if rq.now || upToDate {
		hd.Set("Cache-Control", "no-store")
	} else {
		// A page that does not reach the tail never changes. Private: a
		// stream may need a token to read, so no shared cache may keep it.
		hd.Set("Cache-Control", "private, max-age=60, stale-while-revalidate=300")
	}
	if !rq.now {
		startOffset := "-1"
		if from.Seq > 0 {
			startOffset = from.String()
		}
		etag := `"` + strings.NewReplacer(`"`, "", `\`, "").Replace(name) + ":" + startOffset + ":" + next.String()
		if upToDate && info.Closed {
			etag += ":c"
		}
		etag += `"`
		hd.Set("ETag", etag)
		if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
	h.writeRange(w, r, info.ContentType, rng)
}

// readHeld serves a long-poll read or a read at offset=now: at most
// MaxReadBytes, held in memory; a long-poll waits for data if there is
// none yet. It returns where the read starts (the tail at the time of the
// request for offset=now) and the range.
func (h *Handler) readHeld(ctx context.Context, name string, rq readQuery) (Pos, Range, Info, error) {
	from := rq.from
	if rq.now {
		from = PosNow
	}
	msgs, info, err := h.cfg.Backend.Read(ctx, name, from, h.cfg.MaxReadBytes)
	if err != nil {
		return from, Range{}, info, err
	}
	if rq.now {
		from = info.Tail
	}
	if rq.live == "long-poll" && len(msgs) == 0 && !info.Closed {
		if msgs, info, err = h.longPoll(ctx, name, from); err != nil {
			return from, Range{}, info, err
		}
	}
	return from, HeldRange(Pos{Epoch: info.Tail.Epoch, Seq: from.Seq}, msgs), info, nil
}

// HeldRange is the range of msgs, which follow from and are held in
// memory.
func HeldRange(from Pos, msgs [][]byte) Range {
	return Range{
		End: Pos{Epoch: from.Epoch, Seq: from.Seq + int64(len(msgs))},
		Each: func(_ context.Context, fn func([]byte) error) error {
			for _, m := range msgs {
				if err := fn(m); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// writeRange writes the body of a read: the messages of rng one after the
// other, or in JSON mode one JSON array, through a small buffer. The
// status and headers are already sent, so a range that cannot be read
// whole aborts the response: the client sees a broken response, never a
// short one that looks complete.
func (h *Handler) writeRange(w http.ResponseWriter, r *http.Request, ct string, rng Range) {
	bw := bufio.NewWriterSize(w, 32<<10)
	array := IsJSON(ct)
	if array {
		_ = bw.WriteByte('[')
	}
	first := true
	var werr error // the client's connection failed
	err := rng.Each(r.Context(), func(m []byte) error {
		if array && !first {
			_ = bw.WriteByte(',')
		}
		first = false
		_, werr = bw.Write(m)
		return werr
	})
	if err == nil && array {
		err = bw.WriteByte(']')
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if werr == nil && r.Context().Err() == nil {
			h.cfg.Logger.Warn("durable streams read cut short", slog.String("channel", r.URL.Path), slog.Any("err", err))
		}
		panic(http.ErrAbortHandler)
	}
}

// longPoll waits up to the long-poll timeout for messages after from. It
// returns nil messages when none came.
func (h *Handler) longPoll(ctx context.Context, name string, from Pos) ([][]byte, Info, error) {
	wctx, cancel := context.WithTimeout(ctx, h.cfg.LongPollTimeout)
	defer cancel()
	err := h.cfg.Backend.Wait(wctx, name, from)
	if err != nil && ctx.Err() != nil {
		return nil, Info{}, ctx.Err()
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, Info{}, err
	}
	return h.cfg.Backend.Read(ctx, name, from, h.cfg.MaxReadBytes)
}

// body is the response body of messages in a stream of type ct: a JSON
// array in JSON mode, the bytes one after the other otherwise.
func body(ct string, msgs [][]byte) []byte {
	if !IsJSON(ct) {
		return bytes.Join(msgs, nil)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(m)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// control is the payload of an SSE control event.
type control struct {
	StreamNextOffset string `json:"streamNextOffset"`
	StreamCursor     string `json:"streamCursor,omitempty"`
	UpToDate         bool   `json:"upToDate,omitempty"`
	StreamClosed     bool   `json:"streamClosed,omitempty"`
}

func (h *Handler) sse(w http.ResponseWriter, r *http.Request, name string, rq readQuery) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.SSELifetime)
	defer cancel()
	from := rq.from
	if rq.now {
		from = PosNow
	}
	msgs, info, err := h.cfg.Backend.Read(ctx, name, from, h.cfg.MaxReadBytes)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if rq.now {
		from = info.Tail
	}
	binary := !IsText(info.ContentType)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	if binary {
		hd.Set(hSSEEncoding, "base64")
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf bytes.Buffer
	first := true
	for {
		next := Pos{Epoch: info.Tail.Epoch, Seq: from.Seq + int64(len(msgs))}
		upToDate := next.Seq >= info.Tail.Seq
		if len(msgs) > 0 || first || (upToDate && info.Closed) {
			buf.Reset()
			if len(msgs) > 0 {
				writeData(&buf, info.ContentType, binary, msgs)
			}
			c := control{StreamNextOffset: next.String(), UpToDate: upToDate}
			if upToDate && info.Closed {
				c.StreamClosed = true
			} else {
				c.StreamCursor = nextCursor(h.now(), rq.cursor)
				rq.cursor = c.StreamCursor
			}
			cj, _ := json.Marshal(c)
			buf.WriteString("event: control\ndata:")
			buf.Write(cj)
			buf.WriteString("\n\n")
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			first = false
		}
		if upToDate && info.Closed {
			return
		}
		from = next
		if upToDate {
			if err := h.cfg.Backend.Wait(ctx, name, from); err != nil {
				return // lifetime over, client gone, or stream deleted
			}
		}
		if msgs, info, err = h.cfg.Backend.Read(ctx, name, from, h.cfg.MaxReadBytes); err != nil {
			return
		}
	}
}

// writeData writes one SSE data event carrying msgs. Text is split into
// lines, each its own data: line, so that no payload can end the event or
// start another; binary data is one base64 line.
func writeData(buf *bytes.Buffer, ct string, binary bool, msgs [][]byte) {
	buf.WriteString("event: data\n")
	if binary {
		buf.WriteString("data:")
		buf.WriteString(base64.StdEncoding.EncodeToString(bytes.Join(msgs, nil)))
		buf.WriteString("\n\n")
		return
	}
	text := body(ct, msgs)
	for {
		i := bytes.IndexAny(text, "\r\n")
		if i < 0 {
			break
		}
		buf.WriteString("data:")
		buf.Write(text[:i])
		buf.WriteByte('\n')
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
	buf.WriteString("data:")
	buf.Write(text)
	buf.WriteString("\n\n")
}
