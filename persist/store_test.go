package persist_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

// openStore opens a Store on a fresh database, closed when t ends.
func openStore(t testing.TB) (*persist.Store, string) {
	t.Helper()
	u := persisttest.DatabaseURL(t)
	s, err := persist.Open(t.Context(), persist.Config{URL: u, MaxConns: 8})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s, u
}

// msgs returns messages from..to of channel id, data "seq: id\n", each at
// the given time plus seq microseconds.
func msgs(id string, from, to int64, at time.Time) []persist.Message {
	var ms []persist.Message
	for seq := from; seq <= to; seq++ {
		ms = append(ms, persist.Message{
			Seq:  seq,
			Time: at.UnixMicro() + seq,
			Data: fmt.Appendf(nil, "%d: %s\n", seq, id),
		})
	}
	return ms
}

// write commits one batch of id's messages from..to, and close.
func write(t testing.TB, s *persist.Store, id string, from, to int64, close bool) {
	t.Helper()
	b := &persist.Batch{Channel: id, Messages: msgs(id, from, to, time.Unix(1764300000, 0)), Close: close}
	if err := s.WriteBatches(t.Context(), []*persist.Batch{b}); err != nil {
		t.Fatalf("WriteBatches(%s %d..%d): %v", id, from, to, err)
	}
}

// checkMessages fails t unless the stored messages of id are exactly
// 1..last, as written by msgs.
func checkMessages(t testing.TB, s *persist.Store, id string, last int64) {
	t.Helper()
	got, err := s.Messages(t.Context(), id, 0, int(last)+10)
	if err != nil {
		t.Fatalf("Messages(%s): %v", id, err)
	}
	if int64(len(got)) != last {
		t.Fatalf("Messages(%s): %d messages, want %d", id, len(got), last)
	}
	want := msgs(id, 1, last, time.Unix(1764300000, 0))
	for i, m := range got {
		if m.Seq != want[i].Seq || m.Time != want[i].Time || !bytes.Equal(m.Data, want[i].Data) {
			t.Fatalf("Messages(%s)[%d] = %d %d %q, want %d %d %q",
				id, i, m.Seq, m.Time, m.Data, want[i].Seq, want[i].Time, want[i].Data)
		}
	}
	c, err := s.Channel(t.Context(), id)
	if err != nil {
		t.Fatalf("Channel(%s): %v", id, err)
	}
	if c.LastSeq != last {
		t.Fatalf("Channel(%s).LastSeq = %d, want %d", id, c.LastSeq, last)
	}
}

func TestCreateChannel(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Minute)

	c, err := s.CreateChannel(ctx, "gen", &persist.Generator{Freq: 20, Max: 50})
	if err != nil {
		t.Fatalf("CreateChannel: %v", err)
	}
	if c.ID != "gen" || c.Epoch != 1 || c.LastSeq != 0 || !c.Open() || c.CreatedAt.Before(before) ||
		c.Generator == nil || *c.Generator != (persist.Generator{Freq: 20, Max: 50}) {
		t.Fatalf("CreateChannel = %+v", c)
	}
	got, err := s.Channel(ctx, "gen")
	if err != nil {
		t.Fatalf("Channel: %v", err)
	}
	if got.ID != c.ID || got.Epoch != 1 || !got.CreatedAt.Equal(c.CreatedAt) || *got.Generator != *c.Generator {
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
}

func TestChannelsPages(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("c%02d", 24-i) // created out of order
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id}, want...)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.Channels(ctx, after, 10)
		if err != nil {
			t.Fatalf("Channels(%q): %v", after, err)
		}
		if len(page) == 0 {
			if pages != 3 {
				t.Fatalf("%d pages of 10 for 25 channels", pages)
			}
			break
		}
		for _, c := range page {
			got = append(got, c.ID)
		}
		after = page[len(page)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Channels pages = %v, want %v", got, want)
	}
	if cs, err := s.Channels(ctx, "", 0); err != nil || len(cs) != 0 {
		t.Fatalf("Channels(limit 0) = %v, %v", cs, err)
	}
}

func TestMessagesRanges(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	write(t, s, "a", 1, 30, false)
	write(t, s, "b", 1, 5, false)
	checkMessages(t, s, "a", 30)
	checkMessages(t, s, "b", 5)

	for _, tc := range []struct {
		after       int64
		limit       int
		first, last int64 // 0, 0: none
	}{
		{0, 10, 1, 10},
		{10, 10, 11, 20},
		{25, 10, 26, 30},
		{30, 10, 0, 0},
		{99, 10, 0, 0},
		{5, 0, 0, 0},
		{-1, 1, 1, 1},
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
	}
	if got, err := s.Messages(ctx, "absent", 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Messages(absent) = %v, %v", got, err)
	}
}

