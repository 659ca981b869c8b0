-- migrate:up
-- The SQLite twin of postgres/20261207000000_stream_access.sql, in Unix
-- microseconds; NULL means the channel's created_at.
ALTER TABLE channels ADD COLUMN accessed_at INTEGER;

-- migrate:down
ALTER TABLE channels DROP COLUMN accessed_at;
