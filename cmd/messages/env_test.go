package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestDurationSettings reads -retention and RETENTION (off by default,
// never negative) and -long-poll-timeout and LONG_POLL_TIMEOUT (20s by
// default, always positive): the flag over the variable, and a clear error
// for a bad or out-of-range value.
func TestDurationSettings(t *testing.T) {
	retention := func(c config) time.Duration { return c.retention }
	longPoll := func(c config) time.Duration { return c.longPollTimeout }
	for _, tt := range []struct {
		name string // the variable
		get  func(config) time.Duration
		args []string
		env  string // the variable's value
		want time.Duration
		err  string
	}{
		{"RETENTION", retention, nil, "", 0, ""},
		{"RETENTION", retention, nil, "720h", 720 * time.Hour, ""},
		{"RETENTION", retention, []string{"-retention", "24h"}, "720h", 24 * time.Hour, ""},
		{"RETENTION", retention, nil, "a week", 0, `RETENTION="a week": not a duration`},
		{"RETENTION", retention, []string{"-retention", "-1h"}, "", 0, "retention must not be negative"},
		{"LONG_POLL_TIMEOUT", longPoll, nil, "", 20 * time.Second, ""},
		{"LONG_POLL_TIMEOUT", longPoll, nil, "500ms", 500 * time.Millisecond, ""},
		{"LONG_POLL_TIMEOUT", longPoll, []string{"-long-poll-timeout", "2s"}, "500ms", 2 * time.Second, ""},
		{"LONG_POLL_TIMEOUT", longPoll, nil, "soon", 0, `LONG_POLL_TIMEOUT="soon": not a duration`},
		{"LONG_POLL_TIMEOUT", longPoll, []string{"-long-poll-timeout", "0s"}, "", 0, "long-poll timeout must be positive"},
	} {
		getenv := func(k string) string {
			if k == tt.name {
				return tt.env
			}
			return ""
		}
		c, err := parseConfig(tt.args, getenv, io.Discard)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%v %s=%q: error %v, want %q", tt.args, tt.name, tt.env, err, tt.err)
		case tt.err == "" && (err != nil || tt.get(c) != tt.want):
			t.Errorf("%v %s=%q: %v, %v; want %v", tt.args, tt.name, tt.env, tt.get(c), err, tt.want)
		}
	}
}
