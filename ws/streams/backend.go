// Package streams makes every channel of a hub (package ws/hub) a Durable
// Streams stream: it implements the Backend that package ws/durable serves
// the protocol over. Appends go through the channel's actor, with the
// producer state and Stream-Seq committed in the same transaction as the
// messages; reads come from the actor's snapshot and the store; long-polls
// wait as subscribers.
//
// Files:
//
//   - backend.go: the Backend, its cache of stream state, appends, reads
//     and long-poll waits
//   - lifecycle.go: creating, forking and deleting streams
//   - catchup.go: catch-up reads planned to the snapshot's tail, then
//     streamed page by page
//   - store.go: the store timeout on Durable Streams store calls
//   - alone.go, cluster.go: what differs in cluster mode (the nodes):
//     nothing alone; appends forwarded to the owner of their channel, and
//     accesses and producer state shared through the store
package streams

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
)

// Store is what Durable Streams need from storage besides the hub's
// Store. *persist.Store implements it; every method must be safe for
// concurrent use.
type Store interface {
	// CreateStream records a new open channel with its stream
	// configuration; persist.ErrExists if the id is taken.
	CreateStream(ctx context.Context, id string, cfg persist.StreamConfig) (persist.Channel, error)
	// Stream returns a channel's stream state, or persist.ErrNotFound.
	Stream(ctx context.Context, id string) (persist.StreamState, error)
	// SaveStreamWrites records the last Stream-Seq and a producer's state.
	SaveStreamWrites(ctx context.Context, id, seq string, p *persist.ProducerState) error
	// DeleteChannel removes a channel and everything of it.
	DeleteChannel(ctx context.Context, id string) error
	// MarkDeleted marks a stream deleted while forks of it remain.
	MarkDeleted(ctx context.Context, id string) error
	// Forks counts the streams forked from id.
	Forks(ctx context.Context, id string) (int, error)
	// TouchStream records an access to a stream for the whole cluster.
	TouchStream(ctx context.Context, id string) error
	// StreamIdle returns how long ago the last access to a stream was
	// recorded.
	StreamIdle(ctx context.Context, id string) (time.Duration, error)
}

// Backend makes every channel a Durable Streams stream: appends go
// through the channel's actor and reads through its snapshot and the store,
// exactly as for WebSocket subscribers, so both APIs see the same messages
// with the same seqs. It is safe for concurrent use.
//
// It adds what the protocol needs on top of a channel: the content type
// and expiry, the last Stream-Seq and the idempotent producers, kept in the
// store and cached here. Writes to one stream through this API are
// serialised by the stream's write token (see streamState); the process is
// the channel's only owner
// (see the store's ownership lock), so the cache is authoritative. In
// cluster mode writes run on the channel's owner (see cluster.go),
// which reads the producers and Stream-Seq again from the store once per
// epoch of its actor: another node may have recorded newer ones while it
// owned the channel.
type Backend struct {
	h     *hub.Hub
	fwd   Forwarder // nil: every append runs here
	nodes nodes     // what differs in cluster mode: alone, or clustered
	store Store
	cfg   Config
	now   func() time.Time

	// mu guards the cache, never across I/O. Lock order: a stream's write
	// token, then the write token of the stream it was forked from (a
	// removed fork collects its deleted ancestors), then mu; whoever holds
	// mu only tries a token (cache), never waits for one.
	mu      sync.Mutex
	streams map[string]*streamState // Guarded by mu.
}

