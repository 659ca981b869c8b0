package auth

import (
	"testing"
	"time"

	"github.com/messages-server/messages/internal/leaktest"
)

// TestMain fails the package if a JWKS refresh goroutine, or any other,
// outlives its Authorizer's Close.
func TestMain(m *testing.M) {
	leaktest.Main(m, 10*time.Second)
}
