package hub

import (
	"sync"

	"github.com/messages-server/messages/ws/wire"
)

// liveQueueMin is the room a parking subscriber's live queue starts with
// once a message comes: enough for the usual one or two between two
// writes, doubled on demand up to the configured length.
const liveQueueMin = 4

// liveQueue is a parking subscriber's queue of live messages (see
// Hub.StreamParked): the actor pushes, the stream's goroutine pops. It
// refuses a message once it holds max, as a full channel of capacity max
// would, and the actor then detaches the subscriber. Unlike a channel it
// takes room only as messages come (liveQueueMin entries, doubled up to
// max), and gives it back when the stream parks with nothing queued: an
// idle subscriber holds no queue. Safe for one pusher and one popper at a
// time.
type liveQueue struct {
	mu     sync.Mutex
	ring   []*wire.Message // the room; nil while nothing was pushed since release
	head   int             // index in ring of the first message
	n      int             // messages queued
	max    int             // the most it holds
	closed bool            // no more pushes: the consumer reads why after the last pop
}

// push queues m; it reports false, queuing nothing, if max messages are
// queued already. Pushing on a closed queue is a bug.
func (q *liveQueue) push(m *wire.Message) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.ring) {
		if q.n >= q.max {
			return false
		}
		q.grow()
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = m
	q.n++
	return true
}

// grow doubles the room of a full queue, up to max, keeping the order.
func (q *liveQueue) grow() {
	ring := make([]*wire.Message, min(max(2*len(q.ring), liveQueueMin), q.max))
	k := copy(ring, q.ring[q.head:])
	copy(ring[k:], q.ring[:q.head])
	q.ring, q.head = ring, 0
}

// pop takes the first message queued. With none, m is nil and closed
// reports whether the queue was closed: nothing more will come.
func (q *liveQueue) pop() (m *wire.Message, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return nil, q.closed
	}
	m = q.ring[q.head]
	q.ring[q.head] = nil
	q.n--
	if q.head++; q.head == len(q.ring) || q.n == 0 {
		q.head = 0
	}
	return m, false
}

// close marks the end of the queue: what is queued can still be popped.
func (q *liveQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// release gives the room back if nothing is queued: the next push starts
// again from liveQueueMin.
func (q *liveQueue) release() {
	q.mu.Lock()
	if q.n == 0 {
		q.ring, q.head = nil, 0
	}
	q.mu.Unlock()
}

// subscriber is one consumer's registration with a channel actor. Only the
// actor pushes on its queue and closes it; it sets reason and endSeq
// before closing, and the consumer reads them after seeing the queue
// closed. The queue is live for a parking stream (park not nil), which
// holds room only while messages wait, else the channel queue, which
// Registration.Queue hands out.
type subscriber struct {
	queue  chan *wire.Message // nil for a parking stream
	live   liveQueue          // a parking stream's queue
	reason int
	endSeq int64
	park   *parking // notified after each push and the close; nil: none
}

// push queues m for the subscriber without blocking, and wakes a parking
// stream; false if the queue is full.
func (s *subscriber) push(m *wire.Message) bool {
	if s.park == nil {
		select {
		case s.queue <- m:
			return true
		default:
			return false
		}
	}
	if !s.live.push(m) {
		return false
	}
	s.park.notify()
	return true
}

// closeQueue closes the subscriber's queue and wakes a parking stream.
func (s *subscriber) closeQueue() {
	if s.park == nil {
		close(s.queue)
		return
	}
	s.live.close()
	s.park.notify()
}

// tryPop takes the next queued message without waiting: m is nil if none
// is queued, and closed then reports whether the queue was closed.
func (s *subscriber) tryPop() (m *wire.Message, closed bool) {
	if s.park != nil {
		return s.live.pop()
	}
	select {
	case m, ok := <-s.queue:
		return m, !ok
	default:
		return nil, false
	}
}
