-- An outbox event's text id was looked up only to join a webhook delivery to its event, which the
-- event's number does as well (every delivery keeps it, `event_seq`), while every event paid for the
-- id's unique index: four B-tree entries of an own-store cancellation's twenty-odd (BENCHMARKS.md,
-- fourteenth session). The events and their numbers stay as they are.
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_id_key;
