package cluster_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/cluster"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// pausedRenewals is the store of a node that does not know it lost its
// channels, as one continued after a pause past its lease: its renewals
// touch nothing and report every channel it runs as still its own.
type pausedRenewals struct {
	cluster.Store
	hub *atomic.Pointer[hub.Hub]
}

func (p pausedRenewals) RenewLeases(context.Context) ([]string, error) {
	var ids []string
	if h := p.hub.Load(); h != nil {
		for id := range h.Owned() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// produce sends a Durable Streams producer append of seq to stream id
// through base and returns the status and body.
func produce(t testing.TB, base, id string, seq int) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/stream/"+id, strings.NewReader("m"+strconv.Itoa(seq)))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Producer-Id", "p")
	req.Header.Set("Producer-Epoch", "0")
	req.Header.Set("Producer-Seq", strconv.Itoa(seq))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}

// TestZombieOwnerProducer: a node that lost a stream's channel without
// knowing it yet (paused past its lease; another node took over and
// accepted the producer's next append) must not refuse the producer's
// following append from its stale record of the producer (409, seq gap):
// it checks the store, finds the channel moved, and the append is served
// by the new owner.
func TestZombieOwnerProducer(t *testing.T) {
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	var hub1 atomic.Pointer[hub.Hub]
	zombie := func(s *nodeSetup) { s.cluster.Store = pausedRenewals{Store: s.cluster.Store, hub: &hub1} }
	n1 := startNode(t, dbURL, ns, "n1", zombie)
	hub1.Store(n1.hub)
	n2 := startNode(t, dbURL, ns, "n2")
	req, _ := http.NewRequest(http.MethodPut, n1.URL+"/v1/stream/z", nil)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT stream: %v %v", resp, err)
	}
	resp.Body.Close()
	if st, b := produce(t, n1.URL, "z", 0); st != http.StatusOK {
		t.Fatalf("seq 0 through n1: %d %s", st, b)
	}
	// n1's lease lapses (it renews nothing); n2 takes the channel over.
	wstest.WaitFor(t, 10*time.Second, "n2 to take the channel over", func() bool {
		if err := n2.hub.Adopt(t.Context(), "z"); err != nil {
			t.Fatal(err)
		}
		_, ok := n2.hub.Owned()["z"]
		return ok
	})
	if st, b := produce(t, n2.URL, "z", 1); st != http.StatusOK {
		t.Fatalf("seq 1 through the new owner n2: %d %s", st, b)
	}
	if _, ok := n1.hub.Owned()["z"]; !ok {
		t.Fatal("n1 no longer runs the channel: the test needs a zombie owner")
	}
	if st, b := produce(t, n1.URL, "z", 2); st != http.StatusOK {
		t.Fatalf("seq 2 through the zombie n1: %d %s, want 200 (served by n2)", st, b)
	}
	if got := storedData(t, n2.store, "z"); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Fatalf("stored %q, want m0 m1 m2", got)
	}
}
