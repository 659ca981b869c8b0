package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/messages-server/messages/ws/wstest"
)

// TestCatchupEndToEnd runs the catchup scenario on a closed channel, whose
// history comes from the store, on every backend, and on an open one.
func TestCatchupEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		backend, source, history, size string
	}{
		{"postgres", "closed", "2500", "15"},
		{"sqlite", "closed", "2500", "15"},
		{"postgres", "open", "600", "1024"},
	} {
		t.Run(tc.backend+"/"+tc.source, func(t *testing.T) {
			srv := wstest.Start(t, wstest.Options{Backend: tc.backend})
			r := runBench(t, srv.URL, "-scenario", "catchup", "-clients", "30", "-history", tc.history,
				"-size", tc.size, "-source", tc.source)
			history, _ := strconv.ParseInt(tc.history, 10, 64)
			if r.Clients != 30 || r.Completed != 30 || r.Expected != 30*history || r.Delivered != r.Expected {
				t.Errorf("%d clients, %d completed, delivered %d of %d", r.Clients, r.Completed, r.Delivered, r.Expected)
			}
			if l := r.Latency["catchup"]; l.Count != 30 {
				t.Errorf("%d catch-up latencies, want 30", l.Count)
			}
			if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "30 readers") || !strings.Contains(r.Notes[0], "all done in") {
				t.Errorf("notes %q, want the all-done line", r.Notes)
			}
		})
	}
}

// TestCatchupMessage: messages have the requested size, end with a
// newline, and differ from each other.
func TestCatchupMessage(t *testing.T) {
	for _, size := range []int{1, 2, 5, 15, 1024} {
		a, b := catchupMessage(7, size), catchupMessage(12345, size)
		if len(a) != size || len(b) != size || !strings.HasSuffix(a, "\n") {
			t.Errorf("size %d: %q (%d), %q (%d)", size, a, len(a), b, len(b))
		}
		if size >= 6 && a == b {
			t.Errorf("size %d: messages 7 and 12345 are equal", size)
		}
	}
}
