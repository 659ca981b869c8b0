//go:build unix

package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestFaultGeneratorFlood is the flood of the issue: 400 generators asking
// for 1000 lines per second each, on the server binary built without the
// race detector (so that its memory is what production sees), with the
// database down for outageDuration in the middle. The memory held by
// messages stays within -max-buffered-bytes (generators pause at the
// bound), and the process's RSS stays within its idle RSS plus three times
// the bound (see docs/RELIABILITY.md for what the rest is). After the database
// is back, SIGTERM makes the server exit 0 with everything persisted: every
// channel's stored lines are exactly 1..last_seq of its generator.
func TestFaultGeneratorFlood(t *testing.T) {
	t.Parallel()
	const (
		gens  = 400
		freq  = 1000
		bound = 64 << 20
	)
	outage := outageDuration(t)
	began := time.Now()
	bin := buildServer(t)
	t.Logf("built the server in %v", time.Since(began).Round(time.Millisecond))
	proxy, proxied, direct := behindProxy(t)
	p, s := serve(t, bin, proxied, "-max-buffered-bytes", "64MiB", "-max-generator-rate", "1000000",
		"-shutdown-timeout", "2m")
	idle := metrics(t, s.base)
	refused := createGenerators(t, s.base, gens, freq)
	eventually(t, time.Minute, "the generators running", func() bool {
		return metrics(t, s.base)["messages_appended_total"] > gens*100
	})
	t.Logf("%d generators running %v after the start", gens, time.Since(began).Round(time.Millisecond))

	proxy.Drop()
	w := watchMemory(t, s.base, outage, bound)
	during := metrics(t, s.base)
	proxy.Pass()
	eventually(t, time.Minute, "the generators going on after the outage", func() bool {
		return metrics(t, s.base)["messages_appended_total"] > during["messages_appended_total"]+gens*100
	})
	after := metrics(t, s.base)
	peakRSS := max(w.peakRSS, after["process_resident_memory_bytes"])
	// The memory held by messages is bounded; the process also holds the
	// writer's batches and the garbage collector's headroom (GOGC=100 lets
	// the heap reach twice what is live), so RSS may pass the bound, but by
	// a bounded amount. Before the bounds it grew by gigabytes.
	if limit := idle["process_resident_memory_bytes"] + 3*bound; peakRSS > limit {
		t.Errorf("RSS reached %s, past the idle RSS plus three times the bound (%s)", mib(peakRSS), mib(limit))
	}
	t.Logf("RELIABILITY generator flood: %d generators at %d lines/s, database down %v, bound %s: RSS idle %s, peak %s; messages held at most %s (bound reached after %v; %v lines appended from then to the end of the outage); heap in use %s at the end of the outage; %v lines appended before SIGTERM; %d creates refused with 503 and retried",
		gens, freq, outage, mib(bound), mib(idle["process_resident_memory_bytes"]), mib(peakRSS), mib(w.peakHeld),
		w.reached.Round(time.Millisecond), during["messages_appended_total"]-w.atBound,
		mib(during["go_memstats_heap_inuse_bytes"]), after["messages_appended_total"], refused)

	stopping := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 3*time.Minute); code != 0 || !strings.Contains(p.log.String(), "everything persisted") {
		t.Fatalf("after SIGTERM: exit %d, want 0 with everything persisted\n%s", code, p.log)
	}
	stopped := time.Since(stopping)
	channels, lines := checkGeneratorLines(t, direct)
	if channels != gens || float64(lines) < after["messages_appended_total"] {
		t.Errorf("stored %d channels and %d lines; want %d channels and at least the %v lines appended before SIGTERM",
			channels, lines, gens, after["messages_appended_total"])
	}
	t.Logf("RELIABILITY generator flood: SIGTERM exited 0 after %v with everything persisted: %d lines stored in %d channels, each exactly its generator's lines 1..last_seq; lost 0",
		stopped.Round(time.Millisecond), lines, channels)
}

