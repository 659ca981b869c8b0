package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/cluster"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/streams"
)

// clusterConfig is the part of the configuration about cluster mode
// (docs/CLUSTER.md): off unless natsURL is set.
type clusterConfig struct {
	natsURL string
	nodeID  string
	lease   time.Duration
}

// on reports whether cluster mode is on.
func (c clusterConfig) on() bool { return c.natsURL != "" }

// addClusterFlags declares the flags of c on fs, with their environment
// fallbacks.
func addClusterFlags(fs *flag.FlagSet, c *clusterConfig, env envVars) {
	fs.StringVar(&c.natsURL, "nats-url", env.str("NATS_URL", ""), "NATS server(s), comma-separated nats:// URLs; turns on cluster mode, which needs a postgres:// database (env NATS_URL)")
	fs.StringVar(&c.nodeID, "node-id", env.str("NODE_ID", ""), "this node's id in cluster mode, 1 to 64 of [A-Za-z0-9_-]; default: host name and a random suffix (env NODE_ID)")
	fs.DurationVar(&c.lease, "lease-time", env.dur("LEASE_TIME", 5*time.Second), "cluster mode: how long a node owns its channels without renewing; a dead node's channels move after at most this (env LEASE_TIME)")
}

// finish checks c against the database URL and sets the default node id.
func (c *clusterConfig) finish(databaseURL string) error {
	if !c.on() {
		return nil
	}
	scheme, _, _ := strings.Cut(strings.ToLower(databaseURL), ":")
	if scheme != "postgres" && scheme != "postgresql" {
		return errors.New("cluster mode (-nats-url) needs PostgreSQL: the nodes share its database; " +
			"set -database-url postgres://…, or run a single server without -nats-url")
	}
	if c.lease < 300*time.Millisecond || c.lease > 10*time.Minute {
		return fmt.Errorf("lease time %v: must be in [300ms, 10m]", c.lease)
	}
	if c.nodeID == "" {
		c.nodeID = cluster.DefaultNodeID()
	}
	return cluster.ValidNodeID(c.nodeID)
}

// storeConfig adds cluster mode to a store's configuration.
func (c clusterConfig) storeConfig(sc persist.Config) persist.Config {
	if c.on() {
		sc.Node, sc.Lease = c.nodeID, c.lease
	}
	return sc
}

// clusterRun is this process's membership of the cluster: the NATS
// connection and the cluster node. A nil *clusterRun is single-server
// mode.
type clusterRun struct {
	nc   *nats.Conn
	node *cluster.Node
}

// joinCluster connects to NATS and creates the cluster node, or returns nil
// in single-server mode. persistWait is the hub's persist-wait timeout: a
// forwarded append that waits for persistence is given that long and a
// margin, so that the owner answers it as it would locally (504 with its
// seq).
func joinCluster(c clusterConfig, persistWait time.Duration, store *persist.Store, reg prometheus.Registerer, log *slog.Logger) (*clusterRun, error) {
	if !c.on() {
		return nil, nil
	}
	log = log.With(slog.String("node", c.nodeID))
	nc, err := nats.Connect(c.natsURL, nats.Name("messages "+c.nodeID),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by this process
				log.Warn("NATS disconnected: not renewing leases until it is back", slog.Any("err", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", slog.String("server", nc.ConnectedUrlRedacted()))
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	node, err := cluster.New(cluster.Config{Conn: nc, Store: store, Logger: log, Registerer: reg,
		WaitTimeout: persistWait + 5*time.Second})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &clusterRun{nc: nc, node: node}, nil
}

// hubCluster returns what the hub's Cluster is: the node, or nil in
// single-server mode.
func (r *clusterRun) hubCluster() hub.Cluster {
	if r == nil {
		return nil
	}
	return r.node
}

// start starts serving the other nodes for h, and the Durable Streams
// appends they forward with b; nothing in single-server mode.
func (r *clusterRun) start(h *hub.Hub, b *streams.Backend) error {
	if r == nil {
		return nil
	}
	r.node.ServeStreams(b)
	return r.node.Start(h)
}

// ready returns the readiness check of the server: store, then, in
// cluster mode, NATS reachable.
func (r *clusterRun) ready(store func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := store(ctx); err != nil {
			return err
		}
		if r == nil {
			return nil
		}
		return r.node.Ready(ctx)
	}
}

// leave stops serving the other nodes and releases this node's leases, so
// that they take its channels over at once, then closes the NATS
// connection; an error is joined to *errp. Called after the hub has
// stopped and the writer flushed.
func (r *clusterRun) leave(log *slog.Logger, timeout time.Duration, errp *error) {
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := r.node.Stop(ctx)
	r.nc.Close()
	if err != nil {
		*errp = errors.Join(*errp, fmt.Errorf("leave the cluster: %w", err))
		return
	}
	log.Info("left the cluster: leases released")
}
