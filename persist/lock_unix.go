//go:build unix

package persist

import (
	"errors"
	"os"
	"syscall"
)

// lockFile creates the file at path if needed and takes an exclusive lock
// on it (flock), without waiting: errLockHeld if another open file holds
// it. The lock lasts until the returned file is closed or the process
// ends, however it ends.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLockHeld
		}
		return nil, err
	}
	return f, nil
}