// memoryWatch is what watchMemory saw.
type memoryWatch struct {
	peakRSS, peakHeld float64
	reached           time.Duration // from the start to the bound
	atBound           float64       // lines appended when the bound was reached
}

// watchMemory samples the server's memory every 250 ms for d, and until
// the messages held reach the bound; it fails t if they pass it.
func watchMemory(t *testing.T, base string, d time.Duration, bound float64) memoryWatch {
	t.Helper()
	var w memoryWatch
	began := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for time.Since(began) < d || w.reached == 0 {
		if time.Since(began) > d+time.Minute {
			t.Fatalf("the flood never reached the bound: held at most %s of %s", mib(w.peakHeld), mib(bound))
		}
		<-tick.C // sampling pace
		m := metrics(t, base)
		held := m["messages_buffered_bytes"]
		w.peakRSS = max(w.peakRSS, m["process_resident_memory_bytes"])
		w.peakHeld = max(w.peakHeld, held)
		if w.reached == 0 && held >= 0.95*bound {
			w.reached, w.atBound = time.Since(began), m["messages_appended_total"]
		}
		if held > bound {
			t.Errorf("messages hold %s, past the bound %s", mib(held), mib(bound))
		}
	}
	return w
}

// createGenerators creates generators flood-0..n-1 at freq lines/s from 16
// clients at once and returns how many creates were refused with 503 and
// tried again.
func createGenerators(t *testing.T, base string, n, freq int) int64 {
	t.Helper()
	c := faultClient(t, 30*time.Second)
	var refused atomic.Int64
	ids := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range ids {
				if err := createGenerator(c, base, fmt.Sprintf("flood-%d", i), freq, &refused); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return refused.Load()
}

// checkGeneratorLines checks, straight in the database, that each
// channel's rows are exactly its generator's lines 1..last_seq, and returns
// how many channels and lines there are. The last seq is the channel's row's
// (recorded at close and take-over) or its highest stored seq, whichever is
// higher, as the store reads it.
func checkGeneratorLines(t *testing.T, dbURL string) (channels, lines int64) {
	t.Helper()
	ctx := contextFor(t, 2*time.Minute)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
		SELECT c.id, GREATEST(c.last_seq, coalesce(max(m.seq), 0)), count(m.seq), coalesce(max(m.seq), 0),
		       coalesce(bool_and(m.data = convert_to(m.seq::text || ': ' || c.id || E'\n', 'UTF8')), true)
		FROM channels c LEFT JOIN messages m ON m.channel_id = c.id
		GROUP BY c.id, c.last_seq`)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	var last, count, top int64
	var exact bool
	_, err = pgx.ForEachRow(rows, []any{&id, &last, &count, &top, &exact}, func() error {
		channels++
		lines += count
		if count != last || top != last || !exact {
			t.Errorf("%s: last_seq %d, %d rows up to seq %d, lines exact %v: want 1..last_seq, each its line", id, last, count, top, exact)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return channels, lines
}

// createGenerator creates generator id, trying again after Retry-After
// while the server answers 503, ten times at most.
func createGenerator(c *http.Client, base, id string, freq int, refused *atomic.Int64) error {
	body := fmt.Sprintf(`{"id":%q,"generator":{"freq":%d,"max":10000000}}`, id, freq)
	for attempt := 1; ; attempt++ {
		a, err := ask(c, "POST", base+"/channels", "application/json", body)
		if err == nil && a.status == http.StatusCreated {
			return nil
		}
		if err != nil || a.status != http.StatusServiceUnavailable || attempt == 10 {
			return fmt.Errorf("create generator %s, attempt %d: %+v %v", id, attempt, a, err)
		}
		refused.Add(1)
		wait, _ := strconv.Atoi(a.retryAfter)
		time.Sleep(time.Duration(max(wait, 1)) * time.Second) // as Retry-After says
	}
}
