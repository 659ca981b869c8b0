package storetest

// The part of the contract about writes: batches, closed channels,
// fencing, nil data, large transactions and the Writer's ordering.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
)

func testWriteBatches(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "x", "y", "bin")
	batches := []*persist.Batch{
		{Channel: "x", Messages: msgs("x", 1, 10)},
		{Channel: "y", Messages: msgs("y", 1, 3)},
	}
	for range 2 { // the second time is a retry after an unknown outcome
		if err := s.WriteBatches(ctx, batches); err != nil {
			t.Fatalf("WriteBatches: %v", err)
		}
		checkMessages(t, s, "x", 10)
		checkMessages(t, s, "y", 3)
	}
	// A retry that overlaps what is stored stores the rest.
	write(t, s, "x", 8, 12, false)
	checkMessages(t, s, "x", 12)
	// A late retry of an old batch does not move last_seq back.
	write(t, s, "x", 1, 10, false)
	checkMessages(t, s, "x", 12)
	// Two batches of one channel in one call.
	err := s.WriteBatches(ctx, []*persist.Batch{
		{Channel: "y", Messages: msgs("y", 4, 5)},
		{Channel: "y", Messages: msgs("y", 6, 6)},
	})
	if err != nil {
		t.Fatalf("WriteBatches(two batches of y): %v", err)
	}
	checkMessages(t, s, "y", 6)

	// A batch of an unknown channel fails the whole transaction.
	err = s.WriteBatches(ctx, []*persist.Batch{
		{Channel: "x", Messages: msgs("x", 13, 13)},
		{Channel: "absent", Messages: msgs("absent", 1, 1)},
	})
	if !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("WriteBatches(unknown channel) error = %v, want ErrNotFound", err)
	}
	checkChannelError(t, err, map[string]error{"absent": persist.ErrNotFound})
	checkMessages(t, s, "x", 12)
	if got, _ := s.Messages(ctx, "absent", 0, 10); len(got) != 0 {
		t.Fatalf("messages of an unknown channel were stored: %v", got)
	}
	if err := s.WriteBatches(ctx, nil); err != nil {
		t.Fatalf("WriteBatches(nil): %v", err)
	}

	// Bodies are stored byte for byte: empty, multi-byte, NUL, large.
	bodies := [][]byte{{}, []byte("héllo, 世界 🙂"), []byte("a\x00b\n"), bytes.Repeat([]byte("0123456789abcdef"), 4096)}
	var ms []persist.Message
	for i, b := range bodies {
		ms = append(ms, persist.Message{Seq: int64(i) + 1, Time: at.UnixMicro(), Data: b})
	}
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "bin", Messages: ms}}); err != nil {
		t.Fatalf("WriteBatches(bin): %v", err)
	}
	got, err := s.Messages(ctx, "bin", 0, 10)
	if err != nil || len(got) != len(bodies) {
		t.Fatalf("Messages(bin) = %d messages, %v; want %d", len(got), err, len(bodies))
	}
	for i, m := range got {
		if !bytes.Equal(m.Data, bodies[i]) || m.Data == nil {
			t.Fatalf("Messages(bin)[%d] = %q (nil %v), want %q", i, m.Data, m.Data == nil, bodies[i])
		}
	}
}

// checkChannelError fails t unless err is a *persist.ChannelError that
// names exactly the channels of want, each with an error wrapping want's.
func checkChannelError(t testing.TB, err error, want map[string]error) {
	t.Helper()
	ce, ok := errors.AsType[*persist.ChannelError](err)
	if !ok {
		t.Fatalf("error %v (%T), want a *persist.ChannelError", err, err)
	}
	if len(ce.Channels) != len(want) {
		t.Fatalf("ChannelError names %d channels (%v), want %d", len(ce.Channels), ce, len(want))
	}
	for id, w := range want {
		if got := ce.Channels[id]; !errors.Is(got, w) {
			t.Fatalf("ChannelError for %q = %v, want %v (all: %v)", id, got, w, ce)
		}
	}
}

