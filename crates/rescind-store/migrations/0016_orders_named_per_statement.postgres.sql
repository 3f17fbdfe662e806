-- Cancellations, refunds, history rows, a cancellation's restocks, the calls made for an order
-- (sync_history) and an order's next step (workflow_jobs) each name their order. As foreign keys,
-- PostgreSQL checked every such row on its own: a query of `orders` under `FOR KEY SHARE` per row, run
-- through the executor from start to end — about a sixth of the group writer's backend's time, three
-- rows of every own-store cancellation and seven of a card cancellation's workflow (BENCHMARKS.md,
-- "Rows that name an order checked once per statement"). The same guarantees, kept by triggers:
-- * the rows a statement inserts into those tables are checked together, once, at the statement's end
--   (`rescind_inserted_rows_name_orders`, with the statement's new rows as `inserted`);
-- * a row moved to another order is checked as it moves (never done by rescind; a row trigger whose
--   `WHEN` is false for every other update);
-- * orders are never deleted or truncated, so that no row is left naming an order that went (rescind
--   deletes none; the foreign keys of the tables rescind no longer writes, or writes one row at a time
--   — order_history, cancellation_requests — stay as they were).
-- A row whose order is NULL (a stock push's call in sync_history) names none, as with a foreign key.
-- The error is the foreign key's own, `foreign_key_violation` (23503). SQLite keeps its foreign keys,
-- whose checks are an index probe each (0016_orders_named_per_statement.sqlite.sql).
ALTER TABLE cancellations DROP CONSTRAINT cancellations_order_id_fkey;
ALTER TABLE refunds DROP CONSTRAINT refunds_order_id_fkey;
ALTER TABLE order_changes DROP CONSTRAINT order_changes_order_id_fkey;
ALTER TABLE restocks DROP CONSTRAINT restocks_order_id_fkey;
ALTER TABLE sync_history DROP CONSTRAINT sync_history_v2_order_id_fkey;
ALTER TABLE workflow_jobs DROP CONSTRAINT workflow_jobs_order_id_fkey;

CREATE FUNCTION rescind_inserted_rows_name_orders() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    missing TEXT;
BEGIN
    -- `LIMIT 1` makes PostgreSQL plan for the first missing order: a nested loop over the new rows
    -- probing `orders_pkey`, whatever the sizes it saw when it first planned this (the plan is kept
    -- for the session: one made for a 5 000-row import while `orders` held ten rows probed the key
    -- for 32 rows among 300 000 orders later, checked with auto_explain).
    SELECT i.order_id INTO missing FROM inserted i
    WHERE i.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a row of % names order %, which is not there', TG_TABLE_NAME, missing
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION rescind_moved_row_names_an_order() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM orders WHERE id = NEW.order_id) THEN
        RAISE EXCEPTION 'a row of % names order %, which is not there', TG_TABLE_NAME, NEW.order_id
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION rescind_orders_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'orders are kept for good: their cancellations, refunds, history and steps name them'
        USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
END
$$;

-- The same two triggers on each table that names an order.
DO $$
DECLARE
    naming TEXT;
BEGIN
    FOREACH naming IN ARRAY ARRAY['cancellations', 'refunds', 'order_changes', 'restocks', 'sync_history',
        'workflow_jobs']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS inserted '
            'FOR EACH STATEMENT EXECUTE FUNCTION rescind_inserted_rows_name_orders()', naming || '_name_orders', naming);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I FOR EACH ROW '
            'WHEN (OLD.order_id IS DISTINCT FROM NEW.order_id) EXECUTE FUNCTION rescind_moved_row_names_an_order()',
            naming || '_moved', naming);
    END LOOP;
END
$$;

CREATE TRIGGER orders_kept BEFORE DELETE OR TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION rescind_orders_are_kept();
