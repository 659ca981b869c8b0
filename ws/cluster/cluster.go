// Package cluster links the hubs of several messages nodes that share one
// PostgreSQL database, over NATS: it implements hub.Cluster and
// streams.Forwarder, and serves what other nodes forward. It imports the
// core (ws/hub) and Durable Streams (ws/streams), not the HTTP front.
//
// PostgreSQL holds who owns each channel (a lease and an epoch, see
// persist.Config.Node); NATS carries the rest. Each node serves remote
// calls on its own subject (append, Durable Streams append, close, delete,
// snapshot, ping: request/reply) and the owner of each channel publishes the channel's events (messages,
// persisted watermark, end, take-over) on the channel's subject, which the
// followers on other nodes subscribe to. A Node also renews its leases in
// bulk while NATS is reachable, stops the channels it lost, and takes over
// the generators of nodes that are gone. No consensus of its own: the
// database's row locks decide every take-over.
//
// Files:
//
//   - cluster.go: the Node, its configuration, and the hub.Cluster methods
//   - serve.go: the remote calls served for other nodes, and the leases
//   - codec.go: the events and the calls on the wire, and their errors
//   - metrics.go: the cluster's Prometheus collectors
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/streams"
)

// Store is what a Node needs of the store, in cluster mode.
// *persist.Store implements it.
type Store interface {
	// Node returns this node's id.
	Node() string
	// Lease returns how long a lease holds without renewal.
	Lease() time.Duration
	// RenewLeases renews this node's leases and returns their channels.
	RenewLeases(ctx context.Context) ([]string, error)
	// ReleaseLeases ends this node's leases.
	ReleaseLeases(ctx context.Context) error
	// Orphans returns open channels with a generator and no live lease.
	Orphans(ctx context.Context, limit int) ([]string, error)
	// Channel returns a channel's record.
	Channel(ctx context.Context, id string) (persist.Channel, error)
}

// Config configures a Node. Conn, Store and Hub are required (Hub may be
// set after New, before Start); the zero value of the rest means its
// default.
type Config struct {
	// Conn is the connection to NATS. The Node does not close it.
	Conn *nats.Conn
	// Store is the store, in cluster mode: it names the node and the
	// lease time.
	Store Store
	// Prefix starts every subject the cluster uses. Default "messages".
	// Clusters that share a NATS server need different prefixes.
	Prefix string
	// WaitTimeout is added to RequestTimeout for an append that waits
	// until it is persisted, on the asking node and on the owner alike:
	// the owner answers it after at most its hub's persist-wait timeout,
	// which must be shorter (504 with the seq). Default 35s (that
	// timeout's default, 30s, and a margin).
	WaitTimeout time.Duration
	// RequestTimeout bounds a remote call that has no deadline of its
	// own. A write sent to an owner that dies before it answers waits for
	// this long, then fails as uncertain (503). Default: twice the lease,
	// and at least 5s.
	RequestTimeout time.Duration
	// Logger receives the cluster's logs. Default: discard.
	Logger *slog.Logger
	// Registerer gets the cluster's metrics. Nil registers nothing.
	Registerer prometheus.Registerer
}

// Node is this process's member of the cluster. Create it with New, set
// it as the hub's Cluster, Start it once the hub runs, and Stop it after
// the hub has stopped. Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	nc    *nats.Conn
	node  string
	lease time.Duration
	log   *slog.Logger
	m     *metrics

	mu      sync.Mutex
	hub     *hub.Hub           // guarded by mu; set by Start
	streams *streams.Backend   // guarded by mu; set by ServeStreams
	sub     *nats.Subscription // guarded by mu: the rpc subscription
	hsub    *nats.Subscription // guarded by mu: the history invalidations

	renewed time.Time // last successful lease renewal; owned by leases

	ctx    context.Context    // ends when Stop is called
	cancel context.CancelFunc // cancels ctx
	wg     sync.WaitGroup     // the loops and the remote calls being served
}

