package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist/persisttest"
)

// Bounds of the database fault cases, small so that the outage reaches
// them: store calls give up after storeTimeout, a wait=persisted append
// after persistWait, and a channel holds at most 64 KiB of messages.
const (
	storeTimeout = time.Second
	persistWait  = 2 * time.Second
	producers    = 6
	produceEvery = 10 * time.Millisecond // 100 appends per second per producer
)

// TestFaultDatabase runs two producers, one appending without waiting and
// one with ?wait=persisted, and a WebSocket subscriber on each of several
// channels while the database is down (its port closed), hung (connections
// accepted, nothing answered) or slow (25 ms each way), for
// outageDuration. During
// the outage no request hangs: appends are delivered live and acknowledged
// until the channel's bound, then refused with 503 and Retry-After; waits
// for persistence end in 504 with the seq; store paths answer 503. After
// it, every message acknowledged (200 or 504) is in the database,
// byte-identical, at its seq, and nothing else is; every subscriber got
// exactly that.
func TestFaultDatabase(t *testing.T) {
	t.Parallel()
	outage := outageDuration(t)
	for _, tc := range []struct {
		name  string
		fault func(*persisttest.Proxy)
		down  bool // the database cannot answer at all
	}{
		{"down", func(p *persisttest.Proxy) { p.Drop() }, true},
		{"hung", func(p *persisttest.Proxy) { p.Blackhole() }, true},
		{"slow", func(p *persisttest.Proxy) { p.Latency(25 * time.Millisecond) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			databaseFault(t, outage, tc.fault, tc.down)
		})
	}
}

func databaseFault(t *testing.T, outage time.Duration, fault func(*persisttest.Proxy), down bool) {
	proxy, proxied, direct := behindProxy(t)
	s := start(t, "-database-url", proxied, "-store-timeout", storeTimeout.String(),
		"-persist-wait-timeout", persistWait.String(), "-max-channel-bytes", "64KiB")
	c := faultClient(t, 30*time.Second)
	ctx := contextFor(t, outage+3*time.Minute)

	ledgers := make([]*ledger, producers)
	subs := make([]chan subResult, producers)
	for i := range ledgers {
		id := fmt.Sprintf("fault-%d", i)
		do(t, "POST", s.base+"/channels", fmt.Sprintf(`{"id":%q}`, id), http.StatusCreated)
		ledgers[i] = &ledger{id: id, acks: make(map[int64]ack)}
		subs[i] = make(chan subResult, 1)
		go func() { subs[i] <- subscribe(ctx, s.base, id) }()
	}
	pctx, stopProducers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, l := range ledgers {
		wg.Go(func() { l.produce(pctx, c, s.base, false) })
		wg.Go(func() { l.produce(pctx, c, s.base, true) })
	}
	defer func() { stopProducers(); wg.Wait() }()
	for _, l := range ledgers {
		eventually(t, time.Minute, "acknowledged before the fault", func() bool { return l.acked() >= 10 })
	}

	fault(proxy)
	began := time.Now()
	probes := probeDuringOutage(t, c, s.base, outage, down, func() bool {
		if !down {
			return true // a slow database need not reach the bound
		}
		for _, l := range ledgers {
			if l.count(func(l *ledger) int { return l.refused }) == 0 {
				return false
			}
		}
		return true
	})
	lasted := time.Since(began)
	before := make([]int, len(ledgers))
	for i, l := range ledgers {
		before[i] = l.acked()
	}
	proxy.Latency(0)
	proxy.Pass()
	healed := time.Now()
	eventually(t, time.Minute, "ready after the fault", func() bool {
		a, err := ask(c, "GET", s.base+"/readyz", "", "")
		return err == nil && a.status == http.StatusOK
	})
	ready := time.Since(healed)
	for i, l := range ledgers {
		eventually(t, time.Minute, "appending again after the fault", func() bool { return l.acked() >= before[i]+10 })
	}
	stopProducers()
	wg.Wait()

	total := closeAndCheck(t, ctx, s.base, direct, ledgers, subs)
	t.Logf("RELIABILITY database %s for %v (outage lasted %v, ready %v after): %s; probes: %s",
		t.Name(), outage, lasted.Round(time.Millisecond), ready.Round(time.Millisecond), total, probes)
	if down && total.refused == 0 {
		t.Errorf("no append was refused: the outage never reached the bound, the case misses its point")
	}
	if total.acked() == 0 || total.lost != 0 {
		t.Errorf("acknowledged %d, lost %d", total.acked(), total.lost)
	}
}

