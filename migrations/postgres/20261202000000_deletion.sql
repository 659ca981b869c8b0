-- migrate:up
-- Deleting a channel removes its rows, but a client may still hold a seq and
-- an epoch of it: the first epoch of any channel created afterwards, under
-- the same id or another, is above every epoch a deleted channel had, so a
-- resume with an old epoch is told to start again rather than being served
-- a different history. One row: the highest epoch of a deleted channel.
CREATE TABLE epoch_floor (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch  bigint NOT NULL
);
INSERT INTO epoch_floor (epoch) VALUES (0);

-- Retention finds the channels closed longest ago without a scan.
CREATE INDEX channels_closed_at ON channels (closed_at) WHERE closed_at IS NOT NULL;

-- migrate:down
DROP INDEX channels_closed_at;
DROP TABLE epoch_floor;
