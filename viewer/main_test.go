package viewer_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// TestMain fails the package if goroutines of the server, the browser
// driver or the tests outlive the tests.
func TestMain(m *testing.M) {
	wstest.RunNoLeaks(m, 5*time.Second, "github.com/chromedp/")
}
