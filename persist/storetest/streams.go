package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
)

// testStreams: a stream's configuration, Stream-Seq and producers are
// stored with the channel, survive a restart, and go with it on delete; a
// producer's state never moves backwards.
func testStreams(t *testing.T, newURL func(testing.TB) string) {
	u := newURL(t)
	s := Open(t, u)
	want := streamCreateAndSave(t, s)
	checkStream(t, s, want)
	s.Close()
	s = Open(t, u)
	checkStream(t, s, want)
	streamStateInBatch(t, s)
	streamForks(t, s)
	streamDeleted(t, s)
}

// streamCreateAndSave creates streams "st" and "ttl" and a plain channel,
// saves Stream-Seqs and producer states of "st", some of them late, and
// returns the state "st" should have.
func streamCreateAndSave(t *testing.T, s *persist.Store) persist.StreamState {
	ctx := t.Context()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 678000000, time.UTC)
	cfg := persist.StreamConfig{ContentType: "application/json; charset=utf-8", TTL: 0, ExpiresAt: exp}
	c, err := s.CreateStream(ctx, "st", cfg)
	if err != nil || c.ID != "st" || c.Epoch != 1 || !c.Open() {
		t.Fatalf("CreateStream: %+v %v", c, err)
	}
	if _, err := s.CreateStream(ctx, "st", cfg); !errors.Is(err, persist.ErrExists) {
		t.Fatalf("CreateStream again: %v, want ErrExists", err)
	}
	if _, err := s.CreateStream(ctx, "ttl", persist.StreamConfig{ContentType: "text/plain", TTL: 60}); err != nil {
		t.Fatal(err)
	}
	create(t, s, "plain")
	if st, err := s.Stream(ctx, "plain"); err != nil || !reflect.DeepEqual(st, persist.StreamState{}) {
		t.Fatalf("Stream of a plain channel: %+v %v, want the zero state", st, err)
	}
	if _, err := s.Stream(ctx, "nope"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("Stream(nope): %v, want ErrNotFound", err)
	}

	steps := []struct {
		seq string
		p   *persist.ProducerState
	}{
		{"001", &persist.ProducerState{ID: "a", Epoch: 0, Seq: 0}},
		{"", &persist.ProducerState{ID: "a", Epoch: 0, Seq: 1}},
		{"002", &persist.ProducerState{ID: "b", Epoch: 3, Seq: 0}},
		{"", &persist.ProducerState{ID: "a", Epoch: 0, Seq: 0}}, // late: ignored
		{"", &persist.ProducerState{ID: "b", Epoch: 2, Seq: 9}}, // older epoch: ignored
		{"", nil},
	}
	for _, step := range steps {
		if err := s.SaveStreamWrites(ctx, "st", step.seq, step.p); err != nil {
			t.Fatalf("SaveStreamWrites(%q, %+v): %v", step.seq, step.p, err)
		}
	}
	if err := s.SaveStreamWrites(ctx, "nope", "1", nil); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("SaveStreamWrites(nope): %v, want ErrNotFound", err)
	}
	return persist.StreamState{StreamConfig: cfg, StreamSeq: "002", Producers: []persist.ProducerState{
		{ID: "a", Epoch: 0, Seq: 1}, {ID: "b", Epoch: 3, Seq: 0}}}
}

// checkStream checks that "st" has the state want and "ttl" its TTL.
func checkStream(t *testing.T, s *persist.Store, want persist.StreamState) {
	t.Helper()
	ctx := t.Context()
	st, err := s.Stream(ctx, "st")
	if err != nil || !st.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("Stream: %+v %v, want %+v", st, err, want)
	}
	st.ExpiresAt = want.ExpiresAt
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("Stream: %+v, want %+v", st, want)
	}
	if st, err := s.Stream(ctx, "ttl"); err != nil || st.TTL != 60 || st.ContentType != "text/plain" || !st.ExpiresAt.IsZero() {
		t.Fatalf("Stream(ttl): %+v %v", st, err)
	}
}

