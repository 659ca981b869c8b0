package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/client"
)

// chaosDuration is how long TestClusterChaos injects faults: a short run
// in the normal suite, longer with MESSAGES_CHAOS_DURATION (e.g. 10m).
func chaosDuration(t *testing.T) time.Duration {
	v := os.Getenv("MESSAGES_CHAOS_DURATION")
	if v == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("MESSAGES_CHAOS_DURATION=%q: want a positive duration such as 10m", v)
	}
	return d
}

// chaosNode is one slot of the cluster under test: a node process, which
// a restart replaces, behind its own proxies to NATS and PostgreSQL, so
// that the test can cut it from either.
type chaosNode struct {
	nats, db       *persisttest.Proxy
	natsURL, dbURL string

	mu       sync.Mutex
	proc     *process // guarded by mu
	base     string   // guarded by mu
	restarts int      // guarded by mu
}

func (n *chaosNode) url() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.base
}

// start starts a node process in slot i; a restart is a new node id, as
// a restarted process gets by default.
func (n *chaosNode) start(t *testing.T, bin string, i int) {
	n.mu.Lock()
	id := fmt.Sprintf("node%d-%d", i+1, n.restarts)
	n.restarts++
	n.mu.Unlock()
	p, s := serveNode(t, bin, n.dbURL, n.natsURL, id)
	n.mu.Lock()
	n.proc, n.base = p, s.base
	n.mu.Unlock()
}

// chaos is the cluster under test and what its clients saw.
type chaos struct {
	t     *testing.T
	bin   string
	nodes []*chaosNode
	hc    *http.Client

	mu         sync.Mutex
	acked      map[string]map[int64]string // guarded by mu: channel, seq: payload of each 200
	produced   map[string][]string         // guarded by mu: stream: payloads acknowledged, in Producer-Seq order
	violations []string                    // guarded by mu
	faults     map[string]int              // guarded by mu
	// zombieFenced counts, by process, the batches of nodes continued
	// after SIGSTOP that were fenced; guarded by mu.
	zombieFenced map[int]float64

	appends, uncertain, retries, resets atomic.Int64
}

func (c *chaos) violation(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
}

// node returns the base URL of a node picked at random.
func (c *chaos) node() string { return c.nodes[rand.IntN(len(c.nodes))].url() }

// do sends a request and returns its status and body; status 0 for a
// request that failed (the node is down or stopped past the timeout).
func (c *chaos) do(ctx context.Context, method, u, body string, hdr map[string]string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterChaos runs three node processes on real PostgreSQL and NATS,
// with writers appending with ?wait=persisted, Durable Streams
// idempotent producers and WebSocket readers, all through nodes picked at
// random, while a node is SIGKILLed and restarted, SIGSTOPped past its
// lease and continued (a zombie owner that must be fenced), cut from
// NATS, and cut from the database. Then: every acknowledged append is
// stored at its acknowledged seq, seqs are contiguous, no payload is
// stored twice, each producer's appends are stored once each and in
// order, and every reader ended with exactly the stored history.
func TestClusterChaos(t *testing.T) {
	duration := chaosDuration(t)
	c := &chaos{t: t, bin: buildServer(t), hc: &http.Client{Timeout: 20 * time.Second},
		acked: make(map[string]map[int64]string), produced: make(map[string][]string), faults: make(map[string]int),
		zombieFenced: make(map[int]float64)}
	dbURL := persisttest.DatabaseURL(t)
	natsURL := startNATS(t)
	for i := range 3 {
		n := &chaosNode{}
		n.nats, n.natsURL = persisttest.NewProxy(t, natsURL)
		n.db, n.dbURL = persisttest.NewProxy(t, dbURL)
		n.start(t, c.bin, i)
		c.nodes = append(c.nodes, n)
	}
	setup, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	channels := []string{"c0", "c1", "c2", "c3"}
	streams := []string{"s0", "s1"}
	for i, id := range channels {
		if st, b := c.do(setup, "POST", c.nodes[i%3].url()+"/channels", `{"id":"`+id+`"}`, map[string]string{"Content-Type": "application/json"}); st != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, st, b)
		}
		c.acked[id] = make(map[int64]string)
	}
	for i, id := range streams {
		if st, b := c.do(setup, "PUT", c.nodes[i%3].url()+"/v1/stream/"+id, "", nil); st != http.StatusCreated {
			t.Fatalf("create stream %s: %d %s", id, st, b)
		}
	}

	// The clients run until writing ends; producers finish the append in
	// hand, and readers read to the end of their channel.
	writing, stopWriting := context.WithTimeout(t.Context(), duration+time.Minute)
	final, stopAll := context.WithTimeout(t.Context(), duration+4*time.Minute)
	defer stopAll()
	var writers, readers sync.WaitGroup
	for w := range 3 {
		writers.Go(func() { c.write(writing, w, channels) })
	}
	for p, id := range streams {
		writers.Go(func() { c.produce(writing, final, p, id) })
	}
	got := make([][]string, 3)
	for r := range got {
		readers.Go(func() { got[r] = c.read(final, channels[r]) })
	}

	c.inject(duration)
	stopWriting()
	writers.Wait()
	// Every node is back: end the read channels, so that the readers
	// finish.
	for _, id := range channels[:len(got)] {
		c.closeChannel(final, id)
	}
	readers.Wait()
	c.check(final, dbURL, channels, streams, got)
}

