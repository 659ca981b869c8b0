// Package backoff paces the retries of a failing call: waits that grow
// exponentially from a minimum to a cap, and a wait that ends early when
// its context is done. Jitter, where a caller wants it, stays with the
// caller: each one spreads its retries in its own way.
//
// Files: backoff.go (Exponential, Sleep), backoff_test.go.
package backoff

import (
	"context"
	"time"
)

// Exponential is a sequence of waits: Min, then twice the previous wait,
// up to Max. Min must be positive; a Max below Min means Min. A new
// Exponential starts at Min. It is not safe for concurrent use.
type Exponential struct {
	// Min is the first wait.
	Min time.Duration
	// Max caps every wait.
	Max time.Duration

	next time.Duration // 0 until the first call to Next
}

// Next returns the next wait of the sequence.
func (e *Exponential) Next() time.Duration {
	limit := max(e.Max, e.Min)
	d := e.next
	if d == 0 {
		d = e.Min
	}
	d = min(d, limit)
	e.next = min(2*d, limit)
	return d
}

// Sleep waits d, or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