// streamState is the cached Durable Streams state of one channel.
type streamState struct {
	cfg  durable.Config // immutable; cfg.Fork is nil
	fork forkPoint      // immutable
	// gone is set once the stream is deleted while forks of it remain.
	gone atomic.Bool
	// deadline is the sliding TTL's expiry in Unix nanoseconds; 0 without
	// a TTL. In cluster mode it is this node's view only: the stream is
	// deleted once the store's record of the last access says so.
	deadline atomic.Int64
	// recorded is when this node last recorded an access in the store
	// (cluster mode), in Unix nanoseconds.
	recorded atomic.Int64

	// write is the stream's write token (capacity 1), held for the whole
	// of a write to the stream: its producer and Stream-Seq checks, its
	// append through the actor and the store writes. It is a channel,
	// not a mutex, so that a writer waiting behind a slow one (a store or
	// an actor that does not answer) gives up when its request's context
	// ends.
	write chan struct{}
	// Guarded by write.
	streamSeq string
	producers map[string]durable.Producer
	// epoch, in cluster mode, is the epoch of the owner's actor that
	// streamSeq and producers hold what it accepted for, committed or not
	// yet; 0 if none.
	epoch int64
	// stored, in cluster mode, is the producers and Stream-Seq as the
	// store held them at the request's start: what streamSeq and producers
	// hold beyond them was accepted by this node's actor and is not known
	// committed yet (see pending).
	stored    map[string]durable.Producer
	storedSeq string
	deleted   bool // removed from the store
	evicted   bool // dropped from the cache: load the stream again
}

// forkPoint is where a fork forked: after seq of from, plus sub bytes (JSON:
// messages) of the next message. The zero value is not a fork.
type forkPoint struct {
	from     string
	seq, sub int64
}

// Config configures a Backend. Zero values mean the defaults.
type Config struct {
	// MaxCached bounds the streams whose state is cached in memory; past
	// it, idle ones are dropped and read again from the store when needed.
	// Default 100,000.
	MaxCached int
	// Forwarder sends appends to the owner of their stream's channel in
	// cluster mode. Default: the hub's Cluster, if it implements
	// Forwarder.
	Forwarder Forwarder
}

// New returns the Durable Streams backend over h and store.
func New(h *hub.Hub, store Store, cfg Config) *Backend {
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 100_000
	}
	store = timedStreamStore{Store: store, timeout: h.Config().StoreTimeout}
	b := &Backend{h: h, store: store, cfg: cfg, now: time.Now, streams: make(map[string]*streamState)}
	b.nodes = alone{}
	if h.Cluster() != nil {
		b.nodes = clustered{b}
	}
	b.fwd = cfg.Forwarder
	if c := h.Cluster(); c != nil && b.fwd == nil {
		b.fwd, _ = c.(Forwarder)
	}
	return b
}

// Cached returns the number of streams whose state is cached.
func (b *Backend) Cached() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.streams)
}

// cache records st as the state of name, replacing any, and drops idle
// entries past the bound. Everything a stream's state holds is in the
// store, so a dropped entry is only read again; an entry being written
// (its write token held) is never dropped, and a writer that finds its entry
// dropped loads it again (see lock). Called with b.mu held.
func (b *Backend) cache(name string, st *streamState) {
	b.streams[name] = st
	for other, o := range b.streams {
		if len(b.streams) <= b.cfg.MaxCached {
			return
		}
		if other == name || !o.tryAcquire() {
			continue
		}
		o.evicted = true
		o.release()
		delete(b.streams, other)
	}
}

// lock returns the stream's state with its write token held, loading it
// again if it was dropped from the cache meanwhile.
func (b *Backend) lock(ctx context.Context, name string) (*streamState, error) {
	for {
		st, err := b.state(ctx, name)
		if err != nil {
			return st, err
		}
		if err := st.acquire(ctx); err != nil {
			return nil, err
		}
		if !st.evicted {
			return st, nil
		}
		st.release()
	}
}

// acquire takes st's write token, or returns ctx.Err() if ctx ends first.
func (st *streamState) acquire(ctx context.Context) error {
	select {
	case st.write <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryAcquire takes st's write token if it is free.
func (st *streamState) tryAcquire() bool {
	select {
	case st.write <- struct{}{}:
		return true
	default:
		return false
	}
}

// release gives st's write token back.
func (st *streamState) release() { <-st.write }

// unavailable marks errors the client may retry later (503).
type unavailable struct{ error }

func (unavailable) Unavailable() bool { return true }
func (u unavailable) Unwrap() error   { return u.error }

// streamErr maps a hub error to the protocol's.
func streamErr(err error) error {
	var se *hub.StoreError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hub.ErrNotFound), errors.Is(err, hub.ErrChannelDeleted):
		return durable.ErrNotFound
	case errors.Is(err, hub.ErrChannelClosed):
		return durable.ErrClosed
	case errors.Is(err, hub.ErrGeneratorChannel):
		return &durable.ConflictError{Msg: err.Error()}
	case errors.Is(err, hub.ErrTooLarge):
		return fmt.Errorf("%w: %w", durable.ErrTooLarge, err)
	case errors.Is(err, hub.ErrOverloaded), errors.Is(err, hub.ErrShuttingDown), errors.Is(err, hub.ErrChannelFailed),
		errors.Is(err, hub.ErrMoved), errors.Is(err, hub.ErrNoOwner), errors.Is(err, hub.ErrUncertain), errors.Is(err, hub.ErrCutOff),
		errors.As(err, &se):
		return unavailable{err}
	}
	return err
}

