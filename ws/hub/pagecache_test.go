package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// countingStore counts history queries, and holds each one until gate is
// closed, and channel lookups.
type countingStore struct {
	Store
	queries atomic.Int64
	gate    chan struct{}
	lookups atomic.Int64
}

func (s *countingStore) Channel(ctx context.Context, id string) (persist.Channel, error) {
	s.lookups.Add(1)
	return s.Store.Channel(ctx, id)
}

func (s *countingStore) Messages(ctx context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	s.queries.Add(1)
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Messages(ctx, id, after, limit)
}

// memSink records a stream as the frames a WebSocket reader would get.
type memSink struct {
	frames [][]byte
	liveAt chan int64 // gets the live seq, if not nil
}

func (s *memSink) Hello(HelloInfo) error { return nil }

func (s *memSink) Messages(msgs []*wire.Message, _ bool) error {
	s.frames = append(s.frames, wire.AppendMessages(nil, msgs))
	return nil
}

func (s *memSink) Page(p *Page) error {
	s.frames = append(s.frames, p.frames...)
	return nil
}

func (s *memSink) Live(seq int64) error {
	if s.liveAt != nil {
		s.liveAt <- seq
	}
	return nil
}

func (s *memSink) End(int64) error { return nil }

// data returns the messages' data in order, and fails t unless their seqs
// are 1..n.
func (s *memSink) data(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	next := int64(1)
	for _, f := range s.frames {
		fr, err := wire.DecodeFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Seq != next {
			t.Fatalf("frame starts at seq %d, want %d", fr.Seq, next)
		}
		next += int64(len(fr.Data))
		for _, d := range fr.Data {
			b.WriteString(d)
		}
	}
	return b.String()
}

// storeClosed puts a closed channel of n generated lines into st.
func storeClosed(st *memStore, id string, epoch, n int64) string {
	var content strings.Builder
	msgs := make([]persist.Message, n)
	for i := range msgs {
		seq := int64(i) + 1
		msgs[i] = persist.Message{Seq: seq, Time: 1_700_000_000_000_000 + seq, Data: []byte(fmt.Sprintf("%d: %s\n", seq, id))}
		content.Write(msgs[i].Data)
	}
	st.Put(persist.Channel{ID: id, Epoch: epoch, LastSeq: n, CreatedAt: time.Now(), ClosedAt: time.Now()}, msgs)
	return content.String()
}

// TestPageCacheCollapses: readers of a closed channel that all arrive
// before its first page is loaded cause one store query for it, and one
// per page in all; all get the same bytes.
func TestPageCacheCollapses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		content := storeClosed(st, "c", 1, 250)
		cs := &countingStore{Store: st, gate: make(chan struct{})}
		h := New(Config{Store: cs, Writer: &memWriter{Store: st}, HistoryPage: 100, Metrics: NewMetrics(prom.New(nil))})
		defer h.Stop(context.Background())

		const readers = 20
		sinks := make([]*memSink, readers)
		errs := make([]error, readers)
		var wg sync.WaitGroup
		release := sync.OnceFunc(func() { close(cs.gate) })
		defer func() { // on failure too: no reader is left blocked
			release()
			wg.Wait()
		}()
		for i := range sinks {
			sinks[i] = &memSink{}
			wg.Go(func() { errs[i] = h.Stream(context.Background(), "c", 0, "", sinks[i]) })
		}
		synctest.Wait() // every reader waits: one in the store, the others for its load
		if q := cs.queries.Load(); q != 1 {
			t.Fatalf("%d store queries for the first page, want 1", q)
		}
		if c := value(h.metrics.cache.collapsed); c != readers-1 {
			t.Fatalf("collapsed = %v, want %d", c, readers-1)
		}
		release()
		wg.Wait()
		for i, s := range sinks {
			if errs[i] != nil {
				t.Fatalf("reader %d: %v", i, errs[i])
			}
			if got := s.data(t); got != content {
				t.Fatalf("reader %d got %d bytes, want the %d of the channel", i, len(got), len(content))
			}
			if !bytes.Equal(bytes.Join(s.frames, nil), bytes.Join(sinks[0].frames, nil)) {
				t.Fatalf("reader %d got other bytes than reader 0", i)
			}
		}
		if q := cs.queries.Load(); q != 3 {
			t.Fatalf("%d store queries for 3 pages, want 3", q)
		}
		if m := value(h.metrics.cache.misses); m != 3 {
			t.Fatalf("misses = %v, want 3", m)
		}
		if n := value(h.metrics.cache.hits) + value(h.metrics.cache.collapsed); n != 3*readers-3 {
			t.Fatalf("hits + collapsed = %v, want %d", n, 3*readers-3)
		}

		// The cache now knows the channel is closed: a later reader needs
		// neither a history query nor a channel lookup, until the channel's
		// pages are invalidated.
		for _, invalidate := range []bool{false, true} {
			if invalidate {
				h.InvalidateHistory("c")
			}
			lookups, queries := cs.lookups.Load(), cs.queries.Load()
			s := &memSink{}
			if err := h.Stream(context.Background(), "c", 0, "", s); err != nil || s.data(t) != content {
				t.Fatalf("later reader: %v", err)
			}
			if l, q := cs.lookups.Load()-lookups, cs.queries.Load()-queries; (l == 0) == invalidate || (q == 0) == invalidate {
				t.Fatalf("invalidated %v: the later reader made %d channel lookups and %d history queries", invalidate, l, q)
			}
		}
	})
}

