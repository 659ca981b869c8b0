package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/client"
)

func TestClusterConfig(t *testing.T) {
	const pg = "postgres://h/db"
	for _, tc := range []struct {
		args []string
		want string // in the error; "" for none
	}{
		{[]string{"-nats-url", "nats://127.0.0.1:4222", "-database-url", "sqlite:x.db"}, "cluster mode (-nats-url) needs PostgreSQL"},
		{[]string{"-nats-url", "nats://127.0.0.1:4222", "-database-url", pg, "-node-id", "a.b"}, `node id "a.b" is not 1 to 64 of [A-Za-z0-9_-]`},
		{[]string{"-nats-url", "nats://127.0.0.1:4222", "-database-url", pg, "-lease-time", "10ms"}, "lease time 10ms: must be in [300ms, 10m]"},
		{[]string{"-nats-url", "nats://127.0.0.1:4222", "-database-url", pg, "-node-id", "n_1-x"}, ""},
		{[]string{"-nats-url", "nats://127.0.0.1:4222", "-database-url", pg}, ""},
		{[]string{"-database-url", "sqlite:x.db", "-node-id", "ignored"}, ""},
	} {
		c, err := parseConfig(tc.args, noEnv, io.Discard)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.args, err)
			}
			if c.cluster.on() && (c.cluster.nodeID == "" || c.cluster.lease != 5*time.Second) {
				t.Errorf("%q: node id %q, lease %v; want one, and 5s", tc.args, c.cluster.nodeID, c.cluster.lease)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	env := map[string]string{"NATS_URL": "nats://n:4222", "NODE_ID": "n7", "LEASE_TIME": "2s", "DATABASE_URL": pg}
	c, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.cluster != (clusterConfig{natsURL: "nats://n:4222", nodeID: "n7", lease: 2 * time.Second}) {
		t.Fatalf("cluster config from the environment: %+v, %v", c.cluster, err)
	}
}

// startNATS starts an embedded NATS server on a loopback port, stopped
// when t ends, and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(s.Shutdown)
	return fmt.Sprintf("nats://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)
}

// serveNode starts the binary bin as cluster node id and waits until it
// serves.
func serveNode(t *testing.T, bin, dbURL, natsURL, id string) (*process, *server) {
	t.Helper()
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-persist-interval", "10ms", "-database-url", dbURL,
		"-nats-url", natsURL, "-node-id", id, "-lease-time", "1s")
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "LISTEN_ADDR=", "NATS_URL=", "NODE_ID=", "LEASE_TIME=")
	p := startProcess(t, cmd, func(p *process) {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(waitTimeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p, p.serving(t, "node "+id)
}

// readLines reads channel id through base to its end, resuming after
// drops and resets, and returns the lines it ends with; got is called
// with the count of lines after each one.
func readLines(ctx context.Context, base, id string, got func(int)) ([]string, error) {
	var lines []string
	opts := client.Options{Resume: true, ResumeAttempts: 100,
		ResumeMinBackoff: 10 * time.Millisecond, ResumeMaxBackoff: 200 * time.Millisecond}
	for {
		sub, err := client.Subscribe(ctx, base, id, opts)
		if err != nil {
			return lines, err
		}
		for err == nil {
			var ev client.Event
			if ev, err = sub.Next(ctx); err != nil {
				break
			}
			switch ev.Kind {
			case client.EventMessage:
				if ev.Seq != int64(len(lines))+1 {
					return lines, fmt.Errorf("seq %d after %d lines", ev.Seq, len(lines))
				}
				lines = append(lines, ev.Data)
				got(len(lines))
			case client.EventEnd:
				_ = sub.Close()
				return lines, nil
			}
		}
		_ = sub.Close()
		se, ok := errors.AsType[*client.ServerError](err)
		if !ok || !errors.Is(err, client.ErrReset) {
			return lines, err
		}
		lines = lines[:min(int(se.LastSeq), len(lines))]
		opts.From, opts.Epoch = int64(len(lines)), ""
	}
}

// TestClusterSIGKILL runs three real server processes as a cluster on one
// database and NATS, and SIGKILLs the owner of a generator channel
// mid-stream: a write through another node is served within the lease
// time plus a second, the generator finishes elsewhere with the exact
// expected lines, and readers on the surviving nodes get them all, with no
// gap and no duplicate.
func TestClusterSIGKILL(t *testing.T) {
	bin := buildServer(t)
	dbURL := persisttest.DatabaseURL(t)
	natsURL := startNATS(t)
	procs := make([]*process, 3)
	srvs := make([]*server, 3)
	for i := range procs {
		procs[i], srvs[i] = serveNode(t, bin, dbURL, natsURL, fmt.Sprintf("node%d", i+1))
	}
	const lines = 300
	do(t, "POST", srvs[0].base+"/channels", fmt.Sprintf(`{"id":"g","generator":{"freq":100,"max":%d}}`, lines), http.StatusCreated)
	do(t, "POST", srvs[0].base+"/channels", `{"id":"p"}`, http.StatusCreated)
	appendMessage(t, srvs[0], "p", "before")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		lines []string
		err   error
	}
	results := make(chan result, 2)
	progress := make(chan int, 16)
	for _, s := range srvs[1:] {
		go func() {
			l, err := readLines(ctx, s.base, "g", func(n int) {
				select {
				case progress <- n:
				default: // the test reads only the first ones
				}
			})
			results <- result{l, err}
		}()
	}
	for n := range progress {
		if n >= 50 {
			break
		}
	}
	if err := procs[0].cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	// Once the process is gone its NATS connection is closed: a write
	// sent earlier could reach it dying and get no answer (503 after the
	// forward timeout, since it may have been applied).
	select {
	case <-procs[0].exited:
	case <-time.After(waitTimeout):
		t.Fatal("the killed node did not exit")
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", srvs[1].base+"/channels/p/messages?wait=persisted", strings.NewReader("after"))
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("append after the kill: %d", resp.StatusCode)
		}
	}
	took := time.Since(killed)
	t.Logf("channel served again %v after SIGKILL (lease 1s)", took)
	if took > 2*time.Second {
		t.Errorf("channel served again %v after SIGKILL, want at most the lease (1s) plus 1s", took)
	}
	want := make([]string, lines)
	for i := range want {
		want[i] = fmt.Sprintf("%d: g\n", i+1)
	}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !slices.Equal(r.lines, want) {
			t.Fatalf("a reader got %d lines, not the %d expected", len(r.lines), lines)
		}
	}
	if h := history(t, srvs[2], "p"); len(h) != 2 || h[1] != "2:after" {
		t.Fatalf("history of p: %q", h)
	}
}
