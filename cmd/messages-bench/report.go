package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"text/tabwriter"
	"time"
)

// latencySummary is a latency distribution in milliseconds.
type latencySummary struct {
	Count    int64   `json:"count"`
	MeanMs   float64 `json:"mean_ms"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	Negative int64   `json:"negative,omitempty"` // samples below zero, recorded as 0
}

// serverCost is what the server spent during the run, from its /metrics.
type serverCost struct {
	Available bool    `json:"available"`
	Error     string  `json:"error,omitempty"`
	CPUCores  float64 `json:"cpu_cores"` // CPU seconds per wall second
	RSSBefore float64 `json:"rss_before_bytes"`
	RSSAfter  float64 `json:"rss_after_bytes"`
	PeakRSS   float64 `json:"peak_rss_bytes"`
	HeapAfter float64 `json:"heap_inuse_after_bytes"`
	// Per connection, for the idle scenario: use with every connection
	// open minus the lowest use without them (before they were opened,
	// after they were closed), divided by their number. A figure that
	// came out not positive is invalid: 0, with its Invalid flag set and
	// the reason in the notes.
	RSSPerConn         float64 `json:"rss_per_conn_bytes,omitempty"`
	HeapPerConn        float64 `json:"heap_inuse_per_conn_bytes,omitempty"`
	RSSPerConnInvalid  bool    `json:"rss_per_conn_invalid,omitempty"`
	HeapPerConnInvalid bool    `json:"heap_inuse_per_conn_invalid,omitempty"`
}

// result is everything a run measured; -json writes it as is.
type result struct {
	Scenario string    `json:"scenario"`
	Config   config    `json:"config"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`

	Clients int64 `json:"clients"` // clients started
	Dials   int64 `json:"dials"`   // connection attempts, resumes included
	Resumes int64 `json:"resumes"` // deliberate drops then resumes
	// Throttled counts the requests the server refused with 429 Too Many
	// Requests (its per-client quotas) that the bench sent again after
	// Retry-After.
	Throttled int64 `json:"throttled,omitempty"`
	Completed int64 `json:"completed"` // clients that read their whole stream
	Failures  int64 `json:"failures"`  // clients that failed
	// ChannelFailures counts the channels the bench could not create or
	// close; their clients are counted in Failures.
	ChannelFailures int64 `json:"channel_failures"`
	Sources         int   `json:"source_addresses"`

	Delivered        int64   `json:"delivered"` // messages received, all clients
	Bytes            int64   `json:"bytes"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	BytesPerSec      float64 `json:"bytes_per_sec"`
	// Steady state (fanout, publish): while every subscriber was live and
	// every producer running.
	SteadySeconds          float64 `json:"steady_seconds,omitempty"`
	SteadyDeliveriesPerSec float64 `json:"steady_deliveries_per_sec,omitempty"`
	Appended               int64   `json:"appended,omitempty"`
	AppendErrors           int64   `json:"append_errors,omitempty"`
	// CreationsPerSec (create): channels created per second, from the
	// first request to the last answer.
	CreationsPerSec float64 `json:"creations_per_sec,omitempty"`
	CreateSeconds   float64 `json:"create_seconds,omitempty"`
	Expected        int64   `json:"expected_deliveries"` // what the clients should have received

	// Many is the many scenario's measure.
	Many *manyResult `json:"many,omitempty"`

	Latency map[string]latencySummary `json:"latency"`
	Server  serverCost                `json:"server"`

	Inconsistencies int64           `json:"inconsistencies"`
	Problems        []inconsistency `json:"problems,omitempty"` // the first ones
	FailureReasons  []string        `json:"failure_reasons,omitempty"`
	Notes           []string        `json:"notes,omitempty"`
}

// monitor prints progress and samples the server's metrics periodically.
type monitor struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex // guards the samples
	first   *serverSample
	last    *serverSample
	samples []serverSample // all of them, for the report's plots
	peakRSS float64
	err     error
}

func startMonitor(ctx context.Context, b *bench) *monitor {
	ctx, cancel := context.WithCancel(ctx)
	m := &monitor{cancel: cancel, done: make(chan struct{})}
	client := newHTTPClient(0, 2, b.cfg.Token, nil)
	m.sample(ctx, client, b.cfg.MetricsURL)
	go func() {
		defer close(m.done)
		every := b.cfg.Progress
		if every <= 0 {
			every = time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		prev, prevAt := int64(0), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s := m.sample(ctx, client, b.cfg.MetricsURL)
				if b.cfg.Progress > 0 {
					prev = b.st.progress(b.stderr, now, prev, prevAt, s)
					prevAt = now
				}
			}
		}
	}()
	return m
}

// sample scrapes the server once and returns the sample, nil on failure.
func (m *monitor) sample(ctx context.Context, client *http.Client, metricsURL string) *serverSample {
	s, err := scrape(ctx, client, metricsURL)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			m.err = err
		}
		return nil
	}
	if m.first == nil {
		m.first = &s
	}
	m.last = &s
	m.samples = append(m.samples, s)
	m.peakRSS = max(m.peakRSS, s.rss)
	return &s
}

// stop stops the monitor and waits for it.
func (m *monitor) stop() {
	m.cancel()
	<-m.done
}

