package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/internal/clitest"
)

// TestReadmeTokenSection runs the README's "Running with tokens" commands
// as a reader pastes them after the quick start: with the quick start's
// open-mode server still running on its database. Each go run is the
// command built here. Every command must succeed and the script must end.
func TestReadmeTokenSection(t *testing.T) {
	script := readmeBlock(t, "## Running with tokens")
	dir := t.TempDir()
	bin := t.TempDir()
	for _, cmd := range []string{"messages-token", "messages-bench"} {
		build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../"+cmd)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}
	// The quick start's server, on its default database in the directory
	// the commands run in.
	start(t, "-database-url", "sqlite:"+filepath.Join(dir, "data", "messages.db"))

	port := freePort(t)
	script = strings.ReplaceAll(script, "3001", strconv.Itoa(port))
	// Job control, as in the shell a reader pastes into: kill %1 stops
	// the whole job, not only the shell function running it.
	prelude := `set -em
go() {
	case "$2" in
	./cmd/messages) shift 2; ` + clitest.Env + `=1 "$TEST_BIN" "$@" ;;
	./cmd/messages-token) shift 2; "$BIN/messages-token" "$@" ;;
	./cmd/messages-bench) shift 2; "$BIN/messages-bench" "$@" ;;
	*) echo "unexpected go command: $*" >&2; return 1 ;;
	esac
}
`
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", prelude+script+"\nwait || true\n")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TEST_BIN="+os.Args[0], "BIN="+bin)
	cmd.WaitDelay = 10 * time.Second // a server left running holds the output open
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's token commands failed: %v\n%s", err, out)
	}
	for _, want := range []string{`{"seq":1}`, "hello", "inconsistencies  0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// readmeBlock returns the first sh code block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q", heading)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("no sh block after %q", heading)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// freePort returns a loopback TCP port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
