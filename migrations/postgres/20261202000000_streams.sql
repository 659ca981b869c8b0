-- migrate:up
-- Durable Streams: a stream is a channel with a content type, an optional
-- expiry, the last Stream-Seq it accepted and its idempotent producers.
-- content_type is NULL for channels made through the channels API, which
-- carry text (text/plain).
ALTER TABLE channels
    ADD COLUMN content_type text,
    ADD COLUMN ttl_seconds  bigint,
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN stream_seq   text COLLATE "C";

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
ALTER TABLE channels
    DROP COLUMN stream_seq,
    DROP COLUMN expires_at,
    DROP COLUMN ttl_seconds,
    DROP COLUMN content_type;
