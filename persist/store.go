package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/messages-server/messages/internal/metric"
)

// Config configures a Store. The zero value of every field except URL means
// its default.
type Config struct {
	// URL names the database, and its scheme the backend. Required.
	//
	// PostgreSQL: postgres://user:pass@host:port/db (or postgresql://) with
	// libpq query parameters (sslmode, search_path, application_name,
	// pool_max_conns, ...). It must be a URL, not a key=value string,
	// because the migrations use it too.
	//
	// SQLite: sqlite:relative/path.db, sqlite:/abs/path.db or
	// sqlite:///abs/path.db (sqlite3: too). The file and its directory are
	// created if missing; query parameters are go-sqlite3 connection
	// options (_cache_size=..., ...).
	URL string
	// Logger receives the migration log and store errors. Nil discards.
	Logger *slog.Logger
	// MaxConns is the size of the connection pool (on SQLite: of the read
	// pool; writes always use one connection). Zero means 16, or the URL's
	// pool_max_conns when it has one.
	MaxConns int32
	// SkipMigrations opens the store without creating the database or
	// running the migrations, for deployments that run them separately.
	// The zero value runs them.
	SkipMigrations bool
	// SkipLock opens a PostgreSQL store without the lock that keeps every
	// other server off the database. Two servers writing the same channels
	// lose messages, so this is only for servers that coordinate otherwise
	// (a cluster that fences writes with leases). The zero value locks. A
	// SQLite file is always locked.
	SkipLock bool
	// Node, if not empty, turns on cluster mode (PostgreSQL only): it is
	// this process's node id. CreateChannel records the node as the new
	// channel's owner, with a lease of Lease, and OpenEpoch takes a
	// channel over only when no other node holds a lease on it. RenewLeases
	// keeps the node's leases. The nodes of a cluster share the server
	// lock, which keeps single servers off their database (and them off a
	// single server's); leases and epoch fencing keep them off each
	// other's channels. The zero value is single-server mode.
	Node string
	// Lease is how long a lease holds without renewal, in cluster mode.
	// Default 5s.
	Lease time.Duration
	// Metrics makes the store's metrics (the size and duration of its
	// creation transactions). Nil records none. A metric made twice (by a
	// second Store) is shared.
	Metrics metric.Registry
}

// defaultLease is Config.Lease when it is zero.
const defaultLease = 5 * time.Second

// defaultMaxConns is Config.MaxConns when neither it nor the URL set one:
// enough for a Writer's workers and for concurrent catch-up reads.
const defaultMaxConns = 16

