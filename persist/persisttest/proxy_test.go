package persisttest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist/persisttest"
)

// echoServer starts a TCP server on loopback that echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// roundTrip writes msg on c and reads it back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	b := make([]byte, len(msg))
	_, err := io.ReadFull(c, b)
	return string(b), err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxyAddr is the host:port of a proxy URL.
func proxyAddr(t *testing.T, proxied string) string {
	t.Helper()
	u, err := url.Parse(proxied)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestFaultProxyModes checks each mode against an echo server: Pass
// forwards, Latency delays each way, Blackhole holds data (new connections
// are still accepted) until Pass delivers it, Drop cuts connections and
// closes new ones at once, and Pass after Drop serves again.
func TestFaultProxyModes(t *testing.T) {
	p, proxied := persisttest.NewProxy(t, "postgres://echo@"+echoServer(t)+"/db")
	addr := proxyAddr(t, proxied)
	c := dial(t, addr)
	if got, err := roundTrip(c, "hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("pass: %q %v", got, err)
	}

	p.Latency(50 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(c, "slow", 5*time.Second); err != nil || got != "slow" {
		t.Fatalf("latency: %q %v", got, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("a round trip with 50ms each way took %v", took)
	}
	p.Latency(0)

	p.Blackhole()
	fresh := dial(t, addr) // a hung server still accepts
	for _, conn := range []net.Conn{c, fresh} {
		_, err := roundTrip(conn, "held", 200*time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blackhole: want no answer, got %v", err)
		}
	}
	p.Pass()
	for _, conn := range []net.Conn{c, fresh} {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(conn, b); err != nil || string(b) != "held" {
			t.Fatalf("after blackhole: %q %v, want the held data", b, err)
		}
	}

	p.Drop()
	for _, conn := range []net.Conn{c, dial(t, addr)} {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("drop: read %d bytes, %v; want the connection closed", n, err)
		}
	}
	p.Pass()
	if got, err := roundTrip(dial(t, addr), "back", 5*time.Second); err != nil || got != "back" {
		t.Fatalf("pass after drop: %q %v", got, err)
	}
}

// TestFaultProxyPostgres runs PostgreSQL through the proxy: queries pass,
// hang while blackholed (a context ends them), fail at once while dropped,
// and work again on new connections afterwards.
func TestFaultProxyPostgres(t *testing.T) {
	p, proxied := persisttest.NewProxy(t, persisttest.DatabaseURL(t))
	query := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		conn, err := pgx.Connect(ctx, proxied)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		var one int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	if err := query(10 * time.Second); err != nil {
		t.Fatalf("pass: %v", err)
	}
	ctx := context.Background()
	held, err := pgx.Connect(ctx, proxied)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)

	p.Blackhole()
	if err := query(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blackhole, new connection: %v, want a timeout", err)
	}
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = held.Exec(qctx, "SELECT 1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blackhole, open connection: %v, want a timeout", err)
	}

	p.Drop()
	if err := query(10 * time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drop: %v, want a connection error", err)
	}

	p.Pass()
	p.Latency(20 * time.Millisecond)
	start := time.Now()
	if err := query(10 * time.Second); err != nil {
		t.Fatalf("pass with latency: %v", err)
	}
	// Connecting and querying take several round trips of 40 ms.
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("a connection and a query through 20 ms each way took %v", took)
	}
}
