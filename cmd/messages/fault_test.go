package main

// The fault and abuse suite (docs/RELIABILITY.md lists every case and what
// it held). Each test drives the server as it ships, run with its flags,
// with a real PostgreSQL behind a fault proxy and raw sockets in front.
// `go test -run Fault ./...` runs them all.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/wire"
)

// outageEnv sets how long the long cases keep the database down or hung.
const outageEnv = "MESSAGES_FAULT_OUTAGE"

// outageDuration is the length of the outages of the long cases: the
// issue's 30 s under CI (the long cases run in parallel, which keeps the
// suite within its budget), 5 s otherwise, or what MESSAGES_FAULT_OUTAGE
// says (a Go duration: 2m for a longer local run).
func outageDuration(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv(outageEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration such as 30s", outageEnv, v)
		}
		return d
	}
	if os.Getenv("CI") != "" {
		return 30 * time.Second
	}
	return 5 * time.Second
}

// behindProxy makes a fresh PostgreSQL database and a fault proxy in front
// of it. It returns the proxy, the URL through the proxy (for the server)
// and the direct URL (for the test's own checks).
func behindProxy(t *testing.T) (proxy *persisttest.Proxy, proxied, direct string) {
	t.Helper()
	direct = persisttest.DatabaseURL(t)
	proxy, proxied = persisttest.NewProxy(t, direct)
	return proxy, proxied, direct
}

// faultClient is an HTTP client for load: enough idle connections for
// every producer, and a timeout that turns a hung request into a failure.
func faultClient(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// answer is what a request got.
type answer struct {
	status     int
	retryAfter string
	body       string
	took       time.Duration
}

// ask sends a request with c and reads the whole answer; err is a
// transport error (a hung request, a refused connection).
func ask(c *http.Client, method, u, contentType, body string) (answer, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b), time.Since(start)}, err
}

// metrics reads the server's /metrics and returns each sample by name
// (the sum over its labels) and by name with its labels, as written.
func metrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name := line[:sp]
		if strings.IndexByte(name, '{') >= 0 {
			out[name] = v
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		out[name] += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return out
}

// eventually polls cond every 20 ms until it holds, failing t after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond) // polling step, not synchronisation
	}
}

// decodeInto decodes the JSON b into v.
func decodeInto(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// mib formats a byte count in MiB.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// contextFor is a context that ends with t or after d.
func contextFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// subResult is what a subscriber received, in seq order from 1, how often
// it had to resume, and the delay from append to receipt of each message.
type subResult struct {
	data    []string
	lat     []time.Duration
	resumes int
	err     error
}

// subscribe follows channel id over WebSockets from the start to its end,
// as a resilient client does: when the server ends the stream early (an
// error frame, a dropped connection) it resumes from the last seq it has.
func subscribe(ctx context.Context, base, id string) subResult {
	return resume(ctx, base, id, subResult{})
}

// resume goes on with r: it follows channel id from the last seq r has.
func resume(ctx context.Context, base, id string, r subResult) subResult {
	for ; ; r.resumes++ {
		done, err := follow(ctx, base, id, &r)
		if done || ctx.Err() != nil {
			r.err = err
			return r
		}
		if r.resumes > 1000 {
			r.err = fmt.Errorf("gave up after %d resumes: %v", r.resumes, err)
			return r
		}
	}
}

// follow reads one WebSocket subscription of id from len(r.data), adding
// what it gets to r; done means the end frame came.
func follow(ctx context.Context, base, id string, r *subResult) (done bool, err error) {
	u := strings.Replace(base, "http://", "ws://", 1) + fmt.Sprintf("/ws?id=%s&from=%d", id, len(r.data))
	conn, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return false, err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return false, err
		}
		f, err := wire.DecodeFrame(b)
		if err != nil {
			return true, err
		}
		switch f.Type {
		case wire.FrameMessage, wire.FrameBatch:
			if f.Seq != int64(len(r.data))+1 {
				return true, fmt.Errorf("frame at seq %d after %d: a gap or a duplicate", f.Seq, len(r.data))
			}
			r.data = append(r.data, f.Data...)
			now := time.Now().UnixMicro()
			for _, at := range f.Time {
				r.lat = append(r.lat, time.Duration(now-at)*time.Microsecond)
			}
		case wire.FrameEnd:
			return true, nil
		case wire.FrameError:
			return false, fmt.Errorf("error frame %s: %s", f.Code, f.Message)
		}
	}
}
