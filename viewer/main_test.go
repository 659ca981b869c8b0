package viewer_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if goroutines of the server, the browser
// driver or the tests outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(5 * time.Second); err != nil {
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
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "viewer_test.checkLeaks") || strings.Contains(g, "viewer_test.TestMain") {
			continue
		}
		if strings.Contains(g, "github.com/messages-server/messages/") || strings.Contains(g, "github.com/chromedp/") {
			leaked = append(leaked, g)
		}
	}
	return leaked
}
