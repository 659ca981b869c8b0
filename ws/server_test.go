package ws_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

func metricValue(t testing.TB, srv *wstest.Server, name string) float64 {
	t.Helper()
	mfs, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// TestBadInput sends every kind of bad request and checks the status and
// the message, and that existing data is untouched.
func TestBadInput(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{MaxMessageBytes: 1024})
	base := srv.URL
	createChannel(t, base, "keep")
	appendMsg(t, base, "keep", "one")
	createChannel(t, base, "closed")
	appendMsg(t, base, "closed", "x")
	if st, b := do(t, "POST", base+"/channels/closed/close", "", nil); st != 200 {
		t.Fatalf("close: %d %s", st, b)
	}
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"bad id", "POST", "/channels", `{"id":"a b"}`, 400, "characters outside"},
		{"too long id", "POST", "/channels", `{"id":"` + long + `"}`, 400, "at most 128"},
		{"bad id in path", "GET", "/channels/a%20b", "", 400, "characters outside"},
		{"unknown id", "GET", "/channels/nope", "", 404, "not found"},
		{"unknown id stream", "GET", "/?id=nope", "", 404, "not found"},
		{"empty id stream", "GET", "/?id=", "", 400, "missing"},
		{"append unknown", "POST", "/channels/nope/messages", "x", 404, "not found"},
		{"freq zero", "POST", "/?freq=0&max=5", "f0", 400, "freq"},
		{"freq tiny", "POST", "/?freq=1e-11", "f5", 400, "freq"},
		{"freq negative", "POST", "/?freq=-3", "f1", 400, "freq"},
		{"freq NaN", "POST", "/?freq=NaN", "f2", 400, "freq"},
		{"freq huge", "POST", "/?freq=1e12", "f3", 400, "freq"},
		{"freq text", "POST", "/?freq=fast", "f4", 400, "freq"},
		{"max zero", "POST", "/?max=0", "m0", 400, "max"},
		{"max negative", "POST", "/?max=-1", "m1", 400, "max"},
		{"max text", "POST", "/?max=lots", "m2", 400, "max"},
		{"max huge", "POST", "/?max=99999999999", "m3", 400, "max"},
		{"generator freq", "POST", "/channels", `{"generator":{"freq":0,"max":5}}`, 400, "freq"},
		{"generator max", "POST", "/channels", `{"generator":{"freq":5,"max":0}}`, 400, "max"},
		{"generator start", "POST", "/channels", `{"generator":{"freq":5,"max":5,"start_when_subscribers":-1}}`, 400, "start_when_subscribers"},
		{"oversized message", "POST", "/channels/keep/messages", strings.Repeat("z", 1025), 413, "larger than"},
		{"invalid utf-8", "POST", "/channels/keep/messages", "\xff\xfe", 400, "UTF-8"},
		{"duplicate id", "POST", "/channels", `{"id":"keep"}`, 409, "already exists"},
		{"duplicate id reference", "POST", "/?max=3", "keep", 409, "already exists"},
		{"append to closed", "POST", "/channels/closed/messages", "late", 409, "closed"},
		{"close closed", "POST", "/channels/closed/close", "", 409, "closed"},
		{"bad from", "GET", "/channels/keep/messages?from=-1", "", 400, "from"},
		{"from past end", "GET", "/channels/keep/messages?from=99", "", 400, "past"},
		{"bad limit", "GET", "/channels/keep/messages?limit=0", "", 400, "limit"},
		{"bad wait", "POST", "/channels/keep/messages?wait=soon", "x", 400, "wait"},
		{"wrong method", "DELETE", "/channels/keep", "", 405, "not allowed"},
		{"wrong method root", "PUT", "/", "", 405, "not allowed"},
		{"malformed JSON", "POST", "/channels", `{"id":`, 400, "malformed JSON"},
		{"unknown JSON field", "POST", "/channels", `{"name":"x"}`, 400, "malformed JSON"},
		{"unknown path", "GET", "/nope", "", 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := do(t, tc.method, base+tc.path, "", []byte(tc.body))
			if st != tc.status {
				t.Fatalf("status %d, want %d (%s)", st, tc.status, b)
			}
			e := decodeJSON[struct{ Error string }](t, b)
			if !strings.Contains(e.Error, tc.msg) {
				t.Errorf("error %q does not mention %q", e.Error, tc.msg)
			}
		})
	}
	// Nothing accepted was lost or changed.
	st, b := do(t, "GET", base+"/channels/keep/messages", "", nil)
	h := decodeJSON[struct {
		Messages []struct {
			Seq  int64
			Data string
		}
	}](t, b)
	if st != 200 || len(h.Messages) != 1 || h.Messages[0].Data != "one" {
		t.Errorf("keep's history changed: %d %s", st, b)
	}
	for _, id := range []string{"f0", "f1", "m0", "m1"} {
		if st, _ := do(t, "GET", base+"/channels/"+id, "", nil); st != 404 {
			t.Errorf("a refused request created channel %s", id)
		}
	}

	// WebSocket errors: an error frame, then a 44xx close.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, query string
		code        string
		status      websocket.StatusCode
	}{
		{"ws unknown id", "id=nope", wire.CodeNotFound, websocket.StatusCode(wire.CloseNotFound)},
		{"ws bad id", "id=a%20b", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws bad from", "id=keep&from=x", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws from past end", "id=keep&from=5", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws bad epoch", "id=keep&epoch=zero", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws future epoch", "id=keep&epoch=99", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("want an error frame, got %v", err)
			}
			f, err := wire.DecodeFrame(b)
			if err != nil || f.Type != wire.FrameError || f.Code != tc.code || f.Message == "" {
				t.Fatalf("want error frame %s, got %+v (%v)", tc.code, f, err)
			}
			_, _, err = c.Read(ctx)
			if st := websocket.CloseStatus(err); st != tc.status {
				t.Errorf("close status %d, want %d", st, tc.status)
			}
		})
	}
	// Not a WebSocket request at all.
	if st, _ := do(t, "GET", base+"/ws?id=keep", "", nil); st < 400 || st >= 500 {
		t.Errorf("plain GET /ws: status %d, want 4xx", st)
	}
}

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
	info := decodeJSON[ws.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.LastSeq != 5 || info.PersistedSeq != 0 || !info.Open || info.Epoch != "1" {
		t.Errorf("info before flush: %+v", info)
	}
	st, b = do(t, "POST", base+"/channels/a1/messages?wait=persisted", "text/plain", []byte("m6"))
	if st != 200 || decodeJSON[struct{ Seq int64 }](t, b).Seq != 6 {
		t.Fatalf("wait=persisted: %d %s", st, b)
	}
	info = decodeJSON[ws.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
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
		Channels []ws.ChannelInfo
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
	info = decodeJSON[ws.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
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

// TestMetrics checks the named series exist, pass promlint, and move with
// traffic.
func TestMetrics(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{
		"messages_channels_open", "messages_subscribers", "messages_appended_total",
		"messages_delivered_total", "messages_delivery_latency_seconds", "messages_catchup_duration_seconds",
		"messages_persist_batch_rows", "messages_persist_duration_seconds", "messages_persist_lag_messages",
		"messages_persist_errors_total", "messages_slow_consumer_resyncs_total", "messages_websocket_connections_total",
		"go_goroutines", "process_resident_memory_bytes",
	}
	body := string(mustGet(t, srv.URL+"/metrics"))
	for _, n := range names {
		if !strings.Contains(body, "\n"+n) && !strings.Contains(body, "# HELP "+n+" ") {
			t.Errorf("/metrics lacks %s", n)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "messages_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	createGenerator(t, srv.URL, "m", 2000, 50)
	s := dialRaw(ctx, t, srv.URL, "m", 0, "")
	if err := s.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "metrics to move", func() bool {
		return metricValue(t, srv, "messages_appended_total") == 50 &&
			metricValue(t, srv, "messages_delivered_total") >= 50 &&
			metricValue(t, srv, "messages_persist_batch_rows") >= 1 &&
			metricValue(t, srv, "messages_catchup_duration_seconds") >= 1 &&
			metricValue(t, srv, "messages_websocket_connections_total") >= 1 &&
			metricValue(t, srv, "messages_channels_open") == 0
	})
}

// TestKeepAlive: an idle subscription is pinged, and stays open.
func TestKeepAlive(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PingInterval: 50 * time.Millisecond})
	createChannel(t, srv.URL, "idle")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pings := make(chan struct{}, 100)
	c, _, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http", "ws", 1)+"/ws?id=idle", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			pings <- struct{}{}
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	closed := make(chan error, 1)
	go func() { // reads hello and live, and answers pings
		for {
			if _, _, err := c.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-pings:
		case err := <-closed:
			t.Fatalf("connection closed while idle: %v", err)
		case <-ctx.Done():
			t.Fatalf("got %d pings on an idle connection, want 3", i)
		}
	}
}
