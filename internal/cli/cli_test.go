package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/messages-server/messages/internal/clitest"
)

// main stands for a command's main: Exit with the error its first
// argument names, or, with "signal", Run a command that is interrupted.
func main() {
	errs := map[string]error{
		"nil":       nil,
		"help":      flag.ErrHelp,
		"usage":     fmt.Errorf("parse: %w", UsageError{errors.New("invalid value")}),
		"one":       errors.New("no database"),
		"two-lines": errors.Join(errors.New("bad -a"), errors.New("bad -b")),
	}
	if os.Args[1] == "signal" {
		Run("cmd", func(ctx context.Context) error {
			if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
				return err
			}
			<-ctx.Done() // the signal cancels ctx instead of killing the command
			return nil
		})
		return
	}
	Exit("cmd", errs[os.Args[1]])
}

func TestMain(m *testing.M) { clitest.Main(m, main) }

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		usage, help bool
	}{
		{args: []string{"-n", "3"}},
		{args: []string{"-h"}, help: true},
		{args: []string{"-n", "many"}, usage: true},
		{args: []string{"-bogus"}, usage: true},
	} {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		fs.Int("n", 0, "a number")
		err := Parse(fs, tc.args)
		_, usage := errors.AsType[UsageError](err)
		if usage != tc.usage || errors.Is(err, flag.ErrHelp) != tc.help || (err == nil) != (!tc.usage && !tc.help) {
			t.Errorf("Parse(%q) = %v; want usage %v, help %v", tc.args, err, tc.usage, tc.help)
		}
	}
}

// TestExit checks the exit status and output of each kind of error, and
// that Run's context, not the signal, ends an interrupted command.
func TestExit(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		code int
		out  string
	}{
		{"nil", 0, ""},
		{"help", 0, ""},
		{"usage", 2, ""},
		{"one", 1, "cmd: no database\n"},
		{"two-lines", 1, "cmd: bad -a\ncmd: bad -b\n"},
		{"signal", 0, ""},
	} {
		if code, out := clitest.Run(t, nil, tc.arg); code != tc.code || out != tc.out {
			t.Errorf("%s: exit %d, output %q; want %d, %q", tc.arg, code, out, tc.code, tc.out)
		}
	}
}
