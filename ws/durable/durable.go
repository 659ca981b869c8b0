// Package durable serves the Durable Streams HTTP protocol: a stream at
// /v1/stream/{name} is created with PUT, appended to with POST, read with GET
// (catch-up, long-poll or server-sent events), described with HEAD and
// removed with DELETE.
//
// The package owns the protocol only: headers, offsets, JSON mode, SSE
// framing, cursors and status codes. Streams themselves live behind the
// Backend interface it consumes; the server's backend makes every stream a
// channel, so that the same messages, with the same seqs, are read through
// this protocol and through WebSockets.
package durable

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Pos is a position in a stream: after the message Seq of the stream's
// incarnation Epoch. Seq 0 is the start of the stream.
type Pos struct {
	// Epoch is the channel epoch the position was read in.
	Epoch int64
	// Seq is the last message before the position.
	Seq int64
}

// offsetWidth is the number of digits of each part of an offset.
const offsetWidth = 16

// String formats p as an offset: two zero-padded decimal numbers, epoch and
// seq, so that offsets compare lexicographically in stream order.
func (p Pos) String() string {
	return fmt.Sprintf("%0*d_%0*d", offsetWidth, p.Epoch, offsetWidth, p.Seq)
}

// ParseOffset parses an offset this package produced. The sentinels "-1"
// and "now" are handled by the caller.
func ParseOffset(s string) (Pos, error) {
	e, q, ok := strings.Cut(s, "_")
	if !ok || len(e) != offsetWidth || len(q) != offsetWidth {
		return Pos{}, fmt.Errorf("malformed offset %q: use -1, now, or a Stream-Next-Offset value", s)
	}
	epoch, err1 := strconv.ParseInt(e, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	// Epoch 0 only names the start, 0000000000000000_0000000000000000.
	if err1 != nil || err2 != nil || (epoch < 1 && seq != 0) || seq < 0 || strings.ContainsAny(s, "+-") {
		return Pos{}, fmt.Errorf("malformed offset %q: use -1, now, or a Stream-Next-Offset value", s)
	}
	return Pos{Epoch: epoch, Seq: seq}, nil
}

// Config is a stream's configuration, fixed at creation.
type Config struct {
	// ContentType is the stream's media type as given at creation.
	ContentType string
	// TTL, if positive, is the stream's time to live in seconds after its
	// last read or write.
	TTL int64
	// ExpiresAt, if not zero, is the stream's absolute expiry time.
	ExpiresAt time.Time
	// Fork, if not nil, makes the stream a fork of another.
	Fork *Fork
}

// Fork says where a new stream forks from: it starts with a copy of the
// source's messages up to Offset, plus Sub bytes (in JSON mode: messages)
// of what follows, and is independent of the source from then on.
type Fork struct {
	// From names the source stream.
	From string
	// Offset is where to fork; nil for the source's tail.
	Offset *Pos
	// Sub is the sub-offset past Offset; 0 for none.
	Sub int64
}

// Same reports whether c and o are the same configuration, as a repeated
// PUT must find it. Forks are compared by the backend.
func (c Config) Same(o Config) bool {
	return sameType(c.ContentType, o.ContentType) && c.TTL == o.TTL && c.ExpiresAt.Equal(o.ExpiresAt)
}

// Info describes a stream at one moment.
type Info struct {
	Config
	// Tail is the position after the last message.
	Tail Pos
	// Closed is set once the stream was closed: it takes no more appends.
	Closed bool
	// Expires is when the stream expires if nothing touches it; zero for
	// never.
	Expires time.Time
}

// Producer identifies an idempotent producer's request.
type Producer struct {
	// ID names the producer; unique per stream.
	ID string
	// Epoch is the producer's session; a higher epoch fences older ones.
	Epoch int64
	// Seq numbers the producer's requests within its epoch, from 0.
	Seq int64
}

// Append is an append request: messages to add, in order, and optionally
// the close of the stream after them, as one operation.
type Append struct {
	// Messages are the messages to add; may be empty with Close.
	Messages [][]byte
	// Close closes the stream after the messages.
	Close bool
	// StreamSeq, if not empty, must be greater (bytewise) than the stream's
	// last Stream-Seq.
	StreamSeq string
	// Producer, if not nil, makes the append idempotent.
	Producer *Producer
}

// AppendResult is what an append did.
type AppendResult struct {
	// Info is the stream after the append.
	Info Info
	// Duplicate is set when the producer already sent this request: nothing
	// was added.
	Duplicate bool
	// ProducerSeq is the producer's highest accepted seq in its epoch.
	ProducerSeq int64
	// Seq is the channel seq of the last message appended; 0 if none.
	Seq int64
}

// Backend stores streams. Every method must be safe for concurrent use.
type Backend interface {
	// Create creates a stream with the given messages and, if closed, closes
	// it. If the stream exists with the same configuration it returns its
	// info and created=false; with another configuration, ErrConflict.
	Create(ctx context.Context, name string, cfg Config, msgs [][]byte, closed bool) (info Info, created bool, err error)
	// Stat describes a stream, or returns ErrNotFound. It does not count as
	// an access for the TTL.
	Stat(ctx context.Context, name string) (Info, error)
	// Append adds messages (see Append). Errors: ErrNotFound, ErrClosed,
	// ErrStreamSeq, *StaleEpochError, *SeqGapError, ErrNewEpochSeq.
	Append(ctx context.Context, name string, a Append) (AppendResult, error)
	// Read returns the messages after from, at most maxBytes of them (but at
	// least one if there is one), and the stream's info. It counts as an
	// access for the TTL. ErrGone if from is in a history lost to a reset.
	Read(ctx context.Context, name string, from Pos, maxBytes int) ([][]byte, Info, error)
	// Catchup plans a catch-up read of the messages after from, up to the
	// tail as of the call, cut before the message that would take their
	// data past maxBytes (but at least one message if there is one). It
	// returns the range, whose end is known before any message is sent,
	// and the stream's info; it counts as an access for the TTL. ErrGone
	// if from is in a history lost to a reset.
	Catchup(ctx context.Context, name string, from Pos, maxBytes int64) (Range, Info, error)
	// Wait returns when the stream has messages after from, or is closed,
	// or ctx is done (then with ctx's error).
	Wait(ctx context.Context, name string, from Pos) error
	// Delete removes a stream and its messages, or returns ErrNotFound.
	Delete(ctx context.Context, name string) error
}

// Range is a planned catch-up read: the messages after its start up to
// End, which Each yields.
type Range struct {
	// End is the position after the range's last message: the start
	// itself when the range is empty.
	End Pos
	// Each calls fn with each message of the range, in order, reading them
	// a page at a time: the range is never held in memory whole (a small
	// one may be). It stops at fn's first error and returns it; an error
	// of its own means the range could not be read whole.
	Each func(ctx context.Context, fn func(msg []byte) error) error
}

// Errors a Backend returns.
var (
	// ErrNotFound: no such stream (or it expired).
	ErrNotFound = errors.New("stream not found")
	// ErrConflict: the stream exists with another configuration.
	ErrConflict = errors.New("stream exists with a different configuration")
	// ErrClosed: the stream is closed and takes no more appends.
	ErrClosed = errors.New("stream is closed")
	// ErrStreamSeq: Stream-Seq is not greater than the stream's last one.
	ErrStreamSeq = errors.New("Stream-Seq is not greater than the last one")
	// ErrNewEpochSeq: a producer's new epoch must start at seq 0.
	ErrNewEpochSeq = errors.New("a new producer epoch must start at Producer-Seq 0")
	// ErrGone: the offset belongs to a history that a crash reset; read
	// again from the start.
	ErrGone = errors.New("offset is past what survived a server reset; read again from offset -1")
	// ErrDeleted: the stream was deleted, but forks of it remain; its name
	// cannot be used again until they are gone.
	ErrDeleted = errors.New("stream was deleted; forks of it remain")
	// ErrPersistTimeout: the append was accepted (with its producer state)
	// but was not durable within the server's persist-wait timeout; it
	// will be persisted. A retry of it is answered as a duplicate.
	ErrPersistTimeout = errors.New("the append was accepted but is not durable yet")
	// ErrTooLarge: the append is larger than the server can carry to where
	// the stream is written (413); nothing was applied.
	ErrTooLarge = errors.New("the append is too large for this server to apply")
)

// StaleEpochError: a producer's epoch is older than the stream's record of
// it (the producer was fenced by a newer session).
type StaleEpochError struct{ Current int64 }

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("stale producer epoch: the current epoch is %d", e.Current)
}

// SeqGapError: a producer skipped sequence numbers.
type SeqGapError struct{ Expected, Received int64 }

func (e *SeqGapError) Error() string {
	return fmt.Sprintf("producer sequence gap: expected %d, received %d", e.Expected, e.Received)
}

// CheckProducer applies the idempotent producer rules to a request p given
// the producer's recorded state (ok=false: none). It returns duplicate=true
// for a request already accepted, or an error for one to refuse.
func CheckProducer(state Producer, ok bool, p Producer) (duplicate bool, err error) {
	switch {
	case !ok:
		if p.Seq != 0 {
			return false, &SeqGapError{Expected: 0, Received: p.Seq}
		}
		return false, nil
	case p.Epoch < state.Epoch:
		return false, &StaleEpochError{Current: state.Epoch}
	case p.Epoch > state.Epoch:
		if p.Seq != 0 {
			return false, ErrNewEpochSeq
		}
		return false, nil
	case p.Seq <= state.Seq:
		return true, nil
	case p.Seq == state.Seq+1:
		return false, nil
	default:
		return false, &SeqGapError{Expected: state.Seq + 1, Received: p.Seq}
	}
}