// rowsPage builds a page of n messages from first, each of size bytes.
func rowsPage(first int64, n, size int) *Page {
	rows := make([]persist.Message, n)
	for i := range rows {
		rows[i] = persist.Message{Seq: first + int64(i), Time: 1, Data: bytes.Repeat([]byte{'x'}, size)}
	}
	return newPage(rows, false)
}

// getPage gets page (id, epoch, first) of 10 messages of 100 bytes from c,
// and reports whether it had to be loaded.
func getPage(t *testing.T, c *pageCache, id string, epoch, first int64) (*Page, bool) {
	t.Helper()
	loaded := false
	p, err := c.get(context.Background(), pageKey{id, epoch, first}, func(context.Context) (*Page, error) {
		loaded = true
		return rowsPage(first, 10, 100), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, loaded
}

// TestPageCacheEvictsByBytes: past its bytes, the cache evicts the least
// recently used pages, and counts what it holds.
func TestPageCacheEvictsByBytes(t *testing.T) {
	one := rowsPage(1, 10, 100).frameBytes + pageOverhead
	m := newCacheMetrics(prom.New(nil))
	c := newPageCache(3*one, m, nil, 0)
	for _, first := range []int64{1, 11, 21} {
		if _, loaded := getPage(t, c, "a", 1, first); !loaded {
			t.Fatalf("page %d: not loaded", first)
		}
	}
	if c.size() != 3*one {
		t.Fatalf("size %d, want %d", c.size(), 3*one)
	}
	getPage(t, c, "a", 1, 1) // now the most recent
	if _, loaded := getPage(t, c, "b", 1, 1); !loaded {
		t.Fatal("page b/1 not loaded")
	}
	if c.size() != 3*one || value(m.evictions) != 1 || value(m.bytes) != float64(3*one) {
		t.Fatalf("size %d, evictions %v, gauge %v; want %d, 1, %d", c.size(), value(m.evictions), value(m.bytes), 3*one, 3*one)
	}
	if _, loaded := getPage(t, c, "a", 1, 1); loaded {
		t.Fatal("the most recently used page was evicted")
	}
	if _, loaded := getPage(t, c, "a", 1, 11); !loaded {
		t.Fatal("the least recently used page was not evicted")
	}
	// A text reader's copy is counted, and given back on eviction.
	p, _ := getPage(t, c, "a", 1, 11)
	text, err := p.TextData()
	if err != nil || string(text) != strings.Repeat("x", 1000) {
		t.Fatalf("text: %d bytes, %v", len(text), err)
	}
	// The text made the cache too large: the least recently used page went.
	if c.size() != 2*one+int64(cap(text)) || value(m.evictions) != 3 {
		t.Fatalf("size %d, evictions %v; want %d (two pages and a text), 3", c.size(), value(m.evictions), 2*one+int64(cap(text)))
	}
	for _, id := range []string{"a", "b"} {
		c.invalidate(id)
	}
	if c.size() != 0 || value(m.bytes) != 0 {
		t.Fatalf("size %d after invalidating everything, want 0", c.size())
	}
	if hits := value(m.hits); hits != 3 {
		t.Fatalf("hits = %v, want 3", hits)
	}
}

// TestPageCacheEpochs: a new epoch drops the old epoch's pages; a reader
// still at the old epoch reads without caching; InvalidateHistory drops
// everything.
func TestPageCacheEpochs(t *testing.T) {
	one := rowsPage(1, 10, 100).frameBytes + pageOverhead
	c := newPageCache(100*one, newCacheMetrics(prom.New(nil)), nil, 0)
	getPage(t, c, "a", 1, 1)
	getPage(t, c, "a", 1, 11)
	if _, loaded := getPage(t, c, "a", 2, 1); !loaded {
		t.Fatal("page of the new epoch not loaded")
	}
	if c.size() != one {
		t.Fatalf("size %d after the new epoch, want one page (%d)", c.size(), one)
	}
	if _, loaded := getPage(t, c, "a", 1, 11); !loaded {
		t.Fatal("page of the old epoch served after the new epoch")
	}
	if _, loaded := getPage(t, c, "a", 2, 1); loaded || c.size() != one {
		t.Fatalf("loaded %v, size %d: the old epoch's reader changed the cache", loaded, c.size())
	}
	h := &Hub{cache: c}
	h.InvalidateHistory("a")
	if h.HistoryCacheBytes() != 0 {
		t.Fatalf("size %d after InvalidateHistory", h.HistoryCacheBytes())
	}
	if _, loaded := getPage(t, c, "a", 2, 1); !loaded {
		t.Fatal("page served after InvalidateHistory")
	}
}

// TestPageCacheAbandonedLoad: when the reader loading a page goes away,
// a reader waiting for it loads the page itself instead of failing.
func TestPageCacheAbandonedLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newCacheMetrics(prom.New(nil))
		c := newPageCache(1<<20, m, nil, 0)
		key := pageKey{"a", 1, 1}
		ctx, cancel := context.WithCancel(context.Background())
		var first error
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, first = c.get(ctx, key, func(ctx context.Context) (*Page, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})
		}()
		synctest.Wait()
		var second *Page
		var err error
		waited := make(chan struct{})
		go func() {
			defer close(waited)
			second, err = c.get(context.Background(), key, func(context.Context) (*Page, error) { return rowsPage(1, 10, 100), nil })
		}()
		synctest.Wait()
		cancel()
		<-done
		<-waited
		if !errors.Is(first, context.Canceled) || err != nil || second == nil || second.last != 10 {
			t.Fatalf("first: %v; second: %v, %v", first, second, err)
		}
		if _, loaded := getPage(t, c, "a", 1, 1); loaded {
			t.Fatal("the second load was not cached")
		}
	})
}

