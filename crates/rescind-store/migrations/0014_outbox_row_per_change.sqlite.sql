-- An outbox row was one event: a cancellation wrote four of them (the order cancelled, the
-- cancellation completed, the refund, the restock), each with its two B-tree entries, in the
-- change's own transaction (B4) — about a sixth of PostgreSQL's work for an own-store cancellation
-- (BENCHMARKS.md, twenty-fifth session). A row now carries the events of one history row (its
-- change), up to sixteen: `type` lists their types, space-separated, and `line_indexes` their lines'
-- places (NULL where the row has one event: `line_index` is its place). Rows are numbered sixteen
-- apart and an event's number is its row's plus its place among the row's events, so events are
-- still numbered in the order they are written and a number once handed out is never handed out
-- again. On SQLite the writer numbers the rows itself, from `sqlite_sequence`. Rows written before
-- keep their one event and their number.
ALTER TABLE outbox_events ADD COLUMN line_indexes TEXT;
-- The purge looked a row's deliveries up by its event id; a row's events are now found by their
-- numbers.
DROP INDEX webhook_deliveries_by_event;
CREATE INDEX webhook_deliveries_by_event_seq ON webhook_deliveries (event_seq);
