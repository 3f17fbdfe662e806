-- Partial cancellations (PRODUCT.md B1). A cancellation covers the whole order or some quantities of
-- some lines; the lines, their refund amount and their restock are kept as JSON in `scope`.
ALTER TABLE cancellations ADD COLUMN partial BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE cancellations ADD COLUMN scope TEXT NOT NULL DEFAULT '{}';

-- At most one whole-order cancellation in effect per order (C7); completed partial cancellations
-- leave the order open and do not count.
DROP INDEX cancellations_one_in_effect;
CREATE UNIQUE INDEX cancellations_one_in_effect ON cancellations (order_id)
    WHERE status IN ('processing', 'awaiting_refund', 'completed') AND NOT partial;
-- At most one cancellation of an order being carried out at a time, partial or not.
CREATE UNIQUE INDEX cancellations_one_processing ON cancellations (order_id) WHERE status = 'processing';
