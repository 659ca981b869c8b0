-- migrate:up
-- Channel ids are ASCII ([A-Za-z0-9._:-]): the "C" collation compares them
-- bytewise, which keeps the primary key indexes fast (no locale-aware
-- comparison on every insert) and makes the id order of channel listings
-- the same on every server whatever its locale.
CREATE TABLE channels (
    id          text COLLATE "C" PRIMARY KEY,
    epoch       bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    last_seq    bigint NOT NULL DEFAULT 0,
    gen_freq    double precision,
    gen_max     bigint
);

-- One row per incarnation of a channel: start_seq is the last durable seq when
-- the epoch began, so the messages 1..start_seq are shared with every earlier
-- epoch and anything an earlier epoch delivered past it may have been lost.
CREATE TABLE channel_epochs (
    channel_id  text COLLATE "C" NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    epoch       bigint NOT NULL,
    start_seq   bigint NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, epoch)
);

CREATE TABLE messages (
    channel_id  text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    data        bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

-- migrate:down
DROP TABLE messages;
DROP TABLE channel_epochs;
DROP TABLE channels;
