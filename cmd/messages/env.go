package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// envVars reads the environment fallbacks of flags. A value that does not
// parse is an error, collected in errs for parseConfig, and the flag keeps
// its default, so that no range check repeats it.
type envVars struct {
	getenv func(string) string
	errs   *[]error
}

// fail records an error in an environment value.
func (e envVars) fail(err error) { *e.errs = append(*e.errs, err) }

// str reads a string from the environment, def if unset.
func (e envVars) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// dur reads a duration from the environment.
func (e envVars) dur(name string, def time.Duration) time.Duration {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(fmt.Errorf("%s=%q: not a duration (e.g. 100ms, 30s)", name, v))
		return def
	}
	return d
}

// num reads an integer from the environment.
func (e envVars) num(name string, def int) int {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(fmt.Errorf("%s=%q: not an integer", name, v))
		return def
	}
	return n
}

// boolean reads a boolean from the environment, false if unset.
func (e envVars) boolean(name string) bool {
	v := e.getenv(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(fmt.Errorf("%s=%q: not a boolean", name, v))
		return false
	}
	return b
}

// float reads a number from the environment.
func (e envVars) float(name string, def float64) float64 {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.fail(fmt.Errorf("%s=%q: not a number", name, v))
		return def
	}
	return f
}

// size reads a byte size from the environment.
func (e envVars) size(name string, def byteSize) byteSize {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	var b byteSize
	if err := b.Set(v); err != nil {
		e.fail(fmt.Errorf("%s=%q: %v", name, v, err))
		return def
	}
	return b
}

// level reads a log level from the environment.
func (e envVars) level(name string, def slog.Level) slog.Level {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	var l levelFlag
	if err := l.Set(v); err != nil {
		e.fail(fmt.Errorf("%s=%q: %v", name, v, err))
		return def
	}
	return slog.Level(l)
}

// choice reads one of choices from the environment.
func (e envVars) choice(name, def string, choices []string) string {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	if !slices.Contains(choices, v) {
		e.fail(fmt.Errorf("%s=%q: use %s", name, v, strings.Join(choices, " or ")))
		return def
	}
	return v
}