// TestPageCacheOpenChannel: on an open channel a whole durable page is
// cached even when it reaches into what the actor still holds; the
// catch-up then skips that part of the actor's copy: no duplicate, no gap.
func TestPageCacheOpenChannel(t *testing.T) {
	h, st, _ := newTestHub(t, Config{HistoryPage: 100, RetainMessages: 50, RetainBytes: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.Create(ctx, "o", nil, 0); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= 130; i++ {
		d := fmt.Sprintf("%d: o\n", i)
		want.WriteString(d)
		if _, err := h.Append(ctx, "o", []byte(d), i == 130); err != nil { // the last waits until all are durable
			t.Fatal(err)
		}
	}
	for k := range 2 {
		s := &memSink{liveAt: make(chan int64, 1)}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- h.Stream(sctx, "o", 0, "", s) }()
		select {
		case seq := <-s.liveAt:
			if seq != 130 {
				t.Fatalf("live at %d, want 130", seq)
			}
		case err := <-done:
			t.Fatalf("stream ended before live: %v", err)
		}
		stop()
		<-done
		if got := s.data(t); got != want.String() {
			t.Fatalf("reader %d got %q", k, got)
		}
		if len(s.frames) < 2 || !bytes.HasPrefix(s.frames[0], []byte(`{"type":"batch","seq":1,`)) {
			t.Fatalf("reader %d: first frame %.40s, want the page 1..100", k, s.frames[0])
		}
	}
	if hits, misses := value(h.metrics.cache.hits), value(h.metrics.cache.misses); hits != 1 || misses != 1 {
		t.Fatalf("hits %v, misses %v; want 1 and 1", hits, misses)
	}
	_ = st
}

// TestPageCacheSharesMemoryBound: cached history pages count in the
// server's memory bound (MaxBufferedBytes) with the messages the channels
// hold. Appends are not refused for the cache's sake: it gives pages up
// first; a page that does not fit beside the messages is served but not
// kept; and only messages alone past the bound are refused.
func TestPageCacheSharesMemoryBound(t *testing.T) {
	const budget = 4 << 20
	h, st, w := newTestHub(t, Config{MaxBufferedBytes: budget, HistoryCacheBytes: 8 << 20, HistoryPage: 1000})
	ctx := context.Background()
	within := func(when string) {
		t.Helper()
		if m, c := h.memBytes.Load(), h.HistoryCacheBytes(); m+c > budget {
			t.Fatalf("%s: messages %d + cache %d bytes = %d, past the bound of %d", when, m, c, m+c, budget)
		}
	}

	// A closed channel of three pages of about a megabyte each.
	var content strings.Builder
	msgs := make([]persist.Message, 3000)
	for i := range msgs {
		msgs[i] = persist.Message{Seq: int64(i) + 1, Time: 1, Data: []byte(fmt.Sprintf("%0999d\n", i))}
		content.Write(msgs[i].Data)
	}
	st.Put(persist.Channel{ID: "old", Epoch: 1, LastSeq: 3000, CreatedAt: time.Now(), ClosedAt: time.Now()}, msgs)
	read := func() {
		t.Helper()
		s := &memSink{}
		if err := h.Stream(ctx, "old", 0, "", s); err != nil || s.data(t) != content.String() {
			t.Fatalf("reading the closed channel: %v", err)
		}
	}
	read()
	if c := h.HistoryCacheBytes(); c < 3<<20 {
		t.Fatalf("the cache holds %d bytes after reading three pages of a megabyte", c)
	}
	within("after the first read")

	// Unpersisted messages fill most of the bound: accepted, the cache
	// making room.
	w.Block(true)
	if _, err := h.Create(ctx, "new", nil, 0); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte{'m'}, 10_000)
	for h.memBytes.Load() < budget*3/4 {
		if _, err := h.Append(ctx, "new", msg, false); err != nil {
			t.Fatalf("append with %d bytes of messages and %d cached: %v", h.memBytes.Load(), h.HistoryCacheBytes(), err)
		}
		within("appending")
	}
	evicted := value(h.metrics.cache.evictions)
	if evicted == 0 {
		t.Fatal("no page was evicted to make room for the messages")
	}

	// A reader now gets the whole channel; pages that do not fit beside
	// the messages are not kept.
	read()
	within("reading beside the messages")

	// Past the bound with messages alone: refused, the cache empty.
	var err error
	for range budget / len(msg) {
		if _, err = h.Append(ctx, "new", msg, false); err != nil {
			break
		}
		within("appending to the bound")
	}
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("appending past the bound: %v, want ErrOverloaded", err)
	}
	if c := h.HistoryCacheBytes(); c != 0 {
		t.Fatalf("the cache holds %d bytes while appends are refused", c)
	}
	w.Block(false)
}

// value reads a hub metric the tests made with Prometheus.
func value(m any) float64 { return testutil.ToFloat64(m.(prometheus.Collector)) }
