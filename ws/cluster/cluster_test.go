package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/client"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// TestReadersOnAllNodes: readers of a channel owned by one node, on every
// node, joining before and during the stream, get byte-identical content,
// the same as the store's; appends and the close sent to other nodes are
// forwarded to the owner.
func TestReadersOnAllNodes(t *testing.T) {
	_, nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustPost(t, nodes[0].URL+"/channels", "application/json", `{"id":"shared"}`, http.StatusCreated)

	const total = 300
	readers := make([]*reader, 6)
	errs := make(chan error, len(readers))
	start := func(i int) {
		readers[i] = &reader{}
		go func() { errs <- readers[i].read(ctx, nodes[i%3].URL, "shared") }()
	}
	for i := range 3 {
		start(i)
	}
	for i := 1; i <= total; i++ {
		n := nodes[i%3] // through every node: two thirds are forwarded
		mustPost(t, n.URL+"/channels/shared/messages", "text/plain", fmt.Sprintf("line %d\n", i), http.StatusOK)
		if i == total/2 {
			for j := 3; j < 6; j++ {
				start(j) // late joiners: catch-up, then live
			}
		}
	}
	mustPost(t, nodes[2].URL+"/channels/shared/close", "", "", http.StatusOK)
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := storedData(t, nodes[1].store, "shared")
	if len(want) != total {
		t.Fatalf("stored %d messages, want %d", len(want), total)
	}
	for i, r := range readers {
		if !slices.Equal(r.data, want) {
			t.Fatalf("reader %d on %s: %d messages, differs from the store's %d", i, nodes[i%3].id, len(r.data), len(want))
		}
	}
	if n := metric(t, nodes[1], "messages_cluster_forwards_total"); n < total/3 {
		t.Errorf("node 2 forwarded %v writes, want at least %d", n, total/3)
	}
	if n := metric(t, nodes[1], "messages_cluster_follows_total"); n < 1 {
		t.Errorf("node 2 started no follower")
	}
}

// TestConcurrentAppendsThroughAllNodes: appends to one channel sent at
// once through every node get contiguous seqs, and every acknowledged
// append is stored at its seq.
func TestConcurrentAppendsThroughAllNodes(t *testing.T) {
	_, nodes := startCluster(t, 3)
	mustPost(t, nodes[1].URL+"/channels", "application/json", `{"id":"busy"}`, http.StatusCreated)
	const per = 60
	var (
		mu    sync.Mutex
		acked = map[int64]string{}
		wg    sync.WaitGroup
	)
	for w := range 6 {
		wg.Go(func() {
			n := nodes[w%3]
			for i := range per {
				data := fmt.Sprintf("w%d-%d", w, i)
				q := ""
				if i%2 == 0 {
					q = "?wait=persisted"
				}
				st, body := post(t, n.URL+"/channels/busy/messages"+q, "text/plain", data)
				if st != http.StatusOK {
					t.Errorf("append %s via %s: %d %s", data, n.id, st, body)
					return
				}
				var r struct{ Seq int64 }
				if err := json.Unmarshal([]byte(body), &r); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, dup := acked[r.Seq]; dup {
					t.Errorf("seq %d acknowledged twice: %s and %s", r.Seq, prev, data)
				}
				acked[r.Seq] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	mustPost(t, nodes[2].URL+"/channels/busy/close", "", "", http.StatusOK)
	stored := storedData(t, nodes[0].store, "busy")
	if len(stored) != 6*per || len(acked) != 6*per {
		t.Fatalf("stored %d, acknowledged %d, want %d", len(stored), len(acked), 6*per)
	}
	for seq, data := range acked {
		if stored[seq-1] != data {
			t.Fatalf("seq %d stored %q, acknowledged %q", seq, stored[seq-1], data)
		}
	}
}

// metric returns the sum of the samples of the named metric on node n.
func metric(t testing.TB, n *testNode, name string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
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
			}
		}
	}
	return sum
}

// TestSnapshotCarriesOnlyUnpersisted: a follower's snapshot holds only
// what the store does not have, so it stays small however much history
// the owner keeps in memory; the follower's subscribers read the rest
// from the store.
func TestSnapshotCarriesOnlyUnpersisted(t *testing.T) {
	_, nodes := startCluster(t, 2)
	mustPost(t, nodes[0].URL+"/channels", "application/json", `{"id":"s"}`, http.StatusCreated)
	for i := range 50 {
		mustPost(t, nodes[0].URL+"/channels/s/messages?wait=persisted", "text/plain", fmt.Sprintf("m%d", i), http.StatusOK)
	}
	snap, err := nodes[0].hub.OwnerSnapshot(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Persisted != 50 || snap.LastSeq != 50 || len(snap.Messages) != 0 {
		t.Fatalf("snapshot: persisted %d, last %d, %d messages; want 50, 50 and none", snap.Persisted, snap.LastSeq, len(snap.Messages))
	}
	if _, err := nodes[1].hub.OwnerSnapshot(t.Context(), "s"); !errors.Is(err, hub.ErrMoved) {
		t.Fatalf("snapshot from a node that does not own the channel: %v, want ErrMoved", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustPost(t, nodes[0].URL+"/channels/s/close", "", "", http.StatusOK)
	r := &reader{}
	if err := r.read(ctx, nodes[1].URL, "s"); err != nil || len(r.data) != 50 {
		t.Fatalf("reader on the other node: %d messages, %v", len(r.data), err)
	}
}

// TestDeleteThroughAnotherNode: DELETE of a channel sent to a node that
// does not own it is done by the owner, whose readers and the followers'
// readers all end as deleted (4410); appends through any node then get
// 404, and the id can be created again.
func TestDeleteThroughAnotherNode(t *testing.T) {
	_, nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustPost(t, nodes[0].URL+"/channels", "application/json", `{"id":"d"}`, http.StatusCreated)
	mustPost(t, nodes[0].URL+"/channels/d/messages", "text/plain", "m1", http.StatusOK)
	readers := make([]*reader, 3)
	errs := make(chan error, 3)
	for i := range readers {
		readers[i] = &reader{}
		go func() { errs <- readers[i].read(ctx, nodes[i].URL, "d") }()
	}
	wstest.WaitFor(t, 10*time.Second, "every reader to get m1", func() bool {
		for _, r := range readers {
			if r.got.Load() < 1 {
				return false
			}
		}
		return true
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, nodes[2].URL+"/channels/d", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE through another node: %d, want 204", resp.StatusCode)
	}
	for range readers {
		err := <-errs
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != "deleted" {
			t.Errorf("reader after the delete: %v, want a deleted error", err)
		}
	}
	for _, n := range nodes {
		if st, body := post(t, n.URL+"/channels/d/messages", "text/plain", "m2"); st != http.StatusNotFound {
			t.Errorf("append through %s after the delete: %d %s, want 404", n.id, st, body)
		}
	}
	mustPost(t, nodes[1].URL+"/channels", "application/json", `{"id":"d"}`, http.StatusCreated)
}
