package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// runBench runs the bench against url and returns its JSON result.
func runBench(t *testing.T, url string, args ...string) result {
	t.Helper()
	return runBenchEnv(t, func(string) string { return "" }, url, args...)
}

// runBenchEnv is runBench with the environment getenv.
func runBenchEnv(t *testing.T, getenv func(string) string, url string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	args = append([]string{"-url", url, "-json", "-progress", "0", "-timeout", "40s", "-seed", "1"}, args...)
	err := run(ctx, args, getenv, &stdout, &stderr)
	var r result
	if jerr := json.Unmarshal([]byte(stdout.String()), &r); jerr != nil {
		t.Fatalf("decode result: %v\nstdout: %s\nstderr: %s", jerr, stdout.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if r.Inconsistencies != 0 || r.Failures != 0 || r.ChannelFailures != 0 || len(r.Problems) != 0 || len(r.FailureReasons) != 0 {
		t.Fatalf("inconsistencies %d failures %d failed channels %d: %v %v", r.Inconsistencies, r.Failures, r.ChannelFailures, r.Problems, r.FailureReasons)
	}
	if !r.Server.Available || r.Server.PeakRSS <= 0 {
		t.Errorf("server cost not measured: %+v", r.Server)
	}
	t.Logf("%s", stderr.String())
	return r
}

// TestReferenceEndToEnd runs the reference scenario on every storage
// backend.
func TestReferenceEndToEnd(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) { referenceEndToEnd(t, backend) })
	}
}

// TestReferenceSSE: every reader reads through Durable Streams SSE, and
// gets the generator's content byte for byte.
func TestReferenceSSE(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	const channels, clients, lines = 10, 3, 40
	r := runBench(t, srv.URL, "-scenario", "reference", "-channels", "10", "-clients", "3", "-freq", "200",
		"-max", "40", "-transport", "sse")
	if r.Clients != channels*clients || r.Completed != r.Clients || r.Delivered != channels*clients*lines {
		t.Errorf("%d clients, %d completed, %d delivered; want %d, all, %d", r.Clients, r.Completed,
			r.Delivered, channels*clients, channels*clients*lines)
	}
}

func referenceEndToEnd(t *testing.T, backend string) {
	srv := wstest.Start(t, wstest.Options{Backend: backend})
	const channels, clients, lines = 50, 5, 50
	r := runBench(t, srv.URL, "-scenario", "reference", "-channels", "50", "-clients", "5", "-freq", "200",
		"-max", "50", "-transport", "mixed", "-resume-fraction", "0.5")
	if r.Clients != channels*clients || r.Completed != r.Clients {
		t.Errorf("%d clients, %d completed; want %d", r.Clients, r.Completed, channels*clients)
	}
	if r.Expected != channels*clients*lines || r.Delivered != r.Expected {
		t.Errorf("delivered %d, expected %d, want %d", r.Delivered, r.Expected, channels*clients*lines)
	}
	if r.Resumes == 0 {
		t.Error("no reader resumed")
	}
	if want := channels + channels*clients + r.Resumes; r.Dials != want {
		t.Errorf("%d dials, want %d creators + readers + resumes", r.Dials, want)
	}
	if r.Latency["live"].Count == 0 || r.Latency["catchup"].Count == 0 || r.Latency["create"].Count != channels {
		t.Errorf("latencies not recorded (want %d creations): %+v", channels, r.Latency)
	}
}

// TestCreateEndToEnd creates channels, then streams, concurrently: every
// creation is answered 201, counted and timed.
func TestCreateEndToEnd(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	for _, api := range []string{"channels", "streams"} {
		r := runBench(t, srv.URL, "-scenario", "create", "-channels", "300", "-conns", "16", "-create-api", api,
			"-prefix", api+"-")
		if r.Clients != 300 || r.Completed != 300 || r.Latency["create"].Count != 300 || r.CreationsPerSec <= 0 {
			t.Errorf("%s: %d creations, %d completed, %d timed, %.0f/s; want 300 of each", api, r.Clients,
				r.Completed, r.Latency["create"].Count, r.CreationsPerSec)
		}
	}
}

func TestFanoutEndToEnd(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	r := runBench(t, srv.URL, "-scenario", "fanout", "-channels", "5", "-clients", "4", "-freq", "300", "-duration", "1500ms")
	if r.Completed != 20 || r.Expected != 20*450 || r.Delivered != r.Expected {
		t.Errorf("completed %d, delivered %d of %d", r.Completed, r.Delivered, r.Expected)
	}
	if live := r.Latency["live"]; live.Count == 0 || live.Count > r.Delivered {
		t.Errorf("live latency count %d of %d deliveries", live.Count, r.Delivered)
	}
}

func TestPublishEndToEnd(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	r := runBench(t, srv.URL, "-scenario", "publish", "-channels", "5", "-clients", "4", "-rate", "500", "-duration", "1s", "-conns", "3")
	if r.Appended != 500 || r.AppendErrors != 0 {
		t.Errorf("appended %d (%d errors), want 500", r.Appended, r.AppendErrors)
	}
	if r.Completed != 20 || r.Delivered != 500*4 || r.Expected != r.Delivered {
		t.Errorf("completed %d, delivered %d of %d", r.Completed, r.Delivered, r.Expected)
	}
	if e := r.Latency["end_to_end"]; e.Count != r.Delivered {
		t.Errorf("end-to-end latency count %d, want %d", e.Count, r.Delivered)
	}
	if a := r.Latency["append"]; a.Count != 500 {
		t.Errorf("append latency count %d, want 500", a.Count)
	}
}

func TestIdleEndToEnd(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	r := runBench(t, srv.URL, "-scenario", "idle", "-channels", "3", "-clients", "4", "-duration", "100ms")
	if r.Completed != 12 || r.Delivered != 0 {
		t.Errorf("completed %d, delivered %d", r.Completed, r.Delivered)
	}
	// With a dozen connections the server's own churn can outweigh them:
	// each figure is a positive number or marked invalid, never negative.
	s := r.Server
	if (s.RSSPerConn <= 0) != s.RSSPerConnInvalid || (s.HeapPerConn <= 0) != s.HeapPerConnInvalid {
		t.Errorf("per connection cost neither measured nor marked invalid: %+v", s)
	}
	if r.Failures != 0 || len(r.FailureReasons) != 0 {
		t.Errorf("closing the connections after measuring failed clients: %v", r.FailureReasons)
	}
}

// TestManyEndToEnd: the many scenario creates its generator channels and
// reports, from the server's metrics, lines appended and persisted over
// its window and the persist lag of each second.
func TestManyEndToEnd(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	r := runBench(t, srv.URL, "-scenario", "many", "-channels", "20", "-freq", "50", "-duration", "2s")
	m := r.Many
	if m == nil || m.Created != 20 {
		t.Fatalf("many result %+v, want 20 channels created", m)
	}
	if m.AppendedPerSec <= 0 || m.PersistedPerSec <= 0 || len(m.Lag) != 2 {
		t.Errorf("appended %.0f/s, persisted %.0f/s, %d lag samples; want both positive and 2 samples",
			m.AppendedPerSec, m.PersistedPerSec, len(m.Lag))
	}
}
