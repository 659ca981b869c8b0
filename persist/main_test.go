package persist_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/internal/leaktest"
)

// TestMain fails the run if goroutines outlive the tests: every Writer and
// Store must stop what it started, pools and driver goroutines included.
func TestMain(m *testing.M) {
	leaktest.Main(m, 5*time.Second)
}
