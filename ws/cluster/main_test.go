package cluster_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if a goroutine of a node (hub, cluster node,
// NATS client) or of the client outlives the tests: every goroutine must
// have a way to stop, crashed nodes included.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := checkLeaks(10 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func checkLeaks(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		leaked := leakedGoroutines()
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked goroutines:\n%s", strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling for exit; nothing to wait on
	}
}

func leakedGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cluster_test.checkLeaks") || strings.Contains(g, "cluster_test.TestMain") {
			continue
		}
		if strings.Contains(g, "github.com/messages-server/messages/") || strings.Contains(g, "github.com/coder/websocket") ||
			strings.Contains(g, "github.com/nats-io/nats.go") {
			leaked = append(leaked, g)
		}
	}
	return leaked
}
