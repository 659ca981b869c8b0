package viewer_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/internal/leaktest"
)

// TestMain fails the package if goroutines of the server, the browser
// driver or the tests outlive the tests.
func TestMain(m *testing.M) {
	leaktest.Main(m, 5*time.Second)
}
