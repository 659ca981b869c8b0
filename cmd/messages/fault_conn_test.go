//go:build unix

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawConn opens a TCP connection to the server of base, closed when t ends.
func rawConn(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads c until the server closes it, discarding what comes,
// and returns how long that took; it fails t if c is still open after d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", d)
	}
	return time.Since(start)
}

// TestFaultSlowHeaders opens 100 connections that send their headers one
// line every 200 ms (slowloris) and one that goes idle after a request:
// the server closes each after -read-header-timeout or -idle-timeout, and
// answers everyone else meanwhile.
func TestFaultSlowHeaders(t *testing.T) {
	t.Parallel()
	const slow = 100
	s := start(t, "-database-url", sqliteArg(t), "-read-header-timeout", "1s", "-idle-timeout", "1s")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	took := make(chan time.Duration, slow)
	for range slow {
		c := rawConn(t, s.base)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
		wg.Go(func() { // trickles header lines until the server hangs up
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C: // the slow client's pace
				}
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", i); err != nil {
					return
				}
			}
		})
		wg.Go(func() { took <- closedWithin(t, c, 30*time.Second) })
	}
	defer func() { close(stop); wg.Wait() }()
	c := faultClient(t, 10*time.Second)
	if a, err := ask(c, "GET", s.base+"/healthz", "", ""); err != nil || a.status != http.StatusOK {
		t.Fatalf("GET /healthz among slow clients: %+v %v", a, err)
	}

	idle := rawConn(t, s.base)
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("keep-alive request: %v %v", resp, err)
	}
	idleFor := closedWithin(t, idle, 30*time.Second)

	var slowest time.Duration
	for range slow {
		slowest = max(slowest, <-took)
	}
	t.Logf("RELIABILITY slow headers: %d slowloris connections closed after at most %v (read header timeout 1s); an idle keep-alive connection closed after %v (idle timeout 1s)",
		slow, slowest.Round(time.Millisecond), idleFor.Round(time.Millisecond))
}

// TestFaultSlowBody sends the body of each request that has one a byte
// every 100 ms: with -body-timeout 1s the answer is 408 with a JSON error,
// the connection is closed, and nothing is created or appended.
func TestFaultSlowBody(t *testing.T) {
	t.Parallel()
	s := start(t, "-database-url", sqliteArg(t), "-body-timeout", "1s")
	do(t, "POST", s.base+"/channels", `{"id":"slow"}`, http.StatusCreated)
	for _, path := range []string{"/channels/slow/messages", "/channels", "/?freq=10&max=1"} {
		c := rawConn(t, s.base)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n", path)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C: // the slow client's pace
				}
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		})
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("POST %s with a slow body: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		close(stop)
		wg.Wait()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), `"error"`) {
			t.Errorf("POST %s with a slow body: %d %s, want 408 with a JSON error", path, resp.StatusCode, b)
		}
		t.Logf("RELIABILITY slow body: POST %s got %d after %v (body timeout 1s)", path, resp.StatusCode, time.Since(start).Round(time.Millisecond))
	}
	var list struct {
		Channels []struct {
			ID      string
			LastSeq int64 `json:"last_seq"`
		}
	}
	decodeInto(t, do(t, "GET", s.base+"/channels", "", http.StatusOK), &list)
	if len(list.Channels) != 1 || list.Channels[0].LastSeq != 0 {
		t.Errorf("after the slow bodies the channels are %+v, want only slow, empty", list.Channels)
	}
}

// TestFaultStalledBodies opens 2000 connections that send the headers of
// an append and part of its body, then nothing. The server goes on
// answering others at once; each stalled request gets 408 after
// -body-timeout; its goroutines and memory are given back, and nothing of
// the stalled bodies is appended.
func TestFaultStalledBodies(t *testing.T) {
	// Not parallel: it counts the goroutines of this process, the
	// server's included, and they must come back to where they were.
	const stalled = 2000
	raiseFileLimit(t, 2*stalled+500) // both ends of each connection are in this process
	s := start(t, "-database-url", sqliteArg(t), "-body-timeout", "5s")
	do(t, "POST", s.base+"/channels", `{"id":"stall"}`, http.StatusCreated)
	before := metrics(t, s.base)

	conns := openStalled(t, s.base, stalled)
	peak := metrics(t, s.base)
	c := faultClient(t, 10*time.Second)
	served, err := ask(c, "POST", s.base+"/channels/stall/messages", "text/plain", "whole")
	if err != nil || served.status != http.StatusOK {
		t.Fatalf("an append among %d stalled bodies: %+v %v", stalled, served, err)
	}

	statuses := make(chan int, stalled)
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Go(func() {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	got := make(map[int]int)
	for st := range statuses {
		got[st]++
	}
	if got[http.StatusRequestTimeout] != stalled {
		t.Errorf("stalled bodies answered %v, want %d × 408", got, stalled)
	}
	for _, conn := range conns {
		conn.Close()
	}
	eventually(t, time.Minute, "the stalled requests' goroutines given back", func() bool {
		return metrics(t, s.base)["go_goroutines"] < before["go_goroutines"]+100
	})
	runtime.GC() // the server runs in this process: let the heap show what is still live
	after := metrics(t, s.base)
	var info struct {
		LastSeq int64 `json:"last_seq"`
	}
	decodeInto(t, do(t, "GET", s.base+"/channels/stall", "", http.StatusOK), &info)
	if info.LastSeq != 1 {
		t.Errorf("last_seq %d after one whole append among stalled ones, want 1", info.LastSeq)
	}
	t.Logf("RELIABILITY stalled bodies: %d answered %v; a whole append among them took %v; goroutines %v → %v → %v, heap in use %s → %s → %s (test process, clients included)",
		stalled, got, served.took.Round(time.Millisecond),
		before["go_goroutines"], peak["go_goroutines"], after["go_goroutines"],
		mib(before["go_memstats_heap_inuse_bytes"]), mib(peak["go_memstats_heap_inuse_bytes"]), mib(after["go_memstats_heap_inuse_bytes"]))
}

// openStalled opens n connections to base, 32 at a time, each sending the
// headers of an append and 7 bytes of its 100-byte body, then nothing. They
// are closed when t ends.
func openStalled(t *testing.T, base string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range jobs {
				c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 30*time.Second)
				if err != nil {
					t.Errorf("connection %d: %v", i, err)
					continue
				}
				fmt.Fprintf(c, "POST /channels/stall/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\npartial")
				conns[i] = c
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return conns
}

// raiseFileLimit raises the soft limit on open files to at least need,
// within the hard limit, and fails t if it cannot.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("get RLIMIT_NOFILE: %v", err)
	}
	if l.Cur >= need {
		return
	}
	if l.Max < need {
		t.Fatalf("this case needs %d open files and the hard limit is %d: raise it (ulimit -Hn)", need, l.Max)
	}
	l.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("set RLIMIT_NOFILE to %d: %v", need, err)
	}
}