// backend is one database engine under Store: PostgreSQL (postgres.go) or
// SQLite (sqlite.go). Store checks the arguments and wraps the errors with
// what it was doing; a backend returns ErrNotFound or ErrExists, possibly
// wrapped, for a missing or taken channel, and the driver's errors as they
// are. A backend is safe for concurrent use.
type backend interface {
	// describe returns what Store.LogValue shows.
	describe() slog.Value
	// lost returns a channel closed when another server took the server
	// lock from this store (nil: the lock cannot be lost).
	lost() <-chan struct{}
	// close closes every connection, waiting for those in use.
	close()
	// ping reports whether the database answers.
	ping(ctx context.Context) error
	// createChannels inserts the channels cs (distinct ids, in id order)
	// in one transaction, each at the first epoch at or above its
	// cfg.Epoch and above every deleted channel's, owned by node with a
	// lease of lease unless node is "". It returns the new record of
	// each of cs, in order, or a zero Channel (ID "") for an id that was
	// taken.
	createChannels(ctx context.Context, cs []newChannel, node string, lease time.Duration) ([]Channel, error)
	// channel reads channel id, or returns ErrNotFound.
	channel(ctx context.Context, id string) (Channel, error)
	// channels reads up to limit (>= 1) channels with id > after, by id.
	channels(ctx context.Context, after string, limit int) ([]Channel, error)
	// messages reads up to limit (>= 1) messages of id with seq > after.
	messages(ctx context.Context, id string, after int64, limit int) ([]Message, error)
	// openEpochs starts, in one transaction, the next epoch of each of
	// the channels ids (distinct, in id order), recording that it starts
	// at the channel's last seq. With node not "" (cluster mode) it takes
	// each over for node with a lease of lease, unless another node holds
	// an unexpired lease on it. It returns the outcome of each id, in
	// order: the new record, ErrNotFound, or an *OwnedError naming the
	// node that holds the channel.
	openEpochs(ctx context.Context, ids []string, node string, lease time.Duration) ([]outcome, error)
	// renewLeases records node's heartbeat and extends to lease from now
	// the leases node holds on open channels, in one statement, and
	// returns the ids of those channels.
	renewLeases(ctx context.Context, node string, lease time.Duration) ([]string, error)
	// releaseLeases ends the leases node holds, so that other nodes may
	// take its channels over at once.
	releaseLeases(ctx context.Context, node string) error
	// orphans returns up to limit (>= 1) open channels with a generator
	// that no node holds an unexpired lease on, by id.
	orphans(ctx context.Context, limit int) ([]string, error)
	// epochs returns the current epoch and last seq of id and, if a later
	// epoch than epoch exists, the seq the first of them started at; or
	// ErrNotFound.
	epochs(ctx context.Context, id string, epoch int64) (current, last int64, next *int64, err error)
	// deleteChannel deletes channel id, its epochs and its messages in one
	// transaction and raises the epoch floor to its epoch, or returns
	// ErrNotFound.
	deleteChannel(ctx context.Context, id string) error
	// deleteClosedBefore does what deleteChannel does, in one transaction,
	// to up to limit (>= 1) channels closed before t, those closed first
	// first, and returns their ids.
	deleteClosedBefore(ctx context.Context, t time.Time, limit int) ([]string, error)
	// writeBatches commits the messages of batches and the updates (one per
	// channel of batches) in one transaction. An update of a channel that
	// does not exist, that is closed and would get messages past its last
	// seq, or whose epoch is not the update's (unless that is 0), fails the
	// transaction with the error refused returns.
	writeBatches(ctx context.Context, batches []*Batch, updates []channelUpdate) error
	// stream reads the stream state of id, or returns ErrNotFound.
	stream(ctx context.Context, id string) (StreamState, error)
	// saveStreamWrites stores the last Stream-Seq (unless "") and moves a
	// producer's state forward (unless nil), in one transaction; ErrNotFound
	// if id does not exist.
	saveStreamWrites(ctx context.Context, id, seq string, p *ProducerState) error
	// markDeleted sets deleted_at of id, or returns ErrNotFound.
	markDeleted(ctx context.Context, id string) error
	// touchStream records an access to id now; ErrNotFound if id does
	// not exist.
	touchStream(ctx context.Context, id string) error
	// streamIdle returns how long ago the last access to id was
	// recorded; ErrNotFound if id does not exist.
	streamIdle(ctx context.Context, id string) (time.Duration, error)
	// forks counts the channels forked from id.
	forks(ctx context.Context, id string) (int, error)
	// permanent reports whether err, from writeBatches, says that the
	// database refused the data (a constraint, a value it does not take),
	// so that writing the same batches again would fail again.
	permanent(err error) bool
}

// channelUpdate is what a WriteBatches transaction changes in one channel's
// record.
type channelUpdate struct {
	id    string
	last  int64 // the highest seq of its batches; last_seq never goes down
	close bool  // mark the channel closed
	epoch int64 // the epoch the channel must be at; 0: any
}

// channelState is what refused needs of a channel's record, as the
// transaction that could not update it sees it.
type channelState struct {
	closed bool
	last   int64
	epoch  int64
	// next is, for a channel that moved past the epoch of the batch being
	// written, the seq the next epoch after the batch's started at (what
	// was stored when another node took the channel over); -1 if unknown.
	next int64
}

