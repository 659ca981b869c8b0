package cluster_test

import (
	"context"
	"fmt"
	"github.com/messages-server/messages/ws/wstest"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// generatorLines is what a generator writes into channel id: lines 1..n.
func generatorLines(id string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%d: %s\n", i+1, id)
	}
	return out
}

// TestOwnerDies kills the owner of two channels mid-stream: writes to
// them are served again by another node within the lease time plus a
// second, the generator goes on there from the durable point and ends
// with the exact expected lines, and readers on the other nodes resume
// with no gap and no duplicate (or a reset back to the durable point).
func TestOwnerDies(t *testing.T) {
	_, nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	owner := nodes[0]
	const lines = 400
	mustPost(t, owner.URL+"/channels", "application/json",
		fmt.Sprintf(`{"id":"gen","generator":{"freq":200,"max":%d}}`, lines), http.StatusCreated)
	mustPost(t, owner.URL+"/channels", "application/json", `{"id":"plain"}`, http.StatusCreated)
	for i := 1; i <= 20; i++ {
		mustPost(t, owner.URL+"/channels/plain/messages?wait=persisted", "text/plain", fmt.Sprintf("p%d", i), http.StatusOK)
	}
	readers := []*reader{{}, {}, {}, {}}
	errs := make(chan error, len(readers))
	for i, r := range readers {
		go func() { errs <- r.read(ctx, nodes[1+i%2].URL, "gen") }()
	}
	wstest.WaitFor(t, 30*time.Second, "the readers to get 100 lines", func() bool {
		for _, r := range readers {
			if r.got.Load() < 100 {
				return false
			}
		}
		return true
	})

	owner.crash()
	crashed := time.Now()
	// Writes through both other nodes at once: both find the owner gone,
	// wait for its lease and race to take the channel over; one wins, the
	// other forwards to it. Every acknowledged write is stored.
	var wg sync.WaitGroup
	acked := make(chan string, 20)
	for _, n := range nodes[1:] {
		wg.Go(func() {
			for i := range 10 {
				data := fmt.Sprintf("%s-%d", n.id, i)
				st, body := post(t, n.URL+"/channels/plain/messages?wait=persisted", "text/plain", data)
				if st != http.StatusOK {
					t.Errorf("append %s after the owner died: %d %s", data, st, body)
					return
				}
				if i == 0 {
					took := time.Since(crashed)
					t.Logf("%s: served again after %v (lease %v)", n.id, took, lease)
					if took > lease+time.Second {
						t.Errorf("the channel was served again %v after its owner died, want at most %v", took, lease+time.Second)
					}
				}
				acked <- data
			}
		})
	}
	wg.Wait()
	close(acked)
	if t.Failed() {
		t.FailNow()
	}
	plain := storedData(t, nodes[2].store, "plain")
	if len(plain) != 40 || !slices.Equal(plain[:20], plainPrefix(20)) {
		t.Fatalf("plain after the take-over: %q", plain)
	}
	for data := range acked {
		if !slices.Contains(plain[20:], data) {
			t.Fatalf("acknowledged %q is not stored: %q", data, plain)
		}
	}
	if n := metric(t, nodes[1], "messages_cluster_takeovers_total") + metric(t, nodes[2], "messages_cluster_takeovers_total"); n < 2 {
		t.Errorf("%v take-overs, want at least 2 (plain and gen)", n)
	}

	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := generatorLines("gen", lines)
	if got := storedData(t, nodes[1].store, "gen"); !slices.Equal(got, want) {
		t.Fatalf("stored generator content: %d lines, not the %d expected", len(got), lines)
	}
	for i, r := range readers {
		if !slices.Equal(r.data, want) {
			t.Fatalf("reader %d: %d lines, not the %d expected", i, len(r.data), lines)
		}
		t.Logf("reader %d: %d resets", i, r.resets)
	}
}

// plainPrefix is what TestOwnerDies appends to plain first.
func plainPrefix(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("p%d", i+1)
	}
	return out
}

