-- An order's history was read through `order_changes_by_order`, an index keyed by order: every change
-- put an entry at a random page of it (34 of the 167 pages a commit of 27 own-store cancellations
-- wrote on SQLite, the largest share of any table or index; BENCHMARKS.md, seventeenth session). The
-- order's row, written with every change anyway, now names its history rows by number (`change_ids`,
-- joined by commas; NULL for none), and the history is read by key. The history rows are written
-- before the order's row in a change, and an import names its first one right after inserting it.
ALTER TABLE orders ADD COLUMN change_ids TEXT;
UPDATE orders
SET change_ids = (
    SELECT string_agg(CAST(changes.id AS TEXT), ',') FROM order_changes changes WHERE changes.order_id = orders.id
)
WHERE id IN (SELECT order_id FROM order_changes);
DROP INDEX order_changes_by_order;
