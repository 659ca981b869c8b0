package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/internal/cli"
)

// errVersion is what parseConfig returns for -version: main prints the
// version and exits 0.
var errVersion = errors.New("version requested")

// usage turns err, the configuration's errors, into a cli.UsageError printed
// with the usage when the command line has flags or arguments: one of
// them may be the cause, and the usage lists them all. Errors from the
// environment alone are returned as they are, one line each, for main to
// print.
func usage(fs *flag.FlagSet, err error) error {
	if err == nil || (fs.NFlag() == 0 && fs.NArg() == 0) {
		return err
	}
	fmt.Fprintln(fs.Output(), err)
	fs.Usage()
	return cli.UsageError{Err: err}
}

// levelFlag is a flag.Value for a log level.
type levelFlag slog.Level

func (l *levelFlag) String() string { return strings.ToLower((*slog.Level)(l).String()) }

// Set parses debug, info, warn or error.
func (l *levelFlag) Set(s string) error {
	var v slog.Level
	if err := v.UnmarshalText([]byte(s)); err != nil {
		return errors.New("use debug, info, warn or error")
	}
	*l = levelFlag(v)
	return nil
}

// choiceFlag is a flag.Value for one of a few words.
type choiceFlag struct {
	v       *string
	choices []string
}

func (c *choiceFlag) String() string {
	if c.v == nil {
		return ""
	}
	return *c.v
}

// Set accepts one of the choices.
func (c *choiceFlag) Set(s string) error {
	if !slices.Contains(c.choices, s) {
		return fmt.Errorf("use %s", strings.Join(c.choices, " or "))
	}
	*c.v = s
	return nil
}

// logFormats are the values of -log-format.
var logFormats = []string{"text", "json"}

// newLogger returns the server's logger: text or JSON lines on w.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// buildVersion is the module version and the VCS revision the binary was
// built from, as the Go toolchain recorded them.
type buildVersion struct {
	version, revision, modified string
}

// readBuild reads the build information of the running binary.
func readBuild() buildVersion {
	b := buildVersion{version: "unknown", revision: "unknown", modified: "false"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if info.Main.Version != "" {
		b.version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.modified":
			b.modified = s.Value
		}
	}
	return b
}

// version is what messages -version prints.
func version() string {
	b := readBuild()
	rev := b.revision
	if b.modified == "true" {
		rev += " (modified)"
	}
	return fmt.Sprintf("messages %s, revision %s, %s %s/%s", b.version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildInfo is the messages_build_info gauge: always 1, with the version,
// the revision and the Go version as labels, so that dashboards can show
// which version each server runs.
func buildInfo() prometheus.Collector {
	b := readBuild()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "messages_build_info",
		Help: "Always 1; the labels say which build of the server runs.",
		ConstLabels: prometheus.Labels{
			"version": b.version, "revision": b.revision, "modified": b.modified, "goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}

// bufferedLimit is the messages_buffered_bytes_limit gauge: the
// -max-buffered-bytes bound, so that alerts and dashboards compare
// messages_buffered_bytes with the bound the server really has.
func bufferedLimit(bound byteSize) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "messages_buffered_bytes_limit",
		Help: "The bound of messages_buffered_bytes (-max-buffered-bytes): past it appends get 503.",
	})
	g.Set(float64(bound))
	return g
}