// streamStateInBatch: producer states and a Stream-Seq carried by a
// batch are committed with its messages, and only ever move forward.
func streamStateInBatch(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	b := &persist.Batch{Channel: "st", Messages: msgs("st", 1, 2), StreamSeq: "003",
		Producers: []persist.ProducerState{{ID: "a", Epoch: 1, Seq: 0}, {ID: "b", Epoch: 1, Seq: 0}, {ID: "c", Epoch: 0, Seq: 4}}}
	if err := s.WriteBatches(ctx, []*persist.Batch{b}); err != nil {
		t.Fatalf("WriteBatches with stream state: %v", err)
	}
	if st, err := s.Stream(ctx, "st"); err != nil || st.StreamSeq != "003" || !reflect.DeepEqual(st.Producers, []persist.ProducerState{
		{ID: "a", Epoch: 1, Seq: 0}, {ID: "b", Epoch: 3, Seq: 0}, {ID: "c", Epoch: 0, Seq: 4}}) {
		t.Fatalf("Stream after WriteBatches: %+v %v", st, err)
	}
	checkMessages(t, s, "st", 2)
}

// streamForks: the source of a fork is recorded, counted, and a stream
// with forks can be marked deleted and still read.
func streamForks(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	fcfg := persist.StreamConfig{ContentType: "text/plain", ForkedFrom: "st", ForkSeq: 2, ForkSub: 3}
	if c, err := s.CreateStream(ctx, "fork", persist.StreamConfig{ContentType: "text/plain", ForkedFrom: "st",
		ForkSeq: 2, ForkSub: 3, Epoch: 4}); err != nil || c.Epoch != 4 {
		t.Fatalf("CreateStream(fork) in epoch 4: %+v %v", c, err)
	}
	if n, err := s.Survived(ctx, "fork", 4); err != nil || n != 0 {
		t.Fatalf("Survived(fork, 4) = %d, %v; want 0", n, err)
	}
	if st, err := s.Stream(ctx, "fork"); err != nil || st.StreamConfig != fcfg || st.Deleted {
		t.Fatalf("Stream(fork): %+v %v, want %+v", st, err, fcfg)
	}
	if n, err := s.Forks(ctx, "st"); err != nil || n != 1 {
		t.Fatalf("Forks(st) = %d, %v; want 1", n, err)
	}
	if n, err := s.Forks(ctx, "fork"); err != nil || n != 0 {
		t.Fatalf("Forks(fork) = %d, %v; want 0", n, err)
	}
	if err := s.MarkDeleted(ctx, "st"); err != nil {
		t.Fatalf("MarkDeleted: %v", err)
	}
	if st, err := s.Stream(ctx, "st"); err != nil || !st.Deleted {
		t.Fatalf("Stream after MarkDeleted: %+v %v", st, err)
	}
	if err := s.MarkDeleted(ctx, "nope"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("MarkDeleted(nope): %v, want ErrNotFound", err)
	}
	if err := s.DeleteChannel(ctx, "fork"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Forks(ctx, "st"); err != nil || n != 0 {
		t.Fatalf("Forks(st) after deleting the fork = %d, %v; want 0", n, err)
	}
}

// streamDeleted: deleting a stream takes its state with it, and its id
// is free again for a stream with nothing of the old one.
func streamDeleted(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	write(t, s, "st", 3, 3, false)
	if err := s.DeleteChannel(ctx, "st"); err != nil {
		t.Fatalf("DeleteChannel: %v", err)
	}
	if _, err := s.Channel(ctx, "st"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("Channel after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteChannel(ctx, "st"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("DeleteChannel again: %v, want ErrNotFound", err)
	}
	// The id is free again, with nothing of the old channel.
	if _, err := s.CreateStream(ctx, "st", persist.StreamConfig{ContentType: "text/plain"}); err != nil {
		t.Fatalf("CreateStream after delete: %v", err)
	}
	if got, err := s.Messages(ctx, "st", 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("messages of the new channel: %v %v", got, err)
	}
	if st, err := s.Stream(ctx, "st"); err != nil || st.StreamSeq != "" || len(st.Producers) != 0 || st.Deleted {
		t.Fatalf("stream state of the new channel: %+v %v", st, err)
	}
}
