-- migrate:up
-- Durable Streams: a stream is a channel with a content type, an optional
-- expiry, the last Stream-Seq it accepted and its idempotent producers.
-- content_type is NULL for channels made through the channels API, which
-- carry text (text/plain). A fork records its source and where it forked
-- (after seq fork_seq, plus fork_sub bytes or JSON messages of the next
-- message); deleted_at marks a stream deleted while forks of it remain.
ALTER TABLE channels
    ADD COLUMN content_type text,
    ADD COLUMN ttl_seconds  bigint,
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN stream_seq   text COLLATE "C",
    ADD COLUMN forked_from  text COLLATE "C",
    ADD COLUMN fork_seq     bigint,
    ADD COLUMN fork_sub     bigint,
    ADD COLUMN deleted_at   timestamptz;

CREATE INDEX channels_forked_from ON channels (forked_from) WHERE forked_from IS NOT NULL;

-- One row per idempotent producer of a channel: the highest request seq it
-- had accepted in its current epoch.
CREATE TABLE producers (
    channel_id  text COLLATE "C" NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    producer_id text COLLATE "C" NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, producer_id)
);

-- migrate:down
DROP TABLE producers;
DROP INDEX channels_forked_from;
ALTER TABLE channels
    DROP COLUMN deleted_at,
    DROP COLUMN fork_sub,
    DROP COLUMN fork_seq,
    DROP COLUMN forked_from,
    DROP COLUMN stream_seq,
    DROP COLUMN expires_at,
    DROP COLUMN ttl_seconds,
    DROP COLUMN content_type;
