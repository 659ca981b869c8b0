// Package cli holds what the commands' mains share: the error of a
// command line the flag package has already reported, and the end of main
// that turns run's error into the exit status.
//
// Files: cli.go, cli_test.go.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// UsageError is a command-line error that the flag package has already
// printed to stderr, followed by the usage: Exit exits 2 without printing
// it again.
type UsageError struct{ Err error }

// Error returns the flag package's message.
func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the flag package's error.
func (e UsageError) Unwrap() error { return e.Err }

// Parse parses args with fs, whose output has the flag package's message
// and the usage. It returns flag.ErrHelp for -h, and any other error as a
// UsageError.
func Parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return UsageError{err}
}

// Run is the main of a command that runs until it is interrupted: it
// calls run with a context cancelled on SIGINT or SIGTERM, then ends as
// Exit does with run's error.
func Run(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	Exit(name, err)
}

// Exit ends the main of command name once run returned err: it returns
// when err is nil or flag.ErrHelp (-h printed the usage), exits with
// status 2 on a UsageError, and otherwise prints err to stderr, each of
// its lines prefixed with name, and exits with status 1.
func Exit(name string, err error) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	if _, ok := errors.AsType[UsageError](err); ok {
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, name+":", strings.ReplaceAll(err.Error(), "\n", "\n"+name+": "))
	os.Exit(1)
}
