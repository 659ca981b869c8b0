// Package ratelog bounds how often a repeated log line is written: the
// first occurrence in an interval is logged at once, with its attributes;
// the others are only counted, and the count is logged in one line when
// the interval ends. A flood of events thus costs at most two lines per
// interval, whatever its size, and no event goes uncounted.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the interval of a Logger created with interval 0.
const DefaultInterval = 10 * time.Second

// Logger logs one message at one level, at most once per interval plus a
// line with the count of the repeats. It is safe for concurrent use; the
// zero value is not usable: create it with New.
type Logger struct {
	log      *slog.Logger
	level    slog.Level
	msg      string
	interval time.Duration
	now      func() time.Time
	after    func(time.Duration, func())

	mu       sync.Mutex
	start    time.Time // guarded by mu: when the current interval began
	repeats  int64     // guarded by mu: events counted but not logged
	flushing bool      // guarded by mu: a flush of repeats is scheduled
}

// New returns a Logger writing msg at level to log, at most once per
// interval (DefaultInterval if 0).
func New(log *slog.Logger, level slog.Level, msg string, interval time.Duration) *Logger {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Logger{log: log, level: level, msg: msg, interval: interval, now: time.Now,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// Log records one occurrence: it is logged with attrs if it is the first
// of its interval, and otherwise counted, the count being logged when the
// interval ends.
func (l *Logger) Log(ctx context.Context, attrs ...slog.Attr) {
	if !l.log.Enabled(ctx, l.level) {
		return
	}
	now := l.now()
	l.mu.Lock()
	if !l.start.IsZero() && now.Sub(l.start) < l.interval {
		l.repeats++
		if !l.flushing {
			l.flushing = true
			l.after(l.interval-now.Sub(l.start), l.flush)
		}
		l.mu.Unlock()
		return
	}
	l.start = now
	l.mu.Unlock()
	l.log.LogAttrs(ctx, l.level, l.msg, attrs...)
}

// flush logs the repeats counted so far in one line.
func (l *Logger) flush() {
	l.mu.Lock()
	n := l.repeats
	l.repeats, l.flushing = 0, false
	l.mu.Unlock()
	if n > 0 {
		l.log.LogAttrs(context.Background(), l.level, l.msg+" (repeated)",
			slog.Int64("repeats", n), slog.Duration("within", l.interval))
	}
}
