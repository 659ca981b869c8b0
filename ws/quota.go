package ws

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// quotas are the per-client limits of a Server: streaming connections and
// channel creations per client IP. It is safe for concurrent use.
type quotas struct {
	maxConns   int
	createRate rate.Limit
	burst      int
	trusted    []netip.Prefix

	mu        sync.Mutex
	conns     map[netip.Addr]int           // guarded by mu: open streams per client
	limiters  map[netip.Addr]*rate.Limiter // guarded by mu: creations per client
	lastSweep time.Time                    // guarded by mu
}

func newQuotas(cfg *ServerConfig) *quotas {
	return &quotas{
		maxConns: cfg.MaxConnsPerIP, createRate: rate.Limit(cfg.CreateRate), burst: cfg.CreateBurst,
		trusted: cfg.TrustedProxies, conns: make(map[netip.Addr]int), limiters: make(map[netip.Addr]*rate.Limiter),
	}
}

// clientIP is the address of the client that made r: the peer, or, when
// the peer is a trusted proxy, the nearest untrusted address in
// X-Forwarded-For (each proxy appends the address it got the request from).
func (q *quotas) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{} // not over TCP: one bucket for all
	}
	ip := ap.Addr().Unmap()
	if !q.isTrusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a malformed hop: trust nothing before it
		}
		ip = hop.Unmap()
		if !q.isTrusted(ip) {
			return ip
		}
	}
	return ip
}

func (q *quotas) isTrusted(ip netip.Addr) bool {
	for _, p := range q.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// acquireConn counts one more streaming connection of r's client, or
// answers 429 and reports false past the bound. Call the returned function
// when the connection ends.
func (q *quotas) acquireConn(w http.ResponseWriter, r *http.Request) (func(), bool) {
	release, ok := q.takeConn(r)
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many streaming connections from %v (at most %d), retry later", q.clientIP(r), q.maxConns))
	}
	return release, ok
}

// takeConn is acquireConn without the answer: false past the bound.
func (q *quotas) takeConn(r *http.Request) (func(), bool) {
	ip := q.clientIP(r)
	q.mu.Lock()
	if q.conns[ip] >= q.maxConns {
		q.mu.Unlock()
		return nil, false
	}
	q.conns[ip]++
	q.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			if q.conns[ip]--; q.conns[ip] <= 0 {
				delete(q.conns, ip)
			}
			q.mu.Unlock()
		})
	}, true
}

// allowCreate takes one channel creation from r's client's budget, or
// answers 429 and reports false when it is spent.
func (q *quotas) allowCreate(w http.ResponseWriter, r *http.Request) bool {
	ip := q.clientIP(r)
	now := time.Now()
	q.mu.Lock()
	q.sweep(now)
	l := q.limiters[ip]
	if l == nil {
		l = rate.NewLimiter(q.createRate, q.burst)
		q.limiters[ip] = l
	}
	ok := l.AllowN(now, 1)
	q.mu.Unlock()
	if !ok {
		retry := max(1, int(math.Ceil(1/float64(q.createRate))))
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many channel creations from %v (at most %v a second), retry later", ip, float64(q.createRate)))
	}
	return ok
}

// sweep forgets the limiters that are full again, so that the map holds
// only recently active clients. It runs at most once a second and only
// when the map is large. Called with q.mu held.
func (q *quotas) sweep(now time.Time) {
	if len(q.limiters) < 1024 || now.Sub(q.lastSweep) < time.Second {
		return
	}
	q.lastSweep = now
	for ip, l := range q.limiters {
		if l.TokensAt(now) >= float64(q.burst) {
			delete(q.limiters, ip)
		}
	}
}
