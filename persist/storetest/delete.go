package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
)

// testDeleteChannel deletes a channel with history and epochs: nothing of
// it is left, its neighbour is untouched, its batches are refused, and the
// id comes back as a new channel above every epoch the old one had.
func testDeleteChannel(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "d", "n")
	write(t, s, "d", 1, 5, false)
	write(t, s, "n", 1, 3, false)
	for range 2 {
		if _, err := s.OpenEpoch(ctx, "d"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteChannel(ctx, "d"); err != nil {
		t.Fatalf("DeleteChannel: %v", err)
	}
	if _, err := s.Channel(ctx, "d"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("Channel after delete: %v, want ErrNotFound", err)
	}
	if ms, err := s.Messages(ctx, "d", 0, 100); err != nil || len(ms) != 0 {
		t.Fatalf("Messages after delete = %d messages, %v; want none", len(ms), err)
	}
	if _, err := s.Survived(ctx, "d", 3); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("Survived after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteChannel(ctx, "d"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("second DeleteChannel: %v, want ErrNotFound", err)
	}
	b := &persist.Batch{Channel: "d", Messages: msgs("d", 6, 6)}
	checkChannelError(t, s.WriteBatches(ctx, []*persist.Batch{b}), map[string]error{"d": persist.ErrNotFound})
	checkMessages(t, s, "n", 3)

	// Created again: a new channel, with no history, above epoch 3.
	c, err := s.CreateChannel(ctx, "d", nil)
	if err != nil {
		t.Fatalf("CreateChannel after delete: %v", err)
	}
	if c.Epoch <= 3 || c.LastSeq != 0 || !c.Open() {
		t.Fatalf("re-created channel = %+v, want a new open channel above epoch 3", c)
	}
	if ms, err := s.Messages(ctx, "d", 0, 100); err != nil || len(ms) != 0 {
		t.Fatalf("Messages of the re-created channel = %d messages, %v; want none", len(ms), err)
	}
	// A client of the old channel resuming with its epoch finds that
	// nothing it had survived.
	for _, old := range []int64{1, 3} {
		if got, err := s.Survived(ctx, "d", old); err != nil || got != 0 {
			t.Fatalf("Survived(d, %d) = %d, %v; want 0", old, got, err)
		}
	}
	write(t, s, "d", 1, 2, false)
	checkMessages(t, s, "d", 2)
	// So is any channel created after a delete.
	if c, err := s.CreateChannel(ctx, "fresh", nil); err != nil || c.Epoch <= 3 {
		t.Fatalf("CreateChannel(fresh) = %+v, %v; want an epoch above 3", c, err)
	}
}

// testDeleteClosedBefore deletes closed channels by batch, those closed
// first first, and leaves open and recently closed channels alone.
func testDeleteClosedBefore(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "c1", "c2", "c3", "c4", "open")
	for _, id := range []string{"c1", "c2", "c3"} {
		write(t, s, id, 1, 4, true) // one transaction each: closed in this order
	}
	write(t, s, "open", 1, 2, false)
	cutoff := time.Now()
	write(t, s, "c4", 1, 1, true) // closed at or after the cutoff

	if ids, err := s.DeleteClosedBefore(ctx, cutoff, 0); err != nil || len(ids) != 0 {
		t.Fatalf("DeleteClosedBefore(limit 0) = %v, %v; want nothing", ids, err)
	}
	ids, err := s.DeleteClosedBefore(ctx, cutoff, 2)
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"c1", "c2"}) {
		t.Fatalf("first batch = %v, %v; want [c1 c2]", ids, err)
	}
	if ids, err = s.DeleteClosedBefore(ctx, cutoff, 2); err != nil || !slices.Equal(ids, []string{"c3"}) {
		t.Fatalf("second batch = %v, %v; want [c3]", ids, err)
	}
	if ids, err = s.DeleteClosedBefore(ctx, cutoff, 2); err != nil || len(ids) != 0 {
		t.Fatalf("third batch = %v, %v; want nothing", ids, err)
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		if _, err := s.Channel(ctx, id); !errors.Is(err, persist.ErrNotFound) {
			t.Fatalf("Channel(%s): %v, want ErrNotFound", id, err)
		}
		if ms, err := s.Messages(ctx, id, 0, 10); err != nil || len(ms) != 0 {
			t.Fatalf("Messages(%s) = %d messages, %v; want none", id, len(ms), err)
		}
	}
	checkMessages(t, s, "c4", 1)
	checkMessages(t, s, "open", 2)
	if c, err := s.CreateChannel(ctx, "c1", nil); err != nil || c.Epoch <= 1 {
		t.Fatalf("CreateChannel(c1) = %+v, %v; want an epoch above 1", c, err)
	}
}

// testDeleteRacesWrites deletes channels while their batches are being
// written: whatever the interleaving, no message of a deleted channel is
// left, and a channel created again under its id starts empty.
func testDeleteRacesWrites(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	for round := range 20 {
		id := fmt.Sprintf("race-%d", round)
		create(t, s, id)
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		wg.Go(func() {
			for seq := int64(1); seq <= 1000; seq += 10 {
				b := &persist.Batch{Channel: id, Messages: msgs(id, seq, seq+9)}
				err := s.WriteBatches(ctx, []*persist.Batch{b})
				if errors.Is(err, persist.ErrNotFound) {
					return // deleted
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
		if err := s.DeleteChannel(ctx, id); err != nil {
			t.Fatalf("DeleteChannel(%s): %v", id, err)
		}
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatalf("WriteBatches(%s): %v", id, err)
		default:
		}
		if ms, err := s.Messages(ctx, id, 0, 10); err != nil || len(ms) != 0 {
			t.Fatalf("round %d: %d messages left after the delete (%v)", round, len(ms), err)
		}
		if c, err := s.CreateChannel(ctx, id, nil); err != nil || c.LastSeq != 0 {
			t.Fatalf("round %d: CreateChannel again = %+v, %v", round, c, err)
		}
		if ms, err := s.Messages(ctx, id, 0, 10); err != nil || len(ms) != 0 {
			t.Fatalf("round %d: the re-created channel has %d messages (%v)", round, len(ms), err)
		}
	}
}
