package ws_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// TestCatchUpProperty joins many subscribers at random moments of running
// streams — before the first flush, during and between flushes, after the
// close — and checks each gets exactly 1..N in order, once, on every
// storage backend.
func TestCatchUpProperty(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backend  string
		interval time.Duration
		retain   int // persisted messages kept in memory; 1: history from the store
	}{
		{"postgres/tiny interval/history from the store", "postgres", time.Millisecond, 1},
		{"postgres/tiny interval/history from memory", "postgres", time.Millisecond, 0},
		{"postgres/large interval/store and memory", "postgres", 500 * time.Millisecond, 16},
		{"sqlite/tiny interval/history from the store", "sqlite", time.Millisecond, 1},
		{"sqlite/large interval/store and memory", "sqlite", 500 * time.Millisecond, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := wstest.Start(t, wstest.Options{PersistInterval: tc.interval, Backend: tc.backend, RetainMessages: tc.retain})
			const channels, clients, n = 6, 12, 120
			const freq = 400.0 // 0.3 s per stream
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rng := rand.New(rand.NewPCG(1, uint64(tc.interval)))
			var wg sync.WaitGroup
			errs := make(chan error, channels*clients)
			for c := 0; c < channels; c++ {
				id := fmt.Sprintf("cp-%d", c)
				createGenerator(t, srv.URL, id, freq, n)
				for k := 0; k < clients; k++ {
					// Join over 1.5× the stream's duration, so some join
					// after the end; some resume from a random seq.
					delay := time.Duration(rng.Float64() * 1.5 * n / freq * float64(time.Second))
					// Every fourth client drops at a random seq and
					// resumes from it.
					dropAt := int64(0)
					if k%4 == 3 {
						dropAt = 1 + rng.Int64N(n-1)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						timer := time.NewTimer(delay)
						defer timer.Stop()
						select {
						case <-timer.C:
						case <-ctx.Done():
							return
						}
						var data []string
						from := int64(0)
						s := dialRaw(ctx, t, srv.URL, id, 0, "")
						if dropAt > 0 {
							if err := s.readUntil(ctx, dropAt); err != nil {
								errs <- fmt.Errorf("%s client %d: %w", id, k, err)
								return
							}
							s.conn.CloseNow()
							from = s.last
							data = s.data
							s = dialRaw(ctx, t, srv.URL, id, from, s.hello.Epoch)
						}
						if err := s.readToEnd(ctx); err != nil {
							errs <- fmt.Errorf("%s client %d (from %d): %w", id, k, from, err)
							return
						}
						if s.end != n {
							errs <- fmt.Errorf("%s client %d: end at %d", id, k, s.end)
							return
						}
						data = append(data[:from:from], s.data...)
						for i, d := range data {
							if want := fmt.Sprintf("%d: %s\n", int64(i)+1, id); d != want {
								errs <- fmt.Errorf("%s client %d: seq %d = %q, want %q", id, k, int64(i)+1, d, want)
								return
							}
						}
						if len(data) != n {
							errs <- fmt.Errorf("%s client %d: %d messages", id, k, len(data))
						}
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestResume drops a client at seq k; it reconnects with from=k and gets
// k+1..N with no duplicate.
func TestResume(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 200
	createGenerator(t, srv.URL, "resume", 1000, n)
	s := dialRaw(ctx, t, srv.URL, "resume", 0, "")
	if err := s.readUntil(ctx, 37); err != nil {
		t.Fatal(err)
	}
	s.conn.CloseNow()
	k := s.last
	s2 := dialRaw(ctx, t, srv.URL, "resume", k, s.hello.Epoch)
	if err := s2.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	all := append(s.data[:k:k], s2.data...)
	expectLines(t, "resumed", "resume", 0, all, n)

	// A server-side drop, as a network failure: resume again mid-stream.
	createGenerator(t, srv.URL, "resume2", 500, n)
	s3 := dialRaw(ctx, t, srv.URL, "resume2", 0, "")
	if err := s3.readUntil(ctx, 10); err != nil {
		t.Fatal(err)
	}
	srv.DropConnections()
	for {
		if _, err := s3.next(ctx); err != nil {
			break
		}
	}
	s4 := dialRaw(ctx, t, srv.URL, "resume2", s3.last, s3.hello.Epoch)
	if err := s4.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "dropped and resumed", "resume2", 0, append(s3.data, s4.data...), n)
}

// TestSlowConsumer stops one subscriber from reading: the others get every
// live message promptly, and the slow one, once it reads, gets everything.
func TestSlowConsumer(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{QueueLen: 8, Hub: func(c *hub.Config) {
		// The 400 messages below cost about 26 MiB held (data and frame):
		// room for all of them, so that a persist that lags on a busy
		// machine cannot refuse an append (503) and end the test early.
		c.MaxChannelBytes = 64 << 20
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	createChannel(t, srv.URL, "slow")
	slow := dialRaw(ctx, t, srv.URL, "slow", 0, "")
	if f, err := slow.next(ctx); err != nil || f.Type != wire.FrameHello {
		t.Fatalf("hello: %v %v", f, err)
	}
	fast := dialRaw(ctx, t, srv.URL, "slow", 0, "")
	if err := readUntilLive(ctx, fast); err != nil {
		t.Fatal(err)
	}
	// 400 messages of 32 KiB: far more than the socket buffers hold, so the
	// slow subscriber's queue fills and the actor detaches it.
	big := strings.Repeat("x", 32<<10)
	const n = 400
	for i := 1; i <= n; i++ {
		seq := appendMsg(t, srv.URL, "slow", fmt.Sprintf("%d %s", i, big))
		// The fast subscriber keeps up with each message as it is sent.
		if err := fast.readUntil(ctx, seq); err != nil {
			t.Fatalf("fast subscriber at %d: %v", seq, err)
		}
	}
	wstest.WaitFor(t, 10*time.Second, "a slow-consumer resync", func() bool {
		return metricValue(t, srv, "messages_slow_consumer_resyncs_total") >= 1
	})
	if err := slow.readUntil(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i, d := range slow.data {
		if want := fmt.Sprintf("%d %s", i+1, big); d != want {
			t.Fatalf("slow subscriber seq %d differs", i+1)
		}
	}
	// Both are still registered and get what comes next.
	appendMsg(t, srv.URL, "slow", "after")
	for _, s := range []*rawSub{slow, fast} {
		if err := s.readUntil(ctx, n+1); err != nil || s.data[n] != "after" {
			t.Fatalf("after the resync: %v", err)
		}
	}
}

func readUntilLive(ctx context.Context, s *rawSub) error {
	for s.live < 0 {
		f, err := s.next(ctx)
		if err != nil {
			return err
		}
		if f.Type == wire.FrameError {
			return fmt.Errorf("error frame %s", f.Message)
		}
	}
	return nil
}
