package hub

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
)

// BenchmarkGenerators runs 1000 generator channels at 20 lines/s for 5 s
// against the in-memory store and writer, and reports the lines appended
// per second and the process's CPU per line: the cost of the generators,
// the actors and their flushes without a database. Run it with
// -benchtime 1x.
func BenchmarkGenerators(b *testing.B) {
	const channels, freq, window = 1000, 20, 5 * time.Second
	for b.Loop() {
		h, _, _ := newTestHub(b, Config{MaxGeneratorRate: 1e9, StoreTimeout: time.Minute})
		ctx := context.Background()
		start := time.Now()
		for i := range channels {
			gen := &persist.Generator{Freq: freq, Max: MaxLines}
			if _, err := h.Create(ctx, fmt.Sprintf("g%05d", i), gen, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("%d channels created in %v", channels, time.Since(start))
		time.Sleep(time.Second) // every generator started
		before, cpu0, t0 := appended(h), cpuTime(), time.Now()
		time.Sleep(window)
		lines, cpu, wall := appended(h)-before, cpuTime()-cpu0, time.Since(t0)
		b.ReportMetric(float64(lines)/wall.Seconds(), "lines/s")
		b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(lines), "cpu-ns/line")
		b.Logf("measured; stopping the hub")
	}
}

// cpuTime is the CPU time the process used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// appended is the number of messages of h's open channels.
func appended(h *Hub) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for _, c := range h.channels {
		n += c.statLast.Load()
	}
	return n
}
