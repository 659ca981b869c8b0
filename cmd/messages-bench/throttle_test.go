package main

import (
	"testing"
	"time"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/wstest"
)

// TestThrottledCreatesAreRetried: a server whose per-client quota refuses
// some of the bench's channel creations with 429 still gets every channel
// created, each after its Retry-After, and the report counts the retries.
func TestThrottledCreatesAreRetried(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", Server: func(c *ws.ServerConfig) {
		c.CreateRate, c.CreateBurst = 20, 4
	}})
	for _, scenario := range []string{"reference", "fanout"} {
		t.Run(scenario, func(t *testing.T) {
			r := runBench(t, srv.URL, "-scenario", scenario, "-channels", "12", "-clients", "2", "-freq", "100",
				"-max", "5", "-window", "100ms", "-duration", "2s", "-prefix", scenario+"-")
			if r.Completed != r.Clients || r.Clients != 24 || r.ChannelFailures != 0 {
				t.Fatalf("%d of %d clients completed, %d channels failed; want all 24 and none", r.Completed, r.Clients, r.ChannelFailures)
			}
			if r.Throttled == 0 {
				t.Fatalf("no request was throttled: 12 creations at once past a burst of 4 should be")
			}
		})
	}
}

// TestRetryAfter: seconds, clamped; anything else is a second.
func TestRetryAfter(t *testing.T) {
	for h, want := range map[string]time.Duration{
		"": time.Second, "0": 0, "3": 3 * time.Second, "100": maxRetryAfter, "-1": time.Second,
		"Wed, 21 Oct 2015 07:28:00 GMT": time.Second,
	} {
		if got := retryAfter(h); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}