// closeAndCheck closes each ledger's channel, then compares what its
// producers were told and what its subscriber got with the messages stored
// in the database of dbURL, and sums the ledgers.
func closeAndCheck(t *testing.T, ctx context.Context, base, dbURL string, ledgers []*ledger, subs []chan subResult) tally {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var total tally
	for i, l := range ledgers {
		var closed struct {
			LastSeq int64 `json:"last_seq"`
		}
		if err := json.Unmarshal(do(t, "POST", base+"/channels/"+l.id+"/close", "", http.StatusOK), &closed); err != nil {
			t.Fatal(err)
		}
		stored := storedMessages(t, ctx, conn, l.id)
		sub := <-subs[i]
		total.add(l.check(t, stored, closed.LastSeq, sub))
	}
	return total
}

// probeDuringOutage asks the store paths every 200 ms until the outage has
// lasted d and enough holds. With the database down or hung, create and
// list answer 503 with Retry-After, and readiness 503; with it slow they
// answer, at worst 503. No request hangs. It returns a summary of the
// answers and their slowest times.
func probeDuringOutage(t *testing.T, c *http.Client, base string, d time.Duration, down bool, enough func() bool) string {
	t.Helper()
	type probe struct{ method, path, body string }
	probes := []probe{
		{"POST", "/channels", `{"id":"probe-%d"}`},
		{"GET", "/channels", ""},
		{"GET", "/readyz", ""},
	}
	slowest := make([]time.Duration, len(probes))
	statuses := make([]map[int]int, len(probes))
	for i := range statuses {
		statuses[i] = make(map[int]int)
	}
	end := time.Now().Add(d)
	deadline := end.Add(2 * time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for n := 0; time.Now().Before(end) || !enough(); n++ {
		if time.Now().After(deadline) {
			t.Fatalf("the outage did not make every producer reach its bound within %v", deadline.Sub(end)+d)
		}
		<-tick.C // pacing the probes, not synchronisation
		for i, p := range probes {
			body := p.body
			if strings.Contains(body, "%d") {
				body = fmt.Sprintf(body, n)
			}
			a, err := ask(c, p.method, base+p.path, "application/json", body)
			if err != nil {
				t.Fatalf("%s %s during the outage: %v (a request hung or failed)", p.method, p.path, err)
			}
			slowest[i] = max(slowest[i], a.took)
			statuses[i][a.status]++
			if a.status == http.StatusServiceUnavailable && a.retryAfter == "" && p.path != "/readyz" {
				t.Errorf("%s %s during the outage: 503 without Retry-After", p.method, p.path)
			}
			if down && a.status != http.StatusServiceUnavailable {
				t.Errorf("%s %s with the database unreachable: %d %s, want 503", p.method, p.path, a.status, a.body)
			}
		}
	}
	if !down && statuses[0][http.StatusCreated] == 0 {
		t.Errorf("with the database slow but answering, no create succeeded: %v", statuses[0])
	}
	var parts []string
	for i, p := range probes {
		parts = append(parts, fmt.Sprintf("%s %s %v slowest %v", p.method, p.path, statuses[i], slowest[i].Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// ack is an acknowledged append.
type ack struct {
	data      string
	persisted bool // 200 to ?wait=persisted
}

// ledger records what one producer was told. Guarded by mu.
type ledger struct {
	id   string
	next atomic.Int64 // the last payload number taken

	mu        sync.Mutex
	acks      map[int64]ack
	persisted int                   // 200 to ?wait=persisted
	appended  int                   // 200 without wait
	timedOut  int                   // 504: accepted, not yet persisted
	refused   int                   // 503
	slowest   map[int]time.Duration // by status
	fails     []string
}

func (l *ledger) count(f func(*ledger) int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f(l)
}

func (l *ledger) acked() int { return l.count(func(l *ledger) int { return len(l.acks) }) }

// payload is the i-th message of channel id: varied lengths, non-ASCII
// text, tabs and newlines, so that byte-identity means something.
func payload(id string, i int) string {
	return fmt.Sprintf("%s #%d ü€😀\t%s\n", id, i, strings.Repeat("0123456789abcdef", 1+i%13))
}

// produce appends to l's channel every produceEvery until ctx ends, with
// ?wait=persisted if wait, and records each answer. Each channel has one
// producer of each kind, so that waits do not slow the other.
func (l *ledger) produce(ctx context.Context, c *http.Client, base string, wait bool) {
	tick := time.NewTicker(produceEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // pacing the load
		}
		u := base + "/channels/" + l.id + "/messages"
		if wait {
			u += "?wait=persisted"
		}
		data := payload(l.id, int(l.next.Add(1)))
		a, err := ask(c, "POST", u, "text/plain; charset=utf-8", data)
		l.record(data, wait, a, err)
	}
}

func (l *ledger) record(data string, wait bool, a answer, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fails = append(l.fails, fmt.Sprintf("append: %v (a request hung or failed)", err))
		return
	}
	var r struct{ Seq int64 }
	switch a.status {
	case http.StatusOK, http.StatusGatewayTimeout:
		if json.Unmarshal([]byte(a.body), &r) != nil || r.Seq <= 0 {
			l.fails = append(l.fails, fmt.Sprintf("append: %d without a seq: %s", a.status, a.body))
			return
		}
		if _, dup := l.acks[r.Seq]; dup {
			l.fails = append(l.fails, fmt.Sprintf("seq %d acknowledged twice", r.Seq))
		}
		l.acks[r.Seq] = ack{data: data, persisted: wait && a.status == http.StatusOK}
		switch {
		case a.status == http.StatusGatewayTimeout:
			l.timedOut++
		case wait:
			l.persisted++
		default:
			l.appended++
		}
	case http.StatusServiceUnavailable:
		l.refused++
		if a.retryAfter == "" {
			l.fails = append(l.fails, "append: 503 without Retry-After")
		}
	default:
		l.fails = append(l.fails, fmt.Sprintf("append: %d %s", a.status, a.body))
	}
	if l.slowest == nil {
		l.slowest = make(map[int]time.Duration)
	}
	l.slowest[a.status] = max(l.slowest[a.status], a.took.Round(time.Millisecond))
}

// tally sums the ledgers.
type tally struct {
	persisted, appended, timedOut, refused, stored, lost, resumes int
	slowest                                                       map[int]time.Duration // answers by status
}

func (t *tally) acked() int { return t.persisted + t.appended + t.timedOut }

func (t *tally) add(o tally) {
	t.persisted += o.persisted
	t.appended += o.appended
	t.timedOut += o.timedOut
	t.refused += o.refused
	t.stored += o.stored
	t.lost += o.lost
	t.resumes += o.resumes
	if t.slowest == nil {
		t.slowest = make(map[int]time.Duration)
	}
	for st, d := range o.slowest {
		t.slowest[st] = max(t.slowest[st], d)
	}
}

func (t tally) String() string {
	return fmt.Sprintf("acknowledged %d (persisted %d, appended %d, 504 %d), refused 503 %d, slowest answer by status %v, stored %d, lost %d, subscriber resumes %d",
		t.acked(), t.persisted, t.appended, t.timedOut, t.refused, t.slowest, t.stored, t.lost, t.resumes)
}

// check compares what l was told with the stored messages (seq → data),
// the channel's last seq and what its subscriber received.
func (l *ledger) check(t *testing.T, stored map[int64]string, lastSeq int64, sub subResult) tally {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.fails {
		t.Errorf("%s: %s", l.id, f)
	}
	got := tally{persisted: l.persisted, appended: l.appended, timedOut: l.timedOut, refused: l.refused,
		stored: len(stored), slowest: l.slowest, resumes: sub.resumes}
	for seq, a := range l.acks {
		d, ok := stored[seq]
		if !ok || d != a.data {
			got.lost++
			t.Errorf("%s: seq %d acknowledged (persisted %v) as %q, stored %q (present %v)", l.id, seq, a.persisted, a.data, d, ok)
		}
	}
	if int64(len(stored)) != lastSeq || int64(len(l.acks)) != lastSeq {
		t.Errorf("%s: closed at %d, %d stored, %d acknowledged: want all equal (contiguous, nothing unacknowledged)",
			l.id, lastSeq, len(stored), len(l.acks))
	}
	if sub.err != nil {
		t.Errorf("%s: subscriber: %v", l.id, sub.err)
	} else if len(sub.data) != len(stored) {
		t.Errorf("%s: subscriber got %d messages, %d stored", l.id, len(sub.data), len(stored))
	} else {
		for i, d := range sub.data {
			if stored[int64(i)+1] != d {
				t.Errorf("%s: subscriber got %q at seq %d, stored %q", l.id, d, i+1, stored[int64(i)+1])
				break
			}
		}
	}
	return got
}

// storedMessages reads channel id's messages straight from the database.
func storedMessages(t *testing.T, ctx context.Context, conn *pgx.Conn, id string) map[int64]string {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT seq, data FROM messages WHERE channel_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int64]string)
	var seq int64
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &data}, func() error {
		out[seq] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
