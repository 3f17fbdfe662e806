-- An outbox row was one event: a cancellation wrote four of them (the order cancelled, the
-- cancellation completed, the refund, the restock), each with its two B-tree entries, in the
-- change's own transaction (B4) — about a sixth of PostgreSQL's work for an own-store cancellation
-- (BENCHMARKS.md, twenty-fifth session). A row now carries the events of one history row (its
-- change), up to sixteen: `type` lists their types, space-separated, and `line_indexes` their lines'
-- places (NULL where the row has one event: `line_index` is its place). Rows are numbered sixteen
-- apart and an event's number is its row's plus its place among the row's events, so events are
-- still numbered in the order they are written and a number once handed out is never handed out
-- again. Rows written before keep their one event and their number.
ALTER TABLE outbox_events ADD COLUMN line_indexes TEXT;
ALTER TABLE outbox_events ALTER COLUMN seq SET INCREMENT BY 16;
-- The next row's number: the first multiple of sixteen after every number handed out.
DO $$
DECLARE
    handed_out BIGINT;
BEGIN
    EXECUTE format('SELECT last_value FROM %s', pg_get_serial_sequence('outbox_events', 'seq')) INTO handed_out;
    EXECUTE format('ALTER TABLE outbox_events ALTER COLUMN seq RESTART WITH %s', (handed_out / 16 + 1) * 16);
END
$$;
-- The purge looked a row's deliveries up by its event id; a row's events are now found by their
-- numbers.
DROP INDEX webhook_deliveries_by_event;
CREATE INDEX webhook_deliveries_by_event_seq ON webhook_deliveries (event_seq);
