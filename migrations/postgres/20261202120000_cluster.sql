-- migrate:up
-- Cluster mode: the node that owns a channel (runs its actor and alone
-- writes its messages) and until when its lease holds. Both are NULL for a
-- channel no node has owned (single-server mode never sets them). Lease
-- times are the database's clock, so the nodes' clocks never disagree.
ALTER TABLE channels
    ADD COLUMN owner            text COLLATE "C",
    ADD COLUMN lease_expires_at timestamptz;

-- The bulk lease renewal finds a node's open channels by owner.
CREATE INDEX channels_owner ON channels (owner) WHERE owner IS NOT NULL AND closed_at IS NULL;

-- One row per node that ever ran in cluster mode, with its last heartbeat
-- (each lease renewal), for operators and metrics.
CREATE TABLE nodes (
    id            text COLLATE "C" PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- migrate:down
DROP TABLE nodes;
DROP INDEX channels_owner;
ALTER TABLE channels DROP COLUMN lease_expires_at, DROP COLUMN owner;
