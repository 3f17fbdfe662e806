-- An outbox event's text id was looked up only to join a webhook delivery to its event, which the
-- event's number does as well (every delivery keeps it, `event_seq`), while every event paid for the
-- id's unique index: four B-tree entries of an own-store cancellation's twenty-odd (BENCHMARKS.md,
-- fourteenth session). SQLite drops a column's UNIQUE only with its table: the events are copied,
-- numbers and all, into one without it.
CREATE TABLE outbox_events_v2 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    shop_id TEXT NOT NULL,
    order_id TEXT,
    type TEXT NOT NULL,
    at BIGINT NOT NULL,
    -- The event as sent: JSON.
    payload TEXT NOT NULL,
    -- When NATS JetStream acknowledged it; null until then (or when no stream is configured).
    published_at BIGINT,
    publish_lease_owner TEXT,
    publish_lease_expires_at BIGINT
);
INSERT INTO outbox_events_v2 (seq, id, shop_id, order_id, type, at, payload, published_at, publish_lease_owner,
    publish_lease_expires_at)
    SELECT seq, id, shop_id, order_id, type, at, payload, published_at, publish_lease_owner, publish_lease_expires_at
    FROM outbox_events ORDER BY seq;
-- A number once handed out is never handed out again, even when its event was purged: a consumer
-- pages the events by number (`GET /api/v1/events?after=`).
DELETE FROM sqlite_sequence WHERE name = 'outbox_events_v2';
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_events_v2', seq FROM sqlite_sequence WHERE name = 'outbox_events';
DROP TABLE outbox_events;
ALTER TABLE outbox_events_v2 RENAME TO outbox_events;
CREATE INDEX outbox_events_unpublished ON outbox_events (published_at, seq);
