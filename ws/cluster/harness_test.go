package cluster_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/client"
	"github.com/messages-server/messages/ws/cluster"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/streams"
)

// natsServer is an embedded NATS server on a loopback port, which a test
// can stop and start again on the same port.
type natsServer struct {
	t    testing.TB
	port int
	mu   sync.Mutex
	s    *natsserver.Server
}

// startNATS starts an embedded NATS server, stopped when t ends.
func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, port: -1}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: n.port, NoLog: true, NoSigs: true})
	if err != nil {
		n.t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats server did not start")
	}
	n.mu.Lock()
	n.s = s
	n.port = s.Addr().(*net.TCPAddr).Port
	n.mu.Unlock()
}

func (n *natsServer) stop() {
	n.mu.Lock()
	s := n.s
	n.s = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// testNode is one node of a test cluster: store, writer, hub, cluster
// node and HTTP server, like cmd/messages wires them.
type testNode struct {
	id      string
	dbURL   string
	URL     string
	store   *persist.Store
	writer  *persist.Writer
	hub     *hub.Hub
	node    *cluster.Node
	nc      *nats.Conn
	srv     *ws.Server
	http    *httptest.Server
	reg     *prometheus.Registry
	stopped sync.Once
}

// lease is the lease time of the test clusters.
const lease = time.Second

// nodeOption changes the configuration of a test node before it starts.
type nodeOption func(*nodeSetup)

// nodeSetup is what a nodeOption may change.
type nodeSetup struct {
	hub     *hub.Config
	cluster *cluster.Config
	// wrap, if set, wraps the cluster node the hub talks to.
	wrap func(hub.Cluster) hub.Cluster
	// lease is the node's lease time.
	lease time.Duration
	// dst, if set, wraps what the node's writer writes batches to.
	dst func(persist.BatchWriter) persist.BatchWriter
	// server, if set, changes the node's server configuration.
	server func(*ws.ServerConfig)
}

// startNode starts node id on the database dbURL and the NATS server ns.
func startNode(t testing.TB, dbURL string, ns *natsServer, id string, opts ...nodeOption) *testNode {
	t.Helper()
	return startNodeVia(t, dbURL, ns.url(), id, opts...)
}

// startNodeVia starts node id on the database dbURL and the NATS server
// at natsURL (a proxy in front of one, say).
func startNodeVia(t testing.TB, dbURL, natsURL, id string, opts ...nodeOption) *testNode {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", id)
	// A first pass for the lease, which the store needs first.
	setup := nodeSetup{lease: lease, hub: &hub.Config{}, cluster: &cluster.Config{}}
	for _, o := range opts {
		o(&setup)
	}
	store, err := persist.Open(ctx, persist.Config{URL: dbURL, Logger: log, Node: id, Lease: setup.lease, MaxConns: 8})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	nc, err := nats.Connect(natsURL, nats.Name(id), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	reg := prometheus.NewRegistry()
	var dst persist.BatchWriter = store
	if setup.dst != nil {
		dst = setup.dst(store)
	}
	writer := persist.NewWriter(dst, persist.WriterConfig{Logger: log, Metrics: prom.New(reg),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	m := ws.NewMetrics(reg)
	hcfg := hub.Config{Store: store, Writer: writer, PersistInterval: 10 * time.Millisecond,
		Logger: log, Metrics: hub.NewMetrics(prom.New(reg))}
	ccfg := cluster.Config{Conn: nc, Store: store, Logger: log, Registerer: reg}
	setup.hub, setup.cluster = &hcfg, &ccfg
	for _, o := range opts {
		o(&setup)
	}
	node, err := cluster.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	hcfg.Cluster = node
	if setup.wrap != nil {
		hcfg.Cluster = setup.wrap(node)
	}
	h := hub.New(hcfg)
	backend := streams.New(h, store, streams.Config{Forwarder: node})
	node.ServeStreams(backend)
	if err := node.Start(h); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := ws.ServerConfig{Logger: log, HTTPMetrics: m,
		Streams: backend,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Ready: func(ctx context.Context) error {
			if err := node.Ready(ctx); err != nil {
				return err
			}
			return store.Ping(ctx)
		}}
	if setup.server != nil {
		setup.server(&cfg)
	}
	srv := ws.NewServer(h, cfg)
	hs := httptest.NewServer(srv)
	n := &testNode{id: id, dbURL: dbURL, URL: hs.URL, store: store, writer: writer, hub: h, node: node, nc: nc,
		srv: srv, http: hs, reg: reg}
	t.Cleanup(n.stop)
	return n
}

// stop shuts the node down gracefully, as SIGTERM does.
func (n *testNode) stop() {
	n.stopped.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = n.srv.Shutdown(ctx)
		n.http.Close()
		_ = n.hub.Stop(ctx)
		_ = n.writer.Close(ctx)
		_ = n.node.Stop(ctx)
		n.nc.Close()
		n.store.Close()
	})
}

// crash stops the node as SIGKILL would, as far as the others can tell:
// it vanishes from NATS at once, answers no more requests, renews no
// lease, and writes nothing more to the store (what its writer had in
// hand may or may not have been committed).
func (n *testNode) crash() {
	n.stopped.Do(func() {
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		n.nc.Close()
		n.http.Listener.Close()
		n.srv.DropConnections()
		_ = n.srv.Shutdown(expired)
		n.http.CloseClientConnections()
		n.http.Close()
		_ = n.writer.Close(expired)
		_ = n.hub.Stop(expired)
		_ = n.node.Stop(expired)
		n.store.Close()
	})
}

// startCluster starts a NATS server and n nodes on one fresh database.
func startCluster(t testing.TB, n int, opts ...nodeOption) (*natsServer, []*testNode) {
	t.Helper()
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, dbURL, ns, fmt.Sprintf("n%d", i+1), opts...)
	}
	return ns, nodes
}

