package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/messages-server/messages/ws/client"
)

// refReader is one reader of the reference scenario and what it got.
type refReader struct {
	client int
	delay  time.Duration
	http   bool // GET /?id=
	sse    bool // Durable Streams SSE
	dropAt int64

	msgs []received // WebSocket
	body []byte     // HTTP and SSE
}

// runReference starts every channel with the generator (the creator's
// streamed answer is the original), lets each channel's readers join at
// random times over the window, and compares each reader's stream with
// the original as soon as both are complete.
func runReference(ctx context.Context, b *bench) error {
	cfg := b.cfg
	b.res.Clients = int64(cfg.Channels * cfg.Clients)
	b.res.Expected = b.res.Clients * cfg.Max
	// Draw every random choice up front, from the seed, in one goroutine.
	readers := make([][]*refReader, cfg.Channels)
	for c := range readers {
		readers[c] = make([]*refReader, cfg.Clients)
		for k := range readers[c] {
			r := &refReader{client: k, delay: time.Duration(b.rng.Int64N(int64(cfg.Window) + 1))}
			switch cfg.Transport {
			case "http":
				r.http = true
			case "sse":
				r.sse = true
			case "mixed":
				switch b.rng.IntN(3) {
				case 1:
					r.http = true
				case 2:
					r.sse = true
				}
			}
			if !r.http && !r.sse && b.rng.Float64() < cfg.ResumeFraction {
				r.dropAt = 1 + b.rng.Int64N(cfg.Max)
			}
			readers[c][k] = r
		}
	}
	var wg sync.WaitGroup
	for c := range readers {
		wg.Go(func() { refChannel(ctx, b, cfg.channelID(c), readers[c]) })
	}
	wg.Wait()
	return ctx.Err()
}

// refChannel runs one channel: the creator, whose streamed answer is the
// original, and its readers. Each reader is verified as soon as it has read
// its stream to the end and the original is complete, so that the done
// count grows during the run.
func refChannel(ctx context.Context, b *bench, id string, readers []*refReader) {
	started := make(chan struct{})  // closed once the creator has an answer
	finished := make(chan struct{}) // closed once original is set
	var original []byte             // nil if the creator failed; written before finished is closed
	var wg sync.WaitGroup
	defer wg.Wait()
	start := sync.OnceFunc(func() { close(started) })
	finish := sync.OnceFunc(func() { close(finished) })
	defer finish()
	defer start()
	for _, r := range readers {
		wg.Go(func() {
			if !refRead(ctx, b, id, r, started) {
				return
			}
			<-finished
			verifyRef(b, id, r, original)
		})
	}
	original = refCreate(ctx, b, id, start)
	finish()
}

// refRead waits for the channel to start, then for the reader's delay, and
// reads the whole stream into r. It reports false, having counted the
// failure, if the reader failed.
func refRead(ctx context.Context, b *bench, id string, r *refReader, started <-chan struct{}) bool {
	select {
	case <-started:
	case <-ctx.Done():
		b.st.fail("channel %s client %d: not started: %v", id, r.client, ctx.Err())
		return false
	}
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		b.st.fail("channel %s client %d: %v", id, r.client, ctx.Err())
		return false
	}
	var err error
	switch {
	case r.http:
		r.body, err = readHTTP(ctx, b, id, r.client)
	case r.sse:
		r.body, err = readSSE(ctx, b, b.cfg.readerURL(r.client), id)
	default:
		err = readRefWS(ctx, b, id, r)
	}
	if err == nil {
		return true
	}
	if pe, ok := errors.AsType[*client.ProtocolError](err); ok {
		b.st.inconsistent(id, r.client, &problem{Seq: pe.Expected, Kind: kindProtocol, Detail: pe.Error()})
	} else {
		b.st.fail("channel %s client %d: %v", id, r.client, err)
	}
	return false
}

// verifyRef compares what reader r got with the original and counts it as
// done or inconsistent; then it lets go of the stream.
func verifyRef(b *bench, id string, r *refReader, original []byte) {
	if original == nil {
		b.st.fail("channel %s client %d: nothing to compare with: the creator failed", id, r.client)
		return
	}
	var p *problem
	if r.http || r.sse {
		p = verifyBody(original, r.body)
	} else {
		p = verifyMessages(original, r.msgs)
	}
	r.msgs, r.body = nil, nil
	if p != nil {
		b.st.inconsistent(id, r.client, p)
	} else {
		b.st.done.Add(1)
	}
}

// refCreate starts the channel with the generator (POST /?freq=&max=), calls
// start once the server answered (recording how long its response headers
// took as the create latency), and returns the streamed answer: the
// original. It returns nil, having counted the failure, if that failed.
func refCreate(ctx context.Context, b *bench, id string, start func()) []byte {
	cfg := b.cfg
	q := url.Values{"freq": {strconv.FormatFloat(cfg.Freq, 'g', -1, 64)}, "max": {strconv.FormatInt(cfg.Max, 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+"/?"+q.Encode(), strings.NewReader(id))
	if err != nil {
		b.st.failChannel("channel %s creator: %v", id, err)
		return nil
	}
	req.Header.Set("Content-Type", "text/plain")
	b.st.dials.Add(1)
	sent := time.Now()
	resp, err := b.src.next().Do(req)
	start()
	if err != nil {
		b.st.failChannel("channel %s creator: %v", id, err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.st.failChannel("channel %s creator: %v", id, statusError(resp))
		return nil
	}
	b.st.create.record(len(id), time.Since(sent)) // response headers
	original, err := io.ReadAll(resp.Body)
	if err != nil {
		b.st.failChannel("channel %s creator: read: %v", id, err)
		return nil
	}
	return original
}

// readRefWS reads the channel over WebSocket into r.msgs.
func readRefWS(ctx context.Context, b *bench, id string, r *refReader) error {
	_, err := readWS(ctx, b.cfg.readerURL(r.client), b.src, b.st, wsReader{
		channel: id, client: r.client, dropAt: r.dropAt,
		onMessage: func(e client.Event) { r.msgs = append(r.msgs, received{seq: e.Seq, data: e.Data}) },
	})
	return err
}

// readHTTP reads GET /?id= to the end; every line counts as a delivery.
func readHTTP(ctx context.Context, b *bench, id string, client int) ([]byte, error) {
	resp, err := b.get(ctx, b.cfg.readerURL(client)+"/?id="+url.QueryEscape(id))
	if err != nil {
		return nil, fmt.Errorf("http get: %w", err)
	}
	defer resp.Body.Close()
	b.st.open.Add(1)
	defer b.st.open.Add(-1)
	var body []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			now := time.Now()
			for _, c := range buf[:n] {
				if c == '\n' {
					b.st.delivery(now, 0)
				}
			}
			b.st.bytes.Add(int64(n))
			body = append(body, buf[:n]...)
		}
		if errors.Is(err, io.EOF) {
			return body, nil
		}
		if err != nil {
			return body, fmt.Errorf("http read: %w", err)
		}
	}
}