// testClosedChannel checks that a closed channel takes no new message,
// while a retry of what it stored, or of its close, still passes.
func testClosedChannel(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "shut", "empty", "open")
	write(t, s, "shut", 1, 3, true)
	write(t, s, "empty", 1, 0, true) // closed with no message
	closedAt := func(id string) time.Time {
		t.Helper()
		c, err := s.Channel(ctx, id)
		if err != nil || c.Open() {
			t.Fatalf("Channel(%s) = %+v, %v; want closed", id, c, err)
		}
		return c.ClosedAt
	}
	shutAt := closedAt("shut")

	for _, tc := range []struct {
		name    string
		batches []*persist.Batch
	}{
		{"append", []*persist.Batch{{Channel: "shut", Messages: msgs("shut", 4, 4)}}},
		{"append and close", []*persist.Batch{{Channel: "shut", Messages: msgs("shut", 4, 5), Close: true}}},
		{"retry overlapping new", []*persist.Batch{{Channel: "shut", Messages: msgs("shut", 3, 4)}}},
		{"append to the empty one", []*persist.Batch{{Channel: "empty", Messages: msgs("empty", 1, 1)}}},
	} {
		err := s.WriteBatches(ctx, tc.batches)
		if !errors.Is(err, persist.ErrChannelClosed) {
			t.Fatalf("%s: WriteBatches = %v, want ErrChannelClosed", tc.name, err)
		}
		checkChannelError(t, err, map[string]error{tc.batches[0].Channel: persist.ErrChannelClosed})
	}
	checkMessages(t, s, "shut", 3)
	checkMessages(t, s, "empty", 0)

	// Grouped with an open channel and an unknown one: each named with its
	// reason, and nothing of the transaction is stored.
	err := s.WriteBatches(ctx, []*persist.Batch{
		{Channel: "open", Messages: msgs("open", 1, 2)},
		{Channel: "shut", Messages: msgs("shut", 4, 4)},
		{Channel: "absent", Messages: msgs("absent", 1, 1)},
	})
	checkChannelError(t, err, map[string]error{"shut": persist.ErrChannelClosed, "absent": persist.ErrNotFound})
	checkMessages(t, s, "open", 0)
	// Without them it passes.
	write(t, s, "open", 1, 2, false)
	checkMessages(t, s, "open", 2)

	// A retry of the closing batch (its commit's outcome was not known),
	// or a close alone, changes nothing and is no error.
	write(t, s, "shut", 1, 3, true)
	write(t, s, "shut", 4, 3, true)
	write(t, s, "empty", 1, 0, true)
	checkMessages(t, s, "shut", 3)
	if at := closedAt("shut"); !at.Equal(shutAt) {
		t.Fatalf("closed_at moved from %v to %v", shutAt, at)
	}
	closedAt("empty")
}

// testFencing checks that a batch written for an epoch the channel has
// left fails as a whole with ErrFenced and stores nothing, while the
// batches of other channels in the same call can be written without it,
// and a batch with Epoch 0 is not fenced.
func testFencing(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "f", "other")
	fenced := func(id string, from, to, epoch int64) *persist.Batch {
		return &persist.Batch{Channel: id, Messages: msgs(id, from, to), Epoch: epoch}
	}
	if err := s.WriteBatches(ctx, []*persist.Batch{fenced("f", 1, 3, 1)}); err != nil {
		t.Fatalf("WriteBatches at the current epoch: %v", err)
	}
	c, err := s.OpenEpoch(ctx, "f")
	if err != nil || c.Epoch != 2 || c.Owner != "" || !c.LeaseExpires.IsZero() {
		t.Fatalf("OpenEpoch = %+v, %v; want epoch 2 and no owner", c, err)
	}

	// The old epoch's next batch, with another channel's: the fenced one
	// is named, nothing of the call is stored.
	err = s.WriteBatches(ctx, []*persist.Batch{fenced("f", 4, 6, 1), fenced("other", 1, 2, 1)})
	if !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("WriteBatches of the old epoch: %v, want ErrFenced", err)
	}
	checkChannelError(t, err, map[string]error{"f": persist.ErrFenced})
	checkMessages(t, s, "f", 3)
	checkMessages(t, s, "other", 0)
	// A fenced close does not close the channel either.
	err = s.WriteBatches(ctx, []*persist.Batch{{Channel: "f", Close: true, Epoch: 1}})
	checkChannelError(t, err, map[string]error{"f": persist.ErrFenced})
	if c, err := s.Channel(ctx, "f"); err != nil || !c.Open() || c.Epoch != 2 {
		t.Fatalf("Channel after a fenced close = %+v, %v", c, err)
	}

	// The new epoch writes, and so does a batch that names no epoch.
	if err := s.WriteBatches(ctx, []*persist.Batch{fenced("f", 4, 5, 2), fenced("other", 1, 2, 1)}); err != nil {
		t.Fatalf("WriteBatches at the new epoch: %v", err)
	}
	write(t, s, "f", 6, 6, false)
	checkMessages(t, s, "f", 6)
	checkMessages(t, s, "other", 2)

	// A Writer gives the fenced batch up with ErrFenced and commits the
	// other one it was grouped with.
	w := persist.NewWriter(s, persist.WriterConfig{})
	errs := make(chan error, 2)
	done := func(err error) { errs <- err }
	b1, b2 := fenced("f", 7, 8, 1), fenced("other", 3, 3, 1)
	b1.Done, b2.Done = done, done
	if !w.TryEnqueue(b1) || !w.TryEnqueue(b2) {
		t.Fatal("TryEnqueue refused")
	}
	var got []error
	for range 2 {
		got = append(got, <-errs)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(got); n != 2 || (got[0] == nil) == (got[1] == nil) {
		t.Fatalf("Done errors %v: want one nil and one ErrFenced", got)
	}
	for _, err := range got {
		if err != nil && !errors.Is(err, persist.ErrFenced) {
			t.Fatalf("Done error %v, want ErrFenced", err)
		}
	}
	checkMessages(t, s, "f", 6)
	checkMessages(t, s, "other", 3)
}

