// Package leaktest fails a test binary whose goroutines outlive its tests.
//
// It is a thin layer over go.uber.org/goleak, which finds every goroutine
// that neither the runtime nor the testing package started. goleak gives
// up after about half a second; a server under test on a loaded machine
// may need longer to unwind closed connections, so Find polls goleak until
// a deadline instead.
//
// Files: leaktest.go (Main, Find), leaktest_test.go.
package leaktest

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs the tests of m, as a TestMain does. If they pass, it closes
// the idle keep-alive connections of http.DefaultClient (pooled by the
// standard library, not leaked) and fails the binary if a goroutine that
// opts do not ignore still runs wait later: every goroutine must have a
// way to stop. It does not return.
func Main(m *testing.M, wait time.Duration, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := Find(wait, opts...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// Find waits up to wait for every goroutine that opts do not ignore to
// exit. It returns nil once none is left, or goleak's error, which holds
// the stacks of those still running at the deadline.
func Find(wait time.Duration, opts ...goleak.Option) error {
	deadline := time.Now().Add(wait)
	for {
		err := goleak.Find(opts...) // itself retries for about half a second
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
