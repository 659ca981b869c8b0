package cluster_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// TestMain fails the package if a goroutine of a node (hub, cluster node,
// NATS client) or of the client outlives the tests: every goroutine must
// have a way to stop, crashed nodes included.
func TestMain(m *testing.M) {
	wstest.RunNoLeaks(m, 10*time.Second, "github.com/coder/websocket", "github.com/nats-io/nats.go")
}
