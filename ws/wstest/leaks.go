package wstest

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// RunNoLeaks runs the tests of m, as a TestMain does, then fails the
// package if a goroutine running code of this module, or of one of the
// modules named in also (import path prefixes), outlives them for longer
// than wait: every goroutine must have a way to stop. It does not return.
func RunNoLeaks(m *testing.M, wait time.Duration, also ...string) {
	code := m.Run()
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := checkLeaks(wait, append(also, "github.com/messages-server/messages/")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkLeaks polls the goroutines until none runs code of modules, or wait
// has passed.
func checkLeaks(wait time.Duration, modules []string) error {
	deadline := time.Now().Add(wait)
	for {
		leaked := leakedGoroutines(modules)
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked goroutines:\n%s", strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling for exit; nothing to wait on
	}
}

// leakedGoroutines returns the stacks of the goroutines, other than the
// one checking, that run code of modules.
func leakedGoroutines(modules []string) []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "wstest.RunNoLeaks") {
			continue
		}
		for _, m := range modules {
			if strings.Contains(g, m) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return leaked
}
