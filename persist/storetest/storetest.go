// Package storetest is the contract every backend of persist.Store meets:
// one suite of tests, with the same assertions, run against PostgreSQL and
// against SQLite. A backend passes when nothing above persist can tell it
// from the other.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
)

// waitTimeout bounds every wait of the suite.
const waitTimeout = 30 * time.Second

// at is the append time of the suite's messages: message seq is stamped
// at plus seq microseconds.
var at = time.Unix(1764300000, 0)

// Run runs the contract suite as subtests of t. newURL returns the URL of
// a new, empty database each time it is called (persisttest.DatabaseURL or
// persisttest.SQLiteURL); the suite opens it with persist.Open, sometimes
// twice in a row to check what survives a restart.
func Run(t *testing.T, newURL func(testing.TB) string) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, func(testing.TB) string)
	}{
		{"ChannelLifecycle", onStore(testChannelLifecycle)},
		{"ChannelsOrderAndPages", onStore(testChannelsOrderAndPages)},
		{"ReadRanges", onStore(testReadRanges)},
		{"WriteBatches", onStore(testWriteBatches)},
		{"ClosedChannelTakesNoMessages", onStore(testClosedChannel)},
		{"Fencing", onStore(testFencing)},
		{"NilData", onStore(testNilData)},
		{"LargeTransactions", onStore(testLargeTransactions)},
		{"AppendBatchesInOrder", onStore(testAppendBatchesInOrder)},
		{"Epochs", onStore(testEpochs)},
		{"RestartRecovery", testRestartRecovery},
		{"OneServerPerDatabase", testOneServer},
		{"ConcurrentReadersDuringWrites", onStore(testConcurrentReaders)},
		{"DeleteChannel", onStore(testDeleteChannel)},
		{"DeleteClosedBefore", onStore(testDeleteClosedBefore)},
		{"DeleteRacesWrites", onStore(testDeleteRacesWrites)},
		{"Streams", testStreams},
		{"CreateBurst", testCreateBurst},
		{"CreateBurstAfterDelete", onStore(testCreateBurstAfterDelete)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(t, newURL)
		})
	}
}

// onStore runs f on a Store opened on a new database.
func onStore(f func(*testing.T, *persist.Store)) func(*testing.T, func(testing.TB) string) {
	return func(t *testing.T, newURL func(testing.TB) string) { f(t, Open(t, newURL(t))) }
}

// Open opens a Store at u, closed when t ends: if closing it takes longer
// than the suite's bound (a connection never released), t fails instead of
// hanging.
func Open(t testing.TB, u string) *persist.Store {
	t.Helper()
	return OpenConfig(t, persist.Config{URL: u, MaxConns: 8})
}

// OpenConfig is Open with a whole configuration.
func OpenConfig(t testing.TB, cfg persist.Config) *persist.Store {
	t.Helper()
	s, err := persist.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Close()
		}()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("Store.Close still waiting after %v: a connection was not released", waitTimeout)
		}
	})
	return s
}

// msgs returns messages from..to of channel id, data "seq: id\n".
func msgs(id string, from, to int64) []persist.Message {
	var ms []persist.Message
	for seq := from; seq <= to; seq++ {
		ms = append(ms, persist.Message{Seq: seq, Time: at.UnixMicro() + seq, Data: data(id, seq)})
	}
	return ms
}

// data is the body of message seq of channel id.
func data(id string, seq int64) []byte { return fmt.Appendf(nil, "%d: %s\n", seq, id) }

// create creates the channels ids, without generator.
func create(t testing.TB, s *persist.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := s.CreateChannel(t.Context(), id, nil); err != nil {
			t.Fatalf("CreateChannel(%s): %v", id, err)
		}
	}
}

// write commits one batch of id's messages from..to, and close.
func write(t testing.TB, s *persist.Store, id string, from, to int64, close bool) {
	t.Helper()
	b := &persist.Batch{Channel: id, Messages: msgs(id, from, to), Close: close}
	if err := s.WriteBatches(t.Context(), []*persist.Batch{b}); err != nil {
		t.Fatalf("WriteBatches(%s %d..%d): %v", id, from, to, err)
	}
}

// checkMessages fails t unless the stored messages of id are exactly
// 1..last as msgs makes them, and the channel's LastSeq is last.
func checkMessages(t testing.TB, s *persist.Store, id string, last int64) {
	t.Helper()
	got, err := s.Messages(t.Context(), id, 0, int(last)+10)
	if err != nil {
		t.Fatalf("Messages(%s): %v", id, err)
	}
	if err := checkPrefix(id, got, last); err != nil {
		t.Fatal(err)
	}
	c, err := s.Channel(t.Context(), id)
	if err != nil {
		t.Fatalf("Channel(%s): %v", id, err)
	}
	if c.LastSeq != last {
		t.Fatalf("Channel(%s).LastSeq = %d, want %d", id, c.LastSeq, last)
	}
}

