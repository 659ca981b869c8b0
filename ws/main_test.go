package ws_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// TestMain fails the package if a goroutine of the server, the hub or the
// client outlives the tests: every goroutine must have a way to stop.
func TestMain(m *testing.M) {
	wstest.RunNoLeaks(m, 10*time.Second, "github.com/coder/websocket")
}
