//go:build !unix

package persist

import (
	"errors"
	"os"
)

// lockFile would lock the file at path; this system has no flock, and a
// SQLite database is not opened without its lock.
func lockFile(string) (*os.File, error) {
	return nil, errors.New("locking the database file is not supported on this system")
}
