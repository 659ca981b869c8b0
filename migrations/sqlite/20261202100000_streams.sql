-- migrate:up
-- The SQLite twin of postgres/20261202100000_streams.sql. expires_at and
-- deleted_at are in Unix microseconds.
ALTER TABLE channels ADD COLUMN content_type TEXT;
ALTER TABLE channels ADD COLUMN ttl_seconds INTEGER;
ALTER TABLE channels ADD COLUMN expires_at INTEGER;
ALTER TABLE channels ADD COLUMN stream_seq TEXT;
ALTER TABLE channels ADD COLUMN forked_from TEXT;
ALTER TABLE channels ADD COLUMN fork_seq INTEGER;
ALTER TABLE channels ADD COLUMN fork_sub INTEGER;
ALTER TABLE channels ADD COLUMN deleted_at INTEGER;

CREATE INDEX channels_forked_from ON channels (forked_from) WHERE forked_from IS NOT NULL;

CREATE TABLE producers (
    channel_id  TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    producer_id TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, producer_id)
) STRICT, WITHOUT ROWID;

-- migrate:down
DROP TABLE producers;
DROP INDEX channels_forked_from;
ALTER TABLE channels DROP COLUMN deleted_at;
ALTER TABLE channels DROP COLUMN fork_sub;
ALTER TABLE channels DROP COLUMN fork_seq;
ALTER TABLE channels DROP COLUMN forked_from;
ALTER TABLE channels DROP COLUMN stream_seq;
ALTER TABLE channels DROP COLUMN expires_at;
ALTER TABLE channels DROP COLUMN ttl_seconds;
ALTER TABLE channels DROP COLUMN content_type;