func TestEpochsAndSurvived(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	if _, err := s.CreateChannel(ctx, "e", nil); err != nil {
		t.Fatal(err)
	}
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
		if err != nil || c.Epoch != want || c.LastSeq != lastSeq {
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
	write(t, s, "e", 9, 9, false)
	survived(1, 5)
	survived(2, 8)
	survived(3, 9)
	survived(4, 0) // never existed
	survived(0, 0)
	c, err := s.Channel(ctx, "e")
	if err != nil || c.Epoch != 3 {
		t.Fatalf("Channel = %+v, %v; want epoch 3", c, err)
	}
}

func TestWriteBatchesIdempotentAndClose(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	for _, id := range []string{"x", "y"} {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Unix(1764300000, 0)
	batches := []*persist.Batch{
		{Channel: "x", Messages: msgs("x", 1, 10, at)},
		{Channel: "y", Messages: msgs("y", 1, 3, at)},
	}
	for range 2 { // the second time is a retry after an unknown outcome
		if err := s.WriteBatches(ctx, batches); err != nil {
			t.Fatalf("WriteBatches: %v", err)
		}
		checkMessages(t, s, "x", 10)
		checkMessages(t, s, "y", 3)
	}
	// A late retry of an old batch does not move last_seq back.
	write(t, s, "x", 11, 12, false)
	write(t, s, "x", 1, 10, false)
	checkMessages(t, s, "x", 12)

	// Close, with and without messages.
	write(t, s, "x", 13, 13, true)
	write(t, s, "y", 4, 3, true) // no messages
	checkMessages(t, s, "x", 13)
	checkMessages(t, s, "y", 3)
	var closed time.Time
	for _, id := range []string{"x", "y"} {
		c, err := s.Channel(ctx, id)
		if err != nil || c.Open() {
			t.Fatalf("Channel(%s) after close = %+v, %v", id, c, err)
		}
		closed = c.ClosedAt
	}
	write(t, s, "y", 4, 3, true)
	if c, _ := s.Channel(ctx, "y"); !c.ClosedAt.Equal(closed) {
		t.Fatalf("closing again moved closed_at from %v to %v", closed, c.ClosedAt)
	}

	// A batch of an unknown channel fails the whole transaction.
	err := s.WriteBatches(ctx, []*persist.Batch{
		{Channel: "x", Messages: msgs("x", 14, 14, at)},
		{Channel: "absent", Messages: msgs("absent", 1, 1, at)},
	})
	if !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("WriteBatches(unknown channel) error = %v, want ErrNotFound", err)
	}
	checkMessages(t, s, "x", 13)
	if got, _ := s.Messages(ctx, "absent", 0, 10); len(got) != 0 {
		t.Fatalf("messages of an unknown channel were stored: %v", got)
	}
	if err := s.WriteBatches(ctx, nil); err != nil {
		t.Fatalf("WriteBatches(nil): %v", err)
	}
}

func TestOpenMigratesOnce(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	if _, err := s.CreateChannel(ctx, "kept", nil); err != nil {
		t.Fatal(err)
	}
	// Open again, concurrently: the migrations are already applied, and the
	// advisory lock keeps two starting servers from applying them twice.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s2, err := persist.Open(ctx, persist.Config{URL: u})
			if err == nil {
				_, err = s2.Channel(ctx, "kept")
				s2.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("second Open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema_migrations has %d rows (%v), want 1", n, err)
	}

	s3, err := persist.Open(ctx, persist.Config{URL: u, SkipMigrations: true})
	if err != nil {
		t.Fatalf("Open(SkipMigrations): %v", err)
	}
	s3.Close()
}

func TestOpenMigratesFreshSchemaConcurrently(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	ctx := t.Context()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := persist.Open(ctx, persist.Config{URL: u})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

func TestOpenCreatesDatabase(t *testing.T) {
	base, err := url.Parse(persisttest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var b [6]byte
	rand.Read(b[:])
	name := "messages_test_create_" + hex.EncodeToString(b[:])
	u := *base
	u.Path = "/" + name
	q := u.Query()
	q.Del("search_path")
	q.Del("application_name")
	q.Del("sslmode") // pgx's default, prefer, must work for the migrations too
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base.String())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})

	s, err := persist.Open(ctx, persist.Config{URL: u.String()})
	if err != nil {
		t.Fatalf("Open(new database): %v", err)
	}
	defer s.Close()
	if _, err := s.CreateChannel(ctx, "c", nil); err != nil {
		t.Fatalf("CreateChannel in the new database: %v", err)
	}

	if _, err := persist.Open(ctx, persist.Config{URL: "host=127.0.0.1 user=postgres"}); err == nil {
		t.Fatal("Open(key=value string) succeeded, want an error")
	}
}
