package leaktest

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// parked blocks until its channel closes; tests name it in stacks.
func parked(stop <-chan struct{}) { <-stop }

// TestFindReportsALeak: a goroutine that never stops is reported, with a
// stack naming its function, once wait has passed.
func TestFindReportsALeak(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	go parked(stop)
	err := Find(10 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "leaktest.parked") {
		t.Fatalf("Find with a parked goroutine = %v, want its stack", err)
	}
}

// TestFindWaitsForExit: a goroutine still unwinding after goleak's own
// retries have given up (about half a second) is not a leak if it stops
// within wait.
func TestFindWaitsForExit(t *testing.T) {
	slow := time.After(time.Second)
	go func() { <-slow }()
	if err := Find(time.Minute); err != nil {
		t.Fatalf("Find with a goroutine that stops = %v", err)
	}
}

// TestFindIgnores: opts exclude a goroutine known to outlive the tests.
func TestFindIgnores(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	go parked(stop)
	if err := Find(10*time.Millisecond, goleak.IgnoreAnyFunction("github.com/messages-server/messages/internal/leaktest.parked")); err != nil {
		t.Fatalf("Find ignoring parked = %v", err)
	}
}
