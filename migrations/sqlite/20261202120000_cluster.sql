-- migrate:up
-- The SQLite twin of postgres/20261202120000_cluster.sql, so that both
-- schemas stay the same. Cluster mode needs PostgreSQL: on SQLite these
-- columns stay NULL and the nodes table empty. Times are Unix microseconds.
ALTER TABLE channels ADD COLUMN owner TEXT;
ALTER TABLE channels ADD COLUMN lease_expires_at INTEGER;

CREATE INDEX channels_owner ON channels (owner) WHERE owner IS NOT NULL AND closed_at IS NULL;

CREATE TABLE nodes (
    id            TEXT NOT NULL PRIMARY KEY,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
) STRICT;

-- migrate:down
DROP TABLE nodes;
DROP INDEX channels_owner;
ALTER TABLE channels DROP COLUMN lease_expires_at;
ALTER TABLE channels DROP COLUMN owner;
