package persist_test

import (
	"testing"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/persist/storetest"
)

// TestStoreContract runs the same suite on every backend.
func TestStoreContract(t *testing.T) {
	t.Run("postgres", func(t *testing.T) { storetest.Run(t, persisttest.DatabaseURL) })
	t.Run("sqlite", func(t *testing.T) { storetest.Run(t, persisttest.SQLiteURL) })
}
