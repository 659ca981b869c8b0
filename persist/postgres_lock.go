package persist

// The server lock of a PostgreSQL store: one server per database.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverLockClass is the upper half of the key of the session-level
// advisory lock an open PostgreSQL store holds, "msgs"; the lower half is a
// hash of the schema its tables are in (the first of the search_path), so
// that deployments with tables of their own in one database do not exclude
// each other, and so that the lock can be taken before the tables exist.
// pg_locks shows the lock as locktype advisory, classid 1836279667, objid
// that hash, objsubid 1.
const serverLockClass int64 = 0x6d736773

// serverLockKey is the SQL expression of the lock's key.
const serverLockKey = `($1::bigint << 32 | (hashtext(current_schema())::bigint & 4294967295))`

// lockCheckInterval is how often an open store checks that it still holds
// the server lock.
const lockCheckInterval = time.Second

// watchLock checks the server lock every lockCheckInterval until close, and
// takes it again when its connection went (the database restarted, or
// something cut the connection). When another server took it meanwhile,
// watchLock closes lostCh and returns: this store writes nothing more
// (writeTx checks the lock in every transaction), and the server must stop.
func (p *postgres) watchLock(log *slog.Logger) {
	defer close(p.watched)
	t := time.NewTicker(lockCheckInterval)
	defer t.Stop()
	failing := false // warn once per outage, not every tick
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), lockPingTimeout+lockWait)
		err := p.checkLock(ctx)
		cancel()
		switch {
		case errors.Is(err, ErrLocked):
			log.Error("persist: another server took the database lock; this one writes nothing more", "err", err)
			close(p.lostCh)
			return
		case err != nil && !failing:
			log.Warn("persist: cannot check the database lock, will retry", "err", err)
		}
		failing = err != nil
	}
}

// lost returns a channel closed when another server took the lock.
func (p *postgres) lost() <-chan struct{} { return p.lostCh }

// errLockNotHeld fails a write transaction of a store whose lock's
// connection is gone; the writer retries it once watchLock has taken the
// lock again.
var errLockNotHeld = errors.New("persist: the server lock is not held (its connection was lost); retrying once it is taken again")

// checkLockInTx fails tx unless this store's lock connection holds the
// server lock: a store that lost it (and maybe another server took it)
// must not write. Done inside the write transaction, just before its
// commit, the check leaves no time for another server to start writing.
func (p *postgres) checkLockInTx(ctx context.Context, tx pgx.Tx) error {
	q, args, check := p.lockCheck()
	if q == "" {
		return check(true, nil)
	}
	var held bool
	err := tx.QueryRow(ctx, q, args...).Scan(&held)
	return check(held, err)
}

// lockCheckSQL reports whether the store's lock connection is still
// there, and so still holds the server lock: that connection also holds,
// exclusively, a session-level advisory lock of a key of its own (the
// witness, $1), so a try to take it shared from a write transaction fails
// exactly while the lock connection lives. (Once it is gone every try
// succeeds, shared locks not excluding each other, and each transaction
// ends, failed, releasing it.) It costs a lookup in the lock table, where
// reading pg_locks would copy the whole table, with every partition
// locked, once per transaction.
const lockCheckSQL = `SELECT NOT pg_try_advisory_xact_lock_shared($1::bigint)`

// lockCheck returns the query that checks the server lock from inside a
// write transaction, and the function that turns its answer into the
// transaction's error. The query is "" when there is nothing to ask: no
// lock is taken (Config.SkipLock), or its connection is known lost; check
// then ignores its arguments.
func (p *postgres) lockCheck() (q string, args []any, check func(held bool, err error) error) {
	if p.lockConfig == nil {
		return "", nil, func(bool, error) error { return nil }
	}
	p.mu.Lock()
	witness, held := p.lockWitness, p.lock != nil
	p.mu.Unlock()
	if !held {
		return "", nil, func(bool, error) error { return errLockNotHeld }
	}
	return lockCheckSQL, []any{witness}, func(held bool, err error) error {
		switch {
		case err != nil:
			return fmt.Errorf("check the server lock: %w", err)
		case !held:
			return errLockNotHeld
		}
		return nil
	}
}

// lockPostgres opens a connection and takes the server lock on it, waiting
// at most lockWait for another holder to go. A single server takes it
// alone; the nodes of a cluster (shared) take it together, so that a
// single server and a cluster never run on one database at once. The lock lasts until the connection closes: when the store is
// closed, or when the process dies and the database sees the connection
// go.
func lockPostgres(ctx context.Context, config *pgx.ConnConfig, desc string, shared bool) (*pgx.Conn, int64, error) {
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return nil, 0, fmt.Errorf("persist: connect: %w", err)
	}
	err = retryLock(ctx, func() error {
		var locked bool
		q := `SELECT pg_try_advisory_lock(` + serverLockKey + `)`
		if shared {
			q = `SELECT pg_try_advisory_lock_shared(` + serverLockKey + `)`
		}
		err := conn.QueryRow(ctx, q, serverLockClass).Scan(&locked)
		if err == nil && !locked {
			err = errLockHeld
		}
		return err
	})
	if errors.Is(err, errLockHeld) {
		what := "PostgreSQL database " + desc + ", advisory lock class 1836279667"
		if shared {
			what += ", held by a server not in cluster mode"
		}
		err = lockedError(what)
	} else if err != nil {
		err = fmt.Errorf("persist: lock the database: %w", err)
	}
	var witness int64
	if err == nil {
		witness, err = takeWitness(ctx, conn)
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, 0, err
	}
	return conn, witness, nil
}

// witnessLockClass is the upper half of a witness key (see lockCheckSQL),
// "msgx"; the lower half is random, so that the lock connections of
// several servers or nodes, or of one store over time, hold different
// witnesses.
const witnessLockClass int64 = 0x6d736778

// takeWitness takes, on the lock connection conn, the session-level
// advisory lock of a new witness key, and returns the key.
func takeWitness(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	key := witnessLockClass<<32 | int64(binary.BigEndian.Uint32(b[:]))
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::bigint)`, key).Scan(&locked); err != nil {
		return 0, fmt.Errorf("persist: take the lock's witness: %w", err)
	}
	if !locked {
		return 0, fmt.Errorf("persist: the lock's witness %#x is held by another session; try again", key)
	}
	return key, nil
}

// lockPingTimeout bounds checkLock's ping of the lock's connection.
const lockPingTimeout = 5 * time.Second

// checkLock checks that the lock's connection is alive. If it is not (the
// database restarted, or the connection was cut), the lock went with it:
// checkLock takes it again on a new connection, or, if another server took
// it meanwhile, returns an error wrapping ErrLocked.
func (p *postgres) checkLock(ctx context.Context) error {
	if p.lockConfig == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lock != nil {
		// Not on ctx: pgx closes a connection whose query is cut short, and
		// a caller's short deadline would then drop the lock it checks.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockPingTimeout)
		err := p.lock.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if p.lock != nil {
		p.lock.Close(context.WithoutCancel(ctx))
		p.lock = nil
	}
	lock, witness, err := lockPostgres(ctx, p.lockConfig, p.lockDesc, p.lockShared)
	if err != nil {
		return fmt.Errorf("server lock lost: %w", err)
	}
	p.lock, p.lockWitness = lock, witness
	return nil
}
