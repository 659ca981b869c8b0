package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/time/rate"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

// TestConnectionTimeouts: the listener drops a client whose headers stall
// (-read-header-timeout) and an idle keep-alive connection
// (-idle-timeout), so neither holds a connection forever.
func TestConnectionTimeouts(t *testing.T) {
	s := start(t, "-database-url", "sqlite:"+filepath.Join(t.TempDir(), "m.db"),
		"-read-header-timeout", "100ms", "-idle-timeout", "100ms")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(waitTimeout)) // a kept connection fails the test
		return c
	}

	slow := dial()
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("stalled headers: the connection was not closed by the server: %v", err)
	}

	idle := dial()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("healthz: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	if n, err := io.Copy(io.Discard, br); err != nil || n != 0 {
		t.Fatalf("idle keep-alive connection: read %d bytes, %v; want it closed by the server", n, err)
	}
}

func TestByteSizeFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"268435456", 256 << 20, true}, {"256MiB", 256 << 20, true}, {"64KiB", 64 << 10, true},
		{"2GiB", 2 << 30, true}, {"1.5GiB", 0, false}, {"-1", 0, false}, {"10MB", 0, false}, {"", 0, false},
	} {
		var b byteSize
		err := b.Set(c.in)
		if (err == nil) != c.ok || (c.ok && int64(b) != c.want) {
			t.Errorf("Set(%q) = %d, %v; want %d, ok %v", c.in, b, err, c.want, c.ok)
		}
	}
	env := func(k string) string {
		return map[string]string{"MAX_BUFFERED_BYTES": "64MiB", "MAX_CHANNEL_BYTES": "lots"}[k]
	}
	if _, err := parseConfig(nil, env, io.Discard); err == nil || !strings.Contains(err.Error(), `MAX_CHANNEL_BYTES="lots"`) {
		t.Errorf("a bad MAX_CHANNEL_BYTES: %v", err)
	}
	env = func(k string) string { return map[string]string{"MAX_BUFFERED_BYTES": "64MiB"}[k] }
	c, err := parseConfig([]string{"-max-channel-bytes", "1MiB"}, env, io.Discard)
	if err != nil || c.bounds.maxBufferedBytes != 64<<20 || c.bounds.maxChannelBytes != 1<<20 {
		t.Errorf("MAX_BUFFERED_BYTES=64MiB -max-channel-bytes 1MiB: %+v, %v", c.bounds, err)
	}
	// -max-catchup-bytes: 64MiB by default, the flag over MAX_CATCHUP_BYTES,
	// at least 64KiB.
	if c.bounds.maxCatchupBytes != 64<<20 {
		t.Errorf("max catch-up bytes by default: %d, want 64MiB", c.bounds.maxCatchupBytes)
	}
	env = func(k string) string { return map[string]string{"MAX_CATCHUP_BYTES": "8MiB"}[k] }
	if c, err = parseConfig(nil, env, io.Discard); err != nil || c.bounds.maxCatchupBytes != 8<<20 {
		t.Errorf("MAX_CATCHUP_BYTES=8MiB: %d, %v", c.bounds.maxCatchupBytes, err)
	}
	if c, err = parseConfig([]string{"-max-catchup-bytes", "1GiB"}, env, io.Discard); err != nil || c.bounds.maxCatchupBytes != 1<<30 {
		t.Errorf("-max-catchup-bytes 1GiB: %d, %v", c.bounds.maxCatchupBytes, err)
	}
	if _, err = parseConfig([]string{"-max-catchup-bytes", "1KiB"}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "max catch-up bytes") {
		t.Errorf("-max-catchup-bytes 1KiB: %v, want refused", err)
	}
}

func TestQuotaFlags(t *testing.T) {
	c, err := parseConfig([]string{"-trusted-proxies", "10.0.0.0/8, 192.168.1.7,::1", "-max-conns-per-ip", "5"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.bounds.proxies()
	if err != nil || fmt.Sprint(p) != "[10.0.0.0/8 192.168.1.7/32 ::1/128]" || c.bounds.maxConnsPerIP != 5 {
		t.Errorf("proxies %v, %v; conns %d", p, err, c.bounds.maxConnsPerIP)
	}
	for _, args := range [][]string{
		{"-trusted-proxies", "10.0.0.0/33"}, {"-trusted-proxies", "proxy.local"},
		{"-max-open-channels", "0"}, {"-create-rate", "-1"}, {"-max-generator-rate", "0"},
	} {
		if _, err := parseConfig(args, noEnv, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	env := func(k string) string { return map[string]string{"CREATE_RATE": "fast"}[k] }
	if _, err := parseConfig(nil, env, io.Discard); err == nil || !strings.Contains(err.Error(), "CREATE_RATE") {
		t.Errorf("CREATE_RATE=fast: %v", err)
	}
}

// TestListensBeforeTakeOver: the port opens at once after a restart, even
// while taking over the previous process's generators cannot proceed (here
// its tables are locked); /readyz says 503 until the take-over is done,
// then 200, and the generator runs again.
func TestListensBeforeTakeOver(t *testing.T) {
	dbURL := persisttest.DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	store, err := persist.Open(ctx, persist.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateChannel(ctx, "gen", &persist.Generator{Freq: 1000, Max: 5}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	locker, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE channels IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	s := start(t, "-database-url", dbURL, "-store-timeout", "1m") // the take-over waits for the lock
	do(t, "GET", s.base+"/healthz", "", http.StatusOK)
	if b := do(t, "GET", s.base+"/readyz", "", http.StatusServiceUnavailable); !strings.Contains(string(b), "taking over") {
		t.Fatalf("readyz during the take-over: %s", b)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after the lock was released\n%s", s.log)
		}
		time.Sleep(5 * time.Millisecond) // polling step
	}
	want := "1: gen\n2: gen\n3: gen\n4: gen\n5: gen\n"
	if got := string(do(t, "GET", s.base+"/?id=gen", "", http.StatusOK)); got != want {
		t.Fatalf("the taken-over generator streamed %q, want %q", got, want)
	}
}

// TestDefaultCreationQuotaAdmitsReferenceTwice: with the default per-client
// creation quota, the reference workload (1000 POST / at once from one
// address) runs twice in a row without a 429, the second run starting
// three seconds after the first (its 50 lines at 20 a second take 2.5 s).
func TestDefaultCreationQuotaAdmitsReferenceTwice(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	lim := rate.NewLimiter(rate.Limit(c.bounds.createRate), c.bounds.createBurst)
	start := time.Now()
	for run, at := range []time.Time{start, start.Add(3 * time.Second)} {
		for i := range 1000 {
			if !lim.AllowN(at, 1) {
				t.Fatalf("run %d: creation %d refused by the default quota (-create-rate %v, -create-burst %d)",
					run+1, i+1, c.bounds.createRate, c.bounds.createBurst)
			}
		}
	}
}
