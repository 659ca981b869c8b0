package main

import (
	"strings"
	"testing"

	"github.com/messages-server/messages/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, main) }

func TestHelpExitsZero(t *testing.T) {
	code, out := clitest.Run(t, nil, "-h")
	if code != 0 {
		t.Errorf("messages-bench -h exits %d, want 0\n%s", code, out)
	}
	if !strings.Contains(out, "Usage of messages-bench") || !strings.Contains(out, "-scenario") {
		t.Errorf("messages-bench -h does not print the usage:\n%s", out)
	}
}

func TestBadFlagPrintedOnce(t *testing.T) {
	code, out := clitest.Run(t, nil, "-channels", "many")
	if code != 2 {
		t.Errorf("a bad flag value exits %d, want 2\n%s", code, out)
	}
	const msg = `invalid value "many" for flag -channels`
	if n := strings.Count(out, msg); n != 1 {
		t.Errorf("%q printed %d times, want once:\n%s", msg, n, out)
	}
}
