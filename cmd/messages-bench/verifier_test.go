package main

import (
	"strconv"
	"strings"
	"testing"
)

func msgs(pairs ...any) []received {
	var out []received
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, received{seq: int64(pairs[i].(int)), data: pairs[i+1].(string)})
	}
	return out
}

func TestVerifyMessages(t *testing.T) {
	original := []byte("1: c\n2: c\n3: c\n4: c\n")
	tests := []struct {
		name   string
		msgs   []received
		kind   string
		seq    int64
		detail string
	}{
		{"equal", msgs(1, "1: c\n", 2, "2: c\n", 3, "3: c\n", 4, "4: c\n"), "", 0, ""},
		{"equal with other boundaries", msgs(1, "1: c\n2", 2, ": c\n3: c\n", 3, "4: c\n"), "", 0, ""},
		{"gap", msgs(1, "1: c\n", 3, "3: c\n", 4, "4: c\n"), kindGap, 2, "expected seq 2, got 3"},
		{"starts late", msgs(2, "2: c\n"), kindGap, 1, "expected seq 1, got 2"},
		{"duplicate", msgs(1, "1: c\n", 2, "2: c\n", 2, "2: c\n", 3, "3: c\n"), kindDuplicate, 2, "expected seq 3, got 2 again"},
		{"changed byte", msgs(1, "1: c\n", 2, "2: c\n", 3, "3: d\n", 4, "4: c\n"), kindContent, 3, `want "c\n", got "d\n"`},
		{"truncated", msgs(1, "1: c\n", 2, "2: c\n", 3, "3: c\n"), kindTruncated, 4, "5 bytes of the original are missing"},
		{"truncated in a message", msgs(1, "1: c\n", 2, "2: c\n", 3, "3: c\n", 4, "4: "), kindTruncated, 5, "2 bytes"},
		{"empty", nil, kindTruncated, 1, "20 bytes"},
		{"extra message", msgs(1, "1: c\n", 2, "2: c\n", 3, "3: c\n", 4, "4: c\n", 5, "5: c\n"), kindExtra, 5, "past the end"},
		{"extra bytes", msgs(1, "1: c\n", 2, "2: c\n", 3, "3: c\n", 4, "4: c\nx"), kindExtra, 4, "1 bytes past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := verifyMessages(original, tt.msgs)
			if tt.kind == "" {
				if p != nil {
					t.Fatalf("unexpected problem %+v", p)
				}
				return
			}
			if p == nil {
				t.Fatal("no problem reported")
			}
			if p.Kind != tt.kind || p.Seq != tt.seq || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("got %+v, want kind %s seq %d detail containing %q", p, tt.kind, tt.seq, tt.detail)
			}
		})
	}
}

// checkProblem fails t unless p is the problem of kind at seq, or nil
// when kind is "".
func checkProblem(t *testing.T, p *problem, kind string, seq int64) {
	t.Helper()
	if kind == "" {
		if p != nil {
			t.Fatalf("unexpected problem %+v", p)
		}
		return
	}
	if p == nil || p.Kind != kind || p.Seq != seq {
		t.Errorf("got %+v, want kind %s seq %d", p, kind, seq)
	}
}

func TestVerifyBody(t *testing.T) {
	original := []byte("1: c\n2: c\n3: c\n")
	tests := []struct {
		name string
		got  string
		kind string
		seq  int64
	}{
		{"equal", "1: c\n2: c\n3: c\n", "", 0},
		{"changed byte", "1: c\n2: C\n3: c\n", kindContent, 2},
		{"missing line (gap)", "1: c\n3: c\n", kindContent, 2},
		{"duplicated line", "1: c\n2: c\n2: c\n3: c\n", kindContent, 3},
		{"truncated", "1: c\n2: c\n3", kindTruncated, 3},
		{"empty", "", kindTruncated, 1},
		{"extra", "1: c\n2: c\n3: c\n4: c\n", kindExtra, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := verifyBody(original, []byte(tt.got))
			checkProblem(t, p, tt.kind, tt.seq)
		})
	}
}

func TestLineChecker(t *testing.T) {
	tests := []struct {
		name string
		msgs []received
		last int64
		kind string
		seq  int64
	}{
		{"equal", msgs(1, "1: c\n", 2, "2: c\n"), 2, "", 0},
		{"empty channel", nil, 0, "", 0},
		{"gap", msgs(1, "1: c\n", 3, "3: c\n"), 3, kindGap, 2},
		{"duplicate", msgs(1, "1: c\n", 1, "1: c\n"), 2, kindDuplicate, 1},
		{"changed byte", msgs(1, "1: c\n", 2, "2: x\n"), 2, kindContent, 2},
		{"truncated", msgs(1, "1: c\n"), 3, kindTruncated, 2},
		{"extra", msgs(1, "1: c\n", 2, "2: c\n"), 1, kindExtra, 2},
		{"first problem wins", msgs(1, "1: x\n", 3, "3: c\n"), 1, kindContent, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := lineChecker("c")
			for _, m := range tt.msgs {
				c.add(m.seq, m.data)
			}
			p := c.finish(tt.last)
			checkProblem(t, p, tt.kind, tt.seq)
		})
	}
}

// generatedStream returns a generated stream of n lines of channel id, as
// the original and as the messages a WebSocket client receives.
func generatedStream(n int, id string) ([]byte, []received) {
	var original []byte
	msgs := make([]received, n)
	for i := range msgs {
		line := generatedLine(int64(i+1), id)
		original = append(original, line...)
		msgs[i] = received{seq: int64(i + 1), data: line}
	}
	return original, msgs
}

// TestVerifyMessagesLinear checks that verifying a stream costs no
// allocation per message: copying the rest of the original for each
// message made the verifier quadratic in the stream's length.
func TestVerifyMessagesLinear(t *testing.T) {
	original, msgs := generatedStream(5000, "c")
	allocs := testing.AllocsPerRun(3, func() {
		if p := verifyMessages(original, msgs); p != nil {
			t.Fatalf("unexpected problem %+v", p)
		}
	})
	if allocs > 10 {
		t.Errorf("verifying %d messages allocates %.0f times, want a few (none per message)", len(msgs), allocs)
	}
}

// BenchmarkVerifyMessages shows the cost per message staying flat as the
// stream grows.
func BenchmarkVerifyMessages(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		original, msgs := generatedStream(n, "bench-channel")
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				if p := verifyMessages(original, msgs); p != nil {
					b.Fatalf("unexpected problem %+v", p)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
		})
	}
}
