package main

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// notPersisted matches the log line of a channel whose tail could not be
// persisted before the shutdown timeout.
var notPersisted = regexp.MustCompile(`msg="messages not persisted before shutdown" channel=(\S+) from=(\d+) to=(\d+)`)

// TestFaultShutdownDuringOutage stops the server (as SIGTERM does) while
// the database is down, with messages acknowledged as persisted and others
// acknowledged only as appended. The shutdown gives up after
// -shutdown-timeout, run returns an error, and the log names, per channel,
// exactly the seqs it could not persist: once the database is back, each
// channel's stored messages are exactly the seqs before those, byte for
// byte, and every message acknowledged as persisted is among them.
func TestFaultShutdownDuringOutage(t *testing.T) {
	t.Parallel()
	const channels, before, during = 3, 5, 7
	proxy, proxied, direct := behindProxy(t)
	s := start(t, "-database-url", proxied, "-shutdown-timeout", "2s", "-persist-wait-timeout", "2s")
	c := faultClient(t, 30*time.Second)
	l := make([]*ledger, channels)
	for i := range l {
		l[i] = &ledger{id: fmt.Sprintf("stop-%d", i), acks: make(map[int64]ack)}
		do(t, "POST", s.base+"/channels", fmt.Sprintf(`{"id":%q}`, l[i].id), http.StatusCreated)
	}
	appendTo := func(l *ledger, wait bool) {
		u := s.base + "/channels/" + l.id + "/messages"
		if wait {
			u += "?wait=persisted"
		}
		data := payload(l.id, int(l.next.Add(1)))
		a, err := ask(c, "POST", u, "text/plain", data)
		l.record(data, wait, a, err)
	}
	for _, l := range l {
		for range before {
			appendTo(l, true)
		}
	}
	proxy.Drop()
	for _, l := range l {
		for range during {
			appendTo(l, false)
		}
	}

	s.cancel()
	var stopErr error
	select {
	case stopErr = <-s.done:
		close(s.done) // stop, at cleanup, sees it closed
	case <-time.After(time.Minute):
		t.Fatalf("the server did not stop within a minute of a 2s shutdown timeout\n%s", s.log)
	}
	if stopErr == nil || !strings.Contains(stopErr.Error(), "unclean shutdown") {
		t.Fatalf("run after a shutdown with the database down = %v, want an unclean shutdown\n%s", stopErr, s.log)
	}
	named := make(map[string][2]int64)
	for _, m := range notPersisted.FindAllStringSubmatch(s.log.String(), -1) {
		from, _ := strconv.ParseInt(m[2], 10, 64)
		to, _ := strconv.ParseInt(m[3], 10, 64)
		named[m[1]] = [2]int64{from, to}
	}

	proxy.Pass()
	total := checkNamedLost(t, direct, l, named, before+during)
	t.Logf("RELIABILITY shutdown during an outage: exit error %q; acknowledged as persisted %d, all stored; acknowledged as appended %d, of which %d not persisted, each named in the log (%v)",
		stopErr, total.persisted, total.appended, total.lost, named)
}

// checkNamedLost checks, once the database of dbURL is back, that each
// ledger's channel holds exactly the seqs before those the log named as
// not persisted (named: channel → from, to; appended: the channel's last
// seq), byte for byte, and every message acknowledged as persisted.
func checkNamedLost(t *testing.T, dbURL string, ledgers []*ledger, named map[string][2]int64, appended int64) tally {
	t.Helper()
	ctx := contextFor(t, time.Minute)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var total tally
	for _, l := range ledgers {
		r, ok := named[l.id]
		if !ok {
			t.Errorf("%s: the log does not say what was not persisted", l.id)
			continue
		}
		stored := storedMessages(t, ctx, conn, l.id)
		if int64(len(stored)) != r[0]-1 || r[1] != appended {
			t.Errorf("%s: the log says %d..%d were not persisted; %d stored, %d appended", l.id, r[0], r[1], len(stored), appended)
		}
		l.mu.Lock()
		for seq, a := range l.acks {
			d, ok := stored[seq]
			switch {
			case ok && d != a.data:
				t.Errorf("%s: seq %d stored as %q, acknowledged as %q", l.id, seq, d, a.data)
			case !ok && a.persisted:
				t.Errorf("%s: seq %d was acknowledged as persisted and is not stored", l.id, seq)
			case !ok:
				total.lost++ // acknowledged as appended only, and named in the log
			}
		}
		total.persisted += l.persisted
		total.appended += l.appended
		total.stored += len(stored)
		l.mu.Unlock()
	}
	return total
}
