package streams

import (
	"context"
	"time"
)

// alone is the nodes of a backend whose hub runs alone (single-server
// mode): this node is the only one to serve its streams, so its own view
// of them is the truth.
type alone struct{}

func (alone) recordAccess(context.Context, string, *streamState, time.Time, time.Duration) {}

// expired: nobody else served the stream.
func (alone) expired(context.Context, string, *streamState) (bool, error) { return true, nil }

// owned: every channel is this node's.
func (alone) owned(context.Context, string, *streamState, bool) error { return nil }

// confirmRefusal: this node's record of the producer is the only one.
func (alone) confirmRefusal(_ context.Context, _ string, _ *streamState, refusal error) error {
	return refusal
}
