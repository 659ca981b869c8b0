package persist_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 20 * time.Second

// faulty is a fault injector around a real BatchWriter: it fails the first
// failFirst calls, and when hold is set, each call first waits for a token
// on hold (after announcing itself on entered). If called is set, each
// call also sends on it without blocking.
type faulty struct {
	dst       persist.BatchWriter
	failFirst int64
	calls     atomic.Int64
	hold      chan struct{}
	entered   chan struct{}
	called    chan struct{}
}

var errInjected = errors.New("injected outage")

func (f *faulty) WriteBatches(ctx context.Context, bs []*persist.Batch) error {
	if f.called != nil {
		select {
		case f.called <- struct{}{}:
		default:
		}
	}
	if f.hold != nil {
		select {
		case f.entered <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.calls.Add(1) <= f.failFirst {
		return errInjected
	}
	return f.dst.WriteBatches(ctx, bs)
}

// result records the calls of a batch's Done.
type result struct {
	calls atomic.Int32
	err   error // first call's
	done  chan struct{}
}

// track sets b.Done to record into a new result.
func track(b *persist.Batch) *result {
	r := &result{done: make(chan struct{})}
	b.Done = func(err error) {
		if r.calls.Add(1) == 1 {
			r.err = err
			close(r.done)
		}
	}
	return r
}

// enqueue tracks b (see track) and queues it in w, which must take it.
func enqueue(t testing.TB, w *persist.Writer, b *persist.Batch) *result {
	t.Helper()
	r := track(b)
	if !w.TryEnqueue(b) {
		t.Fatalf("TryEnqueue refused the batch of %s", b.Channel)
	}
	return r
}

// wait waits for r's first Done and returns its error. Call it from the
// test's goroutine only.
func (r *result) wait(t testing.TB) error {
	t.Helper()
	err, ok := r.await()
	if !ok {
		t.Fatal("Done not called in time")
	}
	return err
}

// await waits for r's first Done and returns its error; ok is false if it
// did not come in time.
func (r *result) await() (err error, ok bool) {
	select {
	case <-r.done:
		return r.err, true
	case <-time.After(waitTimeout):
		return nil, false
	}
}

// closeWriter closes w, failing t on error or timeout.
func closeWriter(t testing.TB, w *persist.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// metric returns the value of the counter or gauge name in reg, or the
// sample count and sum of the histogram name.
func metric(t testing.TB, reg *prometheus.Registry, name string) (value, sum float64) {
	t.Helper()
	if mf := family(t, reg, name); mf != nil {
		m := mf.GetMetric()[0]
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), 0
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), 0
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0, 0
}

// startHeld enqueues first on w, whose only worker writes through f, and
// waits until that worker is inside f with it, held there.
func startHeld(t testing.TB, w *persist.Writer, f *faulty, first *persist.Batch) *result {
	t.Helper()
	r := track(first)
	if !w.TryEnqueue(first) {
		t.Fatal("TryEnqueue refused")
	}
	select {
	case <-f.entered:
	case <-time.After(waitTimeout):
		t.Fatal("worker did not start writing")
	}
	return r
}

// releaseAll lets the write held by startHeld, and every later one, go
// through f, until t ends.
func releaseAll(t testing.TB, f *faulty) {
	stop := make(chan struct{})
	released := make(chan struct{})
	go func() {
		defer close(released)
		f.hold <- struct{}{} // the held one, which already entered
		for {
			select {
			case <-f.entered:
				f.hold <- struct{}{}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-released })
}

func TestWriterManyChannels(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	w := persist.NewWriter(s, persist.WriterConfig{Workers: 3, MaxRows: 40, Metrics: prom.New(reg)})
	const channels, batches = 40, 15
	at := time.Unix(1764300000, 0)

	var (
		mu      sync.Mutex
		results []*result
		total   int64
		lasts   = make([]int64, channels)
		wg      sync.WaitGroup
	)
	for c := range channels {
		id := fmt.Sprintf("ch%d", c)
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			// One batch in flight per channel; the last one is still
			// queued, or being written, when Close is called.
			var seq int64
			var prev *result
			for i := range batches {
				if prev != nil {
					if err, ok := prev.await(); err != nil || !ok {
						t.Errorf("%s batch %d: Done(%v) in time: %v", id, i, err, ok)
						return
					}
				}
				n := int64(1 + (c+i)%7)
				b := &persist.Batch{Channel: id, Messages: msgs(id, seq+1, seq+n, at), Close: i == batches-1}
				prev = track(b)
				for !w.TryEnqueue(b) {
					// Queue full: the caller keeps the batch and retries.
					// Cannot happen with 40 channels and 4096 slots.
					t.Errorf("TryEnqueue refused with a nearly empty queue")
					return
				}
				seq += n
				mu.Lock()
				results = append(results, prev)
				total += n
				mu.Unlock()
			}
			lasts[c] = seq
		})
	}
	wg.Wait()
	closeWriter(t, w)
	if w.TryEnqueue(&persist.Batch{Channel: "ch0"}) {
		t.Fatal("TryEnqueue after Close accepted a batch")
	}

	if len(results) != channels*batches {
		t.Fatalf("%d batches enqueued, want %d", len(results), channels*batches)
	}
	for i, r := range results {
		if n := r.calls.Load(); n != 1 || r.err != nil {
			t.Fatalf("batch %d: Done called %d times, err %v", i, n, r.err)
		}
	}
	for c := range channels {
		id := fmt.Sprintf("ch%d", c)
		checkMessages(t, s, id, lasts[c])
		if ch, _ := s.Channel(ctx, id); ch.Open() {
			t.Fatalf("%s still open after its closing batch", id)
		}
	}

	txs, rows := metric(t, reg, "messages_persist_batch_rows")
	if rows != float64(total) || txs < 1 || txs > float64(channels*batches) {
		t.Fatalf("batch_rows: %v transactions, %v rows; want %d rows", txs, rows, total)
	}
	if n, _ := metric(t, reg, "messages_persist_duration_seconds"); n != txs {
		t.Fatalf("duration_seconds has %v samples, want %v", n, txs)
	}
	if q, _ := metric(t, reg, "messages_persist_queue_batches"); q != 0 {
		t.Fatalf("queue_batches = %v after Close, want 0", q)
	}
	if e, _ := metric(t, reg, "messages_persist_errors_total"); e != 0 {
		t.Fatalf("errors_total = %v, want 0", e)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("metric lint: %v %v", problems, err)
	}
}

func TestWriterRetriesOutage(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	if _, err := s.CreateChannel(ctx, "o", nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f := &faulty{dst: s, failFirst: 3}
	w := persist.NewWriter(f, persist.WriterConfig{
		Workers: 2, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Metrics: prom.New(reg),
	})
	defer closeWriter(t, w)

	b := &persist.Batch{Channel: "o", Messages: msgs("o", 1, 4, time.Unix(1764300000, 0))}
	r := enqueue(t, w, b)
	if err := r.wait(t); err != nil {
		t.Fatalf("Done(%v) after the outage, want nil", err)
	}
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("%d WriteBatches calls, want 3 failures then 1 success", n)
	}
	checkMessages(t, s, "o", 4)
	if e, _ := metric(t, reg, "messages_persist_errors_total"); e != 3 {
		t.Fatalf("errors_total = %v, want 3", e)
	}
	if n, _ := metric(t, reg, "messages_persist_batch_rows"); n != 1 {
		t.Fatalf("batch_rows has %v samples, want 1 (failures are not observed)", n)
	}
}

func TestWriterCloseGivesUpDuringOutage(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	f := &faulty{dst: s, failFirst: 1 << 60, called: make(chan struct{}, 100)}
	w := persist.NewWriter(f, persist.WriterConfig{Workers: 2, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	var rs []*result
	for i := range 5 {
		id := fmt.Sprintf("down%d", i)
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		b := &persist.Batch{Channel: id, Messages: msgs(id, 1, 3, time.Unix(1764300000, 0))}
		rs = append(rs, enqueue(t, w, b))
	}
	// Let the outage be seen before giving up.
	for range 3 {
		select {
		case <-f.called:
		case <-time.After(waitTimeout):
			t.Fatal("writer did not try to write")
		}
	}
	closeCtx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Close(closeCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close(expired) = %v, want context.Canceled", err)
	}
	for i, r := range rs {
		if err := r.wait(t); !errors.Is(err, persist.ErrClosed) {
			t.Fatalf("batch %d: Done(%v), want ErrClosed", i, err)
		}
		if n := r.calls.Load(); n != 1 {
			t.Fatalf("batch %d: Done called %d times", i, n)
		}
	}
	if got, _ := s.Messages(ctx, "down0", 0, 10); len(got) != 0 {
		t.Fatalf("stored %d messages through a failing writer", len(got))
	}
}

func TestWriterQueueFullAndGrouping(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	for _, id := range []string{"g0", "g1", "g2"} {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	f := &faulty{dst: s, hold: make(chan struct{}), entered: make(chan struct{})}
	w := persist.NewWriter(f, persist.WriterConfig{Workers: 1, QueueLen: 3})
	at := time.Unix(1764300000, 0)

	r0 := startHeld(t, w, f, &persist.Batch{Channel: "g0", Messages: msgs("g0", 1, 2, at)})
	// Three more fill the queue; one of an unknown channel.
	queued := []*persist.Batch{
		{Channel: "g1", Messages: msgs("g1", 1, 1, at)},
		{Channel: "absent", Messages: msgs("absent", 1, 1, at)},
		{Channel: "g2", Messages: msgs("g2", 1, 3, at)},
	}
	var rs []*result
	for _, b := range queued {
		rs = append(rs, enqueue(t, w, b))
	}
	if w.TryEnqueue(&persist.Batch{Channel: "g0"}) {
		t.Fatal("TryEnqueue accepted a batch into a full queue")
	}

	// Release the writes: first, then the three together, which fail
	// because of the unknown channel, then the two others together.
	releaseAll(t, f)
	if err := r0.wait(t); err != nil {
		t.Fatalf("first: Done(%v)", err)
	}
	for i, r := range rs {
		err := r.wait(t)
		if wantNotFound := i == 1; wantNotFound != errors.Is(err, persist.ErrNotFound) || (!wantNotFound && err != nil) {
			t.Fatalf("queued batch %d (%s): Done(%v)", i, queued[i].Channel, err)
		}
	}
	closeWriter(t, w)
	checkMessages(t, s, "g0", 2)
	checkMessages(t, s, "g1", 1)
	checkMessages(t, s, "g2", 3)
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d WriteBatches calls, want 3 (first, the group of three, then the two others)", n)
	}
}

// family returns the metric family name of reg, nil if it has no series.
func family(t testing.TB, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// counter returns the value of the counter name{label=value} in reg, 0 if
// it has no such series.
func counter(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	for _, m := range family(t, reg, name).GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestWriterGivesUpOnlyTheFailingBatches groups, in one transaction,
// batches of two open channels with one of a closed channel and one whose
// id the database refuses: the two fail alone, with their reason, and the
// others are committed.
func TestWriterGivesUpOnlyTheFailingBatches(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	for _, id := range []string{"first", "a", "b", "shut"} {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Unix(1764300000, 0)
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "shut", Messages: msgs("shut", 1, 1, at), Close: true}}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f := &faulty{dst: s, hold: make(chan struct{}), entered: make(chan struct{})}
	w := persist.NewWriter(f, persist.WriterConfig{Workers: 1, Metrics: prom.New(reg),
		MinBackoff: time.Hour}) // a retry of a permanent failure would hang the test
	r0 := startHeld(t, w, f, &persist.Batch{Channel: "first", Messages: msgs("first", 1, 1, at)})
	const bad = "bad\x00id" // PostgreSQL text holds no NUL: 22021
	queued := []*persist.Batch{
		{Channel: "a", Messages: msgs("a", 1, 2, at)},
		{Channel: "shut", Messages: msgs("shut", 2, 2, at)},
		{Channel: bad, Messages: msgs(bad, 1, 1, at)},
		{Channel: "b", Messages: msgs("b", 1, 3, at)},
	}
	var rs []*result
	for _, b := range queued {
		rs = append(rs, enqueue(t, w, b))
	}
	releaseAll(t, f)
	if err := r0.wait(t); err != nil {
		t.Fatalf("first: Done(%v)", err)
	}
	for i, want := range []error{nil, persist.ErrChannelClosed, persist.ErrRejected, nil} {
		err := rs[i].wait(t)
		if (want == nil) != (err == nil) || !errors.Is(err, want) {
			t.Fatalf("batch of %q: Done(%v), want %v", queued[i].Channel, err, want)
		}
	}
	closeWriter(t, w)
	checkMessages(t, s, "a", 2)
	checkMessages(t, s, "b", 3)
	checkMessages(t, s, "shut", 1)
	for reason, want := range map[string]float64{"closed": 1, "rejected": 1, "not_found": 0} {
		if got := counter(t, reg, "messages_persist_failed_batches_total", "reason", reason); got != want {
			t.Errorf("failed_batches_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if e, _ := metric(t, reg, "messages_persist_errors_total"); e != 0 {
		t.Errorf("errors_total = %v, want 0: nothing was retried", e)
	}
}