// TestNATSRestart stops NATS mid-stream and starts it again: /readyz
// fails meanwhile, and readers on every node end with the stored content,
// with no gap and no duplicate.
func TestNATSRestart(t *testing.T) {
	ns, nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	owner := nodes[0]
	mustPost(t, owner.URL+"/channels", "application/json", `{"id":"r"}`, http.StatusCreated)
	readers := make([]*reader, 3)
	errs := make(chan error, len(readers))
	for i := range readers {
		readers[i] = &reader{}
		go func() { errs <- readers[i].read(ctx, nodes[i].URL, "r") }()
	}
	const total = 300
	next := 1
	// appendSome appends n messages through the owner, which needs no
	// NATS for them; a 503 (the channel moving) is retried.
	appendSome := func(n int) {
		t.Helper()
		for range n {
			deadline := time.Now().Add(20 * time.Second)
			for {
				st, body := post(t, owner.URL+"/channels/r/messages", "text/plain", fmt.Sprintf("m%d", next))
				if st == http.StatusOK {
					break
				}
				if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("append %d: %d %s", next, st, body)
				}
			}
			next++
		}
	}
	appendSome(total / 3)
	ns.stop()
	wstest.WaitFor(t, 10*time.Second, "readyz to fail", func() bool {
		st, _ := get(t, nodes[1].URL+"/readyz")
		return st == http.StatusServiceUnavailable
	})
	// Live on the owner, which needs no NATS for them while its lease
	// holds; the followers miss them. Past the lease it lets the channel
	// go and refuses appends ("cut off") until NATS is back.
	for range total / 3 {
		st, body := post(t, owner.URL+"/channels/r/messages", "text/plain", fmt.Sprintf("m%d", next))
		if st == http.StatusServiceUnavailable && strings.Contains(body, "cut off") {
			break
		}
		if st != http.StatusOK {
			t.Fatalf("append %d during the outage: %d %s", next, st, body)
		}
		next++
	}
	t.Logf("%d appends during the outage", next-1-total/3)
	ns.start()
	wstest.WaitFor(t, 10*time.Second, "readyz to pass", func() bool {
		st, _ := get(t, nodes[1].URL+"/readyz")
		return st == http.StatusOK
	})
	appendSome(total - (next - 1))
	mustPost(t, owner.URL+"/channels/r/close", "", "", http.StatusOK)
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := storedData(t, nodes[2].store, "r")
	if len(want) != total {
		t.Fatalf("stored %d messages, want %d", len(want), total)
	}
	for i, r := range readers {
		if !slices.Equal(r.data, want) {
			t.Fatalf("reader %d on %s: %d messages, differs from the store's", i, nodes[i].id, len(r.data))
		}
	}
}

// TestNodeCutFromNATS cuts the owner of a channel from NATS while its
// database stays reachable: it goes on writing only while its lease can
// still hold, then stops the channel and takes none (503), its readiness
// fails, another node takes the channel over, and everything acknowledged
// as persisted is kept; readers elsewhere end with the stored content.
func TestNodeCutFromNATS(t *testing.T) {
	_, nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cut := nodes[0]
	mustPost(t, cut.URL+"/channels", "application/json", `{"id":"c"}`, http.StatusCreated)
	var acked []string
	for i := range 10 {
		data := fmt.Sprintf("before-%d", i)
		mustPost(t, cut.URL+"/channels/c/messages?wait=persisted", "text/plain", data, http.StatusOK)
		acked = append(acked, data)
	}
	near := &reader{attempts: 3} // on the cut node
	nearDone := make(chan error, 1)
	go func() { nearDone <- near.read(ctx, cut.URL, "c") }()
	wstest.WaitFor(t, 10*time.Second, "the reader on the cut node to catch up", func() bool { return near.got.Load() == 10 })

	cut.nc.Close()
	cutAt := time.Now()
	if st, _ := get(t, cut.URL+"/readyz"); st != http.StatusServiceUnavailable {
		t.Errorf("readyz of the cut node: %d, want 503", st)
	}
	// It writes on while its lease may hold, then refuses.
	for i := 0; ; i++ {
		data := fmt.Sprintf("cut-%d", i)
		st, body := post(t, cut.URL+"/channels/c/messages?wait=persisted", "text/plain", data)
		if st == http.StatusOK {
			acked = append(acked, data)
			if time.Since(cutAt) > lease+2*time.Second {
				t.Fatalf("the cut node still takes appends %v after it was cut (lease %v)", time.Since(cutAt), lease)
			}
			continue
		}
		if st != http.StatusServiceUnavailable {
			t.Fatalf("append to the cut node: %d %s, want 200 then 503", st, body)
		}
		if took := time.Since(cutAt); took > lease+time.Second {
			t.Errorf("the cut node took appends for %v, want at most the lease (%v) and a second", took, lease)
		}
		break
	}
	if st, body := post(t, cut.URL+"/channels", "application/json", `{"id":"new"}`); st != http.StatusServiceUnavailable {
		t.Errorf("create on the cut node: %d %s, want 503", st, body)
	}
	// Its reader is sent away (1001): it resumes on the cut node, which
	// takes no channel, until it gives up.
	if err := <-nearDone; err == nil {
		t.Error("the reader on the cut node ended without an error")
	}
	// Another node takes over and goes on; a reader there gets it all.
	far := &reader{}
	farDone := make(chan error, 1)
	go func() { farDone <- far.read(ctx, nodes[1].URL, "c") }()
	mustPost(t, nodes[2].URL+"/channels/c/messages?wait=persisted", "text/plain", "after", http.StatusOK)
	acked = append(acked, "after")
	mustPost(t, nodes[2].URL+"/channels/c/close", "", "", http.StatusOK)
	stored := storedData(t, nodes[1].store, "c")
	if !slices.Equal(stored, acked) {
		t.Fatalf("stored %q\nwant (every acknowledged append, in order) %q", stored, acked)
	}
	if err := <-farDone; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(far.data, stored) {
		t.Fatalf("reader on another node: %q, want the stored %q", far.data, stored)
	}
}
