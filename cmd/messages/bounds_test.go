package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("stalled headers: the connection was not closed by the server: %v", err)
	}

	idle := dial()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
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