// testNilData checks that a message with nil Data is stored as an empty
// body on every backend.
func testNilData(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "nil")
	ms := []persist.Message{
		{Seq: 1, Time: at.UnixMicro(), Data: nil},
		{Seq: 2, Time: at.UnixMicro(), Data: []byte{}},
		{Seq: 3, Time: at.UnixMicro(), Data: []byte("x")},
	}
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "nil", Messages: ms}}); err != nil {
		t.Fatalf("WriteBatches(nil data): %v", err)
	}
	got, err := s.Messages(ctx, "nil", 0, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("Messages(nil) = %d messages, %v; want 3", len(got), err)
	}
	for i, want := range []string{"", "", "x"} {
		if got[i].Data == nil || string(got[i].Data) != want {
			t.Fatalf("message %d = %q (nil %v), want %q", i+1, got[i].Data, got[i].Data == nil, want)
		}
	}
}

// testLargeTransactions writes transactions of many channels and many
// rows, as a busy server's Writer does.
func testLargeTransactions(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	const channels = 300
	ids := make([]string, channels)
	for i := range ids {
		ids[i] = fmt.Sprintf("big-%03d", i)
	}
	create(t, s, ids...)
	lasts := make([]int64, channels)
	batches := func(round int) []*persist.Batch {
		var bs []*persist.Batch
		for i, id := range ids {
			n := int64(1 + (i+round)%3)
			if i == 7 {
				n = 1000 // one long stream among many short ones
			}
			bs = append(bs, &persist.Batch{Channel: id, Messages: msgs(id, lasts[i]+1, lasts[i]+n), Close: round == 2 && i%2 == 0})
			lasts[i] += n
		}
		return bs
	}
	for round := range 3 {
		bs := batches(round)
		if err := s.WriteBatches(ctx, bs); err != nil {
			t.Fatalf("round %d: WriteBatches(%d channels): %v", round, channels, err)
		}
		// A retry of the whole transaction changes nothing.
		if err := s.WriteBatches(ctx, bs); err != nil {
			t.Fatalf("round %d: retry: %v", round, err)
		}
	}
	for i, id := range ids {
		checkMessages(t, s, id, lasts[i])
		if c, _ := s.Channel(ctx, id); c.Open() != (i%2 == 1) {
			t.Fatalf("%s: open %v after round 2", id, c.Open())
		}
	}
	// One unknown channel among hundreds fails all of them.
	saved := slices.Clone(lasts)
	bs := batches(3)
	bs = append(bs[:150], append([]*persist.Batch{{Channel: "absent", Messages: msgs("absent", 1, 1)}}, bs[150:]...)...)
	if err := s.WriteBatches(ctx, bs); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("WriteBatches with an unknown channel: error = %v, want ErrNotFound", err)
	}
	for i, id := range ids {
		checkMessages(t, s, id, saved[i])
	}
}

func testAppendBatchesInOrder(t *testing.T, s *persist.Store) {
	w := persist.NewWriter(s, persist.WriterConfig{Workers: 4, MaxRows: 50})
	defer closeWriter(t, w)
	const channels, batches = 24, 12
	lasts := make([]int64, channels)
	var wg sync.WaitGroup
	for c := range channels {
		id := fmt.Sprintf("order-%d", c)
		create(t, s, id)
		wg.Go(func() {
			// One batch in flight per channel, as the hub does.
			var seq int64
			for i := range batches {
				n := int64(1 + (c+i)%7)
				b := &persist.Batch{Channel: id, Messages: msgs(id, seq+1, seq+n), Close: i == batches-1}
				done := make(chan error, 1)
				b.Done = func(err error) { done <- err }
				if !w.TryEnqueue(b) {
					t.Errorf("%s: TryEnqueue refused with a nearly empty queue", id)
					return
				}
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s batch %d: %v", id, i, err)
						return
					}
				case <-time.After(waitTimeout):
					t.Errorf("%s batch %d: not committed in time", id, i)
					return
				}
				seq += n
			}
			lasts[c] = seq
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for c := range channels {
		id := fmt.Sprintf("order-%d", c)
		checkMessages(t, s, id, lasts[c])
		if ch, _ := s.Channel(t.Context(), id); ch.Open() {
			t.Fatalf("%s still open after its closing batch", id)
		}
	}
}

// closeWriter closes w, failing t on error or timeout.
func closeWriter(t testing.TB, w *persist.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Errorf("Writer.Close: %v", err)
	}
}
