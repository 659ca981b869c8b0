package cluster_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/cluster"
)

// lockRow holds a row lock on channel id's row until the returned func is
// called: the owner's batches of id wait on it, as on a slow database.
func lockRow(t *testing.T, n *testNode, id string) (unlock func()) {
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
	if _, err := tx.Exec(ctx, `SELECT 1 FROM channels WHERE id = $1 FOR UPDATE`, id); err != nil {
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
	_, nodes := startCluster(t, 2, func(h *ws.HubConfig, c *cluster.Config) {
		h.PersistWaitTimeout = time.Second
		c.RequestTimeout = 300 * time.Millisecond
		c.WaitTimeout = 3 * time.Second
	})
	mustPost(t, nodes[0].URL+"/channels", "application/json", `{"id":"slow"}`, http.StatusCreated)
	mustPost(t, nodes[0].URL+"/channels/slow/messages?wait=persisted", "text/plain", "m1", http.StatusOK)
	unlock := lockRow(t, nodes[0], "slow")
	st, body := post(t, nodes[1].URL+"/channels/slow/messages?wait=persisted", "text/plain", "m2")
	unlock()
	var e struct {
		Seq int64 `json:"seq"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	if st != http.StatusGatewayTimeout || e.Seq != 2 {
		t.Fatalf("forwarded slow append: %d %s, want 504 with seq 2", st, body)
	}
	waitFor(t, 10*time.Second, "m2 to be stored", func() bool {
		return len(storedData(t, nodes[1].store, "slow")) == 2
	})
}
