package hub_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLinks: the core links no HTTP or WebSocket code (its metrics go
// through internal/metric, not Prometheus), and neither does persist; the
// cluster links no WebSocket code.
func TestLinks(t *testing.T) {
	for pkg, banned := range map[string][]string{
		"github.com/messages-server/messages/ws/hub":     {"net/http", "github.com/coder/websocket"},
		"github.com/messages-server/messages/persist":    {"net/http", "github.com/coder/websocket"},
		"github.com/messages-server/messages/ws/cluster": {"github.com/coder/websocket", "github.com/messages-server/messages/ws"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		for _, b := range banned {
			if slices.Contains(deps, b) {
				t.Errorf("%s links %s", pkg, b)
			}
		}
	}
}