// finish fills the result from the counters and a last scrape.
func (b *bench) finish(m *monitor) {
	m.sample(context.Background(), newHTTPClient(0, 1, b.cfg.Token, nil), b.cfg.MetricsURL)
	st, r := b.st, b.res
	r.Seconds = time.Since(st.start).Seconds()
	r.Dials, r.Resumes, r.Completed, r.Failures = st.dials.Load(), st.resumes.Load(), st.done.Load(), st.failures.Load()
	r.Throttled = st.throttled.Load()
	r.ChannelFailures = st.chanFails.Load()
	r.Sources = b.src.used()
	r.Delivered, r.Bytes = st.delivered.Load(), st.bytes.Load()
	r.DeliveriesPerSec, r.BytesPerSec = float64(r.Delivered)/r.Seconds, float64(r.Bytes)/r.Seconds
	r.Appended, r.AppendErrors = st.appends.Load(), st.appendErrs.Load()
	r.Latency = map[string]latencySummary{"live": st.live.summary(), "catchup": st.catchup.summary()}
	if b.cfg.Scenario == "publish" {
		r.Latency["end_to_end"] = st.e2e.summary()
		r.Latency["append"] = st.append.summary()
	}
	if b.cfg.Scenario == "reference" || b.cfg.Scenario == "create" {
		r.Latency["create"] = st.create.summary()
	}
	r.Inconsistencies = st.inconsist.Load()
	st.mu.Lock()
	r.Problems = append(r.Problems, st.problems...)
	r.FailureReasons = append(r.FailureReasons, st.failList...)
	st.mu.Unlock()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.first == nil || m.last == nil || m.first == m.last {
		r.Server.Error = "no /metrics samples"
		if m.err != nil {
			r.Server.Error = m.err.Error()
		}
		return
	}
	r.Server.Available = true
	r.Server.CPUCores = (m.last.cpu - m.first.cpu) / m.last.at.Sub(m.first.at).Seconds()
	r.Server.RSSBefore, r.Server.RSSAfter, r.Server.PeakRSS = m.first.rss, m.last.rss, m.peakRSS
	r.Server.HeapAfter = m.last.heap
}

// write writes the table (to stdout, or to stderr with asJSON) and, with
// asJSON, the JSON object to stdout.
func (r *result) write(asJSON bool, stdout, stderr io.Writer) error {
	table := stdout
	if asJSON {
		table = stderr
	}
	r.writeTable(table)
	if !asJSON {
		return nil
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

func (r *result) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("scenario", "%s (seed %d)", r.Scenario, r.Config.Seed)
	row("duration", "%.2f s", r.Seconds)
	row("clients", "%d started, %d completed, %d failed, %d resumed; %d dials from %d source address(es)",
		r.Clients, r.Completed, r.Failures, r.Resumes, r.Dials, r.Sources)
	if r.Throttled > 0 {
		row("throttled", "%d requests refused with 429 (the server's per-client quotas) and sent again after Retry-After", r.Throttled)
	}
	if r.ChannelFailures > 0 {
		row("channels", "%d failed (not created or not closed)", r.ChannelFailures)
	}
	row("delivered", "%d messages of %d expected, %d bytes", r.Delivered, r.Expected, r.Bytes)
	row("throughput", "%.0f deliveries/s, %.2f MB/s (whole run)", r.DeliveriesPerSec, r.BytesPerSec/1e6)
	if r.SteadySeconds > 0 {
		row("steady", "%.0f deliveries/s over %.2f s", r.SteadyDeliveriesPerSec, r.SteadySeconds)
	}
	if r.CreationsPerSec > 0 {
		row("creations", "%.0f channels/s over %.2f s", r.CreationsPerSec, r.CreateSeconds)
	}
	if r.Appended > 0 || r.AppendErrors > 0 {
		row("appended", "%d (%d errors)", r.Appended, r.AppendErrors)
	}
	if m := r.Many; m != nil {
		row("created", "%d channels in %.2f s (%d creations sent again after a 503)", m.Created, m.CreateSeconds, m.CreateRetries)
		row("many", "%.0f lines appended/s, %.0f persisted/s over %.1f s, at %.2f cores", m.AppendedPerSec,
			m.PersistedPerSec, m.SteadySeconds, m.CPUCores)
		if len(m.Lag) > 0 {
			row("persist lag", "%.0f first, %.0f last, %.0f max (messages)", m.Lag[0], m.Lag[len(m.Lag)-1], m.MaxLag)
		}
	}
	fmt.Fprintf(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\n")
	for _, k := range []string{"live", "catchup", "end_to_end", "append", "create"} {
		l, ok := r.Latency[k]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", k, l.Count, l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs)
	}
	if r.Server.Available {
		row("server cpu", "%.2f cores", r.Server.CPUCores)
		row("server rss", "%.1f MiB before, %.1f MiB after, %.1f MiB peak; heap in use %.1f MiB",
			r.Server.RSSBefore/(1<<20), r.Server.RSSAfter/(1<<20), r.Server.PeakRSS/(1<<20), r.Server.HeapAfter/(1<<20))
		if r.perConnShown() {
			row("per connection", "%s RSS, %s heap in use", kib(r.Server.RSSPerConn, r.Server.RSSPerConnInvalid),
				kib(r.Server.HeapPerConn, r.Server.HeapPerConnInvalid))
		}
	} else {
		row("server", "metrics unavailable: %s", r.Server.Error)
	}
	row("inconsistencies", "%d", r.Inconsistencies)
	tw.Flush()
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  INCONSISTENT channel %s client %d seq %d: %s: %s\n", p.Channel, p.Client, p.Seq, p.Kind, p.Detail)
	}
	for _, f := range r.FailureReasons {
		fmt.Fprintf(w, "  FAILED %s\n", f)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// perConnShown reports whether the per-connection cost was measured.
func (r *result) perConnShown() bool { return r.Scenario == "idle" && r.Clients > 0 }

// kib formats a per-connection figure in KiB, or says it is invalid.
func kib(bytes float64, invalid bool) string {
	if invalid {
		return "invalid (see the notes)"
	}
	return fmt.Sprintf("%.1f KiB", bytes/1024)
}
