//go:build !cgo

package persist

// sqliteBuilt reports whether the SQLite backend is compiled in: it needs
// cgo, so without it Open refuses sqlite: URLs with an explanation.
const sqliteBuilt = false

// sqlitePermanent is never reached without the SQLite backend.
func sqlitePermanent(error) bool { return false }
