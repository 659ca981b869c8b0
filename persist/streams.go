package persist

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// StreamConfig is what a Durable Streams stream adds to a channel: its
// content type and expiry, fixed at creation.
type StreamConfig struct {
	// ContentType is the media type of the channel's messages; "" for a
	// channel made through the channels API (text).
	ContentType string
	// TTL, if positive, is the time to live in seconds after the last access.
	TTL int64
	// ExpiresAt, if not zero, is an absolute expiry time.
	ExpiresAt time.Time
	// ForkedFrom is the stream this one was forked from, or "".
	ForkedFrom string
	// ForkSeq and ForkSub say where a fork forked: after message ForkSeq of
	// the source, plus ForkSub bytes (JSON: messages) of the next one.
	ForkSeq, ForkSub int64
	// Epoch is the lowest epoch the channel may start in; 0 means 1. The
	// channel starts above the epochs of any deleted channel (see
	// CreateChannel) even so. A fork starts in its source's epoch, so that
	// the source's offsets up to the fork point name the same positions in
	// it. Stream does not report it.
	Epoch int64
}

// ProducerState is an idempotent producer's record in a channel.
type ProducerState struct {
	// ID names the producer.
	ID string
	// Epoch is the producer's current epoch.
	Epoch int64
	// Seq is the highest request seq accepted in Epoch.
	Seq int64
}

// StreamState is a channel's Durable Streams state.
type StreamState struct {
	StreamConfig
	// StreamSeq is the last Stream-Seq accepted, or "".
	StreamSeq string
	// Producers are the channel's idempotent producers, ordered by ID.
	Producers []ProducerState
	// Deleted is set for a stream deleted while forks of it remain: it is
	// kept until its last fork goes.
	Deleted bool
}

// CreateStream records a new open channel, like CreateChannel (above the
// epochs of deleted channels), with its stream configuration, in one
// transaction (shared with concurrent creations, as CreateChannel's). It
// returns ErrExists if the id is taken, and an error wrapping ErrInvalid
// for a content type or source the store cannot hold (see CheckField).
func (s *Store) CreateStream(ctx context.Context, id string, cfg StreamConfig) (Channel, error) {
	if cfg.TTL < 0 || cfg.Epoch < 0 {
		return Channel{}, fmt.Errorf("persist: create stream %q: negative TTL or epoch", id)
	}
	if err := errors.Join(CheckField("content type", cfg.ContentType), CheckField("forked from", cfg.ForkedFrom)); err != nil {
		return Channel{}, fmt.Errorf("persist: create stream %q: %w", id, err)
	}
	if cfg.Epoch == 0 {
		cfg.Epoch = 1
	}
	c, err := s.creator.do(ctx, newChannel{id: id, cfg: cfg})
	if err != nil {
		return Channel{}, fmt.Errorf("persist: create stream %q: %w", id, err)
	}
	return c, nil
}

// Stream returns a channel's stream state, or ErrNotFound. A channel made
// with CreateChannel has the zero StreamConfig.
func (s *Store) Stream(ctx context.Context, id string) (StreamState, error) {
	st, err := s.b.stream(ctx, id)
	if err != nil {
		return StreamState{}, fmt.Errorf("persist: stream %q: %w", id, err)
	}
	return st, nil
}

// SaveStreamWrites records, in one transaction, a channel's last Stream-Seq
// (if seq is not "") and a producer's state (if p is not nil). A producer's
// state only moves forward: an older (epoch, seq) never overwrites a newer
// one. It returns ErrNotFound if the channel does not exist, and an error
// wrapping ErrInvalid for a value the store cannot hold (see CheckField).
func (s *Store) SaveStreamWrites(ctx context.Context, id, seq string, p *ProducerState) error {
	var errs []error
	if seq != "" {
		errs = append(errs, CheckField("Stream-Seq", seq))
	}
	if p != nil {
		errs = append(errs, CheckProducer(*p))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("persist: save stream writes of %q: %w", id, err)
	}
	if err := s.b.saveStreamWrites(ctx, id, seq, p); err != nil {
		return fmt.Errorf("persist: save stream writes of %q: %w", id, err)
	}
	return nil
}

