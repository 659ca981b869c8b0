package ws

import (
	"context"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/hub/hubtest"
)

// The in-memory store and writer of the tests (package hubtest).
type (
	memStore  = hubtest.MemStore
	memWriter = hubtest.MemWriter
)

func newMemStore() *memStore { return hubtest.NewMemStore() }

func newTestHub(t testing.TB, cfg hub.Config) (*hub.Hub, *memStore, *memWriter) {
	st := newMemStore()
	w := &memWriter{Store: st}
	cfg.Store, cfg.Writer = st, w
	h := hub.New(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Block(false)
		// Stop waits for the actors even past ctx: bound the wait, so that
		// an actor that never exits fails the test instead of hanging it.
		stopped := make(chan error, 1)
		go func() { stopped <- h.Stop(ctx) }()
		timer := time.NewTimer(15 * time.Second)
		defer timer.Stop()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("stop: %v", err)
			}
		case <-timer.C:
			t.Errorf("the hub did not stop within 15s: an actor or generator does not exit")
		}
	})
	return h, st, w
}
