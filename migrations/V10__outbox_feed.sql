-- The durable event feed (`Events::read_after`): each outbox row remembers the transaction that
-- wrote it, so that readers take only events of transactions older than every one still running
-- — an event can then no longer appear before a position a reader has passed. Rows written
-- before this migration belong to "transaction 0" and come first, in seq order.
ALTER TABLE solobase.outbox ADD COLUMN tx bigint NOT NULL DEFAULT 0;
ALTER TABLE solobase.outbox ALTER COLUMN tx SET DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX outbox_feed_idx ON solobase.outbox (tx, seq);
