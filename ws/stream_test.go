package ws_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws"
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

// TestReferenceAPI checks POST /?freq=&max= streams exactly the expected
// lines and that GET /?id= during and after the stream is byte-identical.
func TestReferenceAPI(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	const id = "ref-1"
	want := generatorContent(id, 100)
	resp, err := http.Post(srv.URL+"/?freq=200&max=100", "text/plain", strings.NewReader(id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Channel-Id") != id {
		t.Fatalf("POST /: %d, Channel-Id %q", resp.StatusCode, resp.Header.Get("Channel-Id"))
	}
	var wg sync.WaitGroup
	got := make([]string, 4)
	get := func(i int) {
		defer wg.Done()
		r, err := http.Get(srv.URL + "/?id=" + id)
		if err != nil {
			t.Error(err)
			return
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("GET %d: %v", i, err)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET %d: content type %q", i, ct)
		}
		got[i] = string(b)
	}
	// Readers during the stream.
	first := make([]byte, 8)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	wg.Add(3)
	for i := 0; i < 3; i++ {
		go get(i)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if orig := string(first) + string(rest); orig != want {
		t.Fatalf("creator's stream:\n%q\nwant\n%q", orig, want)
	}
	wg.Wait()
	// And one after the end.
	wg.Add(1)
	get(3)
	for i, g := range got {
		if g != want {
			t.Errorf("GET /?id= reader %d got %d bytes, want %d identical", i, len(g), len(want))
		}
	}

	// An empty body makes an id.
	r2, err := http.Post(srv.URL+"/?freq=1000&max=3", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	gen := r2.Header.Get("Channel-Id")
	if !ws.ValidID(gen) || string(b) != generatorContent(gen, 3) {
		t.Errorf("generated id %q, content %q", gen, b)
	}
}

// TestSlowConsumer stops one subscriber from reading: the others get every
// live message promptly, and the slow one, once it reads, gets everything.
func TestSlowConsumer(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{QueueLen: 8})
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
	waitFor(t, 10*time.Second, "a slow-consumer resync", func() bool {
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

// TestRestart stops the server gracefully mid-stream and starts a new one on
// the same database: the history is intact and contiguous, the generator
// goes on, appends continue at the next seq, and a resume with the old epoch
// continues seamlessly because nothing was lost.
func TestRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := wstest.Start(t, wstest.Options{PersistInterval: 200 * time.Millisecond})
	const n = 300
	createGenerator(t, srv.URL, "gen", 200, n)
	createChannel(t, srv.URL, "prod")
	for i := 1; i <= 5; i++ {
		appendMsg(t, srv.URL, "prod", fmt.Sprintf("p%d", i))
	}
	s := dialRaw(ctx, t, srv.URL, "gen", 0, "")
	if err := s.readUntil(ctx, 40); err != nil {
		t.Fatal(err)
	}
	srv.Close() // graceful: flushes everything
	for {
		_, err := s.next(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
				t.Fatalf("on shutdown: want close 1001, got %v", err)
			}
			break
		}
	}
	srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})
	if seq := appendMsg(t, srv2.URL, "prod", "p6"); seq != 6 {
		t.Errorf("append after restart got seq %d, want 6", seq)
	}
	s2 := dialRaw(ctx, t, srv2.URL, "gen", s.last, s.hello.Epoch)
	if err := s2.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if s2.hello.Epoch == s.hello.Epoch {
		t.Errorf("epoch did not change across the restart: %s", s.hello.Epoch)
	}
	expectLines(t, "across restart", "gen", 0, append(s.data, s2.data...), n)
	full := dialRaw(ctx, t, srv2.URL, "gen", 0, "")
	if err := full.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "history after restart", "gen", 0, full.data, n)
}

// TestGeneratorStartsWithSubscribers: a generator created with
// start_when_subscribers waits for them, so every one of them sees the
// whole stream live.
func TestGeneratorStartsWithSubscribers(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, b := do(t, "POST", srv.URL+"/channels", "application/json",
		[]byte(`{"id":"wait","generator":{"freq":1000,"max":20,"start_when_subscribers":2}}`))
	if st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	first := dialRaw(ctx, t, srv.URL, "wait", 0, "")
	if err := readUntilLive(ctx, first); err != nil {
		t.Fatal(err)
	}
	if first.live != 0 {
		t.Fatalf("the generator started before its subscribers: live at %d", first.live)
	}
	if info := decodeJSON[ws.ChannelInfo](t, mustGet(t, srv.URL+"/channels/wait")); info.LastSeq != 0 {
		t.Fatalf("last_seq %d with one subscriber of two", info.LastSeq)
	}
	second := dialRaw(ctx, t, srv.URL, "wait", 0, "")
	for _, s := range []*rawSub{first, second} {
		if err := s.readToEnd(ctx); err != nil {
			t.Fatal(err)
		}
		expectLines(t, "subscriber", "wait", 0, s.data, 20)
	}
	if second.live != 0 {
		t.Errorf("second subscriber: live at %d, want 0", second.live)
	}
}

// TestFinishedGeneratorClosesAfterRestart: a generator that wrote its last
// line but not its close (a shutdown or crash in between) closes its
// channel when a new server takes it over, so readers get the end.
func TestFinishedGeneratorClosesAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := wstest.Start(t, wstest.Options{})
	if _, err := srv.Store.CreateChannel(ctx, "done", &persist.Generator{Freq: 10, Max: 3}); err != nil {
		t.Fatal(err)
	}
	var msgs []persist.Message
	for i := int64(1); i <= 3; i++ {
		msgs = append(msgs, persist.Message{Seq: i, Time: time.Now().UnixMicro(), Data: []byte(fmt.Sprintf("%d: done\n", i))})
	}
	if err := srv.Store.WriteBatches(ctx, []*persist.Batch{{Channel: "done", Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})
	s := dialRaw(ctx, t, srv2.URL, "done", 0, "")
	if err := s.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "after restart", "done", 0, s.data, 3)
}
