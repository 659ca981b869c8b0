package hub

import (
	"errors"
	"fmt"
	"time"

	"github.com/messages-server/messages/persist"
)

// Errors returned by the hub to its callers; the HTTP and WebSocket layers
// turn them into statuses and close codes.
var (
	// ErrNotFound means the channel does not exist. It is the store's own
	// (persist.ErrNotFound), not a second one: errors.Is matches it
	// whichever layer returned it.
	ErrNotFound = persist.ErrNotFound
	// ErrExists means a channel with that id already exists.
	ErrExists = errors.New("channel already exists")
	// ErrChannelClosed means the channel was closed: it takes no more messages.
	ErrChannelClosed = errors.New("channel is closed")
	// ErrOverloaded means too many messages wait to be persisted (the
	// database is slow or down); the append was refused and may be retried.
	ErrOverloaded = errors.New("too many messages waiting to be persisted, retry later")
	// ErrTooManyChannels means this process runs as many channels as it
	// may (MaxOpenChannels); retry later.
	ErrTooManyChannels = errors.New("too many open channels, retry later")
	// ErrGeneratorRate means a new generator would take the generators
	// past their total rate (MaxGeneratorRate); retry later.
	ErrGeneratorRate = errors.New("the generators' total rate would pass its bound, retry later")
	// ErrShuttingDown means the server is stopping.
	ErrShuttingDown = errors.New("server is shutting down")
	// ErrChannelFailed means the channel's messages could not be
	// persisted and its actor stopped: the messages not yet durable are
	// lost, and the channel's subscribers were ended.
	ErrChannelFailed = errors.New("channel failed: its messages could not be persisted")
	// ErrChannelDeleted means the channel was deleted while the request
	// was pending: its history is gone, and a message it took is not kept.
	ErrChannelDeleted = errors.New("channel was deleted")
	// ErrGeneratorChannel means the channel is written by its generator
	// alone: producers may neither append to it nor close it.
	ErrGeneratorChannel = errors.New("channel is written by its generator")
)

// StoreErr maps an error of the store (package persist) to the hub's:
// ErrNotFound, ErrExists, a *MovedError, or a *StoreError.
func StoreErr(err error) error {
	var se *StoreError
	switch {
	case errors.As(err, &se):
		return err
	case errors.Is(err, ErrNotFound):
		return ErrNotFound // the sentinel itself, as the other cases
	case errors.Is(err, persist.ErrExists):
		return ErrExists
	case errors.Is(err, persist.ErrOwned):
		oe, _ := errors.AsType[*persist.OwnedError](err)
		return &MovedError{Owner: oe.Owner, Expires: oe.Expires}
	}
	return &StoreError{Err: err}
}

// StoreError wraps a failure of the store (typically: database
// unreachable). The HTTP layer answers it with 503.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "store unavailable: " + e.Err.Error() }

func (e *StoreError) Unwrap() error { return e.Err }

// ErrStoreTimeout means the store did not answer within the store timeout
// (the database is hung or unreachable). It comes wrapped in a StoreError.
var ErrStoreTimeout = errors.New("the database did not answer in time")

// PersistWaitError reports an append that waited for persistence longer
// than the persist-wait timeout. The message was accepted as Seq and will
// be persisted: the client can look for it.
type PersistWaitError struct {
	Seq   int64
	After time.Duration
}

func (e *PersistWaitError) Error() string {
	return fmt.Sprintf("message %d was accepted but not yet persisted after %v; it will be: look for seq %d", e.Seq, e.After, e.Seq)
}

// RecordRefusedError reports an append whose messages were appended and
// persisted (up to Seq) while the store refused, for good, the stream state
// it carried (an idempotent producer's state, a Stream-Seq): that state was
// not recorded, so a retry of the request would be appended again. The edge
// refuses such values first; this is the store's last word when it did not.
type RecordRefusedError struct {
	Seq int64
	Err error
}

func (e *RecordRefusedError) Error() string {
	return fmt.Sprintf("message %d was persisted, but the store refused the request's producer state or Stream-Seq: "+
		"a retry would append it again: %v", e.Seq, e.Err)
}

func (e *RecordRefusedError) Unwrap() error { return e.Err }

// FromError reports a subscription or history read that starts past the
// channel's last seq.
type FromError struct{ From, LastSeq int64 }

func (e *FromError) Error() string {
	return fmt.Sprintf("from=%d is past the channel's last seq %d", e.From, e.LastSeq)
}

// ResetError reports a resume from an epoch whose tail was lost: the client's
// history past Survived is not this channel's history any more.
type ResetError struct {
	Epoch    int64 // the current epoch
	Survived int64 // the last seq the client's epoch and the current one share
}

func (e *ResetError) Error() string {
	return fmt.Sprintf("the channel restarted (epoch %d) and lost messages after seq %d: resume from at most %d with the new epoch",
		e.Epoch, e.Survived, e.Survived)
}

// BadRequestError reports an invalid parameter.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }
