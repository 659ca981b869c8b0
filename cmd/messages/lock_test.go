package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist/persisttest"
)

// process is the server binary running as a process of its own.
type process struct {
	cmd    *exec.Cmd
	log    *syncBuffer // its stderr
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// buildServer builds the server binary into a temporary directory of t.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "messages")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// spawn starts the binary bin on the database dbURL, with the flags extra,
// stopped (SIGKILL if it has not exited) when t ends.
func spawn(t *testing.T, bin, dbURL string, extra ...string) *process {
	t.Helper()
	args := append([]string{"-addr", "127.0.0.1:0", "-persist-interval", "10ms", "-database-url", dbURL}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "LISTEN_ADDR=")
	return startProcess(t, cmd, func(p *process) {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
}

// startProcess starts cmd, logging its output, and calls stop when t ends.
func startProcess(t *testing.T, cmd *exec.Cmd, stop func(*process)) *process {
	t.Helper()
	p := &process{cmd: cmd, log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { stop(p) })
	return p
}

// servingAddr finds the listening address in the server's start-up log.
var servingAddr = regexp.MustCompile(`msg=serving addr=(\S+)`)

// serve starts the binary like spawn and waits until it serves; it returns
// the server's base URL.
func serve(t *testing.T, bin, dbURL string, extra ...string) (*process, *server) {
	t.Helper()
	p := spawn(t, bin, dbURL, extra...)
	return p, p.serving(t, "server")
}

// serving waits until p serves, and returns the server; who names p in
// the failures.
func (p *process) serving(t *testing.T, who string) *server {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if m := servingAddr.FindStringSubmatch(p.log.String()); m != nil {
			return &server{base: "http://" + m[1], log: p.log}
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before serving: %v\n%s", who, p.err, p.log)
		case <-time.After(10 * time.Millisecond): // polling its log, with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving after %v\n%s", who, waitTimeout, p.log)
		}
	}
}

// wait waits at most d for p to exit and returns its exit code.
func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("process still running after %v\n%s", d, p.log)
		return 0
	}
}

// TestOneServerPerDatabase runs the real binary twice on one database, on
// each backend: the second refuses to start, saying why and what to do,
// while the first goes on and keeps every message; once the first is
// killed, a new server starts and has every message the first
// acknowledged as persisted.
func TestOneServerPerDatabase(t *testing.T) {
	bin := buildServer(t)
	for _, backend := range []struct {
		name  string
		dbURL func(testing.TB) string
	}{
		{"sqlite", func(t testing.TB) string {
			return (&url.URL{Scheme: "sqlite", Path: filepath.Join(t.TempDir(), "m.db")}).String()
		}},
		{"postgres", persisttest.DatabaseURL},
	} {
		t.Run(backend.name, func(t *testing.T) {
			dbURL := backend.dbURL(t)
			first, firstSrv := serve(t, bin, dbURL)
			do(t, "POST", firstSrv.base+"/channels", `{"id":"kept"}`, http.StatusCreated)
			var want []string
			add := func(s *server) {
				t.Helper()
				data := fmt.Sprintf("m%d", len(want)+1)
				if seq := appendMessage(t, s, "kept", data); seq != int64(len(want))+1 {
					t.Fatalf("append %s: seq %d, want %d", data, seq, len(want)+1)
				}
				want = append(want, fmt.Sprintf("%d:%s", len(want)+1, data))
			}
			for range 3 {
				add(firstSrv)
			}

			second := spawn(t, bin, dbURL)
			if code := second.wait(t, 15*time.Second); code == 0 {
				t.Fatalf("second server exited with 0, want an error\n%s", second.log)
			}
			const msg = "another messages server is using this database; stop it first, or use another database"
			if log := second.log.String(); !strings.Contains(log, "another messages server is using this database") ||
				!strings.Contains(log, "stop it first, or use another database") {
				t.Fatalf("second server's output lacks %q:\n%s", msg, log)
			}

			// The first goes on, and keeps everything.
			for range 3 {
				add(firstSrv)
			}
			if got := history(t, firstSrv, "kept"); !slices.Equal(got, want) {
				t.Fatalf("first server's history = %v, want %v", got, want)
			}

			// Killed, it leaves the database free for a new server.
			if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			first.wait(t, waitTimeout)
			third, thirdSrv := serve(t, bin, dbURL)
			if got := history(t, thirdSrv, "kept"); !slices.Equal(got, want) {
				t.Fatalf("after the first was killed, history = %v, want %v", got, want)
			}
			add(thirdSrv)
			if err := third.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := third.wait(t, waitTimeout); code != 0 {
				t.Fatalf("third server exited with %d after SIGTERM\n%s", code, third.log)
			}
		})
	}
}

// TestServerStopsWhenLockStolen cuts a running server's lock connection to
// PostgreSQL and takes the lock as a second server starting at that moment
// would: the first must stop with an error instead of going on accepting
// appends it can no longer persist.
func TestServerStopsWhenLockStolen(t *testing.T) {
	dbURL := persisttest.DatabaseURL(t)
	s := start(t, "-database-url", dbURL, "-shutdown-timeout", "2s")
	do(t, "POST", s.base+"/channels", `{"id":"c"}`, 201)
	appendMessage(t, s, "c", "before")
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	deadline := time.Now().Add(waitTimeout)
	for stolen := false; !stolen; {
		if time.Now().After(deadline) {
			t.Fatalf("could not take the server lock in %v", waitTimeout)
		}
		// Cut the holder's connection (only this test's: tests share the
		// database, each in a schema of its own), then try to take the
		// lock before the server takes it back.
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid, 10000) FROM pg_locks
			WHERE locktype = 'advisory' AND classid = 1836279667 AND granted AND objsubid = 1
			AND objid::bigint = (hashtext(current_schema())::bigint & 4294967295)
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
			t.Fatal(err)
		}
		if err := admin.QueryRow(ctx, `SELECT pg_try_advisory_lock(1836279667::bigint << 32 | (hashtext(current_schema())::bigint & 4294967295))`).Scan(&stolen); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-s.done:
		close(s.done)
		if err == nil || !strings.Contains(err.Error(), "another server took the database lock") {
			t.Fatalf("run = %v, want the lock's loss\n%s", err, s.log)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("server still running %v after losing its lock\n%s", waitTimeout, s.log)
	}
}
