package hub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wire"
)

// room returns the number of messages q has room for without growing.
func (q *liveQueue) room() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ring)
}

// TestLiveQueueGrows: a live queue holds no room until a message comes,
// grows by doubling up to its max keeping the order (also across the end
// of its ring), refuses a message past max, and gives its room back when
// released empty.
func TestLiveQueueGrows(t *testing.T) {
	q := &liveQueue{max: 24}
	if r := q.room(); r != 0 {
		t.Fatalf("room %d before any push, want 0", r)
	}
	msg := func(seq int64) *wire.Message { return &wire.Message{Seq: seq} }
	var pushed, popped int64
	push := func(k int) {
		t.Helper()
		for range k {
			pushed++
			if !q.push(msg(pushed)) {
				t.Fatalf("push of %d refused with %d queued", pushed, pushed-popped-1)
			}
		}
	}
	pop := func(k int) {
		t.Helper()
		for range k {
			m, closed := q.pop()
			if m == nil || closed {
				t.Fatalf("pop: %v, closed %v; want %d", m, closed, popped+1)
			}
			if popped++; m.Seq != popped {
				t.Fatalf("popped %d, want %d", m.Seq, popped)
			}
		}
	}
	push(3)
	if r := q.room(); r != liveQueueMin {
		t.Fatalf("room %d after 3 pushes, want %d", r, liveQueueMin)
	}
	// Move the head along, so that the ring wraps before it grows.
	pop(2)
	push(3)
	if r := q.room(); r != liveQueueMin {
		t.Fatalf("room %d with 4 queued, want %d", r, liveQueueMin)
	}
	push(1) // full with the head mid-ring: grows
	if r := q.room(); r != 2*liveQueueMin {
		t.Fatalf("room %d with 5 queued, want %d", r, 2*liveQueueMin)
	}
	push(24 - 5) // up to max: 8, 16, then 24 rather than 32
	if r := q.room(); r != 24 {
		t.Fatalf("room %d with 24 queued, want the max, 24", r)
	}
	if q.push(msg(pushed + 1)) {
		t.Fatal("a push past max was queued")
	}
	pop(24)
	if m, closed := q.pop(); m != nil || closed {
		t.Fatalf("pop of an empty open queue: %v, closed %v", m, closed)
	}
	q.release()
	if r := q.room(); r != 0 {
		t.Fatalf("room %d after release, want 0", r)
	}
	push(2)
	q.release() // not empty: keeps its room and messages
	q.close()
	pop(2)
	if m, closed := q.pop(); m != nil || !closed {
		t.Fatalf("pop of a closed drained queue: %v, closed %v", m, closed)
	}
}

// blockingSink is a Sink whose Messages waits for gate the first time,
// recording the seqs it got; all is closed once it has want of them.
type blockingSink struct {
	mu      sync.Mutex
	seqs    []int64
	data    []string
	want    int
	all     chan struct{}
	live    chan struct{}
	entered chan struct{} // gets a value when Messages starts waiting
	gate    chan struct{}
	block   bool
}

func (s *blockingSink) Hello(HelloInfo) error { return nil }
func (s *blockingSink) Page(*Page) error      { return fmt.Errorf("no history page expected") }
func (s *blockingSink) End(int64) error       { return nil }
func (s *blockingSink) Live(int64) error      { close(s.live); return nil }

func (s *blockingSink) Messages(msgs []*wire.Message, _ bool) error {
	s.mu.Lock()
	block := s.block
	s.block = false
	for _, m := range msgs {
		for i := range m.Len() {
			s.seqs = append(s.seqs, m.Seq+int64(i))
		}
		s.data = append(s.data, string(m.Data))
	}
	if len(s.seqs) >= s.want && s.all != nil {
		close(s.all)
		s.all = nil
	}
	s.mu.Unlock()
	if block {
		s.entered <- struct{}{}
		<-s.gate
	}
	return nil
}

// TestParkedQueueLen: a parking stream's live queue, which starts small,
// still takes exactly QueueLen messages while its stream is busy writing:
// one more detaches the subscriber, which catches up from history and
// gets every message once, in order.
func TestParkedQueueLen(t *testing.T) {
	const queueLen = 10
	h, _, _ := newTestHub(t, Config{QueueLen: queueLen})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := h.Create(ctx, "q", nil, 0); err != nil {
		t.Fatal(err)
	}
	const want = 2 + queueLen
	all := make(chan struct{})
	s := &blockingSink{want: want, all: all, live: make(chan struct{}), entered: make(chan struct{}, 1),
		gate: make(chan struct{}), block: true}
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	h.StreamParked(sctx, "q", 0, "", s, nil, func(err error) { done <- err })
	select {
	case <-s.live:
	case <-ctx.Done():
		t.Fatal("the stream did not go live")
	}
	appendN := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if _, err := h.Append(ctx, "q", []byte(fmt.Sprintf("m%d\n", i)), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(1, 1)
	select {
	case <-s.entered: // the stream is writing message 1
	case <-ctx.Done():
		t.Fatal("the first message was not written")
	}
	appendN(2, 1+queueLen) // queued while the stream writes: the queue grows to hold them
	if n := value(h.metrics.resyncs); n != 0 {
		t.Fatalf("%v resyncs with %d messages queued, want 0", n, queueLen)
	}
	appendN(2+queueLen, 2+queueLen) // one past QueueLen
	if n := value(h.metrics.resyncs); n != 1 {
		t.Fatalf("%v resyncs with one message past QueueLen, want 1", n)
	}
	close(s.gate)
	select {
	case <-all:
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Fatalf("got %d messages, want %d", len(s.seqs), want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seqs) != want {
		t.Fatalf("seqs %v: want 1..%d", s.seqs, want)
	}
	for i, seq := range s.seqs {
		if seq != int64(i)+1 {
			t.Fatalf("seqs %v: not 1..%d in order", s.seqs, want)
		}
	}
	if got := strings.Join(s.data, ""); !strings.HasPrefix(got, "m1\nm2\n") || !strings.HasSuffix(got, fmt.Sprintf("m%d\n", want)) {
		t.Fatalf("data %q", got)
	}
}
