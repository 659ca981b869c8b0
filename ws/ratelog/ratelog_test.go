package ratelog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFloodIsBounded: 100,000 events over three intervals give one line
// per interval plus one count line per interval, and the counts add up.
func TestFloodIsBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := New(log, slog.LevelWarn, "generator paused", time.Second)
	clock := time.Unix(1000, 0)
	var pending []func()
	l.now = func() time.Time { return clock }
	l.after = func(_ time.Duration, f func()) { pending = append(pending, f) }
	for i := range 100_000 {
		if i > 0 && i%40_000 == 0 {
			for _, f := range pending {
				f()
			}
			pending = nil
			clock = clock.Add(time.Second)
		}
		l.Log(context.Background(), slog.Int("i", i))
	}
	for _, f := range pending {
		f()
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 6:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"i=0", "repeats=39999", "i=40000", "repeats=39999", "i=80000", "repeats=19999"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %s, want %s", i, lines[i], want)
		}
	}
}

// TestConcurrentFlush: with the real clock, concurrent events within one
// interval give the first line at once and the count when it ends.
func TestConcurrentFlush(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	l := New(log, slog.LevelWarn, "paused", 50*time.Millisecond)
	start := time.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				l.Log(context.Background())
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		if strings.Contains(out, "repeats=") {
			// At most two lines per interval begun since the start.
			if n, most := strings.Count(out, "\n"), 2*(int(time.Since(start)/(50*time.Millisecond))+1); n > most {
				t.Fatalf("%d lines for 8000 events:\n%s", n, out)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no count line:\n%s", out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
