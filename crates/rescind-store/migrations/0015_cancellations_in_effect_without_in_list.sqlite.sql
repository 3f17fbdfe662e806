-- SQLite evaluates a partial index's `status IN (…)` through a temporary B-tree that each execution of
-- a statement writing the table opens, fills and closes again: three of them in every upsert of a
-- cancellation, which made it the dearest row of an own-store cancellation (about 10 µs, where the
-- order's own upsert is 3; BENCHMARKS.md, twenty-sixth session). The same constraint (C7: at most one
-- whole-order cancellation in effect per order) with the statuses compared one by one.
DROP INDEX cancellations_one_in_effect;
CREATE UNIQUE INDEX cancellations_one_in_effect ON cancellations (order_id)
    WHERE (status = 'processing' OR status = 'awaiting_refund' OR status = 'completed') AND NOT partial;
