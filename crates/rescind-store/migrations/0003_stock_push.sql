-- Stock pushes to the sales channels (PRODUCT.md I5).

-- Where each SKU is sold: the channel's own id of the listing (Shopify's inventory item, Rakuten's
-- manageNumber, Yahoo!'s item code, Amazon's seller SKU, Shoplazza's variant) and, for Shopify, the
-- location whose stock it is.
CREATE TABLE inventory_listings (
    shop_id TEXT NOT NULL REFERENCES shops (id),
    sku TEXT NOT NULL,
    channel_id TEXT NOT NULL REFERENCES channels (id),
    external_id TEXT NOT NULL,
    location_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (shop_id, sku, channel_id)
);

-- Levels waiting to be pushed: one row per channel and SKU however often the stock moved meanwhile
-- (`version` counts the moves), due one push interval after the first move. A pusher claims rows
-- under a lease; a row whose version moved during the push stays for the next interval.
CREATE TABLE inventory_pushes (
    channel_id TEXT NOT NULL REFERENCES channels (id),
    sku TEXT NOT NULL,
    shop_id TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    PRIMARY KEY (channel_id, sku)
);
CREATE INDEX inventory_pushes_by_due_at ON inventory_pushes (due_at);

-- The sync history keeps stock pushes too, which belong to no order: order_id becomes optional.
CREATE TABLE sync_history_v2 (
    id __IDENTITY_PRIMARY_KEY__,
    shop_id TEXT NOT NULL,
    order_id TEXT REFERENCES orders (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    request TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    message TEXT NOT NULL,
    fee TEXT
);
INSERT INTO sync_history_v2 (shop_id, order_id, at, kind, target, request, ok, message, fee)
    SELECT shop_id, order_id, at, kind, target, request, ok, message, fee FROM sync_history ORDER BY id;
DROP TABLE sync_history;
ALTER TABLE sync_history_v2 RENAME TO sync_history;
CREATE INDEX sync_history_by_shop ON sync_history (shop_id, kind, id);
