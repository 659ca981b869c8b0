package persist_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the run if goroutines started by this package outlive
// the tests: every Writer and Store must stop what it started.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitForPersistGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitForPersistGoroutines waits until no goroutine runs code of package
// persist, and returns the stacks of those still there after timeout.
func waitForPersistGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1<<20)
	for {
		var leaked [][]byte
		for _, g := range bytes.Split(buf[:runtime.Stack(buf, true)], []byte("\n\n")) {
			if bytes.Contains(g, []byte("messages/persist.")) && !bytes.Contains(g, []byte("waitForPersistGoroutines")) {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return string(bytes.Join(leaked, []byte("\n\n")))
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}