// post sends a POST and returns the status and body.
func post(t testing.TB, u, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mustPost posts and fails t unless the status is want.
func mustPost(t testing.TB, u, contentType, body string, want int) string {
	t.Helper()
	st, b := post(t, u, contentType, body)
	if st != want {
		t.Fatalf("POST %s: %d %s, want %d", u, st, b, want)
	}
	return b
}

// reader reads a channel to its end through one node, resuming after
// drops and resets the way a careful client does, and keeps what it got.
type reader struct {
	got  atomic.Int64 // messages received, for progress checks
	seqs []int64
	data []string
	// resets counts the resets it got.
	resets int
	// attempts bounds the redials in a row that fail; 0 means 100.
	attempts int
}

// read subscribes to channel id at base and reads until the end of the
// channel, ctx's end, or an error a resume cannot fix.
func (r *reader) read(ctx context.Context, base, id string) error {
	opts := client.Options{Resume: true, ResumeAttempts: cmp.Or(r.attempts, 100),
		ResumeMinBackoff: 10 * time.Millisecond, ResumeMaxBackoff: 200 * time.Millisecond}
	for {
		sub, err := client.Subscribe(ctx, base, id, opts)
		if err != nil {
			return err
		}
		err = r.drain(ctx, sub)
		_ = sub.Close()
		var se *client.ServerError
		if !errors.As(err, &se) || !errors.Is(err, client.ErrReset) {
			return err
		}
		// What it saw past the last durable seq is not history any more.
		r.resets++
		n := int(se.LastSeq)
		r.seqs, r.data = r.seqs[:min(n, len(r.seqs))], r.data[:min(n, len(r.data))]
		opts.From, opts.Epoch = int64(len(r.seqs)), ""
	}
}

func (r *reader) drain(ctx context.Context, sub *client.Subscription) error {
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		switch ev.Kind {
		case client.EventMessage:
			if want := int64(len(r.seqs)) + 1; ev.Seq != want {
				return fmt.Errorf("message seq %d, want %d", ev.Seq, want)
			}
			r.seqs = append(r.seqs, ev.Seq)
			r.data = append(r.data, ev.Data)
			r.got.Store(int64(len(r.seqs)))
		case client.EventEnd:
			return nil
		}
	}
}

// storedData returns the stored messages of id.
func storedData(t testing.TB, s *persist.Store, id string) []string {
	t.Helper()
	ms, err := s.Messages(context.Background(), id, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("stored seq %d at %d", m.Seq, i)
		}
		out[i] = string(m.Data)
	}
	return out
}

// get sends a GET and returns the status and body.
func get(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
