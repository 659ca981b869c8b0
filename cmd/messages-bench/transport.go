package main

// How the bench's HTTP and WebSocket connections are made: from many
// loopback source addresses, with the run's token, retrying 429s.

import (
	"bufio"
	"bytes"
	"context"
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

// apiClient returns a client for a scenario's calls to the API (its
// readers use the sources): from the system's source address, with the
// run's token, its 429s retried and counted, keeping up to maxConns
// connections. The caller closes its idle connections when done.
func (b *bench) apiClient(maxConns int) *http.Client {
	return newHTTPClient(0, maxConns, b.cfg.Token, &b.st.throttled)
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
