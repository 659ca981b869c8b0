package defaults_test

import (
	"testing"
	"time"

	"github.com/messages-server/messages/internal/defaults"
)

func TestPositive(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{{0, time.Second}, {-1, time.Second}, {2, 2}} {
		v := c.in
		defaults.Positive(&v, time.Second)
		if v != c.want {
			t.Errorf("Positive(%v) = %v, want %v", c.in, v, c.want)
		}
	}
	n := 0.5
	defaults.Positive(&n, 100)
	if n != 0.5 {
		t.Errorf("a rate of 0.5 became %v", n)
	}
}
