package cluster_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/internal/leaktest"
)

// TestMain fails the package if a goroutine of a node (hub, cluster node,
// NATS client or embedded NATS server) or of the client outlives the
// tests: every goroutine must have a way to stop, crashed nodes included.
func TestMain(m *testing.M) {
	leaktest.Main(m, 10*time.Second)
}
