package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/messages-server/messages/internal/cli"
	"github.com/messages-server/messages/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, main) }

func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		code, out := clitest.Run(t, nil, arg)
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
	code, out := clitest.Run(t, nil, "-persist-workers", "many")
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

}

// TestBadFlagValues: every bad value on the command line, whether the flag
// package or a later check refuses it, is printed once, with the usage,
// and exits 2.
func TestBadFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-persist-workers", "0"}, "persist workers must be in [1, 64]"},
		{[]string{"-queue-len", "-3"}, "queue length must be in [1, 1048576]"},
		{[]string{"-log-level", "verbose"}, `invalid value "verbose" for flag -log-level: use debug, info, warn or error`},
		{[]string{"-log-format", "xml"}, `invalid value "xml" for flag -log-format: use text or json`},
		{[]string{"-history-cache-bytes", "64MB"}, `invalid value "64MB" for flag -history-cache-bytes`},
		{[]string{"-max-message-bytes", "lots"}, `invalid value "lots" for flag -max-message-bytes`},
		{[]string{"-addr", "0.0.0.0:0"}, "open mode refuses to listen on 0.0.0.0:0"},
		{[]string{"-persist-interval", "100ms", "extra"}, `unexpected arguments: ["extra"]`},
	} {
		code, out := clitest.Run(t, nil, tc.args...)
		if code != 2 || strings.Count(out, tc.msg) != 1 || !strings.Contains(out, "Usage of messages") {
			t.Errorf("messages %q: exit %d, want 2, %q once and the usage:\n%s", tc.args, code, tc.msg, out)
		}
	}
}

// TestBadEnvValueOneLine: a bad environment value is one line, not also
// the range check its zero value would fail, and no usage (no flag is to
// blame).
func TestBadEnvValueOneLine(t *testing.T) {
	_, err := parseConfig(nil, func(k string) string {
		return map[string]string{"PERSIST_INTERVAL": "soon", "MAX_BUFFERED_BYTES": "lots", "LOG_LEVEL": "loud"}[k]
	}, io.Discard)
	want := `PERSIST_INTERVAL="soon": not a duration (e.g. 100ms, 30s)` + "\n" +
		`LOG_LEVEL="loud": use debug, info, warn or error` + "\n" +
		`MAX_BUFFERED_BYTES="lots": not a size: use bytes, or a number with KiB, MiB or GiB`
	if err == nil || err.Error() != want {
		t.Errorf("bad environment values give\n%v\nwant\n%s", err, want)
	}
	if _, ok := errors.AsType[cli.UsageError](err); ok {
		t.Errorf("bad environment values print the usage")
	}
}

// TestSizeFlags: every size flag takes KiB, MiB and GiB.
func TestSizeFlags(t *testing.T) {
	c, err := parseConfig([]string{"-history-cache-bytes", "64MiB", "-max-message-bytes", "1MiB",
		"-max-buffered-bytes", "1GiB", "-max-channel-bytes", "512KiB"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.history.cacheBytes != 64<<20 || c.maxMessageBytes != 1<<20 || c.bounds.maxBufferedBytes != 1<<30 || c.bounds.maxChannelBytes != 512<<10 {
		t.Errorf("sizes: %d %d %d %d", c.history.cacheBytes, c.maxMessageBytes, c.bounds.maxBufferedBytes, c.bounds.maxChannelBytes)
	}
	c, err = parseConfig(nil, func(k string) string {
		return map[string]string{"HISTORY_CACHE_BYTES": "2MiB", "MAX_MESSAGE_BYTES": "4KiB"}[k]
	}, io.Discard)
	if err != nil || c.history.cacheBytes != 2<<20 || c.maxMessageBytes != 4<<10 {
		t.Errorf("sizes from the environment: %d %d %v", c.history.cacheBytes, c.maxMessageBytes, err)
	}
}

func TestVersion(t *testing.T) {
	code, out := clitest.Run(t, nil, "-version")
	if code != 0 || !strings.HasPrefix(out, "messages ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("messages -version: exit %d\n%s", code, out)
	}
}

// TestLogFormatJSON: with -log-format json every log line is one JSON
// object with the level and the message, for log shippers.
func TestLogFormatJSON(t *testing.T) {
	s := start(t, "-database-url", sqliteArg(t), "-log-format", "json")
	do(t, "GET", s.base+"/healthz", "", http.StatusOK)
	s.stop(t)
	lines := strings.Split(strings.TrimSpace(s.log.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("too few log lines:\n%s", s.log)
	}
	for _, l := range lines {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
			t.Fatalf("log line %q is not a JSON record with level and msg: %v", l, err)
		}
	}
}