// errStored is the error of a batch refused by the epoch fence whose
// messages are stored all the same: an earlier attempt committed it (its
// outcome was not known: the connection was lost during the COMMIT), and
// another node took the channel over after that. The writer reports it
// written.
var errStored = errors.New("persist: batch already stored before the channel moved")

// refused returns the error of a WriteBatches transaction that could not
// apply every update, given the state of the channels of updates that
// exist: a *ChannelError naming each channel that does not exist, that has
// moved on from the update's epoch, or that is closed below the update's
// last seq.
func refused(updates []channelUpdate, states map[string]channelState) error {
	errs := make(map[string]error)
	for _, u := range updates {
		st, ok := states[u.id]
		switch {
		case !ok:
			errs[u.id] = ErrNotFound
		case u.epoch != 0 && st.epoch != u.epoch && st.next >= u.last && !u.close:
			// A close is never stored under a take-over: a closed
			// channel is not taken over.
			errs[u.id] = errStored
		case u.epoch != 0 && st.epoch != u.epoch:
			errs[u.id] = fmt.Errorf("%w: batch of epoch %d, channel at epoch %d", ErrFenced, u.epoch, st.epoch)
		case st.closed && st.last < u.last:
			errs[u.id] = fmt.Errorf("%w: new messages up to seq %d after the last, %d", ErrChannelClosed, u.last, st.last)
		}
	}
	if len(errs) == 0 {
		return errors.New("update channels: fewer rows changed than channels, yet all exist and are open")
	}
	return &ChannelError{Channels: errs}
}

// Store is the store of channels and messages, on PostgreSQL or on a SQLite
// file; the methods behave the same on both. It is safe for concurrent use.
// Create it with Open; the zero value is not usable.
type Store struct {
	b       backend
	node    string             // cluster mode's node id; "" in single-server mode
	lease   time.Duration      // cluster mode's lease
	creator *group[newChannel] // group-commits CreateChannel and CreateStream
	takers  *group[string]     // group-commits OpenEpoch
}

// Open opens the database that cfg.URL names, choosing the backend by the
// URL's scheme: postgres:// or postgresql:// for PostgreSQL, sqlite: or
// sqlite3: for a SQLite file. It creates the database if it does not exist,
// brings its schema up to date, opens the connections and checks that the
// database answers. Migrations of concurrent Opens on the same PostgreSQL
// database are serialised.
//
// One server at a time uses a database: the store holds a lock until
// Close, or until the process ends, however it ends. On SQLite it is an
// exclusive flock on the file <database>.lock beside the database; on
// PostgreSQL a session-level advisory lock (pg_locks shows it with classid
// 1836279667 and objid the oid of the channels table) on a connection of
// its own, which the database releases when that connection closes; Ping
// checks that it is still held. If another process (or another Store)
// holds the lock, Open fails within seconds with an error wrapping
// ErrLocked.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The scheme is cut out by hand: url.Parse errors quote the whole URL,
	// password included.
	scheme, _, found := strings.Cut(cfg.URL, ":")
	if !found || scheme == "" || strings.ContainsAny(scheme, "/?#@") {
		return nil, errors.New("persist: database URL has no scheme: use postgres://… or sqlite:…")
	}
	var (
		b     backend
		err   error
		slots = groupSlotsPostgres
	)
	// Schemes are case-insensitive (RFC 3986), the drivers' parsers not.
	scheme = strings.ToLower(scheme)
	cfg.URL = scheme + cfg.URL[len(scheme):]
	if cfg.Lease <= 0 {
		cfg.Lease = defaultLease
	}
	switch scheme {
	case "postgres", "postgresql":
		b, err = openPostgres(ctx, cfg)
	case "sqlite", "sqlite3":
		if cfg.Node != "" {
			return nil, errors.New("persist: cluster mode needs PostgreSQL: a SQLite file " +
				"serves one server; use a postgres:// URL, or run without cluster mode")
		}
		b, err = openSQLite(ctx, cfg)
		slots = groupSlotsSQLite
	default:
		return nil, fmt.Errorf("persist: unsupported database URL scheme %q: use postgres://… or sqlite:…", scheme)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{b: b, node: cfg.Node, lease: cfg.Lease}
	s.creator, s.takers = newCreator(s, cfg, slots), newTakeOvers(s, cfg, slots)
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// LogValue describes the store for logs: the backend and the file, or the
// server and database (never the user or password).
func (s *Store) LogValue() slog.Value { return s.b.describe() }

// Close closes every connection of the store, waiting for those in use to
// be released.
func (s *Store) Close() { s.b.close() }

// Lost returns a channel that is closed when another server took this
// store's server lock: after the lock's connection to PostgreSQL was lost
// (the database restarted, or a proxy cut it), the store could not take it
// back. From then on the store writes nothing (every write transaction
// checks the lock), and the server must stop. It is nil, never closed, for
// a store whose lock cannot be lost (SQLite, or Config.SkipLock).
func (s *Store) Lost() <-chan struct{} { return s.b.lost() }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.b.ping(ctx); err != nil {
		return fmt.Errorf("persist: ping: %w", err)
	}
	return nil
}

