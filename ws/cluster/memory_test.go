package cluster_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/client"
)

// TestFollowerMemory: a follower costs little memory while it has
// nothing to hold. K readers of K channels through the owner, then K more
// through another node (K followers): what the followers add is far
// below the 4096-slot event queue (about 320 KiB) each one held before.
func TestFollowerMemory(t *testing.T) {
	_, nodes := startCluster(t, 2)
	n1, n2 := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const k = 60
	for i := range k {
		mustPost(t, n1.URL+"/channels", "application/json", fmt.Sprintf(`{"id":"m%d"}`, i), 201)
		mustPost(t, n1.URL+"/channels/"+fmt.Sprintf("m%d", i)+"/messages", "text/plain", "x", 200)
	}
	subscribeAll := func(base string) {
		for i := range k {
			sub, err := client.Subscribe(ctx, base, fmt.Sprintf("m%d", i), client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			nextMessage(ctx, t, sub, 1)
		}
	}
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	subscribeAll(n1.URL) // readers on the owner: no follower
	before := heap()
	subscribeAll(n2.URL) // as many readers, each through a follower
	after := heap()
	if f := n2.hub.Followers(); f != k {
		t.Fatalf("n2 follows %d channels, want %d", f, k)
	}
	per := (after - before) / k
	t.Logf("a reader through a follower costs %d KiB more than through the owner", per>>10)
	if per > 96<<10 {
		t.Fatalf("a reader through a follower costs %d KiB more than through the owner, want at most 96 KiB", per>>10)
	}
}
