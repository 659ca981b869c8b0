package hub

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/messages-server/messages/internal/metric"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// History pages.
//
// Persisted history is immutable within an epoch, so catch-ups of the same
// channel can share it: the history is cut into pages of HistoryPage
// messages aligned on seq (page k holds seqs k·P+1 .. (k+1)·P), and each
// page is read from the store once and encoded once, as WebSocket frames
// ready to write. Every reader of the page writes the same bytes.
//
// A page is cached only when its content is final: all its seqs are
// durable (seq ≤ the persisted watermark), or the channel is closed and the
// page ends at its last seq. The head of a resume that starts inside a page,
// and the last, partly durable page of an open channel (as far as the actor
// no longer holds it), are read from the store for that reader alone, as
// before. A whole page may reach into what the actor still holds: the
// catch-up then skips that part of the actor's copy.
//
// The text stream (GET /?id=) needs the raw data, not the frames. Rather
// than keep both encodings of every page, a page holds only its frames, and
// the raw text is decoded from them on first use by a text reader and kept
// with the page (its bytes are then counted too). WebSocket readers, the
// common case, never pay for it.

// pageKey names a page: the channel, its epoch and the page's first seq.
type pageKey struct {
	channel string
	epoch   int64
	first   int64
}

// page is a run of contiguous persisted messages, encoded. It is immutable
// once built (but for text, built once) and shared by reference by every
// reader: nobody holds a lock while writing it to a socket, so a slow
// reader only keeps its own reference alive and never delays others.
type Page struct {
	first, last int64
	frames      [][]byte // batch frames, each of at most about maxRunBytes of data
	frameBytes  int64

	cache *pageCache // nil for a page that is not cached
	key   pageKey

	textOnce sync.Once
	text     []byte // the raw data of all messages, built by textData
}

// Frames returns p's encoded batch frames, to be written as they are.
// They are shared: the caller must not modify them.
func (p *Page) Frames() [][]byte { return p.frames }

// Count returns how many messages p holds.
func (p *Page) Count() int { return int(p.last - p.first + 1) }

