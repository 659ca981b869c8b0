// Package persist stores channels and their messages durably.
//
// It provides the stored types (Channel, Message), the Store that reads and
// writes them, and the Writer: a pool of workers that gathers batches of
// messages from many channels and commits them together, reporting back to
// each channel when its batch is durable. The store runs on PostgreSQL or on
// a SQLite file, chosen by the database URL; nothing outside this package
// knows which, and nothing in it knows about WebSockets or HTTP.
//
// Files:
//
//   - persist.go: the stored types and the errors
//   - store.go: the Store, its Config, and the backend interface the two
//     databases implement; writes of batches, reads of channels and history
//   - writer.go: the Writer, which gathers batches and commits them
//   - create.go: group commit of creations and take-overs (many per
//     transaction)
//   - lease.go: leases and take-overs in cluster mode
//   - streams.go: Durable Streams state (configuration, producers,
//     Stream-Seq) and its rows, for both backends
//   - limits.go: what both backends can hold, checked at the edge
//   - migrate.go: the schema migrations (package migrations) applied at open
//   - postgres.go, postgres_lease.go, postgres_lock.go, postgres_streams.go:
//     the PostgreSQL backend, its leases, its one-server lock, its stream
//     state
//   - sqlite.go, sqlite_streams.go, sqlite_cgo.go, sqlite_nocgo.go: the
//     SQLite backend (built with cgo only) and its stream state
//   - lock_unix.go, lock_other.go: the file lock of a SQLite database
package persist

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"
)

// ErrNotFound is returned when a channel does not exist.
var ErrNotFound = errors.New("persist: channel not found")

// ErrExists is returned by CreateChannel when the id is already taken.
var ErrExists = errors.New("persist: channel already exists")

// ErrChannelClosed is wrapped by the error of WriteBatches, and of a
// Batch's Done, when the batch has messages past the last seq of a channel
// that is closed: a closed channel takes no more messages.
var ErrChannelClosed = errors.New("persist: channel is closed")

// ErrRejected is wrapped by the error of WriteBatches when the database
// refused the data for a reason that writing it again cannot fix (a
// constraint or a value it does not accept), as opposed to an outage,
// which a retry outlives. A Writer fails the batch that caused it and
// writes the others.
var ErrRejected = errors.New("persist: rejected by the database")

// RefusedError is the error of WriteBatches, and of a Batch's Done, when a
// batch was committed (its messages, its channel's last seq and close mark)
// but the store refused, for good, some of the stream state it carried:
// the producer states and the Stream-Seq it lists were not recorded. The
// messages are stored, contiguous as ever; only the records are missing,
// so a retry of the requests they belonged to is not recognised as a
// duplicate. It only comes from a WriteBatches call of one batch: with
// more, the error wraps ErrRejected and a Writer writes each batch alone.
type RefusedError struct {
	// Channel is the batch's channel.
	Channel string
	// Producers are the producer states that were not recorded.
	Producers []ProducerState
	// StreamSeq is the Stream-Seq that was not recorded, or "".
	StreamSeq string
	// Err is why the store refused them.
	Err error
}

// Error names the channel, what was not recorded and why.
func (e *RefusedError) Error() string {
	var what []string
	for _, p := range e.Producers {
		what = append(what, fmt.Sprintf("producer state (epoch %d, seq %d)", p.Epoch, p.Seq))
	}
	if e.StreamSeq != "" {
		what = append(what, "Stream-Seq")
	}
	return fmt.Sprintf("persist: channel %q: messages stored, but the store refused its %s: %v",
		e.Channel, strings.Join(what, " and "), e.Err)
}

// Unwrap returns the store's reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// ChannelError is the error of WriteBatches when the batches of some
// channels cannot be written, however often they are retried: the channel
// does not exist (ErrNotFound) or is closed (ErrChannelClosed). Nothing of
// the call was stored; the batches of the other channels can be written
// without them. errors.Is sees through it to each channel's error.
type ChannelError struct {
	// Channels maps the id of each failing channel to its error.
	Channels map[string]error
}

