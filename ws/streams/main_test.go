package streams_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/internal/leaktest"
)

// TestMain fails the package if a goroutine of the backend, the hub or the
// server outlives the tests: every goroutine must have a way to stop.
func TestMain(m *testing.M) {
	leaktest.Main(m, 10*time.Second)
}
