package ws_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// TestChannelsAPI exercises create, list, describe, append (with and
// without wait=persisted), history paging and close.
func TestChannelsAPI(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PersistInterval: time.Hour})
	base := srv.URL
	createChannel(t, base, "a1")
	createChannel(t, base, "a2")
	st, b := do(t, "POST", base+"/channels", "application/json", nil)
	if st != 201 {
		t.Fatalf("create without body: %d %s", st, b)
	}
	for i := 1; i <= 5; i++ {
		if seq := appendMsg(t, base, "a1", fmt.Sprintf("m%d", i)); seq != int64(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
	}
	// With a one-hour interval nothing is flushed yet, except on demand.
	info := decodeJSON[hub.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.LastSeq != 5 || info.PersistedSeq != 0 || !info.Open || info.Epoch != "1" {
		t.Errorf("info before flush: %+v", info)
	}
	st, b = do(t, "POST", base+"/channels/a1/messages?wait=persisted", "text/plain", []byte("m6"))
	if st != 200 || decodeJSON[struct{ Seq int64 }](t, b).Seq != 6 {
		t.Fatalf("wait=persisted: %d %s", st, b)
	}
	info = decodeJSON[hub.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.PersistedSeq != 6 {
		t.Errorf("after wait=persisted, persisted_seq = %d", info.PersistedSeq)
	}
	appendMsg(t, base, "a1", "m7") // buffered only
	// History pages cover the store and the buffer.
	var got []string
	next := int64(0)
	for {
		h := decodeJSON[struct {
			Messages []struct{ Data string }
			Next     int64
		}](t, mustGet(t, fmt.Sprintf("%s/channels/a1/messages?from=%d&limit=3", base, next)))
		if len(h.Messages) == 0 {
			break
		}
		for _, m := range h.Messages {
			got = append(got, m.Data)
		}
		next = h.Next
	}
	if strings.Join(got, ",") != "m1,m2,m3,m4,m5,m6,m7" {
		t.Errorf("history: %v", got)
	}
	list := decodeJSON[struct {
		Channels []hub.ChannelInfo
		Next     string
	}](t, mustGet(t, base+"/channels?limit=2"))
	if len(list.Channels) != 2 || list.Next == "" {
		t.Errorf("list page: %+v", list)
	}
	st, b = do(t, "POST", base+"/channels/a1/close", "", nil)
	if st != 200 || decodeJSON[struct {
		LastSeq int64 `json:"last_seq"`
	}](t, b).LastSeq != 7 {
		t.Fatalf("close: %d %s", st, b)
	}
	info = decodeJSON[hub.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.Open || info.ClosedAt == nil || info.LastSeq != 7 || info.PersistedSeq != 7 {
		t.Errorf("after close: %+v", info)
	}
	// health
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, b := do(t, "GET", base+p, "", nil); st != 200 {
			t.Errorf("%s: %d %s", p, st, b)
		}
	}
}

func mustGet(t testing.TB, u string) []byte {
	t.Helper()
	st, b := do(t, "GET", u, "", nil)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, st, b)
	}
	return b
}

// logRecords keeps the level and message of every log record.
type logRecords struct {
	mu   sync.Mutex
	recs []string // "LEVEL message"
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Level.String()+" "+r.Message)
	return nil
}

func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }

func (l *logRecords) WithGroup(string) slog.Handler { return l }

// find returns the records whose message contains s.
func (l *logRecords) find(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if strings.Contains(r, s) {
			out = append(out, r)
		}
	}
	return out
}

// TestClientGoneMidAppend: a client that goes away while its append waits
// for persistence is logged at debug level and counted as 499, not as a
// server error, and its message is still persisted.
func TestClientGoneMidAppend(t *testing.T) {
	logs := &logRecords{}
	flaky := &flakyStore{}
	srv := wstest.Start(t, wstest.Options{
		PersistInterval: 5 * time.Millisecond, Logger: slog.New(logs),
		BatchWriter: func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky },
	})
	createChannel(t, srv.URL, "gone")
	flaky.down.Store(true) // the append cannot become durable: it waits
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/channels/gone/messages?wait=persisted", strings.NewReader("kept"))
		if err == nil {
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				err = fmt.Errorf("answered %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	wstest.WaitFor(t, 10*time.Second, "the append to reach the channel", func() bool {
		return decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/gone")).LastSeq == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the append was not waiting for persistence: %v", err)
	}
	wstest.WaitFor(t, 10*time.Second, "the handler to log the end of the request", func() bool {
		return len(logs.find("request")) > 0
	})
	if errs := logs.find("ERROR request"); len(errs) > 0 {
		t.Errorf("a client going away was logged as an error: %q", errs)
	}
	if got := logs.find("client closed"); len(got) != 1 || !strings.HasPrefix(got[0], "DEBUG") {
		t.Errorf("want one debug record of the client closing, got %q", got)
	}
	if n := labeledValue(t, srv, "messages_http_request_errors_total", "status", "499"); n != 1 {
		t.Errorf("requests counted as 499: %v, want 1", n)
	}
	if n := labeledValue(t, srv, "messages_http_request_errors_total", "status", "500"); n != 0 {
		t.Errorf("requests counted as 500: %v, want 0", n)
	}
	// The message was accepted before the client left: it is not lost.
	flaky.down.Store(false)
	wstest.WaitFor(t, 10*time.Second, "the message to be persisted", func() bool {
		return decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/gone")).PersistedSeq == 1
	})
}

// labeledValue returns the value of the counter name{label=value}, 0 if
// it has none.
func labeledValue(t testing.TB, srv *wstest.Server, name, label, value string) float64 {
	t.Helper()
	mfs, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