// Error lists the failing channels and why, in id order.
func (e *ChannelError) Error() string {
	var b strings.Builder
	for i, id := range slices.Sorted(maps.Keys(e.Channels)) {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "channel %q: %v", id, e.Channels[id])
	}
	return b.String()
}

// Unwrap returns the error of each failing channel.
func (e *ChannelError) Unwrap() []error { return slices.Collect(maps.Values(e.Channels)) }

// ErrLocked is wrapped by the error of Open when another server holds the
// database: a database serves one server at a time (see Config.SkipLock).
var ErrLocked = errors.New("persist: database locked")

// errLockHeld is the error of lockFile and lockPostgres when the lock is
// taken; Open turns it into an explanation wrapping ErrLocked.
var errLockHeld = errors.New("lock held by another process")

// lockWait is how long Open tries to take the server lock before it gives
// up: long enough for the database to notice that the process which held
// it just died, short enough for a person who started a second server by
// mistake.
const lockWait = 3 * time.Second

// retryLock calls lock until it returns something else than errLockHeld,
// for at most lockWait.
func retryLock(ctx context.Context, lock func() error) error {
	deadline := time.Now().Add(lockWait)
	for {
		err := lock()
		if !errors.Is(err, errLockHeld) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// lockedError is Open's error when another server holds the database
// described by what.
func lockedError(what string) error {
	return fmt.Errorf("%w: another messages server is using this database (%s); "+
		"stop it first, or use another database", ErrLocked, what)
}

// ErrFenced is wrapped by the error of WriteBatches, and of a Batch's Done,
// when the batch was written for an epoch of its channel that is no longer
// the current one: another node took the channel over (cluster mode). None
// of the batch was stored; writing it again fails again. The node that
// wrote it has lost the channel.
var ErrFenced = errors.New("persist: channel was taken over by another node (fenced)")

// ErrOwned is wrapped by the error of OpenEpoch in cluster mode when
// another node holds a lease on the channel that has not expired. The
// error is an *OwnedError, which names that node.
var ErrOwned = errors.New("persist: channel is owned by another node")

// OwnedError is the error of OpenEpoch in cluster mode when another node
// holds the channel's lease. errors.Is sees ErrOwned through it.
type OwnedError struct {
	// Channel is the channel's id.
	Channel string
	// Owner is the id of the node that holds the lease.
	Owner string
	// Expires is when the lease expires unless its owner renews it, by the
	// database's clock.
	Expires time.Time
}

// Error names the owner and the expiry of its lease.
func (e *OwnedError) Error() string {
	return fmt.Sprintf("channel %q is owned by node %q until %s", e.Channel, e.Owner,
		e.Expires.UTC().Format(time.RFC3339Nano))
}

// Unwrap returns ErrOwned.
func (e *OwnedError) Unwrap() error { return ErrOwned }

// ErrClosed is wrapped by the error a Batch's Done gets when the Writer was
// closed (its Close context expired) before the batch could be committed.
var ErrClosed = errors.New("persist: writer closed")

// Message is one stored message of a channel.
type Message struct {
	// Seq is the message's sequence number, from 1, contiguous per channel.
	Seq int64
	// Time is the server's append time in Unix microseconds.
	Time int64
	// Data is the message body. It is never modified after creation. Nil
	// is stored as an empty body.
	Data []byte
}

// Generator is the server-side generator a channel was created with.
type Generator struct {
	// Freq is the number of lines per second.
	Freq float64 `json:"freq"`
	// Max is the number of lines, after which the channel closes.
	Max int64 `json:"max"`
}

// Channel is the stored state of a channel.
type Channel struct {
	// ID is the channel id.
	ID string
	// Epoch names the current incarnation of the channel; it grows by one
	// each time a server process takes the channel over (see Store.OpenEpoch).
	Epoch int64
	// CreatedAt is when the channel was created.
	CreatedAt time.Time
	// ClosedAt is when the channel was closed; zero while it is open.
	ClosedAt time.Time
	// LastSeq is the highest seq committed to the store. Messages 1..LastSeq
	// are stored, contiguously.
	LastSeq int64
	// Generator is the generator the channel was created with, or nil.
	Generator *Generator
	// ContentType is the media type of the channel's messages, set when it
	// was created as a Durable Streams stream; "" means text (text/plain).
	ContentType string
	// Owner is the node that holds the channel's lease in cluster mode,
	// or "" if no node ever did.
	Owner string
	// LeaseExpires is when the owner's lease expires unless renewed, by
	// the database's clock; zero without an owner.
	LeaseExpires time.Time
}

// Binary reports whether the channel's messages are bytes rather than
// text: any content type but text/* and JSON. Binary data travels
// base64-encoded where a text transport carries it.
func (c Channel) Binary() bool { return BinaryType(c.ContentType) }

// BinaryType reports whether content type ct (as a channel carries it)
// names bytes rather than text.
func BinaryType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true
	}
	return !strings.HasPrefix(mt, "text/") && mt != "application/json"
}

