-- migrate:up
-- The SQLite twin of postgres/20261202000000_deletion.sql: the highest
-- epoch of a deleted channel, which every new channel's first epoch is
-- above, and the index retention reads.
CREATE TABLE epoch_floor (
    one    INTEGER NOT NULL PRIMARY KEY DEFAULT 1 CHECK (one = 1),
    epoch  INTEGER NOT NULL
) STRICT;
INSERT INTO epoch_floor (epoch) VALUES (0);

CREATE INDEX channels_closed_at ON channels (closed_at) WHERE closed_at IS NOT NULL;

-- migrate:down
DROP INDEX channels_closed_at;
DROP TABLE epoch_floor;
