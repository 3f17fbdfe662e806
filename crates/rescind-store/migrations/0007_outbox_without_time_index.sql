-- The outbox's index by time served only the purge of events older than the retention, which ran
-- every few minutes, while every event paid for it: four of a cancellation's B-tree entries. Events
-- are numbered in the order they are written, so the purge finds where the kept ones begin by
-- reading forward from the oldest (what it deletes) and deletes by number (BENCHMARKS.md).
DROP INDEX outbox_events_by_time;
