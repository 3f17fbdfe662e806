-- The transactional outbox (PRODUCT.md B4): every event is written in the transaction of the change it
-- announces, with its deliveries to the shop's webhooks, so none is lost and none is invented.
CREATE TABLE outbox_events (
    seq __IDENTITY_PRIMARY_KEY__,
    id TEXT NOT NULL UNIQUE,
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
CREATE INDEX outbox_events_unpublished ON outbox_events (published_at, seq);
CREATE INDEX outbox_events_by_time ON outbox_events (at);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL REFERENCES shops (id),
    url TEXT NOT NULL,
    -- The event types it wants, space-separated.
    events TEXT NOT NULL,
    -- Signs every delivery (HMAC-SHA256); shown once, at creation.
    secret TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_by_shop ON webhooks (shop_id);

-- One row per event and webhook. A delivery waits while an earlier one of the same order to the same
-- webhook is pending, so each order's events arrive in order.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    shop_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    order_id TEXT,
    -- pending, delivered or failed (gave up after the last attempt).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    lease_owner TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, event_seq);
CREATE INDEX webhook_deliveries_by_order ON webhook_deliveries (webhook_id, order_id, event_seq);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
