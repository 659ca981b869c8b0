package main

import (
	"strings"
	"testing"

	"github.com/messages-server/messages/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, main) }

// runCommand runs messages-token with args and the test secret, and
// returns its exit code and output.
func runCommand(t *testing.T, args ...string) (code int, output string) {
	t.Helper()
	return clitest.Run(t, []string{"JWT_SECRET=" + secret}, args...)
}

// TestExitCodes: -h prints the usage and exits 0, a bad flag is reported
// once, with the usage, and exits 2, like the server and the bench; other
// errors exit 1. -h used to exit 1, and a bad flag was printed twice (by
// the flag package, then again by main).
func TestExitCodes(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		code, out := runCommand(t, arg)
		if code != 0 || !strings.Contains(out, "usage: messages-token") {
			t.Errorf("messages-token %s exits %d, want 0 with the usage:\n%s", arg, code, out)
		}
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-ttl", "soon"}, `invalid value "soon" for flag -ttl`},
	} {
		code, out := runCommand(t, tc.args...)
		if code != 2 || strings.Count(out, tc.msg) != 1 || !strings.Contains(out, "usage: messages-token") {
			t.Errorf("messages-token %q exits %d, want 2 with %q once and the usage:\n%s", tc.args, code, tc.msg, out)
		}
	}
	code, out := runCommand(t, "-sub", "x")
	if code != 1 || strings.Count(out, "grant nothing") != 1 {
		t.Errorf("messages-token -sub x exits %d, want 1 with the reason once:\n%s", code, out)
	}
	code, out = runCommand(t, "-admin")
	if code != 0 || strings.Count(out, ".") != 2 {
		t.Errorf("messages-token -admin exits %d, want 0 with a token:\n%s", code, out)
	}
}