// inject runs the faults one after another, each on a node picked at
// random, for d, then heals everything.
func (c *chaos) inject(d time.Duration) {
	end := time.Now().Add(d)
	kinds := []string{"sigkill", "sigstop", "nats_cut", "db_drop"}
	for i := 0; time.Now().Before(end); i++ {
		kind := kinds[i%len(kinds)]
		slot := rand.IntN(len(c.nodes))
		n := c.nodes[slot]
		c.t.Logf("fault %d: %s on node slot %d", i+1, kind, slot+1)
		switch kind {
		case "sigkill":
			n.mu.Lock()
			p := n.proc
			n.mu.Unlock()
			_ = p.cmd.Process.Kill()
			<-p.exited
			n.start(c.t, c.bin, slot)
		case "sigstop":
			n.mu.Lock()
			pid := n.proc.cmd.Process.Pid
			n.mu.Unlock()
			_ = syscall.Kill(pid, syscall.SIGSTOP)
			pause(2500 * time.Millisecond) // past the 1s lease: the others take its channels
			_ = syscall.Kill(pid, syscall.SIGCONT)
			// The zombie learns it lost its channels: by a fenced batch,
			// or its next renewal.
			pause(2 * time.Second)
			c.mu.Lock()
			c.zombieFenced[pid] = c.metric(context.Background(), n.url(), `messages_persist_failed_batches_total{reason="fenced"}`)
			c.mu.Unlock()
		case "nats_cut":
			n.nats.Drop()
			pause(2500 * time.Millisecond)
			n.nats.Pass()
		case "db_drop":
			n.db.Drop()
			pause(1500 * time.Millisecond)
			n.db.Pass()
		}
		c.mu.Lock()
		c.faults[kind]++
		c.mu.Unlock()
		pause(2 * time.Second) // the cluster settles before the next fault
	}
}

// pause waits d: the length of a fault, which is the point of the test,
// not a way to synchronise with it.
func pause(d time.Duration) { <-time.After(d) }

// write appends unique payloads with ?wait=persisted to random channels
// through random nodes until ctx ends, and records what was acknowledged.
// A failed append is not retried (its outcome may be unknown): its
// payload must then be stored once or not at all.
func (c *chaos) write(ctx context.Context, w int, channels []string) {
	for i := 0; ctx.Err() == nil; i++ {
		id := channels[rand.IntN(len(channels))]
		payload := fmt.Sprintf("w%d-%d", w, i)
		st, body := c.do(ctx, "POST", c.node()+"/channels/"+id+"/messages?wait=persisted", payload, nil)
		c.appends.Add(1)
		if st != http.StatusOK {
			c.uncertain.Add(1)
			if st == 0 && ctx.Err() == nil {
				pause(20 * time.Millisecond) // a node is down: do not spin
			}
			continue
		}
		var seq int64
		if _, err := fmt.Sscanf(body, `{"seq":%d}`, &seq); err != nil {
			c.violation("append %s to %s: 200 with body %q", payload, id, body)
			continue
		}
		c.mu.Lock()
		if prev, ok := c.acked[id][seq]; ok {
			c.violations = append(c.violations, fmt.Sprintf("%s seq %d acknowledged twice: %s and %s", id, seq, prev, payload))
		}
		c.acked[id][seq] = payload
		c.mu.Unlock()
	}
}

// produce appends to stream id as an idempotent producer through random
// nodes: each Producer-Seq is retried, through any node, until it is
// acknowledged; a new one starts only while ctx lasts.
func (c *chaos) produce(ctx, final context.Context, p int, id string) {
	for seq := 0; ctx.Err() == nil; seq++ {
		payload := fmt.Sprintf("p%d-%d;", p, seq)
		hdr := map[string]string{"Producer-Id": "prod" + strconv.Itoa(p), "Producer-Epoch": "0",
			"Producer-Seq": strconv.Itoa(seq)}
		for attempt := 0; ; attempt++ {
			if final.Err() != nil {
				c.violation("producer %d: seq %d never acknowledged", p, seq)
				return
			}
			st, body := c.do(final, "POST", c.node()+"/v1/stream/"+id, payload, hdr)
			c.appends.Add(1)
			if st == http.StatusOK || st == http.StatusNoContent {
				c.mu.Lock()
				c.produced[id] = append(c.produced[id], payload)
				c.mu.Unlock()
				break
			}
			if st != 0 && st < 500 {
				c.violation("producer %d: seq %d refused: %d %s", p, seq, st, body)
				return
			}
			c.retries.Add(1)
			pause(50 * time.Millisecond)
		}
	}
}

