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
)

// quotas are the per-client limits of a Server: streaming connections and
// channel creations per client IP. It is safe for concurrent use.
type quotas struct {
	maxConns   int
	createRate float64
	burst      int
	trusted    []netip.Prefix

	mu        sync.Mutex
	conns     map[netip.Addr]int           // guarded by mu: open streams per client
	budgets   map[netip.Addr]*createBudget // guarded by mu: creations per client
	lastSweep time.Time                    // guarded by mu
}

func newQuotas(cfg *ServerConfig) *quotas {
	return &quotas{
		maxConns: cfg.MaxConnsPerIP, createRate: cfg.CreateRate, burst: cfg.CreateBurst,
		trusted: cfg.TrustedProxies, conns: make(map[netip.Addr]int), budgets: make(map[netip.Addr]*createBudget),
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
	ok, retry := q.takeCreate(ip)
	if !ok {
		q.refuseCreate(w, ip, retry)
	}
	return ok
}

// refuseCreate answers 429 to a creation of client ip, which may try
// again after retry.
func (q *quotas) refuseCreate(w http.ResponseWriter, ip netip.Addr, retry time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many channel creations from %v (at most %v a second), retry later", ip, q.createRate))
}

// takeCreate takes one creation from client ip's budget, or reports false
// and how long until the budget has one.
func (q *quotas) takeCreate(ip netip.Addr) (bool, time.Duration) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sweep(now)
	b := q.bucket(ip, now)
	if b.tokens < 1 {
		secs := min((1-b.tokens)/q.createRate, 1<<31) // held where a Duration cannot overflow
		return false, time.Duration(secs * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// refundCreate gives back a creation takeCreate took for a request that
// created nothing.
func (q *quotas) refundCreate(ip netip.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.bucket(ip, time.Now())
	b.tokens = min(b.tokens+1, float64(q.burst))
}

// oweCreate charges client ip for a creation made without taking one
// first: its budget may go below nothing, and its next creations wait
// until the debt is paid back at the creation rate.
func (q *quotas) oweCreate(ip netip.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.bucket(ip, time.Now()).tokens--
}

// owes reports whether client ip's budget is below nothing: it made a
// creation it had not paid for (oweCreate) and has not yet paid it back.
func (q *quotas) owes(ip netip.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bucket(ip, time.Now()).tokens < 0
}

// createBudget is one client's creation budget: a token bucket that fills
// at the creation rate up to the burst. Unlike rate.Limiter it takes a
// token back after the fact (refundCreate) and may go into debt
// (oweCreate).
type createBudget struct {
	tokens float64   // creations available; below 0, owed
	at     time.Time // when tokens was last filled
}

// bucket returns client ip's budget, filled up to now. A new client's is
// full. Called with q.mu held.
func (q *quotas) bucket(ip netip.Addr, now time.Time) *createBudget {
	b := q.budgets[ip]
	if b == nil {
		b = &createBudget{tokens: float64(q.burst), at: now}
		q.budgets[ip] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(float64(q.burst), b.tokens+d.Seconds()*q.createRate)
		b.at = now
	}
	return b
}

// sweep forgets the budgets that are full again, so that the map holds
// only recently active clients. It runs at most once a second and only
// when the map is large. Called with q.mu held.
func (q *quotas) sweep(now time.Time) {
	if len(q.budgets) < 1024 || now.Sub(q.lastSweep) < time.Second {
		return
	}
	q.lastSweep = now
	for ip := range q.budgets {
		if q.bucket(ip, now).tokens >= float64(q.burst) {
			delete(q.budgets, ip)
		}
	}
}
