package persist

// The epoch fence of PostgreSQL batch writes, without a write to the
// channels' rows.
//
// An ordinary flush (one that closes no channel) stores its messages and
// nothing else: the channel's last seq is the highest seq of its messages,
// max(seq) over the primary key of messages, an index-only backward probe.
// What the channels row's UPDATE used to give on top of that, the
// serialisation of a late write of a fenced old owner against a take-over,
// comes from transaction-level advisory locks, which write neither tuples
// nor WAL:
//
//   - a write transaction takes, before anything else, the fence lock of
//     every bucket its channels hash to, shared; then, in a later statement
//     (whose snapshot therefore sees every take-over that committed before
//     it had the locks), checks each channel's epoch and close mark
//     (checkChannelsSQL), and stores the messages only if all pass;
//   - a take-over (openEpochs) or a delete takes the fence locks of its
//     channels' buckets exclusively, which waits for every write
//     transaction holding one of them to end, and only then, in a later
//     statement, reads the last seq (max(seq)) and raises the epoch.
//
// So either the old owner's batch commits before the take-over has its
// locks, and the take-over's start_seq counts it; or the take-over commits
// first, and the batch's check sees the new epoch and stores nothing
// (fenced, never committed). A write never waits for a fence lock while it
// holds another lock, and every transaction takes its fence locks in bucket
// order, so fence locks never wait in a cycle.
//
// The locks are keyed by a bucket of the channel id, not the id: PostgreSQL's
// lock table has room for max_locks_per_transaction (64 by default) times
// max_connections locks in all, and a write transaction of a thousand
// channels must not take a thousand. With fenceBuckets buckets a take-over
// also waits for writes of unrelated channels of the same buckets, and
// stops them while it runs: a take-over is a short transaction, and rare.

import (
	"context"
	"hash/fnv"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// fenceBuckets is how many fence locks there are per schema (fenceLockKey
// keeps the low 6 bits of the key for the bucket).
const fenceBuckets = 64

// fenceLockClass is the upper half of the keys of the fence locks, "msgw";
// the lower half is the bucket, in the low bits of a hash of the schema
// (as the server lock's, so that deployments sharing one database in
// different schemas do not stop each other). pg_locks shows a fence lock as
// locktype advisory, classid 1836279671, objsubid 2.
const fenceLockClass = `1836279671` // 0x6d736777

// fenceLockKey is the SQL of the key of the bucket b of the schema, for the
// two-argument advisory lock functions.
const fenceLockKey = fenceLockClass + `, (hashtext(current_schema()) & ~63) | b`

// lockFenceSharedSQL takes the fence locks of the buckets $1 (int4[]) in the
// order of the array, shared; lockFenceSQL takes them exclusively.
const (
	lockFenceSharedSQL = `SELECT count(pg_advisory_xact_lock_shared(` + fenceLockKey + `)) FROM unnest($1::int4[]) AS s(b)`
	lockFenceSQL       = `SELECT count(pg_advisory_xact_lock(` + fenceLockKey + `)) FROM unnest($1::int4[]) AS s(b)`
)

// fenceBucket returns the bucket of the channel id.
func fenceBucket(id string) int32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int32(h.Sum32() % fenceBuckets)
}

// fenceBucketsOf returns the distinct buckets of ids, in ascending order:
// the order every transaction takes fence locks in.
func fenceBucketsOf(ids []string) []int32 {
	var seen [fenceBuckets]bool
	bs := make([]int32, 0, min(len(ids), fenceBuckets))
	for _, id := range ids {
		if b := fenceBucket(id); !seen[b] {
			seen[b] = true
			bs = append(bs, b)
		}
	}
	slices.Sort(bs)
	return bs
}

// lastSeqSQL is the last seq of the channel of the row c: the highest seq
// of its messages. channels.last_seq is that value as of the channel's close
// or its last take-over, a floor (and all there is once a channel's
// messages are gone).
const lastSeqSQL = `GREATEST(c.last_seq, (SELECT max(m.seq) FROM messages m WHERE m.channel_id = c.id))`

// checkChannelsSQL counts the channels, of arrays of ids, last seqs and
// epochs, that a batch may be written to: they exist, are at the batch's
// epoch (0: any), and are open or closed at or above its last seq (a retry
// of what is stored passes). It runs after the transaction's fence locks
// are held.
const checkChannelsSQL = `SELECT count(*)
 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, last_seq, epoch)
 JOIN channels c ON c.id = v.id
 WHERE (c.closed_at IS NULL OR v.last_seq <= c.last_seq)
   AND (v.epoch = 0 OR c.epoch = v.epoch)`

// fenceArrays splits updates into the columns checkChannelsSQL takes, for
// the channels the transaction does not close, and those updateChannelsSQL
// takes, for the channels it closes.
func fenceArrays(updates []channelUpdate) (check, closing []channelUpdate) {
	for _, u := range updates {
		if u.close {
			closing = append(closing, u)
		} else {
			check = append(check, u)
		}
	}
	return check, closing
}

// fenceAndUpdate runs, in one round trip, the first statements of a write
// transaction: the fence locks of every channel of updates, shared; the
// check of the channels the transaction does not close; and the update of
// those it closes (updateChannelsSQL under lockWaitSQL, or, if ordered,
// updateChannelsOrderedSQL). It returns how many channels passed.
func fenceAndUpdate(ctx context.Context, tx pgx.Tx, updates []channelUpdate, ordered bool) (int64, error) {
	ids := make([]string, len(updates))
	for i, u := range updates {
		ids[i] = u.id
	}
	check, closing := fenceArrays(updates)
	b := &pgx.Batch{}
	b.Queue(lockFenceSharedSQL, fenceBucketsOf(ids))
	var passed int64
	if len(check) > 0 {
		cids, lasts, _, epochs := updateArrays(check)
		b.Queue(checkChannelsSQL, cids, lasts, epochs).QueryRow(func(row pgx.Row) error {
			return row.Scan(&passed)
		})
	}
	if len(closing) > 0 {
		uids, lasts, closes, epochs := updateArrays(closing)
		if !ordered {
			b.Queue(lockWaitSQL)
		}
		q := updateChannelsSQL
		if ordered {
			q = updateChannelsOrderedSQL
		}
		b.Queue(q, uids, lasts, closes, epochs).Exec(func(tag pgconn.CommandTag) error {
			passed += tag.RowsAffected()
			return nil
		})
		if !ordered {
			b.Queue(resetLockWaitSQL)
		}
	}
	return passed, tx.SendBatch(ctx, b).Close()
}