func (b *Backend) newState(cfg durable.Config, fork forkPoint) *streamState {
	cfg.Fork = nil
	st := &streamState{cfg: cfg, fork: fork, producers: make(map[string]durable.Producer), write: make(chan struct{}, 1)}
	if cfg.TTL > 0 {
		// New here: the store's record of the last access decides when
		// the deadline passes (cluster mode).
		st.deadline.Store(after(b.now(), ttlOf(cfg.TTL)))
	}
	return st
}

// touch restarts a stream's sliding TTL. In cluster mode it also records
// the access in the store, for every node to see, at most every quarter of
// the TTL (see ttlGrace); a failure to record it only leaves the record
// older, so the next touch tries again.
func (b *Backend) touch(ctx context.Context, name string, st *streamState) {
	if st.cfg.TTL <= 0 {
		return
	}
	now := b.now()
	ttl := ttlOf(st.cfg.TTL)
	st.deadline.Store(after(now, ttl))
	b.nodes.recordAccess(ctx, name, st, now, ttlGrace(ttl))
}

// ttlGrace is how much later than its TTL after its last access a stream
// may expire in cluster mode: accesses are recorded in the store at most
// this often, so the store's last access may be up to this much older
// than the true one.
func ttlGrace(ttl time.Duration) time.Duration { return ttl / 4 }

// expired decides, in cluster mode, whether stream name, whose sliding TTL
// passed in this node's view, has expired for the whole cluster: only if
// no node recorded an access for the TTL and its grace. Otherwise it moves
// this node's deadline to what the store says.
func (b *Backend) expired(ctx context.Context, name string, st *streamState) (bool, error) {
	idle, err := b.store.StreamIdle(ctx, name)
	if err != nil {
		return false, streamErr(hub.StoreErr(err))
	}
	ttl := ttlOf(st.cfg.TTL)
	left := ttl + ttlGrace(ttl) - idle
	if left <= 0 {
		return true, nil
	}
	st.deadline.Store(after(b.now(), left))
	return false, nil
}

// expiry is when st expires if nothing touches it; zero for never.
func (st *streamState) expiry() time.Time {
	if !st.cfg.ExpiresAt.IsZero() {
		return st.cfg.ExpiresAt
	}
	if d := st.deadline.Load(); d != 0 {
		return time.Unix(0, d)
	}
	return time.Time{}
}

// state returns the stream's state, loading it from the store on first
// use, or durable.ErrNotFound. A stream deleted while it has forks gives
// durable.ErrDeleted, with its state. An expired stream is deleted here.
func (b *Backend) state(ctx context.Context, name string) (*streamState, error) {
	for {
		st, err := b.load(ctx, name)
		if err != nil {
			return nil, err
		}
		if st.gone.Load() {
			return st, durable.ErrDeleted
		}
		exp := st.expiry()
		if exp.IsZero() || b.now().Before(exp) {
			return st, nil
		}
		if st.cfg.ExpiresAt.IsZero() {
			// Another node may have served the stream meanwhile.
			gone, err := b.nodes.expired(ctx, name, st)
			if err != nil {
				return nil, err
			}
			if !gone {
				return st, nil
			}
		}
		err = b.remove(ctx, name, st)
		if errors.Is(err, errEvicted) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st.gone.Load() {
			return st, durable.ErrDeleted
		}
		return nil, durable.ErrNotFound
	}
}