// CreateChannel records a new open channel with no messages. Its epoch is 1,
// or, once channels have been deleted, one above the highest epoch a
// deleted channel had: a client still holding a seq and an epoch of a
// deleted channel cannot mistake a new channel of the same id for it. It
// returns ErrExists if the id is taken.
// In cluster mode the channel is owned by this node, with a fresh lease.
//
// Concurrent creations (of channels and streams) are written together,
// many per transaction: a burst costs a few transactions, not one per
// channel. Each call still has its own outcome: it returns once its
// channel is committed, ErrExists if the id was taken (also by another
// call of the same burst), or the error of its own insert (a transaction
// that fails is retried one channel at a time). If ctx ends before the
// channel was handed to a transaction, it returns ctx's error and nothing
// is created.
func (s *Store) CreateChannel(ctx context.Context, id string, gen *Generator) (Channel, error) {
	c, err := s.creator.do(ctx, newChannel{id: id, gen: gen, cfg: StreamConfig{Epoch: 1}})
	if err != nil {
		return Channel{}, fmt.Errorf("persist: create channel %q: %w", id, err)
	}
	return c, nil
}

// Channel returns the stored record of a channel, or ErrNotFound.
func (s *Store) Channel(ctx context.Context, id string) (Channel, error) {
	c, err := s.b.channel(ctx, id)
	if err != nil {
		return Channel{}, fmt.Errorf("persist: channel %q: %w", id, err)
	}
	return c, nil
}

// Channels returns up to limit channels with id > after, ordered by id, so
// that passing the last id of a page as after gives the next page. A limit
// below 1 returns no channels.
func (s *Store) Channels(ctx context.Context, after string, limit int) ([]Channel, error) {
	if limit < 1 {
		return nil, nil
	}
	cs, err := s.b.channels(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: list channels: %w", err)
	}
	return cs, nil
}

// Messages returns up to limit stored messages of channel id with
// seq > after, in seq order. A channel that does not exist has no messages;
// a limit below 1 returns none. The Data of a message is never nil.
func (s *Store) Messages(ctx context.Context, id string, after int64, limit int) ([]Message, error) {
	if limit < 1 {
		return nil, nil
	}
	ms, err := s.b.messages(ctx, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: read messages of %q: %w", id, err)
	}
	return ms, nil
}

// DeleteChannel deletes a channel and everything stored of it (its record,
// epochs and messages) in one transaction, and returns ErrNotFound if it
// does not exist. A WriteBatches of the channel that commits after it
// fails with ErrNotFound and stores nothing; one that commits before it is
// deleted with the rest. The id may then be created again, at a higher
// epoch (see CreateChannel).
func (s *Store) DeleteChannel(ctx context.Context, id string) error {
	if err := s.b.deleteChannel(ctx, id); err != nil {
		return fmt.Errorf("persist: delete channel %q: %w", id, err)
	}
	return nil
}

