package ws

import (
	"net/netip"
	"testing"
	"time"
)

// TestCreateBudget: a client's creation budget gives back what a request
// that created nothing took, never past the burst (refunds cannot be
// banked), and goes into debt for a creation charged after the fact, which
// delays its next creation by as much.
func TestCreateBudget(t *testing.T) {
	q := newQuotas(&ServerConfig{CreateRate: 0.001, CreateBurst: 2}) // a creation per 1000 s
	ip := netip.MustParseAddr("203.0.113.1")
	take := func(want bool, wantRetry time.Duration) {
		t.Helper()
		ok, retry := q.takeCreate(ip)
		// The budget refills by a millionth of a creation per millisecond
		// the test takes: a second is ample.
		if ok != want || retry > wantRetry || retry < wantRetry-time.Second {
			t.Fatalf("takeCreate: %v, retry %v; want %v, %v", ok, retry, want, wantRetry)
		}
	}
	take(true, 0)
	take(true, 0)
	take(false, 1000*time.Second)
	q.refundCreate(ip)
	take(true, 0)
	for range 5 {
		q.refundCreate(ip)
	}
	take(true, 0)
	take(true, 0)
	take(false, 1000*time.Second)
	q.oweCreate(ip)
	take(false, 2000*time.Second)
	if other, _ := q.takeCreate(netip.MustParseAddr("203.0.113.2")); !other {
		t.Fatal("another client's budget is spent too")
	}
}
