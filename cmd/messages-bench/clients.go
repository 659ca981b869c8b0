package main

// The WebSocket readers of a run, and the waits they share.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/messages-server/messages/ws/client"
)

// wsReader is one WebSocket client of a run.
type wsReader struct {
	channel string
	client  int   // index of the client within its channel
	dropAt  int64 // drop the connection after this seq and resume; 0: never
	// onMessage sees every message (after the client library checked its
	// seq); it must be quick.
	onMessage func(e client.Event)
	// onLive is called when the first connection reaches live.
	onLive func()
	// onDialed is called once the first dial is over, successful or not.
	onDialed func()
}

// lineReaders describes the WebSocket readers subscribeLines starts.
type lineReaders struct {
	// ids are the channels; read, if not nil, says which of them to read.
	ids  []string
	read func(c int) bool
	// onMessage, if not nil, sees each message of reader k of channel c,
	// after it was checked to be the line "seq: id\n"; without it the
	// messages are not checked.
	onMessage func(c, k int, e client.Event)
	// acked returns how many messages the readers of channel c must have
	// read when they end.
	acked func(c int) int64
	// endErr, if not nil, filters the error a reader ended with.
	endErr func(error) error
}

// subscribeLines starts -clients readers on each channel of r, at most
// dialConcurrency dialing at a time, each counted in ready until it is
// live (or gone) and in readers until it has ended.
func (b *bench) subscribeLines(ctx context.Context, r lineReaders, ready, readers *sync.WaitGroup) {
	dials := make(chan struct{}, dialConcurrency)
	for c, id := range r.ids {
		if r.read != nil && !r.read(c) {
			continue
		}
		for k := range b.cfg.Clients {
			ready.Add(1)
			dials <- struct{}{}
			readers.Go(func() {
				isReady := sync.OnceFunc(ready.Done)
				defer isReady()
				check := lineChecker(id)
				wr := wsReader{channel: id, client: k, onDialed: func() { <-dials }, onLive: isReady}
				if r.onMessage != nil {
					wr.onMessage = func(e client.Event) {
						check.add(e.Seq, e.Data)
						r.onMessage(c, k, e)
					}
				}
				_, err := readWS(ctx, b.cfg.readerURL(k), b.src, b.st, wr)
				if r.endErr != nil {
					err = r.endErr(err)
				}
				readerDone(b.st, id, k, err, func() *problem { return check.finish(r.acked(c)) })
			})
		}
	}
}

// readWS subscribes from the beginning and reads until the end of the
// channel, counting into st. It returns the last seq, or the error that
// stopped it (counted by the caller).
func readWS(ctx context.Context, baseURL string, src *sources, st *stats, r wsReader) (int64, error) {
	opts := client.Options{HTTPClient: src.nextWS()}
	started := time.Now()
	st.dials.Add(1)
	sub, err := client.Subscribe(ctx, baseURL, r.channel, opts)
	if r.onDialed != nil {
		r.onDialed()
	}
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	st.open.Add(1)
	defer func() {
		st.open.Add(-1)
		sub.Close()
	}()
	live, everLive, dropped := false, false, false
	for {
		e, err := sub.Next(ctx)
		if errors.Is(err, io.EOF) {
			return sub.LastSeq(), nil
		}
		if err != nil {
			return sub.LastSeq(), err
		}
		switch e.Kind {
		case client.EventLive:
			live = true
			if !everLive {
				everLive = true
				st.liveCount.Add(1)
				st.catchup.record(r.client, e.Received.Sub(started))
				if r.onLive != nil {
					r.onLive()
				}
			}
		case client.EventMessage:
			st.delivery(e.Received, len(e.Data))
			if live {
				st.live.record(r.client, e.Received.Sub(time.UnixMicro(e.Time)))
			}
			if r.onMessage != nil {
				r.onMessage(e)
			}
			if !dropped && e.Seq == r.dropAt {
				dropped = true
				last, epoch := sub.LastSeq(), sub.Epoch()
				sub.Close()
				st.resumes.Add(1)
				st.dials.Add(1)
				opts.From, opts.Epoch = last, epoch
				next, err := client.Subscribe(ctx, baseURL, r.channel, opts)
				if err != nil {
					// The deferred Close of the old one is harmless.
					return last, fmt.Errorf("resume from %d: %w", last, err)
				}
				sub, live = next, false
			}
		}
	}
}

// readerDone counts a finished WebSocket reader: a failure, an
// inconsistency (a protocol error, or what check finds), or a success.
func readerDone(st *stats, id string, k int, err error, check func() *problem) {
	var pe *client.ProtocolError
	switch {
	case errors.As(err, &pe):
		st.inconsistent(id, k, &problem{Seq: pe.Expected, Kind: kindProtocol, Detail: pe.Error()})
	case err != nil:
		st.fail("channel %s client %d: %v", id, k, err)
	default:
		if p := check(); p != nil {
			st.inconsistent(id, k, p)
		} else {
			st.done.Add(1)
		}
	}
}

// waitGroup waits for wg until ctx is done.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquire takes a slot of sem, or returns ctx's error once ctx is done
// first.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