// Open reports whether the channel is still open.
func (c Channel) Open() bool { return c.ClosedAt.IsZero() }

// Batch is a run of messages of one channel to commit, handed to a Writer.
type Batch struct {
	// Channel is the channel id.
	Channel string
	// Messages are contiguous and follow the channel's last committed seq.
	// May be empty when only Close is set.
	Messages []Message
	// Ends, if not nil, has an entry per message of Messages: a non-nil
	// Ends[i] makes Messages[i] a run of len(Ends[i]) messages, seqs
	// Seq, Seq+1, … with one Time, whose bodies are Data[Ends[i][k-1]:
	// Ends[i][k]] (the first from 0), so that a large append of small
	// messages is held as its bytes and a few offsets, not a Message per
	// message. Each and Rows read a batch with its runs expanded.
	Ends [][]uint32
	// Close marks the channel closed, after Messages, in the same commit.
	Close bool
	// Producers are idempotent producers' states to record in the same
	// commit as Messages (a state never moves backwards); StreamSeq, if not
	// "", the channel's last Stream-Seq. Both only come with messages.
	Producers []ProducerState
	StreamSeq string
	// Epoch, if not 0, fences the batch: it is written only while Epoch is
	// the channel's current epoch, and fails with ErrFenced once another
	// node has taken the channel over. 0 writes whatever the epoch.
	Epoch int64
	// Done is called exactly once, from a writer goroutine, when the batch is
	// committed (err == nil) or when the writer gave up on it (err != nil):
	// its channel does not exist (the error wraps ErrNotFound) or is closed
	// (ErrChannelClosed), its epoch is not the channel's any more
	// (ErrFenced), the database refused it (ErrRejected), or the
	// writer was shut down before the store came back (ErrClosed). A
	// *RefusedError means that the batch was committed without the stream
	// state it lists. It must not block.
	Done func(err error)
}

// LastSeq is the seq of the last message of the batch, or 0 if it is empty.
func (b *Batch) LastSeq() int64 {
	if len(b.Messages) == 0 {
		return 0
	}
	return b.Messages[len(b.Messages)-1].Seq + int64(b.runLen(len(b.Messages)-1)) - 1
}

// runLen returns how many messages Messages[i] stands for.
func (b *Batch) runLen(i int) int {
	if b.Ends == nil || b.Ends[i] == nil {
		return 1
	}
	return len(b.Ends[i])
}

// Rows returns the number of messages of the batch, runs expanded.
func (b *Batch) Rows() int {
	if b.Ends == nil {
		return len(b.Messages)
	}
	n := 0
	for i := range b.Messages {
		n += b.runLen(i)
	}
	return n
}

// Each calls fn with every message of the batch in order, runs expanded,
// until fn returns false.
func (b *Batch) Each(fn func(m Message) bool) {
	for i, m := range b.Messages {
		if b.Ends == nil || b.Ends[i] == nil {
			if !fn(m) {
				return
			}
			continue
		}
		from := uint32(0)
		for k, end := range b.Ends[i] {
			if !fn(Message{Seq: m.Seq + int64(k), Time: m.Time, Data: m.Data[from:end:end]}) {
				return
			}
			from = end
		}
	}
}