// checkPrefix reports whether ms are messages 1..n of id as msgs makes
// them, for some n >= atLeast.
func checkPrefix(id string, ms []persist.Message, atLeast int64) error {
	if int64(len(ms)) < atLeast {
		return fmt.Errorf("%s: %d messages, want at least %d", id, len(ms), atLeast)
	}
	for i, m := range ms {
		seq := int64(i) + 1
		if m.Seq != seq || m.Time != at.UnixMicro()+seq || !bytes.Equal(m.Data, data(id, seq)) {
			return fmt.Errorf("%s: message %d = seq %d time %d %q, want seq %d time %d %q",
				id, i, m.Seq, m.Time, m.Data, seq, at.UnixMicro()+seq, data(id, seq))
		}
	}
	return nil
}

func testChannelLifecycle(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	before := time.Now().Add(-time.Minute)

	c, err := s.CreateChannel(ctx, "gen", &persist.Generator{Freq: 20.5, Max: 50})
	if err != nil {
		t.Fatalf("CreateChannel: %v", err)
	}
	if c.ID != "gen" || c.Epoch != 1 || c.LastSeq != 0 || !c.Open() || c.CreatedAt.Before(before) ||
		c.CreatedAt.After(time.Now().Add(time.Minute)) ||
		c.Generator == nil || *c.Generator != (persist.Generator{Freq: 20.5, Max: 50}) {
		t.Fatalf("CreateChannel = %+v", c)
	}
	got, err := s.Channel(ctx, "gen")
	if err != nil {
		t.Fatalf("Channel: %v", err)
	}
	if got.ID != c.ID || got.Epoch != 1 || !got.CreatedAt.Equal(c.CreatedAt) || !got.Open() ||
		got.Generator == nil || *got.Generator != *c.Generator {
		t.Fatalf("Channel = %+v, want %+v", got, c)
	}
	plain, err := s.CreateChannel(ctx, "plain", nil)
	if err != nil || plain.Generator != nil {
		t.Fatalf("CreateChannel(plain) = %+v, %v", plain, err)
	}
	if _, err := s.CreateChannel(ctx, "gen", nil); !errors.Is(err, persist.ErrExists) {
		t.Fatalf("CreateChannel(duplicate) error = %v, want ErrExists", err)
	}
	if _, err := s.Channel(ctx, "absent"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("Channel(absent) error = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenEpoch(ctx, "absent"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("OpenEpoch(absent) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Survived(ctx, "absent", 1); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("Survived(absent) error = %v, want ErrNotFound", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	// Messages, then close in the commit of the last ones.
	write(t, s, "gen", 1, 3, false)
	write(t, s, "gen", 4, 5, true)
	checkMessages(t, s, "gen", 5)
	closed, err := s.Channel(ctx, "gen")
	if err != nil || closed.Open() || closed.ClosedAt.Before(closed.CreatedAt) ||
		closed.Generator == nil || closed.Epoch != 1 {
		t.Fatalf("Channel after close = %+v, %v", closed, err)
	}
	// Closing again, or a late retry, changes nothing.
	write(t, s, "gen", 4, 5, true)
	write(t, s, "gen", 6, 5, true) // no messages
	again, err := s.Channel(ctx, "gen")
	if err != nil || !again.ClosedAt.Equal(closed.ClosedAt) || again.LastSeq != 5 {
		t.Fatalf("closing again: %+v, %v; want closed at %v, last seq 5", again, err, closed.ClosedAt)
	}
	// A channel closed without any message.
	write(t, s, "plain", 1, 0, true)
	if c, err := s.Channel(ctx, "plain"); err != nil || c.Open() || c.LastSeq != 0 {
		t.Fatalf("Channel(plain) after close = %+v, %v", c, err)
	}
}

func testChannelsOrderAndPages(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	// Every byte a channel id may hold, created out of order: the listing
	// is in byte order on every backend.
	want := []string{"-", ".", "0", "9", ":", "A", "Z", "_", "a", "z", "a-b", "a.b", "a:b", "a_b", "aB", "ab"}
	for i := range 9 {
		want = append(want, fmt.Sprintf("c%02d", i))
	}
	ids := slices.Clone(want)
	slices.Reverse(ids)
	create(t, s, ids...)
	slices.Sort(want)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.Channels(ctx, after, 10)
		if err != nil {
			t.Fatalf("Channels(%q): %v", after, err)
		}
		if len(page) == 0 {
			if pages != 3 {
				t.Fatalf("%d pages of 10 for %d channels", pages, len(want))
			}
			break
		}
		for _, c := range page {
			if c.Epoch != 1 || !c.Open() {
				t.Fatalf("Channels: %+v", c)
			}
			got = append(got, c.ID)
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Channels pages = %q, want %q", got, want)
	}
	if cs, err := s.Channels(ctx, "", 0); err != nil || len(cs) != 0 {
		t.Fatalf("Channels(limit 0) = %v, %v", cs, err)
	}
	if cs, err := s.Channels(ctx, "zz", 10); err != nil || len(cs) != 0 {
		t.Fatalf("Channels(after the last) = %v, %v", cs, err)
	}
}

func testReadRanges(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "a", "b", "a0")
	write(t, s, "a", 1, 30, false)
	write(t, s, "b", 1, 5, false)
	write(t, s, "a0", 1, 2, false)
	checkMessages(t, s, "a", 30)
	checkMessages(t, s, "b", 5)
	checkMessages(t, s, "a0", 2)
	for _, tc := range []struct {
		after       int64
		limit       int
		first, last int64 // 0, 0: none
	}{
		{0, 10, 1, 10},
		{10, 10, 11, 20},
		{25, 10, 26, 30},
		{29, 1, 30, 30},
		{30, 10, 0, 0},
		{99, 10, 0, 0},
		{5, 0, 0, 0},
		{5, -1, 0, 0},
		{-1, 1, 1, 1},
		{0, 1000, 1, 30},
	} {
		got, err := s.Messages(ctx, "a", tc.after, tc.limit)
		if err != nil {
			t.Fatalf("Messages(a, %d, %d): %v", tc.after, tc.limit, err)
		}
		var first, last int64
		if len(got) > 0 {
			first, last = got[0].Seq, got[len(got)-1].Seq
		}
		if first != tc.first || last != tc.last || (len(got) > 0 && int64(len(got)) != last-first+1) {
			t.Errorf("Messages(a, %d, %d) = %d messages %d..%d, want %d..%d",
				tc.after, tc.limit, len(got), first, last, tc.first, tc.last)
		}
		for _, m := range got {
			if !bytes.Equal(m.Data, data("a", m.Seq)) || m.Time != at.UnixMicro()+m.Seq {
				t.Errorf("Messages(a, %d, %d): seq %d is %d %q", tc.after, tc.limit, m.Seq, m.Time, m.Data)
			}
		}
	}
	if got, err := s.Messages(ctx, "absent", 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Messages(absent) = %v, %v", got, err)
	}
}

func testEpochs(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "e")
	survived := func(epoch, want int64) {
		t.Helper()
		got, err := s.Survived(ctx, "e", epoch)
		if err != nil || got != want {
			t.Fatalf("Survived(e, %d) = %d, %v; want %d", epoch, got, err, want)
		}
	}
	openEpoch := func(want, lastSeq int64) {
		t.Helper()
		c, err := s.OpenEpoch(ctx, "e")
		if err != nil || c.Epoch != want || c.LastSeq != lastSeq || !c.Open() {
			t.Fatalf("OpenEpoch = %+v, %v; want epoch %d at %d", c, err, want, lastSeq)
		}
	}
	survived(1, 0)
	write(t, s, "e", 1, 5, false)
	survived(1, 5)
	openEpoch(2, 5) // epoch 1 may have delivered 6.. before it died
	survived(1, 5)
	survived(2, 5)
	write(t, s, "e", 6, 8, false)
	survived(1, 5)
	survived(2, 8)
	openEpoch(3, 8)
	openEpoch(4, 8) // an epoch that stored nothing
	write(t, s, "e", 9, 9, false)
	survived(1, 5)
	survived(2, 8)
	survived(3, 8)
	survived(4, 9)
	survived(5, 0) // never existed
	survived(0, 0)
	survived(-1, 0)
	if c, err := s.Channel(ctx, "e"); err != nil || c.Epoch != 4 {
		t.Fatalf("Channel = %+v, %v; want epoch 4", c, err)
	}
}

func testRestartRecovery(t *testing.T, newURL func(testing.TB) string) {
	u := newURL(t)
	ctx := t.Context()
	first, err := persist.Open(ctx, persist.Config{URL: u})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	create(t, first, "done", "open")
	write(t, first, "done", 1, 7, true)
	write(t, first, "open", 1, 4, false)
	created, err := first.Channel(ctx, "open")
	if err != nil {
		t.Fatal(err)
	}
	first.Close()

	// The second process migrates nothing and sees everything.
	s := Open(t, u)
	checkMessages(t, s, "done", 7)
	checkMessages(t, s, "open", 4)
	if c, err := s.Channel(ctx, "done"); err != nil || c.Open() {
		t.Fatalf("Channel(done) after restart = %+v, %v; want closed", c, err)
	}
	c, err := s.Channel(ctx, "open")
	if err != nil || !c.Open() || !c.CreatedAt.Equal(created.CreatedAt) || c.Epoch != 1 {
		t.Fatalf("Channel(open) after restart = %+v, %v; want %+v", c, err, created)
	}
	// It takes the open channel over in a new epoch and goes on after the
	// last stored seq.
	if c, err := s.OpenEpoch(ctx, "open"); err != nil || c.Epoch != 2 || c.LastSeq != 4 {
		t.Fatalf("OpenEpoch(open) after restart = %+v, %v; want epoch 2 at 4", c, err)
	}
	write(t, s, "open", 5, 6, true)
	checkMessages(t, s, "open", 6)
	if got, err := s.Survived(ctx, "open", 1); err != nil || got != 4 {
		t.Fatalf("Survived(open, 1) = %d, %v; want 4", got, err)
	}
	if _, err := s.CreateChannel(ctx, "done", nil); !errors.Is(err, persist.ErrExists) {
		t.Fatalf("CreateChannel(done) after restart error = %v, want ErrExists", err)
	}
}

// testOneServer checks that a database serves one store at a time: a
// second Open fails at once with ErrLocked and a message that says what to
// do, and works again once the first store is closed.
func testOneServer(t *testing.T, newURL func(testing.TB) string) {
	u := newURL(t)
	ctx := t.Context()
	first, err := persist.Open(ctx, persist.Config{URL: u})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer first.Close()
	create(t, first, "c")
	write(t, first, "c", 1, 2, false)
	for range 2 { // a refused Open leaves nothing behind that blocks the next
		start := time.Now()
		second, err := persist.Open(ctx, persist.Config{URL: u})
		if err == nil {
			second.Close()
			t.Fatal("a second Open of an open database succeeded")
		}
		if !errors.Is(err, persist.ErrLocked) ||
			!strings.Contains(err.Error(), "another messages server is using this database") ||
			!strings.Contains(err.Error(), "stop it first, or use another database") {
			t.Fatalf("second Open = %v, want ErrLocked with an explanation", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("second Open took %v to fail", d)
		}
	}
	write(t, first, "c", 3, 3, false) // the first goes on
	first.Close()

	again, err := persist.Open(ctx, persist.Config{URL: u})
	if err != nil {
		t.Fatalf("Open after the first store closed: %v", err)
	}
	defer again.Close()
	checkMessages(t, again, "c", 3)
}

func testConcurrentReaders(t *testing.T, s *persist.Store) {
	w := persist.NewWriter(s, persist.WriterConfig{Workers: 4})
	const channels, batches, perBatch, readers = 8, 40, 5, 6
	ids := make([]string, channels)
	for c := range ids {
		ids[c] = fmt.Sprintf("cr-%d", c)
		create(t, s, ids[c])
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var (
		writers, readersWG sync.WaitGroup
		stop               = make(chan struct{})
		reads              atomic.Int64
		errs               = make(chan error, channels+readers)
	)
	for _, id := range ids {
		writers.Go(func() {
			if err := writeInBatches(ctx, w, id, batches, perBatch); err != nil {
				errs <- err
			}
		})
	}
	for r := range readers {
		readersWG.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := readWhole(ctx, s, ids[(r+k)%channels], perBatch, batches*perBatch+1); err != nil {
					errs <- err
					return
				}
				reads.Add(1)
			}
		})
	}
	writers.Wait()
	close(stop)
	readersWG.Wait()
	closeWriter(t, w)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if reads.Load() == 0 {
		t.Fatal("no read completed during the writes")
	}
	for _, id := range ids {
		checkMessages(t, s, id, batches*perBatch)
	}
}

