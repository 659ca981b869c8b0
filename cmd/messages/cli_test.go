package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMainEnv, when set, makes the test binary run main with its arguments
// instead of the tests, so that tests see main's exit code and output.
const runMainEnv = "MESSAGES_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCommand runs the command with args and returns its exit code and
// what it wrote to stdout and stderr.
func runCommand(t *testing.T, args ...string) (code int, output string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run the command: %v", err)
	}
	return 0, string(out)
}

func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		code, out := runCommand(t, arg)
		if code != 0 {
			t.Errorf("messages %s exits %d, want 0\n%s", arg, code, out)
		}
		if !strings.Contains(out, "Usage of messages") || !strings.Contains(out, "-database-url") {
			t.Errorf("messages %s does not print the usage:\n%s", arg, out)
		}
	}
	if err := run(t.Context(), []string{"-h"}, noEnv, &strings.Builder{}, nil); err != nil {
		t.Errorf("run -h = %v, want nil", err)
	}
}

func TestBadFlagPrintedOnce(t *testing.T) {
	code, out := runCommand(t, "-persist-workers", "many")
	if code != 2 {
		t.Errorf("a bad flag value exits %d, want 2\n%s", code, out)
	}
	const msg = `invalid value "many" for flag -persist-workers`
	if n := strings.Count(out, msg); n != 1 {
		t.Errorf("%q printed %d times, want once:\n%s", msg, n, out)
	}
	if !strings.Contains(out, "Usage of messages") {
		t.Errorf("a bad flag does not print the usage:\n%s", out)
	}

	// Errors the flag package does not print are printed once by main.
	code, out = runCommand(t, "-persist-workers", "0")
	const rangeMsg = "persist workers must be in [1, 64]"
	if code != 1 || strings.Count(out, rangeMsg) != 1 {
		t.Errorf("-persist-workers 0: exit %d, want 1 and %q once:\n%s", code, rangeMsg, out)
	}
}
