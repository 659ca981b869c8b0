//go:build unix

package persist_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/messages-server/messages/persist"
)

// TestSQLiteLockFollowsSymlinks checks that the one-server lock belongs to
// the database file, not to the name it was opened by: a second server
// given a symbolic link to the file, or a path through a linked directory,
// is refused like one given the same path.
func TestSQLiteLockFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "data", "m.db")
	first, err := persist.Open(t.Context(), persist.Config{URL: "sqlite:" + real})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer first.Close()
	fileLink := filepath.Join(dir, "link.db")
	if err := os.Symlink(real, fileLink); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(dir, "linkdir")
	if err := os.Symlink(filepath.Join(dir, "data"), dirLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fileLink, filepath.Join(dirLink, "m.db")} {
		second, err := persist.Open(t.Context(), persist.Config{URL: "sqlite:" + p})
		if err == nil {
			second.Close()
			t.Errorf("Open(%s), a link to an open database, succeeded; want ErrLocked", p)
			continue
		}
		if !errors.Is(err, persist.ErrLocked) {
			t.Errorf("Open(%s) = %v, want ErrLocked", p, err)
		}
	}
}