// load returns the cached state of a stream, reading it from the store if
// it is not cached.
func (b *Backend) load(ctx context.Context, name string) (*streamState, error) {
	b.mu.Lock()
	st := b.streams[name]
	b.mu.Unlock()
	if st != nil {
		return st, nil
	}
	ss, err := b.store.Stream(ctx, name)
	if err != nil {
		return nil, streamErr(hub.StoreErr(err))
	}
	cfg := durable.Config{ContentType: ss.ContentType, TTL: ss.TTL, ExpiresAt: ss.ExpiresAt}
	if cfg.ContentType == "" {
		cfg.ContentType = "text/plain"
	}
	st = b.newState(cfg, forkPoint{from: ss.ForkedFrom, seq: ss.ForkSeq, sub: ss.ForkSub})
	st.streamSeq = ss.StreamSeq
	for _, p := range ss.Producers {
		st.producers[p.ID] = durable.Producer{ID: p.ID, Epoch: p.Epoch, Seq: p.Seq}
	}
	st.gone.Store(ss.Deleted)
	b.mu.Lock()
	defer b.mu.Unlock()
	if existing := b.streams[name]; existing != nil {
		return existing, nil
	}
	b.cache(name, st)
	return st, nil
}

// info describes the stream now.
func (b *Backend) info(ctx context.Context, name string, st *streamState) (durable.Info, error) {
	snap, err := b.h.PeekTail(ctx, name)
	if err != nil {
		return durable.Info{}, streamErr(err)
	}
	return b.infoOf(st, snap), nil
}

func (b *Backend) infoOf(st *streamState, snap hub.View) durable.Info {
	return durable.Info{Config: st.cfg, Tail: durable.Pos{Epoch: snap.Epoch, Seq: snap.LastSeq},
		Closed: !snap.Open, Expires: st.expiry()}
}

// Stat implements durable.Backend.
func (b *Backend) Stat(ctx context.Context, name string) (durable.Info, error) {
	st, err := b.state(ctx, name)
	if err != nil {
		return durable.Info{}, err
	}
	return b.info(ctx, name, st)
}

// appendHere is Append on this node (see cluster.go for the
// routing in cluster mode). The messages are appended one by one to the
// channel. With a producer or a Stream-Seq, the new producer state
// (or Stream-Seq) travels with the last message and is committed in the
// same transaction as it, and the answer waits for that commit: a request
// is recorded if and only if its messages are, so that a retry is never
// appended twice, even across a crash.
func (b *Backend) appendHere(ctx context.Context, name string, a durable.Append) (durable.AppendResult, error) {
	// Again here, before any seq is assigned: a forwarded request was
	// checked by a node that may run another version.
	if err := checkAppend(a); err != nil {
		return durable.AppendResult{}, err
	}
	st, err := b.lock(ctx, name)
	if err != nil {
		return durable.AppendResult{}, err
	}
	defer st.release()
	if st.deleted {
		return durable.AppendResult{}, durable.ErrNotFound
	}
	if err := b.nodes.owned(ctx, name, st, a.Producer != nil || a.StreamSeq != ""); err != nil {
		return durable.AppendResult{}, err
	}
	b.touch(ctx, name, st)
	info, res, err, done := b.admit(ctx, name, st, a)
	if done {
		return res, err
	}
	record := a.Producer != nil || a.StreamSeq != ""
	var commit *hub.Commit
	if record {
		commit = &hub.Commit{StreamSeq: a.StreamSeq}
		if p := a.Producer; p != nil {
			commit.Producer = &persist.ProducerState{ID: p.ID, Epoch: p.Epoch, Seq: p.Seq}
		}
	}
	last, late, err := b.appendMessages(ctx, name, a.Messages, commit)
	if err != nil {
		return durable.AppendResult{Info: info}, err
	}
	if a.Close && late == nil {
		// Close flushes and returns once the close is durable.
		if _, err := b.h.Close(ctx, name); err != nil {
			return durable.AppendResult{Info: info}, streamErr(err)
		}
	}
	res = durable.AppendResult{Seq: last}
	if record {
		if err := b.record(ctx, name, st, a, commit, &res); err != nil {
			return durable.AppendResult{Info: info}, err
		}
	}
	res.Info, err = b.info(ctx, name, st)
	if late != nil {
		return res, late
	}
	return res, err
}

