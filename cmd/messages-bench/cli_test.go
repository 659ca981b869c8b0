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
const runMainEnv = "MESSAGES_BENCH_TEST_RUN_MAIN"

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
	code, out := runCommand(t, "-h")
	if code != 0 {
		t.Errorf("messages-bench -h exits %d, want 0\n%s", code, out)
	}
	if !strings.Contains(out, "Usage of messages-bench") || !strings.Contains(out, "-scenario") {
		t.Errorf("messages-bench -h does not print the usage:\n%s", out)
	}
}

func TestBadFlagPrintedOnce(t *testing.T) {
	code, out := runCommand(t, "-channels", "many")
	if code != 2 {
		t.Errorf("a bad flag value exits %d, want 2\n%s", code, out)
	}
	const msg = `invalid value "many" for flag -channels`
	if n := strings.Count(out, msg); n != 1 {
		t.Errorf("%q printed %d times, want once:\n%s", msg, n, out)
	}
}
