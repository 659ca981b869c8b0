package ws_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// producer appends to one channel in a loop and records what was
// acknowledged.
type producer struct {
	id      string
	mu      sync.Mutex
	acked   map[int64]string // seq → data
	refused atomic.Int64     // 503s
	okSince atomic.Int64     // acknowledged appends since the last reset
}

func (p *producer) run(ctx context.Context, base string, size int) {
	client := &http.Client{Timeout: 20 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		data := fmt.Sprintf("%s #%d ", p.id, i)
		data += strings.Repeat("x", size-len(data))
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/channels/"+p.id+"/messages", strings.NewReader(data))
		resp, err := client.Do(req)
		if err != nil {
			continue // ctx ended
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			var r struct{ Seq int64 }
			if _, err := fmt.Sscanf(string(b), `{"seq":%d}`, &r.Seq); err == nil {
				p.mu.Lock()
				p.acked[r.Seq] = data
				p.mu.Unlock()
				p.okSince.Add(1)
			}
		case http.StatusServiceUnavailable:
			p.refused.Add(1)
			if resp.Header.Get("Retry-After") == "" {
				panic("503 without Retry-After")
			}
		}
	}
}

// TestDatabaseFaultsUnderLoad runs producers while the database, behind a
// TCP proxy, first hangs (a blackhole: connections open, no bytes) and
// then is down (connections dropped and refused). During each fault
// appends are accepted up to the memory bound and then refused with 503,
// store reads (list, info) answer 503 within the store timeout; afterwards every
// acknowledged message is in PostgreSQL, byte for byte, and nothing else.
func TestDatabaseFaultsUnderLoad(t *testing.T) {
	dbURL := persisttest.DatabaseURL(t)
	proxy, proxied := persisttest.NewProxy(t, dbURL)
	srv := wstest.Start(t, wstest.Options{
		DatabaseURL: proxied, PersistInterval: 5 * time.Millisecond,
		Hub: func(c *hub.Config) { c.MaxBufferedBytes = 2 << 20; c.StoreTimeout = time.Second },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var prods []*producer
	var wg sync.WaitGroup
	for i := range 4 {
		p := &producer{id: fmt.Sprintf("load-%d", i), acked: map[int64]string{}}
		createChannel(t, srv.URL, p.id)
		prods = append(prods, p)
		wg.Go(func() { p.run(ctx, srv.URL, 2000) })
	}
	refused := func() int64 {
		var n int64
		for _, p := range prods {
			n += p.refused.Load()
		}
		return n
	}
	recovered := func() bool {
		for _, p := range prods {
			if p.okSince.Load() < 10 {
				return false
			}
		}
		return true
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, fault := range []struct {
		name  string
		start func()
	}{{"hung", proxy.Blackhole}, {"down", proxy.Drop}} {
		wstest.WaitFor(t, 30*time.Second, "appends before the fault", recovered)
		before := refused()
		fault.start()
		wstest.WaitFor(t, 60*time.Second, fault.name+": appends refused at the bound", func() bool { return refused() > before })
		for _, path := range []string{"/channels", "/channels/load-0"} { // history may come from memory
			resp, err := client.Get(srv.URL + path)
			if err != nil {
				t.Fatalf("%s: GET %s: %v", fault.name, path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s: GET %s: %d, want 503 with Retry-After", fault.name, path, resp.StatusCode)
			}
		}
		if g := metricValue(t, srv, "messages_buffered_bytes"); g > 2<<20 {
			t.Errorf("%s: %v bytes held, past the bound", fault.name, g)
		}
		for _, p := range prods {
			p.okSince.Store(0)
		}
		proxy.Pass()
	}
	wstest.WaitFor(t, 30*time.Second, "appends after the faults", recovered)
	cancel()
	wg.Wait()

	var acked, refusedAll int64
	for _, p := range prods {
		refusedAll += p.refused.Load()
		p.checkStored(t, srv)
		acked += int64(len(p.acked))
	}
	t.Logf("%d appends acknowledged, all stored; %d refused with 503 during the faults", acked, refusedAll)
}

// checkStored waits until p's channel is persisted, then checks the store
// holds exactly its messages 1..last_seq, each acknowledged one as sent.
func (p *producer) checkStored(t *testing.T, srv *wstest.Server) {
	t.Helper()
	var info hub.ChannelInfo
	wstest.WaitFor(t, 30*time.Second, p.id+" persisted", func() bool {
		info = decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/"+p.id))
		return info.PersistedSeq == info.LastSeq
	})
	stored := map[int64]string{}
	for after := int64(0); ; {
		msgs, err := srv.Store.Messages(context.Background(), p.id, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			stored[m.Seq] = string(m.Data)
		}
		after = msgs[len(msgs)-1].Seq
	}
	if int64(len(stored)) != info.LastSeq {
		t.Errorf("%s: %d messages stored, last seq %d", p.id, len(stored), info.LastSeq)
	}
	for seq, data := range p.acked {
		if stored[seq] != data {
			t.Errorf("%s: acknowledged seq %d not stored as sent", p.id, seq)
			return
		}
	}
}