// MarkDeleted marks a stream deleted, keeping its rows (forks of it
// remain), or returns ErrNotFound.
func (s *Store) MarkDeleted(ctx context.Context, id string) error {
	if err := s.b.markDeleted(ctx, id); err != nil {
		return fmt.Errorf("persist: mark %q deleted: %w", id, err)
	}
	return nil
}

// TouchStream records an access to stream id now, by the database's
// clock, for every node of a cluster to see; ErrNotFound if id does not
// exist.
func (s *Store) TouchStream(ctx context.Context, id string) error {
	if err := s.b.touchStream(ctx, id); err != nil {
		return fmt.Errorf("persist: touch stream %q: %w", id, err)
	}
	return nil
}

// StreamIdle returns how long ago the last access to stream id was
// recorded (TouchStream; its creation if none), by the database's clock;
// ErrNotFound if id does not exist.
func (s *Store) StreamIdle(ctx context.Context, id string) (time.Duration, error) {
	d, err := s.b.streamIdle(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("persist: stream %q idle time: %w", id, err)
	}
	return d, nil
}

// Forks counts the streams forked from id (deleted ones included).
func (s *Store) Forks(ctx context.Context, id string) (int, error) {
	n, err := s.b.forks(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("persist: forks of %q: %w", id, err)
	}
	return n, nil
}

// streamColumns are the stream columns of a channel's row, in the order
// scanStream reads them.
const streamColumns = `content_type, ttl_seconds, expires_at, stream_seq, forked_from, fork_seq, fork_sub, deleted_at`

// scanStream reads a row of streamColumns (from either backend's driver)
// into the stream state it holds; NULL reads as the zero value. The
// expiry and deletion columns, which each backend stores in its own way,
// are scanned into exp and deleted for the caller to add.
func scanStream(row interface{ Scan(dest ...any) error }, exp, deleted any) (StreamState, error) {
	var (
		ct, sseq, from  sql.NullString
		ttl, fseq, fsub sql.NullInt64
	)
	if err := row.Scan(&ct, &ttl, exp, &sseq, &from, &fseq, &fsub, deleted); err != nil {
		return StreamState{}, err
	}
	return StreamState{
		StreamConfig: StreamConfig{ContentType: ct.String, TTL: ttl.Int64, ForkedFrom: from.String,
			ForkSeq: fseq.Int64, ForkSub: fsub.Int64},
		StreamSeq: sseq.String,
	}, nil
}

// streamTx is a backend's write transaction as the stream state needs it.
type streamTx interface {
	// setStreamSeq records seq as channel id's last Stream-Seq.
	setStreamSeq(ctx context.Context, id, seq string) error
	// upsertProducer moves a producer's state in channel id forward: an
	// older (epoch, seq) never overwrites a newer one.
	upsertProducer(ctx context.Context, id string, ps ProducerState) error
}

// writeStreamStates records the producers and Stream-Seq that batches
// carry, in the transaction of their messages.
func writeStreamStates(ctx context.Context, tx streamTx, batches []*Batch) error {
	for _, b := range batches {
		if b.StreamSeq != "" {
			if err := tx.setStreamSeq(ctx, b.Channel, b.StreamSeq); err != nil {
				return err
			}
		}
		for _, ps := range b.Producers {
			if err := tx.upsertProducer(ctx, b.Channel, ps); err != nil {
				return err
			}
		}
	}
	return nil
}

// nullString is nil for "", so that "" is stored as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullInt is nil for 0.
func nullInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

// nullTTL is nil for no TTL.
func nullTTL(ttl int64) any {
	if ttl <= 0 {
		return nil
	}
	return ttl
}
