package persist

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist/persisttest"
)

// TestLockCheckWitness: the check a write transaction makes (lockCheckSQL)
// reports the lock held while the lock connection lives, and not held once
// it is gone, in every transaction that asks, even while another such
// transaction is still open (an exclusive try would have taken the witness
// in the first and told the second that the lock was held).
func TestLockCheckWitness(t *testing.T) {
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(persisttest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	witness, err := takeWitness(ctx, lock)
	if err != nil {
		t.Fatal(err)
	}
	var txs [2]pgx.Tx
	for i := range txs {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if txs[i], err = conn.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		defer txs[i].Rollback(ctx)
	}
	check := func(tx pgx.Tx) bool {
		t.Helper()
		var held bool
		if err := tx.QueryRow(ctx, lockCheckSQL, witness).Scan(&held); err != nil {
			t.Fatal(err)
		}
		return held
	}
	for i, tx := range txs {
		if !check(tx) {
			t.Fatalf("transaction %d: the lock is reported lost while its connection lives", i)
		}
	}
	// Terminate the lock connection and wait for its backend to exit
	// (which releases its locks).
	var gone bool
	if err := txs[0].QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, lock.PgConn().PID()).Scan(&gone); err != nil || !gone {
		t.Fatalf("terminating the lock connection: %v %v", gone, err)
	}
	for i, tx := range txs {
		if check(tx) {
			t.Fatalf("transaction %d: the lock is reported held after its connection went", i)
		}
	}
}
