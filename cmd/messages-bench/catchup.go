package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/ws/client"
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
	id := cfg.Prefix + "0"
	api := newHTTPClient(0, 16, cfg.Token)
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
	sem := make(chan struct{}, dialConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range cfg.Clients {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			check := &seqChecker{expect: func(seq int64, _ int) (string, bool) {
				if seq < 1 || seq > int64(len(data)) {
					return "", false
				}
				return data[seq-1], true
			}, next: 1}
			done, n, err := readCatchup(ctx, b, id, k, sem, check)
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

// readCatchup reads channel id as reader k until it is caught up: the end
// of a closed channel, or live on an open one. It releases sem once its
// dial is over. It returns when it was done and how many message bytes it
// received.
func readCatchup(ctx context.Context, b *bench, id string, k int, sem <-chan struct{}, check *seqChecker) (time.Time, int64, error) {
	started := time.Now()
	b.st.dials.Add(1)
	sub, err := client.Subscribe(ctx, b.cfg.URL, id, client.Options{HTTPClient: b.src.next()})
	<-sem
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("connect: %w", err)
	}
	b.st.open.Add(1)
	defer func() {
		b.st.open.Add(-1)
		sub.Close()
	}()
	var n int64
	var frame deliveries // the messages of one frame, counted at once
	defer func() { frame.flush(b.st) }()
	for {
		e, err := sub.Next(ctx)
		if errors.Is(err, io.EOF) {
			return time.Time{}, n, fmt.Errorf("the channel ended after seq %d before the reader was live", sub.LastSeq())
		}
		if err != nil {
			return time.Time{}, n, err
		}
		switch e.Kind {
		case client.EventMessage:
			if !e.Received.Equal(frame.at) {
				frame.flush(b.st)
				frame.at = e.Received
			}
			frame.count++
			frame.bytes += int64(len(e.Data))
			n += int64(len(e.Data))
			check.add(e.Seq, e.Data)
		case client.EventLive, client.EventEnd:
			b.st.catchup.record(k, e.Received.Sub(started))
			if e.Kind == client.EventLive {
				b.st.liveCount.Add(1)
			}
			return e.Received, n, nil
		}
	}
}

// deliveries are messages received at once (from one frame), counted into
// stats together: with thousands of readers, counting each message on the
// shared counters costs the bench more than checking it.
type deliveries struct {
	at           time.Time
	count, bytes int64
}

// flush counts d into st and empties it.
func (d *deliveries) flush(st *stats) {
	if d.count == 0 {
		return
	}
	st.delivered.Add(d.count)
	st.bytes.Add(d.bytes)
	if i := int(d.at.Sub(st.start) / bucketWidth); i >= 0 && i < len(st.timeline) {
		st.timeline[i].Add(d.count)
	}
	d.count, d.bytes = 0, 0
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
