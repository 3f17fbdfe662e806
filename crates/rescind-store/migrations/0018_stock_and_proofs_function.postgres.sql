-- What a group's restocks decide on (the levels of their SKUs, locked in SKU order, and the proofs of
-- their orders' current cancellations), read by one function whose plans PostgreSQL keeps for the
-- session. As a statement of its own it was planned anew for every group, since a prepared one could
-- keep a plan that reads `restocks` whole (made while the table was small, before autovacuum's first
-- analysis of it): its parse and planning were 0.39 of its 0.46 ms a group, about a twentieth of the
-- group writer's time in a card cancellation's workflow (BENCHMARKS.md, twenty-ninth session). Inside
-- the function no table is read whole whatever its plan was made on — sequential scans are off for it,
-- and each proof is looked up by the primary key's first two columns, one (order, cancellation) at a
-- time (`OFFSET 0` keeps the look-up a parameterised one, never joined against the whole table).
CREATE FUNCTION rescind_stock_and_proofs(shop TEXT, skus TEXT[], proof_orders TEXT[], proof_cancellations TEXT[])
RETURNS TABLE (stocked_sku TEXT, proof_order_id TEXT, proof_cancellation_id TEXT, proof_sku TEXT)
LANGUAGE plpgsql SET enable_seqscan = off SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT i.sku, NULL::text, NULL::text, NULL::text FROM inventory i
        WHERE i.shop_id = shop AND i.sku = ANY (skus) ORDER BY i.sku FOR UPDATE;
    RETURN QUERY SELECT NULL::text, p.order_id, p.cancellation_id, p.sku
        FROM unnest(proof_orders, proof_cancellations) AS k (order_id, cancellation_id)
        CROSS JOIN LATERAL (
            SELECT r.order_id, r.cancellation_id, r.sku FROM restocks r
            WHERE r.order_id = k.order_id AND r.cancellation_id = k.cancellation_id OFFSET 0
        ) AS p;
END
$$;
