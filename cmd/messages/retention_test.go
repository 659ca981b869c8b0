package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestRetentionConfig reads -retention and RETENTION: off by default, the
// flag over the variable, and a clear error for a bad or negative value.
func TestRetentionConfig(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "RETENTION" {
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
		{nil, "", 0, ""},
		{nil, "720h", 720 * time.Hour, ""},
		{[]string{"-retention", "24h"}, "720h", 24 * time.Hour, ""},
		{nil, "a week", 0, `RETENTION="a week": not a duration`},
		{[]string{"-retention", "-1h"}, "", 0, "retention must not be negative"},
	} {
		c, err := parseConfig(tt.args, env(tt.env), io.Discard)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%v RETENTION=%q: error %v, want %q", tt.args, tt.env, err, tt.err)
		case tt.err == "" && (err != nil || c.retention != tt.want):
			t.Errorf("%v RETENTION=%q: %v, %v; want %v", tt.args, tt.env, c.retention, err, tt.want)
		}
	}
}
