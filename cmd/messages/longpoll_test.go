package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestLongPollTimeoutConfig reads -long-poll-timeout and LONG_POLL_TIMEOUT:
// 20s by default, the flag over the variable, and a clear error for a bad
// or non-positive value.
func TestLongPollTimeoutConfig(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "LONG_POLL_TIMEOUT" {
				return v
			}
			return ""
		}
	}
	for _, tt := range []struct {
		args []string
		env  string
		want time.Duration
		err  string
	}{
		{nil, "", 20 * time.Second, ""},
		{nil, "500ms", 500 * time.Millisecond, ""},
		{[]string{"-long-poll-timeout", "2s"}, "500ms", 2 * time.Second, ""},
		{nil, "soon", 0, `LONG_POLL_TIMEOUT="soon": not a duration`},
		{[]string{"-long-poll-timeout", "0s"}, "", 0, "long-poll timeout must be positive"},
	} {
		c, err := parseConfig(tt.args, env(tt.env), io.Discard)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%v LONG_POLL_TIMEOUT=%q: error %v, want %q", tt.args, tt.env, err, tt.err)
		case tt.err == "" && (err != nil || c.longPollTimeout != tt.want):
			t.Errorf("%v LONG_POLL_TIMEOUT=%q: %v, %v; want %v", tt.args, tt.env, c.longPollTimeout, err, tt.want)
		}
	}
}
