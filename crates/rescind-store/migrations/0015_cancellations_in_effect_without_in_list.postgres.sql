-- Nothing to change on PostgreSQL: it tests the partial index's `status IN (…)` against a constant
-- array, with no cost of its own. SQLite's part of this migration rewrites the index's condition
-- (0015_cancellations_in_effect_without_in_list.sqlite.sql).
SELECT 1;
