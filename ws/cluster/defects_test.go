package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// holdWrites holds a lock on the messages table that stops every write of
// messages (reads go on) until the returned func is called: the owner's
// batches wait on it, as on a slow database. (A batch locks no channel
// row unless it closes the channel.)
func holdWrites(t *testing.T, n *testNode) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, n.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE messages IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	done := false
	unlock = func() {
		if !done {
			done = true
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
		}
	}
	t.Cleanup(unlock)
	return unlock
}

// TestForwardedPersistWait: an append with ?wait=persisted through a node
// that does not own the channel, whose persist outlasts the owner's
// persist-wait timeout, is answered as the owner answers it: 504 with its
// seq, even when the cluster's request timeout is shorter than that wait.
func TestForwardedPersistWait(t *testing.T) {
	_, nodes := startCluster(t, 2, func(s *nodeSetup) {
		s.hub.PersistWaitTimeout = time.Second
		s.cluster.RequestTimeout = 300 * time.Millisecond
		s.cluster.WaitTimeout = 3 * time.Second
	})
	mustPost(t, nodes[0].URL+"/channels", "application/json", `{"id":"slow"}`, http.StatusCreated)
	mustPost(t, nodes[0].URL+"/channels/slow/messages?wait=persisted", "text/plain", "m1", http.StatusOK)
	unlock := holdWrites(t, nodes[0])
	st, body := post(t, nodes[1].URL+"/channels/slow/messages?wait=persisted", "text/plain", "m2")
	unlock()
	var e struct {
		Seq int64 `json:"seq"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	if st != http.StatusGatewayTimeout || e.Seq != 2 {
		t.Fatalf("forwarded slow append: %d %s, want 504 with seq 2", st, body)
	}
	wstest.WaitFor(t, 10*time.Second, "m2 to be stored", func() bool {
		return len(storedData(t, nodes[1].store, "slow")) == 2
	})
}

// lossyCluster is a cluster node that loses the events drop picks, as
// NATS may lose a message.
type lossyCluster struct {
	hub.Cluster
	drop func(hub.Event) bool
}

func (l lossyCluster) Publish(ev hub.Event) {
	if !l.drop(ev) {
		l.Cluster.Publish(ev)
	}
}

// TestFollowerLostLastMessage: a follower that missed the last message of
// a quiet channel learns it from the persisted watermark (above its last
// seq) and resyncs: its reader gets the message without another append.
func TestFollowerLostLastMessage(t *testing.T) {
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	owner := startNode(t, dbURL, ns, "n1", func(s *nodeSetup) {
		s.wrap = func(c hub.Cluster) hub.Cluster {
			return lossyCluster{Cluster: c, drop: func(ev hub.Event) bool {
				return ev.Kind == hub.EventMessage && ev.Seq == 2
			}}
		}
	})
	other := startNode(t, dbURL, ns, "n2")
	mustPost(t, owner.URL+"/channels", "application/json", `{"id":"quiet"}`, http.StatusCreated)
	mustPost(t, owner.URL+"/channels/quiet/messages?wait=persisted", "text/plain", "m1", http.StatusOK)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &reader{}
	done := make(chan error, 1)
	go func() { done <- r.read(ctx, other.URL, "quiet") }()
	wstest.WaitFor(t, 10*time.Second, "the reader on n2 to get m1", func() bool { return r.got.Load() == 1 })
	mustPost(t, owner.URL+"/channels/quiet/messages?wait=persisted", "text/plain", "m2", http.StatusOK)
	wstest.WaitFor(t, 5*time.Second, "the reader on n2 to get m2", func() bool { return r.got.Load() == 2 })
	cancel()
	<-done
}

// TestDeleteInvalidatesOtherNodesHistory: a closed channel read through
// node B, then deleted and created again through node A, is served by B
// with its new content (text stream and history API), never the old one.
func TestDeleteInvalidatesOtherNodesHistory(t *testing.T) {
	_, nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	write := func(msgs ...string) {
		t.Helper()
		mustPost(t, a.URL+"/channels", "application/json", `{"id":"doc"}`, http.StatusCreated)
		for _, m := range msgs {
			mustPost(t, a.URL+"/channels/doc/messages?wait=persisted", "text/plain", m, http.StatusOK)
		}
		mustPost(t, a.URL+"/channels/doc/close", "application/json", "", http.StatusOK)
	}
	read := func(want string) {
		t.Helper()
		if st, body := get(t, b.URL+"/?id=doc"); st != http.StatusOK || body != want {
			t.Fatalf("GET /?id=doc on B: %d %q, want %q", st, body, want)
		}
		st, body := get(t, b.URL+"/channels/doc/messages")
		var page struct {
			Messages []struct {
				Data string `json:"data"`
			} `json:"messages"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil || st != http.StatusOK {
			t.Fatalf("history on B: %d %s", st, body)
		}
		got := ""
		for _, m := range page.Messages {
			got += m.Data
		}
		if got != want {
			t.Fatalf("history on B: %q, want %q", got, want)
		}
	}
	write("old1 ", "old2 ")
	read("old1 old2 ")
	read("old1 old2 ") // now from B's cache
	if b.hub.HistoryCacheBytes() == 0 {
		t.Fatal("B cached nothing")
	}
	req, _ := http.NewRequest(http.MethodDelete, a.URL+"/channels/doc", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	// The delete reaches B's cache over NATS.
	wstest.WaitFor(t, 5*time.Second, "B to drop its cached history", func() bool { return b.hub.HistoryCacheBytes() == 0 })
	write("new ")
	read("new ")
}

// TestProducerRetryWhilePersisting: an idempotent producer's append that
// timed out waiting for persistence (504) is accepted; its retry, while
// the first is still not committed, is recognised and never appended
// again (it is answered 504 too: the first may still be refused by the
// fence), and once the first is committed a retry is a duplicate. The
// same for Stream-Seq.
func TestProducerRetryWhilePersisting(t *testing.T) {
	_, nodes := startCluster(t, 1, func(s *nodeSetup) { s.hub.PersistWaitTimeout = 300 * time.Millisecond })
	a := nodes[0]
	u := a.URL + "/v1/stream/s"
	seqHdr := func(seq string) []string { return []string{"Content-Type", "text/plain", "Stream-Seq", seq} }
	mustStream(t, http.StatusCreated, http.MethodPut, u, "", "Content-Type", "text/plain")
	mustStream(t, http.StatusOK, http.MethodPost, u, "m0", producer("0")...)
	mustStream(t, http.StatusNoContent, http.MethodPost, u, "s1", seqHdr("a1")...)
	unlock := holdWrites(t, a)
	mustStream(t, http.StatusGatewayTimeout, http.MethodPost, u, "m1", producer("1")...)
	mustStream(t, http.StatusGatewayTimeout, http.MethodPost, u, "m1", producer("1")...)
	mustStream(t, http.StatusGatewayTimeout, http.MethodPost, u, "s2", seqHdr("a2")...)
	mustStream(t, http.StatusGatewayTimeout, http.MethodPost, u, "s2", seqHdr("a2")...)
	unlock()
	want := []string{"m0", "s1", "m1", "s2"}
	wstest.WaitFor(t, 10*time.Second, "the appends to be stored", func() bool {
		return len(storedData(t, a.store, "s")) >= len(want)
	})
	mustStream(t, http.StatusNoContent, http.MethodPost, u, "m1", producer("1")...) // a duplicate
	mustStream(t, http.StatusConflict, http.MethodPost, u, "s2", seqHdr("a2")...)
	mustStream(t, http.StatusOK, http.MethodPost, u, "m2", producer("2")...)
	if got := storedData(t, a.store, "s"); !slices.Equal(got, append(want, "m2")) {
		t.Fatalf("stored %q, want %q", got, append(want, "m2"))
	}
}

// partitioned is a cluster node whose writes forwarded to other nodes go
// nowhere, as when their owner is cut from NATS.
type partitioned struct{ hub.Cluster }

func (partitioned) Forward(context.Context, string, hub.Write) (int64, error) {
	return 0, hub.ErrNoOwner
}

// TestDeleteWhileOwnerPartitioned: a channel deleted through a node that
// cannot reach its owner is deleted from the store; the owner's actor,
// whose next batch finds the channel gone, ends as deleted (its producers
// and subscribers are told "deleted"), not as failed.
func TestDeleteWhileOwnerPartitioned(t *testing.T) {
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	a := startNode(t, dbURL, ns, "n1")
	b := startNode(t, dbURL, ns, "n2", func(s *nodeSetup) {
		s.wrap = func(c hub.Cluster) hub.Cluster { return partitioned{c} }
	})
	ctx := context.Background()
	mustPost(t, a.URL+"/channels", "application/json", `{"id":"d"}`, http.StatusCreated)
	mustPost(t, a.URL+"/channels/d/messages?wait=persisted", "text/plain", "m1", http.StatusOK)
	if err := b.hub.Delete(ctx, "d"); err != nil {
		t.Fatalf("delete through n2: %v", err)
	}
	_, err := a.hub.AppendLocal(ctx, "d", []byte("m2"), true)
	if !errors.Is(err, hub.ErrChannelDeleted) {
		t.Fatalf("append on the owner after the delete: %v, want %v", err, hub.ErrChannelDeleted)
	}
	if n := metric(t, a, "messages_channel_failures_total"); n != 0 {
		t.Fatalf("%v channel failures on the owner, want 0", n)
	}
}

// TestForwardAfterRelease: a write through another node that was waiting
// for a stopping owner is served as soon as the owner has released its
// leases (SIGTERM), not when its old lease would have expired.
func TestForwardAfterRelease(t *testing.T) {
	const long = 10 * time.Second
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	opt := func(s *nodeSetup) { s.lease = long }
	a := startNode(t, dbURL, ns, "n1", opt)
	b := startNode(t, dbURL, ns, "n2", opt)
	mustPost(t, a.URL+"/channels", "application/json", `{"id":"r"}`, http.StatusCreated)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Stop a as SIGTERM does, up to its leases' release.
	_ = a.srv.Shutdown(ctx)
	_ = a.hub.Stop(ctx)
	served := metric(t, a, "messages_cluster_served_total")
	answered := make(chan time.Time, 1)
	go func() {
		st, body := post(t, b.URL+"/channels/r/messages?wait=persisted", "text/plain", "m1")
		if st != http.StatusOK {
			t.Errorf("append through n2: %d %s", st, body)
		}
		answered <- time.Now()
	}()
	wstest.WaitFor(t, 10*time.Second, "n1 to answer the forward (shutting down)", func() bool {
		return metric(t, a, "messages_cluster_served_total") > served
	})
	_ = a.writer.Close(ctx)
	if err := a.node.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	a.stop()
	if took := (<-answered).Sub(released); took > long/2 {
		t.Fatalf("the write was served %v after the release (lease %v), want it at once", took, long)
	}
}

// commitLost is a batch writer whose first write of a batch holding
// trigger commits and then reports a lost connection, after another node
// has taken the channel over: the outcome of the COMMIT looks unknown.
type commitLost struct {
	persist.BatchWriter
	trigger  string
	takeOver func()
	done     atomic.Bool
}

func (c *commitLost) WriteBatches(ctx context.Context, batches []*persist.Batch) error {
	err := c.BatchWriter.WriteBatches(ctx, batches)
	if err != nil || c.done.Load() {
		return err
	}
	for _, b := range batches {
		for _, m := range b.Messages {
			if string(m.Data) == c.trigger && c.done.CompareAndSwap(false, true) {
				c.takeOver()
				return errors.New("commit: unexpected EOF")
			}
		}
	}
	return nil
}

// TestCommittedBatchNotReportedFenced: a batch whose COMMIT succeeded but
// looked lost, and whose channel another node took over before the retry,
// is reported persisted (the new epoch started past it), not fenced.
func TestCommittedBatchNotReportedFenced(t *testing.T) {
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	var b *testNode
	takeOver := func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		// n1 still renews its leases: a renewal may land between the
		// expiry and the take-over, so expire again until n2 wins.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := conn.Exec(ctx, `UPDATE channels SET lease_expires_at = now() WHERE id = 'k'`); err != nil {
				t.Error(err)
				return
			}
			_, err := b.store.OpenEpoch(ctx, "k")
			if err == nil {
				return
			}
			if !errors.Is(err, persist.ErrOwned) || time.Now().After(deadline) {
				t.Errorf("take-over by n2: %v", err)
				return
			}
		}
	}
	a := startNode(t, dbURL, ns, "n1", func(s *nodeSetup) {
		s.dst = func(w persist.BatchWriter) persist.BatchWriter {
			return &commitLost{BatchWriter: w, trigger: "m2", takeOver: takeOver}
		}
	})
	b = startNode(t, dbURL, ns, "n2")
	mustPost(t, a.URL+"/channels", "application/json", `{"id":"k"}`, http.StatusCreated)
	mustPost(t, a.URL+"/channels/k/messages?wait=persisted", "text/plain", "m1", http.StatusOK)
	st, body := post(t, a.URL+"/channels/k/messages?wait=persisted", "text/plain", "m2")
	if st != http.StatusOK {
		t.Fatalf("append whose commit looked lost: %d %s, want 200 (it is stored)", st, body)
	}
	if got := storedData(t, b.store, "k"); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("stored %q", got)
	}
}

