package hub

import (
	"container/heap"
	"sync"
	"time"
)

// wheelSlot is the resolution of the hub's timer wheel: a generator line
// is appended at most this late, and a flush comes at most this early.
const wheelSlot = 5 * time.Millisecond

// wheel is the hub's one timer for all its actors: generator lines that
// are due and buffers that are due for a flush. An actor asks to be woken
// at a time with at; the wheel's goroutine, run, wakes every actor of a
// slot that has come with a non-blocking send on the actor's wake channel,
// and the actor checks what is due (see channel.onWake). A timer and a
// goroutine per channel cost more in scheduling than the work they time:
// with one wheel, the lines due on 10,000 channels cost one timer.
//
// Stale wake-ups are harmless: the actor looks at its own due ticks and
// ignores a wake-up for which nothing is due. A wheel is safe for
// concurrent use; its zero value is not usable (see newWheel).
type wheel struct {
	slot  time.Duration
	epoch time.Time // tick 0
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once // closes quit

	mu    sync.Mutex
	slots map[int64][]*channel // guarded by mu: actors to wake, by tick
	ticks tickHeap             // guarded by mu: the keys of slots, smallest first
}

func newWheel(slot time.Duration) *wheel {
	w := &wheel{
		slot:  slot,
		epoch: time.Now(),
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		slots: make(map[int64][]*channel),
	}
	go w.run()
	return w
}

// tick returns the tick of t, rounded down.
func (w *wheel) tick(t time.Time) int64 { return int64(t.Sub(w.epoch) / w.slot) }

// ceilTick returns the first tick at or after t.
func (w *wheel) ceilTick(t time.Time) int64 {
	d := t.Sub(w.epoch)
	k := int64(d / w.slot)
	if time.Duration(k)*w.slot < d {
		k++
	}
	return k
}

// now returns the tick that has come.
func (w *wheel) now() int64 { return w.tick(time.Now()) }

// at has c woken at tick k, or at the next run of the wheel if k has come.
func (w *wheel) at(c *channel, k int64) {
	w.mu.Lock()
	s, ok := w.slots[k]
	if !ok {
		heap.Push(&w.ticks, k)
	}
	w.slots[k] = append(s, c)
	first := w.ticks[0] == k
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// run wakes the actors of each slot that has come, then sleeps until the
// next one, or until at adds an earlier one. An empty wheel sleeps.
func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []*channel
	for {
		now := w.now()
		w.mu.Lock()
		for len(w.ticks) > 0 && w.ticks[0] <= now {
			k := heap.Pop(&w.ticks).(int64)
			due = append(due, w.slots[k]...)
			delete(w.slots, k)
		}
		next := int64(-1)
		if len(w.ticks) > 0 {
			next = w.ticks[0]
		}
		w.mu.Unlock()
		for i, c := range due {
			select {
			case c.wake <- struct{}{}:
			default: // a wake-up is pending already
			}
			due[i] = nil
		}
		due = due[:0]
		var timer <-chan time.Time
		if next >= 0 {
			t.Reset(time.Until(w.epoch.Add(time.Duration(next) * w.slot)))
			timer = t.C
		}
		select {
		case <-timer:
		case <-w.wake:
			t.Stop()
		case <-w.quit:
			return
		}
	}
}

// stop ends run and waits for it.
func (w *wheel) stop() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

// tickHeap is a min-heap of ticks.
type tickHeap []int64

func (h tickHeap) Len() int           { return len(h) }
func (h tickHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h tickHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tickHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *tickHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