// TextData returns the concatenated data of p's messages, decoding the
// frames on first use.
func (p *Page) TextData() ([]byte, error) {
	var err error
	p.textOnce.Do(func() {
		b := make([]byte, 0, p.frameBytes)
		for _, f := range p.frames {
			var fr wire.Frame
			fr, err = wire.DecodeFrame(f)
			if err != nil {
				return
			}
			for _, d := range fr.Data {
				b = append(b, d...)
			}
		}
		p.text = b
		if p.cache != nil {
			p.cache.grow(p, int64(cap(b)))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("hub: decode cached page: %w", err)
	}
	return p.text, nil
}

// newPage encodes stored rows, which are contiguous, as a page.
func newPage(rows []persist.Message, binary bool) *Page {
	p := &Page{first: rows[0].Seq, last: rows[len(rows)-1].Seq}
	for i := 0; i < len(rows); {
		j, size := i, 0
		for j < len(rows) && size < maxRunBytes {
			size += len(rows[j].Data)
			j++
		}
		run := rows[i:j]
		var b []byte
		if binary {
			b = binaryRun(run, size)
		} else {
			b = make([]byte, 0, size+size/8+len(run)*24+32)
			b = wire.AppendRun(b, run[0].Seq, len(run), func(k int) (int64, []byte) { return run[k].Time, run[k].Data })
		}
		p.frames = append(p.frames, b)
		p.frameBytes += int64(cap(b))
		i = j
	}
	return p
}

// binaryRun encodes the rows of a binary channel, whose data is size
// bytes, as one frame with their data base64-encoded.
func binaryRun(rows []persist.Message, size int) []byte {
	msgs := make([]*wire.Message, len(rows))
	for i, r := range rows {
		msgs[i] = wire.NewBinaryMessage(r.Seq, r.Time, r.Data)
	}
	return wire.AppendMessages(make([]byte, 0, size/3*4+len(rows)*28+48), msgs)
}

// pageOverhead approximates what a cached page costs besides its bytes:
// the page, its entry, list element and map slot.
const pageOverhead = 256

// pageCache is a bounded cache of history pages, evicted least recently
// used first when their bytes pass max. Concurrent readers of a page that
// is not cached wait for one load (request collapsing). Safe for concurrent
// use.
type pageCache struct {
	max int64
	m   *cacheMetrics
	// held and budget, when held is set, are the memory bound the cache
	// shares with the messages the channels hold (*held bytes): the cache
	// keeps *held plus its own bytes within budget, takes no page that
	// does not fit, and gives pages up (yield) when messages need room.
	held   *atomic.Int64
	budget int64
	used   atomic.Int64 // bytes, as c.bytes, readable without mu

	mu       sync.Mutex
	bytes    int64                    // guarded by mu: bytes of the pages in lru
	lru      list.List                // guarded by mu: of *cacheEntry, most recent first
	channels map[string]*channelPages // guarded by mu
}

// channelPages are the cached pages of one channel, all of one epoch.
type channelPages struct {
	epoch int64
	pages map[int64]*cacheEntry // by first seq
	// closed is set once the channel is known closed at lastSeq: its
	// readers then need no store lookup either. It lives as long as the
	// channel has pages cached.
	closed  bool
	lastSeq int64
}

// cacheEntry is a page being loaded or loaded.
type cacheEntry struct {
	key   pageKey
	elem  *list.Element // in lru once loaded; nil while loading or once removed
	ready chan struct{} // closed once the load is over; then page or err is set
	page  *Page
	err   error
	extra int64 // bytes of the page's text, counted once built
	// abandoned: the loader's own context ended the load; a waiter then
	// loads the page itself.
	abandoned bool
}

// newPageCache returns a cache of at most max bytes; with held set, it
// also keeps *held plus its bytes within budget.
func newPageCache(max int64, m *cacheMetrics, held *atomic.Int64, budget int64) *pageCache {
	return &pageCache{max: max, m: m, held: held, budget: budget, channels: make(map[string]*channelPages)}
}

// get returns the page key names, calling load to read it if it is not
// cached. Concurrent gets of a page that is not cached wait for the first
// one's load. A get for an older epoch than the cache has seen for the
// channel loads its page without caching it; one for a newer epoch drops
// the channel's pages of the older one.
func (c *pageCache) get(ctx context.Context, key pageKey, load func(context.Context) (*Page, error)) (*Page, error) {
	for {
		c.mu.Lock()
		cp := c.channels[key.channel]
		switch {
		case cp != nil && key.epoch < cp.epoch:
			c.mu.Unlock()
			c.m.misses.Inc()
			return load(ctx)
		case cp != nil && key.epoch > cp.epoch:
			c.dropLocked(key.channel)
			cp = nil
		}
		if cp == nil {
			cp = &channelPages{epoch: key.epoch, pages: make(map[int64]*cacheEntry)}
			c.channels[key.channel] = cp
		}
		if e := cp.pages[key.first]; e != nil {
			if e.elem != nil {
				c.lru.MoveToFront(e.elem)
				c.mu.Unlock()
				c.m.hits.Inc()
				return e.page, nil
			}
			c.mu.Unlock()
			c.m.collapsed.Inc()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if e.abandoned {
				continue
			}
			return e.page, e.err
		}
		e := &cacheEntry{key: key, ready: make(chan struct{})}
		cp.pages[key.first] = e
		c.mu.Unlock()
		c.m.misses.Inc()
		p, err := load(ctx)
		c.finish(e, p, err, ctx.Err() != nil)
		return p, err
	}
}

// finish ends e's load: the page is kept unless the load failed, the entry
// was dropped meanwhile, the page alone would fill the cache, or it does
// not fit beside the messages the channels hold.
func (c *pageCache) finish(e *cacheEntry, p *Page, err error, abandoned bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.page, e.err, e.abandoned = p, err, err != nil && abandoned
	defer close(e.ready) // after p is complete: waiters read it
	cp := c.channels[e.key.channel]
	if cp == nil || cp.epoch != e.key.epoch || cp.pages[e.key.first] != e {
		return // dropped while loading: the waiters get the page all the same
	}
	size := int64(0)
	if p != nil {
		size = p.frameBytes + pageOverhead
	}
	if err != nil || size > c.max/2 || (c.held != nil && c.held.Load()+size > c.budget) {
		c.removeLocked(cp, e)
		return
	}
	p.cache, p.key = c, e.key
	e.elem = c.lru.PushFront(e)
	c.addLocked(size)
}

// grow counts n more bytes of p, if p is still cached.
func (c *pageCache) grow(p *Page, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.channels[p.key.channel]
	if cp == nil || cp.epoch != p.key.epoch {
		return
	}
	if e := cp.pages[p.key.first]; e != nil && e.elem != nil && e.page == p {
		e.extra += n
		c.addLocked(n)
	}
}

// addLocked counts n more bytes and evicts the least recently used pages
// past the bounds.
func (c *pageCache) addLocked(n int64) {
	c.bytes += n
	c.used.Store(c.bytes)
	for c.bytes > c.max || (c.held != nil && c.held.Load()+c.bytes > c.budget) {
		if !c.evictLocked() {
			break
		}
	}
	c.m.bytes.Set(float64(c.bytes))
}

// evictLocked evicts the least recently used page; false if there is none.
func (c *pageCache) evictLocked() bool {
	back := c.lru.Back()
	if back == nil {
		return false
	}
	e := back.Value.(*cacheEntry)
	c.removeLocked(c.channels[e.key.channel], e)
	c.m.evictions.Inc()
	return true
}

// yield evicts the least recently used pages until the messages the
// channels hold and the cache fit in the shared budget again: messages
// come first. Cheap when they fit.
func (c *pageCache) yield() {
	if c.held == nil || c.used.Load() == 0 || c.held.Load()+c.used.Load() <= c.budget {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.held.Load()+c.bytes > c.budget {
		if !c.evictLocked() {
			return
		}
	}
}

// removeLocked forgets e, and its channel once it has no page left.
func (c *pageCache) removeLocked(cp *channelPages, e *cacheEntry) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
		c.bytes -= e.page.frameBytes + pageOverhead + e.extra
		c.used.Store(c.bytes)
		c.m.bytes.Set(float64(c.bytes))
	}
	delete(cp.pages, e.key.first)
	if len(cp.pages) == 0 {
		delete(c.channels, e.key.channel)
	}
}

// dropLocked forgets every page of channel id. Loads in progress finish
// for their waiters but are not kept.
func (c *pageCache) dropLocked(id string) {
	cp := c.channels[id]
	if cp == nil {
		return
	}
	for _, e := range cp.pages {
		c.removeLocked(cp, e)
	}
	delete(c.channels, id)
}

// markClosed records that channel id is closed at lastSeq in epoch, if
// pages of that epoch are cached: a closed channel never changes again.
func (c *pageCache) markClosed(id string, epoch, lastSeq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp := c.channels[id]; cp != nil && cp.epoch == epoch {
		cp.closed, cp.lastSeq = true, lastSeq
	}
}

// closedChannel returns the epoch and last seq of channel id if it is
// known closed.
func (c *pageCache) closedChannel(id string) (epoch, lastSeq int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp := c.channels[id]; cp != nil && cp.closed {
		return cp.epoch, cp.lastSeq, true
	}
	return 0, 0, false
}

// invalidate forgets every page of channel id.
func (c *pageCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
}

// size returns the bytes of the cached pages.
func (c *pageCache) size() int64 { return c.used.Load() }

// InvalidateHistory forgets the cached history pages of channel id, and
// that it is closed. Call it when the channel's stored history changes
// other than by a new epoch (a new epoch makes the old pages unreachable by
// itself), e.g. once the channel is deleted. Safe for concurrent use.
func (h *Hub) InvalidateHistory(id string) {
	if h.cache != nil {
		h.cache.invalidate(id)
	}
}

// HistoryCacheBytes returns the bytes held by the history page cache, at
// most Config.HistoryCacheBytes (pages being written to a reader after
// they were evicted are not counted). Safe for concurrent use.
func (h *Hub) HistoryCacheBytes() int64 {
	if h.cache == nil {
		return 0
	}
	return h.cache.size()
}

// cacheMetrics are the page cache's metrics.
type cacheMetrics struct {
	hits, misses, collapsed, evictions metric.Counter
	bytes                              metric.Gauge
}

// newCacheMetrics makes the page cache's metrics with r.
func newCacheMetrics(r metric.Registry) *cacheMetrics {
	counter := func(name, help string) metric.Counter {
		return r.Counter(metric.Opts{Namespace: "messages", Subsystem: "history_cache", Name: name, Help: help})
	}
	return &cacheMetrics{
		hits:      counter("hits_total", "History pages served from the cache."),
		misses:    counter("misses_total", "History pages read from the store, one query each."),
		collapsed: counter("collapsed_total", "History page reads that waited for another reader's load of the same page instead of querying the store."),
		evictions: counter("evictions_total", "History pages evicted to keep the cache within its bytes."),
		bytes: r.Gauge(metric.Opts{Namespace: "messages", Subsystem: "history_cache", Name: "bytes",
			Help: "Bytes of the history pages held by the cache."}),
	}
}