// writeInBatches writes messages 1 to batches*perBatch of channel id
// through w, one batch of perBatch at a time, each after the last is
// durable.
func writeInBatches(ctx context.Context, w *persist.Writer, id string, batches, perBatch int64) error {
	for i := range batches {
		b := &persist.Batch{Channel: id, Messages: msgs(id, i*perBatch+1, (i+1)*perBatch)}
		done := make(chan error, 1)
		b.Done = func(err error) { done <- err }
		if !w.TryEnqueue(b) {
			return fmt.Errorf("%s: queue full", id)
		}
		select {
		case err := <-done:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("%s batch %d: %w", id, i, ctx.Err())
		}
	}
	return nil
}

// readWhole reads up to limit messages of channel id, written in batches
// of perBatch, and checks that everything its record says is stored is
// readable, and that what is readable is a contiguous prefix: no gap, no
// torn batch.
func readWhole(ctx context.Context, s *persist.Store, id string, perBatch, limit int) error {
	c, err := s.Channel(ctx, id)
	if err != nil {
		return err
	}
	ms, err := s.Messages(ctx, id, 0, limit)
	if err != nil {
		return err
	}
	if err := checkPrefix(id, ms, c.LastSeq); err != nil {
		return err
	}
	if len(ms)%perBatch != 0 {
		return fmt.Errorf("%s: read %d messages, a part of a batch", id, len(ms))
	}
	return nil
}
