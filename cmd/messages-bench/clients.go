package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/ws/client"
)

// defaultPerSource is how many connections go out from one source address
// before the next one is used, when the port range cannot be read.
const defaultPerSource = 25000

// sources hands out HTTP clients that connect from 127.0.0.1, then
// 127.0.0.2, and so on, so that a loopback target can take more
// connections than one source address has ephemeral ports. For other
// targets every connection uses the default source. Safe for concurrent use.
type sources struct {
	perSource int
	spread    bool
	token     string
	throttled *atomic.Int64 // counts retried 429s; nil: no retries
	n         atomic.Int64

	mu        sync.Mutex // guards clients and wsClients
	clients   []*http.Client
	wsClients []*http.Client // by source too, for WebSocket handshakes only
}

// newSources returns the sources for baseURL; their clients send token and
// retry 429s, counted in throttled, as newHTTPClient does.
func newSources(baseURL, token string, throttled *atomic.Int64) (*sources, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	ip := net.ParseIP(u.Hostname())
	return &sources{perSource: portsPerSource(), spread: ip != nil && ip.To4() != nil && ip.IsLoopback(), token: token, throttled: throttled}, nil
}

// next returns the client for the next connection.
func (s *sources) next() *http.Client {
	i := s.index()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.clients) <= i {
		s.clients = append(s.clients, newHTTPClient(len(s.clients), 0, s.token, s.throttled))
	}
	return s.clients[i]
}

// nextWS returns the client for the next WebSocket handshake: it sends the
// upgrade on a connection of its own without net/http's connection pool
// (see upgradeTransport), which a thousand dials at once would otherwise
// pay for.
func (s *sources) nextWS() *http.Client {
	i := s.index()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.wsClients) <= i {
		s.wsClients = append(s.wsClients, newWSClient(len(s.wsClients), s.token, s.throttled))
	}
	return s.wsClients[i]
}

// index is the source of the next connection.
func (s *sources) index() int {
	if !s.spread {
		return 0
	}
	i := int((s.n.Add(1) - 1) / int64(s.perSource))
	return min(i, 250) // 127.0.0.1 .. 127.0.0.251
}

// used returns how many source addresses were used.
func (s *sources) used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.clients), len(s.wsClients))
}

// close closes idle connections.
func (s *sources) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range slices.Concat(s.clients, s.wsClients) {
		c.CloseIdleConnections()
	}
}

// newHTTPClient returns a client whose connections come from
// 127.0.0.(source+1) (source 0 lets the system choose), keeping up to
// maxConns connections (0: no limit). With a token, every request it sends,
// WebSocket handshakes included, carries it as a bearer token. With
// throttled set, a request the server refuses with 429 Too Many Requests
// (a per-client quota) is sent again after its Retry-After, and counted
// there.
func newHTTPClient(source, maxConns int, token string, throttled *atomic.Int64) *http.Client {
	d := sourceDialer(source)
	idle := maxConns
	if idle == 0 {
		idle = 1024
	}
	return &http.Client{Transport: wrapTransport(&http.Transport{
		DialContext:         d.DialContext,
		MaxConnsPerHost:     maxConns,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}, token, throttled)}
}

// newWSClient is newHTTPClient for WebSocket handshakes alone, over
// upgradeTransport. An https URL still goes through net/http.
func newWSClient(source int, token string, throttled *atomic.Int64) *http.Client {
	d := sourceDialer(source)
	fallback := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	return &http.Client{Transport: wrapTransport(&upgradeTransport{dial: d.DialContext, fallback: fallback}, token, throttled)}
}

// sourceDialer dials from 127.0.0.(source+1); source 0 lets the system
// choose.
func sourceDialer(source int) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if source > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(source+1))}
	}
	return d
}

// wrapTransport adds the bearer token and the retries of 429s to rt.
func wrapTransport(rt http.RoundTripper, token string, throttled *atomic.Int64) http.RoundTripper {
	if token != "" {
		rt = &bearerTransport{base: rt, auth: "Bearer " + token}
	}
	if throttled != nil {
		rt = &retryTransport{base: rt, count: throttled}
	}
	return rt
}

