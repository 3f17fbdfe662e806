-- rescind's first schema. Money is TEXT holding a decimal string, exact in both backends;
-- times are BIGINT microseconds since the Unix epoch, UTC. Never edit a landed migration: add one.
-- The same file serves SQLite and PostgreSQL; the identity column placeholder is the one thing that differs
-- (see `Dialect` in src/lib.rs).

CREATE TABLE shops (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    customer_cancellation_requests BOOLEAN NOT NULL DEFAULT FALSE,
    inventory_push_interval_s BIGINT NOT NULL DEFAULT 300,
    -- The next human order number handed out when an import names none.
    next_order_number BIGINT NOT NULL DEFAULT 1001,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL REFERENCES shops (id),
    -- SHA-256 of the secret, hex. The secret itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL REFERENCES shops (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT,
    credentials TEXT,
    cancel_sync BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX channels_by_shop ON channels (shop_id, id);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL REFERENCES shops (id),
    number TEXT NOT NULL,
    channel_id TEXT NOT NULL REFERENCES channels (id),
    channel_kind TEXT NOT NULL,
    channel_order_id TEXT,
    status TEXT NOT NULL,
    financial_status TEXT NOT NULL,
    fulfillment_status TEXT NOT NULL,
    currency TEXT NOT NULL,
    sub_total TEXT NOT NULL,
    total_shipping TEXT NOT NULL,
    total_tax TEXT NOT NULL,
    total_discount TEXT NOT NULL,
    total_price TEXT NOT NULL,
    total_paid TEXT NOT NULL,
    total_refund_price TEXT NOT NULL,
    cancel_reason TEXT,
    canceled_at BIGINT,
    customer TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    customer_email TEXT,
    shipping_address TEXT NOT NULL,
    line_items TEXT NOT NULL,
    payment TEXT,
    inventory_deducted BOOLEAN NOT NULL,
    -- The SKUs and quantities deducted at import (I1, JSON): what a restock puts back (I3).
    stock_snapshot TEXT NOT NULL,
    restocked BOOLEAN NOT NULL,
    warehouse_id TEXT,
    -- The outbound request at the warehouse (JSON), once the order is ready to ship.
    outbound TEXT,
    -- The warehouse's id of the outbound request: how its reports find the order.
    outbound_external_id TEXT,
    warnings TEXT NOT NULL,
    cancellation_id TEXT,
    cancellation_status TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Duplicate detection (API.md: 409 duplicate_order), enforced by the database.
CREATE UNIQUE INDEX orders_by_channel_order_id ON orders (channel_id, channel_order_id);
CREATE INDEX orders_by_shop ON orders (shop_id, id);
CREATE INDEX orders_by_outbound ON orders (warehouse_id, outbound_external_id);

CREATE TABLE cancellations (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    shop_id TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    reason TEXT,
    reason_code TEXT,
    reason_detail TEXT,
    staff_note TEXT,
    refund BOOLEAN NOT NULL,
    refund_method TEXT,
    restock BOOLEAN NOT NULL,
    notify_customer BOOLEAN NOT NULL,
    needs_attention BOOLEAN NOT NULL,
    steps TEXT NOT NULL,
    -- Restored by an undo (PRODUCT.md §5).
    fulfillment_status_before TEXT NOT NULL,
    financial_status_before TEXT NOT NULL,
    reauthorization_generation BIGINT NOT NULL,
    -- The warehouse's fee for a cancellation request (C4).
    fee TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT
);
-- At most one cancellation in effect per order (C7), whatever races the application loses.
CREATE UNIQUE INDEX cancellations_one_in_effect ON cancellations (order_id)
    WHERE status IN ('processing', 'awaiting_refund', 'completed');
CREATE INDEX cancellations_by_shop ON cancellations (shop_id, id);
CREATE INDEX cancellations_needing_attention ON cancellations (shop_id, id) WHERE needs_attention;

-- Orders with work for the worker (a cancellation's step, an outbound request to create; W7). A
-- worker claims a due job by taking its lease; a job whose lease expired (its worker died) is
-- claimed again. One job per order: the work of one order never runs twice at once.
-- Customer cancellation requests (PRODUCT.md §4). At most one waits for a decision per order.
CREATE TABLE cancellation_requests (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    shop_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    decision_reason TEXT,
    cancellation_id TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE UNIQUE INDEX cancellation_requests_one_open ON cancellation_requests (order_id) WHERE status = 'requested';
CREATE INDEX cancellation_requests_by_shop ON cancellation_requests (shop_id, status, id);

CREATE TABLE workflow_jobs (
    order_id TEXT PRIMARY KEY REFERENCES orders (id),
    shop_id TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX workflow_jobs_by_due_at ON workflow_jobs (due_at);

CREATE TABLE warehouses (
    id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL REFERENCES shops (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL,
    credentials TEXT,
    cancel_after_confirmation BOOLEAN NOT NULL,
    sync_modifications BOOLEAN NOT NULL,
    modify_after_confirmation BOOLEAN NOT NULL,
    -- The warehouse API's rate limit: this many requests per window.
    rate_limit INTEGER NOT NULL,
    rate_limit_window_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX warehouses_by_shop ON warehouses (shop_id, id);

CREATE TABLE payment_providers (
    id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL REFERENCES shops (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL,
    credentials TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX payment_providers_by_shop ON payment_providers (shop_id, id);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    shop_id TEXT NOT NULL,
    cancellation_id TEXT,
    amount TEXT NOT NULL,
    method TEXT NOT NULL,
    note TEXT,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_by_order ON refunds (order_id, created_at);

CREATE TABLE order_history (
    id __IDENTITY_PRIMARY_KEY__,
    order_id TEXT NOT NULL REFERENCES orders (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX order_history_by_order ON order_history (order_id, id);

-- Stock per SKU and shop (PRODUCT.md §8).
CREATE TABLE inventory (
    shop_id TEXT NOT NULL REFERENCES shops (id),
    sku TEXT NOT NULL,
    available BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (shop_id, sku)
);

-- Every movement of stock: deduction, restock, manual adjustment, set, undo.
CREATE TABLE inventory_ledger (
    id __IDENTITY_PRIMARY_KEY__,
    shop_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    delta BIGINT NOT NULL,
    kind TEXT NOT NULL,
    order_id TEXT,
    reason TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX inventory_ledger_by_sku ON inventory_ledger (shop_id, sku, id);

-- One row per SKU a cancellation put back: the primary key makes a second restock of the same
-- cancellation impossible, whatever races or retries happen (I2).
CREATE TABLE restocks (
    order_id TEXT NOT NULL REFERENCES orders (id),
    cancellation_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (order_id, cancellation_id, sku)
);

-- Every call to an outside system about an order (F5): searchable by kind.
CREATE TABLE sync_history (
    id __IDENTITY_PRIMARY_KEY__,
    shop_id TEXT NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    request TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    message TEXT NOT NULL,
    fee TEXT
);
CREATE INDEX sync_history_by_shop ON sync_history (shop_id, kind, id);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is refused (422).
    fingerprint TEXT NOT NULL,
    -- NULL while the first request is still being answered.
    status_code INTEGER,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
