package durable

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// errCut is the cause a test server gives the context of a request it
// ends early.
var errCut = errors.New("cut by the server")

// waitBackend is a Backend with one open stream whose Wait and Read the
// test drives; its other methods are not called.
type waitBackend struct {
	Backend
	// waiting receives when a long-poll starts waiting.
	waiting chan struct{}
	// arrived, once closed, ends the wait: a message came.
	arrived chan struct{}
	// onRead, if set, runs at the start of each Read after a wait.
	onRead func()
	waited bool
}

func (b *waitBackend) Read(context.Context, string, Pos, int) ([][]byte, Info, error) {
	info := Info{Config: Config{ContentType: "text/plain"}, Tail: Pos{Epoch: 1, Seq: 0}}
	if !b.waited {
		return nil, info, nil
	}
	if b.onRead != nil {
		b.onRead()
	}
	info.Tail.Seq = 1
	return [][]byte{[]byte("secret")}, info, nil
}

func (b *waitBackend) Wait(ctx context.Context, _ string, _ Pos) error {
	b.waited = true
	b.waiting <- struct{}{}
	select {
	case <-b.arrived:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cutHandler is a Handler over b whose server answers a request it cut
// with 401, as a server does when a long-poll's token expires.
func cutHandler(b *waitBackend) *Handler {
	return NewHandler(HandlerConfig{Backend: b, LongPollTimeout: time.Hour,
		Interrupted: func(w http.ResponseWriter, r *http.Request) bool {
			if !errors.Is(context.Cause(r.Context()), errCut) {
				return false
			}
			httpError(w, http.StatusUnauthorized, "the token expired")
			return true
		}})
}

// TestLongPollInterrupted: a long-poll whose context the server ends while
// it waits is answered by HandlerConfig.Interrupted, at once, rather than
// waiting out the long-poll timeout; and a message that came just as the
// context ended is not served.
func TestLongPollInterrupted(t *testing.T) {
	const u = "/v1/stream/s?offset=0000000000000001_0000000000000000&live=long-poll"
	serve := func(b *waitBackend, cut func(context.CancelCauseFunc)) (*httptest.ResponseRecorder, error) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			cutHandler(b).ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, u, nil))
		}()
		select {
		case <-b.waiting:
		case <-done:
			return rec, errors.New("the long-poll did not wait")
		}
		cut(cancel)
		select {
		case <-done:
			return rec, nil
		case <-time.After(10 * time.Second):
			return rec, errors.New("the long-poll was not answered when its context ended")
		}
	}

	t.Run("while waiting", func(t *testing.T) {
		b := &waitBackend{waiting: make(chan struct{}, 1), arrived: make(chan struct{})}
		rec, err := serve(b, func(cancel context.CancelCauseFunc) { cancel(errCut) })
		if err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "expired") {
			t.Fatalf("%d %q, want the server's 401", rec.Code, rec.Body)
		}
	})

	t.Run("as data came", func(t *testing.T) {
		// The message wakes the long-poll, and the context ends while it
		// reads: the read succeeds, but the data is not served.
		b := &waitBackend{waiting: make(chan struct{}, 1), arrived: make(chan struct{})}
		rec, err := serve(b, func(cancel context.CancelCauseFunc) {
			b.onRead = func() { cancel(errCut) }
			close(b.arrived)
		})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "secret") {
			t.Fatalf("%d %q, want the server's 401 and no data", rec.Code, rec.Body)
		}
	})

	t.Run("data before the end", func(t *testing.T) {
		b := &waitBackend{waiting: make(chan struct{}, 1), arrived: make(chan struct{})}
		rec, err := serve(b, func(context.CancelCauseFunc) { close(b.arrived) })
		if err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusOK || rec.Body.String() != "secret" {
			t.Fatalf("%d %q, want 200 and the message", rec.Code, rec.Body)
		}
	})
}
