package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/client"
)

// TestResumeOnLaggingFollower: a reader that saw seq 2 through the owner
// resumes on a node whose follower has not received seq 2 yet (its NATS
// link is held up). The from is valid, since the owner has it: the node
// waits for its follower to catch up and serves the resume, instead of
// refusing it as past the channel's end.
func TestResumeOnLaggingFollower(t *testing.T) {
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	n1 := startNode(t, dbURL, ns, "n1")
	proxy, natsURL := persisttest.NewProxy(t, ns.url())
	n2 := startNodeVia(t, dbURL, natsURL, "n2")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	mustPost(t, n1.URL+"/channels", "application/json", `{"id":"lag"}`, 201)
	mustPost(t, n1.URL+"/channels/lag/messages", "text/plain", "m1", 200)
	first, err := client.Subscribe(ctx, n2.URL, "lag", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	nextMessage(ctx, t, first, 1) // n2 follows the channel

	proxy.Blackhole() // n2 hears nothing more from NATS for now
	if b := mustPost(t, n1.URL+"/channels/lag/messages", "text/plain", "m2", 200); b != `{"seq":2}`+"\n" {
		t.Fatalf("append m2 through the owner: %s", b)
	}
	resumed := make(chan error, 1)
	go func() {
		sub, err := client.Subscribe(ctx, n2.URL, "lag", client.Options{From: 2})
		if err != nil {
			resumed <- err
			return
		}
		defer sub.Close()
		resumed <- nextMessageErr(ctx, sub, 3)
	}()
	// The resume waits for the follower; it must not be refused.
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, n2, "messages_cluster_follower_waits_total") < 1 {
		select {
		case err := <-resumed:
			t.Fatalf("resume from 2 on the lagging node ended before the follower caught up: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the resume never waited for the follower")
		}
	}
	proxy.Pass()
	mustPost(t, n1.URL+"/channels/lag/messages", "text/plain", "m3", 200)
	if err := <-resumed; err != nil {
		t.Fatalf("resume from 2 on the lagging node: %v", err)
	}
}

// nextMessage fails t unless the next message of sub has seq want.
func nextMessage(ctx context.Context, t testing.TB, sub *client.Subscription, want int64) {
	t.Helper()
	if err := nextMessageErr(ctx, sub, want); err != nil {
		t.Fatal(err)
	}
}

// nextMessageErr reads sub up to its next message and reports an error
// unless its seq is want.
func nextMessageErr(ctx context.Context, sub *client.Subscription, want int64) error {
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		if ev.Kind != client.EventMessage {
			continue
		}
		if ev.Seq != want {
			return fmt.Errorf("message seq %d, want %d", ev.Seq, want)
		}
		return nil
	}
}
