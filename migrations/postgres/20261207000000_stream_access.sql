-- migrate:up
-- The last access to a stream recorded for the whole cluster (by the
-- database's clock): a stream's sliding TTL is decided from it, never from
-- one node's own view. Nodes record accesses at most every quarter of the
-- TTL, so a stream expires between its TTL and a quarter more after its
-- last access.
ALTER TABLE channels ADD COLUMN accessed_at timestamptz NOT NULL DEFAULT now();

-- migrate:down
ALTER TABLE channels DROP COLUMN accessed_at;
