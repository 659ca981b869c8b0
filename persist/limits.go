package persist

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// What both backends can hold. The edge (the HTTP handlers) checks every
// value a request carries to the store against these, so that a value one
// backend would refuse is refused with a 400 before anything is accepted,
// on both backends alike: PostgreSQL refuses invalid UTF-8 and NUL in text
// columns and index entries above about 2.7 kB, where SQLite stores them.

// MaxFieldBytes is the longest text the store keeps in a field of a
// channel other than its id and its messages: a content type, a Stream-Seq,
// an idempotent producer's id. A producer id is part of the primary key of
// the producers table, and PostgreSQL limits an index entry to about
// 2.7 kB (a third of a page) with the channel id: 1 KiB leaves room.
const MaxFieldBytes = 1024

// MaxChannelIDBytes is the longest channel id (it is the primary key of the
// channels table, and part of every other table's).
const MaxChannelIDBytes = 128

// ErrInvalid is wrapped by the error of a value the store cannot hold (see
// CheckField). errors.Is sees it through a *FieldError.
var ErrInvalid = errors.New("persist: value the store cannot hold")

// FieldError is the error of CheckField: which field, and why the store
// cannot hold its value. errors.Is sees ErrInvalid through it.
type FieldError struct {
	// Field names the value, as the caller named it.
	Field string
	// Reason says what is wrong with it, without quoting it.
	Reason string
}

// Error is the field's name followed by the reason.
func (e *FieldError) Error() string { return e.Field + " " + e.Reason }

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// CheckField reports whether value can be stored in a text field of the
// store: valid UTF-8, no NUL byte, at most MaxFieldBytes bytes. The error
// is a *FieldError naming the value field (the caller's name for it, such
// as a header's) and saying what is wrong, without quoting the value.
func CheckField(field, value string) error {
	switch {
	case len(value) > MaxFieldBytes:
		return &FieldError{field, fmt.Sprintf("is %d bytes long; at most %d are allowed", len(value), MaxFieldBytes)}
	case !utf8.ValidString(value):
		return &FieldError{field, "is not valid UTF-8"}
	case strings.IndexByte(value, 0) >= 0:
		return &FieldError{field, "contains a NUL byte"}
	}
	return nil
}

// CheckCount reports whether n, a count or sequence number the store keeps
// in a 64-bit integer column, is not negative. The error is a *FieldError
// naming field.
func CheckCount(field string, n int64) error {
	if n < 0 {
		return &FieldError{field, fmt.Sprintf("is %d; it must not be negative", n)}
	}
	return nil
}

// CheckProducer reports whether a producer's state can be stored: its id a
// field (CheckField), its epoch and seq not negative.
func CheckProducer(p ProducerState) error {
	return errors.Join(CheckField("producer id", p.ID), CheckCount("producer epoch", p.Epoch),
		CheckCount("producer seq", p.Seq))
}
