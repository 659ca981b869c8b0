-- migrate:up
-- The channel's last seq is the highest seq of its messages, max(seq) over
-- the primary key of messages: an ordinary flush stores messages and leaves
-- the channel's row alone (its epoch fence is an advisory lock, see
-- persist/postgres_fence.go). channels.last_seq is that value as recorded
-- at the channel's close and at each take-over (channel_epochs.start_seq):
-- a floor that never goes down, exact once the channel is closed, and what
-- the reads take when it is above max(seq). The schema does not change;
-- the comment says what the column means from this version on. (The
-- SQLite backend, whose writes are serialised anyway, still updates the
-- column on every write.)
COMMENT ON COLUMN channels.last_seq IS
  'last seq recorded at close and at take-over; the live value is GREATEST(last_seq, max(messages.seq))';

-- migrate:down
COMMENT ON COLUMN channels.last_seq IS NULL;
