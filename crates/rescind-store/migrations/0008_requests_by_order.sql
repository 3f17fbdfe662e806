-- Every load of an order reads its cancellation requests by order (the latest one wins), and the only
-- index by order held the open ones (`cancellation_requests_one_open`): each load scanned the whole
-- table — every cancel in the group writer, every order read — as many rows as the shops ever had
-- requests.
CREATE INDEX cancellation_requests_by_order ON cancellation_requests (order_id, created_at);