// admit checks a against the stream's state before anything is appended:
// an idempotent producer's duplicate or gap, a closed stream, a Stream-Seq
// that does not advance. When done, the append is answered with res and
// err; otherwise info is the stream's state to append to.
func (b *Backend) admit(ctx context.Context, name string, st *streamState, a durable.Append) (
	info durable.Info, res durable.AppendResult, err error, done bool) {
	if p := a.Producer; p != nil {
		cur, ok := st.producers[p.ID]
		dup, err := durable.CheckProducer(cur, ok, *p)
		if err != nil {
			return info, res, b.nodes.confirmRefusal(ctx, name, st, err), true
		}
		if dup {
			info, err := b.info(ctx, name, st)
			if err == nil && st.pending(*p) {
				return info, durable.AppendResult{Info: info}, errPending, true
			}
			return info, durable.AppendResult{Info: info, Duplicate: true, ProducerSeq: cur.Seq}, err, true
		}
	}
	if info, err = b.info(ctx, name, st); err != nil {
		return info, res, err, true
	}
	if info.Closed {
		if a.Close && len(a.Messages) == 0 && a.Producer == nil {
			return info, durable.AppendResult{Info: info}, nil, true // closing again is a no-op
		}
		return info, durable.AppendResult{Info: info}, durable.ErrClosed, true
	}
	if a.StreamSeq != "" && a.StreamSeq <= st.streamSeq {
		if st.stored != nil && a.StreamSeq > st.storedSeq {
			return info, durable.AppendResult{Info: info}, errPending, true
		}
		return info, durable.AppendResult{Info: info}, durable.ErrStreamSeq, true
	}
	return info, res, nil, false
}

// appendMessages appends msgs in one actor step (nothing comes between
// them, and they are persisted together, with commit) and returns the last
// seq. late is set when they were accepted but the answer could not wait
// for their persistence: the state is then recorded as for a success, so
// that a retry is a duplicate, and late is the answer (without a close,
// which would wait for the same persist).
func (b *Backend) appendMessages(ctx context.Context, name string, msgs [][]byte, commit *hub.Commit) (
	last int64, late, err error) {
	if len(msgs) == 0 {
		return 0, nil, nil
	}
	last, err = b.h.AppendBatch(ctx, name, msgs, commit != nil, commit)
	var pwe *hub.PersistWaitError
	switch {
	case errors.As(err, &pwe):
		return last, fmt.Errorf("%w: %v", durable.ErrPersistTimeout, err), nil
	case last != 0 && ctx.Err() != nil:
		return last, err, nil // accepted, and the client left while waiting
	case err != nil:
		return 0, nil, streamErr(err)
	}
	return last, nil, nil
}

// record keeps the stream state an append with producer headers or a
// Stream-Seq commits, and saves it when no message carried it (a close).
func (b *Backend) record(ctx context.Context, name string, st *streamState, a durable.Append, commit *hub.Commit,
	res *durable.AppendResult) error {
	if len(a.Messages) == 0 {
		// A close with producer headers: no message to commit with.
		if err := b.store.SaveStreamWrites(ctx, name, a.StreamSeq, commit.Producer); err != nil {
			return streamErr(hub.StoreErr(err))
		}
	}
	if a.StreamSeq != "" {
		st.streamSeq = a.StreamSeq
	}
	if p := a.Producer; p != nil {
		st.producers[p.ID] = *p
		res.ProducerSeq = p.Seq
	}
	return nil
}

// ttlOf returns a Stream-TTL of seconds as a duration, held at about 146
// years (half the longest duration, so that a grace can be added): the
// protocol allows up to 2^53-1 seconds, which would overflow, and a
// stream's expiry would land in the past.
func ttlOf(seconds int64) time.Duration {
	const longest = math.MaxInt64 / 2
	if seconds > int64(longest/time.Second) {
		return longest
	}
	return time.Duration(seconds) * time.Second
}