// DeleteClosedBefore deletes, as DeleteChannel does and in one
// transaction, up to limit channels that were closed before t, those
// closed first first, and returns their ids. Open channels are never
// deleted. Fewer than limit ids means no other channel was closed before
// t. A limit below 1 deletes nothing.
func (s *Store) DeleteClosedBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	if limit < 1 {
		return nil, nil
	}
	ids, err := s.b.deleteClosedBefore(ctx, t, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: delete channels closed before %s: %w", t.UTC().Format(time.RFC3339), err)
	}
	return ids, nil
}

// OpenEpoch starts a new epoch of a channel whose previous owner is gone:
// it increments the channel's epoch and records that the new epoch starts
// at the channel's last stored seq. It returns the updated record, or
// ErrNotFound.
//
// In cluster mode it takes the channel over for this node, in one
// statement, only if no other node holds a lease on it that has not
// expired; otherwise the error is an *OwnedError (wrapping ErrOwned) that
// names the owner. The new epoch fences off the batches of the previous
// owner (see Batch.Epoch).
//
// Concurrent take-overs (a restart takes over every generator channel)
// are written together, many per transaction, as creations are (see
// CreateChannel); each call still has its own outcome. If ctx ends before
// the take-over was handed to a transaction, it returns ctx's error and
// the channel is left as it was.
func (s *Store) OpenEpoch(ctx context.Context, id string) (Channel, error) {
	c, err := s.takers.do(ctx, id)
	if err != nil {
		return Channel{}, fmt.Errorf("persist: open epoch of %q: %w", id, err)
	}
	return c, nil
}

// Survived returns the highest seq that is the same in the given epoch and
// in the channel's current epoch: the seq the next epoch started at, or,
// for the current epoch, the channel's last stored seq. It returns 0 for an
// epoch the channel never had, and ErrNotFound if the channel does not
// exist.
func (s *Store) Survived(ctx context.Context, id string, epoch int64) (int64, error) {
	current, last, next, err := s.b.epochs(ctx, id, epoch)
	if err != nil {
		return 0, fmt.Errorf("persist: survived of %q: %w", id, err)
	}
	switch {
	case epoch < 1 || epoch > current:
		return 0, nil
	case next != nil:
		return *next, nil
	default:
		return last, nil
	}
}

// WriteBatches commits the messages of every batch, and each batch's
// channel's new last seq and Close mark, in one transaction: either all of
// it is stored or none. The Writer gives at most one batch per channel
// (a channel has one batch in flight); two batches of one channel are
// still written right, their channel updated once to the higher last seq.
// Rows already stored are skipped, so writing the same batches again (after a
// commit whose outcome was not known) is safe; a channel's last seq never
// goes down. Messages of a batch with Data nil are stored with an empty
// body.
//
// If a batch's channel does not exist, is closed and the batch has
// messages past its last seq, or is at another epoch than the batch's
// Epoch (when that is not 0), nothing is stored and the error is a
// *ChannelError that names those channels (and wraps ErrNotFound,
// ErrChannelClosed or ErrFenced). If the database refuses the data for another reason
// that a retry cannot fix, the error wraps ErrRejected. Any other error
// may pass if the same batches are written again.
//
// The stream state a batch carries (producers, Stream-Seq) is checked
// against what the store can hold (CheckField, CheckProducer). A record
// refused for good, by that check or by the database, never costs the
// messages: given several batches, WriteBatches then stores nothing and
// returns an error wrapping ErrRejected, so that each is written alone;
// given one, it stores the batch without that record and returns a
// *RefusedError naming it. WriteBatches implements BatchWriter and is safe
// for concurrent use.
func (s *Store) WriteBatches(ctx context.Context, batches []*Batch) error {
	if len(batches) == 0 {
		return nil
	}
	updates := make([]channelUpdate, 0, len(batches))
	index := make(map[string]int, len(batches))
	for _, b := range batches {
		// Two batches of one channel (see above): one update, to the
		// higher last seq.
		if i, ok := index[b.Channel]; ok {
			u := &updates[i]
			u.last, u.close, u.epoch = max(u.last, b.LastSeq()), u.close || b.Close, max(u.epoch, b.Epoch)
			continue
		}
		index[b.Channel] = len(updates)
		updates = append(updates, channelUpdate{b.Channel, b.LastSeq(), b.Close, b.Epoch})
	}
	if err := checkRecords(batches); err != nil {
		if len(batches) > 1 {
			return fmt.Errorf("persist: write batches: %w: %w", ErrRejected, err)
		}
		return s.salvage(ctx, batches[0], updates, err)
	}
	err := s.b.writeBatches(ctx, batches, updates)
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*ChannelError](err); !ok && s.b.permanent(err) {
		if len(batches) == 1 && hasRecords(batches[0]) {
			return s.salvage(ctx, batches[0], updates, err)
		}
		return fmt.Errorf("persist: write batches: %w: %w", ErrRejected, err)
	}
	return fmt.Errorf("persist: write batches: %w", err)
}

