-- migrate:up
-- The SQLite twin of postgres/20261128000000_init.sql: the same tables,
-- columns and keys. Times are Unix microseconds. Text compares bytewise
-- (SQLite's BINARY collation), like "C" on PostgreSQL, so channel listings
-- come in the same order on both.
CREATE TABLE channels (
    id          TEXT NOT NULL PRIMARY KEY,
    epoch       INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    closed_at   INTEGER,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    gen_freq    REAL,
    gen_max     INTEGER
) STRICT;

-- One row per incarnation of a channel: start_seq is the last durable seq when
-- the epoch began, so the messages 1..start_seq are shared with every earlier
-- epoch and anything an earlier epoch delivered past it may have been lost.
CREATE TABLE channel_epochs (
    channel_id  TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    start_seq   INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, epoch)
) STRICT, WITHOUT ROWID;

-- WITHOUT ROWID stores the rows in primary key order, so catch-up reads a
-- channel's messages as one contiguous range of the table itself.
CREATE TABLE messages (
    channel_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq)
) STRICT, WITHOUT ROWID;

-- migrate:down
DROP TABLE messages;
DROP TABLE channel_epochs;
DROP TABLE channels;
