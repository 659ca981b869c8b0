package storetest

import (
	"errors"
	"testing"

	"github.com/messages-server/messages/persist"
)

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