// checkRecords checks the stream state that batches carry against what
// the store can hold (see CheckField), so that both backends refuse the
// same values, before the database does.
func checkRecords(batches []*Batch) error {
	var errs []error
	for _, b := range batches {
		if b.StreamSeq != "" {
			errs = append(errs, CheckField("Stream-Seq", b.StreamSeq))
		}
		for _, p := range b.Producers {
			errs = append(errs, CheckProducer(p))
		}
	}
	return errors.Join(errs...)
}

// hasRecords reports whether b carries stream state.
func hasRecords(b *Batch) bool { return b.StreamSeq != "" || len(b.Producers) > 0 }

// salvage writes batch b, whose stream state the store refused (cause),
// without the records it refuses for good: first the messages and the
// channel's update without any record, then each record in a transaction
// of its own. A record the store refuses (a value it cannot hold, or a
// permanent error) is left out; the messages of every other request, and
// their records, are written. It returns nil if every record was written
// after all, a *RefusedError listing those left out, or the error of a
// write that may pass on a retry (the whole salvage is idempotent: it is
// done again) or that refuses the messages themselves (ErrRejected: no
// record is to blame).
func (s *Store) salvage(ctx context.Context, b *Batch, updates []channelUpdate, cause error) error {
	bare := *b
	bare.Producers, bare.StreamSeq = nil, ""
	if err := s.b.writeBatches(ctx, []*Batch{&bare}, updates); err != nil {
		if _, ok := errors.AsType[*ChannelError](err); !ok && s.b.permanent(err) {
			return fmt.Errorf("persist: write batches: %w: %w", ErrRejected, err)
		}
		return fmt.Errorf("persist: write batches: %w", err)
	}
	refused := &RefusedError{Channel: b.Channel, Err: cause}
	// save writes one record; it reports false for a record the store
	// refuses for good.
	save := func(check error, seq string, p *ProducerState) (bool, error) {
		err := check
		if err == nil {
			err = s.b.saveStreamWrites(ctx, b.Channel, seq, p)
		}
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ErrInvalid) || s.b.permanent(err):
			refused.Err = err
			return false, nil
		}
		return false, fmt.Errorf("persist: write stream state of %q: %w", b.Channel, err)
	}
	if b.StreamSeq != "" {
		ok, err := save(CheckField("Stream-Seq", b.StreamSeq), b.StreamSeq, nil)
		if err != nil {
			return err
		}
		if !ok {
			refused.StreamSeq = b.StreamSeq
		}
	}
	for _, p := range b.Producers {
		ok, err := save(CheckProducer(p), "", &p)
		if err != nil {
			return err
		}
		if !ok {
			refused.Producers = append(refused.Producers, p)
		}
	}
	if refused.StreamSeq == "" && len(refused.Producers) == 0 {
		return nil
	}
	return refused
}
