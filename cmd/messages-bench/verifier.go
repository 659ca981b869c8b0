package main

import (
	"bytes"
	"fmt"
	"strconv"
)

// Kinds of inconsistency the verifier reports.
const (
	kindGap       = "gap"       // a seq was skipped
	kindDuplicate = "duplicate" // a seq came again
	kindContent   = "content"   // a message differs from the original
	kindTruncated = "truncated" // the stream stopped before the original's end
	kindExtra     = "extra"     // the stream goes past the original's end
	kindProtocol  = "protocol"  // the client library refused the stream
)

// problem is the first deviation of one client's stream from the original.
type problem struct {
	// Seq is the first differing seq: the missing, repeated or changed
	// message. For HTTP readers, which see no seqs, it is the line number,
	// which is the seq for generated streams (one line per message).
	Seq    int64  `json:"seq"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// received is one message as a WebSocket client saw it.
type received struct {
	seq  int64
	data string
}

// verifyMessages checks a WebSocket client's messages, which started from
// seq 1, against original: contiguous seqs with no duplicate, and content
// equal byte for byte. It returns nil when they match.
func verifyMessages(original []byte, msgs []received) *problem {
	// One copy of the original: expect returns substrings of it, so the
	// check is linear in the stream's length (a copy of the rest of the
	// original per message made it quadratic).
	orig := string(original)
	c := seqChecker{expect: func(seq int64, off int) (string, bool) {
		if off >= len(orig) {
			return "", false
		}
		return orig[off:], true
	}, prefix: true, next: 1}
	for _, m := range msgs {
		if c.add(m.seq, m.data) != nil {
			return c.bad
		}
	}
	if c.bad == nil && c.off < len(original) {
		c.bad = &problem{Seq: c.next, Kind: kindTruncated,
			Detail: fmt.Sprintf("stream stops after seq %d; %d bytes of the original are missing", c.next-1, len(original)-c.off)}
	}
	return c.bad
}

// verifyBody checks an HTTP reader's body against original byte for byte.
func verifyBody(original, got []byte) *problem {
	n := min(len(original), len(got))
	i := 0
	for i < n && original[i] == got[i] {
		i++
	}
	line := int64(bytes.Count(original[:i], []byte{'\n'})) + 1
	switch {
	case i < n:
		return &problem{Seq: line, Kind: kindContent, Detail: "byte " + strconv.Itoa(i) + ": " + diffDetail(original[i:], got[i:])}
	case len(got) < len(original):
		return &problem{Seq: line, Kind: kindTruncated,
			Detail: fmt.Sprintf("body stops at byte %d of %d", len(got), len(original))}
	case len(got) > len(original):
		return &problem{Seq: line, Kind: kindExtra,
			Detail: fmt.Sprintf("body has %d bytes after the original's %d: %q", len(got)-len(original), len(original), clip(got[len(original):]))}
	}
	return nil
}

// seqChecker verifies a stream message by message, without keeping it:
// seqs must be contiguous from 1 and every message must equal what expect
// says. It keeps the first problem only.
type seqChecker struct {
	// expect returns the expected data of seq, which starts at byte off of
	// the stream, and false when the original has nothing there. With
	// prefix set, it may return more than one message: the data must be a
	// prefix of it.
	expect func(seq int64, off int) (string, bool)
	prefix bool

	next int64 // next expected seq: set it to 1 to start
	off  int   // bytes checked so far
	bad  *problem
}

// add checks one message and returns the first problem seen so far.
func (c *seqChecker) add(seq int64, data string) *problem {
	if c.bad != nil {
		return c.bad
	}
	switch {
	case seq > c.next:
		c.bad = &problem{Seq: c.next, Kind: kindGap, Detail: fmt.Sprintf("expected seq %d, got %d", c.next, seq)}
		return c.bad
	case seq < c.next:
		c.bad = &problem{Seq: seq, Kind: kindDuplicate, Detail: fmt.Sprintf("expected seq %d, got %d again", c.next, seq)}
		return c.bad
	}
	want, ok := c.expect(seq, c.off)
	if !ok {
		c.bad = &problem{Seq: seq, Kind: kindExtra, Detail: fmt.Sprintf("message %q is past the end of the original", clip([]byte(data)))}
		return c.bad
	}
	if c.prefix && len(want) > len(data) {
		want = want[:len(data)]
	}
	if want != data {
		if c.prefix && len(want) < len(data) && data[:len(want)] == want {
			c.bad = &problem{Seq: seq, Kind: kindExtra, Detail: fmt.Sprintf("message goes %d bytes past the end of the original", len(data)-len(want))}
		} else {
			c.bad = &problem{Seq: seq, Kind: kindContent, Detail: diffDetail([]byte(want), []byte(data))}
		}
		return c.bad
	}
	c.next++
	c.off += len(data)
	return nil
}

// finish checks that the stream ended exactly at lastSeq, the original's
// last seq.
func (c *seqChecker) finish(lastSeq int64) *problem {
	if c.bad != nil {
		return c.bad
	}
	switch got := c.next - 1; {
	case got < lastSeq:
		c.bad = &problem{Seq: c.next, Kind: kindTruncated, Detail: fmt.Sprintf("stream stops after seq %d of %d", got, lastSeq)}
	case got > lastSeq:
		c.bad = &problem{Seq: lastSeq + 1, Kind: kindExtra, Detail: fmt.Sprintf("stream goes on to seq %d, past the last seq %d", got, lastSeq)}
	}
	return c.bad
}

// diffDetail describes the first difference between want and got.
func diffDetail(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	return fmt.Sprintf("differs at byte %d: want %q, got %q", i, clip(want[i:]), clip(got[i:]))
}

// clip shortens b for a report.
func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// generatedLine is line seq of a generated channel, as the server writes it.
func generatedLine(seq int64, id string) string {
	return strconv.FormatInt(seq, 10) + ": " + id + "\n"
}

// lineChecker returns a checker of a generated (or bench-published) stream
// of channel id.
func lineChecker(id string) *seqChecker {
	return &seqChecker{expect: func(seq int64, _ int) (string, bool) { return generatedLine(seq, id), true }, next: 1}
}