// New returns a Node of the cluster that cfg describes; Start starts it.
func New(cfg Config) (*Node, error) {
	if cfg.Conn == nil || cfg.Store == nil {
		return nil, errors.New("cluster: a NATS connection and a store are required")
	}
	if err := ValidNodeID(cfg.Store.Node()); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "messages"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = max(2*cfg.Store.Lease(), 5*time.Second)
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 35 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, nc: cfg.Conn, node: cfg.Store.Node(), lease: cfg.Store.Lease(),
		log: cfg.Logger.With(slog.String("node", cfg.Store.Node())), ctx: ctx, cancel: cancel}
	n.m = newMetrics(n, cfg.Registerer)
	return n, nil
}

// nodeIDPattern is what a node id may hold: it is a NATS subject token.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidNodeID reports whether id can name a node: 1 to 64 of
// [A-Za-z0-9_-].
func ValidNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("cluster: node id %q is not 1 to 64 of [A-Za-z0-9_-]", id)
	}
	return nil
}

// DefaultNodeID returns the host name (cut to what a node id may hold)
// and a random suffix, so that a restarted process is a new node.
func DefaultNodeID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 128 && nodeIDPattern.MatchString(string(r)) {
			return r
		}
		return '-'
	}, host)
	if len(host) > 48 {
		host = host[:48]
	}
	if host == "" {
		host = "node"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// Start serves remote calls for hub and starts the lease loop. The hub
// must have this Node as its Cluster.
func (n *Node) Start(h *hub.Hub) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hub != nil {
		return errors.New("cluster: node already started")
	}
	n.hub = h
	sub, err := n.nc.Subscribe(rpcSubject(n.cfg.Prefix, n.node), n.serve)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.sub = sub
	// Deletes and take-overs anywhere drop this node's cached history of
	// the channel (the cache also checks the store before it trusts a
	// closed channel, for an invalidation NATS lost).
	hsub, err := n.nc.Subscribe(historySubject(n.cfg.Prefix), func(msg *nats.Msg) {
		h.InvalidateHistory(string(msg.Data))
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.hsub = hsub
	if err := n.nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("cluster: NATS does not answer: %w", err)
	}
	n.wg.Go(n.leases)
	n.log.Info("cluster node started", slog.Duration("lease", n.lease))
	return nil
}

// ServeStreams has this node serve the Durable Streams appends other nodes
// forward to it with b, the Durable Streams backend over its hub. Until it
// is called, such appends are refused.
func (n *Node) ServeStreams(b *streams.Backend) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.streams = b
}

// Stop stops serving remote calls, waits for those being served and for
// the lease loop, and releases this node's leases so that other nodes take
// its channels over at once. Call it after the hub has stopped (its last
// batches are written), before closing the NATS connection.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	sub, hsub := n.sub, n.hsub
	n.sub, n.hsub = nil, nil
	n.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	if hsub != nil {
		_ = hsub.Unsubscribe()
	}
	n.cancel()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("cluster: stop: %w", ctx.Err())
	}
	if err := n.cfg.Store.ReleaseLeases(ctx); err != nil {
		return err
	}
	return nil
}

// Ready reports whether NATS is reachable: a node cut from it can neither
// forward nor follow, and stops renewing its leases.
func (n *Node) Ready(context.Context) error {
	if !n.nc.IsConnected() {
		return fmt.Errorf("NATS is unreachable (%s)", n.nc.Status())
	}
	return nil
}

// Node implements hub.Cluster.
func (n *Node) Node() string { return n.node }

// Connected implements hub.Cluster: NATS is reachable.
func (n *Node) Connected() bool { return n.nc.IsConnected() }

// Lease implements hub.Cluster.
func (n *Node) Lease() time.Duration { return n.lease }

// Publish implements hub.Cluster. While NATS is unreachable the client
// buffers what it can; an event that is lost shows as a gap to the
// followers, which then resync. A deletion or a take-over is also sent to
// every node, which drops its cached history of the channel.
func (n *Node) Publish(ev hub.Event) {
	subject := eventSubject(n.cfg.Prefix, ev.Channel)
	for _, b := range encodeEvents(ev, int(n.nc.MaxPayload())) {
		if err := n.nc.Publish(subject, b); err != nil {
			n.m.publishErrors.Inc()
			return
		}
	}
	if ev.Kind == hub.EventDeleted || ev.Kind == hub.EventEpoch {
		if err := n.nc.Publish(historySubject(n.cfg.Prefix), []byte(ev.Channel)); err != nil {
			n.m.publishErrors.Inc()
		}
	}
}

