package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs to 10 minutes, 3 significant digits.
const (
	histMaxMicros = int64(10 * time.Minute / time.Microsecond)
	histShards    = 16
	bucketWidth   = 100 * time.Millisecond
	maxProblems   = 100 // problems and failures listed in the report
)

// latencies is a latency histogram in microseconds that many goroutines
// record into; it is sharded to keep lock contention low.
type latencies struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
	negative atomic.Int64 // samples below zero (clock skew), recorded as 0
}

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(1, histMaxMicros, 3)
	}
	return l
}

// record adds one sample; shard spreads the writers (any int).
func (l *latencies) record(shard int, d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		l.negative.Add(1)
		us = 0
	}
	s := &l.shards[uint(shard)%histShards]
	s.mu.Lock()
	_ = s.h.RecordValue(min(us, histMaxMicros))
	s.mu.Unlock()
}

// merged is the histogram of every shard.
func (l *latencies) merged() *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, histMaxMicros, 3)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h.Merge(s.h)
		s.mu.Unlock()
	}
	return h
}

// summary merges the shards.
func (l *latencies) summary() latencySummary {
	h := l.merged()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return latencySummary{
		Count: h.TotalCount(), MeanMs: h.Mean() / 1000,
		P50Ms: ms(h.ValueAtQuantile(50)), P90Ms: ms(h.ValueAtQuantile(90)), P99Ms: ms(h.ValueAtQuantile(99)),
		P999Ms: ms(h.ValueAtQuantile(99.9)), MaxMs: ms(h.Max()), Negative: l.negative.Load(),
	}
}

// stats are the counters of one run. Every field is safe for concurrent use.
type stats struct {
	start time.Time

	dials      atomic.Int64 // connection attempts
	failures   atomic.Int64 // clients that failed (connect or read)
	chanFails  atomic.Int64 // channels the bench could not create or close
	open       atomic.Int64 // connections open now
	done       atomic.Int64 // clients finished successfully
	resumes    atomic.Int64 // deliberate drops followed by a resume
	throttled  atomic.Int64 // requests refused with 429 and sent again
	delivered  atomic.Int64 // messages received by clients
	bytes      atomic.Int64 // message bytes received by clients
	liveCount  atomic.Int64 // clients that reached live
	inconsist  atomic.Int64 // clients whose stream differs from the original
	appends    atomic.Int64 // messages appended by the bench (publish)
	appendErrs atomic.Int64 // failed appends (publish)

	live    *latencies // receive time − frame time, for live messages
	catchup *latencies // connect → live frame
	e2e     *latencies // intended send time → receive (publish)
	append  *latencies // intended send time → append answered (publish)
	create  *latencies // creation sent → answered (create; reference: POST / headers)

	timeline []atomic.Int64 // deliveries per bucketWidth since start

	mu       sync.Mutex // guards the lists below
	problems []inconsistency
	failList []string
}

// inconsistency is a client whose stream differs from the original.
type inconsistency struct {
	Channel string `json:"channel"`
	Client  int    `json:"client"`
	problem
}

func newStats(span time.Duration) *stats {
	return &stats{
		start:    time.Now(),
		live:     newLatencies(),
		catchup:  newLatencies(),
		e2e:      newLatencies(),
		append:   newLatencies(),
		create:   newLatencies(),
		timeline: make([]atomic.Int64, int(span/bucketWidth)+1),
	}
}

// delivery counts one received message.
func (s *stats) delivery(at time.Time, n int) { s.deliveries(at, 1, int64(n)) }

// deliveries counts count messages of bytes bytes in all, received at at
// (one frame's).
func (s *stats) deliveries(at time.Time, count, bytes int64) {
	s.delivered.Add(count)
	s.bytes.Add(bytes)
	if i := int(at.Sub(s.start) / bucketWidth); i >= 0 && i < len(s.timeline) {
		s.timeline[i].Add(count)
	}
}

// between counts the deliveries from a to b, to bucket precision.
func (s *stats) between(a, b time.Time) int64 {
	var n int64
	for i := int(a.Sub(s.start) / bucketWidth); i < int(b.Sub(s.start)/bucketWidth) && i < len(s.timeline); i++ {
		if i >= 0 {
			n += s.timeline[i].Load()
		}
	}
	return n
}

// fail counts a failed client and keeps the first reasons.
func (s *stats) fail(format string, args ...any) {
	s.failures.Add(1)
	s.failReason(format, args...)
}

// failChannel counts a channel the bench could not create (or close) and
// keeps the first reasons. Its clients are counted apart, by fail.
func (s *stats) failChannel(format string, args ...any) {
	s.chanFails.Add(1)
	s.failReason(format, args...)
}

// failReason keeps a failure's reason, if fewer than maxProblems are kept.
func (s *stats) failReason(format string, args ...any) {
	s.mu.Lock()
	if len(s.failList) < maxProblems {
		s.failList = append(s.failList, fmt.Sprintf(format, args...))
	}
	s.mu.Unlock()
}

// inconsistent records a client whose stream differs from the original.
func (s *stats) inconsistent(channel string, client int, p *problem) {
	s.inconsist.Add(1)
	s.mu.Lock()
	if len(s.problems) < maxProblems {
		s.problems = append(s.problems, inconsistency{Channel: channel, Client: client, problem: *p})
	}
	s.mu.Unlock()
}

// progress writes one progress line.
func (s *stats) progress(w io.Writer, now time.Time, prevDelivered int64, prevAt time.Time, server *serverSample) int64 {
	d := s.delivered.Load()
	rate := float64(d-prevDelivered) / now.Sub(prevAt).Seconds()
	line := fmt.Sprintf("%6.1fs open=%d done=%d delivered=%d rate=%.0f/s failures=%d inconsistencies=%d",
		now.Sub(s.start).Seconds(), s.open.Load(), s.done.Load(), d, rate, s.failures.Load(), s.inconsist.Load())
	if a := s.appends.Load(); a > 0 {
		line += fmt.Sprintf(" appended=%d append_errors=%d", a, s.appendErrs.Load())
	}
	if server != nil {
		line += fmt.Sprintf(" server_rss=%.0fMiB", server.rss/(1<<20))
	}
	fmt.Fprintln(w, line)
	return d
}
