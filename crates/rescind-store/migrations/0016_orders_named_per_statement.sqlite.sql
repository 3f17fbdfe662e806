-- Nothing to change on SQLite: its foreign keys from the rows that name an order (cancellations,
-- refunds, history, restocks, sync history, workflow jobs) stay, each checked by one probe of the
-- orders' key. PostgreSQL's half of this migration checks those rows once per statement instead of
-- one query each (0016_orders_named_per_statement.postgres.sql).
SELECT 1;
