package persist

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errSingleServer is the error of the lease methods of a Store that is not
// in cluster mode.
var errSingleServer = errors.New("persist: not in cluster mode (Config.Node is empty)")

// Node returns the node id of a store in cluster mode, or "" in
// single-server mode.
func (s *Store) Node() string { return s.node }

// Lease returns how long a lease holds without renewal in cluster mode.
func (s *Store) Lease() time.Duration { return s.lease }

// RenewLeases records this node's heartbeat and extends, in one statement,
// every lease the node holds on an open channel to the lease time from now
// (by the database's clock). It returns the ids of those channels: a
// channel this node runs that is missing from them was taken over by
// another node. It fails in single-server mode.
func (s *Store) RenewLeases(ctx context.Context) ([]string, error) {
	if s.node == "" {
		return nil, errSingleServer
	}
	ids, err := s.b.renewLeases(ctx, s.node, s.lease)
	if err != nil {
		return nil, fmt.Errorf("persist: renew leases of node %q: %w", s.node, err)
	}
	return ids, nil
}

// Orphans returns up to limit open channels that have a generator and
// whose owner's lease has expired (or that no node ever owned), by id:
// their generator runs nowhere until a node takes them over. It fails in
// single-server mode.
func (s *Store) Orphans(ctx context.Context, limit int) ([]string, error) {
	if s.node == "" {
		return nil, errSingleServer
	}
	if limit < 1 {
		return nil, nil
	}
	ids, err := s.b.orphans(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: orphan channels: %w", err)
	}
	return ids, nil
}

// ReleaseLeases ends every lease this node holds, so that other nodes can
// take its channels over at once instead of waiting for the leases to
// expire. A node calls it when it stops, after its last batch is written.
// It fails in single-server mode.
func (s *Store) ReleaseLeases(ctx context.Context) error {
	if s.node == "" {
		return errSingleServer
	}
	if err := s.b.releaseLeases(ctx, s.node); err != nil {
		return fmt.Errorf("persist: release leases of node %q: %w", s.node, err)
	}
	return nil
}
