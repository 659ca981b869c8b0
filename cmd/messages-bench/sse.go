package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// sseControl is the payload of a Durable Streams SSE control event.
type sseControl struct {
	StreamNextOffset string `json:"streamNextOffset"`
	StreamClosed     bool   `json:"streamClosed"`
}

// readSSE reads channel id through Durable Streams server-sent events
// (GET /v1/stream/{id}?live=sse) from the start until the stream is closed,
// reconnecting from the last offset when the server ends a response early;
// every line counts as a delivery. It returns the stream's bytes.
func readSSE(ctx context.Context, b *bench, base, id string) ([]byte, error) {
	var body []byte
	offset := "-1"
	for range 1000 {
		closed, err := readSSEOnce(ctx, b, base, id, &offset, &body)
		if err != nil || closed {
			return body, err
		}
	}
	return body, errors.New("sse: too many reconnections")
}

// readSSEOnce reads one SSE response, appending data to *body and moving
// *offset on at each control event. It reports whether the stream ended
// closed.
func readSSEOnce(ctx context.Context, b *bench, base, id string, offset *string, body *[]byte) (bool, error) {
	u := base + "/v1/stream/" + url.PathEscape(id) + "?live=sse&offset=" + url.QueryEscape(*offset)
	resp, err := b.get(ctx, u)
	if err != nil {
		return false, fmt.Errorf("sse get: %w", err)
	}
	defer resp.Body.Close()
	b.st.open.Add(1)
	defer b.st.open.Add(-1)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var event string
	var data [][]byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // end of an event
			closed, err := sseEvent(b, event, data, offset, body)
			if err != nil || closed {
				return closed, err
			}
			event, data = "", data[:0]
		case bytes.HasPrefix(line, []byte("event:")):
			event = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			d := line[len("data:"):]
			data = append(data, append([]byte(nil), bytes.TrimPrefix(d, []byte(" "))...))
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("sse read: %w", err)
	}
	return false, nil
}

// sseEvent applies one event: data is appended (its lines joined by
// newlines, as SSE defines), a control event moves the offset on.
func sseEvent(b *bench, event string, data [][]byte, offset *string, body *[]byte) (bool, error) {
	switch event {
	case "data":
		d := bytes.Join(data, []byte("\n"))
		now := time.Now()
		for range bytes.Count(d, []byte("\n")) {
			b.st.delivery(now, 0)
		}
		b.st.bytes.Add(int64(len(d)))
		*body = append(*body, d...)
	case "control":
		var c sseControl
		if err := json.Unmarshal(bytes.Join(data, []byte("\n")), &c); err != nil || c.StreamNextOffset == "" {
			return false, fmt.Errorf("sse: malformed control event %q", bytes.Join(data, []byte("\n")))
		}
		*offset = c.StreamNextOffset
		return c.StreamClosed, nil
	}
	return false, nil
}
