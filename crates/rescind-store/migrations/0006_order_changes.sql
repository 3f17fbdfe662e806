-- An order's history, one row per change: the lines a change wrote (a cancellation writes nine or so:
-- created, each step, each refund, cancelled, completed), as a JSON array of
-- {"at", "kind", "actor", "message", "data"} oldest first. One row and one index entry per change
-- instead of one per line: a cancellation writes two B-tree entries for its history instead of
-- eighteen, and on PostgreSQL checks its order's foreign key once (BENCHMARKS.md, "History as one row
-- per change"). Lines written before this migration stay in order_history and come first. Rows are
-- never deleted, so their key needs no AUTOINCREMENT on SQLite.
CREATE TABLE order_changes (
    id __APPEND_ONLY_PRIMARY_KEY__,
    order_id TEXT NOT NULL REFERENCES orders (id),
    at BIGINT NOT NULL,
    lines TEXT NOT NULL
);
CREATE INDEX order_changes_by_order ON order_changes (order_id, id);