// after returns now+d in Unix nanoseconds, or the latest time they hold
// (year 2262) if that is earlier.
func after(now time.Time, d time.Duration) int64 {
	n := now.UnixNano()
	if d > time.Duration(math.MaxInt64-n) {
		return math.MaxInt64
	}
	return n + int64(d)
}

// checkAppend refuses, with a *durable.BadRequestError naming the header,
// a Stream-Seq or producer the store cannot hold (see persist.CheckField):
// such a value is refused before anything is appended, rather than by the
// database in the batch of other clients' messages.
func checkAppend(a durable.Append) error {
	var err error
	if a.StreamSeq != "" {
		err = persist.CheckField("Stream-Seq", a.StreamSeq)
	}
	if p := a.Producer; p != nil && err == nil {
		err = errors.Join(persist.CheckField("Producer-Id", p.ID),
			persist.CheckCount("Producer-Epoch", p.Epoch), persist.CheckCount("Producer-Seq", p.Seq))
	}
	if err != nil {
		return &durable.BadRequestError{Msg: strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	return nil
}

// readLimit bounds the messages of one read.
const readLimit = 1000

// Read implements durable.Backend.
func (b *Backend) Read(ctx context.Context, name string, from durable.Pos, maxBytes int) ([][]byte, durable.Info, error) {
	st, err := b.state(ctx, name)
	if err != nil {
		return nil, durable.Info{}, err
	}
	b.touch(ctx, name, st)
	if from == durable.PosNow {
		info, err := b.info(ctx, name, st)
		return nil, info, err
	}
	snap, err := b.h.Peek(ctx, name, from.Seq)
	if err != nil {
		return nil, durable.Info{}, streamErr(err)
	}
	info := b.infoOf(st, snap)
	if err := b.checkPos(ctx, name, from, snap); err != nil {
		return nil, info, err
	}
	var out [][]byte
	size := 0
	add := func(data []byte) bool {
		if len(out) > 0 && (size+len(data) > maxBytes || len(out) >= readLimit) {
			return false
		}
		out = append(out, data)
		size += len(data)
		return true
	}
	if from.Seq < snap.FromStore {
		rows, err := b.h.Store().Messages(ctx, name, from.Seq, min(readLimit, int(snap.FromStore-from.Seq)))
		if err != nil {
			return nil, info, streamErr(hub.StoreErr(err))
		}
		for _, m := range rows {
			if !add(m.Data) {
				return out, info, nil
			}
		}
	}
	hub.EachBuffered(snap.Buffered, func(seq, _ int64, data []byte) bool {
		return seq == from.Seq+int64(len(out))+1 && add(data)
	})
	return out, info, nil
}

// checkPos refuses a position past the tail, or past what survived of the
// epoch it was read in.
func (b *Backend) checkPos(ctx context.Context, name string, from durable.Pos, snap hub.View) error {
	// Epoch 0 is the current one: only the backend's own reads use it
	// past seq 0 (offsets never carry it).
	if from.Seq > 0 && from.Epoch != 0 && from.Epoch != snap.Epoch {
		survived, err := b.h.Store().Survived(ctx, name, from.Epoch)
		if err != nil {
			return streamErr(hub.StoreErr(err))
		}
		if from.Seq > survived {
			return durable.ErrGone
		}
	}
	if from.Seq > snap.LastSeq {
		return &durable.BadRequestError{Msg: "the offset is past the end of the stream"}
	}
	return nil
}

// Wait implements durable.Backend: it registers as a subscriber of the
// channel, like a WebSocket, and returns at the first live message.
func (b *Backend) Wait(ctx context.Context, name string, from durable.Pos) error {
	if _, err := b.state(ctx, name); err != nil {
		return err
	}
	snap, reg, err := b.h.Watch(ctx, name, from.Seq)
	if err != nil {
		return streamErr(err)
	}
	if reg == nil {
		return nil // closed, or already past from
	}
	defer b.h.Unregister(reg)
	if snap.LastSeq > from.Seq {
		return nil
	}
	select {
	case <-reg.Queue():
		return nil // a message, or the subscription ended
	case <-ctx.Done():
		return ctx.Err()
	}
}