// TestNATSOutageFlushesBeforeLettingGo: appends an owner acknowledged
// (not yet persisted) when NATS goes away for longer than the lease are
// written to the store before the owner lets its channel go, so a crash
// after that loses none of them.
func TestNATSOutageFlushesBeforeLettingGo(t *testing.T) {
	ns, nodes := startCluster(t, 2, func(s *nodeSetup) { s.hub.PersistInterval = time.Hour })
	a := nodes[0]
	mustPost(t, a.URL+"/channels", "application/json", `{"id":"o"}`, http.StatusCreated)
	want := []string{"a1", "a2", "a3", "a4", "a5"}
	for _, m := range want {
		mustPost(t, a.URL+"/channels/o/messages", "text/plain", m, http.StatusOK)
	}
	ns.stop()
	wstest.WaitFor(t, 10*time.Second, "n1 to let its channel go", func() bool {
		_, ok := a.hub.Owned()["o"]
		return !ok
	})
	a.crash()
	if got := storedData(t, nodes[1].store, "o"); !slices.Equal(got, want) {
		t.Fatalf("stored after the outage and a crash: %q, want %q", got, want)
	}
}

// TestStreamTTLAcrossNodes: a stream with a sliding TTL, read once
// through node B and then used steadily through node A, is not expired by
// B when B's own view of its last access grows old: expiry is decided
// from the last access recorded for the cluster.
func TestStreamTTLAcrossNodes(t *testing.T) {
	_, nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	u := func(n *testNode) string { return n.URL + "/v1/stream/ttl" }
	mustStream(t, http.StatusCreated, http.MethodPut, u(a), "", "Content-Type", "text/plain", "Stream-TTL", "1")
	mustStream(t, http.StatusNoContent, http.MethodPost, u(a), "m0", "Content-Type", "text/plain")
	mustStream(t, http.StatusOK, http.MethodGet, u(b)+"?offset=-1", "")
	// Used through A for well past B's view of the TTL (and its grace).
	pace := time.NewTicker(200 * time.Millisecond) // the client's pace
	defer pace.Stop()
	start := time.Now()
	for i := 1; time.Since(start) < 2500*time.Millisecond; i++ {
		mustStream(t, http.StatusNoContent, http.MethodPost, u(a), fmt.Sprintf("m%d", i), "Content-Type", "text/plain")
		mustStream(t, http.StatusOK, http.MethodGet, u(a)+"?offset=-1", "")
		<-pace.C
	}
	if resp, body := streamReq(t, http.MethodGet, u(b)+"?offset=-1", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("read through B of a stream in use through A: %d %s", resp.StatusCode, body)
	}
	if got := storedData(t, a.store, "ttl"); len(got) == 0 || got[0] != "m0" {
		t.Fatalf("stored after the read through B: %q", got)
	}
	// Left alone, it expires, whichever node looks (HEAD is no access).
	wstest.WaitFor(t, 10*time.Second, "the idle stream to expire", func() bool {
		resp, _ := streamReq(t, http.MethodHead, u(b), "")
		return resp.StatusCode == http.StatusNotFound
	})
}

// TestProducerStateNewerInStore: an owner whose actor has not noticed
// that another node moved a producer on (a stale owner, soon fenced) takes
// the store's newer state into account: the next seq is no "gap" (409),
// which would make the producer give up.
func TestProducerStateNewerInStore(t *testing.T) {
	_, nodes := startCluster(t, 1)
	a := nodes[0]
	u := a.URL + "/v1/stream/z"
	mustStream(t, http.StatusCreated, http.MethodPut, u, "", "Content-Type", "text/plain")
	mustStream(t, http.StatusOK, http.MethodPost, u, "p0", producer("0")...)
	// Another node's epoch accepted seqs 1 and 2 (as far as this node's
	// actor can tell, only the store knows).
	if err := a.store.SaveStreamWrites(context.Background(), "z", "", &persist.ProducerState{ID: "p", Epoch: 0, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if resp, body := streamReq(t, http.MethodPost, u, "p3", producer("3")...); resp.StatusCode == http.StatusConflict {
		t.Fatalf("seq 3 after the store's 2: %d %s", resp.StatusCode, body)
	}
}
