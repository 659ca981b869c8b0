package hub

import "context"

// peers is what the hub does about the other nodes: nothing when it runs
// alone (alone.go), and through its Cluster in cluster mode (cluster.go).
// The hub calls it where the two modes differ, and never asks which mode
// it is in. Its methods are safe for concurrent use.
type peers interface {
	// canOwn returns ErrCutOff if this node may not create or take over
	// channels now.
	canOwn() error
	// publish hands ev, about a channel this node owns, to the followers
	// of the channel on other nodes; it does not block.
	publish(ev Event)
	// forward runs a write on this node if it owns the channel (or can
	// take it over), else sends it to the owner with send; local makes
	// the local attempt.
	forward(ctx context.Context, local func() (int64, error), send func(node string) (int64, error)) (int64, error)
	// deleteElsewhere forwards the delete of channel id to the node that
	// owns it, and reports whether it did.
	deleteElsewhere(ctx context.Context, id string) (bool, error)
	// tookOver is told that this node took channel id over at epoch.
	tookOver(id string, epoch int64)
	// deletesElsewhere reports whether a channel may be deleted by
	// another node: then a batch refused because its channel is not
	// found means deleted, not failed.
	deletesElsewhere() bool
	// follow starts a follower of channel id, which moved.Owner owns, and
	// reports whether it tried (see Hub.follow); alone, no other node
	// owns a channel.
	follow(ctx context.Context, id string, moved *MovedError) (bool, error)
	// stillClosed reports whether channel id is still closed at epoch
	// and last, as the page cache remembers it: another node may have
	// deleted and created it again.
	stillClosed(ctx context.Context, id string, epoch, last int64) bool
}

// alone is the peers of a hub that runs alone (single-server mode), as
// the hub's default: there is no one to tell or forward to, and every
// channel is this node's.
type alone struct{}

func (alone) canOwn() error { return nil }

func (alone) publish(Event) {}

func (alone) forward(_ context.Context, local func() (int64, error), _ func(string) (int64, error)) (int64, error) {
	return local()
}

func (alone) deleteElsewhere(context.Context, string) (bool, error) { return false, nil }

func (alone) tookOver(string, int64) {}

func (alone) deletesElsewhere() bool { return false }

func (alone) follow(context.Context, string, *MovedError) (bool, error) { return false, nil }

func (alone) stillClosed(context.Context, string, int64, int64) bool { return true }