// read reads channel id through random nodes, resuming on another node
// after every drop with the last seq and epoch it has, until the end of
// the channel; it returns what it ends with. What it saw past a reset's
// durable seq is dropped, as a client does.
func (c *chaos) read(ctx context.Context, id string) []string {
	var got []string
	epoch := ""
	for ctx.Err() == nil {
		sub, err := client.Subscribe(ctx, c.node(), id, client.Options{From: int64(len(got)), Epoch: epoch})
		if err != nil {
			pause(50 * time.Millisecond) // a node is down, or stopped
			continue
		}
		for err == nil {
			var ev client.Event
			ev, err = sub.Next(ctx)
			if err != nil {
				break
			}
			epoch = sub.Epoch()
			switch ev.Kind {
			case client.EventMessage:
				if ev.Seq != int64(len(got))+1 {
					c.violation("reader of %s: seq %d after %d messages", id, ev.Seq, len(got))
					_ = sub.Close()
					return got
				}
				got = append(got, ev.Data)
			case client.EventEnd:
				_ = sub.Close()
				return got
			}
		}
		_ = sub.Close()
		if se, ok := errors.AsType[*client.ServerError](err); ok && errors.Is(err, client.ErrReset) {
			c.resets.Add(1)
			got, epoch = got[:min(int(se.LastSeq), len(got))], ""
		}
	}
	c.violation("reader of %s: no end after %d messages: %v", id, len(got), ctx.Err())
	return got
}

// closeChannel closes channel id through random nodes until one answers.
func (c *chaos) closeChannel(ctx context.Context, id string) {
	for ctx.Err() == nil {
		st, body := c.do(ctx, "POST", c.node()+"/channels/"+id+"/close", "", nil)
		switch {
		case st == http.StatusOK:
			return
		case st != 0 && st < 500:
			c.violation("close %s: %d %s", id, st, body)
			return
		}
		pause(50 * time.Millisecond)
	}
	c.violation("close %s: no node closed it", id)
}

// metric returns the value of the series name (with its labels) on the
// node at base, 0 if it has none or does not answer.
func (c *chaos) metric(ctx context.Context, base, name string) float64 {
	st, body := c.do(ctx, "GET", base+"/metrics", "", nil)
	if st != http.StatusOK {
		c.t.Logf("GET %s/metrics: %d", base, st) // only reported
		return 0
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// check compares what the clients were told with what is stored.
func (c *chaos) check(ctx context.Context, dbURL string, channels, streams []string, got [][]string) {
	t := c.t
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	stored := func(id string) []string {
		rows, err := conn.Query(ctx, `SELECT seq, data FROM messages WHERE channel_id = $1 ORDER BY seq`, id)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		var seq int64
		var data []byte
		_, err = pgx.ForEachRow(rows, []any{&seq, &data}, func() error {
			if seq != int64(len(out))+1 {
				c.violation("%s: stored seq %d after %d messages", id, seq, len(out))
			}
			out = append(out, string(data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for i, id := range channels {
		history := stored(id)
		seen := make(map[string]int64, len(history))
		for j, data := range history {
			if prev, ok := seen[data]; ok {
				c.violations = append(c.violations, fmt.Sprintf("%s: %q stored twice, at %d and %d", id, data, prev, j+1))
			}
			seen[data] = int64(j + 1)
		}
		for seq, payload := range c.acked[id] {
			if seq > int64(len(history)) || history[seq-1] != payload {
				c.violations = append(c.violations, fmt.Sprintf("%s: %q acknowledged at seq %d, stored at %d", id, payload, seq, seen[payload]))
			}
		}
		total += len(c.acked[id])
		if i < len(got) && strings.Join(got[i], "\n") != strings.Join(history, "\n") {
			c.violations = append(c.violations, fmt.Sprintf("reader of %s ended with %d messages, not the %d stored", id, len(got[i]), len(history)))
		}
	}
	for _, id := range streams {
		history := strings.Join(stored(id), "")
		want := strings.Join(c.produced[id], "")
		if history != want {
			c.violations = append(c.violations, fmt.Sprintf("stream %s: stored %q, the producer's acknowledged appends are %q", id, history, want))
		}
		total += len(c.produced[id])
	}
	var fenced, takeovers, zombies float64
	for _, f := range c.zombieFenced {
		zombies += f
	}
	for _, n := range c.nodes {
		fenced += c.metric(ctx, n.url(), "messages_fenced_channels_total")
		takeovers += c.metric(ctx, n.url(), "messages_cluster_takeovers_total")
	}
	t.Logf("nodes now running: %v channel actors fenced, %v take-overs; batches of continued zombies fenced: %v",
		fenced, takeovers, zombies)
	t.Logf("faults %v; %d appends sent (%d failed or uncertain, %d producer retries), %d acknowledged; %d resets seen by readers; %d violations",
		c.faults, c.appends.Load(), c.uncertain.Load(), c.retries.Load(), total, c.resets.Load(), len(c.violations))
	for _, v := range c.violations {
		t.Error(v)
	}
}