// upgradeTransport sends an HTTP/1.1 upgrade request (a WebSocket
// handshake) on a new connection of its own and returns the answer with
// the connection as its body, as the WebSocket library expects of a 101.
// It keeps no pool and runs no goroutine per connection, unlike
// http.Transport, whose persistConn machinery is most of what a handshake
// costs the client. Other requests, and https, go to fallback.
type upgradeTransport struct {
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *upgradeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "http" || r.Header.Get("Upgrade") == "" {
		return t.fallback.RoundTrip(r)
	}
	conn, err := t.dial(r.Context(), "tcp", canonicalAddr(r.URL))
	if err != nil {
		return nil, err
	}
	// The handshake is bounded by r's context, as in net/http.
	stop := context.AfterFunc(r.Context(), func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := r.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, r)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Read the refusal's body now: the connection goes with it.
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		conn.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, nil
	}
	if !stop() {
		conn.Close()
		return nil, r.Context().Err()
	}
	resp.Body = upgradedConn{Reader: br, Conn: conn}
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the fallback: the
// upgrades keep none.
func (t *upgradeTransport) CloseIdleConnections() {
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// upgradedConn is the body of a 101 answer: reads come through the reader
// that read the answer (it may hold the first frames), writes and close go
// to the connection.
type upgradedConn struct {
	io.Reader
	net.Conn
}

func (c upgradedConn) Read(p []byte) (int, error) { return c.Reader.Read(p) }

// canonicalAddr is u's host with its port, the scheme's default if none.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Bounds of the retries of a throttled request.
const (
	maxThrottleRetries = 20
	maxRetryAfter      = 10 * time.Second
)

// retryTransport sends a request refused with 429 again after the answer's
// Retry-After (1 s when it has none, at most maxRetryAfter), plus a random
// part of it so that refused clients do not come back all at once. A
// request whose body cannot be read again is not retried.
type retryTransport struct {
	base  http.RoundTripper
	count *atomic.Int64 // retries so far
}

// RoundTrip implements http.RoundTripper.
func (t *retryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := t.base.RoundTrip(r)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || attempt == maxThrottleRetries ||
			(r.Body != nil && r.Body != http.NoBody && r.GetBody == nil) {
			return resp, err
		}
		wait := retryAfter(resp.Header.Get("Retry-After"))
		wait += rand.N(wait/2 + 1)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		t.count.Add(1)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return nil, r.Context().Err()
		}
		next := r.Clone(r.Context())
		if r.GetBody != nil {
			if next.Body, err = r.GetBody(); err != nil {
				return nil, err
			}
		}
		r = next
	}
}

// CloseIdleConnections closes the idle connections of the transport
// underneath.
func (t *retryTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// retryAfter reads a Retry-After header in seconds: 1 s when absent or not
// a number of seconds, at most maxRetryAfter.
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n < 0 {
		return time.Second
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

// bearerTransport adds an Authorization header to every request.
type bearerTransport struct {
	base http.RoundTripper
	auth string
}

// RoundTrip implements http.RoundTripper.
func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", t.auth)
	return t.base.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the transport
// underneath, so that http.Client.CloseIdleConnections still works.
func (t *bearerTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// portsPerSource reads the ephemeral port range and keeps a margin.
func portsPerSource() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultPerSource
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultPerSource
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi-lo < 2000 {
		return defaultPerSource
	}
	return hi - lo - 1000
}

// apiError is an HTTP API error answer.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Message) }

// doJSON sends a request and decodes a JSON answer into out (if not nil).
func doJSON(ctx context.Context, c *http.Client, method, u, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(clip(b)))
		}
		return &apiError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// createChannel creates channel id, with a generator when freq > 0 that
// starts once startWhen subscribers are attached (at once if 0).
func createChannel(ctx context.Context, c *http.Client, baseURL, id string, freq float64, max int64, startWhen int) error {
	body := map[string]any{"id": id}
	if freq > 0 {
		body["generator"] = map[string]any{"freq": freq, "max": max, "start_when_subscribers": startWhen}
	}
	b, _ := json.Marshal(body)
	if err := doJSON(ctx, c, http.MethodPost, baseURL+"/channels", "application/json", b, nil); err != nil {
		return fmt.Errorf("create channel %s: %w", id, err)
	}
	return nil
}

// closeChannel ends channel id and returns its last seq. It runs even when
// ctx is done (bounded by its own timeout), so that a stopped run leaves no
// channel open.
func closeChannel(ctx context.Context, c *http.Client, baseURL, id string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var out struct {
		LastSeq int64 `json:"last_seq"`
	}
	if err := doJSON(ctx, c, http.MethodPost, baseURL+"/channels/"+id+"/close", "", nil, &out); err != nil {
		return 0, fmt.Errorf("close channel %s: %w", id, err)
	}
	return out.LastSeq, nil
}

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
