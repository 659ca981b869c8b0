// Package clitest runs a command's main from the command's own test
// binary, so that its tests see main's exit code and output as a user
// would: TestMain calls Main, and a test calls Run.
//
// Files: clitest.go (Main, Run, Env), clitest_test.go.
package clitest

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// Env is the environment variable that, set to 1, makes a test binary
// whose TestMain calls Main run the command's main instead of the tests.
const Env = "MESSAGES_CLITEST_RUN_MAIN"

// Main is a command's TestMain: with Env set it runs main, and exits 0
// when main returns (main exits with its own code otherwise); without
// it, it runs the tests.
func Main(m *testing.M, main func()) {
	if os.Getenv(Env) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Run runs the test binary as the command, with args and, besides the
// test's own environment, the variables env ("NAME=value"). It returns
// the exit code and what the command wrote to stdout and stderr.
func Run(t testing.TB, env []string, args ...string) (code int, output string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), Env+"=1"), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run the command: %v", err)
	}
	return 0, string(out)
}
