-- Every load of an order read its refunds and its cancellation requests by order, through
-- `refunds_by_order` and `cancellation_requests_by_order`: a probe of each per order loaded, and a
-- refund's entry in `refunds_by_order` written at a random page of it with every refund (17 of the
-- 168 pages a commit of 23 own-store cancellations wrote on SQLite; BENCHMARKS.md, seventeenth
-- session). The order's row, written with every change anyway, now names them: `refund_ids` (the ids
-- joined by commas, NULL for none) and `cancellation_request_id` (the latest request), and a load
-- reads them by id — keys whose new entries are appended, ids being time-ordered. Nothing reads
-- either table by order any more, so both indexes go.
ALTER TABLE orders ADD COLUMN refund_ids TEXT;
ALTER TABLE orders ADD COLUMN cancellation_request_id TEXT;
UPDATE orders
SET refund_ids = (SELECT string_agg(refunds.id, ',') FROM refunds WHERE refunds.order_id = orders.id)
WHERE id IN (SELECT order_id FROM refunds);
UPDATE orders
SET cancellation_request_id = (
    SELECT requests.id FROM cancellation_requests requests
    WHERE requests.order_id = orders.id
    ORDER BY requests.created_at DESC, requests.id DESC
    LIMIT 1
)
WHERE id IN (SELECT order_id FROM cancellation_requests);
DROP INDEX refunds_by_order;
DROP INDEX cancellation_requests_by_order;