// Forward implements hub.Cluster.
func (n *Node) Forward(ctx context.Context, node string, w hub.Write) (int64, error) {
	req := request{Op: opAppend, Channel: w.Channel, Data: w.Data, Wait: w.Wait}
	switch {
	case w.Close:
		req.Op = opClose
	case w.Delete:
		req.Op = opDelete
	}
	r, err := n.call(ctx, node, req)
	return r.Seq, err
}

// ForwardStream implements streams.Forwarder.
func (n *Node) ForwardStream(ctx context.Context, node, id string, w streams.Write) (streams.Result, error) {
	req := request{Op: opStream, Channel: id, Stream: &streamRequest{Messages: w.Messages, Close: w.Close,
		StreamSeq: w.StreamSeq, Producer: w.Producer}}
	r, err := n.call(ctx, node, req)
	return streams.Result{Seq: r.Seq, Epoch: r.Epoch, LastSeq: r.Last, Closed: r.Closed,
		Duplicate: r.Duplicate, ProducerSeq: r.ProducerSeq}, err
}

// Ping implements hub.Cluster.
func (n *Node) Ping(ctx context.Context, node, id string) (int64, error) {
	r, err := n.call(ctx, node, request{Op: opPing, Channel: id})
	if err != nil {
		return 0, err
	}
	return r.Epoch, nil
}

// Follow implements hub.Cluster: it subscribes to the channel's subject,
// makes sure NATS has the subscription, then asks the owner for its
// snapshot, so every event the owner publishes after its snapshot reaches
// deliver.
func (n *Node) Follow(ctx context.Context, node, id string, deliver func(hub.Event)) (hub.Snapshot, func(), error) {
	parts := &assembler{id: id}
	sub, err := n.nc.Subscribe(eventSubject(n.cfg.Prefix, id), func(msg *nats.Msg) {
		ev, ok, err := parts.add(msg.Data)
		if err != nil {
			n.log.Warn("cluster: dropped a malformed event", slog.String("channel", id))
			return
		}
		if ok {
			deliver(ev)
		}
	})
	if err != nil {
		return hub.Snapshot{}, nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	// The subscription is in place before the owner takes its snapshot.
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
	}
	if err := n.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return hub.Snapshot{}, nil, fmt.Errorf("cluster: NATS does not answer: %w", err)
	}
	r, err := n.call(ctx, node, request{Op: opSnapshot, Channel: id})
	if err != nil {
		_ = sub.Unsubscribe()
		return hub.Snapshot{}, nil, err
	}
	n.m.follows.Inc()
	return r.snapshot(), func() { _ = sub.Unsubscribe() }, nil
}

// call sends req to node and returns its reply, or the hub error the reply
// reports. No answer because no process of node listens is hub.ErrNoOwner:
// the request went nowhere, so the caller may send it elsewhere. A timeout
// is not: the owner may have applied it.
func (n *Node) call(ctx context.Context, node string, req request) (reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		timeout := n.cfg.RequestTimeout
		if req.Wait || req.Stream != nil {
			timeout += n.cfg.WaitTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out := requestMsg(rpcSubject(n.cfg.Prefix, node), req)
	msg, err := n.nc.RequestMsgWithContext(ctx, out)
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		// Refused before it was sent: the owner never saw it.
		return reply{}, fmt.Errorf("%w: %d bytes of data, and NATS carries at most %d bytes in all",
			hub.ErrTooLarge, len(out.Data), n.nc.MaxPayload())
	case errors.Is(err, nats.ErrNoResponders):
		return reply{}, fmt.Errorf("%w: node %q", hub.ErrNoOwner, node)
	case err != nil && ctx.Err() != nil && (req.Op == opSnapshot || req.Op == opPing):
		return reply{}, fmt.Errorf("%w: node %q: %w", hub.ErrNoOwner, node, err)
	case err != nil:
		return reply{}, fmt.Errorf("%w: node %q: %w", hub.ErrUncertain, node, err)
	}
	var r reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return reply{}, fmt.Errorf("cluster: malformed reply from node %q: %w", node, err)
	}
	if r.Error != nil {
		// Seq: an append accepted, then not confirmed persisted (with a
		// stream append's tail).
		e := r.Error
		r.Error, r.Messages = nil, nil
		return r, e.err(r.Seq)
	}
	return r, nil
}
