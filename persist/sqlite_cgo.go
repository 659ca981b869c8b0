//go:build cgo

package persist

import (
	"errors"

	_ "github.com/amacneil/dbmate/v2/pkg/driver/sqlite" // registers the sqlite: migrations driver
	"github.com/mattn/go-sqlite3"                       // registers the sqlite3 database/sql driver
)

// sqliteBuilt reports whether the SQLite backend is compiled in: it needs
// cgo.
const sqliteBuilt = true

// sqlitePermanent reports whether err is a SQLite error that a retry gets
// again: a constraint, a value of the wrong type or out of range, a row too
// big. A busy or locked database, an I/O error or a full disk may pass.
func sqlitePermanent(err error) bool {
	e, ok := errors.AsType[sqlite3.Error](err)
	if !ok {
		return false
	}
	switch e.Code {
	case sqlite3.ErrConstraint, sqlite3.ErrMismatch, sqlite3.ErrRange, sqlite3.ErrTooBig:
		return true
	}
	return false
}
