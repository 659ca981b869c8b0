package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// catchupFlags are the catchup scenario's flags, embedded in config.
type catchupFlags struct {
	History int64  `json:"history"`
	Size    int    `json:"size"`
	Source  string `json:"source"`
}

// Sources of the catchup scenario's history.
const (
	// sourceClosed closes the channel once written: the server serves it
	// entirely from the store, as it does after a restart (a closed channel
	// has no actor, so nothing of it is in the server's memory).
	sourceClosed = "closed"
	// sourceOpen leaves the channel open: the actor still holds its most
	// recent messages (256 by default, at most 64 KiB), and the older ones
	// come from the store. With a short history it is all from memory.
	sourceOpen = "open"
)

func (c *catchupFlags) addFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.History, "history", 10_000, "catchup: messages in the channel before the readers join")
	fs.IntVar(&c.Size, "size", 15, "catchup: bytes per message")
	fs.StringVar(&c.Source, "source", sourceClosed, "catchup: closed (the channel is closed: history from the store, as after a restart) or open (the channel stays open: the oldest history from the store, the most recent from the server's memory)")
}

func (c *config) checkCatchup() error {
	if c.Scenario != "catchup" {
		return nil
	}
	switch {
	case c.Channels != 1:
		return errors.New("catchup: -channels must be 1: all readers join one channel")
	case c.History < 1 || c.History > 10_000_000:
		return errors.New("catchup: -history must be in [1, 10000000]")
	case c.Size < 1 || c.Size > 16<<20:
		return errors.New("catchup: -size must be in [1, 16 MiB]")
	case c.Source != sourceClosed && c.Source != sourceOpen:
		return fmt.Errorf("catchup: -source %q: want closed or open", c.Source)
	case c.History*int64(c.Size) > 1<<30:
		return errors.New("catchup: -history × -size must be at most 1 GiB")
	}
	return nil
}

// runCatchup writes -history messages of -size bytes to one channel (closed
// afterwards with -source closed), then -clients readers join it at once
// and read the whole history: to the end of the channel, or to live on an
// open one. Each reader checks every message against what was written. It
// reports the time from the first dial until all readers are done, each
// reader's time from its dial to done (the catchup latency), and the
// message bytes delivered per second over that time.
func runCatchup(ctx context.Context, b *bench) error {
	cfg := b.cfg
	id := cfg.channelID(0)
	api := b.apiClient(16)
	defer api.CloseIdleConnections()
	if err := createChannel(ctx, api, cfg.URL, id, 0, 0, 0); err != nil {
		return err
	}
	setup := time.Now()
	data, err := fillChannel(ctx, b, api, id)
	if err != nil {
		return err
	}
	if cfg.Source == sourceClosed {
		last, err := closeChannel(ctx, api, cfg.URL, id)
		if err != nil {
			return err
		}
		if last != cfg.History {
			return fmt.Errorf("channel %s closed at seq %d, want %d", id, last, cfg.History)
		}
	}
	fmt.Fprintf(b.stderr, "catchup: wrote %d messages of %d bytes to %s in %.2f s\n", cfg.History, cfg.Size, id, time.Since(setup).Seconds())

	b.res.Clients = int64(cfg.Clients)
	b.res.Expected = int64(cfg.Clients) * cfg.History
	lastDone := timeMark{latest: true}
	var received atomic.Int64
	seen := newVerifiedFrames(verifiedFramesBytes)
	sem := make(chan struct{}, dialConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range cfg.Clients {
		if err := acquire(ctx, sem); err != nil {
			wg.Wait()
			return err
		}
		wg.Go(func() {
			check := &seqChecker{expect: func(seq int64, _ int) (string, bool) {
				if seq < 1 || seq > int64(len(data)) {
					return "", false
				}
				return data[seq-1], true
			}, next: 1}
			done, n, err := readCatchup(ctx, b, id, k, sem, check, seen)
			if err == nil {
				lastDone.mark(done)
				received.Add(n)
			}
			readerDone(b.st, id, k, err, func() *problem { return check.finish(cfg.History) })
		})
	}
	wg.Wait()
	if end := lastDone.get(); !end.IsZero() {
		all := end.Sub(start).Seconds()
		b.res.Notes = append(b.res.Notes, fmt.Sprintf(
			"catchup: %d readers of %d messages of %d bytes (%s channel) all done in %.3f s after the first dial; %.1f MB/s of message data",
			b.st.done.Load(), cfg.History, cfg.Size, cfg.Source, all, float64(received.Load())/all/1e6))
	}
	return ctx.Err()
}

// fillChannel appends -history messages of -size bytes to channel id over
// several connections, the last one once all others are acknowledged and
// with wait=persisted, so that the whole history is durable when it
// returns. It returns the data by seq (data[seq-1]).
func fillChannel(ctx context.Context, b *bench, api *http.Client, id string) ([]string, error) {
	const senders = 16
	n := b.cfg.History
	data := make([]string, n)
	u := b.cfg.URL + "/channels/" + id + "/messages"
	send := func(i int64, query string) error {
		body := catchupMessage(i, b.cfg.Size)
		var out struct {
			Seq int64 `json:"seq"`
		}
		if err := doJSON(ctx, api, http.MethodPost, u+query, "text/plain; charset=utf-8", []byte(body), &out); err != nil {
			return fmt.Errorf("append to %s: %w", id, err)
		}
		if out.Seq < 1 || out.Seq > n || data[out.Seq-1] != "" {
			return fmt.Errorf("append to %s: unexpected seq %d", id, out.Seq)
		}
		data[out.Seq-1] = body // each seq is written by one sender only
		return nil
	}
	var next atomic.Int64
	errs := make([]error, senders)
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for i := next.Add(1); i < n && errs[w] == nil; i = next.Add(1) {
				errs[w] = send(i, "")
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := send(n, "?wait=persisted"); err != nil {
		return nil, err
	}
	return data, nil
}

// catchupMessage is message i of the catchup scenario: its number, then
// letters up to size bytes, the last a newline.
func catchupMessage(i int64, size int) string {
	b := make([]byte, 0, max(size, 20))
	b = strconv.AppendInt(b, i, 10)
	b = append(b, ' ')
	for j := 0; len(b) < size-1; j++ {
		b = append(b, byte('a'+j%26))
	}
	b = append(b, '\n')
	if len(b) > size {
		b = append(b[:size-1], '\n')
	}
	return string(b)
}
