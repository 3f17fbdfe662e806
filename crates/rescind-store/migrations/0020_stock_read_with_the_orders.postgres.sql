-- What a group's restocks decide on, read in the statement that locks the group's orders: the
-- levels of the SKUs its orders hold back and the proofs of their current cancellations, for the
-- orders whose jobs may run a restock (`restocking`). As a statement of its own it was a round trip
-- per group after the orders' load (BENCHMARKS.md, thirtieth session); written out in the locking
-- statement (a JSON expansion, joins, DISTINCT) it made PostgreSQL plan that statement anew for every
-- group, which cost more than the round trip. Here its plans are kept (the function's), and the
-- locking statement only calls it, once every order is locked (its argument reads them all first):
-- its queries each run with a snapshot of their own, so they see what the transactions the locks
-- waited for committed. An order is asked about when its cancellation asks for a restock, its stock
-- was deducted and it was never restocked (I2's conditions, which the decisions check again); the
-- SKUs are its deduction snapshot's (I3). Rows: ('sku', SKU) and ('order', order) for what was asked,
-- ('stocked', SKU) for each SKU stocked, ('proof', order, cancellation, SKU) for each proof — the levels
-- locked in SKU order and the proofs looked up by key, through 0018's function.
CREATE FUNCTION rescind_stock_of_restocks(shop TEXT, restocking TEXT[])
RETURNS TABLE (what TEXT, value1 TEXT, value2 TEXT, value3 TEXT)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET search_path FROM CURRENT AS $$
DECLARE
    asked_orders TEXT[];
    asked_cancellations TEXT[];
    asked_skus TEXT[];
BEGIN
    SELECT coalesce(array_agg(o.id ORDER BY o.id), '{}'), coalesce(array_agg(o.cancellation_id ORDER BY o.id), '{}')
        INTO asked_orders, asked_cancellations
        FROM orders o JOIN cancellations c ON c.id = o.cancellation_id
        WHERE o.id = ANY (restocking) AND o.shop_id = shop AND c.restock AND o.inventory_deducted
            AND NOT o.restocked;
    SELECT coalesce(array_agg(DISTINCT line.sku ORDER BY line.sku), '{}') INTO asked_skus
        FROM orders o CROSS JOIN LATERAL jsonb_to_recordset(o.stock_snapshot::jsonb) AS line (sku TEXT)
        WHERE o.id = ANY (asked_orders);
    RETURN QUERY SELECT 'sku', sku, NULL::text, NULL::text FROM unnest(asked_skus) AS sku;
    RETURN QUERY SELECT 'order', order_id, NULL::text, NULL::text FROM unnest(asked_orders) AS order_id;
    RETURN QUERY SELECT CASE WHEN s.stocked_sku IS NULL THEN 'proof' ELSE 'stocked' END,
            coalesce(s.stocked_sku, s.proof_order_id), s.proof_cancellation_id, s.proof_sku
        FROM rescind_stock_and_proofs(shop, asked_skus, asked_orders, asked_cancellations) AS s;
END
$$;
